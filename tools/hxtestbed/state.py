"""The testbed's record and layout: testbed.json (load, save, find a node in it), the default
directory and prefix, the nodes' addresses and host UUIDs, the one error type, and
horcrux.conf (the daemon's configuration for the testbed).  Every other module builds on it."""

import json
import os
import uuid

DEFAULT_DIR = '/run/horcrux-testbed'
DEFAULT_PREFIX = 'hxtb'
SUBNET = '10.77.0.'
UUID_NS = uuid.UUID('6f1c2a3e-8d4b-5a7c-9e0f-1b2c3d4e5f60')
PYTHON = '/usr/bin/python3'
# The subreapers run the entry point tools/hxtestbed.py (`hxtestbed.py _node ...`): down()
# finds them by that command line.
HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'hxtestbed.py')


class TestbedError(Exception):
    pass


def _state_path(d):
    return os.path.join(d, 'testbed.json')


def _load(d):
    d = os.path.abspath(d)
    try:
        with open(_state_path(d)) as f:
            return json.load(f)
    except FileNotFoundError:
        raise TestbedError('no testbed at %s (missing testbed.json)' % d)


def _save(d, st):
    tmp = _state_path(d) + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(st, f, indent=2)
    os.replace(tmp, _state_path(d))


def _exists(d):
    return os.path.exists(_state_path(d)) or os.path.isdir(os.path.join(d, 'nodes'))


def _node(st, node):
    for n in st['nodes']:
        if n['name'] == node:
            return n
    raise TestbedError('no node %r in testbed (nodes: %s)'
                       % (node, ', '.join(n['name'] for n in st['nodes'])))


def node_uuid(prefix, node):
    return str(uuid.uuid5(UUID_NS, 'host/%s/%s' % (prefix, node)))


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def _write_conf(d, st):
    lines = ['# Horcrux daemon configuration (written by tools/testbed)']
    for n in st['nodes']:
        lines.append('[node %s]' % n['name'])
        lines.append('uri = %s' % n['uri'])
    _write(os.path.join(d, 'horcrux.conf'), '\n'.join(lines) + '\n')
