"""Guest MIPS: emu's interpreter next to Unicorn, on two loops.

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
there with ECX = 0, so instructions = iterations x instructions/iteration.
MIPS = instructions / wall time of the run alone (setup excluded), best of
``--repeat`` runs.

JSON keys: interp_mips_reg, unicorn_mips_reg, interp_mips_mem,
unicorn_mips_mem, ratio_reg, ratio_mem (ratio = interp / unicorn, i.e. the
fraction of Unicorn's speed; null while the interpreter column is missing),
plus the iteration counts and notes.

The interpreter column is produced by ``run_emu`` below: the one place to wire
to the emulator.
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
def run_unicorn(L, asm, regs, repeat):
    """Best wall time (s) of running ``asm`` to its end; checks ECX == 0 there."""
    from tests.oracle import UnicornOracle
    o = UnicornOracle(L, capture_writes=False)      # no Python callback per store
    best = None
    for _ in range(repeat):
        begin, end, _code = o.prepare(asm, regs)
        t0 = time.perf_counter()
        o.uc.emu_start(begin, end)
        dt = time.perf_counter() - t0
        from unicorn.x86_const import UC_X86_REG_EIP, UC_X86_REG_ECX
        eip, ecx = o.uc.reg_read(UC_X86_REG_EIP), o.uc.reg_read(UC_X86_REG_ECX)
        if eip != end or ecx != 0 or o._exc is not None:
            raise RuntimeError("unicorn run did not finish the loop: eip=%x ecx=%x exc=%r"
                               % (eip, ecx, o._exc))
        best = dt if best is None else min(best, dt)
    return best


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
def measure(args):
    L = LAYOUT
    out = {"interp_mips_reg": None, "unicorn_mips_reg": None,
           "interp_mips_mem": None, "unicorn_mips_mem": None,
           "ratio_reg": None, "ratio_mem": None,
           "unicorn_iterations": args.iters, "interp_iterations": args.interp_iters,
           "notes": []}
    for name, w in _workloads(L).items():
        n_uc, n_emu = args.iters, args.interp_iters
        dt = run_unicorn(L, w["asm"], w["regs"](n_uc), args.repeat)
        uc_mips = n_uc * w["per_iter"] / dt / 1e6
        out["unicorn_mips_%s" % name] = round(uc_mips, 3)
        if not args.no_interp:
            dt, note = run_emu(L, w["asm"], w["regs"](n_emu), args.repeat,
                               insns=n_emu * w["per_iter"])
            if dt is not None:
                mips = n_emu * w["per_iter"] / dt / 1e6
                out["interp_mips_%s" % name] = round(mips, 4)
                out["ratio_%s" % name] = round(mips / uc_mips, 6)
            elif note and note not in out["notes"]:
                out["notes"].append(note)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--iters", type=int, default=2_000_000,
                    help="loop iterations for Unicorn (default 2e6)")
    ap.add_argument("--interp-iters", type=int, default=100_000,
                    help="loop iterations for the interpreter (default 1e5)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    ap.add_argument("--no-interp", action="store_true", help="Unicorn column only")
    args = ap.parse_args(argv)
    if args.iters < 1 or args.interp_iters < 1:
        ap.error("iteration counts must be >= 1")
    out = measure(args)
    if args.json:
        for note in out["notes"]:
            print("note: " + note, file=sys.stderr)
        print(json.dumps(out, sort_keys=True))
        return 0
    for note in out["notes"]:
        print("note: " + note)
    print("%-5s %10s %14s %14s %16s" % ("loop", "insns/it", "unicorn MIPS", "interp MIPS",
                                          "interp/unicorn"))
    for name, w in _workloads(LAYOUT).items():
        def f(v, fmt):
            return "-" if v is None else fmt % v
        print("%-5s %10d %14s %14s %16s" % (
            name, w["per_iter"], f(out["unicorn_mips_" + name], "%.1f"),
            f(out["interp_mips_" + name], "%.3f"), f(out["ratio_" + name], "%.5f")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
