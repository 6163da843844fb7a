"""hxtestbed: a cluster-in-a-box of N real libvirtd nodes on one machine.

Each node is a real libvirtd (plus virtlogd) living in its own mount + UTS +
network namespace, below a small child-subreaper process (the entry point
tools/hxtestbed.py run as `hxtestbed.py _node ...`).  Inside the node's mount
namespace per-node directories DIR/nodes/<n>/{run,etc,lib,log,cache} are
bind-mounted over /run, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt and
/var/cache/libvirt.  The root namespace talks to each node only through its unix
socket DIR/nodes/<n>/run/libvirt/libvirt-sock.

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

Modules, one job each (the lower ones never import the upper ones):
    state      testbed.json, the defaults, TestbedError, horcrux.conf
    host       libc calls, commands, sockets, processes in /proc, kvm_usable
    network    the hub and node network namespaces
    nodedir    a node's directory and libvirt configuration files
    guests     domain and pool XML, virsh by URI, a node's guests
    btrfs      btrfs pools on loop files inside a node
    subreaper  the process below which a node lives (`_node`)
    teardown   down()
    bringup    up()
    control    status, uri, virsh, crashes, kill/start libvirtd
    cli        main(): the `testbed` command line
"""

from .bringup import up
from .btrfs import add_btrfs_pool, remove_btrfs_pool
from .cli import main
from .control import _libvirtd_pid, crashes, kill_libvirtd, start_libvirtd, status, uri, virsh
from .guests import _virsh_uri, domain_xml, pool_xml
from .host import kvm_usable
from .network import _netns_list
from .state import DEFAULT_DIR, DEFAULT_PREFIX, TestbedError, _load, _node, node_uuid
from .teardown import down

__all__ = ['DEFAULT_DIR', 'DEFAULT_PREFIX', 'TestbedError', 'add_btrfs_pool', 'crashes',
           'domain_xml', 'down', 'kill_libvirtd', 'kvm_usable', 'main', 'node_uuid', 'pool_xml',
           'remove_btrfs_pool', 'start_libvirtd', 'status', 'up', 'uri', 'virsh',
           # used by the integration tests
           '_libvirtd_pid', '_load', '_netns_list', '_node', '_virsh_uri']
