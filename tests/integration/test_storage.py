"""Storage pools and volumes in the tree, checked against what libvirt says (virsh): dir pools
with qcow2 and raw volumes, a btrfs pool on a loop file, changes made with virsh."""
import errno
import json
import os
import select
import subprocess
import time
import xml.etree.ElementTree as ET

from conftest import NODES, VMS, read, read_or_errno, tb, wait_for


def status(mount, node, pool):
    return json.loads(read(os.path.join(mount, 'nodes', node, 'storage', pool, 'status.json')))


def vols_dir(mount, node, pool):
    return os.path.join(mount, 'nodes', node, 'storage', pool, 'volumes')


def info(mount, node, pool, vol):
    return json.loads(read(os.path.join(vols_dir(mount, node, pool), vol, 'info.json')))


def pool_info(bed, node, pool):
    """`virsh pool-info --bytes` as a dict of its fields."""
    out = {}
    for line in bed.virsh(node, 'pool-info', '--bytes', pool).splitlines():
        k, _, v = line.partition(':')
        out[k.strip()] = v.strip()
    return out


def vol_list(bed, node, pool):
    return sorted(l.split()[0] for l in bed.virsh(node, 'vol-list', pool).splitlines() if l.strip())


def check_volume(mount, bed, node, pool, vol):
    doc = info(mount, node, pool, vol)
    x = ET.fromstring(bed.virsh(node, 'vol-dumpxml', '--pool', pool, vol))
    assert doc['name'] == vol == x.findtext('name')
    assert doc['key'] == x.findtext('key')
    assert doc['path'] == x.findtext('target/path')
    assert doc['format'] == x.find('target/format').get('type')
    assert doc['capacity_bytes'] == int(x.findtext('capacity'))
    assert doc['allocation_bytes'] == int(x.findtext('allocation'))
    assert doc['backing_store'] == x.findtext('backingStore/path')
    assert doc['type'] == x.get('type', 'file')
    return doc


def test_status_matches_virsh(mount, bed):
    for n in NODES:
        doc = status(mount, n, 'default')
        pi = pool_info(bed, n, 'default')
        x = ET.fromstring(bed.virsh(n, 'pool-dumpxml', 'default'))
        assert doc['name'] == pi['Name'] == 'default'
        assert doc['uuid'] == pi['UUID'] == x.findtext('uuid')
        assert doc['type'] == x.get('type') == 'dir'
        assert doc['state'] == pi['State'] == 'running'
        assert doc['persistent'] == (pi['Persistent'] == 'yes')
        assert doc['autostart'] == (pi['Autostart'] == 'yes')
        assert doc['path'] == x.findtext('target/path') == '/var/lib/libvirt/images'
        assert doc['capacity_bytes'] == int(pi['Capacity'])
        assert doc['allocation_bytes'] == int(pi['Allocation'])
        assert doc['available_bytes'] == int(pi['Available'])
        assert doc['volumes'] == len(vol_list(bed, n, 'default'))
        # the node's images directory lives on the host's filesystem, seen through libvirtd
        assert doc['backing'] is None or isinstance(doc['backing'], str)
        assert doc['cheap_copy'] == ('reflink' if doc['backing'] == 'btrfs' else None)


def test_volumes_match_virsh(mount, bed):
    for n in NODES:
        names = vol_list(bed, n, 'default')
        assert sorted(os.listdir(vols_dir(mount, n, 'default'))) == names
        assert sorted('%s.qcow2' % vm for vm in VMS[n]) == names
        for v in names:
            assert os.listdir(os.path.join(vols_dir(mount, n, 'default'), v)) == ['info.json']
            doc = check_volume(mount, bed, n, 'default', v)
            assert doc['format'] == 'qcow2' and doc['capacity_bytes'] == 64 << 20


def test_used_by(mount):
    for n in NODES:
        for vm in VMS[n]:
            assert info(mount, n, 'default', vm + '.qcow2')['used_by'] == [vm]


def test_volume_created_and_deleted_with_virsh(mount, bed):
    d = vols_dir(mount, 'n1', 'default')
    assert 't1.raw' not in os.listdir(d)   # warm the kernel's caches: they must not hide it
    try:
        bed.virsh('n1', 'vol-create-as', 'default', 't1.raw', '1M', '--format', 'raw')
        v, dt = wait_for(lambda: 't1.raw' in os.listdir(d), 1.0)
        assert v, 't1.raw not listed 1 s after vol-create-as: %s' % os.listdir(d)
        print('\n[storage] t1.raw listed %.3fs after vol-create-as' % dt)
        doc = check_volume(mount, bed, 'n1', 'default', 't1.raw')
        assert doc['format'] == 'raw' and doc['capacity_bytes'] == 1 << 20
        assert doc['used_by'] == [] and doc['backing_store'] is None
        v, _ = wait_for(lambda: status(mount, 'n1', 'default')['volumes'] == 3, 1.5)
        assert v, status(mount, 'n1', 'default')
        bed.virsh('n1', 'vol-delete', '--pool', 'default', 't1.raw')
        v, dt = wait_for(lambda: 't1.raw' not in os.listdir(d), 1.0)
        assert v, 't1.raw still listed 1 s after vol-delete'
        r = read_or_errno(os.path.join(d, 't1.raw', 'info.json'))
        assert r == errno.ENOENT, r
    finally:
        tb._virsh_uri(bed.uri('n1'), 'vol-delete', '--pool', 'default', 't1.raw', check=False)


def read_events(fd, timeout):
    """JSON lines read from an /events descriptor within timeout seconds."""
    out, buf, end = [], b'', time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
        if not r:
            break
        try:
            buf += os.read(fd, 65536)
        except BlockingIOError:
            continue
        *lines, buf = buf.split(b'\n')
        out += [json.loads(l) for l in lines if l]
    return out


def test_pool_state_follows_virsh(mount, bed):
    st = os.path.join(mount, 'nodes', 'n3', 'storage', 'default', 'status.json')
    assert json.loads(read(st))['state'] == 'running'
    ev = os.open(os.path.join(mount, 'events'), os.O_RDONLY | os.O_NONBLOCK)
    try:
        bed.virsh('n3', 'pool-destroy', 'default')
        v, dt = wait_for(lambda: json.loads(read(st))['state'] == 'inactive', 1.0)
        assert v, 'status.json reads %s 1 s after pool-destroy' % read_or_errno(st)
        print('\n[storage] state inactive %.3fs after pool-destroy' % dt)
        doc = json.loads(read(st))
        assert doc['volumes'] is None
        assert os.listdir(vols_dir(mount, 'n3', 'default')) == []
        assert read_or_errno(os.path.join(vols_dir(mount, 'n3', 'default'), '300.qcow2',
                                          'info.json')) == errno.ENOENT
        bed.virsh('n3', 'pool-start', 'default')
        v, dt = wait_for(lambda: json.loads(read(st))['state'] == 'running', 1.0)
        assert v, 'status.json reads %s 1 s after pool-start' % read_or_errno(st)
        assert sorted(os.listdir(vols_dir(mount, 'n3', 'default'))) == ['300.qcow2', '301.qcow2']
        evs = [e for e in read_events(ev, 1.0) if e.get('type') == 'pool.state']
        assert [(e['node'], e['pool'], e['state']) for e in evs] == \
            [('n3', 'default', 'inactive'), ('n3', 'default', 'running')], evs
    finally:
        os.close(ev)
        tb._virsh_uri(bed.uri('n3'), 'pool-start', 'default', check=False)


def test_btrfs_pool_on_a_loop_file(mount, bed):
    sd = os.path.join(mount, 'nodes', 'n1', 'storage')
    assert os.listdir(sd) == ['default']
    ent = None
    try:
        ent = tb.add_btrfs_pool(bed.dir, 'n1', name='fast', size_mib=256)
        v, dt = wait_for(lambda: sorted(os.listdir(sd)) == ['default', 'fast'], 1.0)
        assert v, 'pool fast not listed 1 s after pool-define: %s' % os.listdir(sd)
        doc = status(mount, 'n1', 'fast')
        pi = pool_info(bed, 'n1', 'fast')
        assert doc['type'] == 'dir' and doc['state'] == 'running'
        assert doc['path'] == '/var/lib/libvirt/fast'
        assert doc['backing'] == 'btrfs' and doc['cheap_copy'] == 'reflink', doc
        assert doc['capacity_bytes'] == int(pi['Capacity']) and doc['volumes'] == 0
        assert doc['autostart'] is False and doc['persistent'] is True
        bed.virsh('n1', 'vol-create-as', 'fast', 'r.raw', '8M', '--format', 'raw')
        bed.virsh('n1', 'vol-create-as', 'fast', 'q.qcow2', '16M', '--format', 'qcow2')
        d = vols_dir(mount, 'n1', 'fast')
        v, _ = wait_for(lambda: sorted(os.listdir(d)) == ['q.qcow2', 'r.raw'], 1.0)
        assert v, os.listdir(d)
        assert sorted(os.listdir(d)) == vol_list(bed, 'n1', 'fast')
        assert check_volume(mount, bed, 'n1', 'fast', 'r.raw')['format'] == 'raw'
        assert check_volume(mount, bed, 'n1', 'fast', 'q.qcow2')['format'] == 'qcow2'
        # the filesystem is mounted inside the node only: the host's view is untouched
        with open('/proc/mounts') as f:
            assert ent['dev'] not in f.read()
    finally:
        if ent:
            tb.remove_btrfs_pool(bed.dir, 'n1', name='fast')
    v, _ = wait_for(lambda: os.listdir(sd) == ['default'], 1.0)
    assert v, 'pool fast still listed 1 s after pool-undefine: %s' % os.listdir(sd)
    p = subprocess.run(['losetup', '-j', ent['file']], capture_output=True, text=True)
    assert p.stdout.strip() == '', p.stdout


def test_offline_node_storage(mount, bed):
    n2 = os.path.join(mount, 'nodes', 'n2')
    st = os.path.join(n2, 'storage', 'default', 'status.json')
    assert json.loads(read(st))['state'] == 'running'   # warm the caches
    killed = False
    try:
        bed.kill_libvirtd('n2')
        killed = True
        v, _ = wait_for(lambda: read(os.path.join(n2, 'status')) == 'offline\n', 1.0)
        assert v
        for rel in ('storage', 'storage/default', 'storage/default/volumes',
                    'storage/default/volumes/200.qcow2'):
            t0 = time.monotonic()
            try:
                os.listdir(os.path.join(n2, rel))
                r = None
            except OSError as e:
                r = e.errno
            assert r == errno.EHOSTDOWN and time.monotonic() - t0 < 1.0, (rel, r)
        for rel in ('storage/default/status.json', 'storage/default/volumes/200.qcow2/info.json'):
            assert read_or_errno(os.path.join(n2, rel)) == errno.EHOSTDOWN, rel
    finally:
        if killed:
            bed.start_libvirtd('n2')
            wait_for(lambda: read(os.path.join(n2, 'status')) == 'online\n', 5.0)
    v, _ = wait_for(lambda: json.loads(read(st))['state'] == 'running', 2.0)
    assert v, read_or_errno(st)
