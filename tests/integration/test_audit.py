"""M/cluster/audit (every change attempt, kept in SQLite across restarts), last_error lines,
and callers that are not root."""
import errno
import json
import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import NODES, read
from hxvm import errno_of, new_vm, put_config, uniq, vm_dir, write_ctl, write_doc

KEYS = ['id', 'time', 'uid', 'pid', 'path', 'action', 'result', 'message']
LE_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z uid=(\d+) (.+?) (/\S+): '
                   r'([A-Z]+): (.+)\n$')


def audit(mnt):
    out = []
    for l in read(os.path.join(mnt, 'cluster', 'audit')).splitlines():
        out.append(json.loads(l))
    return out


def mine(mnt, frag):
    return [r for r in audit(mnt) if frag in r['path']]


def test_audit_records_changes_not_reads(mount, bed):
    a = os.path.join(mount, 'cluster', 'audit')
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o444
    before = audit(mount)
    with new_vm(mount, bed, 'n1', 'aud') as name:
        d = vm_dir(mount, 'n1', name)
        st, cj = os.path.join(d, 'state'), os.path.join(d, 'config.json')
        assert write_ctl(st, 'start') == 0
        assert write_ctl(st, 'start') == errno.EBUSY
        assert write_ctl(st, 'fly') == errno.EINVAL
        assert write_doc(cj, '{"vcpus": "x"}') == errno.EINVAL
        assert write_ctl(st, 'stop') == 0
        n = len(audit(mount))
        for _ in range(5):   # reads are not recorded
            for f in ('state', 'config.json', 'domain.xml', 'live.json', 'last_error'):
                read(os.path.join(d, f))
            os.listdir(d)
        assert len(audit(mount)) == n
        recs = mine(mount, '/' + name)
        for r in recs:
            assert list(r)[:len(KEYS)] == KEYS, r
            assert r['uid'] == 0 and r['time'].endswith('Z'), r
        got = [(r['path'].rsplit('/', 1)[1], r['action'], r['result']) for r in recs]
        want = [(name, 'mkdir', 'ok'), ('config.json', 'commit', 'ok'),
                ('state', 'write start', 'ok'), ('state', 'write start', 'EBUSY'),
                ('state', 'write fly', 'EINVAL'), ('config.json', 'commit', 'EINVAL'),
                ('state', 'write stop', 'ok')]
        assert got == want, got
        by = {(g[1], g[2]): r for g, r in zip(got, recs)}
        assert by[('write fly', 'EINVAL')]['message'] and \
            'fly' in by[('write fly', 'EINVAL')]['message']
        assert 'vcpus' in by[('commit', 'EINVAL')]['message']
        assert by[('write stop', 'ok')]['message'] is None
        # calls made from this process carry its pid
        assert by[('write start', 'ok')]['pid'] == os.getpid()
        ids = [r['id'] for r in audit(mount)]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert not before or ids[0] >= before[0]['id']
        # a shell's write carries the shell's pid
        p = subprocess.Popen(['bash', '-c', 'echo start > "$1"; echo $$', 'sh', st],
                             stdout=subprocess.PIPE, text=True)
        out, _ = p.communicate(30)
        r = mine(mount, '/' + name)[-1]
        assert r['action'] == 'write start' and r['pid'] == int(out.split()[0]), (r, out)
        assert write_ctl(st, 'stop') == 0
    recs = mine(mount, '/' + name)
    assert recs[-1]['action'] == 'rmdir' and recs[-1]['result'] == 'ok', recs[-1]


def test_refused_unlink_rename_mkdir_audited(mount, bed):
    """Refused change attempts are change attempts too."""
    with new_vm(mount, bed, 'n1', 'audp', with_disk=False) as name:
        d = vm_dir(mount, 'n1', name)
        assert errno_of(os.mkdir, os.path.join(d, 'sub')) == errno.EPERM
        assert errno_of(os.mkdir, vm_dir(mount, 'n1', '.bad')) == errno.EINVAL
        assert errno_of(os.unlink, os.path.join(d, 'domain.xml')) == errno.EPERM
        assert errno_of(os.rename, os.path.join(d, 'state'),
                        os.path.join(d, 'state~')) == errno.EPERM
        recs = [(r['path'], r['result']) for r in audit(mount)]
        assert ('/nodes/n1/vms/%s/sub' % name, 'EPERM') in recs, recs[-5:]
        assert ('/nodes/n1/vms/.bad', 'EINVAL') in recs, recs[-5:]
        assert ('/nodes/n1/vms/%s/domain.xml' % name, 'EPERM') in recs, \
            'refused unlink not in the audit: %s' % recs[-5:]
        assert any(p == '/nodes/n1/vms/%s/state' % name and res == 'EPERM'
                   for p, res in recs), 'refused rename not in the audit: %s' % recs[-5:]


def test_last_error_lines(mount, bed):
    with new_vm(mount, bed, 'n2', 'le', with_disk=False) as name:
        d = vm_dir(mount, 'n2', name)
        le = os.path.join(d, 'last_error')
        assert read(le) == ''
        assert stat.S_IMODE(os.stat(le).st_mode) == 0o444
        assert write_ctl(os.path.join(d, 'state'), 'fly') == errno.EINVAL
        m = LE_RE.match(read(le))
        assert m, read(le)
        assert m.group(2) == '0' and m.group(3) == 'write fly' and m.group(5) == 'EINVAL'
        assert m.group(4) == '/nodes/n2/vms/%s/state' % name
        assert os.stat(le).st_size == len(read(le).encode())
        # the next failure replaces the line
        assert write_ctl(os.path.join(d, 'state'), 'resume') == errno.EBUSY
        m = LE_RE.match(read(le))
        assert m and m.group(3) == 'write resume' and m.group(5) == 'EBUSY', read(le)
        # a success does not clear it
        assert put_config(mount, 'n2', name, {'description': 'ok'}) == 0
        assert 'write resume' in read(le)
        assert errno_of(lambda: open(le, 'w').close()) in (errno.EACCES, errno.EPERM)
        nle = os.path.join(mount, 'nodes', 'n2', 'last_error')
        assert errno_of(os.mkdir, vm_dir(mount, 'n2', '.hidden')) == errno.EINVAL
        m = LE_RE.match(read(nle))
        assert m and m.group(3) == 'mkdir' and m.group(5) == 'EINVAL', read(nle)
        assert m.group(4) == '/nodes/n2/vms/.hidden'


def test_audit_survives_restart(daemons, bed):
    d = daemons.start(wait_node=NODES)
    name = uniq('audr')
    vd = vm_dir(d.mnt, 'n3', name)
    try:
        os.mkdir(vd)
        assert write_ctl(os.path.join(vd, 'state'), 'fly') == errno.EINVAL
        before = audit(d.mnt)
        assert [r for r in before if r['path'] == '/nodes/n3/vms/' + name]
        d.restart(wait_node=NODES)
        after = audit(d.mnt)
        assert after[:len(before)] == before or \
            [r for r in after if r['id'] <= before[-1]['id']][-len(before):] == before, \
            'records from before the restart changed or are gone'
        os.rmdir(vd)
        last = audit(d.mnt)[-1]
        assert last['action'] == 'rmdir' and last['id'] > before[-1]['id'], last
    finally:
        from hxvm import remove_vm
        remove_vm(d.mnt, bed, 'n3', name)


def test_audit_keeps_newest_1000(mount, bed):
    with new_vm(mount, bed, 'n3', 'aud1k', with_disk=False) as name:
        st = os.path.join(vm_dir(mount, 'n3', name), 'state')
        fd = os.open(st, os.O_WRONLY)
        try:
            for i in range(1010):
                try:
                    os.write(fd, b'fly%d' % i)
                except OSError:
                    pass
        finally:
            os.close(fd)
        recs = audit(mount)
        assert len(recs) == 1000, len(recs)
        assert recs[-1]['action'] == 'write fly1009', recs[-1]
        ids = [r['id'] for r in recs]
        assert ids == sorted(ids)


NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']


@pytest.mark.skipif(not shutil.which('setpriv'), reason='needs setpriv')
def test_non_root_gets_eacces(daemons, bed):
    d = daemons.start(opts=['allow_other'], wait_node=NODES)
    vd = vm_dir(d.mnt, 'n1', '101')
    st, cj = os.path.join(vd, 'state'), os.path.join(vd, 'config.json')
    os.chmod(os.path.dirname(d.mnt), 0o755)   # the mount's parent is a mkdtemp (0700)
    os.chmod(os.path.dirname(os.path.dirname(d.mnt)), 0o755)
    x0 = read(os.path.join(vd, 'domain.xml'))
    n0 = len(audit(d.mnt))
    try:
        def sh(cmd):
            return subprocess.run(NOBODY + ['bash', '-c', cmd, 'sh', st, cj, d.mnt],
                                  capture_output=True, text=True, timeout=30)
        p = sh('cat "$1"')
        assert p.returncode == 0 and p.stdout == 'shutoff\n', (p.returncode, p.stderr)
        p = sh('echo start > "$1"')
        assert p.returncode == 1 and 'Permission denied' in p.stderr, (p.returncode, p.stderr)
        p = sh('cp "$2" /tmp/hx-nobody-$$.json && cp /tmp/hx-nobody-$$.json "$2"; '
               'r=$?; rm -f /tmp/hx-nobody-$$.json; exit $r')
        assert p.returncode != 0 and 'Permission denied' in p.stderr, (p.returncode, p.stderr)
        p = sh('mkdir "$3/nodes/n1/vms/it-nobody"')
        assert p.returncode != 0 and 'Permission denied' in p.stderr, (p.returncode, p.stderr)
        p = sh('touch "$3/nodes/n1/vms/101/scratch"')
        assert p.returncode != 0 and 'Permission denied' in p.stderr, (p.returncode, p.stderr)
        p = sh('python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY)" "$1"')
        assert p.returncode != 0 and 'PermissionError' in p.stderr, (p.returncode, p.stderr)
        assert read(st) == 'shutoff\n'
        assert read(os.path.join(vd, 'domain.xml')) == x0
        assert not os.path.exists(vm_dir(d.mnt, 'n1', 'it-nobody'))
        assert len(audit(d.mnt)) == n0   # the kernel refused: nothing reached the daemon
    finally:
        if read(st) != 'shutoff\n':
            bed.virsh('n1', 'destroy', '101')
        if os.path.isdir(vm_dir(d.mnt, 'n1', 'it-nobody')):
            from hxvm import remove_vm
            remove_vm(d.mnt, bed, 'n1', 'it-nobody')
