"""Fixtures of the horcruxfs integration suite: a real testbed (tools/hxtestbed/), the real
daemon on a real FUSE mount, real client programs.

Run as root:
    /usr/bin/python3 -m pytest -s tests/integration
    HX_DAEMON=build-asan/horcruxfs /usr/bin/python3 -m pytest -s tests/integration

Fixtures:
    bed      (session) a 3-node testbed, prefix 'hxit', in a fresh /tmp directory
    daemons  (function) a factory: daemons.start(mnt=None, conf=None, opts=...) -> Daemon;
             every daemon it started is stopped at teardown (SIGTERM, exit 0, mount gone,
             no sanitizer report), or killed and lazily unmounted when it misbehaves
    mount    (function) the daemon on a fresh mount point over the testbed's configuration,
             nodes/n1/status already 'online'; yields the mount point path
"""
import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, 'tools')
DAEMON = os.path.abspath(os.environ.get('HX_DAEMON') or os.path.join(ROOT, 'build', 'horcruxfs'))
# Several suites may run side by side (a developer's and a helper's): each with its own prefix.
PREFIX = os.environ.get('HX_TESTBED_PREFIX', 'hxit')
NODES = ['n1', 'n2', 'n3']
VMS = {'n1': {'100': 'running', '101': 'shutoff'},
       'n2': {'200': 'running', '201': 'shutoff'},
       'n3': {'300': 'running', '301': 'shutoff'}}
SANITIZER_RE = re.compile(r'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|'
                          r'ThreadSanitizer|SUMMARY: UndefinedBehaviorSanitizer')


def _load_testbed():
    """The package tools/hxtestbed/ of this tree (test_testbed.py imports the same one)."""
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)
    return importlib.import_module('hxtestbed')


tb = _load_testbed()

# The suite never depends on the signal dispositions and mask it inherited: `nohup`, or `&` in a
# non-interactive shell, start it with SIGINT (and SIGQUIT) ignored, and an ignored signal stays
# ignored across exec in every daemon and `cat` it starts. A handled signal is reset to SIG_DFL
# at exec, so these settings give everything the suite starts the defaults.
TEST_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE)


def default_signals():
    """Sets SIG_DFL (Python's own handler for SIGINT) and unblocks the signals the suite uses."""
    for sig in TEST_SIGNALS:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TEST_SIGNALS)


def child_signals():
    """preexec_fn for what the suite starts: default dispositions, nothing blocked."""
    for sig in TEST_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TEST_SIGNALS)


default_signals()


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason='the integration suite needs root (testbed, FUSE)')
        for it in items:
            it.add_marker(skip)


# ------------------------------------------------------------------ helpers

def mounted(mnt):
    """True when mnt is a mount point in /proc/mounts."""
    mnt = os.path.abspath(mnt)
    with open('/proc/mounts') as f:
        for line in f:
            parts = line.split()
            if len(parts) > 1 and parts[1].encode().decode('unicode_escape') == mnt:
                return True
    return False


def wait_for(fn, timeout, interval=0.02):
    """Calls fn() until it returns a true value or timeout seconds pass.
    Returns (value, seconds) with the last value (false on timeout)."""
    t0 = time.monotonic()
    while True:
        try:
            v = fn()
        except OSError:
            v = None
        dt = time.monotonic() - t0
        if v or dt >= timeout:
            return v, dt
        time.sleep(interval)


class Timings(list):
    """The timed steps of a test module, (what, seconds): each printed as it is measured,
    all of them by summary() at the end."""

    def __init__(self, width):
        super().__init__()
        self.width = width

    def run(self, what, fn):
        """Calls fn(); returns (its value, seconds)."""
        t0 = time.monotonic()
        r = fn()
        dt = time.monotonic() - t0
        self.append((what, dt))
        print('\n[timing] %-*s %.3f s' % (self.width, what, dt))
        return r, dt

    def summary(self):
        if self:
            print('\n[timings] ' + ', '.join('%s %.3fs' % t for t in self))


def read(path, mode='r'):
    with open(path, mode) as f:
        return f.read()


def read_or_errno(path):
    """The text of path, or the errno of the failure as an int."""
    try:
        return read(path)
    except OSError as e:
        return e.errno


def write_atomic(path, text):
    """Replaces path the way editors and config management do: temp file + rename."""
    tmp = path + '.tmp-%d' % os.getpid()
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


class Daemon:
    def __init__(self, mnt, conf, log, opts=(), argv=None):
        self.mnt, self.conf, self.log, self.opts = mnt, conf, log, list(opts)
        self.argv = argv
        self.proc = None
        self.rc = None
        self.stopped_by = None
        self.exits = []   # (signal, exit code) of earlier runs (restart)
        self.preexec = child_signals   # a test may start the daemon with other dispositions

    def cmd(self):
        if self.argv is not None:
            return [DAEMON] + list(self.argv)
        o = ['config=' + self.conf] + self.opts
        if not any(x.startswith('audit=') for x in self.opts):
            # each test's own audit database, next to its daemon log
            o.append('audit=' + os.path.join(os.path.dirname(self.log), 'audit.db'))
        return [DAEMON, '-f', '-o', ','.join(o), self.mnt]

    def start(self, wait_node='n1', timeout=10):
        env = dict(os.environ)
        env['ASAN_OPTIONS'] = 'detect_leaks=0'
        env['UBSAN_OPTIONS'] = 'print_stacktrace=1'
        self.rc = None
        with open(self.log, 'ab') as lf:
            lf.write(('=== %s\n' % ' '.join(self.cmd())).encode())
            lf.flush()
            self.proc = subprocess.Popen(self.cmd(), stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=lf, env=env, preexec_fn=self.preexec)
        _, dt = wait_for(lambda: mounted(self.mnt) or self.proc.poll() is not None, timeout)
        if not mounted(self.mnt):
            raise AssertionError('daemon did not mount %s within %ss (rc=%s); log %s:\n%s'
                                 % (self.mnt, timeout, self.proc.poll(), self.log,
                                    self.log_text()[-3000:]))
        if isinstance(wait_node, str):
            wait_node = [wait_node]
        for n in wait_node or []:
            st = os.path.join(self.mnt, 'nodes', n, 'status')
            v, dt = wait_for(lambda: read(st).strip() == 'online', timeout)
            if not v:
                raise AssertionError('%s did not read online within %ss (reads %r); log %s'
                                     % (st, timeout, read_or_errno(st), self.log))
        return self

    def send(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signals the daemon and waits for it; returns its exit code (None if it hangs)."""
        if self.proc is None:
            return self.rc
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.stopped_by = sig
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.rc = None
        return self.rc

    def restart(self, wait_node='n1', timeout=10):
        """Stops the daemon (SIGTERM) and starts it again on the same mount point."""
        self.stop()
        self.force_cleanup()  # so a broken stop does not block the new mount
        self.exits.append((self.stopped_by, self.rc))
        return self.start(wait_node=wait_node, timeout=timeout)

    def force_cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            # a hung daemon: keep its threads' stacks in its log before killing it
            self.dump_stacks()
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if mounted(self.mnt):
            subprocess.run(['fusermount3', '-uz', self.mnt], capture_output=True)
        if mounted(self.mnt):
            subprocess.run(['umount', '-l', self.mnt], capture_output=True)

    def dump_stacks(self):
        pid = self.proc.pid
        lines = ['=== daemon %d did not exit: thread states' % pid]
        try:
            for t in sorted(os.listdir('/proc/%d/task' % pid), key=int):
                try:
                    comm = read('/proc/%d/task/%s/comm' % (pid, t)).strip()
                    wchan = read('/proc/%d/task/%s/wchan' % (pid, t)).strip()
                    kstack = read('/proc/%d/task/%s/stack' % (pid, t)).split('\n')[:4]
                except OSError:
                    continue
                lines.append('  %s %s wchan=%s %s' % (t, comm, wchan, ' | '.join(kstack)))
        except OSError:
            pass
        gdb = shutil.which('gdb')
        if gdb:
            p = subprocess.run([gdb, '-p', str(pid), '-batch', '-ex', 'thread apply all bt'],
                               capture_output=True, text=True, timeout=60)
            lines.append(p.stdout[-20000:])
        with open(self.log, 'a') as f:
            f.write('\n'.join(lines) + '\n')

    def log_text(self):
        try:
            return read(self.log, 'rb').decode(errors='replace')
        except OSError:
            return ''

    def sanitizer_lines(self):
        return [l for l in self.log_text().splitlines() if SANITIZER_RE.search(l)]


class Daemons:
    """Starts daemons for one test and checks each one's clean exit at teardown."""

    def __init__(self, node, workdir, default_conf):
        self.node = node
        self.workdir = workdir
        self.default_conf = default_conf
        self.all = []
        self.logs = []
        node._hx_logs = self.logs

    def mountpoint(self):
        return tempfile.mkdtemp(prefix='mnt-', dir=self.workdir)

    def new(self, mnt=None, conf=None, opts=(), argv=None):
        mnt = mnt or self.mountpoint()
        log = os.path.join(self.workdir, 'daemon-%d.log' % len(self.all))
        d = Daemon(mnt, conf or self.default_conf, log, opts, argv)
        self.all.append(d)
        self.logs.append(log)
        return d

    def start(self, mnt=None, conf=None, opts=(), wait_node='n1', timeout=10):
        return self.new(mnt, conf, opts).start(wait_node=wait_node, timeout=timeout)

    def finish(self):
        problems = []
        for d in self.all:
            for sig, rc in d.exits:
                if rc != 0:
                    problems.append('daemon on %s: exit code %r after signal %s (before a restart;'
                                    ' log %s)' % (d.mnt, rc, sig, d.log))
            if d.proc is None:
                continue
            if d.proc.poll() is None:
                rc = d.stop(signal.SIGTERM, 10)
                if rc != 0:
                    problems.append('daemon on %s: exit code %r after SIGTERM (log %s)'
                                    % (d.mnt, rc, d.log))
            if mounted(d.mnt):
                problems.append('%s still mounted after the daemon exited (log %s)'
                                % (d.mnt, d.log))
            d.force_cleanup()
            san = d.sanitizer_lines()
            if san:
                problems.append('sanitizer report in %s:\n  %s' % (d.log, '\n  '.join(san[:10])))
        return problems


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    logs = getattr(item, '_hx_logs', None)
    if rep.failed:
        item._hx_keep = True
    if rep.failed and logs:
        parts = []
        for log in logs:
            try:
                tail = read(log, 'rb').decode(errors='replace').splitlines()[-25:]
            except OSError:
                tail = ['(missing)']
            parts.append('daemon log %s (last lines):\n%s' % (log, '\n'.join(tail)))
        rep.sections.append(('horcruxfs daemon logs', '\n\n'.join(parts)))


# ------------------------------------------------------------------ fixtures

class Bed:
    def __init__(self, d, state):
        self.dir = d
        self.state = state
        self.conf = os.path.join(d, 'horcrux.conf')
        self.prefix = state['prefix']

    def virsh(self, node, *args):
        return tb.virsh(self.dir, node, *args)

    def uri(self, node):
        return tb.uri(self.dir, node)

    def socket(self, node):
        return os.path.join(self.dir, 'nodes', node, 'run', 'libvirt', 'libvirt-sock')

    def kill_libvirtd(self, node):
        return tb.kill_libvirtd(self.dir, node)

    def start_libvirtd(self, node):
        return tb.start_libvirtd(self.dir, node)

    def conf_text(self, nodes=NODES):
        lines = []
        for n in nodes:
            lines += ['[node %s]' % n, 'uri = %s' % self.uri(n)]
        return '\n'.join(lines) + '\n'


@pytest.fixture(scope='session')
def bed():
    if os.geteuid() != 0:
        pytest.skip('needs root')
    d = tempfile.mkdtemp(prefix='hxit-')
    os.rmdir(d)  # up() creates it
    leftovers = [ns for ns in tb._netns_list() if ns.startswith(PREFIX + '-')]
    t0 = time.monotonic()
    try:
        st = tb.up(d, nodes=3, vms=2, prefix=PREFIX, force=bool(leftovers))
        print('\n[hxit] testbed up in %.2fs at %s (virt type %s)'
              % (time.monotonic() - t0, d, st.get('virt_type')))
        yield Bed(d, st)
    finally:
        problems = tb.down(d, prefix=PREFIX)
        if problems:
            print('[hxit] testbed down problems: %s' % problems)


def _kernel_lines(role, pid):
    """What the kernel logged about the process (a segfault line), if dmesg may be read."""
    p = subprocess.run(['dmesg'], capture_output=True, text=True)
    return [l for l in p.stdout.splitlines() if '%s[%d]' % (role, pid) in l][-3:]


# What libvirt 9.0's libvirtd logs when a client vanished in the middle of an event
# (de)registration: its heap is corrupted from then on (docs/architecture.md).
LIBVIRTD_COMPLAINTS = ('unexpected incomplete', 'could not find event callback',
                       'event deregister failure')


def _libvirtd_logs(d):
    try:
        nodes = tb._load(d)['nodes']
    except tb.TestbedError:
        return {}
    return {n['name']: os.path.join(n['dir'], 'log', 'libvirtd.log') for n in nodes}


def libvirtd_log_sizes(d):
    out = {}
    for name, path in _libvirtd_logs(d).items():
        try:
            out[name] = os.path.getsize(path)
        except OSError:
            out[name] = 0
    return out


def libvirtd_complaints(d, since):
    """(node, line) for each new complaint in a node's libvirtd log since the sizes in since."""
    out = []
    for name, path in _libvirtd_logs(d).items():
        try:
            with open(path, 'rb') as f:
                f.seek(since.get(name, 0))
                text = f.read().decode(errors='replace')
        except OSError:
            continue
        out += [(name, l.strip()) for l in text.splitlines()
                if any(c in l for c in LIBVIRTD_COMPLAINTS)]
    return out


def _crashes(d):
    try:
        return tb.crashes(d)
    except tb.TestbedError:   # the testbed itself is gone (test_testbed's last test)
        return []


@pytest.fixture(autouse=True)
def libvirtd_crashes(request):
    """Reports a libvirtd (or virtlogd) of the testbed that died by itself during a test, and
    what its log says when a client tore down a half-registered event callback.
    The testbed's subreaper starts it again as systemd would (Restart=on-failure), so one
    crash of the third-party daemon does not take every later test down with it; the test
    that was running keeps its own verdict. The report names the node, how the daemon ended
    and what the kernel logged, and lands in the warnings summary."""
    if 'bed' not in request.fixturenames:
        yield
        return
    b = request.getfixturevalue('bed')
    d = b.dir if isinstance(b, Bed) else b['dir']
    seen = len(_crashes(d))
    logs = libvirtd_log_sizes(d)
    yield
    sick = set()
    for node, line in libvirtd_complaints(d, logs):
        msg = 'libvirtd of %s logged during this test: %s' % (node, line)
        print('\n[hxit] ' + msg)
        request.node.user_properties.append(('libvirtd_complaint', msg))
        warnings.warn(msg)
        sick.add(node)
    # Its heap is corrupted from then on: later tests get a fresh libvirtd (guests live on).
    for node in sorted(sick):
        try:
            tb.kill_libvirtd(d, node)
        except tb.TestbedError:
            pass
        tb.start_libvirtd(d, node)
        print('[hxit] libvirtd of %s restarted after that' % node)
    new = _crashes(d)[seen:]
    for c in new:
        msg = ('libvirt %s of testbed node %s (pid %d) ended by itself during this test: %s; '
               'restarted as systemd would. kernel: %s'
               % (c['role'], c['node'], c['pid'], c['how'], ' | '.join(_kernel_lines(c['role'], c['pid'])) or '-'))
        print('\n[hxit] ' + msg)
        request.node.user_properties.append(('libvirtd_crash', msg))
        warnings.warn(msg)
        if c['role'] == 'libvirtd':
            tb.start_libvirtd(d, c['node'])   # back (the subreaper restarted it), or an error


@pytest.fixture
def workdir(request):
    d = tempfile.mkdtemp(prefix='hxit-run-')
    yield d
    # kept (with the daemon logs) when the test failed
    if not getattr(request.node, '_hx_keep', False) and \
            not any(d in l for l in open('/proc/mounts')):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemons(request, bed, workdir):
    ds = Daemons(request.node, workdir, bed.conf)
    yield ds
    problems = ds.finish()
    if problems:
        request.node._hx_keep = True
    assert not problems, '\n'.join(problems)


@pytest.fixture
def mounted_daemon(daemons):
    """The daemon over the testbed's configuration, every node online (n1 first)."""
    return daemons.start(wait_node=NODES)


@pytest.fixture
def mount(mounted_daemon):
    return mounted_daemon.mnt
