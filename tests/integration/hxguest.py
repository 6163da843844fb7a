"""A tiny Linux guest for tests: Debian's kernel and a busybox initramfs built here.

The kernel comes from Debian's linux-image-*-amd64 package, downloaded with `apt-get download`
and extracted with `dpkg-deb -x` into CACHE (nothing goes to /boot, no initramfs hook runs).
The initramfs (cpio newc, written by this module) holds a static busybox, the few modules a
cdrom needs (IDE/SATA, sr_mod, isofs) and an /init that mounts the cloud-init cdrom (label
cidata), prints its user-data and meta-data in base64 between markers on the serial console,
and powers off.

    python3 tests/integration/hxguest.py fetch    # what tools/setup runs
"""
import glob
import os
import shutil
import subprocess
import sys

CACHE = '/var/cache/horcrux-test'
LINUX = os.path.join(CACHE, 'linux')
BUSYBOX = '/bin/busybox'
# Load order: each after what it needs (libata needs scsi_mod, sr_mod needs cdrom ...).
MODULES = ['scsi_common', 'scsi_mod', 'libata', 'ata_piix', 'ata_generic', 'libahci', 'ahci',
           'cdrom', 'sr_mod', 'isofs']
BEGIN = '===HXCI-%s-BEGIN==='
END = '===HXCI-%s-END==='

INIT = r'''#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /mnt
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/printk
for m in %(modules)s; do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
i=0
while [ ! -b /dev/sr0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "===HXCI-DEVICES=== $(ls /dev | tr '\n' ' ')"
# The ISO 9660 volume label: 32 bytes at offset 40 of the primary volume descriptor (sector 16).
echo "===HXCI-LABEL=== $(dd if=/dev/sr0 bs=1 skip=32808 count=32 2>/dev/null)"
if mount -t iso9660 -o ro /dev/sr0 /mnt; then
  for f in user-data meta-data network-config; do
    if [ -f /mnt/$f ]; then
      echo "===HXCI-$f-BEGIN==="
      base64 /mnt/$f
      echo "===HXCI-$f-END==="
    fi
  done
else
  echo "===HXCI-NOMOUNT==="
fi
echo "===HXCI-DONE==="
sync
poweroff -f
'''


def kernel():
    """(vmlinuz path, modules dir) from the cache, or None."""
    ks = sorted(glob.glob(os.path.join(LINUX, 'boot', 'vmlinuz-*')))
    if not ks:
        return None
    ver = os.path.basename(ks[-1])[len('vmlinuz-'):]
    mods = os.path.join(LINUX, 'lib', 'modules', ver)
    return (ks[-1], mods) if os.path.isdir(mods) else None


def fetch():
    """Downloads and extracts the kernel package unless the cache has one. Returns kernel()."""
    if kernel():
        return kernel()
    os.makedirs(CACHE, exist_ok=True)
    dl = os.path.join(CACHE, 'download')
    shutil.rmtree(dl, ignore_errors=True)
    os.makedirs(dl)
    dep = subprocess.run(['apt-cache', 'depends', 'linux-image-amd64'], capture_output=True,
                         text=True, timeout=60)
    pkg = [l.split(':', 1)[1].strip() for l in dep.stdout.splitlines()
           if l.strip().startswith('Depends:') and 'linux-image-' in l]
    if not pkg:
        raise RuntimeError('apt-cache knows no linux-image-amd64 (run apt-get update): %s'
                           % dep.stderr.strip())
    subprocess.run(['apt-get', 'download', '-q', pkg[0]], cwd=dl, check=True, timeout=600,
                   stdout=subprocess.DEVNULL)
    debs = glob.glob(os.path.join(dl, '*.deb'))
    tmp = LINUX + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(['dpkg-deb', '-x', debs[0], tmp], check=True, timeout=300)
    shutil.rmtree(LINUX, ignore_errors=True)
    os.rename(tmp, LINUX)
    shutil.rmtree(dl, ignore_errors=True)
    return kernel()


def _newc(out, name, mode, data=b'', rdev=(0, 0), ino=[1000]):
    ino[0] += 1
    nb = name.encode() + b'\0'
    hdr = '070701' + ''.join('%08x' % v for v in (
        ino[0], mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data), 0, 0, rdev[0], rdev[1],
        len(nb), 0))
    out.write(hdr.encode() + nb)
    out.write(b'\0' * ((4 - (110 + len(nb)) % 4) % 4))
    out.write(data)
    out.write(b'\0' * ((4 - len(data) % 4) % 4))


def initramfs(path, mods_dir):
    """Writes the initramfs (uncompressed cpio newc) to path."""
    with open(BUSYBOX, 'rb') as f:
        bb = f.read()
    with open(path, 'wb') as out:
        for d in ('bin', 'dev', 'proc', 'sys', 'mnt', 'lib', 'lib/modules'):
            _newc(out, d, 0o040755)
        _newc(out, 'dev/console', 0o020600, rdev=(5, 1))
        _newc(out, 'bin/busybox', 0o100755, bb)
        init = INIT % {'modules': ' '.join(MODULES)}
        _newc(out, 'init', 0o100755, init.encode())
        for m in MODULES:
            found = glob.glob(os.path.join(mods_dir, 'kernel', '**', m + '.ko*'), recursive=True)
            if not found:
                continue
            with open(found[0], 'rb') as f:
                data = f.read()
            if found[0].endswith('.xz'):
                import lzma
                data = lzma.decompress(data)
            _newc(out, 'lib/modules/%s.ko' % m, 0o100644, data)
        _newc(out, 'TRAILER!!!', 0)


def sections(log_text):
    """{file name: bytes} printed by /init between the markers, from the serial log."""
    import base64
    lines = log_text.replace('\r', '').split('\n')
    out = {}
    for f in ('user-data', 'meta-data', 'network-config'):
        try:
            i = lines.index(BEGIN % f)
            j = lines.index(END % f, i)
        except ValueError:
            continue
        out[f] = base64.b64decode(''.join(lines[i + 1:j]))
    return out


if __name__ == '__main__':
    if sys.argv[1:] == ['fetch']:
        k = fetch()
        print('kernel: %s' % (k[0] if k else 'none'))
    else:
        sys.exit(__doc__)
