"""The guests of a node: domain and pool XML, virsh against a node's URI, and populating a
fresh node (pool default, qcow2 disk images, domains defined, the first one started; defined
again as type qemu when kvm guests do not start)."""

import os
import uuid
import xml.etree.ElementTree as ET

from .host import _run
from .state import UUID_NS, TestbedError, _write

META_NS = 'https://horcrux.dev/testbed'


class _StartError(TestbedError):
    pass


def domain_xml(prefix, node, name, k, j, virt_type, disk_path, with_meta=False):
    dom = ET.Element('domain', type=virt_type)
    ET.SubElement(dom, 'name').text = name
    ET.SubElement(dom, 'uuid').text = str(uuid.uuid5(UUID_NS, 'dom/%s/%s/%s' % (prefix, node, name)))
    if with_meta:
        ET.SubElement(dom, 'title').text = 'testbed guest %s' % name
        ET.SubElement(dom, 'description').text = (
            'Horcrux testbed guest %s on node %s (no OS, disk only)' % (name, node))
        md = ET.SubElement(dom, 'metadata')
        ET.register_namespace('hx', META_NS)
        hx = ET.SubElement(md, '{%s}testbed' % META_NS)
        ET.SubElement(hx, '{%s}node' % META_NS).text = node
        ET.SubElement(hx, '{%s}role' % META_NS).text = 'demo'
    ET.SubElement(dom, 'memory', unit='MiB').text = '64'
    ET.SubElement(dom, 'currentMemory', unit='MiB').text = '64'
    ET.SubElement(dom, 'vcpu', placement='static').text = '1'
    os_ = ET.SubElement(dom, 'os')
    ET.SubElement(os_, 'type', arch='x86_64', machine='pc').text = 'hvm'
    ET.SubElement(os_, 'boot', dev='hd')
    ET.SubElement(dom, 'on_poweroff').text = 'destroy'
    ET.SubElement(dom, 'on_reboot').text = 'restart'
    ET.SubElement(dom, 'on_crash').text = 'destroy'
    dev = ET.SubElement(dom, 'devices')
    ET.SubElement(dev, 'emulator').text = '/usr/bin/qemu-system-x86_64'
    disk = ET.SubElement(dev, 'disk', type='file', device='disk')
    ET.SubElement(disk, 'driver', name='qemu', type='qcow2')
    ET.SubElement(disk, 'source', file=disk_path)
    ET.SubElement(disk, 'target', dev='vda', bus='virtio')
    nic = ET.SubElement(dev, 'interface', type='user')
    ET.SubElement(nic, 'mac', address='52:54:00:77:%02x:%02x' % (k, j))
    ET.SubElement(nic, 'model', type='virtio')
    ET.SubElement(dev, 'serial', type='pty')
    ET.SubElement(dev, 'memballoon', model='none')
    ET.indent(dom)
    return ET.tostring(dom, encoding='unicode')


def pool_xml(path, name='default'):
    pool = ET.Element('pool', type='dir')
    ET.SubElement(pool, 'name').text = name
    tgt = ET.SubElement(pool, 'target')
    ET.SubElement(tgt, 'path').text = path
    ET.indent(pool)
    return ET.tostring(pool, encoding='unicode')


def _virsh_uri(u, *args, input=None, check=True):
    p = _run(['virsh', '-q', '-c', u] + list(args), input=input, check=False)
    if check and p.returncode != 0:
        raise TestbedError('virsh -c %s %s: %s' % (u, ' '.join(args),
                                                   (p.stderr or p.stdout).strip()))
    return p.stdout


def _guest_xml(prefix, n, j, virt_type):
    """Guest j of node n: its name (index * 100 + j) and domain XML (disk <name>.qcow2 in the
    pool default; the first guest of a node carries a title, description and metadata)."""
    name = str(n['index'] * 100 + j)
    return name, domain_xml(prefix, n['name'], name, n['index'], j, virt_type,
                            '/var/lib/libvirt/images/%s.qcow2' % name, with_meta=(j == 0))


def _populate(st, n, vms, virt_type):
    u = n['uri']
    nd = n['dir']
    k = n['index']
    _virsh_uri(u, 'pool-define', '/dev/stdin', input=pool_xml('/var/lib/libvirt/images'))
    _virsh_uri(u, 'pool-autostart', 'default')
    _virsh_uri(u, 'pool-start', 'default')
    for j in range(vms):
        name, xml = _guest_xml(st['prefix'], n, j, virt_type)
        img = os.path.join(nd, 'lib/images', name + '.qcow2')
        _run(['qemu-img', 'create', '-q', '-f', 'qcow2', img, '64M'])
        _write(os.path.join(nd, 'xml', name + '.xml'), xml)
        _virsh_uri(u, 'define', '/dev/stdin', input=xml)
    _virsh_uri(u, 'pool-refresh', 'default')
    if vms:
        try:
            _virsh_uri(u, 'start', str(k * 100))
        except TestbedError as e:
            raise _StartError(str(e))


def _redefine_as_qemu(prefix, n, vms):
    """Defines node n's guests again as type qemu (TCG) and starts the first one."""
    for j in range(vms):
        _, xml = _guest_xml(prefix, n, j, 'qemu')
        _virsh_uri(n['uri'], 'define', '/dev/stdin', input=xml)
    _virsh_uri(n['uri'], 'start', str(n['index'] * 100))
