"""Writing config.json (docs/config-json.md "Writing config.json", file-semantics.md documents):
every writable field, every way tools write files, and invalid documents that change nothing."""
import errno
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import read, wait_for
from hxvm import (config, disk, new_vm, put_config, vm_dir, vol_names, write_ctl, write_doc)

NODE = 'n2'
HXNS = '{https://horcrux.dev/xmlns/vm/1}'


@pytest.fixture
def vm(mount, bed):
    """A shut-off VM of this test on n2 with a volume disk and a user NIC."""
    with new_vm(mount, bed, NODE, 'cfg', nic=True) as name:
        yield name


def paths(mount, name):
    d = vm_dir(mount, NODE, name)
    return d, os.path.join(d, 'config.json'), os.path.join(d, 'domain.xml')


def dumpxml(bed, name):
    return ET.fromstring(bed.virsh(NODE, 'dumpxml', '--inactive', name))


def dump(cfg):
    return json.dumps(cfg, indent=2) + '\n'


# ------------------------------------------------------------------ every field round trip

def _chk_description(x, cfg):
    assert x.find('description').text == 'round trip: héllo\n\ttabbed'


def _chk_vcpus(x, cfg):
    v = x.find('vcpu')
    assert v.text == '4' and v.get('current') == '2', ET.tostring(v)


def _chk_vcpus_raise(x, cfg):
    v = x.find('vcpu')
    assert v.text == '3' and v.get('current') in (None, '3'), ET.tostring(v)
    assert cfg['max_vcpus'] == 3


def _chk_memory(x, cfg):
    assert x.find('memory').get('unit') == 'KiB' and x.find('memory').text == str(128 * 1024)
    cm = x.find('currentMemory')
    assert cm.get('unit') == 'KiB' and cm.text == str(96 * 1024)


def _chk_memory_raise(x, cfg):
    assert x.find('memory').text == str(1024 * 1024)
    assert x.find('currentMemory').text == str(1024 * 1024)
    assert cfg['max_memory_mib'] == 1024


def _chk_machine(x, cfg):
    assert x.find('os/type').get('machine') == 'pc-i440fx-7.1'


def _chk_uefi(x, cfg):
    assert x.find('os').get('firmware') == 'efi'


def _chk_boot_list(x, cfg):
    assert [b.get('dev') for b in x.findall('os/boot')] == ['cdrom', 'hd']


def _chk_boot_dev(x, cfg):
    assert x.findall('os/boot') == []
    d = [d for d in x.findall('devices/disk') if d.find('target').get('dev') == 'vda'][0]
    assert d.find('boot').get('order') == '1'


def _chk_autostart(x, cfg, bed=None, name=None):
    pass   # checked with virsh dominfo below


def _chk_disks(x, cfg):
    disks = {d.find('target').get('dev'): d for d in x.findall('devices/disk')}
    assert set(disks) == {'vda', 'vdb', 'sdc', 'hdd'}, list(disks)
    assert disks['vdb'].get('type') == 'volume'
    assert disks['vdb'].find('source').get('pool') == 'default'
    assert disks['sdc'].find('source').get('file') == '/var/lib/libvirt/images/nonexistent.img'
    assert disks['sdc'].find('target').get('bus') == 'scsi'
    assert disks['sdc'].find('driver').get('type') == 'raw'
    assert disks['sdc'].find('readonly') is not None
    assert disks['hdd'].get('device') == 'cdrom' and disks['hdd'].find('source') is None
    assert cfg['disks'][1]['size_bytes'] == 16 * 1024 * 1024


def _chk_nics(x, cfg):
    ifs = x.findall('devices/interface')
    assert len(ifs) == 2
    assert ifs[0].find('model').get('type') == 'e1000'
    assert ifs[1].get('type') == 'user' and ifs[1].find('model').get('type') == 'rtl8139'
    for n in cfg['nics']:
        assert re.fullmatch(r'[0-9a-f]{2}(:[0-9a-f]{2}){5}', n['mac']), n
    assert cfg['nics'][0]['mac'] != cfg['nics'][1]['mac']


def _chk_graphics(x, cfg):
    g = x.find('devices/graphics')
    assert g.get('type') == 'vnc' and g.get('port') == '5905' and g.get('autoport') == 'no'
    assert g.get('listen') == '127.0.0.1'


def _chk_tags(x, cfg):
    vmx = x.find('metadata/%svm' % HXNS)
    assert vmx is not None, ET.tostring(x.find('metadata'))
    assert [t.text for t in vmx.iter('%stag' % HXNS)] == ['prod', 'db']


def _chk_protected(x, cfg):
    vmx = x.find('metadata/%svm' % HXNS)
    assert vmx.find('%sprotected' % HXNS).text.strip() == 'true'


FIELDS = {
    'description': ({'description': 'round trip: héllo\n\ttabbed'}, _chk_description),
    'vcpus': ({'max_vcpus': 4, 'vcpus': 2}, _chk_vcpus),
    'vcpus_raises_max': ({'vcpus': 3}, _chk_vcpus_raise),
    'memory': ({'max_memory_mib': 128, 'memory_mib': 96}, _chk_memory),
    'memory_raises_max': ({'memory_mib': 1024}, _chk_memory_raise),
    'machine': ({'machine': 'pc-i440fx-7.1'}, _chk_machine),
    'firmware': ({'firmware': 'uefi'}, _chk_uefi),
    'boot_list': ({'boot': ['cdrom', 'hd']}, _chk_boot_list),
    'boot_device': ({'boot': ['vda']}, _chk_boot_dev),
    'autostart': ({'autostart': True}, _chk_autostart),
    'disks': (None, _chk_disks),   # built from the current disks
    'nics': (None, _chk_nics),
    'graphics': ({'graphics': [{'type': 'vnc', 'port': 5905, 'listen': '127.0.0.1'}]},
                 _chk_graphics),
    'tags': ({'tags': ['prod', 'db']}, _chk_tags),
    'protected': ({'protected': True}, _chk_protected),
}


@pytest.mark.parametrize('field', list(FIELDS))
def test_field_round_trip(mount, bed, vm, field):
    d, cj, dx = paths(mount, vm)
    before = config(mount, NODE, vm)
    patch, check = FIELDS[field]
    if field == 'disks':
        patch = {'disks': before['disks'] + [
            disk(vm, 'vdb', 16 * 1024 * 1024),
            {'target': 'sdc', 'source': '/var/lib/libvirt/images/nonexistent.img',
             'source_type': 'file', 'format': 'raw', 'bus': 'scsi', 'readonly': True},
            {'target': 'hdd', 'device': 'cdrom', 'source': None, 'readonly': True}]}
    elif field == 'nics':
        n0 = dict(before['nics'][0], model='e1000')
        patch = {'nics': [n0, {'type': 'user', 'model': 'rtl8139'}]}
    new = dict(before, **patch)
    rc = write_doc(cj, dump(new))
    assert rc == 0, (errno.errorcode.get(rc, rc), read(os.path.join(d, 'last_error')))
    after = config(mount, NODE, vm)
    for k, v in patch.items():
        if k == 'disks':
            assert [x['target'] for x in after['disks']] == ['vda', 'vdb', 'sdc', 'hdd']
            assert after['disks'][3]['device'] == 'cdrom' and after['disks'][3]['source'] is None
        elif k == 'nics':
            assert after['nics'][0]['mac'] == before['nics'][0]['mac']
            assert [n['model'] for n in after['nics']] == ['e1000', 'rtl8139']
        else:
            assert after[k] == v, (k, after[k], v)
    # fields not written keep their value
    for k in ('name', 'uuid', 'type', 'arch'):
        assert after[k] == before[k]
    tree_xml = ET.fromstring(read(dx))
    virsh_xml = dumpxml(bed, vm)
    check(tree_xml, after)
    check(virsh_xml, after)
    if field == 'autostart':
        assert re.search(r'Autostart:\s+enable', bed.virsh(NODE, 'dominfo', vm))
    if field == 'disks':
        assert '%s-vdb.qcow2' % vm in vol_names(bed, NODE)
    # writing back what is read now changes nothing
    x0 = read(dx)
    assert write_doc(cj, read(cj)) == 0
    assert read(dx) == x0
    if field == 'protected':
        assert put_config(mount, NODE, vm, {'protected': False}) == 0
    if field == 'firmware':
        assert put_config(mount, NODE, vm, {'firmware': 'bios'}) == 0
        assert ET.fromstring(read(dx)).find('os').get('firmware') in (None, 'bios')
        assert config(mount, NODE, vm)['firmware'] == 'bios'


# ------------------------------------------------------------------ the ways tools write

def w_python_inplace(cj, old, new, workdir):
    text = read(cj).replace(old, new)
    with open(cj, 'w') as f:
        f.write(text)


def w_python_replace(cj, old, new, workdir):
    tmp = os.path.join(os.path.dirname(cj), '.config.json.tmp-%d' % os.getpid())
    with open(tmp, 'w') as f:
        f.write(read(cj).replace(old, new))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, cj)
    assert not os.path.exists(tmp)


def _shell(cmd, *args):
    p = subprocess.run(['bash', '-c', cmd, 'sh'] + list(args), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, (cmd, p.returncode, p.stderr)


def _src(cj, old, new, workdir):
    src = os.path.join(workdir, 'new-config.json')
    with open(src, 'w') as f:
        f.write(read(cj).replace(old, new))
    return src


def w_sed(cj, old, new, workdir):
    _shell('sed -i "s/$2/$3/" "$1"', cj, old, new)


def w_cp(cj, old, new, workdir):
    _shell('cp "$1" "$2"', _src(cj, old, new, workdir), cj)


def w_cat(cj, old, new, workdir):
    _shell('cat "$1" > "$2"', _src(cj, old, new, workdir), cj)


def w_tee(cj, old, new, workdir):
    _shell('tee "$2" < "$1" > /dev/null', _src(cj, old, new, workdir), cj)


def w_vim(cj, old, new, workdir):
    p = subprocess.run(['vim', '-es', '-u', 'NONE', '-c', '%%s/%s/%s/' % (old, new), '-c', 'wq',
                        cj], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def w_vim_defaults(cj, old, new, workdir):
    # with the user's defaults (backup, swap file): vim's rename of the original fails (EPERM)
    # and it falls back to writing in place
    p = subprocess.run(['vim', '-es', '-c', 'set backup writebackup', '-c',
                        '%%s/%s/%s/' % (old, new), '-c', 'wq', cj], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


WRITERS = {'python_open_w': w_python_inplace, 'python_os_replace': w_python_replace,
           'sed_i': w_sed, 'cp': w_cp, 'cat_redirect': w_cat, 'tee': w_tee, 'vim_es': w_vim,
           'vim_backup': w_vim_defaults}


@pytest.mark.parametrize('how', list(WRITERS))
def test_write_paths(mount, bed, vm, workdir, how):
    d, cj, dx = paths(mount, vm)
    tag = 'written-by-%s' % how.replace('_', '-')
    assert config(mount, NODE, vm)['description'] == ''
    WRITERS[how](cj, '"description": ""', '"description": "%s"' % tag, workdir)
    assert config(mount, NODE, vm)['description'] == tag
    assert ET.fromstring(read(dx)).find('description').text == tag
    assert dumpxml(bed, vm).find('description').text == tag
    assert read(os.path.join(d, 'last_error')) == ''
    # scratch files are gone: only the tree's own files are listed
    assert sorted(os.listdir(d)) == ['clone', 'cloudinit', 'config.json', 'domain.xml', 'last_error',
                                     'live.json', 'metrics.json', 'snapshots', 'state']
    # and the same again with a number field, through the same path
    WRITERS[how](cj, '"max_vcpus": 1', '"max_vcpus": 2', workdir)
    assert config(mount, NODE, vm)['max_vcpus'] == 2
    assert dumpxml(bed, vm).find('vcpu').text == '2'


# ------------------------------------------------------------------ unchanged is a no-op

@pytest.mark.parametrize('where', ['own', '101', '100'])
def test_write_back_unchanged(mount, bed, where):
    def check(node, name):
        d = vm_dir(mount, node, name)
        cj, dx = os.path.join(d, 'config.json'), os.path.join(d, 'domain.xml')
        x0, v0, c0 = read(dx, 'rb'), bed.virsh(node, 'dumpxml', '--inactive', name), read(cj)
        assert write_doc(cj, c0) == 0, read(os.path.join(d, 'last_error'))
        tmp = os.path.join(d, 'sedXXXX%d' % os.getpid())
        with open(tmp, 'w') as f:
            f.write(c0)
        os.rename(tmp, cj)
        assert read(dx, 'rb') == x0
        assert bed.virsh(node, 'dumpxml', '--inactive', name) == v0
        assert read(cj) == c0
    if where == 'own':
        with new_vm(mount, bed, NODE, 'cfgsame', nic=True) as name:
            check(NODE, name)
    else:
        check('n1', where)


# ------------------------------------------------------------------ invalid documents

def _other_type(c):
    # type is read-only: the document asks for the other one of the two (the VM's own type
    # follows the node's capabilities, kvm where it offers hardware virtualization)
    c = dict(c)
    c['type'] = 'qemu' if c['type'] == 'kvm' else 'kvm'
    return dump(c)


def _set(**kw):
    def f(c):
        c = dict(c)
        c.update(kw)
        return dump(c)
    return f


def _edited(edit):
    """A document maker: edit(c) changes a deep copy of the VM's document c, dumped."""
    def f(c):
        c = json.loads(json.dumps(c))
        edit(c)
        return dump(c)
    return f


def _disk(i, **kw):
    return _edited(lambda c: c['disks'][i].update(kw))


def _add_disk(**kw):
    return _edited(lambda c: c['disks'].append(kw))


def _add_nic(**kw):
    return _edited(lambda c: c['nics'].append(kw))


def _text(t):
    return lambda c: t


def _vol_then_bad_mac(c):
    c = json.loads(json.dumps(c))
    c['disks'].append({'target': 'vdc', 'source': 'default/%s-vdc.qcow2' % c['name'],
                       'source_type': 'volume', 'format': 'qcow2', 'size_bytes': 1048576})
    c['nics'].append({'mac': 'not-a-mac', 'type': 'user'})
    return dump(c)


def _dup_mac(c):
    c = json.loads(json.dumps(c))
    c['nics'].append({'mac': c['nics'][0]['mac'].upper(), 'type': 'user'})
    return dump(c)


def _no_name(c):
    c = dict(c)
    del c['name']
    return dump(c)


# id -> (document builder from the current config, what last_error must name; None: syntax)
INVALID = {
    'syntax_truncated': (lambda c: dump(c)[:-3], None),
    'syntax_trailing_comma': (_text('{"vcpus": 1,}\n'), None),
    'syntax_single_quotes': (_text("{'vcpus': 1}\n"), None),
    'syntax_two_objects': (_text('{"vcpus": 1} {"vcpus": 2}\n'), None),
    'syntax_garbage': (_text('vcpus = 2\n'), None),
    'syntax_binary': (_text('\x00\x01\x02'), None),
    'not_object_array': (_text('[]\n'), None),
    'not_object_null': (_text('null\n'), None),
    'vcpus_string': (_set(vcpus='2'), 'vcpus'),
    'vcpus_zero': (_set(vcpus=0), 'vcpus'),
    'vcpus_float': (_set(vcpus=1.5), 'vcpus'),
    'vcpus_negative': (_set(vcpus=-1), 'vcpus'),
    'max_vcpus_too_big': (_set(max_vcpus=300, vcpus=1), 'max_vcpus'),
    'vcpus_above_explicit_max': (_set(max_vcpus=2, vcpus=3), 'vcpus'),
    'memory_too_small': (_set(memory_mib=8), 'memory_mib'),
    'memory_string': (_set(memory_mib='64'), 'memory_mib'),
    'max_memory_too_big': (_set(max_memory_mib=99999999999), 'max_memory_mib'),
    'memory_above_explicit_max': (_set(memory_mib=128, max_memory_mib=100), 'memory_mib'),
    'description_too_long': (_set(description='x' * 5000), 'description'),
    'description_control_char': (_set(description='bell\x07'), 'description'),
    'description_number': (_set(description=42), 'description'),
    'machine_bad_chars': (_set(machine='bad machine!'), 'machine'),
    'firmware_unknown': (_set(firmware='coreboot'), 'firmware'),
    'boot_mixed': (_set(boot=['hd', 'vda']), 'boot'),
    'boot_unknown_dev': (_set(boot=['floppy']), 'boot'),
    'boot_missing_device': (_set(boot=['vdz']), 'boot'),
    'boot_duplicate': (_set(boot=['hd', 'hd']), 'boot'),
    'autostart_string': (_set(autostart='yes'), 'autostart'),
    'protected_string': (_set(protected='true'), 'protected'),
    'tags_not_array': (_set(tags='prod'), 'tags'),
    'tags_leading_space': (_set(tags=[' prod']), 'tags'),
    'tags_duplicate': (_set(tags=['a', 'a']), 'tags'),
    'tags_empty_string': (_set(tags=['']), 'tags'),
    'tags_too_long': (_set(tags=['x' * 65]), 'tags'),
    'unknown_field': (_set(frobnicate=1), 'frobnicate'),
    'unknown_disk_field': (_disk(0, frobnicate=1), 'frobnicate'),
    'disks_not_array': (_set(disks={'target': 'vda'}), 'disks'),
    'disk_duplicate_target': (_add_disk(target='vda', source='/x.img'), 'disks[1].target'),
    'disk_bad_target': (_add_disk(target='xda', source='/x.img'), 'disks[1].target'),
    'disk_missing_target': (_add_disk(source='/x.img'), 'disks[1]'),
    'disk_bad_bus': (_disk(0, bus='foo'), 'disks[0].bus'),
    'disk_bad_format': (_add_disk(target='vdb', source='/x.img', format='exe'),
                        'disks[1].format'),
    'disk_relative_path': (_add_disk(target='vdb', source='x.img'), 'disks[1].source'),
    'disk_nonexistent_pool': (_add_disk(target='vdb', source='nopool/x.qcow2',
                                        source_type='volume', size_bytes=1048576),
                              'disks[1].source'),
    'disk_nonexistent_volume': (_add_disk(target='vdb', source='default/no-such-vol.qcow2',
                                          source_type='volume'), 'disks[1].source'),
    'disk_resize_volume': (_disk(0, size_bytes=1), 'disks[0].size_bytes'),
    'disk_cdrom_writable': (_add_disk(target='hdc', device='cdrom', readonly=False),
                            'disks[1].readonly'),
    'nic_nonexistent_network': (_add_nic(type='network', network='nonet'),
                                'nics[1].network'),
    'nic_nonexistent_bridge': (_add_nic(type='bridge', bridge='nobr0'), 'nics[1].bridge'),
    'nic_bad_mac': (_add_nic(mac='zz:zz:zz:zz:zz:zz', type='user'), 'nics[1].mac'),
    'nic_multicast_mac': (_add_nic(mac='01:00:5e:00:00:01', type='user'), 'nics[1].mac'),
    'nic_duplicate_mac': (_dup_mac, 'nics[1].mac'),
    'nic_bad_model': (_add_nic(type='user', model='Bad Model'), 'nics[1].model'),
    'nic_bad_type': (_add_nic(type='vhostuser'), 'nics[1].type'),
    'graphics_sdl': (_set(graphics=[{'type': 'sdl'}]), 'graphics[0].type'),
    'graphics_bad_port': (_set(graphics=[{'type': 'vnc', 'port': 80}]), 'graphics[0].port'),
    'name_change': (_set(name='renamed'), 'name'),
    'name_missing_is_kept': None,   # placeholder removed below (omitted keys keep)
    'uuid_change': (_set(uuid='11111111-2222-3333-4444-555555555555'), 'uuid'),
    'type_change': (_other_type, 'type'),
    'arch_change': (_set(arch='aarch64'), 'arch'),
    'volume_then_bad_mac': (_vol_then_bad_mac, 'nics[1].mac'),
}
del INVALID['name_missing_is_kept']


@pytest.mark.parametrize('case', list(INVALID))
def test_invalid_document(mount, bed, vm, case):
    d, cj, dx = paths(mount, vm)
    build, field = INVALID[case]
    cfg = config(mount, NODE, vm)
    x0, v0, c0 = read(dx, 'rb'), bed.virsh(NODE, 'dumpxml', '--inactive', vm), read(cj)
    vols0 = vol_names(bed, NODE)
    doc = build(cfg)
    # in place: the error comes from close()
    rc = write_doc(cj, doc)
    assert rc == errno.EINVAL, 'in-place write returned %s' % errno.errorcode.get(rc, rc)
    line = read(os.path.join(d, 'last_error'))
    assert line.count('\n') == 1 and ' uid=0 ' in line and ': EINVAL: ' in line, line
    assert '/nodes/%s/vms/%s/config.json' % (NODE, vm) in line, line
    if field:
        assert re.search(r'(^|[^a-z_])%s' % re.escape(field), line.split(': EINVAL: ', 1)[1]), \
            'last_error does not name %s: %r' % (field, line)
    assert read(dx, 'rb') == x0, 'domain.xml changed'
    assert bed.virsh(NODE, 'dumpxml', '--inactive', vm) == v0
    assert read(cj) == c0
    assert vol_names(bed, NODE) == vols0, 'volumes changed'
    # by rename of a scratch file: the error comes from rename()
    tmp = os.path.join(d, '.hx-tmp-%s' % case)
    with open(tmp, 'w') as f:
        f.write(doc)
    try:
        os.rename(tmp, cj)
        raise AssertionError('rename of an invalid document succeeded')
    except OSError as e:
        assert e.errno == errno.EINVAL, e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    assert read(dx, 'rb') == x0
    assert read(cj) == c0
    assert vol_names(bed, NODE) == vols0


def test_omitted_keys_keep(mount, bed, vm):
    d, cj, dx = paths(mount, vm)
    before = config(mount, NODE, vm)
    assert write_doc(cj, '{"description": "only this"}\n') == 0
    after = config(mount, NODE, vm)
    assert after['description'] == 'only this'
    before['description'] = 'only this'
    assert after == before
    # a document without disks keeps the disk (and its volume)
    assert '%s-disk0.qcow2' % vm in vol_names(bed, NODE)


def test_live_change_running(mount, bed, vm):
    d, cj, dx = paths(mount, vm)
    st = os.path.join(d, 'state')
    assert write_ctl(st, 'start') == 0
    try:
        assert read(st) == 'running\n'
        cfg = config(mount, NODE, vm)
        rc = write_doc(cj, dump(dict(cfg, max_vcpus=2, vcpus=2, description='live')))
        assert rc == 0, read(os.path.join(d, 'last_error'))
        after = config(mount, NODE, vm)
        assert after['vcpus'] == 2 and after['max_vcpus'] == 2 and after['description'] == 'live'
        assert dumpxml(bed, vm).find('vcpu').text == '2'
        live = json.loads(read(os.path.join(d, 'live.json')))
        assert live['state'] == 'running'
        pend = live.get('pending_changes', live.get('pending'))
        assert isinstance(pend, list), live
        assert read(st) == 'running\n'
    finally:
        write_ctl(st, 'stop')
        wait_for(lambda: read(st) == 'shutoff\n', 5)
