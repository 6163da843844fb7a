"""Helpers shared by the write-side integration tests: VMs made through the tree (mkdir) and
removed again (rmdir, or virsh when the tree fails), errno-returning wrappers."""
import contextlib
import errno
import json
import os
import subprocess

from conftest import read, read_or_errno, wait_for


def vms_dir(mnt, node):
    return os.path.join(mnt, 'nodes', node, 'vms')


def vm_dir(mnt, node, vm):
    return os.path.join(mnt, 'nodes', node, 'vms', vm)


def uniq(tag):
    uniq.n += 1
    return 'it-%s-%d-%d' % (tag, os.getpid(), uniq.n)


uniq.n = 0


def disk(name, target='vda', size=32 * 1024 * 1024):
    return {'target': target, 'source': 'default/%s-disk0.qcow2' % name if target == 'vda'
            else 'default/%s-%s.qcow2' % (name, target),
            'source_type': 'volume', 'format': 'qcow2', 'size_bytes': size}


def errno_of(fn, *a, **kw):
    """0 when fn(*a) succeeds, else the errno of its OSError."""
    try:
        fn(*a, **kw)
        return 0
    except OSError as e:
        return e.errno


def write_file(path, text):
    """One write(2) of the whole text: one command for a control file (raises OSError)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_err(path, text):
    """write_file(path, text): 0, or the errno of its failure."""
    return errno_of(write_file, path, text)


def write_ctl(path, text):
    """One write(2) to a control file; returns 0 or the errno."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode() if isinstance(text, str) else text)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def write_doc(path, text):
    """In-place write of a whole document (open O_TRUNC, write, close); returns 0 or errno."""
    try:
        with open(path, 'w') as f:
            f.write(text)
        return 0
    except OSError as e:
        return e.errno


def config(mnt, node, vm):
    return json.loads(read(os.path.join(vm_dir(mnt, node, vm), 'config.json')))


def put_config(mnt, node, vm, cfg):
    return write_doc(os.path.join(vm_dir(mnt, node, vm), 'config.json'),
                     json.dumps(cfg, indent=2) + '\n')


def state(mnt, node, vm):
    return read(os.path.join(vm_dir(mnt, node, vm), 'state')).strip()


def vol_names(bed, node, pool='default'):
    out = bed.virsh(node, 'vol-list', pool)
    names = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[1].startswith('/'):
            names.append(f[0])
    return names


def domain_names(bed, node):
    return bed.virsh(node, 'list', '--all', '--name').split()


def virsh_quiet(bed, node, *args):
    try:
        return bed.virsh(node, *args)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        return None


def remove_vm(mnt, bed, node, name):
    """Best-effort removal: through the tree first, then virsh (destroy, undefine, volumes)."""
    d = vm_dir(mnt, node, name)
    try:
        if os.path.isdir(d):
            if read_or_errno(os.path.join(d, 'state')) not in ('shutoff\n',):
                write_ctl(os.path.join(d, 'state'), 'stop')
                wait_for(lambda: read(os.path.join(d, 'state')) == 'shutoff\n', 5)
            try:
                if config(mnt, node, name).get('protected'):
                    put_config(mnt, node, name, {'protected': False})
            except (OSError, ValueError):
                pass
            errno_of(os.rmdir, d)
    except OSError:
        pass
    if name in (domain_names(bed, node) or []):
        virsh_quiet(bed, node, 'destroy', name)
        virsh_quiet(bed, node, 'undefine', name)
    for v in vol_names(bed, node):
        if v.startswith(name + '-'):
            virsh_quiet(bed, node, 'vol-delete', '--pool', 'default', v)


@contextlib.contextmanager
def new_vm(mnt, bed, node='n1', tag='vm', with_disk=True, nic=False, memory=64):
    """A VM created with mkdir (plus a small volume disk so it can start); removed at the end."""
    name = uniq(tag)
    d = vm_dir(mnt, node, name)
    try:
        os.mkdir(d)
        cfg = {'memory_mib': memory, 'max_memory_mib': memory}
        if with_disk:
            cfg['disks'] = [disk(name)]
        if nic:
            cfg['nics'] = [{'type': 'user', 'model': 'virtio'}]
        rc = put_config(mnt, node, name, cfg)
        assert rc == 0, 'config.json of new VM %s: %s; last_error %r' % (
            name, errno.errorcode.get(rc, rc), read_or_errno(os.path.join(d, 'last_error')))
        yield name
    finally:
        remove_vm(mnt, bed, node, name)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
