"""What the testbed asks of the host: libc calls (mount, setns, unshare, prctl), commands,
unix sockets, processes as /proc shows them (alive, zombie, command line, namespaces), and
whether /dev/kvm can really make a VM."""

import ctypes
import fcntl
import os
import socket
import subprocess
import time

from .state import TestbedError

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_MOVE = 8192
MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36


_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, '%s: %s' % (what, os.strerror(e)))


def _mount(src, tgt, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None
    _check(libc().mount(enc(src), enc(tgt), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           'mount %s on %s' % (src, tgt))


def _run(cmd, check=True, input=None, timeout=60):
    p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise TestbedError('%s failed (rc=%d): %s' % (' '.join(cmd), p.returncode,
                                                      (p.stderr or p.stdout).strip()))
    return p


def _sock_accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _wait_sock(path, timeout, alive=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _sock_accepts(path):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.01)
    return False


def _proc_state(pid):
    """The state letter of pid in /proc/PID/stat (R, S, Z...); None when it cannot be read."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            data = f.read()
        return data[data.rindex(')') + 2]
    except (OSError, ValueError, IndexError):
        return None


def _pid_alive(pid):
    """True if pid exists and is not a zombie."""
    s = _proc_state(pid)
    return s is not None and s != 'Z'


def _is_zombie(pid):
    return _proc_state(pid) == 'Z'


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return [a.decode(errors='replace') for a in f.read().split(b'\0') if a]
    except OSError:
        return []


def _ns_ino(pid, kind):
    try:
        return os.stat('/proc/%d/ns/%s' % (pid, kind)).st_ino
    except OSError:
        return None


def _all_pids():
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def kvm_usable():
    """Really try to create a VM through /dev/kvm (KVM_GET_API_VERSION, KVM_CREATE_VM)."""
    try:
        fd = os.open('/dev/kvm', os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, 0xAE00) != 12:
            return False
        vmfd = fcntl.ioctl(fd, 0xAE01, 0)
        os.close(vmfd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
