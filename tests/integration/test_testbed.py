"""Integration test of tools/testbed (cluster-in-a-box of real libvirtd nodes).

Run as root:  /usr/bin/python3 -m pytest -s tests/integration/test_testbed.py
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, 'tools')
sys.path.insert(0, TOOLS)
import hxtestbed as tb  # noqa: E402

NODES = ['n1', 'n2', 'n3']

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='testbed needs root')


def cli(*args, check=True):
    p = subprocess.run([os.path.join(TOOLS, 'testbed')] + list(args), capture_output=True,
                       text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def refuses(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return False
    except OSError:
        return True
    finally:
        s.close()


def qemu_pid(bed, node, dom):
    n = [x for x in bed['state']['nodes'] if x['name'] == node][0]
    with open(os.path.join(n['dir'], 'run/libvirt/qemu/%s.pid' % dom)) as f:
        return int(f.read().strip())


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            s = f.read()
        return s[s.rindex(')') + 2] != 'Z'
    except OSError:
        return False


@pytest.fixture(scope='module')
def bed():
    d = tempfile.mkdtemp(prefix='hxtb-test-')
    os.rmdir(d)   # up() creates it
    prefix = 'hxt%d' % (os.getpid() % 10000)
    info = {'dir': d, 'prefix': prefix, 'pids': set()}
    t0 = time.monotonic()
    try:
        info['state'] = tb.up(d, nodes=3, vms=2, prefix=prefix)
        print('\n[testbed] up: %.3fs (daemons ready after %.3fs), virt type %s'
              % (time.monotonic() - t0, info['state']['daemons_seconds'],
                 info['state']['virt_type']))
        yield info
    finally:
        if os.path.exists(d) or any(ns.startswith(prefix + '-') for ns in tb._netns_list()):
            tb.down(d, prefix=prefix)


def test_config_and_state(bed):
    with open(os.path.join(bed['dir'], 'horcrux.conf')) as f:
        conf = f.read()
    lines = conf.splitlines()
    assert lines[0] == '# Horcrux daemon configuration (written by tools/testbed)'
    exp = []
    for n in NODES:
        exp += ['[node %s]' % n,
                'uri = qemu+unix:///system?socket=%s/nodes/%s/run/libvirt/libvirt-sock'
                % (bed['dir'], n)]
    assert lines[1:] == exp
    assert cli('uri', '--dir', bed['dir'], 'n2').stdout.strip() == tb.uri(bed['dir'], 'n2')
    assert set(tb._netns_list()) >= {bed['prefix'] + '-' + x for x in NODES + ['hub']}


def test_nodes_have_own_identity(bed):
    uuids = {}
    for n in NODES:
        assert tb.virsh(bed['dir'], n, 'hostname').strip() == n
        caps = tb.virsh(bed['dir'], n, 'capabilities')
        m = re.search(r'<host>\s*<uuid>([0-9a-f-]+)</uuid>', caps)
        assert m, caps[:300]
        uuids[n] = m.group(1)
        assert uuids[n] == tb.node_uuid(bed['prefix'], n)
    assert len(set(uuids.values())) == 3
    # node network: own netns with 10.77.0.x on eth0
    out = subprocess.run(['ip', '-n', bed['prefix'] + '-n2', '-br', 'addr', 'show', 'eth0'],
                         capture_output=True, text=True).stdout
    assert '10.77.0.12/24' in out


def test_domains_and_pool(bed):
    for k, n in enumerate(NODES, 1):
        out = tb.virsh(bed['dir'], n, 'list', '--all')
        states = {l.split()[1]: ' '.join(l.split()[2:]) for l in out.splitlines() if l.strip()}
        assert states == {'%d00' % k: 'running', '%d01' % k: 'shut off'}, out
        pool = tb.virsh(bed['dir'], n, 'pool-info', 'default')
        assert re.search(r'State:\s+running', pool) and re.search(r'Autostart:\s+yes', pool)
        vols = tb.virsh(bed['dir'], n, 'vol-list', 'default')
        assert '%d00.qcow2' % k in vols and '%d01.qcow2' % k in vols
    xml = tb.virsh(bed['dir'], 'n1', 'dumpxml', '100')
    assert '<description>' in xml and '<metadata' in xml
    st = tb.status(bed['dir'])
    assert [x['libvirtd_alive'] for x in st['nodes']] == [True] * 3
    assert st['nodes'][2]['domains'] == {'300': 'running', '301': 'shut off'}
    assert 'n3: libvirtd alive' in cli('status', '--dir', bed['dir']).stdout


def test_guest_is_real_qemu(bed):
    for k, n in enumerate(NODES, 1):
        pid = qemu_pid(bed, n, '%d00' % k)
        bed['pids'].add(pid)
        argv = open('/proc/%d/cmdline' % pid, 'rb').read().split(b'\0')
        assert argv[0].endswith(b'qemu-system-x86_64')
        assert b'guest=%d00,debug-threads=on' % k in argv
        # qemu lives in the node's network namespace
        assert os.stat('/proc/%d/ns/net' % pid).st_ino == \
            os.stat('/run/netns/%s-%s' % (bed['prefix'], n)).st_ino


def test_destroy_start(bed):
    old = qemu_pid(bed, 'n1', '100')
    t0 = time.monotonic()
    tb.virsh(bed['dir'], 'n1', 'destroy', '100')
    dt = time.monotonic() - t0
    gone = not os.path.exists('/proc/%d' % old)   # reaped by the subreaper, not a zombie
    print('\n[testbed] virsh destroy took %.3fs (qemu reaped at return: %s)' % (dt, gone))
    assert 'shut off' in tb.virsh(bed['dir'], 'n1', 'domstate', '100')
    t0 = time.monotonic()
    tb.virsh(bed['dir'], 'n1', 'start', '100')
    print('[testbed] virsh start took %.3fs' % (time.monotonic() - t0))
    assert 'running' in tb.virsh(bed['dir'], 'n1', 'domstate', '100')
    new = qemu_pid(bed, 'n1', '100')
    assert new != old and alive(new)
    bed['pids'].add(new)


def test_kill_and_restart_libvirtd(bed):
    n2 = [x for x in bed['state']['nodes'] if x['name'] == 'n2'][0]
    guest = qemu_pid(bed, 'n2', '200')
    r = cli('kill-libvirtd', '--dir', bed['dir'], 'n2')
    old = int(r.stdout.split()[-1])
    bed['pids'].add(old)
    assert not alive(old)
    assert refuses(n2['socket'])
    with pytest.raises(tb.TestbedError):
        tb.virsh(bed['dir'], 'n2', 'list')
    assert tb.virsh(bed['dir'], 'n1', 'hostname').strip() == 'n1'
    assert tb.virsh(bed['dir'], 'n3', 'hostname').strip() == 'n3'
    assert alive(guest), 'guest qemu must survive its libvirtd'
    st = tb.status(bed['dir'])
    assert [x['libvirtd_alive'] for x in st['nodes']] == [True, False, True]
    t0 = time.monotonic()
    new = tb.start_libvirtd(bed['dir'], 'n2')
    print('\n[testbed] start-libvirtd took %.3fs' % (time.monotonic() - t0))
    assert new != old
    bed['pids'].add(new)
    assert not refuses(n2['socket'])
    out = tb.virsh(bed['dir'], 'n2', 'list', '--all')
    assert re.search(r'200\s+running', out) and re.search(r'201\s+shut off', out), out
    assert qemu_pid(bed, 'n2', '200') == guest


def test_crashed_libvirtd_restarts_like_systemd(bed):
    """A libvirtd that dies by itself (here by SIGSEGV) is started again, as systemd's
    Restart=on-failure does for libvirtd.service, and the crash is recorded; guests live on."""
    n2 = [x for x in bed['state']['nodes'] if x['name'] == 'n2'][0]
    guest = qemu_pid(bed, 'n2', '200')
    old = tb._libvirtd_pid(n2)
    assert old
    os.kill(old, signal.SIGSEGV)
    t0 = time.monotonic()
    new = None
    while time.monotonic() - t0 < 10:
        new = tb._libvirtd_pid(n2)
        if new and new != old and not refuses(n2['socket']):
            break
        time.sleep(0.01)
    print('\n[testbed] crashed libvirtd serving again after %.3fs' % (time.monotonic() - t0))
    assert new and new != old and not refuses(n2['socket'])
    bed['pids'].update((old, new))
    c = tb.crashes(bed['dir'])[-1]
    assert (c['node'], c['role'], c['pid']) == ('n2', 'libvirtd', old), c
    assert c['how'].startswith('signal %d' % signal.SIGSEGV), c
    out = tb.virsh(bed['dir'], 'n2', 'list', '--all')
    assert re.search(r'200\s+running', out), out
    assert qemu_pid(bed, 'n2', '200') == guest
    # a libvirtd stopped on purpose stays down (kill_libvirtd), as before
    tb.kill_libvirtd(bed['dir'], 'n2')
    time.sleep(0.5)
    assert refuses(n2['socket']) and tb._libvirtd_pid(n2) is None
    bed['pids'].add(tb.start_libvirtd(bed['dir'], 'n2'))


def test_zz_down_leaves_nothing(bed):
    d, prefix = bed['dir'], bed['prefix']
    for n in bed['state']['nodes']:
        bed['pids'].add(n['reaper_pid'])
        for f in ('libvirtd.pid', 'virtlogd.pid'):
            bed['pids'].add(int(open(os.path.join(n['dir'], f)).read()))
    # API down (not the CLI): the subreapers are children of this process, and
    # only this process can reap them (the CLI would leave them as our zombies)
    t0 = time.monotonic()
    problems = tb.down(d)
    print('\n[testbed] down took %.3fs' % (time.monotonic() - t0))
    assert problems == []
    assert not os.path.exists(d)
    assert [p for p in bed['pids'] if os.path.exists('/proc/%d' % p)] == []
    assert not any(ns.startswith(prefix + '-') for ns in tb._netns_list())
    assert not any(d in l for l in open('/proc/mounts'))
    ps = subprocess.run(['ps', '-eo', 'pid,stat,args'], capture_output=True, text=True).stdout
    assert not [l for l in ps.splitlines() if d in l or '--prefix ' + prefix in l], ps
    # no process anywhere still has a mount of the testbed dir
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                assert d not in open('/proc/%s/mountinfo' % p).read()
            except OSError:
                pass
