"""Every reader gets the same bytes, and stat tells their true length (docs/tree.md, kind doc).

metrics.json files are re-sampled at most once per second, so two readers may legitimately
get different samples: for them each tool's bytes must be valid JSON, and the size an open fd
reports must be the length read through that fd.
"""
import json
import mmap
import os
import shutil
import subprocess
import tempfile

from conftest import NODES, VMS

# README, version, events, cluster/status, cluster/audit (cluster/jobs is empty: each test has
# its own database); per node uri, status, info.json, metrics.json, last_error and
# storage/default/status.json; per VM state, config.json, clone, live.json, domain.xml,
# metrics.json, last_error, the info.json of its disk's volume in the default pool, and
# cloudinit/{user-data,meta-data,network-config}.
EXPECTED_FILES = 5 + 6 * len(NODES) + 11 * sum(len(v) for v in VMS.values())
# Streams never end (file-semantics.md 4): readers that copy whole files leave them out, as
# users do (rsync --exclude /events).
STREAMS = ['events']
# Documents that are empty while nothing failed or changed through this daemon.
MAYBE_EMPTY = ('last_error', 'audit', 'clone', 'user-data', 'meta-data', 'network-config')


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, timeout=60, **kw)
    assert p.returncode == 0, (cmd, p.returncode, p.stderr.decode(errors='replace'))
    return p.stdout


def files(mnt, streams=False):
    out = run(['find', mnt, '-type', 'f']).decode().splitlines()
    if not streams:
        out = [p for p in out if os.path.relpath(p, mnt) not in STREAMS]
    return sorted(out)


def copy_sources(mnt):
    """The top-level entries a copy of the tree takes: everything but the streams."""
    return [os.path.join(mnt, e) for e in sorted(os.listdir(mnt)) if e not in STREAMS]


def is_metrics(p):
    return os.path.basename(p) == 'metrics.json'


def valid_json(b, what):
    assert b.endswith(b'\n'), what
    try:
        json.loads(b)
    except ValueError as e:
        raise AssertionError('%s: invalid JSON (%s): %r' % (what, e, b[:200]))


# ---- readers; each returns (bytes, fstat size of its fd or None)

def r_cat(p):
    return run(['cat', p]), None


def r_python(p):
    with open(p, 'rb') as f:
        b = f.read()
        return b, os.fstat(f.fileno()).st_size


def r_osread(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        chunks = []
        while True:
            c = os.read(fd, 7)   # odd size: many reads at unaligned offsets
            if not c:
                break
            chunks.append(c)
        return b''.join(chunks), os.fstat(fd).st_size
    finally:
        os.close(fd)


def r_copyfile(p):
    with tempfile.NamedTemporaryFile() as t:
        shutil.copyfile(p, t.name)
        with open(t.name, 'rb') as f:
            return f.read(), None


def r_mmap(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return b'', size  # an empty file cannot be mapped
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m:
            return bytes(m[:]), size
    finally:
        os.close(fd)


def r_tail(p):
    return run(['tail', '-c', '+1', p]), None


def r_dd(p):
    return run(['dd', 'if=' + p, 'bs=1', 'status=none']), None


def r_sendfile_pipe(p):
    fd = os.open(p, os.O_RDONLY)
    rp, wp = os.pipe()
    try:
        size = os.fstat(fd).st_size
        out, off = [], 0
        while True:
            n = os.sendfile(wp, fd, off, 65536)  # the pipe holds 64 KiB; files are smaller
            if n == 0:
                break
            off += n
            out.append(os.read(rp, n))
        return b''.join(out), size
    finally:
        for x in (fd, rp, wp):
            os.close(x)


def r_sendfile_file(p):
    fd = os.open(p, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        with tempfile.TemporaryFile() as t:
            off = 0
            while True:
                n = os.sendfile(t.fileno(), fd, None, 1 << 20)
                if n == 0:
                    break
                off += n
            t.seek(0)
            return t.read(), size
    finally:
        os.close(fd)


READERS = {'cat': r_cat, 'python': r_python, 'os.read': r_osread, 'copyfile': r_copyfile,
           'mmap': r_mmap, 'tail -c +1': r_tail, 'dd bs=1': r_dd,
           'sendfile(pipe)': r_sendfile_pipe, 'sendfile(file)': r_sendfile_file}


def test_find_count(mount):
    fs = files(mount, streams=True)
    assert len(fs) == EXPECTED_FILES, fs
    wc = run('find %s -type f | wc -l' % mount, shell=True).decode().strip()
    assert int(wc) == EXPECTED_FILES


def test_every_reader_same_bytes(mount):
    fs = files(mount)
    assert len(fs) == EXPECTED_FILES - len(STREAMS)
    bad = []
    for p in fs:
        got = {name: fn(p) for name, fn in READERS.items()}
        size = int(run(['stat', '-c', '%s', p]).decode())
        for name, (b, fsize) in got.items():
            if fsize is not None and fsize != len(b):
                bad.append('%s: %s read %d bytes, fstat of its fd says %d' % (p, name, len(b), fsize))
        if is_metrics(p):
            for name, (b, _) in got.items():
                try:
                    valid_json(b, '%s via %s' % (p, name))
                except AssertionError as e:
                    bad.append(str(e))
            continue
        ref = got['cat'][0]
        assert ref or os.path.basename(p) in MAYBE_EMPTY, p
        for name, (b, _) in got.items():
            if b != ref:
                bad.append('%s: %s gave %d bytes, cat %d' % (p, name, len(b), len(ref)))
        if size != len(ref):
            bad.append('%s: stat -c %%s says %d, content is %d bytes' % (p, size, len(ref)))
        if p.endswith('.json') or p.endswith('/version') or p.endswith('/cluster/status'):
            try:
                valid_json(ref, p)
            except AssertionError as e:
                bad.append(str(e))
    assert not bad, '\n'.join(bad)


def _compare_copy(mount, copy):
    bad = []
    fs = files(mount)
    for p in fs:
        rel = os.path.relpath(p, mount)
        c = os.path.join(copy, rel)
        if not os.path.isfile(c):
            bad.append('%s missing from the copy' % rel)
            continue
        with open(c, 'rb') as f:
            b = f.read()
        if is_metrics(p):
            try:
                valid_json(b, 'copy of ' + rel)
            except AssertionError as e:
                bad.append(str(e))
            continue
        with open(p, 'rb') as f:
            ref = f.read()
        if b != ref:
            bad.append('%s: copy has %d bytes, the mount %d' % (rel, len(b), len(ref)))
    n = sum(len(x[2]) for x in os.walk(copy))
    if n != len(fs):
        bad.append('copy has %d files, the mount %d' % (n, len(fs)))
    return bad


def test_cp_r(mount, workdir):
    dst = os.path.join(workdir, 'cp-copy')
    os.mkdir(dst)
    run(['cp', '-r'] + copy_sources(mount) + [dst])
    bad = _compare_copy(mount, dst)
    assert not bad, '\n'.join(bad)


def test_cp_a(mount, workdir):
    # cp -a asks for chmod/chown/utimes on... the destination only, but reads xattrs of the
    # source (getxattr ENOTSUP, listxattr empty): it must succeed without a warning
    dst = os.path.join(workdir, 'cpa-copy')
    os.mkdir(dst)
    p = subprocess.run(['cp', '-a'] + copy_sources(mount) + [dst], capture_output=True,
                       timeout=60)
    assert p.returncode == 0 and p.stderr == b'', p.stderr
    bad = _compare_copy(mount, dst)
    assert not bad, '\n'.join(bad)


def test_rsync_a(mount, workdir):
    dst = os.path.join(workdir, 'rsync-copy')
    p = subprocess.run(['rsync', '-a', '--exclude=/events', mount + '/', dst + '/'],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    bad = _compare_copy(mount, dst)
    assert not bad, '\n'.join(bad)
    # sizes and mtimes agree with the tree (rsync -a keeps them)
    for rel in ('version', 'nodes/n1/vms/100/config.json', 'nodes/n2/info.json'):
        s, c = os.stat(os.path.join(mount, rel)), os.stat(os.path.join(dst, rel))
        assert (s.st_size, int(s.st_mtime)) == (c.st_size, int(c.st_mtime)), rel


def test_ls_l_sizes(mount):
    bad = []
    for d, _, fnames in os.walk(mount):
        if not fnames:
            continue
        out = run(['ls', '-l', '--time-style=+%s', d]).decode().splitlines()
        sizes = {}
        for line in out[1:]:
            parts = line.split()
            if parts[0].startswith('-'):
                sizes[parts[-1]] = int(parts[4])
        for fn in fnames:
            p = os.path.join(d, fn)
            if is_metrics(p) or os.path.relpath(p, mount) in STREAMS:
                continue
            with open(p, 'rb') as f:
                n = len(f.read())
            if sizes.get(fn) != n:
                bad.append('%s: ls -l says %s, content is %d bytes' % (p, sizes.get(fn), n))
    assert not bad, '\n'.join(bad)


def test_stat_size_before_first_read(mount):
    # stat of a file nobody has read yet (fresh daemon, fresh kernel inode) is already true
    bad = []
    for n in NODES:
        for vm in VMS[n]:
            p = os.path.join(mount, 'nodes', n, 'vms', vm, 'domain.xml')
            size = os.stat(p).st_size
            with open(p, 'rb') as f:
                b = f.read()
            if size != len(b):
                bad.append('%s: stat %d, read %d' % (p, size, len(b)))
    assert not bad, '\n'.join(bad)


def test_fstat_of_sampled_document_after_its_ttl(mount):
    # metrics.json is sampled again at most every second; a reader's fstat (which the kernel
    # sends without the file handle) keeps reporting the size of what its open read
    import time
    p = os.path.join(mount, 'nodes', 'n1', 'vms', '100', 'metrics.json')
    fd = os.open(p, os.O_RDONLY)
    try:
        b = b''
        while True:
            c = os.read(fd, 4096)
            if not c:
                break
            b += c
        time.sleep(1.3)   # past the sample's 1 s lifetime
        assert os.fstat(fd).st_size == len(b)
        valid_json(b, p)
    finally:
        os.close(fd)
