"""One operation at a time per VM: concurrent writers get EBUSY at once, documents never mix,
and other VMs keep answering meanwhile."""
import errno
import json
import multiprocessing
import os
import random
import threading
import time
import xml.etree.ElementTree as ET

from conftest import read, wait_for
from hxvm import config, new_vm, vm_dir, write_ctl, write_doc

WRITERS = 16
STORM = 1.5   # seconds each writer keeps writing


def _storm(i, barrier, q, kind, path, write, call):
    """Writer i: after the barrier, for STORM seconds, call(r) -> (key, text, doc) for round r,
    write(path, text) -> rc, timed; then puts [(kind, key, rc, seconds, doc)] on q."""
    barrier.wait(30)
    rnd = random.Random(i)
    out, r, end = [], 0, time.monotonic() + STORM
    while time.monotonic() < end:
        key, text, doc = call(r)
        t0 = time.monotonic()
        rc = write(path, text)
        out.append((kind, key, rc, time.monotonic() - t0, doc))
        r += 1
        time.sleep(rnd.uniform(0, 0.02))
    q.put(out)


def _state_writer(st, i, barrier, q):
    def call(r):
        word = 'pause' if (i + r) % 2 == 0 else 'resume'
        return word, word, None
    _storm(i, barrier, q, 'state', st, write_ctl, call)


def _config_writer(cj, base, i, barrier, q):
    def call(r):
        key = '%d-%d' % (i, r)
        v = 1 + (i + r) % 4
        doc = json.dumps(dict(base, description='writer %s %s' % (key, 'x' * (200 * i)),
                              vcpus=v, max_vcpus=v), indent=2) + '\n'
        return key, doc, doc
    _storm(i, barrier, q, 'config', cj, write_doc, call)


def test_sixteen_writers(mount, bed):
    with new_vm(mount, bed, 'n1', 'conc') as name:
        d = vm_dir(mount, 'n1', name)
        st, cj = os.path.join(d, 'state'), os.path.join(d, 'config.json')
        assert write_ctl(st, 'start') == 0
        base = config(mount, 'n1', name)
        ctx = multiprocessing.get_context('fork')
        barrier = ctx.Barrier(WRITERS + 1)
        q = ctx.Queue()
        procs = []
        for i in range(WRITERS):
            if i % 2 == 0:
                p = ctx.Process(target=_state_writer, args=(st, i, barrier, q))
            else:
                p = ctx.Process(target=_config_writer, args=(cj, base, i, barrier, q))
            p.start()
            procs.append(p)
        other = os.path.join(mount, 'nodes', 'n3', 'vms', '300', 'state')
        lat, stop = [], threading.Event()

        def reader():
            while not stop.is_set():
                t0 = time.monotonic()
                v = read(other)
                lat.append((time.monotonic() - t0, v))
                time.sleep(0.01)
        th = threading.Thread(target=reader)
        try:
            th.start()
            barrier.wait(30)
            results = []
            for _ in procs:
                results += q.get(timeout=120)
        finally:
            stop.set()
            th.join(10)
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        bad = [r for r in results if r[2] not in (0, errno.EBUSY)]
        assert not bad, 'calls failed with other errors than EBUSY: %s' % [
            (k, w, errno.errorcode.get(rc, rc)) for k, w, rc, _, _ in bad]
        docs = {r[1]: r[4] for r in results if r[0] == 'config'}
        ok_cfg = [r[1] for r in results if r[0] == 'config' and r[2] == 0]
        ok_state = [r for r in results if r[0] == 'state' and r[2] == 0]
        busy = [r for r in results if r[2] == errno.EBUSY]
        print('\n[conc] %d calls: %d config ok, %d state ok, %d EBUSY; slowest call %.3fs; '
              'reads of n3/300 during the storm: %d, slowest %.3fs'
              % (len(results), len(ok_cfg), len(ok_state), len(busy),
                 max(r[3] for r in results), len(lat), max(x[0] for x in lat) if lat else -1))
        assert ok_cfg, 'no config.json write succeeded'
        # the document is exactly one of the written ones (never a mix)
        now = read(cj)
        matches = [k for k in ok_cfg if docs[k] == now]
        assert matches, 'config.json is none of the %d successfully written documents:\n%s' % (
            len(ok_cfg), now[:400])
        cfg = json.loads(now)
        x = ET.fromstring(bed.virsh('n1', 'dumpxml', '--inactive', name))
        assert x.find('description').text == cfg['description']
        assert x.find('vcpu').text == str(cfg['max_vcpus'])
        # the other VM answered all along
        assert lat and all(v == 'running\n' for _, v in lat)
        assert max(x[0] for x in lat) < 1.0, 'a read of n3/vms/300/state took %.3fs' % max(
            x[0] for x in lat)
        # EBUSY is answered at once, without waiting for the lock
        assert busy, 'no writer ever saw EBUSY'
        st_now = read(st).strip()
        assert st_now in ('running', 'paused'), st_now
        # leaves no lock behind
        assert write_ctl(st, 'stop') == 0
        v, _ = wait_for(lambda: read(st) == 'shutoff\n', 5)
        assert v
        assert write_doc(cj, docs[ok_cfg[0]]) == 0
