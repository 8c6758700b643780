"""The demonstration kernel that `./emu.sh run` boots: guests/demo_kernel.asm.

It is a Multiboot v1 kernel (a flat binary with the "a.out kludge" header,
loaded at 1 MiB) that prints a banner and the memory map, sets up its own
GDT, IDT and page tables, remaps the PICs, runs the PIT at 100 Hz for three
seconds of guest time while a tick counter runs on the serial console and the
VGA screen, survives a page fault it provokes on purpose, and halts with
interrupts disabled.  See the source for the details.

``build()`` assembles it with NASM into the user's cache directory, keyed by
a SHA-256 of the source, so a changed source is rebuilt and nothing built is
kept in git (the same scheme as emu/firmware.py for the BIOS).
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(REPO_DIR, "guests", "demo_kernel.asm")

# What the kernel prints when it reaches its end; tests and users look for it.
GOODBYE = "goodbye: halting with interrupts disabled"


class BuildError(Exception):
    """The demonstration kernel cannot be built; the message is one line."""


def build(cache=None, source=SOURCE):
    """Path of the assembled kernel, building it first if it is not cached."""
    try:
        with open(source, "rb") as f:
            text = f.read()
    except OSError as e:
        raise BuildError("cannot read the demonstration kernel's source %s: %s"
                         % (source, e.strerror or e)) from None
    if cache is None:
        from ..machine import cache_dir
        cache = cache_dir()
    out_dir = os.path.join(cache, "guests")
    out = os.path.join(out_dir, "demo_kernel-%s.bin" % hashlib.sha256(text).hexdigest()[:16])
    if os.path.isfile(out):
        return out
    nasm = shutil.which("nasm")
    if nasm is None:
        raise BuildError("NASM is needed to build the demonstration kernel: apt-get install nasm "
                         "(./emu.sh does this on first use)")
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise BuildError("cannot write to the cache directory %s: %s"
                         % (out_dir, e.strerror or e)) from None
    try:
        p = subprocess.run([nasm, "-f", "bin", "-w+all", "-o", tmp, source],
                           capture_output=True, text=True)
        if p.returncode != 0:
            first = (p.stderr or p.stdout).strip().splitlines()[:1]
            raise BuildError("NASM failed to build %s: %s"
                             % (os.path.relpath(source, REPO_DIR) if source == SOURCE else source,
                                first[0] if first else "exit status %d" % p.returncode))
        os.replace(tmp, out)     # atomic: a concurrent build never sees half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
