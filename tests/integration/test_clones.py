"""Clones as jobs, on the real testbed: full and linked, on one node and across nodes, cancel,
no space, a daemon restart in the middle; templates.

Each test makes its own source VM (mkdir + config.json with a new volume), writes data into its
disk with qemu-io on the host path, and removes everything it created, even on failure.
"""
import errno
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import read, tb, wait_for
from hxvm import write_err, write_file

MiB = 1024 * 1024
GiB = 1024 * MiB
FINAL = ('done', 'failed', 'cancelled', 'interrupted')


# ------------------------------------------------------------------ helpers

def host_path(bed, node, vol):
    """The host path of a volume of pool 'default' (the node sees /var/lib/libvirt/images)."""
    return os.path.join(bed.dir, 'nodes', node, 'lib', 'images', vol)


def vols(bed, node):
    out = bed.virsh(node, 'vol-list', 'default')
    return sorted(l.split()[0] for l in out.splitlines() if l.strip())


def domains(bed, node):
    return sorted(l.strip() for l in bed.virsh(node, 'list', '--all', '--name').splitlines()
                  if l.strip())


class Made:
    """What a test created: removed at the end whatever happened."""

    def __init__(self, bed, mnt):
        self.bed, self.mnt = bed, mnt
        self.vms = []    # (node, name)
        self.vols = []   # (node, volume)

    def cleanup(self):
        for node, name in reversed(self.vms):
            d = os.path.join(self.mnt, 'nodes', node, 'vms', name)
            if os.path.isdir(d):
                cfg = os.path.join(d, 'config.json')
                try:
                    c = json.loads(read(cfg))
                    if c.get('template') or c.get('protected'):
                        c['template'] = False
                        c['protected'] = False
                        write_file(cfg, json.dumps(c))
                    if read(os.path.join(d, 'state')).strip() != 'shutoff':
                        write_file(os.path.join(d, 'state'), 'stop')
                    os.rmdir(d)
                except OSError:
                    pass
            if name in domains(self.bed, node):
                tb._virsh_uri(self.bed.uri(node), 'destroy', name, check=False)
                tb._virsh_uri(self.bed.uri(node), 'undefine', name, check=False)
        for node, vol in self.vols:
            if vol in vols(self.bed, node):
                self.bed.virsh(node, 'vol-delete', '--pool', 'default', vol)


@pytest.fixture
def made(bed, mount):
    m = Made(bed, mount)
    yield m
    m.cleanup()


def make_vm(made, node, name, size, fmt='qcow2', data=()):
    """A shut-off VM with one new volume disk vda; data: (offset, length, byte) to write."""
    mnt = made.mnt
    d = os.path.join(mnt, 'nodes', node, 'vms', name)
    os.mkdir(d)
    made.vms.append((node, name))
    vol = '%s.%s' % (name, 'qcow2' if fmt == 'qcow2' else 'img')
    cfg = json.loads(read(os.path.join(d, 'config.json')))
    cfg['disks'] = [{'target': 'vda', 'source': 'default/' + vol, 'source_type': 'volume',
                     'format': fmt, 'size_bytes': size}]
    write_file(os.path.join(d, 'config.json'), json.dumps(cfg))
    path = host_path(made.bed, node, vol)
    for off, ln, byte in data:
        subprocess.run(['qemu-io', '-f', fmt, '-c', 'write -q -P %d %d %d' % (byte, off, ln), path],
                       check=True, capture_output=True)
    return d, vol


def set_config(d, **kw):
    cfg = json.loads(read(os.path.join(d, 'config.json')))
    cfg.update(kw)
    write_file(os.path.join(d, 'config.json'), json.dumps(cfg))


def clone(made, node, vm, req, expect_node=None):
    """Starts a clone; returns the job id (the clone file shows the job)."""
    made.vms.append((expect_node or req.get('node', node), req['name']))
    f = os.path.join(made.mnt, 'nodes', node, 'vms', vm, 'clone')
    write_file(f, json.dumps(req))
    st = json.loads(read(f))
    assert st['type'] == 'clone' and st['target'].endswith('/vms/' + req['name']), st
    return st['id']


def status(mnt, job):
    return json.loads(read(os.path.join(mnt, 'cluster', 'jobs', job, 'status.json')))


def wait_job(mnt, job, timeout=60):
    v, _ = wait_for(lambda: (lambda s: s if s['state'] in FINAL and s['cleanup'] != 'pending'
                             else None)(status(mnt, job)), timeout, 0.05)
    assert v, status(mnt, job)
    return v


def copying(made, mount, name):
    """A clone of cheavy (heavy_vm) to n2 as name, once it has copied its first bytes: its job
    id."""
    job = clone(made, 'n1', 'cheavy', {'name': name, 'node': 'n2'})
    v, _ = wait_for(lambda: status(mount, job)['bytes_done'] > 0, 30, 0.01)
    assert v, status(mount, job)
    return job


def timed_full_clone(made, mount, vm, name):
    """A full clone of n1's VM vm (a 1 GiB disk) as name: done, verified, every byte copied.
    Returns (job id, seconds)."""
    t0 = time.monotonic()
    job = clone(made, 'n1', vm, {'name': name})
    st = wait_job(mount, job, 120)
    full = time.monotonic() - t0
    assert st['state'] == 'done' and st['result']['verified'] is True, st
    assert st['bytes_done'] == st['bytes_total'] == GiB
    return job, full


def qemu_img_compare(a, b):
    return subprocess.run(['qemu-img', 'compare', '-q', a, b], capture_output=True).returncode


def backing_file(path):
    info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', '-U', path],
                                     check=True, capture_output=True, text=True).stdout)
    return info.get('backing-filename')


DATA = ((0, MiB, 0xab), (10 * MiB, 2 * MiB, 0xcd), (60 * MiB, 64 * 1024, 0x11))


# ------------------------------------------------------------------ tests

def test_full_clone_same_node(made, bed, mount):
    src, vol = make_vm(made, 'n1', 'cs1', 64 * MiB, data=DATA)
    job = clone(made, 'n1', 'cs1', {'name': 'cs1c'})
    st = wait_job(mount, job)
    assert st['state'] == 'done', st
    r = st['result']
    assert r['verified'] is True and r['mode'] == 'full' and r['node'] == 'n1'
    assert st['bytes_done'] == st['bytes_total'] > 0
    disk = r['disks'][0]
    assert disk['sha256_source'] == disk['sha256_copy']
    assert disk['copy'] == 'default/cs1c-vda.qcow2'
    assert qemu_img_compare(host_path(bed, 'n1', vol), host_path(bed, 'n1', 'cs1c-vda.qcow2')) == 0
    # the clone: new UUID, new MAC, its own disk, recorded for rmdir
    c = json.loads(read(os.path.join(mount, 'nodes/n1/vms/cs1c/config.json')))
    s = json.loads(read(os.path.join(src, 'config.json')))
    assert c['uuid'] != s['uuid']
    assert c['disks'][0]['source'] == 'default/cs1c-vda.qcow2'
    assert [n['mac'] for n in c['nics']] != [n['mac'] for n in s['nics']] or not s['nics']
    log = read(os.path.join(mount, 'cluster/jobs', job, 'log'))
    assert 'verified' in log
    # the lock is gone: a change to the source works
    set_config(src, tags=['after-clone'])
    os.rmdir(os.path.join(mount, 'nodes/n1/vms/cs1c'))
    assert 'cs1c-vda.qcow2' not in vols(bed, 'n1')
    # a testbed VM: a file disk in the pool and a NIC; the clone gets a new MAC and its own file
    job = clone(made, 'n1', '101', {'name': 'c101'})
    st = wait_job(mount, job)
    assert st['state'] == 'done', st
    c = json.loads(read(os.path.join(mount, 'nodes/n1/vms/c101/config.json')))
    s = json.loads(read(os.path.join(mount, 'nodes/n1/vms/101/config.json')))
    assert len(c['nics']) == len(s['nics']) == 1
    assert c['nics'][0]['mac'] != s['nics'][0]['mac']
    assert c['disks'][0]['source'] == '/var/lib/libvirt/images/c101-vda.qcow2'
    assert qemu_img_compare(host_path(bed, 'n1', '101.qcow2'),
                            host_path(bed, 'n1', 'c101-vda.qcow2')) == 0
    os.rmdir(os.path.join(mount, 'nodes/n1/vms/c101'))
    assert 'c101-vda.qcow2' not in vols(bed, 'n1')


def test_linked_clone_of_template(made, bed, mount):
    src, vol = make_vm(made, 'n1', 'ct1', 64 * MiB, data=DATA)
    # linked clones need a template
    f = os.path.join(src, 'clone')
    assert write_err(f, json.dumps({'name': 'ct1l', 'mode': 'linked'})) == errno.EINVAL
    set_config(src, template=True)
    assert json.loads(read(os.path.join(src, 'config.json')))['template'] is True
    assert write_err(os.path.join(src, 'state'), 'start') == errno.EPERM
    job = clone(made, 'n1', 'ct1', {'name': 'ct1l', 'mode': 'linked'})
    st = wait_job(mount, job)
    assert st['state'] == 'done', st
    assert st['result']['mode'] == 'linked' and st['result']['verified'] is None
    copy = host_path(bed, 'n1', 'ct1l-vda.qcow2')
    assert backing_file(copy) == '/var/lib/libvirt/images/' + vol
    # the backing path is the node's (/var/lib/libvirt/images); on the host it lives elsewhere
    linked = 'json:' + json.dumps({'driver': 'qcow2', 'file': {'driver': 'file', 'filename': copy},
                                   'backing': {'driver': 'qcow2', 'file': {
                                       'driver': 'file', 'filename': host_path(bed, 'n1', vol)}}})
    assert qemu_img_compare(host_path(bed, 'n1', vol), linked) == 0
    c = json.loads(read(os.path.join(mount, 'nodes/n1/vms/ct1l/config.json')))
    assert c['template'] is False
    # the template cannot go while a clone hangs on it
    with pytest.raises(OSError) as e:
        os.rmdir(src)
    assert e.value.errno == errno.EBUSY
    assert 'ct1l' in read(os.path.join(src, 'last_error'))
    # nor stop being a template
    cfg = json.loads(read(os.path.join(src, 'config.json')))
    cfg['template'] = False
    assert write_err(os.path.join(src, 'config.json'), json.dumps(cfg)) == errno.EBUSY
    # linked across nodes is refused
    assert write_err(f, json.dumps({'name': 'ct1x', 'mode': 'linked', 'node': 'n2'})) == \
        errno.EINVAL
    os.rmdir(os.path.join(mount, 'nodes/n1/vms/ct1l'))
    set_config(src, template=False)
    os.rmdir(src)


def test_cross_node_full_clone(made, bed, mount):
    _, vol = make_vm(made, 'n1', 'cx1', 64 * MiB, data=DATA)
    job = clone(made, 'n1', 'cx1', {'name': 'cx1c', 'node': 'n2', 'keep_macs': True,
                                     'start': True})
    st = wait_job(mount, job)
    assert st['state'] == 'done', st
    assert read(os.path.join(mount, 'nodes/n2/vms/cx1c/state')) == 'running\n'
    write_file(os.path.join(mount, 'nodes/n2/vms/cx1c/state'), 'stop')
    assert st['result']['verified'] is True and st['result']['node'] == 'n2'
    assert st['bytes_done'] == st['bytes_total'] > 0
    assert qemu_img_compare(host_path(bed, 'n1', vol), host_path(bed, 'n2', 'cx1c-vda.qcow2')) == 0
    assert 'cx1c' in os.listdir(os.path.join(mount, 'nodes/n2/vms'))
    c = json.loads(read(os.path.join(mount, 'nodes/n2/vms/cx1c/config.json')))
    s = json.loads(read(os.path.join(mount, 'nodes/n1/vms/cx1/config.json')))
    assert [n['mac'] for n in c['nics']] == [n['mac'] for n in s['nics']]
    os.rmdir(os.path.join(mount, 'nodes/n2/vms/cx1c'))
    assert 'cx1c-vda.qcow2' not in vols(bed, 'n2')


def test_checks_before_starting(made, bed, mount):
    src, vol = make_vm(made, 'n1', 'cc1', 64 * MiB)
    f = os.path.join(src, 'clone')
    assert write_err(f, 'not json') == errno.EINVAL
    assert write_err(f, json.dumps({'name': 'x', 'mode': 'deep'})) == errno.EINVAL
    assert 'mode' in read(os.path.join(src, 'last_error'))
    assert write_err(f, json.dumps({'name': 'x', 'colour': 1})) == errno.EINVAL
    assert write_err(f, json.dumps({'name': '101'})) == errno.EEXIST
    assert write_err(f, json.dumps({'name': 'x', 'node': 'n9'})) == errno.ENOENT
    # a running source: its disks would change under the copy
    assert write_err(os.path.join(mount, 'nodes/n1/vms/100/clone'),
                     json.dumps({'name': 'x'})) == errno.EBUSY
    # no space: a sparse raw disk larger than the pool's free space, refused before copying
    info = bed.virsh('n2', 'pool-info', '--bytes', 'default')
    free = int([l.split()[1] for l in info.splitlines() if l.startswith('Available')][0])
    big = 'cc1-big.img'
    made.vols.append(('n1', big))
    bed.virsh('n1', 'vol-create-as', 'default', big, str(free + GiB), '--allocation', '0',
              '--format', 'raw')
    cfg = json.loads(read(os.path.join(src, 'config.json')))
    cfg['disks'].append({'target': 'vdb', 'source': 'default/' + big, 'source_type': 'volume',
                         'format': 'raw', 'size_bytes': None})
    write_file(os.path.join(src, 'config.json'), json.dumps(cfg))
    before = vols(bed, 'n2')
    jobs_before = os.listdir(os.path.join(mount, 'cluster/jobs'))
    assert write_err(f, json.dumps({'name': 'cc1c', 'node': 'n2'})) == errno.ENOSPC
    assert 'free' in read(os.path.join(src, 'last_error'))
    assert vols(bed, 'n2') == before
    assert os.listdir(os.path.join(mount, 'cluster/jobs')) == jobs_before
    assert 'cc1c' not in domains(bed, 'n2')


@pytest.fixture
def big_vm(made, bed):
    """A VM with a 1 GiB raw disk: 64 MiB of data in a few places, the rest holes."""
    data = tuple((k * 128 * MiB, 8 * MiB, 0x20 + k) for k in range(8))
    return make_vm(made, 'n1', 'cbig', GiB, fmt='raw', data=data)


@pytest.fixture
def heavy_vm(made, bed):
    """A VM with a 1 GiB raw disk, 384 MiB of it data: a copy that takes a few seconds."""
    data = tuple((k * 128 * MiB, 48 * MiB, 0x20 + k) for k in range(8))
    return make_vm(made, 'n1', 'cheavy', GiB, fmt='raw', data=data)


def test_cancel_large_clone(made, bed, mount, heavy_vm):
    src, vol = heavy_vm
    before_n2 = vols(bed, 'n2')
    job = copying(made, mount, 'cbigc')
    write_file(os.path.join(mount, 'cluster/jobs', job, 'cancel'), '1')
    st = wait_job(mount, job)
    assert st['state'] == 'cancelled', st
    assert st['cleanup'] == 'done'
    assert 0 < st['bytes_done'] < st['bytes_total']
    assert vols(bed, 'n2') == before_n2
    assert 'cbigc' not in domains(bed, 'n2')
    assert 'cbigc' not in os.listdir(os.path.join(mount, 'nodes/n2/vms'))
    # no lock left: a change to the source works, and so does a new clone of the same name
    set_config(src, tags=['after-cancel'])
    # a finished job cannot be cancelled
    assert write_err(os.path.join(mount, 'cluster/jobs', job, 'cancel'), '1') == errno.EINVAL


def test_times_and_listing(made, bed, mount, big_vm):
    src, vol = big_vm
    j1, full = timed_full_clone(made, mount, 'cbig', 'cbigf')
    assert qemu_img_compare(host_path(bed, 'n1', vol), host_path(bed, 'n1', 'cbigf-vda.img')) == 0
    set_config(src, template=True)
    t0 = time.monotonic()
    j2 = clone(made, 'n1', 'cbig', {'name': 'cbigl', 'mode': 'linked'})
    st = wait_job(mount, j2)
    linked = time.monotonic() - t0
    assert st['state'] == 'done', st
    print('\n[clones] 1 GiB raw disk, 64 MiB of data: full clone %.2f s (copy and verify), '
          'linked clone %.3f s' % (full, linked))
    jobs = os.listdir(os.path.join(mount, 'cluster/jobs'))
    assert jobs == sorted(jobs) and jobs[-2:] == [j1, j2]
    os.rmdir(os.path.join(mount, 'nodes/n1/vms/cbigl'))
    os.rmdir(os.path.join(mount, 'nodes/n1/vms/cbigf'))


def test_restart_interrupts_clone(made, bed, mount, heavy_vm, mounted_daemon):
    before_n2 = vols(bed, 'n2')
    job = copying(made, mount, 'cbigr')
    mounted_daemon.restart(wait_node=['n1', 'n2'])
    st = wait_job(mount, job)
    assert st['state'] == 'interrupted', st
    assert st['cleanup'] == 'done'
    assert vols(bed, 'n2') == before_n2
    assert 'cbigr' not in domains(bed, 'n2')
    assert job in os.listdir(os.path.join(mount, 'cluster/jobs'))


def test_time_full_clone_of_full_disk(made, bed, mount):
    """A 1 GiB disk written all over: the copy and both hashes cover every byte."""
    src, vol = make_vm(made, 'n1', 'cfull', GiB, fmt='raw', data=((0, GiB, 0x5a),))
    _, full = timed_full_clone(made, mount, 'cfull', 'cfullc')
    print('\n[clones] 1 GiB raw disk, all data: full clone %.2f s (copy and verify)' % full)
    os.rmdir(os.path.join(mount, 'nodes/n1/vms/cfullc'))
    assert 'cfullc-vda.img' not in vols(bed, 'n1')


def test_killed_daemon_job_cleaned_up_at_start(made, bed, mount, heavy_vm, mounted_daemon):
    """A daemon that dies mid-clone: the next start marks the job interrupted and removes what
    it had created, from the job's record."""
    before_n2 = vols(bed, 'n2')
    job = copying(made, mount, 'cbigk')
    mounted_daemon.send(signal.SIGKILL)
    mounted_daemon.proc.wait(10)
    mounted_daemon.force_cleanup()
    mounted_daemon.start(wait_node=['n1', 'n2'])
    st = wait_job(mount, job, 30)
    assert st['state'] == 'interrupted' and st['cleanup'] == 'done', st
    assert vols(bed, 'n2') == before_n2
    assert 'cbigk' not in domains(bed, 'n2')
    assert 'cleanup done' in read(os.path.join(mount, 'cluster/jobs', job, 'log'))
    # the source is free again
    set_config(heavy_vm[0], tags=['after-kill'])
