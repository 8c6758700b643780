"""Boot-to-marker time of the demonstration kernel: emu with a cold and a warm
JIT code cache, emu without the JIT, and QEMU TCG, in the same run.

    python benchmarks/jit_boot.py [--repeat N] [--no-qemu] [--json]

The guest is the demonstration kernel (guests/demo_kernel.asm, built by
emu/guests/demo_kernel.py; a Multiboot v1 kernel).  The marker is the last
line it prints on COM1, ``demo_kernel.GOODBYE`` ("goodbye: halting with
interrupts disabled"): it comes after the banner, the memory map, paging,
three seconds of guest time of 100 Hz timer ticks and the page-fault demo.

What is timed, the same for every row: wall-clock time from starting the
process to the marker appearing on its serial console (COM1 on stdout, read
through a pipe).  emu runs as a subprocess, ``python -m emu.cli run --kernel
<demo> --serial stdio --display none --stats`` (so Python's start-up, imports
and building the machine are in the figure, as QEMU's start-up is in
QEMU's), in three ways:

  cold    --jit on, EMU_JIT_CACHE_DIR = a fresh empty temporary directory:
          every hot block is compiled (default threshold) and stored;
  warm    --jit on, the same directory again: blocks come from the cache;
  interp  --jit off (the interpreter alone), for reference.

emu runs in virtual time, WITHOUT --realtime (``emu boot demo`` adds
--realtime so that the tick line can be watched; MachineConfig's default is
realtime=False): the kernel's three seconds of mostly idle HLT cost no wall
time, the clock jumps to the next timer deadline.  QEMU's equivalent is
``-icount shift=3,sleep=off`` (a virtual clock driven by instructions, 8 ns
each, that jumps to the next timer deadline when the CPU idles instead of
sleeping): that is the peer, ``qemu_s``.  QEMU's default, a clock paced to
wall time, spends >= 3 s waiting for the ticks whatever its speed; it is
printed for reference as ``qemu_realtime_s`` and not used in the ratios.
QEMU is ``qemu-system-i386 -accel tcg -m 128 -kernel <demo> -serial stdio
-display none -monitor none -no-reboot`` (its own Multiboot loader and
SeaBIOS), from Debian's qemu-system-x86, installed with apt-get when missing
(benchmarks/peers.py); it does not exit when the kernel halts, so it is
killed once the marker is seen.  Without QEMU the QEMU figures are null and
a note says why.

Each figure is the best (lowest) of ``--repeat`` runs; every cold run gets
its own empty cache directory and is followed by its warm run.

With --json: ONE JSON object with emu_cold_s, emu_warm_s, emu_interp_s,
qemu_s, ratio_cold, ratio_warm (emu / QEMU: how many times longer emu takes),
blocks_compiled_cold, cache_hits_warm (as `emu run --stats` reports them:
jit.py counts a code-cache hit per cached module file, which may hold several
blocks), plus ratio_interp, blocks_compiled_warm, blocks_from_cache_warm,
emu_run_*_s (the guest run alone as emu reports it, without start-up),
emu_*_cpu_s and qemu_cpu_s (user + system CPU time of the whole process: on
a loaded host the wall times include waiting for a core, these do not),
host_load_1min, qemu_realtime_s, the marker and notes.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from emu.guests import demo_kernel  # noqa: E402
from benchmarks.peers import QemuMissing, ensure_qemu, qemu_version  # noqa: E402

MARKER = demo_kernel.GOODBYE
MEMORY_MB = 128
QEMU_ICOUNT = "shift=3,sleep=off"


def log(text):
    print("jit_boot: %s" % text, file=sys.stderr, flush=True)


class Timed:
    """A process started now whose stdout is watched for MARKER."""

    def __init__(self, argv, env=None):
        self.marker = MARKER.encode()
        self.output = bytearray()
        self.marker_at = None
        self.seen = threading.Event()
        self.stderr = b""
        self.cpu_s = None
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=REPO)
        self._out = threading.Thread(target=self._read, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read(self):
        n = len(self.marker)
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                break
            self.output += chunk
            if self.marker_at is None and self.marker in self.output[-len(chunk) - n:]:
                self.marker_at = time.monotonic() - self.t0
                self.seen.set()
        self.seen.set()

    def _read_err(self):
        self.stderr = self.proc.stderr.read()

    def wait_marker(self, timeout):
        self.seen.wait(timeout)
        return self.marker_at

    def finish(self, grace, kill=False):
        """Wait for (or end) the process; sets ``cpu_s``, the CPU time (user +
        system) it used in its whole life.  Processes run one at a time, so
        the growth of RUSAGE_CHILDREN across the wait is this one's."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if kill and self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self._out.join(5)
        self._err.join(5)
        return self.proc.returncode

    def tail(self, n=6):
        text = bytes(self.output + b"\n" + self.stderr).decode("utf-8", "replace")
        return [ln for ln in text.replace("\r", "").split("\n") if ln.strip()][-n:]


def _int(pattern, text):
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def run_emu(kernel, label, jit, cache_dir, timeout):
    """One emu run; a dict with seconds (to the marker, or None) and what
    --stats said."""
    argv = [sys.executable, "-m", "emu.cli", "run", "--kernel", kernel, "--memory",
            str(MEMORY_MB), "--serial", "stdio", "--display", "none", "--jit",
            "on" if jit else "off", "--timeout", str(timeout), "--stats"]
    env = dict(os.environ)
    env.pop("EMU_TEST_JIT", None)
    if cache_dir is not None:
        env["EMU_JIT_CACHE_DIR"] = cache_dir
    t = Timed(argv, env=env)
    at = t.wait_marker(timeout + 30)
    code = t.finish(grace=60 if at is not None else 5, kill=at is None)
    err = t.stderr.decode("utf-8", "replace")
    info = {"seconds": at, "exit_code": code, "cpu_s": t.cpu_s,
            "instructions": _int(r"\(exit \d+, (\d+) instructions in", err),
            "run_seconds": None,
            "blocks_compiled": _int(r"jit: (\d+) blocks compiled", err),
            "blocks_from_cache": _int(r"\), (\d+) from the code cache", err),
            "cache_hits": _int(r"from the code cache \((\d+) object files", err),
            "native_instructions": _int(r"jit: (\d+) native instructions", err)}
    m = re.search(r"instructions in ([0-9.]+) s\)", err)
    if m:
        info["run_seconds"] = float(m.group(1))
    if at is None or code != 0:
        log("%s: %s (exit %s); last lines:" % (
            label, "no marker" if at is None else "marker, but a failing exit", code))
        for ln in t.tail():
            log("  | " + ln)
    return info


def run_qemu(exe, kernel, icount, timeout):
    argv = [exe, "-accel", "tcg"]
    if icount:
        argv += ["-icount", QEMU_ICOUNT]
    argv += ["-m", str(MEMORY_MB), "-kernel", kernel, "-serial", "stdio", "-display", "none",
             "-monitor", "none", "-no-reboot"]
    t = Timed(argv)
    at = t.wait_marker(timeout)
    t.finish(grace=10, kill=True)          # the kernel halts; QEMU stays up
    if at is None:
        log("qemu%s: no marker within %s s; last lines:" % (" -icount" if icount else "", timeout))
        for ln in t.tail():
            log("  | " + ln)
    return at, t.cpu_s


def _best(xs):
    xs = [x for x in xs if x is not None]
    return min(xs) if xs else None


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def _r(x, n=3):
    return None if x is None else round(x, n)


def measure(args):
    notes = []
    kernel = demo_kernel.build()
    cold, warm, interp = [], [], []
    for i in range(args.repeat):
        d = tempfile.mkdtemp(prefix="emu-jit-cache-")
        try:
            c = run_emu(kernel, "cold", True, d, args.timeout)
            w = run_emu(kernel, "warm", True, d, args.timeout)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        cold.append(c)
        warm.append(w)
        interp.append(run_emu(kernel, "interp", False, None, args.timeout))
        log("run %d: cold %s s, warm %s s, interp %s s" % (
            i + 1, _r(c["seconds"], 2), _r(w["seconds"], 2), _r(interp[-1]["seconds"], 2)))
    for label, runs in (("cold", cold), ("warm", warm), ("interp", interp)):
        bad = [r["exit_code"] for r in runs if r["exit_code"] != 0]
        if bad:
            notes.append("emu %s runs exited with %s" % (label, sorted(set(bad))))
    for w in warm:
        if w["blocks_compiled"]:
            notes.append("a warm run compiled %d blocks (cache misses)" % w["blocks_compiled"])
            break

    qemu_s = qemu_rt = qemu_cpu = version = None
    if not args.no_qemu:
        try:
            exe = ensure_qemu(log=log)
            version = qemu_version(exe)
            runs = [run_qemu(exe, kernel, True, args.timeout) for _ in range(args.repeat)]
            qemu_s = _best(r[0] for r in runs)
            qemu_cpu = _best(r[1] for r in runs if r[0] is not None)
            if not args.no_qemu_realtime:
                qemu_rt = _best([run_qemu(exe, kernel, False, args.timeout)[0]
                                 for _ in range(args.repeat)])
        except QemuMissing as e:
            notes.append("QEMU figures are null: %s" % e)
        if qemu_s is None and version is not None:
            notes.append("QEMU did not print the marker")

    def pick(runs, key):
        """``key`` of the run with the best time (the runs agree on counts)."""
        ok = [r for r in runs if r["seconds"] is not None]
        return min(ok, key=lambda r: r["seconds"])[key] if ok else None

    ec, ew, ei = (_best(r["seconds"] for r in runs) for runs in (cold, warm, interp))
    return {
        "emu_cold_s": _r(ec), "emu_warm_s": _r(ew), "emu_interp_s": _r(ei),
        "qemu_s": _r(qemu_s), "ratio_cold": _ratio(ec, qemu_s), "ratio_warm": _ratio(ew, qemu_s),
        "ratio_interp": _ratio(ei, qemu_s),
        "blocks_compiled_cold": pick(cold, "blocks_compiled"),
        "cache_hits_warm": pick(warm, "cache_hits"),
        "blocks_compiled_warm": pick(warm, "blocks_compiled"),
        "blocks_from_cache_warm": pick(warm, "blocks_from_cache"),
        "emu_run_cold_s": _best(r["run_seconds"] for r in cold),
        "emu_run_warm_s": _best(r["run_seconds"] for r in warm),
        "emu_run_interp_s": _best(r["run_seconds"] for r in interp),
        "emu_cold_cpu_s": _r(_best(r["cpu_s"] for r in cold)),
        "emu_warm_cpu_s": _r(_best(r["cpu_s"] for r in warm)),
        "emu_interp_cpu_s": _r(_best(r["cpu_s"] for r in interp)),
        "qemu_cpu_s": _r(qemu_cpu),
        "host_load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "instructions": pick(interp, "instructions") or pick(cold, "instructions"),
        "native_instructions_cold": pick(cold, "native_instructions"),
        "qemu_realtime_s": _r(qemu_rt), "qemu_icount": QEMU_ICOUNT, "qemu_version": version,
        "marker": MARKER, "repeat": args.repeat, "memory_mb": MEMORY_MB,
        "emu_how": "subprocess: python -m emu.cli run --kernel <demo> (virtual time, "
                   "no --realtime)",
        "notes": notes,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs of each (default 3)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per run (default 120)")
    ap.add_argument("--no-qemu", action="store_true", help="emu only")
    ap.add_argument("--no-qemu-realtime", action="store_true",
                    help="skip the reference run of QEMU with its clock paced to wall time")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    try:
        out = measure(args)
    except demo_kernel.BuildError as e:
        print("jit_boot: %s" % e, file=sys.stderr)
        return 1
    if args.json:
        for note in out["notes"]:
            log("note: " + note)
        print(json.dumps(out, sort_keys=True))
        return 0
    for note in out["notes"]:
        print("note: " + note)

    def f(v, fmt="%.2f"):
        return "-" if v is None else fmt % v
    print("demonstration kernel, process start to %r on COM1, best of %d" % (MARKER, args.repeat))
    print("%-44s %8s %9s %10s %14s" % ("", "seconds", "emu/qemu", "process CPU",
                                         "guest run (s)"))
    for label, k in (("emu, JIT, empty code cache (cold)", "cold"),
                     ("emu, JIT, filled code cache (warm)", "warm"),
                     ("emu, interpreter (--jit off)", "interp")):
        print("%-44s %8s %9s %10s %14s" % (label, f(out["emu_%s_s" % k]), f(out["ratio_" + k]),
                                           f(out["emu_%s_cpu_s" % k]),
                                           f(out["emu_run_%s_s" % k])))
    print("%-44s %8s %9s %10s" % ("QEMU TCG, -icount %s" % QEMU_ICOUNT, f(out["qemu_s"]), "",
                                  f(out["qemu_cpu_s"])))
    if not args.no_qemu and not args.no_qemu_realtime:
        print("%-44s %8s   (reference: waits 3 s of ticks)" % (
            "QEMU TCG, default clock (paced to wall time)", f(out["qemu_realtime_s"])))
    print("jit: cold run compiled %s blocks; warm run: %s code-cache hits (the JIT counts one per "
          "cached module file, which holds one or more blocks), %s blocks compiled" % (
              f(out["blocks_compiled_cold"], "%d"), f(out["cache_hits_warm"], "%d"),
              f(out["blocks_compiled_warm"], "%d")))
    print("guest: %s instructions; host load average %s on %s cores (seconds are wall time, "
          "process CPU is user + system time of the whole process)" % (
              f(out["instructions"], "%d"), f(out["host_load_1min"]), os.cpu_count()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
