"""Guest images from Debian's package archive, fetched with ``apt-get download``
and kept, verified, in the user's cache directory.

emu ships no guest binaries (DESIGN.md): a guest such as memtest86+ is
obtained from the Debian package that carries it, with the ordinary apt
client, and cached:

    <cache>/images/                    (``dest_dir``; default cache_dir()/images)
        apt/                           apt's private state: lists, archives
        debs/<package>_<arch>/
            <package>_<version>_<arch>.deb
            tree/                      the package's files (dpkg-deb -x)
            manifest.json              SHA-256 of the .deb and of every file kept

The host's apt setup is never touched: apt-get runs with its own state and
cache directories (``Dir::State``, ``Dir::Cache``), no dpkg status
(``Dir::State::status=/dev/null``), the requested architecture
(``APT::Architecture``), no locking of the host's files (``Debug::NoLocking``;
our own lock file serialises fetches), and the machine's configured Debian
sources (/etc/apt/sources.list and sources.list.d, including deb822 files),
so whatever mirror or proxy the host uses is used here too.  apt verifies
the downloaded .deb against the signed archive index; the manifest then
records its SHA-256 and those of the extracted files.

A second fetch reuses the cache after checking every digest in the manifest.
If an extracted file no longer matches, it is extracted again from the cached
.deb; if the .deb itself no longer matches (or is gone), it is fetched
again.  Every failure (no network, unknown package, no apt-get) is an
``ImageError`` whose message is one line for the user.

memtest86+ (Debian 12 ships 6.10) has, for a PC BIOS:

  boot/memtest86+ia32.bin   the 32-bit build (``memtest.bin`` upstream): a
                            Linux boot-protocol image (setup header "HdrS"
                            version 2.12, 2 setup sectors, protected-mode code
                            loaded at 1 MiB, 32-bit entry), booted with
                            ``emu run --kernel``; the command line takes
                            ``console=ttyS0,115200`` (serial console on COM1)
                            and ``nopause`` etc.  Its first sector is also a
                            boot sector, so it boots from a (padded) floppy
                            image through the BIOS as well.
  boot/memtest86+x64.bin    the same for x86-64: needs long mode, not for an
                            IA-32 machine.
  boot/memtest86+*.efi      UEFI images: not for a BIOS machine.
  usr/lib/memtest86+/memtest86+ia32.iso
                            an ISO 9660 image whose first sector is the same
                            memtest boot sector, reading the rest with
                            INT 13h: the image that boots from a disk through
                            the BIOS (``emu run --disk``).

The amd64 and i386 packages carry the same files; i386 is the default here.
"""
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

MANIFEST_VERSION = 1
SYSTEM_SOURCE_LIST = "/etc/apt/sources.list"
SYSTEM_SOURCE_PARTS = "/etc/apt/sources.list.d"
APT_TIMEOUT = 600            # seconds for one apt-get run; a hung mirror must not hang us

MEMTEST_PACKAGE = "memtest86+"
MEMTEST_KERNEL = "boot/memtest86+ia32.bin"            # Linux boot protocol, 32-bit
MEMTEST_DISK = "usr/lib/memtest86+/memtest86+ia32.iso"  # boots from a disk via the BIOS


class ImageError(Exception):
    """A guest image cannot be had; the message is one line for the user."""


class DebImage:
    """A Debian package's files, extracted and verified in the cache."""

    def __init__(self, package, arch, version, deb, root, files, source):
        self.package = package
        self.arch = arch
        self.version = version
        self.deb = deb              # path of the cached .deb
        self.root = root            # the directory the package was extracted into
        self.files = files          # relative path -> SHA-256 hex of each regular file
        self.source = source        # "download", "cache" or "re-extracted"

    def path(self, relpath):
        """Absolute path of one of the package's files (e.g. 'boot/memtest86+ia32.bin')."""
        rel = relpath.lstrip("/")
        if rel not in self.files:
            raise ImageError("%s %s has no file %s" % (self.package, self.version, rel))
        return os.path.join(self.root, rel)

    def __repr__(self):
        return "DebImage(%s %s %s, %s)" % (self.package, self.version, self.arch, self.source)


def default_dir():
    from .machine import cache_dir
    return os.path.join(cache_dir(), "images")


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _one_line(text, fallback):
    """The most telling line of apt's output: its last error, else its last line."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    errors = ([ln for ln in lines if ln.startswith("E:")]
              or [ln for ln in lines if ln.startswith("Err:")])
    pick = errors[-1] if errors else (lines[-1] if lines else fallback)
    return pick[3:].strip() if pick.startswith("E:") else pick


class _Apt:
    """apt-get with private state under ``base``: nothing of the host's apt changes."""

    def __init__(self, base, arch, sources=None):
        self.base = base
        self.arch = arch
        self.sources = sources
        self.lists = os.path.join(base, "lists")
        self.cache = os.path.join(base, "cache")
        for d in (os.path.join(self.lists, "partial"),
                  os.path.join(self.cache, "archives", "partial"),
                  os.path.join(base, "sources.d")):
            os.makedirs(d, exist_ok=True)

    def options(self):
        if self.sources is None:
            source_list, source_parts = SYSTEM_SOURCE_LIST, SYSTEM_SOURCE_PARTS
        else:   # a caller's own sources file (tests: a local file: repository)
            source_list, source_parts = self.sources, os.path.join(self.base, "sources.d")
        opts = {
            "Dir::State": self.base,
            "Dir::State::Lists": self.lists,
            "Dir::State::status": "/dev/null",
            "Dir::Cache": self.cache,
            "Dir::Cache::archives": os.path.join(self.cache, "archives"),
            "Dir::Etc::SourceList": source_list,
            "Dir::Etc::SourceParts": source_parts,
            "APT::Architecture": self.arch,
            "APT::Architectures": self.arch,
            "Debug::NoLocking": "1",
            "Acquire::Retries": "1",
        }
        if os.geteuid() == 0:
            # apt would hand the download to its '_apt' user, who cannot write
            # into root's cache directory; we are fetching, not installing.
            opts["APT::Sandbox::User"] = "root"
        args = []
        for k, v in opts.items():
            args += ["-o", "%s=%s" % (k, v)]
        return args

    def run(self, what, args, cwd):
        apt_get = shutil.which("apt-get")
        if apt_get is None:
            raise ImageError("apt-get is not available: guest images come from Debian packages")
        env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        try:
            p = subprocess.run([apt_get, "-q"] + self.options() + args, cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=APT_TIMEOUT,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ImageError("%s: apt-get took more than %d s" % (what, APT_TIMEOUT)) from None
        return p

    def update(self):
        """Refresh the private package lists.  Returns what went wrong ('' if
        nothing), without raising: one unreachable source, or a mirror caught
        mid-sync, must not stop a package that another source has; the
        download that follows is what decides."""
        p = self.run("apt-get update", ["update"], cwd=self.base)
        text = p.stderr + "\n" + p.stdout
        for line in text.splitlines():
            line = line.strip()
            if line.startswith(("W: Failed to fetch", "E: Failed to fetch")):
                return line[3:].strip()
        if p.returncode != 0:
            return _one_line(text, "apt-get update failed (exit status %d)" % p.returncode)
        return ""

    def pkgnames(self, prefix):
        """Names of the packages the private lists have that start with ``prefix``
        (``apt-cache pkgnames``; the lists must have been updated)."""
        apt_cache = shutil.which("apt-cache")
        if apt_cache is None:
            raise ImageError("apt-cache is not available: guest images come from Debian packages")
        env = dict(os.environ, LC_ALL="C")
        try:
            p = subprocess.run([apt_cache] + self.options() + ["pkgnames", prefix], cwd=self.base,
                               env=env, capture_output=True, text=True, timeout=APT_TIMEOUT,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ImageError("apt-cache took more than %d s" % APT_TIMEOUT) from None
        return p.stdout.split() if p.returncode == 0 else []

    def download(self, package, into, update_problem=""):
        p = self.run("apt-get download", ["download", package], cwd=into)
        if p.returncode != 0:
            why = _one_line(p.stderr + "\n" + p.stdout, "apt-get download failed")
            if update_problem:
                why += " (apt-get update: %s)" % update_problem
            raise ImageError("cannot download %s (%s) from the Debian archive: %s"
                             % (package, self.arch, why))


def _deb_field(deb, field):
    p = subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else ""


def _extract(deb, tree):
    """dpkg-deb -x into a fresh tree; returns {relative path: sha256} of its regular files."""
    if shutil.which("dpkg-deb") is None:
        raise ImageError("dpkg-deb is not available: apt-get install dpkg")
    if os.path.lexists(tree):
        shutil.rmtree(tree)
    tmp = tree + ".tmp"
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    p = subprocess.run(["dpkg-deb", "-x", deb, tmp], capture_output=True, text=True)
    if p.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ImageError("cannot unpack %s: %s" % (os.path.basename(deb),
                                                   _one_line(p.stderr, "dpkg-deb -x failed")))
    files = {}
    for dirpath, dirnames, filenames in os.walk(tmp):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                files[os.path.relpath(full, tmp).replace(os.sep, "/")] = _sha256(full)
    os.rename(tmp, tree)
    return files


def _write_manifest(path, manifest):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _read_manifest(path):
    try:
        with open(path) as f:
            m = json.load(f)
        if (m.get("version") != MANIFEST_VERSION or not isinstance(m.get("files"), dict)
                or not isinstance(m.get("deb"), str) or not isinstance(m.get("deb_sha256"), str)):
            return None
        return m
    except (OSError, ValueError):
        return None


def _tree_intact(tree, files):
    for rel, digest in files.items():
        full = os.path.join(tree, rel)
        if not os.path.isfile(full) or os.path.islink(full) or _sha256(full) != digest:
            return False
    return True


def fetch_deb(package, arch="i386", dest_dir=None, sources=None):
    """The files of Debian package ``package`` for ``arch``, as a DebImage.

    ``dest_dir`` is the image cache (default: <user cache>/images).  The
    package is downloaded with ``apt-get download`` only when the cache has
    no intact copy.  ``sources`` replaces the machine's apt sources with one
    sources file (tests use a local file: repository).
    """
    if not package or "/" in package or package.startswith((".", "-")):
        raise ImageError("not a Debian package name: %r" % (package,))
    if not arch or "/" in arch or arch.startswith((".", "-")):
        raise ImageError("not a Debian architecture: %r" % (arch,))
    base = os.path.abspath(dest_dir or default_dir())
    try:
        os.makedirs(base, exist_ok=True)
        lock = open(os.path.join(base, ".lock"), "a")
    except OSError as e:
        raise ImageError("cannot use the image cache %s: %s" % (base, e.strerror or e)) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # one fetch at a time per cache
        try:
            return _fetch_locked(package, arch, base, sources)
        except OSError as e:
            raise ImageError("image cache %s: %s" % (base, e.strerror or e)) from None


def _fetch_locked(package, arch, base, sources):
    entry = os.path.join(base, "debs", "%s_%s" % (package, arch))
    tree = os.path.join(entry, "tree")
    manifest_path = os.path.join(entry, "manifest.json")
    m = _read_manifest(manifest_path)
    if m is not None:
        deb = os.path.join(entry, os.path.basename(m["deb"]))
        if _tree_intact(tree, m["files"]):
            return DebImage(package, arch, m.get("package_version", ""), deb, tree, m["files"],
                            "cache")
        if os.path.isfile(deb) and _sha256(deb) == m["deb_sha256"]:
            files = _extract(deb, tree)
            if files == m["files"]:
                return DebImage(package, arch, m.get("package_version", ""), deb, tree, files,
                                "re-extracted")
        # the .deb itself is damaged or gone: fetch it again

    apt = _Apt(os.path.join(base, "apt"), arch, sources)
    os.makedirs(entry, exist_ok=True)
    download_dir = tempfile.mkdtemp(prefix="download-", dir=entry)
    try:
        problem = apt.update()
        apt.download(package, download_dir, problem)
        debs = sorted(glob.glob(os.path.join(download_dir, "*.deb")))
        if len(debs) != 1:
            raise ImageError("apt-get download %s left %d .deb files, expected one"
                             % (package, len(debs)))
        for old in glob.glob(os.path.join(entry, "*.deb")):
            os.unlink(old)
        deb = os.path.join(entry, os.path.basename(debs[0]))
        os.replace(debs[0], deb)
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)
    version = _deb_field(deb, "Version")
    files = _extract(deb, tree)
    _write_manifest(manifest_path, {
        "version": MANIFEST_VERSION,
        "package": package,
        "arch": arch,
        "package_version": version,
        "deb": os.path.basename(deb),
        "deb_sha256": _sha256(deb),
        "files": files,
    })
    return DebImage(package, arch, version, deb, tree, files, "download")


def memtest86plus(dest_dir=None, arch="i386"):
    """Debian's memtest86+ package, fetched and cached (see the module docstring)."""
    return fetch_deb(MEMTEST_PACKAGE, arch, dest_dir)
