"""Differential tests (emu vs Unicorn) for the integer ALU rows of opcodes.py:
ADD OR ADC SBB AND SUB XOR CMP TEST INC DEC NOT NEG (builders alu.*).

Every row is run in REAL16 and PROT32_PAGED, with 16- and 32-bit operand
size (the 0x66 prefix selects the non-default one), register and memory
forms, on random register/flag/memory states biased towards edge values.
Compared: all GPRs, EIP, EFLAGS (minus the flags tests/flagmasks.py calls
undefined), segment selectors, exceptions and all of RAM.

The row encoder shared with the other arithmetic test files lives in
tests/rowcases.py.
"""
import pytest
from hypothesis import given, settings, strategies as st

from tests.difftest import check_same
from tests.flagmasks import undefined_flags
from tests.rowcases import (LAYOUTS, SETTINGS, rows_of, params, draw_case,
                            run_case, opsizes)

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
