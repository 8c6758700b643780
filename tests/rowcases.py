"""The row encoder shared by the arithmetic differential tests
(test_diff_alu/muldiv/shift/bcd/bits): builds an encoding of an opcode-table
row in register or memory form, random edge-biased register/flag/memory
states, and runs the case through tests/difftest.check_same."""
import os
import struct

import pytest
from hypothesis import strategies as st, HealthCheck

from emu.cpu.opcodes import ROWS, Entry
from tests.layout import REAL16, PROT32_PAGED
from tests.difftest import check_same
from tests.flagmasks import undefined_flags

LAYOUTS = (REAL16, PROT32_PAGED)
ARITH_FLAGS = 0x8D5           # CF PF AF ZF SF OF

# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------
# CI runs the same examples every time (no flaky landing); locally every run
# explores new ones.
SETTINGS = dict(deadline=None, derandomize=bool(os.environ.get("CI")), database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def rows_of(module):
    """Rows whose builder lives in emu/cpu/ops/<module>.py."""
    return [r for r in ROWS if r.build.split(".")[0] == module]


def row_id(r):
    code = ("0f%02x" % (r.code & 0xFF)) if r.code >= 0x100 else "%02x" % r.code
    if r.reg is not None:
        code += "/%d" % r.reg
    return "%s-%s-%s" % (code, r.mnem, "_".join(r.operands) or "none")


def edges(bits):
    m = (1 << bits) - 1
    h = 1 << (bits - 1)
    return sorted({0, 1, 2, 0xF & m, 0x10 & m, h - 1, h, h + 1, m - 1, m, 9, 0x99 & m, 0x0A})


def val(bits):
    """Edge-biased values of ``bits`` bits."""
    return st.one_of(st.sampled_from(edges(bits)), st.integers(0, (1 << bits) - 1))


def reg32():
    """32-bit register values whose low byte/word/dword are edge-biased."""
    hi = st.integers(0, 0xFFFFFFFF)
    return st.one_of(
        val(32),
        st.tuples(val(8), hi).map(lambda t: (t[1] & ~0xFF) | t[0]),
        st.tuples(val(16), hi).map(lambda t: (t[1] & ~0xFFFF) | t[0]),
        st.tuples(val(8), val(8), hi).map(lambda t: (t[2] & ~0xFFFF) | t[1] << 8 | t[0]),
    )


def flags():
    return st.integers(0, ARITH_FLAGS).map(lambda f: (f & ARITH_FLAGS) | 0x2)


COUNTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 24, 31, 32, 33, 0x41, 0xFF]


def count8():
    return st.one_of(st.sampled_from(COUNTS), st.integers(0, 0xFF))


def data_offset(layout):
    """A data-segment offset for a memory operand (page-crossing offsets included)."""
    if layout.paging:
        lo, size = 0x100, layout.data_lin[1] - 0x200
        pages = 8
    else:
        lo, size = 0x100, 0xF000
        pages = 15
    start = layout.data_lin[0] - seg_base(layout)
    crossing = st.sampled_from([0x1000 * p - k for p in range(1, pages) for k in (1, 2, 3)])
    return st.one_of(crossing, st.integers(lo, lo + size)).map(lambda o: start + o)


def seg_base(layout):
    """Linear base of DS for the layout (offset 0 of the data segment)."""
    return layout.regs["ds"].base


class Case:
    """One encoded instruction with its inputs."""

    def __init__(self, code, regs, mem, size, count=None, lin=None):
        self.code, self.regs, self.mem, self.size, self.count, self.lin = (
            code, regs, mem, size, count, lin)


def modrm_forms(row):
    """Does the row have a ModRM r/m operand that can be memory / register?"""
    e = Entry(row)
    if not e.has_modrm:
        return ()
    ops = row.operands
    if any(o[0] == "E" for o in ops):
        return ("reg", "mem")
    if any(o[0] == "M" for o in ops):
        return ("mem",)
    return ("reg",)


def draw_case(draw, row, layout, opsize, form, regs_extra=None, imm_vals=None,
              data_len=16, mem_off=None, style=None):
    """Encode ``row`` with random operands.

    form: 'reg' / 'mem' / None (no ModRM).  Returns a Case; the caller may
    tweak .regs before running.  imm_vals: optional strategy per immediate
    form ({'Ib': strategy}).
    """
    e = Entry(row)
    size = 1 if e.byte else opsize // 8
    code = bytearray()
    if opsize != layout.mode:
        code.append(0x66)
    if row.code >= 0x100:
        code += bytes((0x0F, row.code & 0xFF))
    else:
        code.append(row.code)
    regs = {n: draw(reg32()) for n in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi")}
    regs["eflags"] = draw(flags())
    mem = []
    lin = None
    if e.has_modrm:
        reg = row.reg if row.reg is not None else draw(st.integers(0, 7))
        if form == "reg":
            code.append(0xC0 | reg << 3 | draw(st.integers(0, 7)))
        else:
            off = draw(data_offset(layout)) if mem_off is None else mem_off
            base = seg_base(layout)
            if style is None:
                style = draw(st.sampled_from(("abs", "based")))
            if layout.mode == 16:
                if style == "abs":
                    code.append(0x06 | reg << 3)
                    code += struct.pack("<H", off)
                else:                                   # [bx+disp8]
                    d = draw(st.integers(-128, 127))
                    code.append(0x47 | reg << 3)
                    code += struct.pack("<b", d)
                    regs["ebx"] = (regs["ebx"] & 0xFFFF0000) | ((off - d) & 0xFFFF)
            else:
                if style == "abs":
                    code.append(0x05 | reg << 3)
                    code += struct.pack("<I", off)
                else:                                   # [ebx+disp8]
                    d = draw(st.integers(-128, 127))
                    code.append(0x43 | reg << 3)
                    code += struct.pack("<b", d)
                    regs["ebx"] = (off - d) & 0xFFFFFFFF
            lin = base + off
            dlo, dn = layout.data_lin
            lo = max(lin - 4, dlo)
            n = min(data_len, dlo + dn - lo)
            if n > 0:
                mem.append((lo, bytes(draw(st.binary(min_size=n, max_size=n)))))
    for o in row.operands:
        if o in ("Ib", "Ibs"):
            s = (imm_vals or {}).get(o)
            if s is None:
                s = val(8)
            code.append(draw(s) & 0xFF)
        elif o == "Iw":
            code += struct.pack("<H", draw(val(16)))
        elif o == "Iz":
            if opsize == 32:
                code += struct.pack("<I", draw(val(32)))
            else:
                code += struct.pack("<H", draw(val(16)))
    count = None
    ops = row.operands
    if "CL" in ops:
        regs["ecx"] = (regs["ecx"] & ~0xFF) | draw(count8())
        count = regs["ecx"] & 0xFF
    elif "1" in ops:
        count = 1
    elif ops and ops[-1] == "Ib" and row.build.startswith("shift."):
        count = code[-1]
    for k, v in (regs_extra or {}).items():
        regs[k] = v
    return Case(bytes(code), regs, mem, size, count, lin)


def run_case(layout, row, case, mask=None):
    if mask is None:
        mask = undefined_flags(row.mnem, count=case.count, size=case.size) \
            if case.count is not None else undefined_flags(row.mnem)
    return check_same(layout, case.code, regs=case.regs, mem=case.mem, flags_mask=mask)


def params(rows):
    """pytest params: (layout, row, form) for every row, both layouts, each r/m form."""
    out = []
    for L in LAYOUTS:
        for r in rows:
            for form in (modrm_forms(r) or (None,)):
                out.append(pytest.param(L, r, form, id="%s-%s-%s" % (L.name, row_id(r), form)))
    return out


def opsizes(row, layout):
    """Operand sizes worth running: byte rows use the default (no 0x66)."""
    return (layout.mode,) if Entry(row).byte else (16, 32)
