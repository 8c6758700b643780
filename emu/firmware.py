"""The firmware images a machine boots: ours, built from firmware/ with NASM,
or SeaBIOS from Debian's ``seabios`` package.

Our BIOS is built on first use (and again whenever its sources change) into
the user's cache directory, keyed by a SHA-256 of the sources: nothing built
is kept in git.  NASM comes from Debian's ``nasm`` package; ./emu.sh installs
it with apt-get when it is missing.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

FIRMWARE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "firmware")
SEABIOS_PATHS = ("/usr/share/seabios/bios-256k.bin", "/usr/share/seabios/bios.bin")


class FirmwareError(Exception):
    """A firmware image cannot be had; the message is one line for the user."""


def _sources():
    names = sorted(n for n in os.listdir(FIRMWARE_DIR) if n.endswith((".asm", ".inc")))
    if "bios.asm" not in names:
        raise FirmwareError("firmware/bios.asm is missing from this checkout")
    return names


def build_builtin(cache=None):
    """Path of our BIOS image, assembled with NASM if not cached yet."""
    from .machine import cache_dir
    names = _sources()
    h = hashlib.sha256()
    for n in names:
        h.update(n.encode() + b"\0")
        with open(os.path.join(FIRMWARE_DIR, n), "rb") as f:
            h.update(f.read())
    digest = h.hexdigest()[:16]
    out_dir = os.path.join(cache or cache_dir(), "firmware")
    out = os.path.join(out_dir, "bios-%s.bin" % digest)
    if os.path.exists(out):
        return out
    nasm = shutil.which("nasm")
    if nasm is None:
        raise FirmwareError("NASM is needed to build the BIOS: apt-get install nasm "
                            "(./emu.sh does this on first use)")
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    os.close(fd)
    try:
        p = subprocess.run([nasm, "-f", "bin", "-w+all", "-I", FIRMWARE_DIR + os.sep,
                            "-o", tmp, os.path.join(FIRMWARE_DIR, "bios.asm")],
                           capture_output=True, text=True)
        if p.returncode != 0:
            first = (p.stderr or p.stdout).strip().splitlines()[:1]
            raise FirmwareError("NASM failed to build firmware/bios.asm: %s"
                                % (first[0] if first else "exit %d" % p.returncode))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def bios_image(name="builtin"):
    """The bytes of the BIOS called ``name``: 'builtin', 'seabios' or a file path."""
    if name in (None, "builtin", "emu"):
        path = build_builtin()
    elif name == "seabios":
        path = next((p for p in SEABIOS_PATHS if os.path.exists(p)), None)
        if path is None:
            raise FirmwareError("SeaBIOS is not installed: apt-get install seabios")
    else:
        path = name
        if not os.path.isfile(path):
            raise FirmwareError("BIOS image %s does not exist" % path)
    with open(path, "rb") as f:
        return f.read()
