#!/usr/bin/python3
"""hxtestbed: a cluster-in-a-box of N real libvirtd nodes on one machine.

Each node is a real libvirtd (plus virtlogd) living in its own mount + UTS +
network namespace, below a small child-subreaper process (this module run as
`hxtestbed.py _node ...`).  Inside the node's mount namespace per-node
directories DIR/nodes/<n>/{run,etc,lib,log,cache} are bind-mounted over /run,
/etc/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt.  The
root namespace talks to each node only through its unix socket
DIR/nodes/<n>/run/libvirt/libvirt-sock.

A hub network namespace (<prefix>-hub) holds a bridge br0; every node netns
(<prefix>-<n>) has a veth "eth0" to it with address 10.77.0.(11+i)/24.  Nothing
in the root namespace ever uses those addresses.

Python API (stdlib only):
    up(dir, nodes=3, vms=2, prefix='hxtb', force=False, virt_type='auto') -> dict
    down(dir, prefix=None) -> list of problems (empty when clean)
    status(dir) -> dict
    uri(dir, node) -> str
    kill_libvirtd(dir, node)
    start_libvirtd(dir, node, timeout=15)
    virsh(dir, node, *args) -> str     (raises TestbedError on failure)
    add_btrfs_pool(dir, node, name='fast', size_mib=256) -> dict
                                       a dir pool on btrfs (loop file) inside the node
    remove_btrfs_pool(dir, node, name='fast')

Subreaper control: SIGUSR1 = (re)start libvirtd (and virtlogd) if not
running; SIGTERM/SIGINT = stop everything in the node and exit.  A daemon that
ends by itself is started again after RESTART_SEC, as systemd does for
libvirtd.service (Restart=on-failure), and recorded in DIR/nodes/<n>/crashes
(crashes(dir) reads them); kill_libvirtd() marks libvirtd held so it stays down.
"""

import argparse
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET

DEFAULT_DIR = '/run/horcrux-testbed'
DEFAULT_PREFIX = 'hxtb'
SUBNET = '10.77.0.'
UUID_NS = uuid.UUID('6f1c2a3e-8d4b-5a7c-9e0f-1b2c3d4e5f60')
PYTHON = '/usr/bin/python3'
HERE = os.path.abspath(__file__)
META_NS = 'https://horcrux.dev/testbed'

# bind-mount layout: per-node subdir -> path inside the node.  /run must be last
# (DIR itself may live below /run).
RESTART_SEC = 0.1   # systemd's default RestartSec for libvirtd.service (Restart=on-failure)
MOUNTS = [('etc', '/etc/libvirt'), ('lib', '/var/lib/libvirt'),
          ('log', '/var/log/libvirt'), ('cache', '/var/cache/libvirt'),
          ('hosts', '/etc/hosts'), ('run', '/run')]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_MOVE = 8192
MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36


class TestbedError(Exception):
    pass


class _StartError(TestbedError):
    pass


_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, '%s: %s' % (what, os.strerror(e)))


def _mount(src, tgt, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None
    _check(libc().mount(enc(src), enc(tgt), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           'mount %s on %s' % (src, tgt))


# ----------------------------------------------------------------- helpers

def _run(cmd, check=True, input=None, timeout=60):
    p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise TestbedError('%s failed (rc=%d): %s' % (' '.join(cmd), p.returncode,
                                                      (p.stderr or p.stdout).strip()))
    return p


def _state_path(d):
    return os.path.join(d, 'testbed.json')


def _load(d):
    d = os.path.abspath(d)
    try:
        with open(_state_path(d)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise TestbedError('no testbed at %s (missing testbed.json)' % d)


def _save(d, st):
    tmp = _state_path(d) + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(st, f, indent=2)
    os.replace(tmp, _state_path(d))


def _node(st, node):
    for n in st['nodes']:
        if n['name'] == node:
            return n
    raise TestbedError('no node %r in testbed (nodes: %s)'
                       % (node, ', '.join(n['name'] for n in st['nodes'])))


def _sock_accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _wait_sock(path, timeout, alive=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _sock_accepts(path):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.01)
    return False


def _pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            data = f.read()
        return data[data.rindex(')') + 2] != 'Z'
    except (OSError, ValueError, IndexError):
        return False


def _is_zombie(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            data = f.read()
        return data[data.rindex(')') + 2] == 'Z'
    except (OSError, ValueError, IndexError):
        return False


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [a.decode(errors='replace') for a in f.read().split(b'\0') if a]
    except OSError:
        return []


def _ns_ino(pid, kind):
    try:
        return os.stat('/proc/%d/ns/%s' % (pid, kind)).st_ino
    except OSError:
        return None


def _all_pids():
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def _netns_list():
    p = _run(['ip', 'netns', 'list'], check=False)
    return [l.split()[0] for l in p.stdout.splitlines() if l.strip()]


def kvm_usable():
    """Really try to create a VM through /dev/kvm (KVM_GET_API_VERSION, KVM_CREATE_VM)."""
    try:
        fd = os.open('/dev/kvm', os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, 0xAE00) != 12:
            return False
        vmfd = fcntl.ioctl(fd, 0xAE01, 0)
        os.close(vmfd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def node_uuid(prefix, node):
    return str(uuid.uuid5(UUID_NS, 'host/%s/%s' % (prefix, node)))


# ----------------------------------------------------------------- config files

LIBVIRTD_CONF = '''# written by tools/testbed
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_ro_perms = "0777"
unix_sock_rw_perms = "0770"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "%(uuid)s"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
'''

QEMU_CONF = '''# written by tools/testbed
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
'''

VIRTLOGD_CONF = '''# written by tools/testbed
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
'''


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def _prepare_node_dir(nd, prefix, name, hosts):
    for sub, _ in MOUNTS:
        if sub != 'hosts':
            os.makedirs(os.path.join(nd, sub), exist_ok=True)
    for sub in ('run/libvirt', 'etc/qemu', 'etc/storage', 'lib/images', 'lib/qemu',
                'log/qemu', 'xml'):
        os.makedirs(os.path.join(nd, sub), exist_ok=True)
    _write(os.path.join(nd, 'etc/libvirtd.conf'), LIBVIRTD_CONF % {'uuid': node_uuid(prefix, name)})
    _write(os.path.join(nd, 'etc/qemu.conf'), QEMU_CONF)
    _write(os.path.join(nd, 'etc/virtlogd.conf'), VIRTLOGD_CONF)
    _write(os.path.join(nd, 'etc/libvirt.conf'), '# written by tools/testbed\n')
    # own /etc/hosts: node names resolve to their testbed addresses, never via DNS
    _write(os.path.join(nd, 'hosts'), hosts)


# ----------------------------------------------------------------- XML

def domain_xml(prefix, node, name, k, j, virt_type, disk_path, with_meta=False):
    dom = ET.Element('domain', type=virt_type)
    ET.SubElement(dom, 'name').text = name
    ET.SubElement(dom, 'uuid').text = str(uuid.uuid5(UUID_NS, 'dom/%s/%s/%s' % (prefix, node, name)))
    if with_meta:
        ET.SubElement(dom, 'title').text = 'testbed guest %s' % name
        ET.SubElement(dom, 'description').text = (
            'Horcrux testbed guest %s on node %s (no OS, disk only)' % (name, node))
        md = ET.SubElement(dom, 'metadata')
        ET.register_namespace('hx', META_NS)
        hx = ET.SubElement(md, '{%s}testbed' % META_NS)
        ET.SubElement(hx, '{%s}node' % META_NS).text = node
        ET.SubElement(hx, '{%s}role' % META_NS).text = 'demo'
    ET.SubElement(dom, 'memory', unit='MiB').text = '64'
    ET.SubElement(dom, 'currentMemory', unit='MiB').text = '64'
    ET.SubElement(dom, 'vcpu', placement='static').text = '1'
    os_ = ET.SubElement(dom, 'os')
    ET.SubElement(os_, 'type', arch='x86_64', machine='pc').text = 'hvm'
    ET.SubElement(os_, 'boot', dev='hd')
    ET.SubElement(dom, 'on_poweroff').text = 'destroy'
    ET.SubElement(dom, 'on_reboot').text = 'restart'
    ET.SubElement(dom, 'on_crash').text = 'destroy'
    dev = ET.SubElement(dom, 'devices')
    ET.SubElement(dev, 'emulator').text = '/usr/bin/qemu-system-x86_64'
    disk = ET.SubElement(dev, 'disk', type='file', device='disk')
    ET.SubElement(disk, 'driver', name='qemu', type='qcow2')
    ET.SubElement(disk, 'source', file=disk_path)
    ET.SubElement(disk, 'target', dev='vda', bus='virtio')
    nic = ET.SubElement(dev, 'interface', type='user')
    ET.SubElement(nic, 'mac', address='52:54:00:77:%02x:%02x' % (k, j))
    ET.SubElement(nic, 'model', type='virtio')
    ET.SubElement(dev, 'serial', type='pty')
    ET.SubElement(dev, 'memballoon', model='none')
    ET.indent(dom)
    return ET.tostring(dom, encoding='unicode')


def pool_xml(path, name='default'):
    pool = ET.Element('pool', type='dir')
    ET.SubElement(pool, 'name').text = name
    tgt = ET.SubElement(pool, 'target')
    ET.SubElement(tgt, 'path').text = path
    ET.indent(pool)
    return ET.tostring(pool, encoding='unicode')


# ----------------------------------------------------------------- subreaper (_node)

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


# ----------------------------------------------------------------- up

def _net_setup(prefix, names):
    hub = prefix + '-hub'
    _run(['ip', 'netns', 'add', hub])
    _run(['ip', '-n', hub, 'link', 'set', 'lo', 'up'])
    _run(['ip', '-n', hub, 'link', 'add', 'br0', 'type', 'bridge'])
    _run(['ip', '-n', hub, 'link', 'set', 'br0', 'up'])
    for i, n in enumerate(names):
        ns = '%s-%s' % (prefix, n)
        _run(['ip', 'netns', 'add', ns])
        _run(['ip', '-n', hub, 'link', 'add', 'v-' + n, 'type', 'veth',
              'peer', 'name', 'eth0', 'netns', ns])
        _run(['ip', '-n', hub, 'link', 'set', 'v-' + n, 'master', 'br0', 'up'])
        _run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
        _run(['ip', '-n', ns, 'addr', 'add', '%s%d/24' % (SUBNET, 11 + i), 'dev', 'eth0'])
        _run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])


def _virsh_uri(u, *args, input=None, check=True):
    p = _run(['virsh', '-q', '-c', u] + list(args), input=input, check=False)
    if check and p.returncode != 0:
        raise TestbedError('virsh -c %s %s: %s' % (u, ' '.join(args),
                                                   (p.stderr or p.stdout).strip()))
    return p.stdout


def _populate(st, n, vms, virt_type):
    u = n['uri']
    nd = n['dir']
    k = n['index']
    _virsh_uri(u, 'pool-define', '/dev/stdin', input=pool_xml('/var/lib/libvirt/images'))
    _virsh_uri(u, 'pool-autostart', 'default')
    _virsh_uri(u, 'pool-start', 'default')
    for j in range(vms):
        name = str(k * 100 + j)
        img = os.path.join(nd, 'lib/images', name + '.qcow2')
        _run(['qemu-img', 'create', '-q', '-f', 'qcow2', img, '64M'])
        xml = domain_xml(st['prefix'], n['name'], name, k, j, virt_type,
                         '/var/lib/libvirt/images/%s.qcow2' % name, with_meta=(j == 0))
        _write(os.path.join(nd, 'xml', name + '.xml'), xml)
        _virsh_uri(u, 'define', '/dev/stdin', input=xml)
    _virsh_uri(u, 'pool-refresh', 'default')
    if vms:
        try:
            _virsh_uri(u, 'start', str(k * 100))
        except TestbedError as e:
            raise _StartError(str(e))


def _exists(d):
    return os.path.exists(_state_path(d)) or os.path.isdir(os.path.join(d, 'nodes'))


def up(dir=DEFAULT_DIR, nodes=3, vms=2, prefix=DEFAULT_PREFIX, force=False, virt_type='auto',
       btrfs=False):
    d = os.path.abspath(dir)
    if os.geteuid() != 0:
        raise TestbedError('testbed must run as root')
    if not prefix or len(prefix) > 8 or not prefix.replace('-', '').replace('_', '').isalnum():
        raise TestbedError('prefix must be 1-8 chars [A-Za-z0-9_-]')
    if not (1 <= nodes <= 9):
        raise TestbedError('nodes must be 1..9')
    if not (0 <= vms <= 99):
        raise TestbedError('vms must be 0..99')
    mine = [ns for ns in _netns_list() if ns.startswith(prefix + '-')]
    if _exists(d) or mine:
        if not force:
            what = ('a testbed already exists at %s' % d) if _exists(d) else \
                ('network namespaces with prefix %r exist: %s' % (prefix, ' '.join(mine)))
            raise TestbedError(what + '; run `testbed down --dir %s` first or use --force' % d)
        down(d, prefix=prefix)
    t0 = time.monotonic()
    os.makedirs(os.path.join(d, 'nodes'), exist_ok=True)
    names = ['n%d' % (i + 1) for i in range(nodes)]
    if virt_type == 'auto':
        virt_type = 'kvm' if kvm_usable() else 'qemu'
    elif virt_type not in ('kvm', 'qemu'):
        raise TestbedError('virt_type must be auto, kvm or qemu')
    st = {'version': 1, 'dir': d, 'prefix': prefix, 'hub_netns': prefix + '-hub',
          'virt_type': virt_type, 'vms': vms, 'created': time.time(), 'nodes': []}
    for i, n in enumerate(names):
        nd = os.path.join(d, 'nodes', n)
        sock = os.path.join(nd, 'run/libvirt/libvirt-sock')
        st['nodes'].append({
            'name': n, 'index': i + 1, 'dir': nd, 'netns': '%s-%s' % (prefix, n),
            'address': '%s%d' % (SUBNET, 11 + i), 'socket': sock,
            'uri': 'qemu+unix:///system?socket=' + sock, 'host_uuid': node_uuid(prefix, n),
            'reaper_pid': None})
    _save(d, st)
    try:
        _net_setup(prefix, names)
        hosts = '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' + ''.join(
            '%s %s\n' % (n['address'], n['name']) for n in st['nodes'])
        for n in st['nodes']:
            _prepare_node_dir(n['dir'], prefix, n['name'], hosts)
            log = open(os.path.join(n['dir'], 'reaper.log'), 'ab')
            p = subprocess.Popen([PYTHON, HERE, '_node', '--nodedir', n['dir'], '--node', n['name'],
                                  '--netns', n['netns'], '--prefix', prefix],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 close_fds=True, start_new_session=True)
            log.close()
            p.returncode = 0   # do not let subprocess track/reap it; down() does
            n['reaper_pid'] = p.pid
        _save(d, st)
        for n in st['nodes']:
            pid = n['reaper_pid']
            if not _wait_sock(n['socket'], 30, alive=lambda: _pid_alive(pid)):
                raise TestbedError('libvirtd of %s did not come up; see %s/reaper.log and '
                                   '%s/log/libvirtd.log' % (n['name'], n['dir'], n['dir']))
        t_daemons = time.monotonic() - t0
        # populate nodes in parallel
        errs = []

        def work(n):
            try:
                _populate(st, n, vms, st['virt_type'])
            except Exception as e:      # noqa
                errs.append((n, e))
        ths = [threading.Thread(target=work, args=(n,)) for n in st['nodes']]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        if errs and st['virt_type'] == 'kvm' and all(isinstance(e, _StartError) for _, e in errs):
            # /dev/kvm looked fine but guests do not start: fall back to TCG
            sys.stderr.write('testbed: kvm guests do not start (%s); using type qemu (TCG)\n'
                             % str(errs[0][1])[-200:])
            st['virt_type'] = 'qemu'
            for n, _ in errs:
                for j in range(vms):
                    name = str(n['index'] * 100 + j)
                    xml = domain_xml(prefix, n['name'], name, n['index'], j, 'qemu',
                                     '/var/lib/libvirt/images/%s.qcow2' % name, with_meta=(j == 0))
                    _virsh_uri(n['uri'], 'define', '/dev/stdin', input=xml)
                _virsh_uri(n['uri'], 'start', str(n['index'] * 100))
            errs = []
        if errs:
            raise TestbedError('; '.join('%s: %s' % (n['name'], e) for n, e in errs))
        _write_conf(d, st)
        if btrfs:
            for n in st['nodes']:
                add_btrfs_pool(d, n['name'])
            st = _load(d)
        st['bringup_seconds'] = round(time.monotonic() - t0, 3)
        st['daemons_seconds'] = round(t_daemons, 3)
        _save(d, st)
    except BaseException:
        try:
            down(d, prefix=prefix)
        except Exception as e:   # noqa
            sys.stderr.write('testbed: cleanup after failed up also failed: %s\n' % e)
        raise
    return st


def _write_conf(d, st):
    lines = ['# Horcrux daemon configuration (written by tools/testbed)']
    for n in st['nodes']:
        lines.append('[node %s]' % n['name'])
        lines.append('uri = %s' % n['uri'])
    _write(os.path.join(d, 'horcrux.conf'), '\n'.join(lines) + '\n')


# ----------------------------------------------------------------- btrfs pools

def _in_node(n, *cmd):
    """Runs cmd in the node's mount namespace (that of its subreaper)."""
    rp = n.get('reaper_pid')
    if not rp or not _pid_alive(rp):
        raise TestbedError('subreaper of %s is gone' % n['name'])
    return _run(['nsenter', '-t', str(rp), '-m', '--'] + list(cmd), check=False)


def add_btrfs_pool(dir, node, name='fast', size_mib=256):
    """Makes a btrfs filesystem on a loop file DIR/nodes/<node>/<name>.btrfs, mounts it at
    /var/lib/libvirt/<name> inside the node's mount namespace only, and defines and starts a
    dir pool <name> there.  Recorded in testbed.json, so down() unmounts and detaches it."""
    d = os.path.abspath(dir)
    st = _load(d)
    n = _node(st, node)
    if not shutil.which('mkfs.btrfs'):
        raise TestbedError('mkfs.btrfs missing (tools/setup installs btrfs-progs)')
    img = os.path.join(n['dir'], name + '.btrfs')
    target = '/var/lib/libvirt/' + name
    with open(img, 'wb') as f:
        f.truncate(size_mib * 1024 * 1024)
    dev = _run(['losetup', '--find', '--show', img]).stdout.strip()
    ent = {'node': node, 'name': name, 'dev': dev, 'file': img, 'target': target}
    st.setdefault('loops', []).append(ent)
    _save(d, st)
    _run(['mkfs.btrfs', '-q', '-f', dev])
    os.makedirs(os.path.join(n['dir'], 'lib', name), exist_ok=True)   # /var/lib/libvirt/<name>
    p = _in_node(n, 'mount', '-t', 'btrfs', dev, target)
    if p.returncode != 0:
        raise TestbedError('mount %s on %s in %s: %s' % (dev, target, node, p.stderr.strip()))
    _virsh_uri(n['uri'], 'pool-define', '/dev/stdin', input=pool_xml(target, name))
    _virsh_uri(n['uri'], 'pool-start', name)
    return ent


def _drop_loop(st, ent):
    """Unmounts (inside the node, while it lives) and detaches one loop device."""
    try:
        n = _node(st, ent['node'])
        if n.get('reaper_pid') and _pid_alive(n['reaper_pid']):
            _in_node(n, 'umount', ent['target'])
    except TestbedError:
        pass
    problems = []
    p = _run(['losetup', '-d', ent['dev']], check=False)
    if p.returncode != 0 and 'No such device' not in p.stderr:
        problems.append('losetup -d %s: %s' % (ent['dev'], p.stderr.strip()))
    try:
        os.unlink(ent['file'])
    except FileNotFoundError:
        pass
    return problems


def remove_btrfs_pool(dir, node, name='fast'):
    """Undoes add_btrfs_pool: the pool (destroyed, undefined), the mount, the loop device."""
    d = os.path.abspath(dir)
    st = _load(d)
    n = _node(st, node)
    _virsh_uri(n['uri'], 'pool-destroy', name, check=False)
    _virsh_uri(n['uri'], 'pool-undefine', name, check=False)
    problems = []
    keep = []
    for ent in st.get('loops', []):
        if ent['node'] == node and ent['name'] == name:
            problems += _drop_loop(st, ent)
        else:
            keep.append(ent)
    st['loops'] = keep
    _save(d, st)
    if problems:
        raise TestbedError('; '.join(problems))


def _loops_under(d):
    """Loop devices whose backing file lies below d: (device, file)."""
    p = _run(['losetup', '--list', '--noheadings', '--raw', '-O', 'NAME,BACK-FILE'], check=False)
    out = []
    for line in p.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            f = parts[1].replace(' (deleted)', '')
            if f.startswith(d + '/'):
                out.append((parts[0], f))
    return out


# ----------------------------------------------------------------- down

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
        try:
            n = _node(st, ent['node'])
            if n.get('reaper_pid') and _pid_alive(n['reaper_pid']):
                _in_node(n, 'umount', ent['target'])
        except (TestbedError, OSError, subprocess.SubprocessError):
            pass
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
        for ns in _netns_list():
            if ns.startswith(prefix + '-'):
                p = _run(['ip', 'netns', 'delete', ns], check=False)
                if p.returncode != 0:
                    problems.append('ip netns delete %s: %s' % (ns, p.stderr.strip()))
        # `ip netns add` turned /run/netns into a (shared) self-bind mount; drop it
        # again when no named netns is left (not lazy: fails harmlessly if in use).
        try:
            with open('/proc/self/mountinfo') as f:
                mounted = any(l.split()[4] == '/run/netns' for l in f)
            if mounted and not os.listdir('/run/netns'):
                libc().umount2(b'/run/netns', 0)
            if not os.listdir('/run/netns'):
                os.rmdir('/run/netns')
        except OSError:
            pass
    # 4. loop devices of btrfs pools (their mounts went with the nodes' namespaces)
    for dev, f in _loops_under(d):
        p = _run(['losetup', '-d', dev], check=False)
        if p.returncode != 0:
            problems.append('losetup -d %s (%s): %s' % (dev, f, p.stderr.strip()))
    # 5. files
    if os.path.exists(d):
        try:
            shutil.rmtree(d)
        except OSError as e:
            problems.append('rmtree %s: %s' % (d, e))
    return problems


# ----------------------------------------------------------------- status & co

def uri(dir, node):
    return _node(_load(dir), node)['uri']


def virsh(dir, node, *args):
    return _virsh_uri(uri(dir, node), *args)


def _libvirtd_pid(n):
    pid = _read_pid(os.path.join(n['dir'], 'libvirtd.pid'))
    if pid and _pid_alive(pid) and _cmdline(pid)[:1] == ['/usr/sbin/libvirtd']:
        return pid
    return None


def status(dir=DEFAULT_DIR):
    st = _load(dir)
    out = {'dir': st['dir'], 'prefix': st['prefix'], 'virt_type': st.get('virt_type'),
           'conf': os.path.join(st['dir'], 'horcrux.conf'), 'nodes': []}
    for n in st['nodes']:
        pid = _libvirtd_pid(n)
        ent = {'name': n['name'], 'uri': n['uri'], 'netns': n['netns'], 'address': n['address'],
               'reaper_alive': bool(n.get('reaper_pid') and _pid_alive(n['reaper_pid'])),
               'libvirtd_pid': pid, 'libvirtd_alive': bool(pid) and _sock_accepts(n['socket']),
               'domains': None}
        if ent['libvirtd_alive']:
            p = _run(['virsh', '-c', n['uri'], 'list', '--all', '--name'], check=False)
            doms = {}
            if p.returncode == 0:
                for name in [l.strip() for l in p.stdout.splitlines() if l.strip()]:
                    q = _run(['virsh', '-c', n['uri'], 'domstate', name], check=False)
                    doms[name] = q.stdout.strip() if q.returncode == 0 else '?'
                ent['domains'] = doms
        out['nodes'].append(ent)
    return out


def crashes(dir):
    """Every daemon exit the subreapers did not ask for (see _node_main), oldest first."""
    out = []
    for n in _load(dir)['nodes']:
        try:
            with open(os.path.join(n['dir'], 'crashes')) as f:
                out += [dict(json.loads(l), node=n['name']) for l in f if l.strip()]
        except FileNotFoundError:
            pass
    return sorted(out, key=lambda c: c['time'])


def kill_libvirtd(dir, node):
    n = _node(_load(dir), node)
    pid = _libvirtd_pid(n)
    if not pid:
        raise TestbedError('libvirtd of %s is not running' % node)
    # the subreaper restarts a libvirtd that dies by itself; this one is meant to stay down
    # (libvirtd.hold, until start_libvirtd) and its exit is no crash (killed.<pid>, taken by
    # the subreaper when it reaps it, however late that is)
    _write(os.path.join(n['dir'], 'libvirtd.hold'), 'killed by kill_libvirtd\n')
    _write(os.path.join(n['dir'], 'killed.%d' % pid), 'killed by kill_libvirtd\n')
    os.kill(pid, signal.SIGKILL)
    # until the subreaper reaped it (it then removes libvirtd.pid); a process with a thread in
    # uninterruptible sleep can take seconds to go
    end = time.monotonic() + 30
    while _pid_alive(pid) or _read_pid(os.path.join(n['dir'], 'libvirtd.pid')) == pid:
        if time.monotonic() > end:
            raise TestbedError('libvirtd of %s (pid %d) still not gone 30 s after SIGKILL'
                               % (node, pid))
        time.sleep(0.005)
    return pid


def start_libvirtd(dir, node, timeout=20):
    n = _node(_load(dir), node)
    rp = n.get('reaper_pid')
    if not rp or not _pid_alive(rp):
        raise TestbedError('subreaper of %s is gone; node cannot be restarted (down/up)' % node)
    try:
        os.unlink(os.path.join(n['dir'], 'libvirtd.hold'))
    except FileNotFoundError:
        pass
    if _libvirtd_pid(n) and _sock_accepts(n['socket']):
        return _libvirtd_pid(n)
    os.kill(rp, signal.SIGUSR1)
    end = time.monotonic() + timeout
    again = time.monotonic() + 1
    while time.monotonic() < end:
        pid = _libvirtd_pid(n)
        if pid and _sock_accepts(n['socket']):
            return pid
        # The subreaper starts libvirtd only once it has reaped the old one: a SIGUSR1 that
        # came before the old process was fully gone found it still listed and did nothing.
        if time.monotonic() > again and not (pid and _pid_alive(pid)):
            os.kill(rp, signal.SIGUSR1)
            again = time.monotonic() + 1
        time.sleep(0.01)
    raise TestbedError('libvirtd of %s did not come back within %ss' % (node, timeout))


# ----------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(prog='testbed', description='Horcrux cluster-in-a-box')
    ap.add_argument('--dir', dest='gdir', default=None, help=argparse.SUPPRESS)
    sub = ap.add_subparsers(dest='verb', required=True)

    def add(name, **kw):
        p = sub.add_parser(name, **kw)
        p.add_argument('--dir', default=None, help='testbed state dir (default %s)' % DEFAULT_DIR)
        return p
    p = add('up', help='start N libvirtd nodes')
    p.add_argument('--nodes', type=int, default=3)
    p.add_argument('--vms', type=int, default=2)
    p.add_argument('--prefix', default=DEFAULT_PREFIX)
    p.add_argument('--force', action='store_true', help='tear down an existing testbed first')
    p.add_argument('--virt-type', default='auto', choices=['auto', 'kvm', 'qemu'],
                   help='domain type (auto: kvm if /dev/kvm can create a VM, else qemu/TCG)')
    p.add_argument('--btrfs', action='store_true',
                   help='also a dir pool "fast" on btrfs (a loop file) in every node')
    p = add('down', help='stop everything, remove DIR')
    p.add_argument('--prefix', default=None, help='also clean leftovers with this prefix')
    p = add('status')
    p.add_argument('--json', action='store_true')
    for v in ('uri', 'kill-libvirtd', 'start-libvirtd'):
        add(v).add_argument('node')
    p = add('virsh', help='virsh -c URI args...')
    p.add_argument('node')
    p.add_argument('args', nargs=argparse.REMAINDER)
    p = sub.add_parser('_node', help=argparse.SUPPRESS)
    for a in ('--nodedir', '--node', '--netns', '--prefix'):
        p.add_argument(a, required=True)
    a = ap.parse_args(argv)
    if a.verb != '_node':
        a.dir = a.dir or a.gdir or DEFAULT_DIR
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if a.verb == '_node':
            return _node_main(a)
        if a.verb == 'up':
            st = up(a.dir, a.nodes, a.vms, a.prefix, force=a.force, virt_type=a.virt_type,
                    btrfs=a.btrfs)
            print('testbed up: %d nodes, %d vms each, type %s, %.2fs; config %s'
                  % (len(st['nodes']), st['vms'], st['virt_type'], st['bringup_seconds'],
                     os.path.join(st['dir'], 'horcrux.conf')))
            for n in st['nodes']:
                print('  %s  %s' % (n['name'], n['uri']))
        elif a.verb == 'down':
            t0 = time.monotonic()
            problems = down(a.dir, prefix=a.prefix)
            for pr in problems:
                print('testbed down: ' + pr, file=sys.stderr)
            print('testbed down: %s (%.2fs)' % ('clean' if not problems else 'PROBLEMS',
                                               time.monotonic() - t0))
            return 1 if problems else 0
        elif a.verb == 'status':
            s = status(a.dir)
            if a.json:
                print(json.dumps(s, indent=2))
                return 0
            print('testbed %s prefix %s type %s config %s'
                  % (s['dir'], s['prefix'], s['virt_type'], s['conf']))
            for n in s['nodes']:
                print('%s: libvirtd %s  %s' % (n['name'],
                      'alive (pid %d)' % n['libvirtd_pid'] if n['libvirtd_alive'] else 'DOWN',
                      n['uri']))
                for dn, ds in sorted((n['domains'] or {}).items()):
                    print('    %-6s %s' % (dn, ds))
        elif a.verb == 'uri':
            print(uri(a.dir, a.node))
        elif a.verb == 'kill-libvirtd':
            print('killed libvirtd pid %d' % kill_libvirtd(a.dir, a.node))
        elif a.verb == 'start-libvirtd':
            print('libvirtd pid %d' % start_libvirtd(a.dir, a.node))
        elif a.verb == 'virsh':
            args = a.args[1:] if a.args[:1] == ['--'] else a.args
            os.execvp('virsh', ['virsh', '-c', uri(a.dir, a.node)] + args)
    except TestbedError as e:
        print('testbed: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
