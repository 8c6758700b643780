"""System instructions (emu/cpu/ops/system.py, cpuid.py, msr.py): effects and
faults at CPL 0 and CPL 3, in REAL16 and PROT32_PAGED.

Wherever Unicorn 2.1.4 models an instruction, emu is compared with it
(tests/difftest.check_same: GPRs, EIP, EFLAGS, selectors, exception and all
of RAM).  Where Unicorn does not model it, or models it differently from
the Intel SDM / a P6 processor, the test checks the SDM's result, worked out
here, and says what Unicorn does:

  U1  MOV CR4: Unicorn accepts VME, PVI, PAE, MCE, OSXMMEXCPT... (its CPU has
      them); emu has none of them, so they are reserved: #GP(0).
  U2  MOV CR0: Unicorn accepts PG=1 with PE=0 and NW=1 with CD=0, and keeps
      reserved CR0 bits; SDM: #GP(0) for the two combinations; P6 ignores
      writes to reserved bits (they read back 0).
  U3  LTR with a null selector: Unicorn makes TR null; SDM: #GP(0).
  U4  SMSW r32: Unicorn writes only the low 16 bits (keeps the high half);
      the SDM leaves the high half undefined; emu stores all of CR0 (P6).
  U5  RDMSR/WRMSR: Unicorn reads/writes unknown MSRs without #GP, keeps
      64-bit SYSENTER_ESP/EIP and only 16 bits of SYSENTER_CS; SDM (P6):
      #GP(0), 32-bit MSRs (emu keeps all 32 bits of SYSENTER_CS, as Bochs).
  U6  SYSENTER is only a hook in Unicorn (no state change); CPUID and RDTSC
      return Unicorn's host-like values.  Checked against the SDM.
  U7  MOV DR6/DR7: Unicorn ORs the fixed-1 bits in but keeps bits that read
      0 on P6 (DR6 bit 12, DR7 bits 11, 12, 14, 15); differential tests
      avoid those bits, the fixed values are checked against the SDM.
"""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from emu.api import Emu
from emu.cpu.faults import CPUFault
from emu.cpu import cpuid as CPUID
from emu.cpu import state as S
from emu.cpu.opcodes import ROWS, _resolve
from tests.difftest import check_same, emu_side
from tests.guests import sys_sysenter, sys_tsc
from tests.layout import PROT32_PAGED as P, REAL16 as R, descriptor
from tests.oracle import assemble

SET = settings(max_examples=40, deadline=None)
ARITH = 0x8D5                       # CF PF AF ZF SF OF
DATA = P.data_lin[0]                # 0x410000, user RW
R16_DATA = R.data_lin[0]            # DS:0000 in REAL16


def emu_run(layout, code, **kw):
    return emu_side(layout).run(code, **kw)


def cpls():
    return st.sampled_from([0, 3])


def _r(cpl, **regs):
    if cpl == 3:
        regs["cpl"] = 3
    return regs


def m32(op2, reg, disp, prefix=b""):
    """0F op2 /reg [disp32] (32-bit addressing)."""
    return prefix + bytes([0x0F, op2, (reg << 3) | 5]) + struct.pack("<I", disp)


def m16(op2, reg, disp, prefix=b""):
    """0F op2 /reg [disp16] (16-bit addressing)."""
    return prefix + bytes([0x0F, op2, (reg << 3) | 6]) + struct.pack("<H", disp)


# --- every row of the family is implemented -------------------------------------------
def test_all_rows_have_builders():
    missing = [r for r in ROWS if r.build.split(".")[0] in ("system", "io")
               and _resolve(r.build) is None]
    assert missing == []


# --- protected-mode-only instructions are #UD in real mode -----------------------------
@pytest.mark.parametrize("code", ["sldt ax", "str ax", "lldt ax", "ltr ax", "verr ax", "verw ax",
                                  "lar ax, bx", "lsl ax, bx", "arpl ax, bx"])
def test_pm_only_ud_in_real_mode(code):
    ro, re_ = check_same(R, code, regs=dict(eax=0x10, ebx=0x10))
    assert re_.vector == 6


# --- SLDT / STR -----------------------------------------------------------------
@SET
@given(eax=st.integers(0, 2**32 - 1), cpl=cpls(), which=st.sampled_from(["sldt", "str"]),
       form=st.sampled_from(["ax", "eax", "word ptr [%#x]" % (DATA + 6)]))
def test_sldt_str(eax, cpl, which, form):
    ro, re_ = check_same(P, "%s %s" % (which, form), regs=_r(cpl, eax=eax))
    sel = P.sel_tss if which == "str" else 0
    if form == "eax":
        assert re_.eax == sel                       # zero-extended (P6 and later)
    elif form == "ax":
        assert re_.eax == (eax & 0xFFFF0000) | sel


# --- SGDT / SIDT / LGDT / LIDT ------------------------------------------------------
@pytest.mark.parametrize("cpl", [0, 3])
@pytest.mark.parametrize("o16", [False, True])
@pytest.mark.parametrize("reg", [0, 1])
def test_sgdt_sidt_prot(reg, o16, cpl):
    code = m32(0x01, reg, DATA + 0x10, b"\x66" if o16 else b"")
    ro, re_ = check_same(P, code, regs=_r(cpl))
    stored = bytes(re_.emu.virt_read(DATA + 0x10, 6))
    limit, base = struct.unpack("<HI", stored)
    want_base, want_limit = P.regs["idtr" if reg else "gdtr"]
    assert limit == want_limit
    # 16-bit operand size: 24 bits of base, the sixth byte 0 (386 .. P6)
    assert base == (want_base & 0xFFFFFF if o16 else want_base)


@pytest.mark.parametrize("o32", [False, True])
@pytest.mark.parametrize("reg", [0, 1])
def test_sgdt_sidt_real(reg, o32):
    code = m16(0x01, reg, 0x20, b"\x66" if o32 else b"")
    check_same(R, code)


@SET
@given(limit=st.integers(0, 0xFFFF), base=st.integers(0, 2**32 - 1), reg=st.sampled_from([2, 3]),
       o16_load=st.booleans(), o16_store=st.booleans())
def test_lgdt_lidt_roundtrip_prot(limit, base, reg, o16_load, o16_store):
    code = (m32(0x01, reg, DATA, b"\x66" if o16_load else b"")
            + m32(0x01, reg - 2, DATA + 0x20, b"\x66" if o16_store else b""))
    ro, re_ = check_same(P, code, mem=[(DATA, struct.pack("<HI", limit, base))], count=2)
    word = S.GDTR_BASE if reg == 2 else S.IDTR_BASE
    R_ = re_.emu.cpu.R
    assert R_[word + 1] == limit
    assert R_[word] == (base & 0xFFFFFF if o16_load else base)


@SET
@given(limit=st.integers(0, 0xFFFF), base=st.integers(0, 2**32 - 1), reg=st.sampled_from([2, 3]),
       o32=st.booleans())
def test_lgdt_lidt_roundtrip_real(limit, base, reg, o32):
    code = m16(0x01, reg, 0x40, b"\x66" if o32 else b"") + m16(0x01, reg - 2, 0x60)
    ro, re_ = check_same(R, code, mem=[(R16_DATA + 0x40, struct.pack("<HI", limit, base))],
                         count=2)


@pytest.mark.parametrize("reg", [2, 3])
def test_lgdt_lidt_cpl3_gp(reg):
    ro, re_ = check_same(P, m32(0x01, reg, DATA), regs=dict(cpl=3))
    assert (re_.vector, re_.error_code) == (13, 0)


def test_sgdt_faults():
    # read-only page: #PF(P|W); not mapped: #PF(W); register form: #UD
    for lin, code in ((P.ro_lin, 3), (P.unmapped_lin, 2)):
        ro, re_ = check_same(P, m32(0x01, 0, lin))
        assert (re_.vector, re_.error_code) == (14, code)
    ro, re_ = check_same(P, bytes.fromhex("0f01c0"))
    assert re_.vector == 6


# --- SMSW / LMSW / CLTS ---------------------------------------------------------------
@SET
@given(eax=st.integers(0, 2**32 - 1), cpl=cpls())
def test_smsw(eax, cpl):
    check_same(P, "smsw ax", regs=_r(cpl, eax=eax))
    check_same(P, "smsw word ptr [%#x]" % (DATA + 2), regs=_r(cpl, eax=eax))
    check_same(R, "smsw ax", regs=dict(eax=eax))
    # r32: emu stores all of CR0 (U4); Unicorn keeps the high half
    r = emu_run(P, "smsw eax", regs=_r(cpl, eax=eax))
    assert r.eax == P.regs["cr0"]
    check_same(R, "smsw eax", regs=dict(eax=eax & 0xFFFF))        # CR0 high half is 0 there


@SET
@given(ax=st.integers(0, 0xFFFF), layout=st.sampled_from([R, P]))
def test_lmsw(ax, layout):
    ro, re_ = check_same(layout, "lmsw ax; smsw bx", regs=dict(eax=ax, ebx=0), count=2)
    old = layout.regs["cr0"]
    want = (old & ~0xF) | (ax & 0xF) | (old & 1)
    assert re_.cr0 == want
    assert re_.ebx & 0xFFFF == want & 0xFFFF


def test_lmsw_memory_and_cpl3():
    check_same(P, "lmsw word ptr [%#x]" % DATA, mem=[(DATA, b"\x0e\x00")])
    ro, re_ = check_same(P, "lmsw ax", regs=dict(cpl=3, eax=0x8))
    assert (re_.vector, re_.error_code) == (13, 0)


def test_lmsw_enters_protected_mode():
    ro, re_ = check_same(R, "lmsw ax; smsw bx", regs=dict(eax=0x1), count=2)
    assert re_.cr0 & 1 and re_.ebx & 1


@pytest.mark.parametrize("layout", [R, P])
def test_clts(layout):
    cr0 = layout.regs["cr0"] | 0x8
    ro, re_ = check_same(layout, "clts; smsw bx", regs=dict(cr0=cr0), count=2)
    assert re_.cr0 == cr0 & ~0x8 and not re_.ebx & 0x8


def test_clts_cpl3_gp():
    ro, re_ = check_same(P, "clts", regs=dict(cpl=3, cr0=P.regs["cr0"] | 8))
    assert (re_.vector, re_.error_code) == (13, 0) and re_.cr0 & 8


# --- INVD / WBINVD / UD2 / HLT / CLI / STI --------------------------------------------
@pytest.mark.parametrize("code", ["invd", "wbinvd"])
@pytest.mark.parametrize("cpl", [0, 3])
def test_invd_wbinvd(code, cpl):
    ro, re_ = check_same(P, code, regs=_r(cpl, eflags=0x8D7))
    if cpl:
        assert (re_.vector, re_.error_code) == (13, 0)
    else:
        assert re_.exception is None
    check_same(R, code)


@pytest.mark.parametrize("layout,cpl", [(R, 0), (P, 0), (P, 3)])
def test_ud2(layout, cpl):
    ro, re_ = check_same(layout, "ud2", regs=_r(cpl))
    assert re_.vector == 6 and re_.eip == layout.regs["eip"]


def test_hlt():
    ro, re_ = check_same(P, "hlt", regs=dict(cpl=3))
    assert (re_.vector, re_.error_code) == (13, 0)
    for layout in (R, P):
        ro, re_ = check_same(layout, "hlt; nop", count=None)
        assert re_.stop == "hlt" and re_.eip == layout.regs["eip"] + 1


def test_sti_interrupt_shadow():
    """An interrupt pending while IF=0 is taken after the instruction that
    follows STI (SDM: STI), not before it."""
    e = Emu(ram_size=1 << 20)
    e.mem_write(0x20 * 4, struct.pack("<HH", 0x600, 0))
    e.mem_write(0x600, b"\xf4")                                  # handler: hlt
    e.mem_write(0x7C00, assemble("sti; mov ax, 1; mov bx, 2; hlt", 16))
    for sreg in ("cs", "ss", "ds"):
        e.set_segment(sreg, 0)
    e.reg_write("esp", 0x7000)
    e.reg_write("eip", 0x7C00)
    e.interrupt(0x20)
    st_ = e.run(count=20)
    assert st_.reason == "hlt" and e.reg_read("eip") == 0x601
    assert (e.reg_read("ax"), e.reg_read("bx")) == (1, 0)
    assert struct.unpack("<H", e.mem_read(0x7000 - 6, 2))[0] == 0x7C04   # return IP


def _sti_guest():
    e = Emu(ram_size=1 << 20)
    e.mem_write(0x20 * 4, struct.pack("<HH", 0x600, 0))
    e.mem_write(0x600, b"\xf4")                                  # handler: hlt
    e.mem_write(0x7C00, assemble("sti; mov ax, 1; mov bx, 2; mov cx, 3; hlt", 16))
    for sreg in ("cs", "ss", "ds"):
        e.set_segment(sreg, 0)
    e.reg_write("esp", 0x7000)
    e.reg_write("eip", 0x7C00)
    return e


def test_sti_shadow_holds_an_interrupt_that_arrives_just_after_sti():
    """Nothing is pending at STI; the interrupt comes at the boundary right
    after it (the run stopped there): it still waits for the next
    instruction (the race `sti; hlt` relies on)."""
    e = _sti_guest()
    assert e.run(count=1).reason == "count"
    e.interrupt(0x20)
    st_ = e.run(count=20)
    assert st_.reason == "hlt" and e.reg_read("eip") == 0x601
    assert (e.reg_read("ax"), e.reg_read("bx")) == (1, 0)
    assert struct.unpack("<H", e.mem_read(0x7000 - 6, 2))[0] == 0x7C04   # return IP


def test_sti_shadow_is_over_after_one_instruction():
    """An interrupt that comes two instructions after STI is taken at once:
    the shadow ended with the instruction after STI, even though no one
    looked at events in between."""
    e = _sti_guest()
    assert e.run(count=2).reason == "count"
    e.interrupt(0x20)
    st_ = e.run(count=20)
    assert st_.reason == "hlt" and e.reg_read("eip") == 0x601
    assert (e.reg_read("ax"), e.reg_read("bx")) == (1, 0)
    assert struct.unpack("<H", e.mem_read(0x7000 - 6, 2))[0] == 0x7C04


@pytest.mark.parametrize("iopl", [0, 1, 2, 3])
@pytest.mark.parametrize("code", ["cli", "sti"])
@pytest.mark.parametrize("cpl", [0, 3])
def test_cli_sti_iopl(code, iopl, cpl):
    fl = 0x2 | iopl << 12 | (0x200 if code == "cli" else 0)
    ro, re_ = check_same(P, code, regs=_r(cpl, eflags=fl))
    assert (re_.exception is None) == (cpl <= iopl)


# --- MOV CRn ------------------------------------------------------------------------
@pytest.mark.parametrize("cr", [0, 2, 3, 4])
@pytest.mark.parametrize("cpl", [0, 3])
def test_mov_from_cr(cr, cpl):
    regs = _r(cpl) if cpl else dict(cr2=0x1234567)     # (the oracle cannot set CR2 for ring 3)
    ro, re_ = check_same(P, "mov ebx, cr%d" % cr, regs=regs)
    if cpl:
        assert (re_.vector, re_.error_code) == (13, 0)
    else:
        assert re_.ebx == {0: P.regs["cr0"], 2: 0x1234567, 3: P.regs["cr3"], 4: P.regs["cr4"]}[cr]
    check_same(R, "mov ebx, cr%d" % cr)


@pytest.mark.parametrize("cr", [0, 2, 3, 4])
def test_mov_to_cr_cpl3_gp(cr):
    ro, re_ = check_same(P, "mov cr%d, eax" % cr, regs=dict(cpl=3, eax=P.regs["cr%d" % cr]))
    assert (re_.vector, re_.error_code) == (13, 0)


@pytest.mark.parametrize("code", ["0f20c8", "0f20e8", "0f20f0", "0f20f8", "0f22c8", "0f22e8"])
def test_mov_cr_invalid_ud(code):
    ro, re_ = check_same(P, bytes.fromhex(code))
    assert re_.vector == 6


@SET
@given(v=st.integers(0, 2**32 - 1))
def test_mov_cr2_roundtrip(v):
    ro, re_ = check_same(P, "mov cr2, eax; mov ebx, cr2", regs=dict(eax=v), count=2)
    assert re_.ebx == v
    check_same(R, "mov cr2, eax; mov ebx, cr2", regs=dict(eax=v), count=2)


@SET
@given(low=st.integers(0, 0xFFF))
def test_mov_cr3_roundtrip(low):
    """Same page directory, any low bits (PWT/PCD and ignored bits are kept)."""
    v = P.regs["cr3"] | low
    ro, re_ = check_same(P, "mov cr3, eax; mov ebx, cr3; mov ecx, [%#x]" % DATA,
                         regs=dict(eax=v), count=3)
    assert re_.ebx == v


CR4_OK = [0x0, 0x4, 0x8, 0x10, 0x80, 0x100, 0x90, 0x19C]


@pytest.mark.parametrize("v", CR4_OK)
def test_mov_cr4_valid(v):
    ro, re_ = check_same(P, "mov cr4, eax; mov ebx, cr4; mov ecx, [%#x]" % DATA,
                         regs=dict(eax=v), count=3)
    assert re_.cr4 == v
    check_same(R, "mov cr4, eax; mov ebx, cr4", regs=dict(eax=v), count=2)


@pytest.mark.parametrize("bit", [0, 1, 5, 6, 10, 11, 13, 14, 16, 17, 18, 20, 31])
def test_mov_cr4_reserved_gp(bit):
    """U1: features emu does not have are reserved CR4 bits: #GP(0), no change."""
    r = emu_run(P, "mov cr4, eax", regs=dict(eax=0x10 | 1 << bit))
    assert (r.vector, r.error_code) == (13, 0) and r.cr4 == P.regs["cr4"]


def test_mov_cr4_osfxsr_follows_cpuid():
    r = emu_run(P, "mov cr4, eax", regs=dict(eax=0x210))
    if CPUID.has_fxsr():
        assert r.exception is None and r.cr4 == 0x210
        check_same(P, "mov cr4, eax; mov ebx, cr4", regs=dict(eax=0x210), count=2)
    else:
        assert r.vector == 13


@pytest.mark.parametrize("v", [0x80000010, 0x20000011, 0xA0010031])
def test_mov_cr0_invalid_combinations_gp(v):
    """U2: PG without PE, NW without CD: #GP(0) before any change."""
    for layout in (R, P):
        r = emu_run(layout, "mov cr0, eax", regs=dict(eax=v))
        assert (r.vector, r.cr0) == (13, layout.regs["cr0"])


def test_mov_cr0_reserved_bits_ignored():
    """U2: reserved CR0 bits are ignored (read back 0), ET stays 1."""
    r = emu_run(R, "mov cr0, eax; mov ebx, cr0", regs=dict(eax=0x1FF8FFC0), count=2)
    assert r.exception is None and r.ebx == 0x10


@SET
@given(bits=st.sets(st.sampled_from([0x2, 0x4, 0x8, 0x20, 0x10000, 0x40000, 0x40000000,
                                     0x60000000])))
def test_mov_cr0_flags(bits):
    v = 0x80000011
    for b in bits:
        v |= b
    ro, re_ = check_same(P, "mov cr0, eax; mov ebx, cr0; mov ecx, [%#x]" % DATA,
                         regs=dict(eax=v), count=3)
    assert re_.ebx == v


def test_mov_cr0_paging_off_and_on():
    """PG off: the next fetch is physical (the code continues at physical
    code_lin + offset, preloaded); PG on again: linear once more."""
    lin0 = P.code_lin
    part_a = assemble("mov eax, cr0; and eax, 0x7fffffff; mov cr0, eax", 32, lin0)
    part_b = assemble("mov ebx, [%#x]; or eax, 0x80000000; mov cr0, eax"
                      % P.lin_to_phys(DATA), 32, lin0 + len(part_a))
    part_c = assemble("mov ecx, [%#x]; mov edx, cr3" % DATA, 32,
                      lin0 + len(part_a) + len(part_b))
    code = part_a + b"\x90" * len(part_b) + part_c
    ro, re_ = check_same(P, code, mem=[(DATA, b"\x78\x56\x34\x12")],
                         phys_mem=[(lin0 + len(part_a), part_b)], count=None)
    assert re_.exception is None and re_.ebx == re_.ecx == 0x12345678
    assert re_.edx == P.regs["cr3"] and re_.cr0 == P.regs["cr0"]
    assert re_.emu.mmu.audit() == []


# --- MOV DRn --------------------------------------------------------------------
DR6_RW, DR7_RW = 0x0000E00F, 0xFFFF23FF


@SET
@given(v=st.integers(0, 2**32 - 1), dr=st.sampled_from([0, 1, 2, 3]))
def test_mov_dr0_3_roundtrip(v, dr):
    code = "mov dr%d, eax; mov ebx, dr%d" % (dr, dr)
    ro, re_ = check_same(P, code, regs=dict(eax=v), count=2)
    assert re_.ebx == v
    check_same(R, code, regs=dict(eax=v), count=2)


@SET
@given(v=st.integers(0, 2**32 - 1), dr=st.sampled_from([4, 5, 6, 7]))
def test_mov_dr6_dr7(v, dr):
    """DR4/DR5 alias DR6/DR7 (CR4.DE = 0).  The differential run keeps the
    bits P6 fixes to 0 (U7) and GD clear; the fixed values are checked on emu."""
    real = dr + 2 if dr < 6 else dr
    fixed_clear = 0x00001000 if real == 6 else 0x0000D800
    safe = v & ~fixed_clear & ~(0x2000 if real == 7 else 0)
    if real == 7:
        safe &= ~0xFF                       # no breakpoint enabled in Unicorn
    code = "mov dr%d, eax; mov ebx, dr%d; mov ecx, dr%d" % (dr, dr, real)
    ro, re_ = check_same(P, code, regs=dict(eax=safe), count=3)
    if real == 7:
        v &= ~0x2000                        # GD: see test_mov_dr_general_detect
    r = emu_run(P, code, regs=dict(eax=v), count=3)
    want = (v & DR6_RW) | 0xFFFF0FF0 if real == 6 else (v & DR7_RW) | 0x400
    assert r.ebx == r.ecx == want


@pytest.mark.parametrize("code", ["mov ebx, dr4", "mov dr5, ebx", "mov dr4, ebx", "mov ebx, dr5"])
def test_mov_dr4_dr5_de_ud(code):
    ro, re_ = check_same(P, code, regs=dict(cr4=0x18))
    assert re_.vector == 6


@pytest.mark.parametrize("code", ["mov ebx, dr7", "mov dr0, ebx", "mov ebx, dr4"])
def test_mov_dr_cpl3_gp(code):
    ro, re_ = check_same(P, code, regs=dict(cpl=3, cr4=0x18))
    assert (re_.vector, re_.error_code) == (13, 0)


def test_mov_dr_general_detect():
    """DR7.GD: the next MOV DR faults with #DB (EIP = that MOV), DR6.BD set,
    GD cleared so the handler can use the debug registers (SDM 17.2.4)."""
    code = "mov dr7, eax; mov ebx, dr0"
    r = emu_run(P, code, regs=dict(eax=0x2000), count=None)
    assert r.vector == 1 and r.eip == P.code_lin + 3
    R_ = r.emu.cpu.R
    assert R_[S.DR0 + 6] & 0x2000 and not R_[S.DR0 + 7] & 0x2000


# --- LAR / LSL / VERR / VERW ------------------------------------------------------
LAR_BX, LSL_BX = bytes.fromhex("0f02c3"), bytes.fromhex("0f03c3")
VERR_BX, VERW_BX = bytes.fromhex("0f00e3"), bytes.fromhex("0f00eb")
SEL_OPS = {"lar": LAR_BX, "lsl": LSL_BX, "verr": VERR_BX, "verw": VERW_BX}


@pytest.mark.parametrize("op", sorted(SEL_OPS))
@pytest.mark.parametrize("cpl", [0, 3])
def test_selector_ops_over_gdt(op, cpl):
    """Every selector of the layout's GDT (and just past it), every RPL."""
    for sel in range(0, 0x48):
        for o16 in (False, True):
            code = (b"\x66" if o16 else b"") + SEL_OPS[op]
            check_same(P, code, regs=_r(cpl, ebx=sel, eax=0x5A5A5A5A, eflags=0x8D7 ^ 0x40))


def _expect_selector_op(op, lo, hi, sel, cpl, o16):
    """SDM result (zf, value or None) of LAR/LSL/VERR/VERW on descriptor lo:hi."""
    if not sel & 0xFFFC:
        return False, None
    attr = (hi >> 8) & 0xFF
    dpl = (attr >> 5) & 3
    priv = dpl >= cpl and dpl >= (sel & 3)
    s = attr & 0x10
    code, conf, rw = attr & 8, attr & 4, attr & 2
    typ = attr & 0xF
    if op in ("verr", "verw"):
        if not s:
            return False, None
        if op == "verr":
            ok = (code and rw and (conf or priv)) or (not code and priv)
        else:
            ok = (not code) and rw and priv
        return bool(ok), None
    if s:
        ok = (code and conf) or priv
    else:
        ok = typ in ((1, 2, 3, 4, 5, 9, 0xB, 0xC) if op == "lar" else (1, 2, 3, 9, 0xB)) and priv
    if not ok:
        return False, None
    if op == "lar":
        return True, hi & (0xFF00 if o16 else 0x00F0FF00)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    if hi & 0x800000:
        limit = (limit << 12) | 0xFFF
    return True, limit & (0xFFFF if o16 else 0xFFFFFFFF)


@settings(max_examples=150, deadline=None)
@given(lo=st.integers(0, 2**32 - 1), hi=st.integers(0, 2**32 - 1), rpl=st.integers(0, 3),
       cpl=cpls(), op=st.sampled_from(sorted(SEL_OPS)), o16=st.booleans(),
       eax=st.integers(0, 2**32 - 1))
def test_selector_ops_random_descriptor(lo, hi, rpl, cpl, op, o16, eax):
    """A random descriptor in GDT slot 0x38: compared with Unicorn and with the SDM rules."""
    sel = 0x38 | rpl
    code = (b"\x66" if o16 else b"") + SEL_OPS[op]
    ro, re_ = check_same(P, code, regs=_r(cpl, ebx=sel, eax=eax),
                         phys_mem=[(P.gdt_phys + 0x38, struct.pack("<II", lo, hi))])
    zf, val = _expect_selector_op(op, lo, hi, sel, cpl, o16)
    assert bool(re_.eflags & 0x40) == zf
    if val is None:
        assert re_.eax == eax
    elif o16:
        assert re_.eax == (eax & 0xFFFF0000) | val
    else:
        assert re_.eax == val


@settings(max_examples=60, deadline=None)
@given(lo=st.integers(0, 2**32 - 1), hi=st.integers(0, 2**32 - 1), rpl=st.integers(0, 3),
       op=st.sampled_from(sorted(SEL_OPS)), idx=st.integers(0, 4))
def test_selector_ops_through_ldt(lo, hi, rpl, op, idx):
    """LLDT a 3-entry LDT, then a TI=1 selector (index 3 and 4: beyond its limit)."""
    ldt_phys = 0x6000
    ldt = descriptor(P.sys_lin + ldt_phys, 3 * 8 - 1, 0x82, 0)
    sel = idx << 3 | 4 | rpl
    code = assemble("lldt si", 32, P.code_lin) + SEL_OPS[op]
    ro, re_ = check_same(P, code, regs=dict(esi=0x38, ebx=sel, eax=0x12345678),
                         phys_mem=[(P.gdt_phys + 0x38, ldt),
                                   (ldt_phys + 8 * (idx % 3), struct.pack("<II", lo, hi))],
                         count=2)
    if idx >= 3 or idx == 0 and not sel & 0xFFFC:
        assert not re_.eflags & 0x40


def test_selector_ops_memory_operand():
    for op, code in (("lar", "0f0205"), ("lsl", "0f0305"), ("verr", "0f0025"), ("verw", "0f002d")):
        check_same(P, bytes.fromhex(code) + struct.pack("<I", DATA), mem=[(DATA, b"\x23\x00")])


def test_descriptor_read_page_fault():
    """A GDT on a not-present page: the implicit supervisor read is #PF with
    U/S = 0 in its error code."""
    gdtr = struct.pack("<HI", 0x3F, P.unmapped_lin)
    code = m32(0x01, 2, DATA) + LAR_BX
    ro, re_ = check_same(P, code, regs=dict(ebx=0x8), mem=[(DATA, gdtr)], count=2)
    assert (re_.vector, re_.error_code, re_.cr2) == (14, 0, P.unmapped_lin + 8)


# --- ARPL --------------------------------------------------------------------
@SET
@given(d=st.integers(0, 0xFFFF), s=st.integers(0, 0xFFFF), hi=st.integers(0, 0xFFFF),
       cpl=cpls(), fl=st.integers(0, 0xFFF).map(lambda v: (v & ARITH) | 2))
def test_arpl(d, s, hi, cpl, fl):
    ro, re_ = check_same(P, "arpl ax, bx", regs=_r(cpl, eax=hi << 16 | d, ebx=s, eflags=fl))
    want = (d & ~3) | (s & 3) if (d & 3) < (s & 3) else d
    assert re_.eax == hi << 16 | want
    assert bool(re_.eflags & 0x40) == ((d & 3) < (s & 3))
    assert re_.eflags & ARITH & ~0x40 == fl & ARITH & ~0x40
    check_same(P, "arpl word ptr [%#x], bx" % DATA, regs=_r(cpl, ebx=s, eflags=fl),
               mem=[(DATA, struct.pack("<H", d))])


def test_arpl_read_only_page_faults():
    """ARPL is a read-modify-write: the store (and its #PF) happens even when
    the RPL does not change."""
    ro, re_ = check_same(P, "arpl word ptr [%#x], bx" % P.ro_lin, regs=dict(ebx=0, cpl=3))
    assert (re_.vector, re_.error_code) == (14, 7)


# --- LTR / LLDT --------------------------------------------------------------
TSS_LIN = P.sys_lin + 0x6000


def _slot(d, at=0x38):
    return [(P.gdt_phys + at, d)]


AVAIL_TSS = descriptor(TSS_LIN, 0x67, 0x89, 0)
LDT_DESC = descriptor(TSS_LIN, 0x17, 0x82, 0)


@pytest.mark.parametrize("src", ["ax", "word ptr [%#x]" % DATA])
def test_ltr_loads_and_marks_busy(src):
    code = "ltr %s; str ebx" % src
    ro, re_ = check_same(P, code, regs=dict(eax=0x38), mem=[(DATA, b"\x38\x00")],
                         phys_mem=_slot(AVAIL_TSS), count=2)
    R_ = re_.emu.cpu.R
    assert re_.ebx == 0x38
    assert (R_[S.TR_BASE], R_[S.TR_LIMIT], R_[S.TR_ATTR]) == (TSS_LIN, 0x67, 0x8B)
    assert re_.emu.phys.ram[P.gdt_phys + 0x38 + 5] == 0x8B


@pytest.mark.parametrize("sel,desc,vec,code", [
    (0x38, descriptor(TSS_LIN, 0x67, 0x81, 0), None, None),      # 16-bit TSS: fine
    (0x3B, AVAIL_TSS, None, None),                                # RPL ignored
    (0x38, descriptor(TSS_LIN, 0x67, 0x09, 0), 11, 0x38),         # not present
    (0x38, descriptor(TSS_LIN, 0x67, 0x8B, 0), 13, 0x38),         # busy
    (0x38, LDT_DESC, 13, 0x38),                                   # an LDT
    (0x38, descriptor(0, 0xFFFFF, 0x93, 0xC), 13, 0x38),          # data segment
    (0x3C, AVAIL_TSS, 13, 0x3C),                                  # TI = 1
    (0x40, AVAIL_TSS, 13, 0x40),                                  # beyond the GDT limit
    (0x28, AVAIL_TSS, 13, 0x28),                                  # the busy layout TSS
])
def test_ltr_checks(sel, desc, vec, code):
    ro, re_ = check_same(P, "ltr ax", regs=dict(eax=sel), phys_mem=_slot(desc))
    if vec is None:
        assert re_.exception is None and re_.emu.cpu.R[S.TR_SEL] == sel
    else:
        assert (re_.vector, re_.error_code) == (vec, code)
        assert re_.emu.cpu.R[S.TR_SEL] == P.sel_tss


@pytest.mark.parametrize("sel", [0, 3])
def test_ltr_null_gp(sel):
    """U3: Unicorn accepts a null selector; SDM: #GP(0)."""
    r = emu_run(P, "ltr ax", regs=dict(eax=sel))
    assert (r.vector, r.error_code) == (13, 0)


@pytest.mark.parametrize("code", ["ltr ax", "lldt ax"])
def test_ltr_lldt_cpl3_gp(code):
    ro, re_ = check_same(P, code, regs=dict(cpl=3, eax=0x38), phys_mem=_slot(AVAIL_TSS))
    assert (re_.vector, re_.error_code) == (13, 0)


@pytest.mark.parametrize("sel,desc,vec,code", [
    (0x38, LDT_DESC, None, None),
    (0x3B, LDT_DESC, None, None),
    (0x00, LDT_DESC, None, None),                     # null: LDTR invalid, no fault
    (0x04, LDT_DESC, 13, 0x04),                       # bits 2-15 not all 0: not null, TI=1
    (0x38, descriptor(TSS_LIN, 0x17, 0x02, 0), 11, 0x38),
    (0x38, AVAIL_TSS, 13, 0x38),
    (0x38, descriptor(0, 0xFFFFF, 0x93, 0xC), 13, 0x38),
    (0x3C, LDT_DESC, 13, 0x3C),
    (0x48, LDT_DESC, 13, 0x48),
])
def test_lldt_checks(sel, desc, vec, code):
    ro, re_ = check_same(P, "lldt ax; sldt ebx", regs=dict(eax=sel, ebx=0x77),
                         phys_mem=_slot(desc), count=2)
    R_ = re_.emu.cpu.R
    if vec is None:
        assert re_.exception is None and re_.ebx == sel
        if sel & 0xFFFC:
            assert (R_[S.LDTR_BASE], R_[S.LDTR_LIMIT], R_[S.LDTR_ATTR]) == (TSS_LIN, 0x17, 0x82)
        else:
            assert R_[S.LDTR_LIMIT] == 0
    else:
        assert (re_.vector, re_.error_code) == (vec, code)


# --- CPUID -------------------------------------------------------------------------
def _cpuid(leaf, cpl=0, layout=P):
    r = emu_run(layout, "cpuid", regs=_r(cpl, eax=leaf, ecx=0x55, ebx=0x66, edx=0x77))
    assert r.exception is None
    return r.eax, r.ebx, r.ecx, r.edx


@pytest.mark.parametrize("cpl", [0, 3])
def test_cpuid_identity(cpl):
    a, b, c, d = _cpuid(0, cpl)
    assert a == 2
    assert struct.pack("<III", b, d, c) == b"GenuineIntel"
    a, b, c, d = _cpuid(1, cpl)
    family, model, stepping = (a >> 8) & 0xF, (a >> 4) & 0xF, a & 0xF
    assert (family, model, stepping) == (6, 3, 3)
    assert (b, c) == (0, 0)
    want = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 11) \
        | (1 << 13) | (1 << 15) | (1 << 16)                 # ... CMOV, PAT
    fx = _resolve("x87.fxsave") is not None and _resolve("x87.fxrstor") is not None
    if fx:
        want |= 1 << 24
    assert d == want
    # SEP is real: not the Pentium Pro case (family 6, model < 3, stepping < 3)
    assert not (model < 3 and stepping < 3)
    assert _cpuid(1, 0, R) == (a, b, c, d)


def test_cpuid_leaf2_and_fallback():
    l2 = _cpuid(2)
    assert l2[0] & 0xFF == 1                            # one call gives all descriptors
    for leaf in (3, 4, 0x10, 0x7FFFFFFF, 0x40000000, 0x80000005, 0xFFFFFFFF):
        assert _cpuid(leaf) == l2, hex(leaf)


def test_cpuid_brand_string():
    assert _cpuid(0x80000000)[0] == 0x80000004
    assert _cpuid(0x80000001) == (0, 0, 0, 0)           # no NX / LM
    raw = b"".join(struct.pack("<4I", *_cpuid(0x80000002 + i)) for i in range(3))
    assert raw.rstrip(b"\0").isascii() and raw.endswith(b"\0")
    assert raw.rstrip(b"\0") == CPUID.BRAND


def test_cpuid_ignores_high_and_flags():
    """All four registers written (32 bits), no flag changes."""
    r = emu_run(P, "cpuid", regs=dict(eax=0, eflags=0x8D7))
    assert r.eflags & 0x8D7 == 0x8D7


# --- RDTSC / RDMSR / WRMSR ----------------------------------------------------
@pytest.mark.parametrize("cpl", [0, 3])
@pytest.mark.parametrize("tsd", [False, True])
def test_rdtsc_tsd(cpl, tsd):
    cr4 = P.regs["cr4"] | (4 if tsd else 0)
    r = emu_run(P, "rdtsc", regs=_r(cpl, cr4=cr4))
    if tsd and cpl:
        assert (r.vector, r.error_code) == (13, 0)
        ro, re_ = check_same(P, "rdtsc", regs=_r(cpl, cr4=cr4))    # Unicorn checks TSD too
    else:
        assert r.exception is None


@pytest.mark.parametrize("layout", [R, P])
@pytest.mark.parametrize("k", [0, 1, 5, 40, 100])
def test_rdtsc_exact_inside_blocks(layout, k):
    """The TSC counts retired instructions exactly, even though cpu.icount is
    only advanced at block ends (see msr.clock)."""
    code, want = sys_tsc.delta_guest(k, layout.mode, layout.code_lin)
    r = emu_run(layout, code, count=None)
    assert r.exception is None and r.eax == want["eax"]


def test_rdtsc_single_step_agrees():
    """Stepping one instruction at a time gives the same readings as a run."""
    code, want = sys_tsc.delta_guest(7, 32, P.code_lin)
    side = emu_side(P)
    side.reset(code=code)
    e = side.emu
    n = 0
    while e.reg_read("eip") != P.code_lin + len(code) and n < 100:
        e.step()
        n += 1
    assert e.reg_read("eax") == want["eax"]


@SET
@given(lo=st.integers(0, 2**32 - 1), hi=st.integers(0, 2**32 - 1), k=st.integers(0, 70),
       layout=st.sampled_from([R, P]))
def test_wrmsr_tsc(lo, hi, k, layout):
    code, want = sys_tsc.write_guest(lo, hi, k, layout.mode, layout.code_lin)
    r = emu_run(layout, code, count=None)
    assert r.exception is None
    for reg, v in want.items():
        assert r.regs[reg] == v, reg


@SET
@given(v=st.integers(0, 2**32 - 1), msr=st.sampled_from([0x174, 0x175, 0x176]),
       junk=st.integers(0, 2**32 - 1))
def test_sysenter_msrs_roundtrip(v, msr, junk):
    code = "wrmsr; mov eax, ebx; mov edx, ebx; rdmsr"
    uv = v & 0xFFFF if msr == 0x174 else v      # U5: Unicorn keeps 16 bits of SYSENTER_CS
    ro, re_ = check_same(P, code, regs=dict(ecx=msr, eax=uv, edx=0, ebx=junk), count=4)
    assert (re_.eax, re_.edx) == (uv, 0)
    # P6: 32-bit MSRs, EDX ignored on write (U5: Unicorn keeps 64 bits)
    r = emu_run(P, code, regs=dict(ecx=msr, eax=v, edx=junk, ebx=junk), count=4)
    assert (r.eax, r.edx) == (v, 0)
    check_same(R, code, regs=dict(ecx=msr, eax=uv, edx=0, ebx=junk), count=4)


def test_apic_base_msr():
    code = "wrmsr; xor eax, eax; xor edx, edx; rdmsr"
    r = emu_run(P, code, regs=dict(ecx=0x1B, eax=0xFEE00900, edx=0xF), count=4)
    assert r.exception is None and (r.eax, r.edx) == (0xFEE00900, 0xF)
    for eax, edx in ((0xFEE00901, 0), (0xFEE00B00, 0), (0xFEE00900, 0x10)):
        r = emu_run(P, "wrmsr", regs=dict(ecx=0x1B, eax=eax, edx=edx))
        assert (r.vector, r.error_code) == (13, 0)


def test_bios_sign_and_platform_id():
    r = emu_run(P, "wrmsr; rdmsr", regs=dict(ecx=0x8B, eax=0, edx=0), count=2)
    assert r.exception is None and (r.eax, r.edx) == (0, 0)
    r = emu_run(P, "rdmsr", regs=dict(ecx=0x17, eax=5, edx=5))
    assert r.exception is None and (r.eax, r.edx) == (0, 0)
    r = emu_run(P, "wrmsr", regs=dict(ecx=0x17))
    assert r.vector == 13


@pytest.mark.parametrize("msr", [0, 0x11, 0x1A0, 0x2FF, 0xC0000080, 0xFFFFFFFF])  # 0x2FF: MTRRdefType, not implemented
@pytest.mark.parametrize("code", ["rdmsr", "wrmsr"])
def test_unknown_msr_gp(msr, code):
    """U5: unknown MSRs are #GP(0) (Unicorn lets them through)."""
    r = emu_run(P, code, regs=dict(ecx=msr, eax=0x1111, edx=0x2222))
    assert (r.vector, r.error_code, r.eax, r.edx) == (13, 0, 0x1111, 0x2222)


@pytest.mark.parametrize("code", ["rdmsr", "wrmsr"])
def test_msr_cpl3_gp(code):
    ro, re_ = check_same(P, code, regs=dict(cpl=3, ecx=0x174))
    assert (re_.vector, re_.error_code) == (13, 0)


# --- SYSENTER / SYSEXIT -----------------------------------------------------------
def test_sysexit_same_as_unicorn():
    code, want = sys_sysenter.build(P, upto_ring3=True)
    ro, re_ = check_same(P, code, count=None)
    assert re_.cpl == 3 and re_.sregs["cs"] == 0x1B and re_.sregs["ss"] == 0x23
    for reg, v in want.items():
        assert re_.regs[reg] == v


def test_sysenter_sysexit_roundtrip():
    code, want = sys_sysenter.build(P)
    r = emu_run(P, code, regs=dict(eflags=0x202), count=None)
    assert r.exception is None and r.stop == "end"
    for reg, v in want.items():
        assert r.regs[reg] == v, reg
    assert r.cpl == 0
    assert r.hidden["cs"] == (0x08, 0, 0xFFFFFFFF, 0xC09B)
    assert r.hidden["ss"] == (0x10, 0, 0xFFFFFFFF, 0xC093)
    assert not r.eflags & 0x200                      # SYSENTER cleared IF


def test_sysexit_segments():
    code, _ = sys_sysenter.build(P, upto_ring3=True, sysenter_cs=0x0B)
    r = emu_run(P, code, count=None)
    # selectors derive from the MSR as written (RPL bits included), then OR 3
    assert r.hidden["cs"] == ((0x0B + 16) | 3, 0, 0xFFFFFFFF, 0xC0FB)
    assert r.hidden["ss"] == ((0x0B + 24) | 3, 0, 0xFFFFFFFF, 0xC0F3)
    assert r.cpl == 3


@pytest.mark.parametrize("cs", [0, 3])
def test_sysenter_sysexit_null_cs_gp(cs):
    """IA32_SYSENTER_CS[15:2] = 0: #GP(0) for both."""
    for ins in ("sysenter", "sysexit"):
        code = "mov ecx, 0x174; mov eax, %d; xor edx, edx; wrmsr; %s" % (cs, ins)
        r = emu_run(P, code, count=None)
        assert (r.vector, r.error_code) == (13, 0)
    ro, re_ = check_same(P, "sysexit")                 # MSR 0 at start: Unicorn too
    assert re_.vector == 13


def test_sysexit_cpl3_and_real_mode_gp():
    ro, re_ = check_same(P, "sysexit", regs=dict(cpl=3))
    assert (re_.vector, re_.error_code) == (13, 0)
    ro, re_ = check_same(R, "sysexit")
    assert re_.vector == 13
    r = emu_run(R, "mov ecx, 0x174; mov eax, 8; xor edx, edx; wrmsr; sysenter", count=None)
    assert r.vector == 13                              # CR0.PE = 0


def test_sysenter_from_ring3_needs_no_iopl():
    """SYSENTER works at CPL 3 with IOPL 0 and clears VM/IF/RF (state built directly)."""
    side = emu_side(P)
    code = assemble("sysenter", 32, P.code_lin)
    side.reset(regs=dict(cpl=3, eflags=0x202), code=code)
    cpu = side.cpu
    cpu.R[S.SYSENTER_CS], cpu.R[S.SYSENTER_ESP], cpu.R[S.SYSENTER_EIP] = 0x08, 0x1000, 0x401800
    cpu.set_eflags(0x20202)                            # VM=1 (V86 state, built directly)
    side.emu.run(count=1)
    assert cpu.R[S.EIP] == 0x401800 and cpu.R[S.ESP] == 0x1000
    assert cpu.R[S.CPL] == 0 and not cpu.v86
    assert side.emu.reg_read("eflags") & 0x30200 == 0


# --- core issues found (see the report) ------------------------------------------
def test_mov_cr_mod_bits_ignored():
    ro, re_ = check_same(P, bytes.fromhex("0f2005") + b"\x90" * 8)
    assert re_.eip == P.code_lin + 3


def test_pat_msr():
    """IA32_PAT (0x277): power-on value, round trip, reserved memory types #GP."""
    from emu.cpu import msr
    e = Emu(ram_size=1 << 20)
    assert msr.rdmsr(e.cpu, 0x277) == 0x0007040600070406
    msr.wrmsr(e.cpu, 0x277, 0x0001050406070001)
    assert msr.rdmsr(e.cpu, 0x277) == 0x0001050406070001
    for bad in (0x02, 0x03 << 8, 0x08 << 56):
        with pytest.raises(CPUFault) as ei:
            msr.wrmsr(e.cpu, 0x277, bad)
        assert ei.value.vector == 13
    assert msr.rdmsr(e.cpu, 0x277) == 0x0001050406070001
