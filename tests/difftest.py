"""Run the same code in Unicorn and in emu from the same state; compare everything.

    from tests.difftest import check_same
    check_same(PROT32_PAGED, "add eax, ebx", regs=dict(eax=1, ebx=2),
               flags_mask=undefined_flags("add"))

Compared: the eight GPRs, EIP, EFLAGS (bits in ``flags_mask`` excluded: only
flags the Intel SDM calls undefined, from tests/flagmasks.py), segment
selectors, the exception (vector, error code, trap), CR2 after a #PF, and all
of guest RAM (except, after a delivered software interrupt, the frame emu
pushed - Unicorn does not deliver interrupts).
Returns (unicorn_result, emu_result); raises AssertionError listing every
difference, with the disassembly of the code.
"""
import numpy as np

from tests.layout import GPRS, SEGS
from tests.oracle import UnicornOracle, disasm, assemble
from tests.emu_side import EmuSide

_ORACLES = {}
_SIDES = {}
from tests.coverage_rows import EXERCISED_ROWS, record_rows  # noqa: F401  (re-exported)

# EFLAGS bits compared: the 6 arithmetic flags, TF IF DF, IOPL, NT, AC, ID.
# RF (bit 16) is excluded: it belongs to the pushed EFLAGS image of a fault,
# which neither side's reported state contains.
COMPARED_EFLAGS = 0x3FFFFF & ~0x10000


def oracle(layout):
    o = _ORACLES.get(layout.name)
    if o is None:
        o = _ORACLES[layout.name] = UnicornOracle(layout)
    return o


def emu_side(layout):
    s = _SIDES.get(layout.name)
    if s is None:
        s = _SIDES[layout.name] = EmuSide(layout)
    return s


def run_both(layout, code, regs=None, mem=None, phys_mem=None, count=1, code_lin=None):
    code_lin = layout.code_lin if code_lin is None else code_lin
    if isinstance(code, str):
        code = assemble(code, layout.mode, addr=code_lin)
    # a HLT right after the code, on both sides: emu decodes ahead to the end of a
    # block, and 64 "add [bx+si], al" from zeroed memory would only cost time
    end = code_lin + len(code)
    if layout.lin_to_phys(end) is not None:
        mem = [(end, b"\xf4")] + list(mem or ())
    ro = oracle(layout).run(code, regs=dict(regs or {}), mem=mem, phys_mem=phys_mem,
                            count=count, code_lin=code_lin)
    re_ = emu_side(layout).run(code, regs=dict(regs or {}), mem=mem, phys_mem=phys_mem,
                               count=count, code_lin=code_lin)
    return code, ro, re_


def differences(layout, ro, re_, flags_mask=0, compare_mem=True, ring3=False):
    diffs = []
    for n in GPRS + ("eip",):
        if ro.regs[n] != re_.regs[n]:
            diffs.append((n, re_.regs[n], ro.regs[n]))
    m = COMPARED_EFLAGS & ~flags_mask
    if (ro.regs["eflags"] & m) != (re_.regs["eflags"] & m):
        diffs.append(("eflags (mask %#x)" % m, re_.regs["eflags"] & m, ro.regs["eflags"] & m))
    for n in SEGS:
        if ro.sregs[n] != re_.sregs[n]:
            diffs.append((n, re_.sregs[n], ro.sregs[n]))
    if ro.exception != re_.exception:
        diffs.append(("exception", re_.exception, ro.exception))
    elif ro.exception is not None and ro.exception.vector == 14 and ro.cr2 != re_.cr2:
        diffs.append(("cr2", re_.cr2, ro.cr2))
    if compare_mem:
        a = oracle(layout).ram
        b = np.frombuffer(re_.emu.phys.ram, dtype=np.uint8)
        idx = np.flatnonzero(a != b)
        if len(idx):
            frame = None
            if re_.exception is not None and re_.exception.trap:
                frame = _frame_range(layout, re_)
            bad = [int(i) for i in idx if not (frame and frame[0] <= int(i) < frame[1])]
            if bad:
                show = ", ".join("%#x: emu %02x unicorn %02x" % (i, b[i], a[i]) for i in bad[:8])
                diffs.append(("memory (%d bytes)" % len(bad), show, ""))
    return diffs


def _frame_range(layout, re_):
    """Physical range of the interrupt frame emu pushed (Unicorn pushes none)."""
    cpu = re_.emu.cpu
    from emu.cpu import state as S
    sp = cpu.R[S.ESP]
    if layout.paging:
        pa = layout.lin_to_phys(sp, ram=cpu.phys.ram)
        return (pa, pa + 20) if pa is not None else None
    base = cpu.R[S.seg_index(S.SS, 1)]
    pa = base + (sp & 0xFFFF)
    return (pa, pa + 6)


def check_same(layout, code, regs=None, mem=None, phys_mem=None, count=1, flags_mask=0,
               compare_mem=True, code_lin=None):
    code, ro, re_ = run_both(layout, code, regs, mem, phys_mem, count, code_lin)
    ring3 = bool(regs and (regs.get("cpl") == 3))
    diffs = differences(layout, ro, re_, flags_mask, compare_mem, ring3)
    if diffs:
        listing = "\n".join("    %08x  %-20s %s" % (a, b.hex(), t)
                            for a, b, t in disasm(code, layout.mode, layout.code_lin))
        lines = ["%s: emu differs from Unicorn" % layout.name, listing,
                 "  regs in: %s" % (regs,)]
        for what, e, u in diffs:
            if isinstance(e, int) and isinstance(u, int):
                lines.append("  %-24s emu %#010x  unicorn %#010x" % (what, e, u))
            else:
                lines.append("  %-24s emu %s  unicorn %s" % (what, e, u))
        lines.append("  unicorn: %r" % (ro,))
        lines.append("  emu:     %r" % (re_,))
        raise AssertionError("\n".join(lines))
    return ro, re_
