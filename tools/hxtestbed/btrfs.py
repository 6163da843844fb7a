"""btrfs pools: a btrfs filesystem on a loop file DIR/nodes/<n>/<name>.btrfs, mounted inside
one node's mount namespace only, with a dir pool on it; recorded in testbed.json ('loops') so
that remove_btrfs_pool() and down() unmount it and detach its loop device."""

import os
import shutil

from .guests import _virsh_uri, pool_xml
from .host import _pid_alive, _run
from .state import TestbedError, _load, _node, _save


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


def _umount_loop(st, ent, ignore=(TestbedError,)):
    """Unmounts one pool's filesystem inside its node, while the node lives; the errors in
    ignore are no problem (the mount goes with the node's namespace anyway)."""
    try:
        n = _node(st, ent['node'])
        if n.get('reaper_pid') and _pid_alive(n['reaper_pid']):
            _in_node(n, 'umount', ent['target'])
    except ignore:
        pass


def _drop_loop(st, ent):
    """Unmounts (inside the node, while it lives) and detaches one loop device."""
    _umount_loop(st, ent)
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


def _detach_loops_under(d):
    """Detaches the loop devices of btrfs pools below d (their mounts went with the nodes'
    namespaces).  Returns a list of problems."""
    problems = []
    for dev, f in _loops_under(d):
        p = _run(['losetup', '-d', dev], check=False)
        if p.returncode != 0:
            problems.append('losetup -d %s (%s): %s' % (dev, f, p.stderr.strip()))
    return problems
