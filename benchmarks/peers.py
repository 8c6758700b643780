"""Peers the benchmarks measure emu against: finding (or installing) them.

    from benchmarks.peers import ensure_qemu, QemuMissing
    exe = ensure_qemu()        # path of qemu-system-i386, or raises QemuMissing

QEMU comes from Debian's ``qemu-system-x86`` package (it holds
``qemu-system-i386``).  When it is not on PATH it is installed with apt-get,
non-interactively, with sudo when we are not root and sudo exists; apt-get
update runs first, once per process.  A benchmark that cannot get QEMU
reports its QEMU figures as null with the one-line reason this module gives,
and does not fail.
"""
import os
import shutil
import subprocess

QEMU_I386 = "qemu-system-i386"
QEMU_PACKAGE = "qemu-system-x86"


class QemuMissing(RuntimeError):
    """qemu-system-i386 is not installed and could not be installed (one line)."""


_tried = {}


def _sudo():
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return []
    return ["sudo", "-n"] if shutil.which("sudo") else []


def ensure_qemu(install=True, log=None):
    """Path of qemu-system-i386; installs qemu-system-x86 with apt-get when it
    is missing and ``install`` is true.  Raises QemuMissing with a one-line
    reason when there is still none."""
    exe = shutil.which(QEMU_I386)
    if exe:
        return exe
    if not install:
        raise QemuMissing("%s is not installed (apt-get install %s)" % (QEMU_I386, QEMU_PACKAGE))
    if QEMU_PACKAGE in _tried:                 # one attempt per process
        raise QemuMissing(_tried[QEMU_PACKAGE])
    if shutil.which("apt-get") is None:
        _tried[QEMU_PACKAGE] = "%s is not installed and there is no apt-get" % QEMU_I386
        raise QemuMissing(_tried[QEMU_PACKAGE])
    if log is not None:
        log("installing %s with apt-get (for %s)" % (QEMU_PACKAGE, QEMU_I386))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = _sudo()
    try:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=600)
        p = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                   QEMU_PACKAGE], env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=1200)
        detail = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
    except (OSError, subprocess.TimeoutExpired) as e:
        detail = [str(e)]
    exe = shutil.which(QEMU_I386)
    if exe is None:
        _tried[QEMU_PACKAGE] = "cannot install %s: %s" % (
            QEMU_PACKAGE, detail[-1] if detail else "apt-get failed")
        raise QemuMissing(_tried[QEMU_PACKAGE])
    return exe


def qemu_version(exe):
    """First line of ``qemu-system-i386 --version`` (or None)."""
    try:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = p.stdout.strip().splitlines()
    return lines[0] if lines else None
