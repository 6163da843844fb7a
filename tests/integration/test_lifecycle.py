"""Lifecycle actions written to nodes/<n>/vms/<vm>/state (file-semantics.md, control files):
the whole matrix of starting state x action on a VM made for the test."""
import errno
import os
import subprocess

import pytest

from conftest import read, wait_for
from hxvm import new_vm, vm_dir, write_ctl

ACTIONS = ['start', 'shutdown', 'stop', 'reboot', 'reset', 'pause', 'resume']
# starting state -> action -> resulting state, or an errno (state unchanged)
MATRIX = {
    'shutoff': {'start': 'running', 'shutdown': errno.EBUSY, 'stop': errno.EBUSY,
                'reboot': errno.EBUSY, 'reset': errno.EBUSY, 'pause': errno.EBUSY,
                'resume': errno.EBUSY},
    # shutdown is ACPI: these guests have no OS, so they keep running
    'running': {'start': errno.EBUSY, 'shutdown': 'running', 'stop': 'shutoff',
                'reboot': 'running', 'reset': 'running', 'pause': 'paused',
                'resume': errno.EBUSY},
    'paused': {'start': errno.EBUSY, 'shutdown': errno.EBUSY, 'stop': 'shutoff',
               'reboot': errno.EBUSY, 'reset': 'paused', 'pause': errno.EBUSY,
               'resume': 'running'},
}


def st_read(d):
    return read(os.path.join(d, 'state'))


def bring_to(d, want):
    """Puts the VM in state `want` through the tree."""
    st = os.path.join(d, 'state')
    cur = read(st).strip()
    if cur == want:
        return
    if want == 'shutoff':
        assert write_ctl(st, 'stop') == 0
    elif want == 'running':
        assert write_ctl(st, 'resume' if cur == 'paused' else 'start') == 0
    elif want == 'paused':
        if cur != 'running':
            bring_to(d, 'running')
        assert write_ctl(st, 'pause') == 0
    v, _ = wait_for(lambda: read(st).strip() == want, 5)
    assert v, 'could not bring %s to %s (reads %r)' % (d, want, read(st))


@pytest.mark.parametrize('start_state', ['shutoff', 'running', 'paused'])
def test_matrix(mount, bed, start_state):
    failures = []
    with new_vm(mount, bed, 'n1', 'life') as name:
        d = vm_dir(mount, 'n1', name)
        st = os.path.join(d, 'state')
        le = os.path.join(d, 'last_error')
        assert read(le) == '', 'last_error of a new VM: %r' % read(le)
        for action in ACTIONS:
            bring_to(d, start_state)
            want = MATRIX[start_state][action]
            xml_before = read(os.path.join(d, 'domain.xml'))
            le_before = read(le)
            rc = write_ctl(st, action + '\n')
            got = st_read(d)   # read at once: fast actions return when done
            cell = '%s + %s' % (start_state, action)
            if isinstance(want, int):
                if rc != want:
                    failures.append('%s: write returned %s, want %s' % (
                        cell, errno.errorcode.get(rc, rc), errno.errorcode[want]))
                if got != start_state + '\n':
                    failures.append('%s: refused action changed the state to %r' % (cell, got))
                if read(os.path.join(d, 'domain.xml')) != xml_before:
                    failures.append('%s: refused action changed domain.xml' % cell)
                line = read(le)
                if line == le_before or 'EBUSY' not in line or action not in line or \
                        not line.endswith('\n') or line.count('\n') != 1:
                    failures.append('%s: last_error %r does not report it' % (cell, line))
                elif ' uid=0 ' not in line or '/nodes/n1/vms/%s/state' % name not in line:
                    failures.append('%s: last_error %r lacks uid or path' % (cell, line))
            else:
                if rc != 0:
                    failures.append('%s: write failed with %s (last_error %r)' % (
                        cell, errno.errorcode.get(rc, rc), read(le)))
                elif got != want + '\n':
                    failures.append('%s: state reads %r right after the write, want %r' % (
                        cell, got, want))
    assert not failures, '\n'.join(failures)


def test_unknown_word_and_oversize(mount, bed):
    with new_vm(mount, bed, 'n1', 'lifeinval', with_disk=False) as name:
        d = vm_dir(mount, 'n1', name)
        st = os.path.join(d, 'state')
        for word in ('fly', 'START', 'start now', '', 'start\nstop', '\x00start'):
            rc = write_ctl(st, word)
            if word == '':
                continue   # a zero-length write is no command (either answer is fine)
            assert rc == errno.EINVAL, (word, errno.errorcode.get(rc, rc))
            assert read(st) == 'shutoff\n'
        rc = write_ctl(st, 'fly')
        assert rc == errno.EINVAL
        line = read(os.path.join(d, 'last_error'))
        assert line.endswith('\n') and line.count('\n') == 1, line
        assert ' uid=0 write fly /nodes/n1/vms/%s/state: EINVAL: ' % name in line, line
        assert 'unknown action "fly"' in line, line
        assert write_ctl(st, 'start' + ' ' * 4096) == errno.EFBIG
        assert write_ctl(st, b'x' * 5000) == errno.EFBIG
        assert read(st) == 'shutoff\n'
        # a write of exactly 4096 bytes is not too large, only not a command
        assert write_ctl(st, 'x' * 4096) == errno.EINVAL


def test_two_writes_and_shell(mount, bed):
    with new_vm(mount, bed, 'n1', 'lifesh') as name:
        d = vm_dir(mount, 'n1', name)
        st = os.path.join(d, 'state')
        p = subprocess.run(['bash', '-c', 'echo start > "$1"', 'sh', st], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert read(st) == 'running\n'
        # printf issues one write(2) per line: pause, then resume
        p = subprocess.run(['bash', '-c', "printf 'pause\\nresume\\n' > \"$1\"", 'sh', st],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert read(st) == 'running\n'
        ev = [l for l in read(os.path.join(mount, 'cluster', 'audit')).splitlines()
              if '/nodes/n1/vms/%s/state' % name in l]
        assert any('"write pause"' in l for l in ev) and any('"write resume"' in l for l in ev), ev
        p = subprocess.run(['bash', '-c', 'echo fly > "$1"', 'sh', st], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 1
        assert 'Invalid argument' in p.stderr, p.stderr
        p = subprocess.run(['bash', '-c', 'echo start > "$1"', 'sh', st], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 1 and 'Device or resource busy' in p.stderr, p.stderr
        p = subprocess.run(['bash', '-c', 'echo stop > "$1"', 'sh', st], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert read(st) == 'shutoff\n'
        # truncating the control file is fine (shells open with O_TRUNC)
        with open(st, 'w'):
            pass
        assert read(st) == 'shutoff\n'
