"""Boot time of Debian's i386 Linux under emu and under QEMU TCG, same run.

    python benchmarks/linux_boot.py [--kernel-format vmlinux|bzimage] [--timeout S] [--json]

Both boot the kernel and initramfs of `emu images fetch linux` (fetched on
first use) with emu's command line plus ``emu.poweroff=1``, which makes the
initramfs's /init print its marker ("emu-linux: init ready") and power off.
The time measured is from starting the process to the marker appearing on
its serial console, the same for both.

emu runs twice: "cold" with an empty JIT code cache (a fresh temporary
directory in EMU_JIT_CACHE_DIR, and ``--jit-cache on`` when `emu run` has
that option) and "warm" with the cache the cold run left.  ``--jit on|off``
is passed to `emu run` (default: emu's own default); with the JIT off both
runs measure the interpreter.  emu runs in virtual time (its
default): idle periods of the guest cost no wall-clock time, as with
QEMU's ``-icount``-less default they do not either (QEMU sleeps in real
time only while the guest waits for a timer).

QEMU (``qemu-system-i386`` from Debian's qemu-system-x86, installed with
apt-get when missing) always boots the bzImage: it cannot enter a vmlinux
without a PVH note, which Debian's kernel lacks.  By default emu boots the
same bzImage (the real-mode setup code, then the kernel's own xz
decompressor: ~2.3 G of the ~2.7 G instructions), so both do the same work.
``--kernel-format vmlinux`` measures emu's fast path instead (it skips the
decompressor, which QEMU cannot): the printed ratio says which formats ran.

With --json: one object with emu_cold_s, emu_warm_s, qemu_s, ratio_cold,
ratio_warm (emu time / QEMU time) and details.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from emu.guests import linux  # noqa: E402
from emu.images import ImageError  # noqa: E402

MEMORY_MB = 128


def log(text):
    print("linux_boot: %s" % text, file=sys.stderr, flush=True)


class Timed:
    """A process whose stdout is watched for the marker."""

    def __init__(self, argv, env=None, keep_output=None):
        self.t0 = time.monotonic()
        self.marker_at = None
        self.output = bytearray()
        self.keep_output = keep_output
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._err.start()
        self.seen = threading.Event()

    def _read(self):
        marker = linux.MARKER.encode()
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                break
            self.output += chunk
            if self.keep_output is not None:
                self.keep_output.write(chunk)
                self.keep_output.flush()
            if self.marker_at is None and marker in self.output[-len(chunk) - len(marker):]:
                self.marker_at = time.monotonic() - self.t0
                self.seen.set()
        self.seen.set()

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def wait_marker(self, timeout):
        self.seen.wait(timeout)
        return self.marker_at

    def finish(self, grace):
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        self._err.join(5)
        return self.proc.returncode

    def tail(self, n=8):
        text = bytes(self.output).decode("utf-8", "replace").replace("\r", "")
        return [ln for ln in text.split("\n") if ln.strip()][-n:]


def emu_supports(option):
    p = subprocess.run([sys.executable, "-m", "emu.cli", "run", "--help"], cwd=REPO,
                       capture_output=True, text=True)
    return option in p.stdout


def run_emu(im, fmt, append, cache_dir, timeout, label, jit_cache_option, jit=None):
    argv = [sys.executable, "-m", "emu.cli", "run"] + linux.run_args(im, fmt, append, MEMORY_MB)
    argv += ["--serial", "stdio", "--display", "none", "--timeout", str(timeout)]
    if jit is not None:
        argv += ["--jit", jit]
    if jit_cache_option:
        argv += ["--jit-cache", "on"]           # the directory is EMU_JIT_CACHE_DIR
    env = dict(os.environ, EMU_JIT_CACHE_DIR=cache_dir)
    log("%s: %s" % (label, " ".join(argv[3:])))
    t = Timed(argv, env=env)
    at = t.wait_marker(timeout + 30)
    code = t.finish(grace=120 if at is not None else 5)
    err = t.stderr.decode("utf-8", "replace")
    m = re.search(r"\(exit (\d+), (\d+) instructions in ([0-9.]+) s\)", err)
    info = {"seconds": at, "exit_code": code}
    if m:
        insns, secs = int(m.group(2)), float(m.group(3))
        info.update(instructions=insns, run_seconds=secs,
                    mips=round(insns / secs / 1e6, 3) if secs else None)
    if at is None:
        log("%s: no marker (exit %s); last lines:" % (label, code))
        for ln in t.tail() + err.strip().splitlines()[-3:]:
            log("  | " + ln)
    else:
        log("%s: marker after %.2f s%s" % (label, at, ", %d instructions, %.2f MIPS"
                                           % (info["instructions"], info["mips"])
                                           if "mips" in info else ""))
    return info


def ensure_qemu():
    exe = shutil.which("qemu-system-i386")
    if exe:
        return exe
    log("installing qemu-system-x86 with apt-get (for qemu-system-i386)")
    sudo = [] if os.geteuid() == 0 else (["sudo"] if shutil.which("sudo") else [])
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, capture_output=True)
    p = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                               "qemu-system-x86"], env=env, capture_output=True, text=True)
    exe = shutil.which("qemu-system-i386")
    if exe is None:
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        raise RuntimeError("cannot install qemu-system-x86: %s"
                           % (lines[-1] if lines else "apt-get failed"))
    return exe


def run_qemu(exe, im, append, timeout):
    cmdline = linux.DEFAULT_APPEND + " " + append
    argv = [exe, "-accel", "tcg", "-m", str(MEMORY_MB), "-kernel", im.bzimage,
            "-initrd", im.initramfs, "-append", cmdline, "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot"]
    log("qemu: %s" % " ".join(argv[1:]))
    t = Timed(argv)
    at = t.wait_marker(timeout)
    # poweroff -f without ACPI halts the CPU; QEMU stays up: end it
    t.proc.kill()
    t.finish(grace=10)
    if at is None:
        log("qemu: no marker within %s s; last lines:" % timeout)
        for ln in t.tail():
            log("  | " + ln)
    else:
        log("qemu: marker after %.2f s" % at)
    return {"seconds": at}


def ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernel-format", choices=("vmlinux", "bzimage"), default="bzimage",
                   help="what emu boots (QEMU always boots the bzImage); default bzimage")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds each boot may take (default 3600)")
    p.add_argument("--append", default="", help="more kernel arguments, for both")
    p.add_argument("--jit", choices=("on", "off"), default=None,
                   help="emu's binary translator (default: emu run's default)")
    p.add_argument("--no-qemu", action="store_true", help="only emu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    append = (args.append + " " + linux.BENCH_PARAM).strip()
    try:
        im = linux.fetch(log=log)
    except ImageError as e:
        log(str(e))
        return 1
    jit_option = emu_supports("--jit-cache")
    cache = tempfile.mkdtemp(prefix="emu-jit-cache-")
    try:
        cold = run_emu(im, args.kernel_format, append, cache, args.timeout, "emu cold",
                       jit_option, args.jit)
        warm = run_emu(im, args.kernel_format, append, cache, args.timeout, "emu warm",
                       jit_option, args.jit)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    qemu = {"seconds": None}
    if not args.no_qemu:
        try:
            qemu = run_qemu(ensure_qemu(), im, append, args.timeout)
        except (RuntimeError, OSError) as e:
            log("qemu: %s" % e)
    result = {
        "emu_cold_s": cold["seconds"], "emu_warm_s": warm["seconds"], "qemu_s": qemu["seconds"],
        "ratio_cold": ratio(cold["seconds"], qemu["seconds"]),
        "ratio_warm": ratio(warm["seconds"], qemu["seconds"]),
        "emu_kernel_format": args.kernel_format, "qemu_kernel_format": "bzimage",
        "kernel": im.kernel_package + " " + im.kernel_version,
        "emu_cold": cold, "emu_warm": warm, "jit_cache_option": jit_option,
        "jit": args.jit or "default",
    }
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        def fmt(v):
            return "%.2f s" % v if v is not None else "failed"
        print("Linux boot to the /init marker (%s)" % result["kernel"])
        print("  emu  (%s, cold code cache)  %s" % (args.kernel_format, fmt(cold["seconds"])))
        print("  emu  (%s, warm code cache)  %s" % (args.kernel_format, fmt(warm["seconds"])))
        print("  QEMU TCG (bzimage)            %s" % fmt(qemu["seconds"]))
        print("  ratio emu/QEMU: cold %s, warm %s" % (result["ratio_cold"], result["ratio_warm"]))
    ok = cold["seconds"] is not None and warm["seconds"] is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
