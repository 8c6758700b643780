"""Guest MIPS: emu's interpreter and emu's JIT (tier 1) next to Unicorn, on two loops.

    python benchmarks/cpu_mips.py            # small table
    python benchmarks/cpu_mips.py --json     # ONE JSON object on stdout

Workloads (both in the PROT32_PAGED layout of tests/layout.py: protected
mode, paging on, code fetched through the page tables):

  reg   loop: add eax, ebx / xor ebx, eax / dec ecx / jnz loop      4 insns/iter
  mem   loop: mov eax, [esi] / add eax, ebx / mov [edi], eax /
              add esi, 4 / add edi, 4 / and esi, MASK / and edi, MASK /
              dec ecx / jnz loop                                     9 insns/iter
        ESI walks 16 KiB of the data area (4 KiB pages mapped in reverse
        physical order), EDI walks 64 KiB of the 4 MiB PSE page.

Executed guest instructions are counted exactly: ECX = iterations, the loop
ends at the instruction after ``jnz`` and the run is checked to have ended
there with ECX = 0, so instructions = iterations x instructions/iteration
(for emu also checked against the instructions it says it retired).
MIPS = instructions / wall time of the run alone (setup excluded), best of
``--repeat`` runs.

Columns:

  unicorn  Unicorn 2 (QEMU's TCG inside), ``--iters`` iterations.  oracle.prepare
           writes the code and the state again before every run; translating
           the loop costs Unicorn microseconds either way.
  interp   emu's interpreter (tier 0), ``--interp-iters`` iterations.
  jit      emu with tier 1 attached (emu/translate/jit.py ``attach``) to the
           same kind of machine as the interpreter column (tests/emu_side.py's
           EmuSide), threshold ``JIT_THRESHOLD``, ``use_cache=False`` (nothing
           comes from the disk cache: this process compiles every block
           itself), ``--jit-iters`` iterations (default: the same as Unicorn).
           Compilation is NOT in the timed runs: one untimed warm-up run
           compiles the loop (LLVM takes milliseconds, as long as a whole
           timed run), then each timed run starts from the reset machine -
           interpreter block cache and native dispatch flushed - so it decodes
           the loop again, interprets it ``JIT_THRESHOLD`` times and
           re-installs the native code compiled in the warm-up (found by its
           code hash, no LLVM call; the run fails if anything is compiled in
           it).  So the figure is steady-state speed, like Unicorn's; compile
           cost is measured separately (below).  Unicorn's timed runs
           alternate with the JIT's (one before each), so both columns see the
           same host load.  The fraction of the instructions that ran natively
           is reported, and the JIT's final registers, EFLAGS and whole RAM
           are checked equal to the interpreter's after the same loop
           (``JIT_CHECK_ITERS`` iterations).

Compile latency: the median of JIT.compile_ms (per-block compile time,
milliseconds) over EVERY block compiled when the demonstration kernel
(guests/demo_kernel.asm, emu/guests/demo_kernel.py) boots on the PC (our
BIOS, Multiboot loader, devices; emu.machine.Machine) and runs to its end with
the default threshold (hot blocks compiled in batches, several per module,
as ``emu run`` does), in-process, and no code cache, plus the loop blocks compiled in the warm-up
runs above.  The number of blocks the median is over is printed and given as
``compile_blocks``.  What a per-block time covers is jit.py's to say: it is
LLVM's thread CPU time (parse, passes, code generation) for a module, divided
by the blocks in the module, so a loaded host does not inflate it.  The
same blocks' CPU time including the engine load is given too
(``compile_cpu_ms_per_block_median``, see
CompileCPUClock) with the host's load average (``host_load_1min``).

JSON keys: interp_mips_reg, unicorn_mips_reg, interp_mips_mem,
unicorn_mips_mem, ratio_reg, ratio_mem (ratio = interp / unicorn, i.e. the
fraction of Unicorn's speed; null while the interpreter column is missing),
jit_mips_reg, jit_mips_mem, jit_ratio_reg, jit_ratio_mem (JIT / Unicorn),
jit_native_fraction_reg, jit_native_fraction_mem, compile_ms_per_block_median,
compile_blocks (with compile_blocks_demo_kernel + compile_blocks_loops),
compile_ms_per_block_p90, compile_ms_total, compile_cpu_ms_per_block_median,
host_load_1min, plus the
iteration counts, jit_threshold and notes.

The interpreter column is produced by ``run_emu`` below, the JIT column by
``run_jit``, the compile-latency sample by ``demo_kernel_compile_ms``.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.layout import PROT32_PAGED  # noqa: E402

LAYOUT = PROT32_PAGED


def _workloads(L):
    data, pse = L.data_lin[0], L.pse_lin
    assert data % 0x4000 == 0 and pse % 0x10000 == 0
    mem_asm = ("loop: mov eax, [esi]; add eax, ebx; mov [edi], eax; add esi, 4; add edi, 4; "
               "and esi, 0x%x; and edi, 0x%x; dec ecx; jnz loop" % (data | 0x3FFF, pse | 0xFFFF))
    return {
        "reg": dict(asm="loop: add eax, ebx; xor ebx, eax; dec ecx; jnz loop", per_iter=4,
                    regs=lambda n: dict(ecx=n, eax=1, ebx=3)),
        "mem": dict(asm=mem_asm, per_iter=9,
                    regs=lambda n: dict(ecx=n, esi=data, edi=pse, ebx=1)),
    }


# ---------------------------------------------------------------------------
# Unicorn column
# ---------------------------------------------------------------------------
class UnicornLoop:
    """Unicorn set up to run ``asm`` to its end; ``once()`` times one run (and
    checks ECX == 0 at the end), ``best`` is the lowest time so far."""

    def __init__(self, L, asm, regs):
        from tests.oracle import UnicornOracle
        self.o = UnicornOracle(L, capture_writes=False)      # no Python callback per store
        self.asm, self.regs = asm, regs
        self.times = []

    def once(self):
        from unicorn.x86_const import UC_X86_REG_EIP, UC_X86_REG_ECX
        o = self.o
        begin, end, _code = o.prepare(self.asm, self.regs)
        t0 = time.perf_counter()
        o.uc.emu_start(begin, end)
        dt = time.perf_counter() - t0
        eip, ecx = o.uc.reg_read(UC_X86_REG_EIP), o.uc.reg_read(UC_X86_REG_ECX)
        if eip != end or ecx != 0 or o._exc is not None:
            raise RuntimeError("unicorn run did not finish the loop: eip=%x ecx=%x exc=%r"
                               % (eip, ecx, o._exc))
        self.times.append(dt)
        return dt

    @property
    def best(self):
        return min(self.times)


def run_unicorn(L, asm, regs, repeat):
    """Best wall time (s) of running ``asm`` to its end; checks ECX == 0 there."""
    u = UnicornLoop(L, asm, regs)
    for _ in range(repeat):
        u.once()
    return u.best


# ---------------------------------------------------------------------------
# Interpreter column
# ---------------------------------------------------------------------------
def run_emu(L, asm, regs, repeat, insns=None):
    """Best wall time (s) of emu's interpreter running ``asm`` to its end.

    The machine is the layout's, built by tests/emu_side.py (the emulator side
    of the differential tests, through emu.api); the run is checked to end at
    the instruction after the loop with ECX == 0 and exactly ``insns``
    instructions retired.  Returns (seconds, None), or (None, one-line note).
    """
    try:
        import emu.api  # noqa: F401
    except Exception as e:                       # not written yet, or broken
        return None, "emu.api cannot be imported (%s: %s); interpreter columns left null" % (
            type(e).__name__, e)
    try:
        from tests.emu_side import EmuSide
        from tests.oracle import assemble
        from emu.cpu import state as S
        code = assemble(asm, 32, addr=L.code_lin)
        end = L.code_lin + len(code)
        side = EmuSide(L)
        best = None
        for _ in range(repeat):
            side.reset(regs, code=code)
            t0 = time.perf_counter()
            st = side.emu.run(until=end)
            dt = time.perf_counter() - t0
            R = side.cpu.R
            if R[S.EIP] != end or R[S.ECX] != 0:
                return None, "emu did not finish the loop (%s, eip=%#x ecx=%#x)" % (
                    st, R[S.EIP], R[S.ECX])
            if insns is not None and getattr(st, "instructions", insns) != insns:
                return None, "emu retired %d instructions, expected %d" % (st.instructions, insns)
            best = dt if best is None else min(best, dt)
        return best, None
    except Exception as e:
        return None, "run_emu() failed (%s: %s); interpreter columns left null" % (
            type(e).__name__, e)


# ---------------------------------------------------------------------------
# JIT column
# ---------------------------------------------------------------------------
JIT_THRESHOLD = 2           # interpreted runs of a block before tier 1 compiles it
JIT_CHECK_ITERS = 20_000    # iterations of the JIT-vs-interpreter state comparison


def _jit_note(what, e):
    return "%s failed (%s: %s); JIT figures left null" % (what, type(e).__name__, e)


def _final_state(side):
    from tests.layout import GPRS
    e = side.emu
    regs = {n: e.reg_read(n) for n in GPRS + ("eip", "eflags")}
    return regs, bytes(side.cpu.phys.ram)


def run_jit(L, asm, regs, repeat, insns, check_regs=None, before_each=None):
    """Best wall time (s) of emu with tier 1 running ``asm`` to its end.

    Returns (seconds, lowest native fraction of a timed run, the JIT, None),
    or (None, None, JIT or None, one-line note).  See the module docstring:
    an untimed warm-up run compiles, the timed runs must not compile.
    ``check_regs``: registers of a shorter run whose final state (GPRs, EIP,
    EFLAGS, RAM) is compared with the interpreter's.  ``before_each`` is
    called before every timed run (measure() runs Unicorn there, so that the
    two columns alternate and see the same host conditions).
    """
    try:
        from emu.translate.jit import attach
    except Exception as e:
        return None, None, None, "emu.translate.jit cannot be imported (%s: %s); JIT " \
                                 "columns left null" % (type(e).__name__, e)
    jit = None
    try:
        from tests.emu_side import EmuSide
        from tests.oracle import assemble
        from emu.cpu import state as S
        code = assemble(asm, 32, addr=L.code_lin)
        end = L.code_lin + len(code)
        side = EmuSide(L)
        if side.cpu.interp.tier1 is not None:
            return None, None, None, "a JIT was already attached to the CPU (EMU_TEST_JIT?); " \
                                     "JIT columns left null"
        jit = attach(side.cpu, threshold=JIT_THRESHOLD, use_cache=False)
        c = jit.counters

        def one(r, expect):
            side.reset(r, code=code)
            n0, b0 = c["native_instructions"], c["blocks_compiled"]
            t0 = time.perf_counter()
            st = side.emu.run(until=end)
            dt = time.perf_counter() - t0
            R = side.cpu.R
            if R[S.EIP] != end or R[S.ECX] != 0:
                raise RuntimeError("the JIT did not finish the loop (%s, eip=%#x ecx=%#x)"
                                   % (st, R[S.EIP], R[S.ECX]))
            if expect is not None and st.instructions != expect:
                raise RuntimeError("the JIT retired %d instructions, expected %d"
                                   % (st.instructions, expect))
            return dt, (c["native_instructions"] - n0) / st.instructions, \
                c["blocks_compiled"] - b0

        one(regs, insns)                         # warm-up: compiles the loop
        if not c["blocks_compiled"]:
            return None, None, jit, "the JIT compiled nothing in the warm-up run; " \
                                    "JIT columns left null"
        best = frac = None
        for _ in range(repeat):
            if before_each is not None:
                before_each()
            dt, f, compiled = one(regs, insns)
            if compiled:
                return None, None, jit, "the JIT compiled %d block(s) in a timed run" % compiled
            best = dt if best is None else min(best, dt)
            frac = f if frac is None else min(frac, f)
        if check_regs is not None:
            one(check_regs, None)
            got = _final_state(side)
            ref = EmuSide(L)
            if ref.cpu.interp.tier1 is None:
                ref.reset(check_regs, code=code)
                ref.emu.run(until=end)
                want = _final_state(ref)
                if got[0] != want[0]:
                    diff = {k: "%#x != %#x" % (got[0][k], want[0][k])
                            for k in got[0] if got[0][k] != want[0][k]}
                    return None, None, jit, "JIT and interpreter disagree after the loop: %s" % diff
                if got[1] != want[1]:
                    first = next(i for i in range(len(got[1])) if got[1][i] != want[1][i])
                    return None, None, jit, "JIT and interpreter RAM differ after the loop, " \
                                            "first at physical %#x" % first
        return best, frac, jit, None
    except Exception as e:
        return None, None, jit, _jit_note("run_jit()", e)


def demo_kernel_compile_ms():
    """Per-block compile times (ms) of the demonstration kernel booted on the PC
    and run to its end with the JIT as `emu run` configures it (default
    threshold: hot blocks are compiled in batches with the blocks warming up),
    compiling in-process so that every compile is measured, and no code cache.

    Returns (list of ms, stats dict, None) or ([], None, one-line note)."""
    try:
        from emu.guests import demo_kernel
        from emu.machine import Machine, MachineConfig, EXIT_OK
        from emu.frontend.serial_backends import BufferBackend
        kernel = demo_kernel.build()
        serial = BufferBackend()
        m = Machine(MachineConfig(kernel=kernel, jit=True, jit_cache=False,
                                  jit_background=False),
                    serial_backend=serial)
        if m.jit is None:
            return [], None, "the machine has no JIT; compile latency from the loops only"
        r = m.run(max_instructions=50_000_000)
        if r.code != EXIT_OK or demo_kernel.GOODBYE not in serial.text():
            return [], None, "the demonstration kernel did not reach its end under the JIT " \
                             "(exit %d: %s); compile latency from the loops only" % (r.code, r.reason)
        return list(m.jit.compile_ms), m.jit.stats(), None
    except Exception as e:
        return [], None, "the demonstration kernel run failed (%s: %s); compile latency from " \
                         "the loops only" % (type(e).__name__, e)


class CompileCPUClock:
    """Thread CPU time of the LLVM work per compiled block, next to JIT.compile_ms
    (wall time).  On a shared, loaded host a 2 ms compile often waits for a
    core as long again; CPU time does not count that wait.  While active it
    wraps llvm_engine.compile_object and Engine.load: a module's CPU time is
    its compile plus the load that follows it, shared out over the blocks the
    load names (its "b_" symbols), the way jit.py shares out wall time."""

    def __init__(self):
        self.per_block = []

    def __enter__(self):
        from emu.translate import llvm_engine as le
        self._le = le
        self._compile, self._load = le.compile_object, le.Engine.load
        pending = []
        orig_compile, orig_load, per_block = self._compile, self._load, self.per_block

        def compile_object(*a, **k):
            c0 = time.thread_time()
            obj = orig_compile(*a, **k)
            pending.append(time.thread_time() - c0)
            return obj

        def load(engine, obj, names):
            c0 = time.thread_time()
            r = orig_load(engine, obj, names)
            dt = time.thread_time() - c0
            if pending:                      # a fresh compile, not a code-cache load
                n = max(1, sum(1 for x in names if x.startswith("b_")))
                per_block.extend([(pending.pop() + dt) * 1e3 / n] * n)
            return r
        le.compile_object = compile_object
        le.Engine.load = load
        return self

    def __exit__(self, *exc):
        self._le.compile_object = self._compile
        self._le.Engine.load = self._load
        return False


def _percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# ---------------------------------------------------------------------------
def measure(args):
    L = LAYOUT
    jit_iters = args.iters if args.jit_iters is None else args.jit_iters
    out = {"interp_mips_reg": None, "unicorn_mips_reg": None,
           "interp_mips_mem": None, "unicorn_mips_mem": None,
           "ratio_reg": None, "ratio_mem": None,
           "jit_mips_reg": None, "jit_mips_mem": None,
           "jit_ratio_reg": None, "jit_ratio_mem": None,
           "jit_native_fraction_reg": None, "jit_native_fraction_mem": None,
           "compile_ms_per_block_median": None, "compile_blocks": 0,
           "compile_blocks_demo_kernel": 0, "compile_blocks_loops": 0,
           "compile_ms_per_block_p90": None, "compile_ms_total": None,
           "compile_cpu_ms_per_block_median": None, "host_load_1min": None,
           "unicorn_iterations": args.iters, "interp_iterations": args.interp_iters,
           "jit_iterations": None if args.no_jit else jit_iters,
           "jit_threshold": None if args.no_jit else JIT_THRESHOLD,
           "notes": []}

    def note(text):
        if text and text not in out["notes"]:
            out["notes"].append(text)

    loop_ms = []
    clock = CompileCPUClock()
    for name, w in _workloads(L).items():
        n_uc, n_emu = args.iters, args.interp_iters
        uc = UnicornLoop(L, w["asm"], w["regs"](n_uc))
        jit_result = None
        if not args.no_jit:
            # Unicorn and JIT runs alternate (Unicorn before each timed JIT run)
            with clock:
                jit_result = run_jit(L, w["asm"], w["regs"](jit_iters), args.repeat,
                                     jit_iters * w["per_iter"],
                                     check_regs=w["regs"](min(jit_iters, JIT_CHECK_ITERS)),
                                     before_each=uc.once)
        while len(uc.times) < args.repeat:
            uc.once()
        uc_mips = n_uc * w["per_iter"] / uc.best / 1e6
        out["unicorn_mips_%s" % name] = round(uc_mips, 3)
        if not args.no_interp:
            dt, msg = run_emu(L, w["asm"], w["regs"](n_emu), args.repeat,
                              insns=n_emu * w["per_iter"])
            if dt is not None:
                mips = n_emu * w["per_iter"] / dt / 1e6
                out["interp_mips_%s" % name] = round(mips, 4)
                out["ratio_%s" % name] = round(mips / uc_mips, 6)
            note(msg)
        if jit_result is not None:
            dt, frac, jit, msg = jit_result
            if jit is not None:
                loop_ms += list(jit.compile_ms)
            if dt is not None:
                mips = jit_iters * w["per_iter"] / dt / 1e6
                out["jit_mips_%s" % name] = round(mips, 3)
                out["jit_ratio_%s" % name] = round(mips / uc_mips, 4)
                out["jit_native_fraction_%s" % name] = round(frac, 6)
            note(msg)
    if not args.no_jit:
        with clock:
            demo_ms, _stats, msg = demo_kernel_compile_ms()
        note(msg)
        sample = demo_ms + loop_ms
        out["compile_blocks_demo_kernel"] = len(demo_ms)
        out["compile_blocks_loops"] = len(loop_ms)
        out["compile_blocks"] = len(sample)
        if sample:
            out["compile_ms_per_block_median"] = round(_median(sample), 4)
            out["compile_ms_per_block_p90"] = round(_percentile(sample, 0.9), 4)
            out["compile_ms_total"] = round(sum(sample), 3)
        if clock.per_block:
            out["compile_cpu_ms_per_block_median"] = round(_median(clock.per_block), 4)
        if hasattr(os, "getloadavg"):
            out["host_load_1min"] = round(os.getloadavg()[0], 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--iters", type=int, default=2_000_000,
                    help="loop iterations for Unicorn (default 2e6)")
    ap.add_argument("--interp-iters", type=int, default=100_000,
                    help="loop iterations for the interpreter (default 1e5)")
    ap.add_argument("--jit-iters", type=int, default=None,
                    help="loop iterations for the JIT (default: the same as --iters)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    ap.add_argument("--no-interp", action="store_true", help="no interpreter column")
    ap.add_argument("--no-jit", action="store_true",
                    help="no JIT column and no compile latency")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.interp_iters < 1 or (args.jit_iters is not None
                                                    and args.jit_iters < 1):
        ap.error("iteration counts must be >= 1")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    out = measure(args)
    if args.json:
        for note in out["notes"]:
            print("note: " + note, file=sys.stderr)
        print(json.dumps(out, sort_keys=True))
        return 0
    for note in out["notes"]:
        print("note: " + note)

    def f(v, fmt):
        return "-" if v is None else fmt % v
    print("%-5s %9s %13s %12s %15s %11s %12s" % (
        "loop", "insns/it", "unicorn MIPS", "interp MIPS", "interp/unicorn", "jit MIPS",
        "jit/unicorn"))
    for name, w in _workloads(LAYOUT).items():
        print("%-5s %9d %13s %12s %15s %11s %12s" % (
            name, w["per_iter"], f(out["unicorn_mips_" + name], "%.1f"),
            f(out["interp_mips_" + name], "%.3f"), f(out["ratio_" + name], "%.5f"),
            f(out["jit_mips_" + name], "%.1f"), f(out["jit_ratio_" + name], "%.2f")))
    if not args.no_jit:
        print("iterations: unicorn %d, interp %d, jit %d (threshold %d; compiled in an untimed "
              "warm-up run)" % (args.iters, args.interp_iters, out["jit_iterations"],
                                JIT_THRESHOLD))
        print("compile latency: median %s ms per block over %d blocks (%d of the demonstration "
              "kernel at jit_threshold=0, %d loop blocks); p90 %s ms, total %s ms" % (
                  f(out["compile_ms_per_block_median"], "%.3f"), out["compile_blocks"],
                  out["compile_blocks_demo_kernel"], out["compile_blocks_loops"],
                  f(out["compile_ms_per_block_p90"], "%.3f"), f(out["compile_ms_total"], "%.1f")))
        print("compile latency in thread CPU time (no waiting for a core): median %s ms per block;"
              " host load average %s on %s cores" % (
                  f(out["compile_cpu_ms_per_block_median"], "%.3f"),
                  f(out["host_load_1min"], "%.2f"), os.cpu_count()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
