"""btrfs-backed dir pools on the real testbed: a btrfs pool "fast" on a loop file in n1's mount
namespace (tools/hxtestbed/btrfs.py add_btrfs_pool, removed at the end whatever happened).

Snapshots of VMs whose disks are raw volumes there are reflink copies (".<vol>@<snap>"), taken,
reverted and deleted through the tree; clones within the pool are reflink copies (full: then
verified by SHA-256; linked: an independent copy). Marker data is written with qemu-io on the
volume's file, reached through /proc/<pid>/root of the node's subreaper (the pool is mounted in
that namespace only). Timings are printed (run with -s to see them).
"""
import errno
import json
import os
import subprocess

import pytest

from conftest import Timings, read, tb, wait_for
from hxvm import errno_of, write_file

NODE = 'n1'
MiB = 1024 * 1024
GiB = 1024 * MiB
FINAL = ('done', 'failed', 'cancelled', 'interrupted')
TIMINGS = Timings(45)
timed = TIMINGS.run


@pytest.fixture(scope='module')
def fast(bed):
    """The btrfs pool: its path as the host reaches it (through the node's mount namespace)."""
    ent = None
    try:
        ent = tb.add_btrfs_pool(bed.dir, NODE, name='fast', size_mib=3072)
        n = tb._node(tb._load(bed.dir), NODE)
        root = '/proc/%d/root' % n['reaper_pid']
        yield root + ent['target']
    finally:
        TIMINGS.summary()
        if ent:
            tb.remove_btrfs_pool(bed.dir, NODE, name='fast')


def vols(bed, pool='fast'):
    out = bed.virsh(NODE, 'vol-list', pool)
    return sorted(l.split()[0] for l in out.splitlines() if l.strip())


class Made:
    def __init__(self, bed, mnt):
        self.bed, self.mnt, self.vms = bed, mnt, []

    def cleanup(self):
        for name in reversed(self.vms):
            d = os.path.join(self.mnt, 'nodes', NODE, 'vms', name)
            try:
                if os.path.isdir(d):
                    cfg = json.loads(read(os.path.join(d, 'config.json')))
                    if cfg.get('template'):
                        cfg['template'] = False
                        write_file(os.path.join(d, 'config.json'), json.dumps(cfg))
                    if read(os.path.join(d, 'state')).strip() != 'shutoff':
                        write_file(os.path.join(d, 'state'), 'stop')
                        wait_for(lambda: read(os.path.join(d, 'state')).strip() == 'shutoff', 10)
                    os.rmdir(d)
            except OSError:
                pass
            tb._virsh_uri(self.bed.uri(NODE), 'destroy', name, check=False)
            tb._virsh_uri(self.bed.uri(NODE), 'undefine', name, check=False)


@pytest.fixture
def made(bed, mount):
    m = Made(bed, mount)
    yield m
    m.cleanup()


def make_vm(made, name, size, pool='fast', mem=64):
    d = os.path.join(made.mnt, 'nodes', NODE, 'vms', name)
    os.mkdir(d)
    made.vms.append(name)
    vol = name + '.img'
    cfg = json.loads(read(os.path.join(d, 'config.json')))
    cfg['memory_mib'] = cfg['max_memory_mib'] = mem
    cfg['disks'] = [{'target': 'vda', 'source': '%s/%s' % (pool, vol), 'source_type': 'volume',
                     'format': 'raw', 'size_bytes': size}]
    write_file(os.path.join(d, 'config.json'), json.dumps(cfg))
    return d, vol


def qemu_io(path, cmd):
    p = subprocess.run(['qemu-io', '-f', 'raw', '-c', cmd, path], capture_output=True, text=True)
    return p.returncode == 0 and 'Pattern verification failed' not in p.stdout + p.stderr


def state(d):
    return read(os.path.join(d, 'state')).strip()


def snap_info(d, snap):
    return json.loads(read(os.path.join(d, 'snapshots', snap, 'info.json')))


def test_snapshot_revert_delete_raw_on_btrfs(fast, made, bed, mount):
    st = json.loads(read(os.path.join(mount, 'nodes', NODE, 'storage', 'fast', 'status.json')))
    assert st['backing'] == 'btrfs' and st['cheap_copy'] == 'reflink', st
    d, vol = make_vm(made, 'bt1', 64 * MiB)
    img = os.path.join(fast, vol)
    snaps = os.path.join(d, 'snapshots')
    assert qemu_io(img, 'write -q -P 0x41 0 64k')
    timed('btrfs snapshot, shut-off VM', lambda: os.mkdir(os.path.join(snaps, 'a')))
    assert sorted(os.listdir(snaps)) == ['a', 'current']
    assert os.readlink(os.path.join(snaps, 'current')) == 'a'
    assert '.%s@a' % vol in vols(bed)
    i = snap_info(d, 'a')
    assert i['memory'] is False and i['disk_only'] is True and i['method'] == 'btrfs-reflink'
    assert i['consistency'] == 'crash' and i['state'] == 'shutoff' and i['parent'] is None
    assert i['disks'][0]['copy'] == '.%s@a' % vol and i['current'] is True
    assert bed.virsh(NODE, 'snapshot-list', 'bt1', '--name').strip() == ''
    assert errno_of(os.mkdir, os.path.join(snaps, 'a')) == errno.EEXIST
    # marker B, then back to A
    assert qemu_io(img, 'write -q -P 0x42 0 64k')
    assert qemu_io(img, 'read -q -P 0x42 0 64k')
    timed('btrfs revert, shut-off VM', lambda: write_file(os.path.join(snaps, 'a', 'revert'),
                                                          'revert'))
    assert qemu_io(img, 'read -q -P 0x41 0 64k')
    assert state(d) == 'shutoff'
    # a child, a description, delete of the parent re-parents the child
    os.mkdir(os.path.join(snaps, 'b'))
    assert snap_info(d, 'b')['parent'] == 'a' and snap_info(d, 'a')['children'] == ['b']
    write_file(os.path.join(snaps, 'b', 'description'), 'before <upgrade> & "more"\n')
    assert snap_info(d, 'b')['description'] == 'before <upgrade> & "more"'
    os.rmdir(os.path.join(snaps, 'a'))
    assert '.%s@a' % vol not in vols(bed) and '.%s@b' % vol in vols(bed)
    assert snap_info(d, 'b')['parent'] is None
    assert os.readlink(os.path.join(snaps, 'current')) == 'b'
    os.rmdir(os.path.join(snaps, 'b'))
    assert os.listdir(snaps) == []
    assert [v for v in vols(bed) if v.startswith('.')] == []
    # rmdir of the VM takes its snapshot copies along
    os.mkdir(os.path.join(snaps, 'c'))
    assert '.%s@c' % vol in vols(bed)
    os.rmdir(d)
    assert [v for v in vols(bed) if 'bt1' in v] == []


def test_running_vm_snapshot_and_revert(fast, made, bed, mount):
    d, vol = make_vm(made, 'bt2', 64 * MiB)
    img = os.path.join(fast, vol)
    snaps = os.path.join(d, 'snapshots')
    assert qemu_io(img, 'write -q -P 0x41 0 64k')
    write_file(os.path.join(d, 'state'), 'start')
    v, _ = wait_for(lambda: state(d) == 'running', 10)
    assert v
    timed('btrfs snapshot, running VM (paused briefly)',
          lambda: os.mkdir(os.path.join(snaps, 'r1')))
    assert state(d) == 'running'
    i = snap_info(d, 'r1')
    assert i['state'] == 'running' and i['memory'] is False and i['consistency'] == 'crash'
    # revert of a running VM: powered off, disks replaced, started again
    timed('btrfs revert, running VM (restart)',
          lambda: write_file(os.path.join(snaps, 'r1', 'revert'), '1'))
    v, _ = wait_for(lambda: state(d) == 'running', 10)
    assert v
    os.rmdir(os.path.join(snaps, 'r1'))
    assert '.%s@r1' % vol not in vols(bed)
    write_file(os.path.join(d, 'state'), 'stop')
    v, _ = wait_for(lambda: state(d) == 'shutoff', 10)
    assert v
    assert qemu_io(img, 'read -q -P 0x41 0 64k')


def clone(made, vm, req):
    made.vms.append(req['name'])
    f = os.path.join(made.mnt, 'nodes', NODE, 'vms', vm, 'clone')
    write_file(f, json.dumps(req))
    return json.loads(read(f))['id']


def wait_job(mnt, job, timeout=300):
    def st():
        s = json.loads(read(os.path.join(mnt, 'cluster', 'jobs', job, 'status.json')))
        return s if s['state'] in FINAL and s['cleanup'] != 'pending' else None
    v, _ = wait_for(st, timeout, 0.02)
    assert v
    return v


def shared_extents(root, path):
    """Shared bytes of a file per `btrfs filesystem du` inside the node, or None."""
    n = root.split('/')[2]
    p = subprocess.run(['nsenter', '-t', n, '-m', '--', 'btrfs', 'filesystem', 'du', '--raw',
                        path], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    last = p.stdout.strip().splitlines()[-1].split()
    return int(last[2]) if len(last) >= 3 and last[2].isdigit() else None


def test_clone_by_reflink_and_timing(fast, made, bed, mount):
    data = 'write -q -P 0x5a 0 512M'
    src, vol = make_vm(made, 'btc', GiB)
    assert qemu_io(os.path.join(fast, vol), data)
    # a btrfs snapshot of the source stays the source's: the clone does not inherit its record
    os.mkdir(os.path.join(src, 'snapshots', 's'))
    job = clone(made, 'btc', {'name': 'btcf'})
    st, t_reflink = timed('full clone 1 GiB raw, btrfs reflink+verify',
                          lambda: wait_job(mount, job))
    assert st['state'] == 'done', st
    r = st['result']
    assert r['method'] == 'reflink' and r['verified'] is True, r
    disk = r['disks'][0]
    assert disk['method'] == 'reflink' and disk['sha256_source'] == disk['sha256_copy']
    assert disk['copy'] == 'fast/btcf-vda.img'
    copy = os.path.join(fast, 'btcf-vda.img')
    assert subprocess.run(['cmp', os.path.join(fast, vol), copy]).returncode == 0
    shared = shared_extents(fast, '/var/lib/libvirt/fast/btcf-vda.img')
    print('\n[btrfs] shared bytes of the copy: %s' % shared)
    if shared is not None:
        assert shared >= 512 * MiB
    log = read(os.path.join(mount, 'cluster', 'jobs', job, 'log'))
    assert 'reflink' in log and 'verified' in log
    # linked on btrfs: a reflink copy of the template's raw disk, not tied to it
    cfg = os.path.join(src, 'config.json')
    c = json.loads(read(cfg))
    c['template'] = True
    write_file(cfg, json.dumps(c))
    job = clone(made, 'btc', {'name': 'btcl', 'mode': 'linked'})
    st, _ = timed('linked clone 1 GiB raw, btrfs reflink', lambda: wait_job(mount, job))
    assert st['state'] == 'done', st
    assert st['result']['method'] == 'reflink' and st['result']['verified'] is None
    lc = json.loads(read(os.path.join(mount, 'nodes', NODE, 'vms', 'btcl', 'config.json')))
    assert lc['disks'][0]['source'] == 'fast/btcl-vda.img' and lc['disks'][0]['format'] == 'raw'
    assert subprocess.run(['cmp', os.path.join(fast, vol),
                           os.path.join(fast, 'btcl-vda.img')]).returncode == 0
    # the template is not held by a reflink copy: template off and rmdir work
    os.rmdir(os.path.join(mount, 'nodes', NODE, 'vms', 'btcf'))
    os.rmdir(os.path.join(mount, 'nodes', NODE, 'vms', 'btcl'))
    assert [v for v in vols(bed) if v.startswith('btc')] == ['btc.img']
    assert '.btc.img@s' in vols(bed)
    assert sorted(os.listdir(os.path.join(src, 'snapshots'))) == ['current', 's']
    # the same clone streamed: a 1 GiB raw disk with the same data in pool default
    src2, vol2 = make_vm(made, 'bts', GiB, pool='default')
    assert qemu_io(os.path.join(bed.dir, 'nodes', NODE, 'lib', 'images', vol2), data)
    job = clone(made, 'bts', {'name': 'btsf'})
    st, t_stream = timed('full clone 1 GiB raw, stream+verify', lambda: wait_job(mount, job))
    assert st['state'] == 'done', st
    assert st['result']['method'] == 'stream' and st['result']['verified'] is True
    print('\n[btrfs] clone of 1 GiB raw (512 MiB data): reflink %.2fs, stream %.2fs'
          % (t_reflink, t_stream))
