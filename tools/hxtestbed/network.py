"""The testbed's network: a hub network namespace <prefix>-hub with a bridge br0, and per node
a namespace <prefix>-<n> with a veth eth0 to the hub, address 10.77.0.(11+i)/24.  Listed, made
and deleted here."""

import os

from .host import _run, libc
from .state import SUBNET


def _netns_list():
    p = _run(['ip', 'netns', 'list'], check=False)
    return [l.split()[0] for l in p.stdout.splitlines() if l.strip()]


def _net_setup(prefix, names):
    hub = prefix + '-hub'
    _run(['ip', 'netns', 'add', hub])
    _run(['ip', '-n', hub, 'link', 'set', 'lo', 'up'])
    _run(['ip', '-n', hub, 'link', 'add', 'br0', 'type', 'bridge'])
    _run(['ip', '-n', hub, 'link', 'set', 'br0', 'up'])
    for i, n in enumerate(names):
        ns = '%s-%s' % (prefix, n)
        _run(['ip', 'netns', 'add', ns])
        _run(['ip', '-n', hub, 'link', 'add', 'v-' + n, 'type', 'veth',
              'peer', 'name', 'eth0', 'netns', ns])
        _run(['ip', '-n', hub, 'link', 'set', 'v-' + n, 'master', 'br0', 'up'])
        _run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
        _run(['ip', '-n', ns, 'addr', 'add', '%s%d/24' % (SUBNET, 11 + i), 'dev', 'eth0'])
        _run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])


def _net_teardown(prefix):
    """Deletes the prefix's network namespaces (deleting the hub also deletes veths and the
    bridge).  Returns a list of problems (empty when clean)."""
    problems = []
    for ns in _netns_list():
        if ns.startswith(prefix + '-'):
            p = _run(['ip', 'netns', 'delete', ns], check=False)
            if p.returncode != 0:
                problems.append('ip netns delete %s: %s' % (ns, p.stderr.strip()))
    # `ip netns add` turned /run/netns into a (shared) self-bind mount; drop it
    # again when no named netns is left (not lazy: fails harmlessly if in use).
    try:
        with open('/proc/self/mountinfo') as f:
            mounted = any(l.split()[4] == '/run/netns' for l in f)
        if mounted and not os.listdir('/run/netns'):
            libc().umount2(b'/run/netns', 0)
        if not os.listdir('/run/netns'):
            os.rmdir('/run/netns')
    except OSError:
        pass
    return problems
