"""up(): a testbed from nothing: checks, testbed.json, the network, the nodes' directories and
subreapers, waiting for every libvirtd, the guests (all nodes in parallel, falling back to
TCG when kvm guests do not start), horcrux.conf, optional btrfs pools.  A failed up() takes
down whatever it had made."""

import os
import sys
import threading
import time

from .btrfs import add_btrfs_pool
from .guests import _populate, _redefine_as_qemu, _StartError
from .host import _pid_alive, _wait_sock, kvm_usable
from .network import _net_setup, _netns_list
from .nodedir import _hosts_text, _prepare_node_dir
from .state import (DEFAULT_DIR, DEFAULT_PREFIX, SUBNET, TestbedError, _exists, _load, _save,
                    _write_conf, node_uuid)
from .subreaper import _spawn_reaper
from .teardown import down


def up(dir=DEFAULT_DIR, nodes=3, vms=2, prefix=DEFAULT_PREFIX, force=False, virt_type='auto',
       btrfs=False):
    d = os.path.abspath(dir)
    if os.geteuid() != 0:
        raise TestbedError('testbed must run as root')
    if not prefix or len(prefix) > 8 or not prefix.replace('-', '').replace('_', '').isalnum():
        raise TestbedError('prefix must be 1-8 chars [A-Za-z0-9_-]')
    if not (1 <= nodes <= 9):
        raise TestbedError('nodes must be 1..9')
    if not (0 <= vms <= 99):
        raise TestbedError('vms must be 0..99')
    mine = [ns for ns in _netns_list() if ns.startswith(prefix + '-')]
    if _exists(d) or mine:
        if not force:
            what = ('a testbed already exists at %s' % d) if _exists(d) else \
                ('network namespaces with prefix %r exist: %s' % (prefix, ' '.join(mine)))
            raise TestbedError(what + '; run `testbed down --dir %s` first or use --force' % d)
        down(d, prefix=prefix)
    t0 = time.monotonic()
    os.makedirs(os.path.join(d, 'nodes'), exist_ok=True)
    names = ['n%d' % (i + 1) for i in range(nodes)]
    if virt_type == 'auto':
        virt_type = 'kvm' if kvm_usable() else 'qemu'
    elif virt_type not in ('kvm', 'qemu'):
        raise TestbedError('virt_type must be auto, kvm or qemu')
    st = {'version': 1, 'dir': d, 'prefix': prefix, 'hub_netns': prefix + '-hub',
          'virt_type': virt_type, 'vms': vms, 'created': time.time(), 'nodes': []}
    for i, n in enumerate(names):
        nd = os.path.join(d, 'nodes', n)
        sock = os.path.join(nd, 'run/libvirt/libvirt-sock')
        st['nodes'].append({
            'name': n, 'index': i + 1, 'dir': nd, 'netns': '%s-%s' % (prefix, n),
            'address': '%s%d' % (SUBNET, 11 + i), 'socket': sock,
            'uri': 'qemu+unix:///system?socket=' + sock, 'host_uuid': node_uuid(prefix, n),
            'reaper_pid': None})
    _save(d, st)
    try:
        _net_setup(prefix, names)
        hosts = _hosts_text(st['nodes'])
        for n in st['nodes']:
            _prepare_node_dir(n['dir'], prefix, n['name'], hosts)
            n['reaper_pid'] = _spawn_reaper(n, prefix)
        _save(d, st)
        for n in st['nodes']:
            pid = n['reaper_pid']
            if not _wait_sock(n['socket'], 30, alive=lambda: _pid_alive(pid)):
                raise TestbedError('libvirtd of %s did not come up; see %s/reaper.log and '
                                   '%s/log/libvirtd.log' % (n['name'], n['dir'], n['dir']))
        t_daemons = time.monotonic() - t0
        # populate nodes in parallel
        errs = []

        def work(n):
            try:
                _populate(st, n, vms, st['virt_type'])
            except Exception as e:      # noqa
                errs.append((n, e))
        ths = [threading.Thread(target=work, args=(n,)) for n in st['nodes']]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        if errs and st['virt_type'] == 'kvm' and all(isinstance(e, _StartError) for _, e in errs):
            # /dev/kvm looked fine but guests do not start: fall back to TCG
            sys.stderr.write('testbed: kvm guests do not start (%s); using type qemu (TCG)\n'
                             % str(errs[0][1])[-200:])
            st['virt_type'] = 'qemu'
            for n, _ in errs:
                _redefine_as_qemu(prefix, n, vms)
            errs = []
        if errs:
            raise TestbedError('; '.join('%s: %s' % (n['name'], e) for n, e in errs))
        _write_conf(d, st)
        if btrfs:
            for n in st['nodes']:
                add_btrfs_pool(d, n['name'])
            st = _load(d)
        st['bringup_seconds'] = round(time.monotonic() - t0, 3)
        st['daemons_seconds'] = round(t_daemons, 3)
        _save(d, st)
    except BaseException:
        try:
            down(d, prefix=prefix)
        except Exception as e:   # noqa
            sys.stderr.write('testbed: cleanup after failed up also failed: %s\n' % e)
        raise
    return st
