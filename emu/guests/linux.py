"""Debian's i386 Linux as an emu guest: `emu images fetch linux`, `emu boot linux`.

What is fetched (emu/images.py: ``apt-get download`` with a private apt
state, the architecture forced to i386, nothing of the host's apt touched):

    linux-image-6.1.<abi>-686-unsigned   the 686 flavour's kernel, whose
                                          boot/vmlinuz-* is a bzImage (boot
                                          protocol 2.15, xz payload).  The
                                          newest ABI the archive lists is
                                          chosen on the first fetch and
                                          remembered in the manifest.
    busybox-static                        bin/busybox: a static i386 binary,
                                          the whole userland

What is made from them, by our code (no cpio or xz binary):

    initramfs.cpio.gz   cpio "newc" (emu/guests/cpio.py), gzip: busybox,
                        the applet links ``busybox --install -s`` makes at
                        boot, /dev/console, and ``/init`` (INIT_SCRIPT):
                        mount proc, sys and devtmpfs, print MARKER, start a
                        shell on the console (cttyhack, so it has a
                        controlling terminal and job control), and when
                        that shell exits, ``poweroff -f``.
    vmlinux             the kernel's ELF image, taken out of the bzImage:
                        the setup header's payload_offset/payload_length
                        locate the xz stream (followed by its 4-byte
                        uncompressed size), Python's lzma unpacks it, and
                        the relocation table the kernel's own decompressor
                        would use (appended after the ELF file) is cut off.
                        Booted through the 32-bit protocol
                        (emu/boot/linux.py), it skips the ~2.3 G instructions
                        of the kernel's xz decompressor.

Cache layout (under the image cache, default <user cache>/emu/images):

    debs/<package>_i386/...      the packages (emu/images.py's manifests)
    linux/manifest.json          which kernel package, and for each file
                                 emu made: its SHA-256 and what it was made
                                 from (the SHA-256 of its inputs)
    linux/initramfs-<key>.cpio.gz, linux/vmlinux-<abi>

A second fetch checks every digest and uses the cache without apt; a file
that does not match its digest is made again (or, for a package's file,
fetched again).  Every failure is an ``ImageError`` with a one-line message.

The kernel's needs (measured under QEMU): an i586-class CPU with FPU, CX8
and CMOV; the TSC as clocksource, calibrated against PIT channel 2 (ports
42h/61h); with ``acpi=off noapic nolapic pci=off`` it runs on the 8259
pair, the 8254, the i8042, the CMOS RTC, the 16550A on COM1 and the VGA
CRTC ports alone.  ``cryptomgr.notests=1 noisapnp`` skip ~60% of the boot's
instructions (crypto self-tests, ISA PnP probing).
"""
import gzip
import hashlib
import json
import lzma
import os
import re
import struct

from .. import images
from ..images import ImageError
from . import cpio

KERNEL_META = "linux-image-686"                  # depends on linux-image-6.1.0-<abi>-686
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-(6\.1\.\d+-\d+)-686-unsigned$")
BUSYBOX_PACKAGE = "busybox-static"
ARCH = "i386"
MANIFEST_VERSION = 1
INITRAMFS_FORMAT = 1          # bump when the archive layout (not /init) changes

# The command line emu boot linux uses; --append adds to it.
DEFAULT_APPEND = ("console=ttyS0 acpi=off noapic nolapic pci=off cryptomgr.notests=1 "
                  "noisapnp")
DEFAULT_MEMORY_MB = 128

# What /init prints once the root filesystem is up, before the shell starts;
# benchmarks and tests wait for it.
MARKER = "emu-linux: init ready"
# With this on the kernel command line, /init powers off right after MARKER
# (the boot benchmark's run).
BENCH_PARAM = "emu.poweroff=1"
PROMPT = "emu# "

INIT_SCRIPT = """\
#!/bin/sh
# /init of emu's Linux initramfs (written by emu/guests/linux.py).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin HOME=/root TERM=${TERM:-vt100}
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /root
mount -t devpts devpts /dev/pts 2>/dev/null
hostname emu
echo "%(marker)s"
case " $(cat /proc/cmdline) " in
    *" %(bench)s "*) poweroff -f ;;
esac
cd /root
while true; do
    setsid cttyhack sh -l
    echo "emu-linux: the shell exited; powering off"
    poweroff -f
done
""" % {"marker": MARKER, "bench": BENCH_PARAM}

PROFILE = """\
export PS1='%s'
""" % PROMPT


# --- vmlinux out of a bzImage -----------------------------------------------------------------
class ExtractError(ValueError):
    """The bzImage's payload cannot be turned into a vmlinux (one line)."""


def extract_vmlinux(bzimage):
    """The ELF vmlinux inside a bzImage whose payload is xz-compressed (bytes).

    boot.rst: ``payload_offset`` (0x248) is the offset of the compressed data
    from the start of the protected-mode code, which follows the
    (setup_sects + 1) * 512 bytes of real-mode code; ``payload_length``
    (0x24C) its length.  The kernel's build appends the uncompressed size
    (4 bytes, little endian) to the compressed stream."""
    data = bytes(bzimage)
    if len(data) < 0x268 or data[0x202:0x206] != b"HdrS":
        raise ExtractError("not a bzImage (no 'HdrS' setup header)")
    version = struct.unpack_from("<H", data, 0x206)[0]
    if version < 0x0208:
        raise ExtractError("boot protocol %d.%02d has no payload fields (2.08+ needed)"
                           % (version >> 8, version & 0xFF))
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if length < 6 or start + length > len(data):
        raise ExtractError("payload (offset %d, %d bytes) lies outside the %d-byte file"
                           % (offset, length, len(data)))
    payload = data[start:start + length]
    if payload[:6] != b"\xfd7zXZ\x00":
        kinds = {b"\x1f\x8b": "gzip", b"\x28\xb5": "zstd", b"\x5d\x00": "lzma",
                 b"\x42\x5a": "bzip2", b"\x89\x4c": "lzo", b"\x02\x21": "lz4"}
        raise ExtractError("the payload is %s-compressed; only xz payloads are supported"
                           % kinds.get(payload[:2], "not xz (unknown)"))
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        out = dec.decompress(payload)
    except lzma.LZMAError as e:
        raise ExtractError("the xz payload is damaged: %s" % e) from None
    if not dec.eof:
        raise ExtractError("the xz payload is truncated")
    tail = dec.unused_data
    if len(tail) == 4 and struct.unpack("<I", tail)[0] != len(out):
        raise ExtractError("the payload says it unpacks to %d bytes, it gave %d"
                           % (struct.unpack("<I", tail)[0], len(out)))
    return _elf_file_only(out)


def _elf_file_only(data):
    """Cut what follows the ELF file (the relocation table a relocatable
    kernel's decompressor appends to vmlinux.bin): the file ends with its
    section header table or its last segment, whichever is later."""
    if data[:4] != b"\x7fELF" or len(data) < 52 or data[4] != 1:
        raise ExtractError("the payload is not a 32-bit ELF image")
    phoff, shoff = struct.unpack_from("<II", data, 28)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 42)
    end = max(52, phoff + phentsize * phnum, shoff + shentsize * shnum if shoff else 0)
    for i in range(phnum):
        off, filesz = struct.unpack_from("<I8xI", data, phoff + i * phentsize + 4)
        end = max(end, off + filesz)
    if end > len(data):
        raise ExtractError("the ELF image in the payload is truncated")
    return data[:end]


# --- the initramfs ----------------------------------------------------------------------------
def initramfs_entries(busybox, init_script=INIT_SCRIPT):
    E = cpio.Entry
    entries = [E.directory(d) for d in ("bin", "dev", "etc", "proc", "root", "sbin", "sys",
                                        "tmp", "usr", "usr/bin", "usr/sbin")]
    entries += [
        E.chardev("dev/console", 5, 1),
        E.chardev("dev/null", 1, 3, perm=0o666),
        E.chardev("dev/ttyS0", 4, 64),
        E.file("bin/busybox", busybox, perm=0o755),
        E.symlink("bin/sh", "busybox"),
        E.file("etc/profile", PROFILE.encode()),
        E.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        E.file("etc/group", b"root:x:0:\n"),
        E.file("init", init_script.encode(), perm=0o755),
    ]
    entries[entries.index(next(e for e in entries if e.name == "tmp"))].mode |= 0o1777
    return entries


def build_initramfs(busybox, init_script=INIT_SCRIPT):
    """The gzip-compressed newc archive (bytes); the same inputs give the same bytes."""
    archive = cpio.write_newc(initramfs_entries(busybox, init_script))
    return gzip.compress(archive, compresslevel=9, mtime=0)


def initramfs_key(busybox_sha256, init_script=INIT_SCRIPT):
    """What the initramfs is made from: busybox, /init, the archive layout."""
    h = hashlib.sha256()
    h.update(b"emu-initramfs-%d\0" % INITRAMFS_FORMAT)
    h.update(busybox_sha256.encode() + b"\0")
    h.update(init_script.encode() + b"\0" + PROFILE.encode())
    return h.hexdigest()


# --- fetching ---------------------------------------------------------------------------------
class LinuxImages:
    """Paths of the kernel (bzImage and vmlinux) and initramfs in the cache."""

    def __init__(self, bzimage, vmlinux, initramfs, kernel_package, kernel_version,
                 busybox_version, manifest, sources):
        self.bzimage = bzimage
        self.vmlinux = vmlinux
        self.initramfs = initramfs
        self.kernel_package = kernel_package
        self.kernel_version = kernel_version
        self.busybox_version = busybox_version
        self.manifest = manifest            # path of linux/manifest.json
        self.sources = sources              # what each piece came from: download/cache/...

    def kernel(self, fmt="vmlinux"):
        if fmt not in ("vmlinux", "bzimage"):
            raise ValueError("kernel format must be 'vmlinux' or 'bzimage', not %r" % fmt)
        return self.vmlinux if fmt == "vmlinux" else self.bzimage

    def describe(self):
        return ["kernel   %s %s" % (self.kernel_package, self.kernel_version),
                "         bzImage %s" % self.bzimage,
                "         vmlinux %s" % self.vmlinux,
                "busybox  %s %s" % (BUSYBOX_PACKAGE, self.busybox_version),
                "initrd   %s" % self.initramfs,
                "manifest %s" % self.manifest]


def _intact(path, digest):
    return bool(digest) and os.path.isfile(path) and not os.path.islink(path) \
        and images._sha256(path) == digest


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read_manifest(path):
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("version") != MANIFEST_VERSION \
            or not isinstance(m.get("files"), dict) \
            or not KERNEL_PACKAGE_RE.match(str(m.get("kernel_package", ""))):
        return None
    return m


def _abi_key(package):
    """Sort key of a kernel package name: (6, 1, 0, abi)."""
    m = KERNEL_PACKAGE_RE.match(package)
    return tuple(int(x) for x in re.split(r"[.-]", m.group(1)))


def resolve_kernel_package(base, sources=None):
    """The newest linux-image-6.1.*-686-unsigned the archive lists (needs apt's lists)."""
    apt = images._Apt(os.path.join(base, "apt"), ARCH, sources)
    problem = apt.update()
    names = apt.pkgnames("linux-image-6.1")
    found = sorted((n for n in names if KERNEL_PACKAGE_RE.match(n)), key=_abi_key)
    if not found:
        why = "the archive lists no linux-image-6.1.*-686-unsigned package for i386"
        if problem:
            why += " (apt-get update: %s)" % problem
        raise ImageError("cannot find Debian's 686 kernel: " + why)
    return found[-1]


def fetch(dest_dir=None, sources=None, log=None):
    """Fetch (or find in the cache) the kernel, busybox, and make the vmlinux
    and the initramfs.  Returns LinuxImages.  ``log(text)`` hears progress."""
    say = log or (lambda text: None)
    base = os.path.abspath(dest_dir or images.default_dir())
    linux_dir = os.path.join(base, "linux")
    manifest_path = os.path.join(linux_dir, "manifest.json")
    try:
        os.makedirs(linux_dir, exist_ok=True)
    except OSError as e:
        raise ImageError("cannot use the image cache %s: %s" % (base, e.strerror or e)) from None
    m = _read_manifest(manifest_path)
    old_files = m["files"] if m else {}
    sources_used = {}
    if m is not None:
        package = m["kernel_package"]
    else:
        say("looking up Debian's 686 kernel package")
        package = resolve_kernel_package(base, sources)
        say("kernel package %s" % package)
    kernel = images.fetch_deb(package, ARCH, base, sources=sources)
    sources_used["kernel"] = kernel.source
    busybox = images.fetch_deb(BUSYBOX_PACKAGE, ARCH, base, sources=sources)
    sources_used["busybox"] = busybox.source
    abi = KERNEL_PACKAGE_RE.match(package).group(1)
    vmlinuz = [f for f in kernel.files if re.fullmatch(r"boot/vmlinuz-[^/]+", f)]
    if len(vmlinuz) != 1:
        raise ImageError("%s has %d boot/vmlinuz-* files, expected one" % (package, len(vmlinuz)))
    bzimage = kernel.path(vmlinuz[0])
    busybox_path = busybox.path("bin/busybox")
    files = {}

    def made(what, name, key, make):
        """The file ``name`` in linux_dir, made by ``make()`` from inputs whose
        digest is ``key``, unless the manifest has it intact from the same key."""
        path = os.path.join(linux_dir, name)
        old = old_files.get(name, {})
        if old.get("from") == key and _intact(path, old.get("sha256")):
            sources_used[what] = "cache"
            files[name] = old
        else:
            data = make()
            _write_atomic(path, data)
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "from": key}
            sources_used[what] = "made"
        return path

    def make_vmlinux():
        say("extracting the vmlinux from %s" % os.path.basename(bzimage))
        with open(bzimage, "rb") as f:
            try:
                return extract_vmlinux(f.read())
            except ExtractError as e:
                raise ImageError("%s: %s" % (bzimage, e)) from None

    def make_initramfs():
        say("building the initramfs")
        with open(busybox_path, "rb") as f:
            return build_initramfs(f.read())

    try:
        bz_sha = kernel.files[vmlinuz[0]]
        vml_path = made("vmlinux", "vmlinux-%s-686" % abi, bz_sha, make_vmlinux)
        key = initramfs_key(busybox.files["bin/busybox"])
        rd_path = made("initramfs", "initramfs-%s.cpio.gz" % key[:16], key, make_initramfs)
        for name in old_files:           # what an older manifest listed and is no longer used
            if name not in files:
                try:
                    os.unlink(os.path.join(linux_dir, name))
                except OSError:
                    pass
        manifest = {
            "version": MANIFEST_VERSION,
            "kernel_package": package,
            "kernel_version": kernel.version,
            "kernel_deb_sha256": images._sha256(kernel.deb),
            "bzimage": os.path.relpath(bzimage, base),
            "bzimage_sha256": bz_sha,
            "busybox_package": BUSYBOX_PACKAGE,
            "busybox_version": busybox.version,
            "busybox_sha256": busybox.files["bin/busybox"],
            "files": files,
        }
        if manifest != m:
            tmp = manifest_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True)
            os.replace(tmp, manifest_path)
    except OSError as e:
        raise ImageError("image cache %s: %s" % (linux_dir, e.strerror or e)) from None
    return LinuxImages(bzimage, vml_path, rd_path, package, kernel.version, busybox.version,
                       manifest_path, sources_used)


def run_args(im, kernel_format="vmlinux", append="", memory_mb=DEFAULT_MEMORY_MB):
    """`emu run` arguments that boot the fetched kernel and initramfs."""
    cmdline = DEFAULT_APPEND + ((" " + append.strip()) if append and append.strip() else "")
    return ["--kernel", im.kernel(kernel_format), "--initrd", im.initramfs,
            "--append", cmdline, "--memory", str(memory_mb)]
