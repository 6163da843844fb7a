"""A node's subreaper: the process (`hxtestbed.py _node ...`) that enters the node's network
namespace, makes its own mount and UTS namespaces with the node's directories bind-mounted
over libvirt's paths, starts virtlogd and libvirtd there, reaps every child (orphaned qemu
included), restarts a daemon that ended by itself as systemd does, and stops the node on
SIGTERM.  _spawn_reaper() starts one from the root namespace."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from .host import (CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUTS, MNT_DETACH, MS_BIND, MS_MOVE,
                   MS_PRIVATE, MS_REC, PR_SET_CHILD_SUBREAPER, _all_pids, _check, _mount,
                   _ns_ino, _pid_alive, libc)
from .nodedir import MOUNTS
from .state import HERE, PYTHON

RESTART_SEC = 0.1   # systemd's default RestartSec for libvirtd.service (Restart=on-failure)


def _node_main(args):
    """Runs as the node's subreaper.  Enters the namespaces, starts virtlogd and
    libvirtd, reaps every child (incl. orphaned qemu), obeys SIGUSR1/SIGTERM."""
    nd = os.path.abspath(args.nodedir)
    lc = libc()
    _check(lc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 'prctl')
    sigs = [signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP]
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)

    dfd = os.open(nd, os.O_RDONLY | os.O_DIRECTORY)   # still usable after /run is covered

    def note(name, text):
        fd = os.open(name + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dfd)
        os.write(fd, text.encode())
        os.close(fd)
        os.rename(name + '.tmp', name, src_dir_fd=dfd, dst_dir_fd=dfd)

    def unnote(name):
        try:
            os.unlink(name, dir_fd=dfd)
        except OSError:
            pass

    def log(msg):
        sys.stderr.write('[%s %.3f] %s\n' % (args.node, time.time(), msg))
        sys.stderr.flush()

    with open('/run/netns/' + args.netns) as f:
        _check(lc.setns(f.fileno(), CLONE_NEWNET), 'setns net')
    _check(lc.unshare(CLONE_NEWNS | CLONE_NEWUTS), 'unshare')
    _mount('none', '/', None, MS_REC | MS_PRIVATE)
    # Drop our copies of the named-netns mounts, so that this node's mount
    # namespace does not keep other (or our own) network namespaces alive.
    with open('/proc/self/mountinfo') as f:
        mps = [l.split()[4] for l in f]
    for mp in sorted((m for m in mps if m.startswith('/run/netns/')), reverse=True):
        lc.umount2(mp.encode(), MNT_DETACH)
    # A sysfs of our own network namespace (so /sys/class/net, and libvirt's
    # nodedev/interface drivers, show the node's eth0, not the host's NICs);
    # carry the host's cgroup mounts over onto it.
    cg = os.path.join(nd, '.cgroup')
    os.makedirs(cg, exist_ok=True)
    try:
        _mount('/sys/fs/cgroup', cg, None, MS_BIND | MS_REC)
        _mount('sysfs', '/sys', 'sysfs', 0)
        _mount(cg, '/sys/fs/cgroup', None, MS_MOVE)
    except OSError as e:
        log('own sysfs not possible (%s); using the host one' % e)
    for sub, target in MOUNTS:
        _mount(os.path.join(nd, sub), target, None, MS_BIND | MS_REC)
    socket.sethostname(args.node)
    os.chdir('/')
    note('mntns', '%d\n' % os.stat('/proc/self/ns/mnt').st_ino)

    def unblock():
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setsid()

    children = {}   # role -> pid

    def spawn(role, argv):
        out = open('/var/log/libvirt/%s.out' % role, 'ab')
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             preexec_fn=unblock, close_fds=True)
        out.close()
        children[role] = p.pid
        p.returncode = 0   # we reap ourselves; stop Popen.__del__ from tracking it
        note(role + '.pid', '%d\n' % p.pid)
        log('started %s pid %d' % (role, p.pid))
        return p.pid

    def start_daemons():
        if 'virtlogd' not in children:
            spawn('virtlogd', ['/usr/sbin/virtlogd'])
            end = time.monotonic() + 10
            while not os.path.exists('/run/libvirt/virtlogd-sock') and time.monotonic() < end:
                time.sleep(0.005)
        if 'libvirtd' not in children:
            spawn('libvirtd', ['/usr/sbin/libvirtd'])

    def held(role):
        """kill_libvirtd() leaves <role>.hold: the test wants the daemon down."""
        try:
            os.stat(role + '.hold', dir_fd=dfd)
            return True
        except OSError:
            return False

    restarts = []       # monotonic times of automatic restarts
    pending = []        # roles to start again after RESTART_SEC

    def died(role, pid, status):
        """A daemon that ended on its own (a crash): start it again as systemd does for
        libvirtd.service (Restart=on-failure, RestartSec 100 ms, at most 5 starts in 10 s),
        and record it in 'crashes' so that the test harness can report it."""
        how = ('signal %d%s' % (os.WTERMSIG(status), ' (core dumped)' if os.WCOREDUMP(status)
                                else '') if os.WIFSIGNALED(status)
               else 'exit status %d' % os.WEXITSTATUS(status))
        log('%s pid %d ended by itself: %s' % (role, pid, how))
        fd = os.open('crashes', os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644, dir_fd=dfd)
        os.write(fd, (json.dumps({'time': time.time(), 'role': role, 'pid': pid,
                                  'how': how}) + '\n').encode())
        os.close(fd)
        now = time.monotonic()
        restarts[:] = [t for t in restarts if now - t < 10]
        if len(restarts) >= 5:
            log('%s: start limit hit (5 in 10 s); not restarting' % role)
            return
        restarts.append(now)
        pending.append((now + RESTART_SEC, role))

    def reap():
        """Reap all exited children; False when we have no children at all."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            for role, cpid in list(children.items()):
                if cpid == pid:
                    del children[role]
                    unnote(role + '.pid')
                    log('%s pid %d exited status %d' % (role, pid, status))
                    if stopping:
                        continue
                    try:
                        # killed by kill_libvirtd(): not a crash, whenever its exit is seen
                        os.unlink('killed.%d' % pid, dir_fd=dfd)
                        if not held(role):   # start_libvirtd() came first: start it now
                            pending.append((time.monotonic(), role))
                        continue
                    except FileNotFoundError:
                        pass
                    if not held(role):
                        died(role, pid, status)

    def node_pids():
        me = os.getpid()
        mine = os.stat('/proc/self/ns/mnt').st_ino
        return [p for p in _all_pids() if p != me and _ns_ino(p, 'mnt') == mine]

    def shutdown():
        log('shutting down')
        for role in ('libvirtd', 'virtlogd'):
            if role in children:
                try:
                    os.kill(children[role], signal.SIGTERM)
                except ProcessLookupError:
                    pass
        # guests (qemu) and anything else: no mercy, this is a testbed
        for p in node_pids():
            if p not in children.values():
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 5
        while time.monotonic() < end:
            reap()
            if not [p for p in node_pids() if _pid_alive(p)]:
                break
            time.sleep(0.02)
        for p in node_pids():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # zombies have no readable ns links, so wait until no child is left at
        # all: otherwise they would be re-parented to PID 1 (which reaps slowly)
        end = time.monotonic() + 3
        while time.monotonic() < end and (reap() or node_pids()):
            time.sleep(0.01)
        for name in ('libvirtd.pid', 'virtlogd.pid', 'mntns', 'libvirtd.hold'):
            unnote(name)
        log('bye')

    stopping = False
    start_daemons()
    while True:
        info = signal.sigtimedwait(sigs, 0.05 if pending else 1.0)
        reap()
        if pending and not stopping:
            now = time.monotonic()
            if any(t <= now for t, _ in pending):
                pending[:] = [(t, r) for t, r in pending if t > now]
                start_daemons()
        if info is None:
            continue
        if info.si_signo in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            shutdown()
            return 0
        if info.si_signo in (signal.SIGUSR1, signal.SIGHUP):
            start_daemons()



def _spawn_reaper(n, prefix):
    """Starts node n's subreaper in a session of its own, its output in reaper.log; returns
    its pid (never reaped by subprocess: down() does)."""
    log = open(os.path.join(n['dir'], 'reaper.log'), 'ab')
    p = subprocess.Popen([PYTHON, HERE, '_node', '--nodedir', n['dir'], '--node', n['name'],
                          '--netns', n['netns'], '--prefix', prefix],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         close_fds=True, start_new_session=True)
    log.close()
    p.returncode = 0   # do not let subprocess track/reap it; down() does
    return p.pid
