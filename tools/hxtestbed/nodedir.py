"""A node's directory DIR/nodes/<n> on the host: its subdirectories, which the subreaper
bind-mounts over the node's /etc/libvirt, /var/lib/libvirt, /var/log/libvirt,
/var/cache/libvirt, /etc/hosts and /run (MOUNTS), and the libvirt configuration files
written into it."""

import os

from .state import _write, node_uuid

# bind-mount layout: per-node subdir -> path inside the node.  /run must be last
# (DIR itself may live below /run).
MOUNTS = [('etc', '/etc/libvirt'), ('lib', '/var/lib/libvirt'),
          ('log', '/var/log/libvirt'), ('cache', '/var/cache/libvirt'),
          ('hosts', '/etc/hosts'), ('run', '/run')]

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


def _hosts_text(nodes):
    """The nodes' own /etc/hosts: localhost and every node of the testbed by its address."""
    return '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' + ''.join(
        '%s %s\n' % (n['address'], n['name']) for n in nodes)


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
