"""The tree as plain programs see it, checked against what libvirt itself says (virsh)."""
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET

from conftest import NODES, VMS, read

UNITS = {'b': 1, 'bytes': 1, 'k': 1024, 'kib': 1024, 'kb': 1000, 'm': 1024 ** 2, 'mib': 1024 ** 2,
         'mb': 1000 ** 2, 'g': 1024 ** 3, 'gib': 1024 ** 3, 'gb': 1000 ** 3}


def sh(*cmd):
    p = subprocess.run(list(cmd), capture_output=True, timeout=30)
    assert p.returncode == 0, (cmd, p.stderr)
    return p.stdout


def mib(el):
    return int(el.text) * UNITS[el.get('unit', 'KiB').lower()] // (1024 * 1024)


def test_ls_nodes_and_vms(mount):
    assert sh('ls', mount).decode().split() == ['README', 'cluster', 'events', 'nodes', 'version']
    assert sh('ls', os.path.join(mount, 'nodes')).decode().split() == NODES
    assert sh('ls', os.path.join(mount, 'cluster')).decode().split() == ['audit', 'jobs', 'status']
    for n in NODES:
        assert sh('ls', os.path.join(mount, 'nodes', n)).decode().split() == \
            ['info.json', 'last_error', 'metrics.json', 'status', 'storage', 'uri', 'vms']
        assert sh('ls', os.path.join(mount, 'nodes', n, 'storage')).decode().split() == ['default']
        assert sh('ls', os.path.join(mount, 'nodes', n, 'vms')).decode().split() == sorted(VMS[n])
        for vm in VMS[n]:
            assert sh('ls', os.path.join(mount, 'nodes', n, 'vms', vm)).decode().split() == \
                ['clone', 'cloudinit', 'config.json', 'domain.xml', 'last_error', 'live.json',
                 'metrics.json', 'snapshots', 'state']
            # the testbed's VMs have no snapshots: no entries, not even the current link
            assert sh('ls', os.path.join(mount, 'nodes', n, 'vms', vm, 'snapshots')) == b''
            assert sh('ls', os.path.join(mount, 'nodes', n, 'vms', vm, 'cloudinit')).decode() \
                .split() == ['meta-data', 'network-config', 'user-data']


def test_state(mount):
    for n in NODES:
        for vm, state in VMS[n].items():
            assert sh('cat', os.path.join(mount, 'nodes', n, 'vms', vm, 'state')) == \
                (state + '\n').encode(), (n, vm)


def test_uri_and_status(mount, bed):
    for n in NODES:
        assert read(os.path.join(mount, 'nodes', n, 'uri')) == bed.uri(n) + '\n'
        assert read(os.path.join(mount, 'nodes', n, 'status')) == 'online\n'


def test_config_json_matches_virsh(mount, bed):
    for n in NODES:
        for vm in VMS[n]:
            raw = sh('cat', os.path.join(mount, 'nodes', n, 'vms', vm, 'config.json'))
            assert raw.endswith(b'}\n')
            cfg = json.loads(raw)
            # config.json is the persistent definition
            x = ET.fromstring(bed.virsh(n, 'dumpxml', '--inactive', vm))
            assert cfg['name'] == x.findtext('name') == vm
            assert cfg['uuid'] == x.findtext('uuid')
            assert cfg['max_memory_mib'] == mib(x.find('memory'))
            assert cfg['memory_mib'] == mib(x.find('currentMemory'))
            v = x.find('vcpu')
            assert cfg['max_vcpus'] == int(v.text)
            assert cfg['vcpus'] == int(v.get('current', v.text))
            want = []
            for d in x.findall('devices/disk'):
                s = d.find('source')
                src = None if s is None else (s.get('file') or s.get('dev') or s.get('name')
                                              or s.get('volume'))
                want.append((d.find('target').get('dev'), src))
            assert [(d['target'], d['source']) for d in cfg['disks']] == want
            assert want, 'testbed guests have a disk'
            assert [nic['mac'] for nic in cfg['nics']] == \
                [i.find('mac').get('address') for i in x.findall('devices/interface')]


def test_domain_xml_is_virsh_dumpxml(mount, bed):
    for n in NODES:
        for vm in VMS[n]:
            ours = read(os.path.join(mount, 'nodes', n, 'vms', vm, 'domain.xml'), 'rb')
            theirs = subprocess.run(['virsh', '-c', bed.uri(n), 'dumpxml', vm],
                                    capture_output=True, check=True).stdout
            # the document itself must be libvirt's, whatever the trailing newlines
            assert ours.rstrip(b'\n') == theirs.rstrip(b'\n'), (n, vm)
            # docs/tree.md: byte for byte libvirt's document; virsh prints it plus one newline
            assert ours + b'\n' == theirs, (
                '%s/%s: domain.xml (%d bytes, ends %r) != virsh dumpxml (%d bytes, ends %r)'
                % (n, vm, len(ours), ours[-3:], len(theirs), theirs[-3:]))


def test_live_json(mount):
    for n in NODES:
        for vm, state in VMS[n].items():
            live = json.loads(read(os.path.join(mount, 'nodes', n, 'vms', vm, 'live.json')))
            assert live['state'] == state
            assert live['persistent'] is True
            if state == 'running':
                assert live['running']['name'] == vm and live['id'] >= 1
            else:
                assert live['running'] is None


def test_info_json(mount, bed):
    for n in NODES:
        raw = read(os.path.join(mount, 'nodes', n, 'info.json'), 'rb')
        info = json.loads(raw)
        assert info['name'] == n and info['status'] == 'online' and info['last_error'] is None
        assert info['uri'] == bed.uri(n)
        assert info['host']['hostname'] == n
        caps = ET.fromstring(bed.virsh(n, 'capabilities'))
        assert info['host']['host_uuid'] == caps.findtext('host/uuid')
        assert info['host']['cpu']['arch'] == caps.findtext('host/cpu/arch')
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', info['status_since'])
    uuids = {json.loads(read(os.path.join(mount, 'nodes', n, 'info.json')))['host']['host_uuid']
             for n in NODES}
    assert len(uuids) == 3


def test_cluster_status(mount):
    st = json.loads(read(os.path.join(mount, 'cluster', 'status')))
    assert st == {'nodes': {'total': 3, 'online': 3, 'offline': 0, 'connecting': 0},
                  'vms': {'total': 6, 'running': 3}, 'health': 'ok'}


def test_version_and_readme(mount):
    v = json.loads(read(os.path.join(mount, 'version')))
    assert v['horcruxfs'] == '0.1.0' and v['tree_format'] == 1
    assert re.fullmatch(r'\d+\.\d+\.\d+', v['libvirt_client'])
    readme = read(os.path.join(mount, 'README'))
    assert 'nodes/<node>' in readme and readme.endswith('\n')


def test_modes_and_read_only(mount):
    import errno
    import stat
    vm = os.path.join(mount, 'nodes', 'n1', 'vms', '100')
    # writable by root: state (actions), config.json (documents), the VM and vms directories
    assert stat.S_IMODE(os.stat(os.path.join(vm, 'state')).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(os.path.join(vm, 'config.json')).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(vm).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.dirname(vm)).st_mode) == 0o755
    # the rest is read-only, even for root
    for rel in ('domain.xml', 'live.json', 'metrics.json', 'last_error'):
        f = os.path.join(vm, rel)
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o444, rel
        try:
            os.open(f, os.O_WRONLY)
            raise AssertionError('write open of %s succeeded' % rel)
        except OSError as e:
            assert e.errno == errno.EACCES, rel
    assert stat.S_IMODE(os.stat(os.path.join(mount, 'nodes', 'n1')).st_mode) == 0o555
    try:
        os.stat(os.path.join(mount, 'nodes', 'n1', 'vms', 'nosuchvm'))
        raise AssertionError('stat of a missing VM succeeded')
    except OSError as e:
        assert e.errno == errno.ENOENT
