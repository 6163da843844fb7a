"""mkdir/rmdir of VMs, scratch files in VM directories, EPERM on live files."""
import errno
import json
import os
import re
import stat
import xml.etree.ElementTree as ET

from conftest import read
from hxvm import (config, disk, domain_names, errno_of, new_vm, put_config, remove_vm, uniq,
                  vm_dir, vms_dir, vol_names, write_ctl)

LISTING = ['clone', 'cloudinit', 'config.json', 'domain.xml', 'last_error', 'live.json', 'metrics.json',
           'snapshots', 'state']


def test_mkdir_defaults_volumes_rmdir(mount, bed):
    name = uniq('mk')
    d = vm_dir(mount, 'n3', name)
    try:
        os.mkdir(d)
        assert name in os.listdir(vms_dir(mount, 'n3'))
        assert sorted(os.listdir(d)) == LISTING
        assert read(os.path.join(d, 'state')) == 'shutoff\n'
        assert name in domain_names(bed, 'n3')
        cfg = config(mount, 'n3', name)
        # kvm where the node's capabilities offer it for x86_64 guests, qemu (TCG) otherwise
        caps = ET.fromstring(bed.virsh('n3', 'capabilities'))
        kvm = bool(caps.findall("guest/arch[@name='x86_64']/domain[@type='kvm']"))
        assert cfg['name'] == name and cfg['type'] == ('kvm' if kvm else 'qemu')
        assert (cfg['vcpus'], cfg['max_vcpus'], cfg['memory_mib'], cfg['max_memory_mib']) == \
            (1, 1, 512, 512)
        assert cfg['disks'] == [] and cfg['nics'] == [] and cfg['protected'] is False
        assert re.fullmatch(r'[0-9a-f-]{36}', cfg['uuid'])
        assert stat.S_IMODE(os.stat(os.path.join(d, 'config.json')).st_mode) == 0o644
        assert stat.S_IMODE(os.stat(os.path.join(d, 'state')).st_mode) == 0o644
        assert stat.S_IMODE(os.stat(os.path.join(d, 'last_error')).st_mode) == 0o444

        assert put_config(mount, 'n3', name, {
            'memory_mib': 64, 'max_memory_mib': 64,
            'disks': [disk(name), disk(name, 'vdb', 1024 * 1024)],
            'nics': [{'type': 'user', 'model': 'virtio'}]}) == 0, \
            read(os.path.join(d, 'last_error'))
        vols = vol_names(bed, 'n3')
        assert '%s-disk0.qcow2' % name in vols and '%s-vdb.qcow2' % name in vols, vols
        info = bed.virsh('n3', 'vol-info', '--pool', 'default', '%s-disk0.qcow2' % name)
        assert re.search(r'Capacity:\s+32\.00 MiB', info), info
        cfg = config(mount, 'n3', name)
        assert [x['target'] for x in cfg['disks']] == ['vda', 'vdb']
        assert cfg['disks'][0]['size_bytes'] == 32 * 1024 * 1024
        assert len(cfg['nics']) == 1
        assert re.fullmatch(r'[0-9a-f]{2}(:[0-9a-f]{2}){5}', cfg['nics'][0]['mac']), cfg['nics']

        # a disk removed from the document leaves its volume alone until the VM goes
        os.rmdir(d)
        assert name not in os.listdir(vms_dir(mount, 'n3'))
        assert not os.path.exists(d)
        assert name not in domain_names(bed, 'n3')
        vols = vol_names(bed, 'n3')
        assert not [v for v in vols if v.startswith(name + '-')], vols
        assert '300.qcow2' in vols and '301.qcow2' in vols, bed.virsh('n3', 'vol-list', 'default')
    finally:
        remove_vm(mount, bed, 'n3', name)


def test_mkdir_name_taken_anywhere(mount, bed):
    for node, taken, where in (('n1', '200', 'n2'), ('n3', '101', 'n1'), ('n2', '200', 'n2')):
        e = errno_of(os.mkdir, vm_dir(mount, node, taken))
        assert e == errno.EEXIST, (node, taken, errno.errorcode.get(e, e))
    with new_vm(mount, bed, 'n1', 'taken', with_disk=False) as name:
        e = errno_of(os.mkdir, vm_dir(mount, 'n2', name))
        assert e == errno.EEXIST
        line = read(os.path.join(mount, 'nodes', 'n2', 'last_error'))
        assert 'EEXIST' in line and 'n1' in line and name in line, line
        assert line.count('\n') == 1 and ' uid=0 ' in line and 'mkdir' in line, line
        assert name not in domain_names(bed, 'n2')
        e = errno_of(os.mkdir, vm_dir(mount, 'n3', '200'))
        assert e == errno.EEXIST
        line = read(os.path.join(mount, 'nodes', 'n3', 'last_error'))
        assert 'EEXIST' in line and 'n2' in line, line


def test_mkdir_bad_names(mount, bed):
    before = [domain_names(bed, n) for n in ('n1',)]
    for bad in ('.x', '.hidden-vm', 'a\x01b', 'tab\there', 'x' * 201, 'é' * 101):
        p = vm_dir(mount, 'n1', bad)
        e = errno_of(os.mkdir, p)
        try:
            assert e == errno.EINVAL, (bad, errno.errorcode.get(e, e))
            line = read(os.path.join(mount, 'nodes', 'n1', 'last_error'))
            assert 'EINVAL' in line and 'name' in line, line
        finally:
            if e == 0:
                remove_vm(mount, bed, 'n1', bad)
    assert [domain_names(bed, n) for n in ('n1',)] == before
    # 200 bytes is the longest name
    with new_vm(mount, bed, 'n1', 'x' * 170, with_disk=False) as name:
        assert len(name) <= 200 and os.path.isdir(vm_dir(mount, 'n1', name))


def test_rmdir_running_and_protected(mount, bed):
    with new_vm(mount, bed, 'n2', 'rm') as name:
        d = vm_dir(mount, 'n2', name)
        st = os.path.join(d, 'state')
        assert write_ctl(st, 'start') == 0
        assert errno_of(os.rmdir, d) == errno.EBUSY
        assert read(st) == 'running\n'
        line = read(os.path.join(d, 'last_error'))
        assert 'rmdir' in line and 'EBUSY' in line, line
        assert write_ctl(st, 'stop') == 0
        assert put_config(mount, 'n2', name, {'protected': True}) == 0
        assert errno_of(os.rmdir, d) == errno.EPERM
        assert os.path.isdir(d) and name in domain_names(bed, 'n2')
        line = read(os.path.join(d, 'last_error'))
        assert 'rmdir' in line and 'EPERM' in line and 'protected' in line, line
        assert '%s-disk0.qcow2' % name in vol_names(bed, 'n2')
        assert put_config(mount, 'n2', name, {'protected': False}) == 0
        os.rmdir(d)
        assert name not in os.listdir(vms_dir(mount, 'n2'))
        assert '%s-disk0.qcow2' % name not in vol_names(bed, 'n2')
    # testbed VMs are not deleted by a refused rmdir
    assert errno_of(os.rmdir, vm_dir(mount, 'n2', '200')) == errno.EBUSY
    assert '200' in domain_names(bed, 'n2')


def test_rmdir_keeps_foreign_volumes(mount, bed):
    """Only volumes Horcrux created go with the VM: a disk on an existing volume stays."""
    with new_vm(mount, bed, 'n3', 'rmkeep') as a:
        va = '%s-disk0.qcow2' % a
        with new_vm(mount, bed, 'n3', 'rmuse', with_disk=False) as b:
            assert put_config(mount, 'n3', b, {'disks': [
                {'target': 'vda', 'source': 'default/' + va, 'source_type': 'volume',
                 'format': 'qcow2'}]}) == 0, read(os.path.join(vm_dir(mount, 'n3', b),
                                                               'last_error'))
            os.rmdir(vm_dir(mount, 'n3', b))
            assert va in vol_names(bed, 'n3')
        assert va in vol_names(bed, 'n3')


def test_scratch_files(mount, bed):
    with new_vm(mount, bed, 'n1', 'scr', with_disk=False) as name:
        d = vm_dir(mount, 'n1', name)
        p = os.path.join(d, '.scratch-%d' % os.getpid())
        with open(p, 'w') as f:
            f.write('hello world\n')
        assert read(p) == 'hello world\n'
        assert sorted(os.listdir(d)) == LISTING, 'scratch file listed'
        os.truncate(p, 5)
        assert read(p) == 'hello'
        with open(p, 'a') as f:
            f.write('!')
            os.fsync(f.fileno())
        assert read(p) == 'hello!'
        os.chmod(p, 0o600)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        q = os.path.join(d, '4913')   # vim's probe file name
        os.rename(p, q)
        assert errno_of(os.stat, p) == errno.ENOENT
        assert read(q) == 'hello!'
        os.unlink(q)
        assert errno_of(os.stat, q) == errno.ENOENT
        # O_EXCL on an existing scratch name fails, on a live file too
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        assert errno_of(os.open, p, os.O_WRONLY | os.O_CREAT | os.O_EXCL) == errno.EEXIST
        assert errno_of(os.open, os.path.join(d, 'state'),
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL) == errno.EEXIST
        os.unlink(p)
        # a scratch file renamed over config.json commits it and is gone
        cfg = config(mount, 'n1', name)
        with open(p, 'w') as f:
            json.dump(dict(cfg, description='via scratch'), f)
        os.rename(p, os.path.join(d, 'config.json'))
        assert errno_of(os.stat, p) == errno.ENOENT
        assert config(mount, 'n1', name)['description'] == 'via scratch'
        assert sorted(os.listdir(d)) == LISTING
        # scratch files are private to their VM directory: other VMs do not see them
        with open(p, 'w') as f:
            f.write('x')
        assert errno_of(os.stat, os.path.join(vm_dir(mount, 'n1', '101'),
                                              os.path.basename(p))) == errno.ENOENT
        os.unlink(p)


def test_eperm_on_live_files_and_elsewhere(mount, bed):
    with new_vm(mount, bed, 'n1', 'eperm', with_disk=False) as name:
        d = vm_dir(mount, 'n1', name)
        x0 = read(os.path.join(d, 'domain.xml'))
        for f in LISTING:
            # the kernel itself refuses unlink of a directory (snapshots/, cloudinit/)
            want = errno.EISDIR if os.path.isdir(os.path.join(d, f)) else errno.EPERM
            assert errno_of(os.unlink, os.path.join(d, f)) == want, f
            assert errno_of(os.rename, os.path.join(d, f), os.path.join(d, f + '~')) == \
                errno.EPERM, f
        # rename of one live file over another
        assert errno_of(os.rename, os.path.join(d, 'domain.xml'),
                        os.path.join(d, 'config.json')) == errno.EPERM
        assert sorted(os.listdir(d)) == LISTING
        assert read(os.path.join(d, 'domain.xml')) == x0
        assert errno_of(os.mkdir, os.path.join(d, 'sub')) == errno.EPERM
        # new files outside VM directories
        for p in (os.path.join(vms_dir(mount, 'n1'), 'newfile'),
                  os.path.join(mount, 'nodes', 'n1', 'newfile'),
                  os.path.join(mount, 'newfile')):
            e = errno_of(lambda: open(p, 'w').close())
            assert e in (errno.EPERM, errno.EACCES), (p, errno.errorcode.get(e, e))
            assert errno_of(os.stat, p) == errno.ENOENT
        assert errno_of(lambda: open(os.path.join(vms_dir(mount, 'n1'), 'newfile'),
                                     'w').close()) == errno.EPERM
        # a VM directory cannot be renamed into another node or name
        assert errno_of(os.rename, d, vm_dir(mount, 'n1', name + '-b')) in (errno.EPERM,
                                                                             errno.EXDEV)
        assert os.path.isdir(d)
