"""The daemon as a program: signals, configuration reload, fstab mounts, stable inode numbers
and export handles across restarts, command line."""
import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import (DAEMON, NODES, libvirtd_complaints, libvirtd_log_sizes, mounted, read,
                      read_or_errno, wait_for, write_atomic)


def own_conf(bed, workdir, nodes=NODES, extra=''):
    d = os.path.join(workdir, 'etc')
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, 'horcrux.conf')
    with open(path, 'w') as f:
        f.write(bed.conf_text(nodes) + extra)
    return path


def ls(path):
    p = subprocess.run(['ls', path], capture_output=True, text=True, timeout=10)
    return p.stdout.split() if p.returncode == 0 else p.stderr


# ---------------------------------------------------------------- signals

def test_quick_stops_leave_libvirtd_sound(daemons, bed):
    """A daemon stopped right after it mounted, while its nodes are still subscribing to events,
    unsubscribes and disconnects before it exits: no node's libvirtd sees a client vanish in the
    middle of an event registration (before the fix about 1 stop in 75 did that)."""
    logs = libvirtd_log_sizes(bed.dir)
    pids = {n: open(os.path.join(bed.dir, 'nodes', n, 'libvirtd.pid')).read() for n in NODES}
    t0 = time.monotonic()
    runs = 100
    for k in range(runs):
        d = daemons.start(wait_node=None)
        time.sleep((k % 10) * 0.002)
        assert d.stop(signal.SIGTERM, timeout=10) == 0, d.log_text()[-2000:]
        d.force_cleanup()
    dt = time.monotonic() - t0
    print('\n[daemon] %d start/stop cycles in %.1f s' % (runs, dt))
    assert libvirtd_complaints(bed.dir, logs) == []
    assert {n: open(os.path.join(bed.dir, 'nodes', n, 'libvirtd.pid')).read()
            for n in NODES} == pids


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_unmounts_cleanly(daemons, sig):
    d = daemons.start()
    assert read(os.path.join(d.mnt, 'nodes', 'n1', 'status')) == 'online\n'
    t0 = time.monotonic()
    rc = d.stop(sig, timeout=10)
    dt = time.monotonic() - t0
    print('\n[daemon] %s: exit code %r after %.3fs' % (sig.name, rc, dt))
    assert not mounted(d.mnt), 'still mounted after %s' % sig.name
    assert rc == 0, 'exit code %r after %s (log %s)' % (rc, sig.name, d.log)
    assert 'unmounting' in d.log_text()


def _ignore_stop_signals():
    # as `nohup` or `&` in a non-interactive shell leave them (SIGTERM too, for good measure)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_unmounts_when_started_ignoring_it(daemons, sig):
    d = daemons.new()
    d.preexec = _ignore_stop_signals
    d.start()
    with open('/proc/%d/status' % d.proc.pid) as f:
        ign = int(next(l for l in f if l.startswith('SigIgn:')).split()[1], 16)
    assert not ign & (1 << (sig - 1)), 'the daemon left %s ignored' % sig.name
    rc = d.stop(sig, timeout=10)
    assert not mounted(d.mnt), 'still mounted after %s' % sig.name
    assert rc == 0, 'exit code %r after %s (log %s)' % (rc, sig.name, d.log)


def test_sigterm_right_after_reload_exits(daemons, bed, workdir):
    # seen hanging: SIGTERM just after a reload removed a node left the daemon in
    # fuse_session_loop_mt (workers in read(/dev/fuse), main in sem_wait), mount still there
    conf = own_conf(bed, workdir)
    for k in range(4):
        write_atomic(conf, bed.conf_text(NODES))
        d = daemons.start(conf=conf, wait_node=NODES)
        nodes = os.path.join(d.mnt, 'nodes')
        with open(conf, 'w') as f:
            f.write(bed.conf_text(['n1', 'n3']))
        assert wait_for(lambda: ls(nodes) == ['n1', 'n3'], 2.0)[0]
        rc = d.stop(signal.SIGTERM, timeout=5)
        hung = rc is None
        if hung:
            d.force_cleanup()   # dumps the threads' stacks into the log
        assert not hung, 'round %d: daemon still running 5 s after SIGTERM (stacks in %s)' % (
            k, d.log)
        assert not mounted(d.mnt)


# ---------------------------------------------------------------- configuration reload

def test_reload_remove_and_add_node(daemons, bed, workdir):
    conf = own_conf(bed, workdir)
    d = daemons.start(conf=conf, wait_node=NODES)
    nodes = os.path.join(d.mnt, 'nodes')
    assert ls(nodes) == NODES
    write_atomic(conf, bed.conf_text(['n1', 'n2']))
    v, dt = wait_for(lambda: ls(nodes) == ['n1', 'n2'], 2.0)
    print('\n[daemon] n3 gone from ls nodes %.3fs after the rewrite' % dt)
    assert v, ls(nodes)
    v, _ = wait_for(lambda: not os.path.exists(os.path.join(nodes, 'n3')), 2.0)
    assert v, 'nodes/n3 still resolves'
    cs = json.loads(read(os.path.join(d.mnt, 'cluster', 'status')))
    assert cs['nodes']['total'] == 2 and cs['vms']['total'] == 4, cs
    assert read(os.path.join(nodes, 'n1', 'vms', '100', 'state')) == 'running\n'

    write_atomic(conf, bed.conf_text(NODES))
    v, dt = wait_for(lambda: ls(nodes) == NODES, 2.0)
    print('[daemon] n3 back in ls nodes %.3fs after the rewrite' % dt)
    assert v, ls(nodes)
    st = os.path.join(nodes, 'n3', 'status')
    v, dt2 = wait_for(lambda: read(st) == 'online\n', 5.0)
    print('[daemon] ... and online %.3fs later' % dt2)
    assert v, read_or_errno(st)
    assert read(os.path.join(nodes, 'n3', 'vms', '300', 'state')) == 'running\n'
    cs = json.loads(read(os.path.join(d.mnt, 'cluster', 'status')))
    assert cs['nodes']['total'] == 3 and cs['vms']['total'] == 6, cs


def test_reload_in_place_rewrite(daemons, bed, workdir):
    # not every tool renames: an in-place rewrite (open O_TRUNC, write, close) is seen too
    conf = own_conf(bed, workdir)
    d = daemons.start(conf=conf, wait_node=NODES)
    nodes = os.path.join(d.mnt, 'nodes')
    with open(conf, 'w') as f:
        f.write(bed.conf_text(['n1', 'n3']))
    v, dt = wait_for(lambda: ls(nodes) == ['n1', 'n3'], 2.0)
    assert v, ls(nodes)


def test_invalid_config_keeps_nodes(daemons, bed, workdir):
    conf = own_conf(bed, workdir)
    d = daemons.start(conf=conf, wait_node=NODES)
    nodes = os.path.join(d.mnt, 'nodes')
    write_atomic(conf, '[node n1]\nuri = %s\nthis is not a setting\n[bogus section]\n' % bed.uri('n1'))
    v, _ = wait_for(lambda: 'this is not' in d.log_text() or 'expected' in d.log_text()
                    or 'reloading' in d.log_text(), 2.0)
    time.sleep(0.3)
    assert d.proc.poll() is None, 'daemon exited on an invalid configuration'
    assert ls(nodes) == NODES
    for n in NODES:
        assert read(os.path.join(nodes, n, 'status')) == 'online\n'
    assert read(os.path.join(nodes, 'n2', 'vms', '200', 'state')) == 'running\n'
    assert '%s:3' % conf in d.log_text(), 'the log should name the file and line'
    # an empty file is a valid configuration with no nodes, but a removed one is not a change
    os.unlink(conf)
    time.sleep(0.3)
    assert ls(nodes) == NODES
    # a good configuration after a bad one is taken again
    write_atomic(conf, bed.conf_text(['n2']))
    v, _ = wait_for(lambda: ls(nodes) == ['n2'], 2.0)
    assert v, ls(nodes)


def test_node_with_missing_socket(daemons, bed, workdir):
    ghost_sock = os.path.join(workdir, 'no-such-dir', 'libvirt-sock')
    conf = own_conf(bed, workdir, ['n1', 'n2'],
                    '[node ghost]\nuri = qemu+unix:///system?socket=%s\n' % ghost_sock)
    d = daemons.start(conf=conf, wait_node=['n1', 'n2'])
    nodes = os.path.join(d.mnt, 'nodes')
    assert ls(nodes) == ['ghost', 'n1', 'n2']
    st = os.path.join(nodes, 'ghost', 'status')
    v, dt = wait_for(lambda: read(st) == 'offline\n', 2.0)
    assert v, read_or_errno(st)
    info = json.loads(read(os.path.join(nodes, 'ghost', 'info.json')))
    assert info['status'] == 'offline' and info['host'] is None
    assert info['last_error'] and ghost_sock in info['last_error'], info['last_error']
    t0 = time.monotonic()
    assert read_or_errno(os.path.join(nodes, 'ghost', 'vms', 'x', 'state')) == errno.EHOSTDOWN
    assert read_or_errno(os.path.join(nodes, 'ghost', 'metrics.json')) == errno.EHOSTDOWN
    assert time.monotonic() - t0 < 1.0
    assert ls(os.path.join(nodes, 'n1', 'vms')) == ['100', '101']
    assert read(os.path.join(nodes, 'n2', 'vms', '200', 'state')) == 'running\n'
    cs = json.loads(read(os.path.join(d.mnt, 'cluster', 'status')))
    assert cs['nodes'] == {'total': 3, 'online': 2, 'offline': 1, 'connecting': 0}, cs
    assert cs['health'] == 'degraded'


# ---------------------------------------------------------------- fstab: mount -t fuse.horcruxfs

def _pids_of(mnt):
    pids = []
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            argv = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b'horcruxfs' and mnt.encode() in argv:
            pids.append(int(p))
    return pids


# util-linux mount runs /sbin/mount.fuse3 without the caller's PATH, and mount.fuse3 runs
# "/bin/sh -c 'horcruxfs CONF MNT -o ...'": the shell's default PATH is what finds the daemon.
HELPER_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


def _fstab_mount(bed, workdir, mount_args, env):
    mnt = os.path.join(workdir, 'fstab-mnt')
    os.mkdir(mnt)
    pids = []
    try:
        p = subprocess.run(['mount'] + mount_args(mnt) + ['-o', 'loglevel=info'],
                           capture_output=True, text=True, env=env, timeout=30)
        assert p.returncode == 0, p.stderr
        assert mounted(mnt)
        pids = _pids_of(mnt)
        assert len(pids) == 1, pids
        line = [l for l in open('/proc/mounts') if ' %s ' % mnt in l][0]
        assert line.split()[0] == 'horcrux' and line.split()[2] == 'fuse.horcruxfs', line
        v, _ = wait_for(lambda: read(os.path.join(mnt, 'nodes', 'n1', 'status')) == 'online\n', 10)
        assert v, read_or_errno(os.path.join(mnt, 'nodes', 'n1', 'status'))
        assert read(os.path.join(mnt, 'nodes', 'n1', 'vms', '100', 'state')) == 'running\n'
        p = subprocess.run(['umount', mnt], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert not mounted(mnt)
        v, dt = wait_for(lambda: not any(os.path.exists('/proc/%d' % x) for x in pids), 10)
        assert v, 'daemon %s still running after umount' % pids
    finally:
        if mounted(mnt):
            subprocess.run(['fusermount3', '-uz', mnt], capture_output=True)
        for x in pids:
            try:
                os.kill(x, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_fstab_mount_type_fuse_horcruxfs(bed, workdir):
    # fstab: CONF  /mnt  fuse.horcruxfs  loglevel=info  0 0
    # mount(8) runs /sbin/mount.fuse3 with a fixed PATH (util-linux drops the caller's), so the
    # daemon must be installed where that PATH looks, as an admin would: the test installs it
    # in /usr/local/sbin (a symlink to the build) for its duration.
    env = dict(os.environ, ASAN_OPTIONS='detect_leaks=0')
    link = '/usr/local/sbin/horcruxfs'
    made = False
    if not os.path.lexists(link):
        os.makedirs('/usr/local/sbin', exist_ok=True)
        os.symlink(DAEMON, link)
        made = True
    try:
        found = shutil.which('horcruxfs', path=HELPER_PATH)
        assert found and os.path.samefile(found, DAEMON), (
            'mount.fuse3 would run %s, not the daemon under test %s' % (found, DAEMON))
        _fstab_mount(bed, workdir, lambda mnt: ['-t', 'fuse.horcruxfs', bed.conf, mnt], env)
    finally:
        if made:
            os.unlink(link)


def test_fstab_mount_type_fuse_hash(bed, workdir):
    # fstab: /path/to/horcruxfs#CONF  /mnt  fuse  loglevel=info  0 0  (same helper, the
    # program named by its path, so it works whatever the helper's PATH)
    env = dict(os.environ, ASAN_OPTIONS='detect_leaks=0')
    _fstab_mount(bed, workdir, lambda mnt: ['-t', 'fuse', DAEMON + '#' + bed.conf, mnt], env)


# ---------------------------------------------------------------- identity across restarts

PATHS = ['', 'README', 'version', 'cluster', 'cluster/status', 'nodes', 'nodes/n1',
         'nodes/n1/status', 'nodes/n1/info.json', 'nodes/n1/vms', 'nodes/n1/vms/100',
         'nodes/n1/vms/100/state', 'nodes/n1/vms/100/config.json', 'nodes/n2/vms/201/domain.xml',
         'nodes/n3/vms/300/metrics.json', 'nodes/n3/metrics.json']


def test_inode_numbers_survive_restart(daemons, bed):
    d = daemons.start(wait_node=NODES)
    before = {p: os.stat(os.path.join(d.mnt, p)).st_ino for p in PATHS}
    assert len(set(before.values())) == len(PATHS), before
    # another daemon on another mount point gives the same numbers
    other = daemons.start(wait_node=NODES)
    assert {p: os.stat(os.path.join(other.mnt, p)).st_ino for p in PATHS} == before
    d.restart(wait_node=NODES)
    after = {p: os.stat(os.path.join(d.mnt, p)).st_ino for p in PATHS}
    assert after == before
    # readdir reports the same numbers as stat
    for n in NODES:
        with os.scandir(os.path.join(d.mnt, 'nodes', n)) as it:
            for e in it:
                assert e.inode() == os.stat(e.path).st_ino, e.path


AT_FDCWD = -100
libc = ctypes.CDLL(None, use_errno=True)


class FileHandle(ctypes.Structure):
    _fields_ = [('handle_bytes', ctypes.c_uint), ('handle_type', ctypes.c_int),
                ('f_handle', ctypes.c_ubyte * 128)]


def name_to_handle(path):
    fh = FileHandle()
    fh.handle_bytes = 128
    mount_id = ctypes.c_int()
    r = libc.name_to_handle_at(AT_FDCWD, path.encode(), ctypes.byref(fh),
                               ctypes.byref(mount_id), 0)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, 'name_to_handle_at %s: %s' % (path, os.strerror(e)))
    return fh


def open_by_handle(mnt, fh, flags=os.O_RDONLY):
    mfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), flags)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, 'open_by_handle_at: %s' % os.strerror(e))
        return fd
    finally:
        os.close(mfd)


def read_fd(fd):
    out = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            return b''.join(out)
        out.append(b)


def test_export_handles_survive_restart(daemons, bed):
    d = daemons.start(wait_node=NODES)
    files = ['nodes/n1/vms/101/config.json', 'nodes/n2/vms/200/state', 'nodes/n3/uri',
             'cluster/status']
    handles, content = {}, {}
    for f in files:
        p = os.path.join(d.mnt, f)
        handles[f] = name_to_handle(p)
        content[f] = read(p, 'rb')
    dh = name_to_handle(os.path.join(d.mnt, 'nodes', 'n1', 'vms'))
    # before the restart (kernel inode cached) ...
    fd = open_by_handle(d.mnt, handles[files[0]])
    try:
        assert read_fd(fd) == content[files[0]]
    finally:
        os.close(fd)
    d.restart(wait_node=NODES)
    # ... and after it: the kernel knows nothing, the daemon finds the object by its number
    for f in files:
        fd = open_by_handle(d.mnt, handles[f])
        try:
            assert read_fd(fd) == content[f], f
            assert os.fstat(fd).st_ino == os.stat(os.path.join(d.mnt, f)).st_ino
        finally:
            os.close(fd)
    fd = open_by_handle(d.mnt, dh, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert sorted(os.listdir(fd)) == ['100', '101']
    finally:
        os.close(fd)


def test_export_handle_of_deleted_vm_is_stale(daemons, bed, workdir):
    name = 'hxit-gone'
    x = ET.fromstring(bed.virsh('n2', 'dumpxml', '--inactive', '201'))
    x.find('name').text = name
    x.remove(x.find('uuid'))
    for iface in x.findall('devices/interface'):
        iface.remove(iface.find('mac'))
    xf = os.path.join(workdir, 'gone.xml')
    with open(xf, 'w') as f:
        f.write(ET.tostring(x, encoding='unicode'))
    d = daemons.start(wait_node=NODES)
    bed.virsh('n2', 'define', xf)
    try:
        st = os.path.join(d.mnt, 'nodes', 'n2', 'vms', name, 'state')
        v, _ = wait_for(lambda: read(st) == 'shutoff\n', 2.0)
        assert v, read_or_errno(st)
        fh = name_to_handle(st)
    finally:
        bed.virsh('n2', 'undefine', name)
    d.restart(wait_node=NODES)
    with pytest.raises(OSError) as ei:
        os.close(open_by_handle(d.mnt, fh))
    assert ei.value.errno == errno.ESTALE, ei.value


# ---------------------------------------------------------------- command line

def run_daemon(*args, timeout=20):
    env = dict(os.environ, ASAN_OPTIONS='detect_leaks=0')
    return subprocess.run([DAEMON] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help():
    p = run_daemon('--help')
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert 'usage: horcruxfs' in out and 'config=FILE' in out and 'loglevel' in out
    p = run_daemon('-h')
    assert p.returncode == 0 and 'usage: horcruxfs' in p.stdout + p.stderr


@pytest.mark.parametrize('flag', ['-V', '--version'])
def test_version_flag(flag):
    # as a user types it: no mount point, no configuration file
    p = run_daemon(flag)
    assert p.returncode == 0, 'rc %d: %s' % (p.returncode, (p.stderr or p.stdout).strip())
    assert 'horcruxfs 0.1.0' in p.stdout + p.stderr


def test_missing_config_fails_mount(workdir):
    mnt = os.path.join(workdir, 'mnt-missing')
    os.mkdir(mnt)
    conf = os.path.join(workdir, 'no-such.conf')
    p = run_daemon('-f', '-o', 'config=' + conf, mnt)
    assert p.returncode != 0
    assert conf in p.stderr and 'No such file or directory' in p.stderr, p.stderr
    assert not mounted(mnt)


def test_broken_config_fails_mount(workdir):
    mnt = os.path.join(workdir, 'mnt-broken')
    os.mkdir(mnt)
    conf = os.path.join(workdir, 'broken.conf')
    with open(conf, 'w') as f:
        f.write('[node n1]\nuri = qemu:///system\n[node n1]\nuri = qemu:///system\n')
    p = run_daemon('-f', '-o', 'config=' + conf, mnt)
    assert p.returncode != 0
    assert '%s:3' % conf in p.stderr and 'twice' in p.stderr, p.stderr
    assert not mounted(mnt)
