"""down(): tears a testbed down, also after a failed or partial up() or a crash: the btrfs
pools' mounts, the subreapers (politely), then every process left that belongs to the testbed
(found by namespace, mount or command line), the network namespaces, the loop devices and
DIR itself."""

import os
import shutil
import signal
import subprocess
import time

from .btrfs import _detach_loops_under, _umount_loop
from .host import _all_pids, _cmdline, _is_zombie, _ns_ino, _pid_alive, _read_pid
from .network import _net_teardown, _netns_list
from .state import DEFAULT_DIR, TestbedError, _load


def _mount_root_paths(d):
    """Strings by which bind mounts of d appear in /proc/PID/mountinfo (field 4)."""
    out = {d}
    p = d
    while p != '/' and not os.path.ismount(p):
        p = os.path.dirname(p)
    if p != '/':
        out.add('/' + os.path.relpath(d, p))
    return out


def _arg(argv, opt):
    try:
        return argv[argv.index(opt) + 1]
    except (ValueError, IndexError):
        return None


def _find_reapers(d, prefix):
    """Subreaper processes of the testbed at d or with the given prefix."""
    out = []
    for pid in _all_pids():
        argv = _cmdline(pid)
        if len(argv) < 3 or argv[2] != '_node' or not argv[1].endswith('hxtestbed.py'):
            continue
        nd = _arg(argv, '--nodedir') or ''
        if nd.startswith(d + '/nodes/') or (prefix and _arg(argv, '--prefix') == prefix):
            out.append((pid, _arg(argv, '--prefix')))
    return out


def _find_leftovers(d, prefix, mntns):
    """Every process that belongs to the testbed: in one of its network or mount
    namespaces, holding a mount of d, or mentioning d on its command line."""
    me = os.getpid()
    netns_ino = set()
    for ns in _netns_list():
        if prefix and ns.startswith(prefix + '-'):
            try:
                netns_ino.add(os.stat('/run/netns/' + ns).st_ino)
            except OSError:
                pass
    roots = [r.rstrip('/') + '/nodes/' for r in _mount_root_paths(d)]
    found = set(p for p, _ in _find_reapers(d, prefix))
    for pid in _all_pids():
        if pid in (me, 1) or pid in found:
            continue
        if _ns_ino(pid, 'net') in netns_ino or _ns_ino(pid, 'mnt') in mntns:
            found.add(pid)
            continue
        if any((d + '/nodes/') in a for a in _cmdline(pid)):
            found.add(pid)      # e.g. an orphaned virsh or qemu-img of a killed `up`
            continue
        try:
            with open('/proc/%d/mountinfo' % pid) as f:
                mi = f.read()
        except OSError:
            continue
        if any(' %s' % r in mi for r in roots):
            found.add(pid)
    return sorted(found)


def _reap_if_child(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except OSError:
        pass


def down(dir=DEFAULT_DIR, prefix=None):
    """Tear everything down, also after a failed/partial `up` or a crash.
    Returns a list of problems (empty when clean)."""
    d = os.path.abspath(dir)
    st = None
    try:
        st = _load(d)
    except (TestbedError, ValueError):
        pass
    if prefix is None and st:
        prefix = st.get('prefix')
    reapers = _find_reapers(d, prefix)
    if prefix is None:
        prefix = next((p for _, p in reapers if p), None)
    if prefix is None and not os.path.exists(d):
        return []       # nothing there (give prefix= to clean leftovers by prefix)
    mntns = set()
    if st:
        for n in st['nodes']:
            v = _read_pid(os.path.join(n['dir'], 'mntns'))
            if v:
                mntns.add(v)
    # 0. btrfs pools: unmount inside the nodes while they still live
    for ent in (st or {}).get('loops', []):
        _umount_loop(st, ent, (TestbedError, OSError, subprocess.SubprocessError))
    # 1. polite: SIGTERM the subreapers (they kill their node and reap it)
    rpids = [p for p, _ in reapers if _pid_alive(p)]
    for p in rpids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 10
    while rpids and time.monotonic() < end:
        for p in rpids:
            _reap_if_child(p)
        rpids = [p for p in rpids if _pid_alive(p)]
        time.sleep(0.01)
    for p, _ in reapers:
        _reap_if_child(p)
    # 2. impolite: anything left that belongs to us
    problems = []
    left = []
    killed = set()
    for attempt in range(60):
        left = [p for p in _find_leftovers(d, prefix, mntns) if _pid_alive(p)]
        if not left:
            break
        killed.update(left)
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        for p in left:
            _reap_if_child(p)
    else:
        problems.append('processes survived: %s' % left)
    # Dead but unreaped processes whose parent is PID 1 (reapers orphaned after
    # the `up` CLI exited): PID 1 here reaps only after ~1.5 s.  Wait for them,
    # so that nothing of the testbed is visible in ps when down() returns.
    zombies = set(p for p, _ in reapers) | killed
    end = time.monotonic() + 3
    while time.monotonic() < end:
        for p in zombies:
            _reap_if_child(p)
        zombies = set(p for p in zombies if _is_zombie(p))
        if not zombies:
            break
        time.sleep(0.02)
    # 3. namespaces (deleting the hub also deletes veths and the bridge)
    if prefix:
        problems += _net_teardown(prefix)
    # 4. loop devices of btrfs pools (their mounts went with the nodes' namespaces)
    problems += _detach_loops_under(d)
    # 5. files
    if os.path.exists(d):
        try:
            shutil.rmtree(d)
        except OSError as e:
            problems.append('rmtree %s: %s' % (d, e))
    return problems

