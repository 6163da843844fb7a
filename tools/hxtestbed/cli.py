"""The command line: `testbed up|down|status|uri|kill-libvirtd|start-libvirtd|virsh`, and the
hidden verb `_node` by which a subreaper starts."""

import argparse
import json
import os
import signal
import sys
import time

from .bringup import up
from .control import kill_libvirtd, start_libvirtd, status, uri
from .state import DEFAULT_DIR, DEFAULT_PREFIX, TestbedError
from .subreaper import _node_main
from .teardown import down


def main(argv=None):
    ap = argparse.ArgumentParser(prog='testbed', description='Horcrux cluster-in-a-box')
    ap.add_argument('--dir', dest='gdir', default=None, help=argparse.SUPPRESS)
    sub = ap.add_subparsers(dest='verb', required=True)

    def add(name, **kw):
        p = sub.add_parser(name, **kw)
        p.add_argument('--dir', default=None, help='testbed state dir (default %s)' % DEFAULT_DIR)
        return p
    p = add('up', help='start N libvirtd nodes')
    p.add_argument('--nodes', type=int, default=3)
    p.add_argument('--vms', type=int, default=2)
    p.add_argument('--prefix', default=DEFAULT_PREFIX)
    p.add_argument('--force', action='store_true', help='tear down an existing testbed first')
    p.add_argument('--virt-type', default='auto', choices=['auto', 'kvm', 'qemu'],
                   help='domain type (auto: kvm if /dev/kvm can create a VM, else qemu/TCG)')
    p.add_argument('--btrfs', action='store_true',
                   help='also a dir pool "fast" on btrfs (a loop file) in every node')
    p = add('down', help='stop everything, remove DIR')
    p.add_argument('--prefix', default=None, help='also clean leftovers with this prefix')
    p = add('status')
    p.add_argument('--json', action='store_true')
    for v in ('uri', 'kill-libvirtd', 'start-libvirtd'):
        add(v).add_argument('node')
    p = add('virsh', help='virsh -c URI args...')
    p.add_argument('node')
    p.add_argument('args', nargs=argparse.REMAINDER)
    p = sub.add_parser('_node', help=argparse.SUPPRESS)
    for a in ('--nodedir', '--node', '--netns', '--prefix'):
        p.add_argument(a, required=True)
    a = ap.parse_args(argv)
    if a.verb != '_node':
        a.dir = a.dir or a.gdir or DEFAULT_DIR
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if a.verb == '_node':
            return _node_main(a)
        if a.verb == 'up':
            st = up(a.dir, a.nodes, a.vms, a.prefix, force=a.force, virt_type=a.virt_type,
                    btrfs=a.btrfs)
            print('testbed up: %d nodes, %d vms each, type %s, %.2fs; config %s'
                  % (len(st['nodes']), st['vms'], st['virt_type'], st['bringup_seconds'],
                     os.path.join(st['dir'], 'horcrux.conf')))
            for n in st['nodes']:
                print('  %s  %s' % (n['name'], n['uri']))
        elif a.verb == 'down':
            t0 = time.monotonic()
            problems = down(a.dir, prefix=a.prefix)
            for pr in problems:
                print('testbed down: ' + pr, file=sys.stderr)
            print('testbed down: %s (%.2fs)' % ('clean' if not problems else 'PROBLEMS',
                                               time.monotonic() - t0))
            return 1 if problems else 0
        elif a.verb == 'status':
            s = status(a.dir)
            if a.json:
                print(json.dumps(s, indent=2))
                return 0
            print('testbed %s prefix %s type %s config %s'
                  % (s['dir'], s['prefix'], s['virt_type'], s['conf']))
            for n in s['nodes']:
                print('%s: libvirtd %s  %s' % (n['name'],
                      'alive (pid %d)' % n['libvirtd_pid'] if n['libvirtd_alive'] else 'DOWN',
                      n['uri']))
                for dn, ds in sorted((n['domains'] or {}).items()):
                    print('    %-6s %s' % (dn, ds))
        elif a.verb == 'uri':
            print(uri(a.dir, a.node))
        elif a.verb == 'kill-libvirtd':
            print('killed libvirtd pid %d' % kill_libvirtd(a.dir, a.node))
        elif a.verb == 'start-libvirtd':
            print('libvirtd pid %d' % start_libvirtd(a.dir, a.node))
        elif a.verb == 'virsh':
            args = a.args[1:] if a.args[:1] == ['--'] else a.args
            os.execvp('virsh', ['virsh', '-c', uri(a.dir, a.node)] + args)
    except TestbedError as e:
        print('testbed: %s' % e, file=sys.stderr)
        return 1
    return 0
