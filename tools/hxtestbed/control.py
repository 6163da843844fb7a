"""A running testbed from the root namespace: a node's URI, virsh on it, status (daemons and
guests), the crashes the subreapers recorded, and a node's libvirtd killed on purpose (it stays
down) or started again."""

import json
import os
import signal
import time

from .guests import _virsh_uri
from .host import _cmdline, _pid_alive, _read_pid, _run, _sock_accepts
from .state import DEFAULT_DIR, TestbedError, _load, _node, _write


def uri(dir, node):
    return _node(_load(dir), node)['uri']


def virsh(dir, node, *args):
    return _virsh_uri(uri(dir, node), *args)


def _libvirtd_pid(n):
    pid = _read_pid(os.path.join(n['dir'], 'libvirtd.pid'))
    if pid and _pid_alive(pid) and _cmdline(pid)[:1] == ['/usr/sbin/libvirtd']:
        return pid
    return None


def status(dir=DEFAULT_DIR):
    st = _load(dir)
    out = {'dir': st['dir'], 'prefix': st['prefix'], 'virt_type': st.get('virt_type'),
           'conf': os.path.join(st['dir'], 'horcrux.conf'), 'nodes': []}
    for n in st['nodes']:
        pid = _libvirtd_pid(n)
        ent = {'name': n['name'], 'uri': n['uri'], 'netns': n['netns'], 'address': n['address'],
               'reaper_alive': bool(n.get('reaper_pid') and _pid_alive(n['reaper_pid'])),
               'libvirtd_pid': pid, 'libvirtd_alive': bool(pid) and _sock_accepts(n['socket']),
               'domains': None}
        if ent['libvirtd_alive']:
            p = _run(['virsh', '-c', n['uri'], 'list', '--all', '--name'], check=False)
            doms = {}
            if p.returncode == 0:
                for name in [l.strip() for l in p.stdout.splitlines() if l.strip()]:
                    q = _run(['virsh', '-c', n['uri'], 'domstate', name], check=False)
                    doms[name] = q.stdout.strip() if q.returncode == 0 else '?'
                ent['domains'] = doms
        out['nodes'].append(ent)
    return out


def crashes(dir):
    """Every daemon exit the subreapers did not ask for (see _node_main), oldest first."""
    out = []
    for n in _load(dir)['nodes']:
        try:
            with open(os.path.join(n['dir'], 'crashes')) as f:
                out += [dict(json.loads(l), node=n['name']) for l in f if l.strip()]
        except FileNotFoundError:
            pass
    return sorted(out, key=lambda c: c['time'])


def kill_libvirtd(dir, node):
    n = _node(_load(dir), node)
    pid = _libvirtd_pid(n)
    if not pid:
        raise TestbedError('libvirtd of %s is not running' % node)
    # the subreaper restarts a libvirtd that dies by itself; this one is meant to stay down
    # (libvirtd.hold, until start_libvirtd) and its exit is no crash (killed.<pid>, taken by
    # the subreaper when it reaps it, however late that is)
    _write(os.path.join(n['dir'], 'libvirtd.hold'), 'killed by kill_libvirtd\n')
    _write(os.path.join(n['dir'], 'killed.%d' % pid), 'killed by kill_libvirtd\n')
    os.kill(pid, signal.SIGKILL)
    # until the subreaper reaped it (it then removes libvirtd.pid); a process with a thread in
    # uninterruptible sleep can take seconds to go
    end = time.monotonic() + 30
    while _pid_alive(pid) or _read_pid(os.path.join(n['dir'], 'libvirtd.pid')) == pid:
        if time.monotonic() > end:
            raise TestbedError('libvirtd of %s (pid %d) still not gone 30 s after SIGKILL'
                               % (node, pid))
        time.sleep(0.005)
    return pid


def start_libvirtd(dir, node, timeout=20):
    n = _node(_load(dir), node)
    rp = n.get('reaper_pid')
    if not rp or not _pid_alive(rp):
        raise TestbedError('subreaper of %s is gone; node cannot be restarted (down/up)' % node)
    try:
        os.unlink(os.path.join(n['dir'], 'libvirtd.hold'))
    except FileNotFoundError:
        pass
    if _libvirtd_pid(n) and _sock_accepts(n['socket']):
        return _libvirtd_pid(n)
    os.kill(rp, signal.SIGUSR1)
    end = time.monotonic() + timeout
    again = time.monotonic() + 1
    while time.monotonic() < end:
        pid = _libvirtd_pid(n)
        if pid and _sock_accepts(n['socket']):
            return pid
        # The subreaper starts libvirtd only once it has reaped the old one: a SIGUSR1 that
        # came before the old process was fully gone found it still listed and did nothing.
        if time.monotonic() > again and not (pid and _pid_alive(pid)):
            os.kill(rp, signal.SIGUSR1)
            again = time.monotonic() + 1
        time.sleep(0.01)
    raise TestbedError('libvirtd of %s did not come back within %ss' % (node, timeout))

