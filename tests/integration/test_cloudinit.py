"""cloudinit/{user-data,meta-data,network-config}: writable documents in the domain's metadata,
a NoCloud ISO (label cidata) built and attached as a cdrom at start, detached when emptied, and
a Linux guest (TCG, direct kernel boot) that reads the data from it."""
import errno
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import read, tb, wait_for, write_atomic

import hxguest

NODE = 'n1'
FILES = ['meta-data', 'network-config', 'user-data']
CI_NS = 'https://horcrux.dev/xmlns/cloudinit/1'


def vmdir(mnt, vm):
    return os.path.join(mnt, 'nodes', NODE, 'vms', vm)


def ci(mnt, vm, f=''):
    return os.path.join(vmdir(mnt, vm), 'cloudinit', f)


def run(argv, input=None, check=True):
    p = subprocess.run(argv, input=input, capture_output=True, timeout=60)
    if check:
        assert p.returncode == 0, (argv, p.returncode, p.stderr.decode(errors='replace'))
    return p


def virsh(bed, *args, check=True):
    return tb._virsh_uri(bed.uri(NODE), *args, check=check)


def vol_path(bed, vm):
    # The node's /var/lib/libvirt is DIR/nodes/<n>/lib on the host (tools/hxtestbed/).
    return os.path.join(bed.dir, 'nodes', NODE, 'lib', 'images', vm + '-cidata.iso')


def vols(bed):
    virsh(bed, 'pool-refresh', 'default')
    return [l.split()[0] for l in virsh(bed, 'vol-list', 'default').splitlines() if l.strip()]


def ci_cdroms(bed, vm):
    x = ET.fromstring(virsh(bed, 'dumpxml', '--inactive', vm))
    return [d for d in x.findall('devices/disk')
            if d.get('device') == 'cdrom' and d.find('source') is not None
            and d.find('source').get('volume') == vm + '-cidata.iso']


def act(mnt, vm, word):
    with open(os.path.join(vmdir(mnt, vm), 'state'), 'w') as f:
        f.write(word)


def state(mnt, vm):
    return read(os.path.join(vmdir(mnt, vm), 'state')).strip()


def isoinfo(path, *args):
    return run(['isoinfo', '-i', path] + list(args)).stdout


@pytest.fixture
def made(bed):
    """VM names a test creates; destroyed, undefined and their ISO volume deleted at the end,
    whatever happened."""
    names = []
    yield names
    for vm in names:
        virsh(bed, 'destroy', vm, check=False)
        virsh(bed, 'undefine', vm, check=False)
        virsh(bed, 'vol-delete', '--pool', 'default', vm + '-cidata.iso', check=False)


def new_vm(mnt, made, vm):
    made.append(vm)
    os.mkdir(vmdir(mnt, vm))


def test_documents(mounted_daemon, bed, made, workdir):
    mnt = mounted_daemon.mnt
    vm = 'ci-docs'
    new_vm(mnt, made, vm)
    assert sorted(os.listdir(ci(mnt, vm))) == FILES
    assert 'cloudinit' in os.listdir(vmdir(mnt, vm))
    for f in FILES:
        assert read(ci(mnt, vm, f)) == ''
        st = os.stat(ci(mnt, vm, f))
        assert st.st_size == 0 and oct(st.st_mode & 0o777) == '0o644'

    ud = '#cloud-config\nhostname: hello\nruncmd:\n  - echo hello > /tmp/x\n'
    run(['bash', '-c', 'cat > "$1"', '_', ci(mnt, vm, 'user-data')], input=ud.encode())
    assert read(ci(mnt, vm, 'user-data')) == ud
    assert os.stat(ci(mnt, vm, 'user-data')).st_size == len(ud)

    src = os.path.join(workdir, 'meta')
    md = 'instance-id: iid-docs-1\nlocal-hostname: docs\n'
    with open(src, 'w') as f:
        f.write(md)
    run(['cp', src, ci(mnt, vm, 'meta-data')])
    assert read(ci(mnt, vm, 'meta-data')) == md

    # sed -i: a scratch file in cloudinit/ renamed over the document
    run(['sed', '-i', 's/hello/bonjour/g', ci(mnt, vm, 'user-data')])
    assert read(ci(mnt, vm, 'user-data')) == ud.replace('hello', 'bonjour')
    assert sorted(os.listdir(ci(mnt, vm))) == FILES

    nc = 'version: 2\nethernets:\n  eth0:\n    dhcp4: true\n'
    write_atomic(ci(mnt, vm, 'network-config'), nc)
    assert read(ci(mnt, vm, 'network-config')) == nc

    # binary-safe: any bytes come back
    blob = bytes(range(256)) * 4
    with open(ci(mnt, vm, 'network-config'), 'wb') as f:
        f.write(blob)
    assert read(ci(mnt, vm, 'network-config'), 'rb') == blob
    write_atomic(ci(mnt, vm, 'network-config'), nc)

    # bounded: 64 KiB per file
    with pytest.raises(OSError) as e:
        with open(ci(mnt, vm, 'user-data'), 'w') as f:
            f.write('x' * (64 * 1024 + 1))
    assert e.value.errno == errno.EFBIG
    assert read(ci(mnt, vm, 'user-data')) == ud.replace('hello', 'bonjour')
    assert 'EFBIG' in read(os.path.join(vmdir(mnt, vm), 'last_error'))

    # in the persistent XML, so a daemon restart keeps them
    assert CI_NS in virsh(bed, 'dumpxml', '--inactive', vm)
    mounted_daemon.restart(wait_node=NODE)
    assert read(ci(mnt, vm, 'user-data')) == ud.replace('hello', 'bonjour')
    assert read(ci(mnt, vm, 'meta-data')) == md
    assert read(ci(mnt, vm, 'network-config')) == nc

    # clearing: empty write, truncate, rm; the names stay
    run(['bash', '-c', ': > "$1"', '_', ci(mnt, vm, 'network-config')])
    assert read(ci(mnt, vm, 'network-config')) == ''
    run(['truncate', '-s', '0', ci(mnt, vm, 'meta-data')])
    assert read(ci(mnt, vm, 'meta-data')) == ''
    os.unlink(ci(mnt, vm, 'user-data'))
    assert read(ci(mnt, vm, 'user-data')) == ''
    assert os.stat(ci(mnt, vm, 'user-data')).st_size == 0
    assert sorted(os.listdir(ci(mnt, vm))) == FILES
    assert CI_NS not in virsh(bed, 'dumpxml', '--inactive', vm)
    # other live files still refuse unlink
    with pytest.raises(OSError) as e:
        os.unlink(os.path.join(vmdir(mnt, vm), 'config.json'))
    assert e.value.errno == errno.EPERM

    os.rmdir(vmdir(mnt, vm))
    assert vm not in os.listdir(os.path.join(mnt, 'nodes', NODE, 'vms'))


def test_start_builds_attaches_detaches(mounted_daemon, bed, made):
    mnt = mounted_daemon.mnt
    vm = 'ci-iso'
    new_vm(mnt, made, vm)
    uuid = ET.fromstring(virsh(bed, 'dumpxml', '--inactive', vm)).findtext('uuid')
    ud = '#cloud-config\nfqdn: iso.example\n'
    with open(ci(mnt, vm, 'user-data'), 'w') as f:
        f.write(ud)

    act(mnt, vm, 'start')
    assert state(mnt, vm) == 'running'
    vol = vm + '-cidata.iso'
    assert vol in vols(bed)
    cd = ci_cdroms(bed, vm)
    assert len(cd) == 1 and cd[0].find('source').get('pool') == 'default'
    assert cd[0].find('readonly') is not None
    path = vol_path(bed, vm)
    assert 'Volume id: cidata' in isoinfo(path, '-d').decode()
    assert isoinfo(path, '-R', '-x', '/user-data') == ud.encode()
    md = isoinfo(path, '-R', '-x', '/meta-data').decode()
    assert md == 'instance-id: %s\nlocal-hostname: %s\n' % (uuid, vm)
    assert '/network-config' not in isoinfo(path, '-R', '-f').decode()
    # the cdrom shows in config.json like any disk
    assert vol in read(os.path.join(vmdir(mnt, vm), 'config.json'))
    act(mnt, vm, 'stop')

    # unchanged data: the image is not rebuilt
    ino = os.stat(path).st_ino, os.stat(path).st_mtime_ns
    act(mnt, vm, 'start')
    assert (os.stat(path).st_ino, os.stat(path).st_mtime_ns) == ino
    act(mnt, vm, 'stop')

    # changed data: rebuilt at the next start, network-config included
    ud2 = '#cloud-config\nfqdn: iso2.example\n'
    write_atomic(ci(mnt, vm, 'user-data'), ud2)
    write_atomic(ci(mnt, vm, 'network-config'), 'version: 2\n')
    act(mnt, vm, 'start')
    assert isoinfo(path, '-R', '-x', '/user-data') == ud2.encode()
    assert isoinfo(path, '-R', '-x', '/network-config') == b'version: 2\n'
    assert len(ci_cdroms(bed, vm)) == 1
    act(mnt, vm, 'stop')

    # removing the data detaches and deletes at the next start
    for f in FILES:
        os.unlink(ci(mnt, vm, f))
    act(mnt, vm, 'start')
    assert state(mnt, vm) == 'running'
    assert ci_cdroms(bed, vm) == []
    assert vol not in vols(bed)
    assert vol not in read(os.path.join(vmdir(mnt, vm), 'config.json'))
    act(mnt, vm, 'stop')

    # rmdir of the VM deletes its ISO volume
    with open(ci(mnt, vm, 'user-data'), 'w') as f:
        f.write(ud)
    act(mnt, vm, 'start')
    act(mnt, vm, 'stop')
    assert vol in vols(bed)
    os.rmdir(vmdir(mnt, vm))
    assert vol not in vols(bed)


def test_start_refuses_foreign_volume(mounted_daemon, bed, made):
    mnt = mounted_daemon.mnt
    vm = 'ci-foreign'
    new_vm(mnt, made, vm)
    virsh(bed, 'vol-create-as', 'default', vm + '-cidata.iso', '1M', '--format', 'raw')
    with open(ci(mnt, vm, 'user-data'), 'w') as f:
        f.write('#cloud-config\n')
    with pytest.raises(OSError) as e:
        act(mnt, vm, 'start')
    assert e.value.errno == errno.EEXIST
    assert state(mnt, vm) == 'shutoff'
    assert 'not made by Horcrux' in read(os.path.join(vmdir(mnt, vm), 'last_error'))
    assert ci_cdroms(bed, vm) == []
    # the foreign volume is left alone (and removed by the fixture)
    assert vm + '-cidata.iso' in vols(bed)


def test_linux_guest_reads_cloudinit(mounted_daemon, bed, made, workdir):
    if not shutil.which('isoinfo') or not os.path.exists(hxguest.BUSYBOX):
        pytest.skip('needs genisoimage and busybox-static (tools/setup)')
    try:
        k = hxguest.fetch()
    except Exception as ex:  # no archive reachable: nothing to boot
        pytest.skip('no Debian kernel: %s' % ex)
    kernel = os.path.join(workdir, 'vmlinuz')
    initrd = os.path.join(workdir, 'initrd.cpio')
    serial = os.path.join(workdir, 'serial.log')
    shutil.copy(k[0], kernel)
    hxguest.initramfs(initrd, k[1])

    mnt = mounted_daemon.mnt
    vm = 'ci-linux'
    new_vm(mnt, made, vm)
    # Direct kernel boot is not in config.json: set it through libvirt (the tree keeps unknown
    # elements). TCG ('qemu'), small memory, the serial console into a file.
    x = ET.fromstring(virsh(bed, 'dumpxml', '--inactive', vm))
    x.set('type', 'qemu')
    for tag in ('memory', 'currentMemory'):
        x.find(tag).text = '262144'
        x.find(tag).set('unit', 'KiB')
    os_el = x.find('os')
    for b in os_el.findall('boot'):
        os_el.remove(b)
    ET.SubElement(os_el, 'kernel').text = kernel
    ET.SubElement(os_el, 'initrd').text = initrd
    ET.SubElement(os_el, 'cmdline').text = 'console=ttyS0 panic=-1 quiet loglevel=1'
    dev = x.find('devices')
    s = ET.SubElement(dev, 'serial', type='file')
    ET.SubElement(s, 'source', path=serial)
    ET.SubElement(s, 'target', port='0')
    xf = os.path.join(workdir, 'guest.xml')
    with open(xf, 'w') as f:
        f.write(ET.tostring(x, encoding='unicode'))
    virsh(bed, 'define', xf)

    ud = '#cloud-config\n# written through horcruxfs\nhostname: ci-linux\n'
    md = 'instance-id: iid-hx-linux-1\nlocal-hostname: ci-linux\n'
    run(['bash', '-c', 'cat > "$1"', '_', ci(mnt, vm, 'user-data')], input=ud.encode())
    run(['cp', '/dev/stdin', ci(mnt, vm, 'meta-data')], input=md.encode())

    t0 = time.monotonic()
    act(mnt, vm, 'start')
    v, dt = wait_for(lambda: state(mnt, vm) == 'shutoff', 90, interval=0.5)
    log = open(serial, errors='replace').read() if os.path.exists(serial) else ''
    print('\n[cloudinit] guest ran %.1fs' % (time.monotonic() - t0))
    assert v, 'guest did not power off within 90 s; serial log:\n' + log[-3000:]
    got = hxguest.sections(log)
    assert '===HXCI-LABEL=== cidata' in log.replace('\r', ''), log[-3000:]
    assert got.get('user-data') == ud.encode(), log[-3000:]
    assert got.get('meta-data') == md.encode()
    assert b'instance-id: iid-hx-linux-1' in got['meta-data']
    assert 'network-config' not in got
