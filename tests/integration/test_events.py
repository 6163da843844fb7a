"""libvirt events show in the tree within a second (docs/tree.md: state, vms)."""
import json
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET

from conftest import read, read_or_errno, wait_for

POLL = 0.02


def cluster(mnt):
    return json.loads(read(os.path.join(mnt, 'cluster', 'status')))


def ensure_state(bed, node, vm, state):
    cur = bed.virsh(node, 'domstate', vm).strip()
    if state == 'shutoff' and cur != 'shut off':
        bed.virsh(node, 'destroy', vm)
    elif state == 'running' and cur != 'running':
        bed.virsh(node, 'start', vm)


def _virsh_then_state(bed, st, verb, want):
    """Runs `virsh VERB 101` on n1 and asserts the state file reads `want` within 1 s."""
    t0 = time.monotonic()
    bed.virsh('n1', verb, '101')
    t1 = time.monotonic()
    v, dt = wait_for(lambda: read(st) == want + '\n', 1.0, POLL)
    print('\n[events] virsh %s took %.3fs; state read %s %.3fs after it returned'
          % (verb, t1 - t0, want, dt))
    assert v, 'state still reads %r 1 s after virsh %s' % (read_or_errno(st), verb)
    assert dt < 1.0


def test_start_destroy_latency(mount, bed):
    st = os.path.join(mount, 'nodes', 'n1', 'vms', '101', 'state')
    try:
        assert read(st) == 'shutoff\n'
        m0 = os.stat(st).st_mtime_ns
        time.sleep(0.05)
        assert os.stat(st).st_mtime_ns == m0, 'mtime moved without a change'
        assert cluster(mount)['vms'] == {'total': 6, 'running': 3}

        _virsh_then_state(bed, st, 'start', 'running')
        m1 = os.stat(st).st_mtime_ns
        assert m1 != m0, 'mtime did not move when the state changed'
        assert os.stat(st).st_mtime_ns == m1
        v, dt = wait_for(lambda: cluster(mount)['vms'] == {'total': 6, 'running': 4}, 1.0, POLL)
        assert v, cluster(mount)
        live = json.loads(read(os.path.join(os.path.dirname(st), 'live.json')))
        assert live['state'] == 'running' and live['running'] is not None

        _virsh_then_state(bed, st, 'destroy', 'shutoff')
        m2 = os.stat(st).st_mtime_ns
        assert m2 != m1, 'mtime did not move when the state changed back'
        time.sleep(0.05)
        assert os.stat(st).st_mtime_ns == m2
        v, _ = wait_for(lambda: cluster(mount)['vms'] == {'total': 6, 'running': 3}, 1.0, POLL)
        assert v, cluster(mount)
    finally:
        ensure_state(bed, 'n1', '101', 'shutoff')


def test_mtime_stable_without_change(mount):
    # attributes are trusted for 1 s: stats across that window must still agree
    paths = [os.path.join(mount, *p) for p in
             (('nodes', 'n2', 'vms', '200', 'state'), ('nodes', 'n2', 'vms', '201', 'config.json'),
              ('nodes', 'n3', 'info.json'), ('cluster', 'status'))]
    before = {p: os.stat(p).st_mtime_ns for p in paths}
    time.sleep(1.2)
    for p in paths:
        read(p)
    after = {p: os.stat(p).st_mtime_ns for p in paths}
    assert before == after


def new_domain_xml(bed, node, src, name):
    x = ET.fromstring(bed.virsh(node, 'dumpxml', '--inactive', src))
    x.find('name').text = name
    for tag in ('uuid',):
        el = x.find(tag)
        if el is not None:
            x.remove(el)
    for iface in x.findall('devices/interface'):
        mac = iface.find('mac')
        if mac is not None:
            iface.remove(mac)
    return ET.tostring(x, encoding='unicode')


def test_define_undefine(mount, bed, workdir):
    name = 'hxit-new'
    vms = os.path.join(mount, 'nodes', 'n2', 'vms')
    xmlf = os.path.join(workdir, 'new.xml')
    with open(xmlf, 'w') as f:
        f.write(new_domain_xml(bed, 'n2', '201', name))
    defined = False
    try:
        assert sorted(os.listdir(vms)) == ['200', '201']
        # a miss the kernel remembers (negative entry) must not hide the new VM
        assert not os.path.exists(os.path.join(vms, name))
        t0 = time.monotonic()
        bed.virsh('n2', 'define', xmlf)
        defined = True
        t1 = time.monotonic()
        v, dt = wait_for(lambda: name in subprocess.run(['ls', vms], capture_output=True,
                                                        text=True).stdout.split(), 1.0, POLL)
        print('\n[events] virsh define took %.3fs; ls showed it %.3fs after' % (t1 - t0, dt))
        assert v, 'new VM not listed 1 s after virsh define: %s' % os.listdir(vms)
        v, dt2 = wait_for(lambda: read(os.path.join(vms, name, 'state')) == 'shutoff\n', 1.0, POLL)
        assert v, read_or_errno(os.path.join(vms, name, 'state'))
        print('[events] ... and its state read shutoff %.3fs after' % (dt + dt2))
        cfg = json.loads(read(os.path.join(vms, name, 'config.json')))
        uuid = re.search(r'<uuid>([^<]+)</uuid>', bed.virsh('n2', 'dumpxml', name)).group(1)
        assert cfg['name'] == name and cfg['uuid'] == uuid
        v, _ = wait_for(lambda: cluster(mount)['vms'] == {'total': 7, 'running': 3}, 1.0, POLL)
        assert v, cluster(mount)

        t0 = time.monotonic()
        bed.virsh('n2', 'undefine', name)
        defined = False
        t1 = time.monotonic()
        v, dt = wait_for(lambda: name not in subprocess.run(['ls', vms], capture_output=True,
                                                            text=True).stdout.split(), 1.0, POLL)
        print('[events] virsh undefine took %.3fs; gone from ls %.3fs after' % (t1 - t0, dt))
        assert v, 'VM still listed 1 s after virsh undefine'
        v, dt = wait_for(lambda: not os.path.exists(os.path.join(vms, name)), 1.0, POLL)
        assert v, 'stat of the undefined VM still succeeds 1 s after undefine'
        v, _ = wait_for(lambda: cluster(mount)['vms'] == {'total': 6, 'running': 3}, 1.0, POLL)
        assert v, cluster(mount)
    finally:
        if defined or name in bed.virsh('n2', 'list', '--all', '--name').split():
            bed.virsh('n2', 'undefine', name)


def pread_all(fd):
    out, off = [], 0
    while True:
        b = os.pread(fd, 65536, off)
        if not b:
            return b''.join(out)
        out.append(b)
        off += len(b)


def test_open_fd_keeps_its_document(mount, bed):
    # "content pinned at open": a reader that opened live.json before a change reads the whole
    # document it opened, even after the file shrank for everyone else
    live = os.path.join(mount, 'nodes', 'n1', 'vms', '101', 'live.json')
    st = os.path.join(mount, 'nodes', 'n1', 'vms', '101', 'state')
    try:
        bed.virsh('n1', 'start', '101')
        v, _ = wait_for(lambda: read(st) == 'running\n', 1.0, POLL)
        assert v
        fd = os.open(live, os.O_RDONLY)
        try:
            first = pread_all(fd)
            assert json.loads(first)['state'] == 'running'
            assert os.fstat(fd).st_size == len(first)
            bed.virsh('n1', 'destroy', '101')
            v, _ = wait_for(lambda: read(st) == 'shutoff\n', 1.0, POLL)
            assert v
            new = read(live, 'rb')
            assert json.loads(new)['state'] == 'shutoff' and len(new) < len(first)
            assert os.stat(live).st_size == len(new)
            again = pread_all(fd)
            assert again == first, ('the old fd read %d bytes of its %d-byte document'
                                    % (len(again), len(first)))
            # fstat reports the file's current size, not the old fd's: the kernel sends fstat
            # to the filesystem without the file handle (fs/fuse/dir.c fuse_getattr), and
            # keeps one size per inode (documented in docs/tree.md)
            assert os.fstat(fd).st_size == len(new)
            assert pread_all(fd) == first
        finally:
            os.close(fd)
    finally:
        ensure_state(bed, 'n1', '101', 'shutoff')
