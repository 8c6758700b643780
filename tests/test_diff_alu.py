"""Differential tests (emu vs Unicorn) for the integer ALU rows of opcodes.py:
ADD OR ADC SBB AND SUB XOR CMP TEST INC DEC NOT NEG (builders alu.*).

Every row is run in REAL16 and PROT32_PAGED, with 16- and 32-bit operand
size (the 0x66 prefix selects the non-default one), register and memory
forms, on random register/flag/memory states biased towards edge values.
Compared: all GPRs, EIP, EFLAGS (minus the flags tests/flagmasks.py calls
undefined), segment selectors, exceptions and all of RAM.

The first half of this file holds the row encoder shared by the other
arithmetic test files (test_diff_muldiv/shift/bcd/bits import it).
"""
import os
import struct

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

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


# ---------------------------------------------------------------------------
# ALU tests
# ---------------------------------------------------------------------------
ALU_ROWS = rows_of("alu")
# F6 /1 and F7 /1 (TEST Eb,Ib / Ev,Iz): reserved in the SDM's opcode map
# (Vol. 2, Table A-6, group 3), an undocumented alias of /0 on Intel and AMD
# hardware (which our table follows).  Unicorn 2.1.4 raises #UD for them, so
# they are checked against the /0 encoding on emu alone (test_test_alias).
TEST_ALIAS = [r for r in ALU_ROWS if r.code in (0xF6, 0xF7) and r.reg == 1]
DIFF_ALU_ROWS = [r for r in ALU_ROWS if r not in TEST_ALIAS]


def test_every_alu_row_is_implemented():
    from emu.cpu.opcodes import implemented_rows
    have = set(implemented_rows())
    assert [r for r in ALU_ROWS if r not in have] == []


@pytest.mark.parametrize("layout,row,form", params(DIFF_ALU_ROWS))
@settings(max_examples=6, **SETTINGS)
@given(data=st.data())
def test_alu_row(layout, row, form, data):
    opsize = data.draw(st.sampled_from(opsizes(row, layout)))
    case = draw_case(data.draw, row, layout, opsize, form)
    run_case(layout, row, case)


@pytest.mark.parametrize("layout,row,form", params(TEST_ALIAS))
@settings(max_examples=10, **SETTINGS)
@given(data=st.data())
def test_test_alias(layout, row, form, data):
    """F6/F7 /1 gives exactly what F6/F7 /0 gives (emu only: Unicorn #UDs)."""
    from tests.difftest import emu_side
    opsize = data.draw(st.sampled_from(opsizes(row, layout)))
    case = draw_case(data.draw, row, layout, opsize, form)
    side = emu_side(layout)
    code = bytearray(case.code)
    i = code.index(row.code)
    a = side.run(bytes(code), regs=dict(case.regs), mem=case.mem)
    regs_a, ram_a = dict(a.regs), bytearray(a.emu.phys.ram)
    code[i + 1] &= ~0x38                        # ModRM.reg 1 -> 0
    b = side.run(bytes(code), regs=dict(case.regs), mem=case.mem)
    ram_a[layout.lin_to_phys(layout.code_lin) + i + 1] = code[i + 1]
    assert a.exception is None and b.exception is None
    assert regs_a == b.regs
    assert ram_a == bytes(b.emu.phys.ram)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
@pytest.mark.parametrize("asm,regs", [
    # carries, overflows and borrows at the width edges
    ("add al, bl", dict(eax=0x7F, ebx=1)),
    ("add al, bl", dict(eax=0xFF, ebx=1)),
    ("add eax, ebx", dict(eax=0x7FFFFFFF, ebx=1)),
    ("add eax, ebx", dict(eax=0xFFFFFFFF, ebx=1)),
    ("adc eax, ebx", dict(eax=0xFFFFFFFF, ebx=0, eflags=0x3)),
    ("adc al, bl", dict(eax=0x7F, ebx=0x80, eflags=0x3)),
    ("sbb eax, ebx", dict(eax=0, ebx=0xFFFFFFFF, eflags=0x3)),
    ("sbb al, bl", dict(eax=0x80, ebx=0x7F, eflags=0x3)),
    ("sub eax, ebx", dict(eax=0x80000000, ebx=1)),
    ("cmp eax, ebx", dict(eax=0, ebx=1)),
    ("neg eax", dict(eax=0x80000000)),
    ("neg al", dict(eax=0)),
    ("inc eax", dict(eax=0x7FFFFFFF, eflags=0x3)),
    ("dec eax", dict(eax=0x80000000, eflags=0x2)),
    ("inc al", dict(eax=0x0F, eflags=0x3)),
    ("dec ax", dict(eax=0x10, eflags=0x3)),
    ("xor eax, eax", dict(eax=0x1234, eflags=0x8D7)),
    ("test al, 0x80", dict(eax=0x80, eflags=0x803)),
    ("not eax", dict(eax=0x0F0F0F0F, eflags=0x8D7)),
])
def test_alu_edges(layout, asm, regs):
    if layout.mode == 16:
        asm = asm.replace("eax", "ax").replace("ebx", "bx") if "al" not in asm else asm
    mnem = asm.split()[0]
    regs = dict(regs)
    regs.setdefault("eflags", 0x2)
    check_same(layout, asm, regs=regs, flags_mask=undefined_flags(mnem))


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
def test_alu_lazy_flags_chain(layout):
    """Flags consumed by the next instruction (ADC after ADD, SBB after SUB, INC
    keeping CF, ...) - several instructions in a row, compared at the end."""
    if layout.mode == 32:
        code = ("add eax, ebx; adc ecx, edx; sbb esi, edi; inc ebp; adc eax, 0; "
                "neg ecx; sbb edx, 0; dec esi; adc ebx, ebx; cmp eax, ecx; adc edi, 1; "
                "shr eax, 1; inc ebx; adc ecx, 0; bt edx, 5; dec esi; sbb edi, 0; "
                "mul ebx; inc ecx; adc ebp, ebp; daa; adc al, 0; xor esi, esi; dec esi")
    else:
        code = ("add ax, bx; adc cx, dx; sbb si, di; inc bp; adc ax, 0; "
                "neg cx; sbb dx, 0; dec si; adc bx, bx; cmp ax, cx; adc di, 1; "
                "shr ax, 1; inc bx; adc cx, 0; bt dx, 5; dec si; sbb di, 0; "
                "mul bx; inc cx; adc bp, bp; daa; adc al, 0; xor si, si; dec si")
    for seed in range(40):
        v = [(seed * 0x9E3779B9 * (i + 1)) & 0xFFFFFFFF for i in range(7)]
        regs = dict(eax=v[0], ebx=v[1] | 0x80000000, ecx=v[2], edx=v[3], esi=v[4],
                    edi=v[5], ebp=v[6] if seed & 1 else 0xFFFFFFFF, eflags=0x2 | (seed & 1))
        check_same(layout, code, regs=regs, count=None)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda L: L.name)
def test_alu_memory_fault_leaves_state(layout):
    """A read-modify-write on a read-only (PROT32) page faults before changing
    the flags or memory; in REAL16 the same code simply runs."""
    if layout.paging:
        code = "add dword ptr [0x%x], ebx" % layout.ro_lin
    else:
        code = "add word ptr [0x1234], bx"
    check_same(layout, code, regs=dict(ebx=5, eflags=0x8D7))
