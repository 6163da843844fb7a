"""Snapshots through the tree (nodes/<n>/vms/<vm>/snapshots/): take, revert, delete, on running
and shut-off VMs, with marker data written to the disk between snapshots and checked after a
revert; the current link, the tree of parents, descriptions, snapshots made with virsh, names,
and failures that leave no snapshot and no lock behind (ENOSPC in a tiny pool, a raw disk).

Each test makes its own VM on n1 (mkdir + config.json with a qcow2 volume) and deletes it.
Marker data: on a shut-off VM, qemu-io on the host's path of the image; on a running VM, qemu's
HMP `qemu-io` command (its output goes to the VM's qemu log, read from the host).
Timings of snapshot and revert are printed (run with -s to see them).
"""
import errno
import json
import os
import re
import subprocess

import pytest

from conftest import Timings, read, tb, wait_for
from hxvm import errno_of

NODE = 'n1'
MIB = 1024 * 1024
TIMINGS = Timings(40)


def timed(what, fn):
    return TIMINGS.run(what, fn)[0]


def write_ctl(path, text):
    """One write(2) of a command, like echo: returns 0 or the errno."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return e.errno
    try:
        os.write(fd, text.encode())
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


class VM:
    def __init__(self, bed, mount, name, pool='default', fmt='qcow2', size=16 * MIB, mem=64):
        self.bed, self.mount, self.name = bed, mount, name
        self.dir = os.path.join(mount, 'nodes', NODE, 'vms', name)
        self.snaps = os.path.join(self.dir, 'snapshots')
        ext = 'qcow2' if fmt == 'qcow2' else 'img'
        self.vol = '%s.%s' % (name, ext)
        self.image = os.path.join(bed.dir, 'nodes', NODE, 'lib', 'images', self.vol)
        self.log = os.path.join(bed.dir, 'nodes', NODE, 'log', 'qemu', name + '.log')
        os.mkdir(self.dir)
        cfg = json.loads(read(os.path.join(self.dir, 'config.json')))
        cfg['memory_mib'] = mem
        cfg['max_memory_mib'] = mem
        cfg['disks'] = [{'target': 'vda', 'source': '%s/%s' % (pool, self.vol),
                         'source_type': 'volume', 'format': fmt, 'size_bytes': size}]
        with open(os.path.join(self.dir, 'config.json'), 'w') as f:
            f.write(json.dumps(cfg))

    def state(self):
        return read(os.path.join(self.dir, 'state')).strip()

    def act(self, word):
        return write_ctl(os.path.join(self.dir, 'state'), word)

    def delete(self):
        if os.path.isdir(self.dir):
            if self.state() != 'shutoff':
                self.act('stop')
            wait_for(lambda: self.state() == 'shutoff', 10)
            os.rmdir(self.dir)

    def snapshots(self):
        return sorted(os.listdir(self.snaps))

    def info(self, snap):
        return json.loads(read(os.path.join(self.snaps, snap, 'info.json')))

    def current(self):
        try:
            return os.readlink(os.path.join(self.snaps, 'current'))
        except OSError as e:
            return e.errno

    def virsh_snaps(self):
        out = self.bed.virsh(NODE, 'snapshot-list', self.name, '--name')
        return sorted(l.strip() for l in out.splitlines() if l.strip())

    # --- marker data on a shut-off VM: qemu-io on the image file
    def write_off(self, pattern):
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -P %s 0 64k' % pattern,
                        self.image], check=True, capture_output=True)

    def check_off(self, pattern):
        p = subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'read -P %s 0 64k' % pattern,
                            self.image], capture_output=True, text=True)
        return p.returncode == 0 and 'Pattern verification failed' not in p.stdout + p.stderr

    # --- marker data on a running VM: HMP qemu-io on the disk's device
    def hmp(self, cmd):
        return self.bed.virsh(NODE, 'qemu-monitor-command', '--hmp', self.name, cmd)

    def device(self):
        m = re.search(r'Attached to:\s+(\S+)', self.hmp('info block'))
        assert m, 'no block device in "info block"'
        return m.group(1)

    def qemu_io(self, cmd):
        """Runs a qemu-io command in the running VM; returns its output (from the qemu log)."""
        start = os.path.getsize(self.log)
        word = cmd.split()[0]
        out = self.hmp('qemu-io -d %s "%s"' % (self.device(), cmd))
        assert 'Error' not in out, out

        def done():
            with open(self.log, errors='replace') as f:
                f.seek(start)
                text = f.read()
            return text if re.search(r'\b%s 65536/65536 bytes' % ('wrote' if word == 'write'
                                                                 else 'read'), text) else None
        text, _ = wait_for(done, 5)
        assert text, 'qemu-io output did not show in %s' % self.log
        return text

    def write_on(self, pattern):
        self.qemu_io('write -P %s 0 64k' % pattern)

    def check_on(self, pattern):
        return 'Pattern verification failed' not in self.qemu_io('read -P %s 0 64k' % pattern)


@pytest.fixture
def vms(bed, mount):
    made = []

    def new(name, **kw):
        v = VM(bed, mount, name, **kw)
        made.append(v)
        return v
    yield new
    for v in made:
        v.delete()
    TIMINGS.summary()


def test_shutoff_snapshot_revert_delete(vms, bed):
    vm = vms('snap-off')
    assert vm.state() == 'shutoff'
    assert vm.snapshots() == []
    assert vm.current() == errno.ENOENT
    vm.write_off('0x5a')
    timed('snapshot, shut-off VM', lambda: os.mkdir(os.path.join(vm.snaps, 'a')))
    assert vm.snapshots() == ['a', 'current']
    assert vm.current() == 'a'
    a = vm.info('a')
    assert a['name'] == 'a' and a['parent'] is None and a['children'] == []
    assert a['state'] == 'shutoff' and a['memory'] is False and a['disk_only'] is False
    assert a['consistency'] == 'crash' and a['current'] is True
    assert a['disks'] == [{'target': 'vda', 'snapshot': 'internal'}]
    assert re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$', a['created'])
    assert sorted(os.listdir(os.path.join(vm.snaps, 'a'))) == ['description', 'info.json',
                                                                'revert']

    vm.write_off('0xa5')
    assert vm.check_off('0xa5') and not vm.check_off('0x5a')
    os.mkdir(os.path.join(vm.snaps, 'b'))
    assert vm.current() == 'b'
    assert vm.info('b')['parent'] == 'a'
    assert vm.info('a')['children'] == ['b'] and vm.info('a')['current'] is False
    assert vm.virsh_snaps() == ['a', 'b']

    assert timed('revert, shut-off VM',
                 lambda: write_ctl(os.path.join(vm.snaps, 'a', 'revert'), '1\n')) == 0
    assert vm.check_off('0x5a'), 'marker A is not back after the revert'
    assert vm.state() == 'shutoff'
    assert vm.current() == 'a'
    assert vm.info('a')['current'] is True

    # revert back to b: marker B again
    assert write_ctl(os.path.join(vm.snaps, 'b', 'revert'), 'revert') == 0
    assert vm.check_off('0xa5')

    os.rmdir(os.path.join(vm.snaps, 'b'))
    assert vm.snapshots() == ['a', 'current']
    assert vm.virsh_snaps() == ['a']
    assert vm.current() == 'a'   # libvirt makes the parent of a deleted current snapshot current
    assert vm.info('a')['children'] == []
    assert errno_of(os.stat, os.path.join(vm.snaps, 'b')) == errno.ENOENT
    os.rmdir(os.path.join(vm.snaps, 'a'))
    assert vm.snapshots() == []
    assert vm.current() == errno.ENOENT


def test_running_snapshot_revert(vms):
    vm = vms('snap-run')
    assert vm.act('start') == 0
    assert vm.state() == 'running'
    vm.write_on('0x5a')
    timed('snapshot, running VM (64 MiB)', lambda: os.mkdir(os.path.join(vm.snaps, 'r1')))
    info = vm.info('r1')
    assert info['state'] == 'running' and info['memory'] is True
    assert info['consistency'] == 'crash'   # no guest agent on the testbed
    assert vm.state() == 'running'          # the snapshot does not stop the VM
    vm.write_on('0xa5')
    assert vm.check_on('0xa5') and not vm.check_on('0x5a')
    assert timed('revert, running VM (64 MiB)',
                 lambda: write_ctl(os.path.join(vm.snaps, 'r1', 'revert'), '1')) == 0
    assert vm.state() == 'running'
    assert vm.check_on('0x5a'), 'marker A is not back after the revert'
    assert vm.current() == 'r1'

    # From a shut-off VM, a snapshot with memory starts it again.
    assert vm.act('stop') == 0
    assert vm.state() == 'shutoff'
    assert timed('revert, shut-off VM to a running snapshot',
                 lambda: write_ctl(os.path.join(vm.snaps, 'r1', 'revert'), '1')) == 0
    assert vm.state() == 'running'
    assert vm.check_on('0x5a')

    # A second snapshot of the running VM, child of the first; delete while running.
    os.mkdir(os.path.join(vm.snaps, 'r2'))
    assert vm.info('r2')['parent'] == 'r1' and vm.info('r1')['children'] == ['r2']
    timed('delete snapshot, running VM', lambda: os.rmdir(os.path.join(vm.snaps, 'r2')))
    assert vm.virsh_snaps() == ['r1']
    assert vm.state() == 'running'


def test_description(vms, bed):
    vm = vms('snap-desc')
    os.mkdir(os.path.join(vm.snaps, 'd1'))
    desc = os.path.join(vm.snaps, 'd1', 'description')
    assert read(desc) == ''
    subprocess.run('cat > %s' % desc, shell=True, input=b'before the <upgrade> & more\n',
                   check=True)
    assert read(desc) == 'before the <upgrade> & more\n'
    assert vm.info('d1')['description'] == 'before the <upgrade> & more'
    xml = bed.virsh(NODE, 'snapshot-dumpxml', vm.name, 'd1')
    assert '<description>before the &lt;upgrade&gt; &amp; more</description>' in xml
    # still current after the redefinition
    assert vm.current() == 'd1' and vm.info('d1')['current'] is True
    # editors: sed -i writes a scratch file and renames it over the description
    subprocess.run(['sed', '-i', 's/more/less/', desc], check=True)
    assert read(desc) == 'before the <upgrade> & less\n'
    # multi-line, then empty (removes it)
    with open(desc, 'w') as f:
        f.write('line one\nline two\n')
    assert read(desc) == 'line one\nline two\n'
    with open(desc, 'w') as f:
        f.write('')
    assert read(desc) == ''
    assert '<description>' not in bed.virsh(NODE, 'snapshot-dumpxml', vm.name, 'd1')
    # control characters are refused, nothing changes
    with pytest.raises(OSError) as ei:
        with open(desc, 'w') as f:
            f.write('bell\x07')
    assert ei.value.errno == errno.EINVAL
    assert read(desc) == ''


def test_virsh_snapshots_appear(vms, bed):
    vm = vms('snap-virsh')
    assert vm.snapshots() == []
    bed.virsh(NODE, 'snapshot-create-as', vm.name, 'from-virsh', '--description', 'made by virsh')
    v, dt = wait_for(lambda: 'from-virsh' in vm.snapshots(), 1.5)
    assert v, 'a snapshot made with virsh did not show within 1.5 s'
    print('\n[timing] virsh snapshot visible after %.3f s' % dt)
    info = vm.info('from-virsh')
    assert info['description'] == 'made by virsh' and info['consistency'] == 'crash'
    v, _ = wait_for(lambda: vm.current() == 'from-virsh', 1.5)
    assert v
    bed.virsh(NODE, 'snapshot-delete', vm.name, 'from-virsh')
    v, _ = wait_for(lambda: vm.snapshots() == [], 1.5)
    assert v
    v, _ = wait_for(lambda: errno_of(os.stat, os.path.join(vm.snaps, 'from-virsh', 'info.json'))
                    == errno.ENOENT, 2.5)
    assert v


def test_names_and_commands(vms):
    vm = vms('snap-names')
    for bad in ('.hidden', 'bell\x07', 'current', 'x' * 65):
        assert errno_of(os.mkdir, os.path.join(vm.snaps, bad)) == errno.EINVAL, bad
    os.mkdir(os.path.join(vm.snaps, 'x' * 64))
    os.mkdir(os.path.join(vm.snaps, 'one'))
    assert errno_of(os.mkdir, os.path.join(vm.snaps, 'one')) == errno.EEXIST
    assert vm.virsh_snaps() == sorted(['one', 'x' * 64])
    assert write_ctl(os.path.join(vm.snaps, 'one', 'revert'), 'please') == errno.EINVAL
    assert 'write 1 or revert' in read(os.path.join(vm.dir, 'last_error'))
    assert errno_of(os.rmdir, os.path.join(vm.snaps, 'nope')) == errno.ENOENT
    # snapshot documents are read-only but description; revert is write-only
    assert errno_of(open, os.path.join(vm.snaps, 'one', 'info.json'), 'w') == errno.EACCES
    assert oct(os.stat(os.path.join(vm.snaps, 'one', 'revert')).st_mode & 0o777) == '0o200'


@pytest.fixture
def tiny_pool(bed):
    """A storage pool 'tiny' on a 16 MiB tmpfs inside n1's mount namespace."""
    st = tb.status(bed.dir)
    pid = [n for n in st['nodes'] if n['name'] == NODE][0]['libvirtd_pid']
    os.makedirs(os.path.join(bed.dir, 'nodes', NODE, 'lib', 'tiny'), exist_ok=True)
    subprocess.run(['nsenter', '-t', str(pid), '-m', 'mount', '-t', 'tmpfs', '-o', 'size=16m',
                    'hxtiny', '/var/lib/libvirt/tiny'], check=True)
    bed.virsh(NODE, 'pool-define-as', 'tiny', 'dir', '--target', '/var/lib/libvirt/tiny')
    bed.virsh(NODE, 'pool-start', 'tiny')
    yield 'tiny'
    subprocess.run(['virsh', '-c', bed.uri(NODE), 'pool-destroy', 'tiny'], capture_output=True)
    subprocess.run(['virsh', '-c', bed.uri(NODE), 'pool-undefine', 'tiny'], capture_output=True)
    subprocess.run(['nsenter', '-t', str(pid), '-m', 'umount', '/var/lib/libvirt/tiny'],
                   capture_output=True)


def test_enospc_leaves_no_lock_and_no_snapshot(tiny_pool, vms, bed):
    vm = vms('snap-tiny', pool=tiny_pool)
    assert vm.act('start') == 0
    # 64 MiB of memory cannot fit in a 16 MiB pool: refused before anything is made
    assert errno_of(os.mkdir, os.path.join(vm.snaps, 'big')) == errno.ENOSPC
    le = read(os.path.join(vm.dir, 'last_error'))
    assert 'ENOSPC' in le and 'storage pool tiny' in le and 'MiB free' in le, le
    assert vm.snapshots() == [] and vm.virsh_snaps() == []
    # no lock left: the next change of the VM works at once
    assert vm.act('stop') == 0
    # a shut-off VM's snapshot needs 1 MiB of growth room only: it fits
    os.mkdir(os.path.join(vm.snaps, 'small'))
    assert vm.snapshots() == ['current', 'small']


def test_failed_snapshot_leaves_nothing(vms):
    vm = vms('snap-raw', fmt='raw', size=1 * MIB)
    # internal snapshots need qcow2: libvirt refuses, EIO with libvirt's message
    assert errno_of(os.mkdir, os.path.join(vm.snaps, 'x')) == errno.EIO
    assert 'raw' in read(os.path.join(vm.dir, 'last_error'))
    assert vm.snapshots() == [] and vm.virsh_snaps() == []
    assert vm.act('start') == 0           # no lock left behind
    assert errno_of(os.mkdir, os.path.join(vm.snaps, 'y')) == errno.EIO
    assert vm.virsh_snaps() == []
    assert vm.act('stop') == 0
