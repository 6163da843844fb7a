"""The M/events stream: one JSON object per line, each open its own cursor, poll, O_NONBLOCK,
interruptible blocked readers, many idle readers that do not wedge the mount."""
import errno
import json
import os
import select
import signal
import stat
import subprocess
import time

from conftest import read, wait_for
from hxvm import new_vm, put_config, vm_dir, write_ctl


class Reader:
    def __init__(self, mnt, nonblock=True):
        self.fd = os.open(os.path.join(mnt, 'events'),
                          os.O_RDONLY | (os.O_NONBLOCK if nonblock else 0))
        self.buf = b''
        self.events = []

    def close(self):
        os.close(self.fd)

    def pump(self, timeout):
        """Reads what is pending (waiting up to timeout for the first byte)."""
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        if not p.poll(timeout * 1000):
            return
        while True:
            try:
                b = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not b:
                break
            self.buf += b
        *lines, self.buf = self.buf.split(b'\n')
        for l in lines:
            self.events.append(json.loads(l))

    def wait(self, pred, timeout=2.0):
        t0 = time.monotonic()
        while True:
            for e in self.events:
                if pred(e):
                    return e
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                raise AssertionError('no matching event within %ss; got %s' % (
                    timeout, json.dumps(self.events[-20:], indent=1)))
            self.pump(min(left, 0.2))


def test_events_of_actions_and_virsh(mount, bed):
    ev = os.path.join(mount, 'events')
    s = os.stat(ev)
    assert s.st_size == 0 and stat.S_IMODE(s.st_mode) == 0o444
    r = Reader(mount)
    try:
        with new_vm(mount, bed, 'n1', 'ev') as name:
            path = '/nodes/n1/vms/%s/state' % name
            c = r.wait(lambda e: e['type'] == 'vm.created' and e.get('vm') == name)
            assert c['node'] == 'n1' and c['uuid']
            uuid = c['uuid']
            r.wait(lambda e: e['type'] == 'vm.config' and e.get('vm') == name)
            st = os.path.join(vm_dir(mount, 'n1', name), 'state')
            assert write_ctl(st, 'start') == 0
            e = r.wait(lambda e: e['type'] == 'vm.state' and e.get('vm') == name)
            assert e == dict(e, node='n1', vm=name, uuid=uuid, state='running'), e
            a = r.wait(lambda e: e['type'] == 'action' and e.get('path') == path)
            assert a['action'] == 'write start' and a['uid'] == 0 and a['result'] == 'ok', a
            assert write_ctl(st, 'start') == errno.EBUSY
            f = r.wait(lambda e: e['type'] == 'action.failed' and e['result'] == 'EBUSY')
            assert f['path'] == path and f['uid'] == 0 and 'start' in f['action'], f
            assert f['message'], f
            assert write_ctl(st, 'fly') == errno.EINVAL
            f = r.wait(lambda e: e['type'] == 'action.failed' and e['result'] == 'EINVAL')
            assert 'fly' in f['message'], f
            assert put_config(mount, 'n1', name, {'description': 'evt'}) == 0
            r.wait(lambda e: e['type'] == 'vm.config' and e.get('vm') == name and
                   e['seq'] > f['seq'])
            assert write_ctl(st, 'stop') == 0
            r.wait(lambda e: e['type'] == 'vm.state' and e.get('vm') == name and
                   e['state'] == 'shutoff')
        r.wait(lambda e: e['type'] == 'vm.deleted' and e.get('vm') == name)
        # changes made with virsh on the node
        try:
            bed.virsh('n1', 'suspend', '100')
            r.wait(lambda e: e['type'] == 'vm.state' and e.get('vm') == '100' and
                   e['state'] == 'paused', 1.0)
        finally:
            bed.virsh('n1', 'resume', '100')
        r.wait(lambda e: e['type'] == 'vm.state' and e.get('vm') == '100' and
               e['state'] == 'running', 1.0)
        seqs = [e['seq'] for e in r.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
        for e in r.events:
            assert isinstance(e['seq'], int) and e['time'].endswith('Z'), e
    finally:
        r.close()


def test_new_open_gets_only_new_events_and_nonblock(mount, bed):
    with new_vm(mount, bed, 'n2', 'evnb', with_disk=False) as name:
        r = Reader(mount)
        try:
            # nothing pending: EAGAIN, and poll says so
            try:
                b = os.read(r.fd, 4096)
                raise AssertionError('read of a fresh reader returned %r' % b)
            except BlockingIOError as e:
                assert e.errno == errno.EAGAIN
            p = select.poll()
            p.register(r.fd, select.POLLIN)
            assert p.poll(0) == []
            assert put_config(mount, 'n2', name, {'description': 'x'}) == 0
            t0 = time.monotonic()
            got = p.poll(1000)
            assert got and got[0][1] & select.POLLIN, got
            assert time.monotonic() - t0 < 1.0
            r.pump(0)
            # the vm.created of before the open is not replayed
            assert not [e for e in r.events if e['type'] == 'vm.created'], r.events
            assert [e for e in r.events if e['type'] == 'vm.config' and e['vm'] == name]
            r.wait(lambda e: e['type'] == 'action' and e['path'].endswith('/config.json'))
            # read everything: EAGAIN again, and no POLLIN
            r.pump(0.1)
            assert p.poll(0) == []
        finally:
            r.close()
        # select() works as well
        r = Reader(mount)
        try:
            assert select.select([r.fd], [], [], 0)[0] == []
            assert put_config(mount, 'n2', name, {'description': 'y'}) == 0
            assert select.select([r.fd], [], [], 1.0)[0] == [r.fd]
        finally:
            r.close()


def test_three_readers_same_event(mount, bed):
    rs = [Reader(mount) for _ in range(3)]
    blocking = Reader(mount, nonblock=False)
    try:
        bed.virsh('n3', 'suspend', '300')
        try:
            got = [r.wait(lambda e: e['type'] == 'vm.state' and e['vm'] == '300', 1.0)
                   for r in rs]
            assert got[0] == got[1] == got[2], got
            assert got[0]['state'] == 'paused' and got[0]['node'] == 'n3'
            b = os.read(blocking.fd, 65536)   # blocking read returns the pending line
            first = json.loads(b.split(b'\n')[0])
            assert first['seq'] <= got[0]['seq']
        finally:
            bed.virsh('n3', 'resume', '300')
        for r in rs:
            r.wait(lambda e: e['type'] == 'vm.state' and e['vm'] == '300' and
                   e['state'] == 'running', 1.0)
    finally:
        for r in rs + [blocking]:
            r.close()


def proc_state(pid):
    try:
        return read('/proc/%d/stat' % pid).rsplit(')', 1)[1].split()[0]
    except OSError:
        return None


def test_blocked_reader_interrupted(mount):
    ev = os.path.join(mount, 'events')
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        p = subprocess.Popen(['cat', ev], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # wait until cat sleeps in its read
            wait_for(lambda: proc_state(p.pid) == 'S', 2)
            time.sleep(0.2)
            assert p.poll() is None, 'cat ended on its own: %r' % p.stderr.read()
            assert proc_state(p.pid) != 'D', 'blocked reader in D state (uninterruptible)'
            t0 = time.monotonic()
            p.send_signal(sig)
            try:
                p.wait(1.0)
            except subprocess.TimeoutExpired:
                raise AssertionError('cat %s still running 1 s after %s (state %s)' % (
                    ev, sig.name, proc_state(p.pid)))
            print('\n[events] cat ended %.3fs after %s' % (time.monotonic() - t0, sig.name))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)


def test_hundred_idle_readers(mount, bed):
    ev = os.path.join(mount, 'events')
    st = os.path.join(mount, 'nodes', 'n1', 'vms', '100', 'state')
    procs = []
    try:
        for _ in range(100):
            procs.append(subprocess.Popen(['cat', ev], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL))
        v, _ = wait_for(lambda: all(proc_state(p.pid) in ('S', 'D') for p in procs), 5)
        time.sleep(0.3)   # let every reader reach its blocking read
        assert all(p.poll() is None for p in procs)
        for path in (st, os.path.join(mount, 'nodes', 'n2', 'vms', '201', 'config.json'),
                     os.path.join(mount, 'cluster', 'status')):
            t0 = time.monotonic()
            p = subprocess.run(['cat', path], capture_output=True, timeout=10)
            dt = time.monotonic() - t0
            assert p.returncode == 0 and p.stdout, (path, p.stderr)
            assert dt < 1.0, 'cat %s took %.3fs with 100 idle readers' % (path, dt)
        assert read(st) == 'running\n'
        # and an event still reaches every reader
        bed.virsh('n1', 'suspend', '100')
        try:
            for p in procs[:5] + procs[-5:]:
                pl = select.poll()
                pl.register(p.stdout, select.POLLIN)
                assert pl.poll(2000), 'reader %d got no event' % p.pid
                line = p.stdout.readline()
                assert json.loads(line)['type'], line
        finally:
            bed.virsh('n1', 'resume', '100')
        wait_for(lambda: read(st) == 'running\n', 2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        for p in procs:
            try:
                p.wait(max(0.1, 2 - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            p.stdout.close()
    assert time.monotonic() - t0 < 2, '100 readers took %.1fs to end on SIGINT' % (
        time.monotonic() - t0)
