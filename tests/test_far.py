"""Far transfers: JMP/CALL far, RET far, IRET, call gates and task switches.

Differential against Unicorn (tests/difftest.py) where Unicorn models the
behaviour - QEMU implements far JMP/CALL (code segments, call gates, TSS
and task gates), RET far and IRET, privilege changes included - and checked
against the SDM (values worked out in the test) where it does not:

* Unicorn does not set the accessed bit of a code/stack descriptor loaded by
  a far transfer (neither in memory nor in its descriptor cache); the SDM
  says the processor sets it on every segment load.  Differential tests
  therefore use descriptors with the accessed bit preset;
  test_far_jmp_sets_accessed_bit checks the SDM behaviour.

Descriptors under test go into GDT entries 6 and 7 (selectors 0x30, 0x38),
written into guest memory on both sides (``phys_mem``); SDM-checked guest
programs use tests/guests/prot_machine.py, which may extend the GDT.
"""
import struct

import pytest
from hypothesis import given, settings, assume, strategies as st, HealthCheck

from emu.cpu import state as S
from tests.difftest import check_same
from tests.layout import PROT32_PAGED as L, REAL16 as RL, descriptor
from tests.oracle import far_jmp, far_call, retf
from tests.guests.prot_machine import Machine, call_gate, task_gate, int_gate, d32, HANDLER_LIN
from tests.guests import prot_programs as P

SLOT, SLOT2 = 0x30, 0x38
CODE_END = L.code_lin + 7          # right after a 7-byte far JMP/CALL ptr16:32
SETTINGS = dict(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def slots(d6=None, d7=None, extra=()):
    pm = []
    if d6 is not None:
        pm.append((L.gdt_phys + SLOT, bytes(d6)))
    if d7 is not None:
        pm.append((L.gdt_phys + SLOT2, bytes(d7)))
    return pm + list(extra)


def same(code, regs=None, phys_mem=None, mem=None, layout=L, hidden=True, count=1):
    """check_same, plus the CPL and (without an exception) the hidden segment parts."""
    ro, re_ = check_same(layout, code, regs=regs, phys_mem=phys_mem, mem=mem, count=count)
    if layout.paging:
        assert ro.cpl == re_.cpl, (ro.cpl, re_.cpl)
    if hidden and ro.exception is None:
        for n in ("cs", "ss", "ds", "es", "fs", "gs"):
            u, e = ro.hidden[n], re_.hidden[n]
            if u.sel & ~3 == 0 and layout.paging and n != "cs":
                continue        # null selector: the hidden part is unusable either way
            if layout is RL and n == "cs":
                u, e = u._replace(attr=0), e._replace(attr=0)     # oracle quirk Q6
            assert u == e, (n, u, e)
    return ro, re_


# --- descriptor strategies --------------------------------------------------------------

def code_data_access():
    """Access byte of a code/data descriptor, accessed bit preset (see module doc)."""
    return st.builds(lambda p, dpl, t: (p << 7) | (dpl << 5) | 0x10 | t | 1,
                     st.integers(0, 1), st.integers(0, 3), st.integers(0, 15))


def system_access_no_task():
    """System descriptors other than TSS/task gate/call gate (those have own tests)."""
    return st.builds(lambda p, dpl, t: (p << 7) | (dpl << 5) | t,
                     st.integers(0, 1), st.integers(0, 3),
                     st.sampled_from([0, 2, 6, 7, 8, 10, 13, 14, 15]))


limits = st.sampled_from([(0xFFFFF, 0x8), (0x00400, 0x8), (0x401006, 0x0), (0x401007, 0x0),
                          (0x401005, 0x0), (0xFFFF, 0x0)])


# --- JMP far / CALL far to code segments ------------------------------------------------------

@settings(**dict(SETTINGS, max_examples=120))
@given(access=st.one_of(code_data_access(), system_access_no_task()), rpl=st.integers(0, 3),
       ring3=st.booleans(), call=st.booleans(), lim=limits, big=st.booleans(),
       opsize16=st.booleans(), mem_form=st.booleans())
def test_far_jmp_call_to_any_descriptor(access, rpl, ring3, call, lim, big, opsize16, mem_form):
    """JMP/CALL ptr16:32 / ptr16:16, or m16:32 / m16:16 (FF /3, FF /5), to a
    random descriptor from ring 0 or 3 with any RPL."""
    raw_limit, g = lim
    if raw_limit > 0xFFFFF:
        raw_limit, g = raw_limit >> 12, 0x8        # page-granular: limit 0x401FFF
    flags = g | (0x4 if big else 0)
    if opsize16:
        # o16 ptr16:16 into a segment based at code_lin: offset 6 is the end of
        # the 6-byte instruction; limits 6/5 put it just inside/outside
        lim16 = {0xFFFFF: 0xFFFF, 0x00400: 6, 0x401006: 5, 0x401007: 0}.get(lim[0], 0xFFFF)
        d = descriptor(L.code_lin, lim16, access, flags & ~0x8)
        code = b"\x66" + (b"\x9a" if call else b"\xea") + struct.pack("<HH", 6, SLOT | rpl)
        ptr = struct.pack("<HH", 8, SLOT | rpl)
    else:
        d = descriptor(0, raw_limit, access, flags)
        code = (far_call if call else far_jmp)(SLOT | rpl, CODE_END, 32)
        ptr = struct.pack("<IH", L.code_lin + 8, SLOT | rpl)
    mem = None
    if mem_form:
        # FF /3 or FF /5 with [disp32]: 6 bytes (+ 66): the end is at +6 / +7
        code = (b"\x66" if opsize16 else b"") + (b"\xff\x1d" if call else b"\xff\x2d") + \
            struct.pack("<I", L.data_lin[0] + 0x20)
        ptr = struct.pack("<HH", 7, SLOT | rpl) if opsize16 else struct.pack("<IH", L.code_lin + 6,
                                                                              SLOT | rpl)
        mem = [(L.data_lin[0] + 0x20, ptr)]
    if call:
        # Unicorn/QEMU checks a CALL's new EIP only after pushing the return
        # address and reports #GP(selector); the SDM says #GP(0) before any push
        # (test_transfer_eip_beyond_cs_limit): no such case here
        byte_limit = lim16 if opsize16 else ((raw_limit << 12) | 0xFFF if g else raw_limit)
        target = struct.unpack("<H" if opsize16 else "<I", ptr[:-2])[0] if mem_form else \
            (6 if opsize16 else CODE_END)
        assume(byte_limit >= target)
    regs = dict(cpl=3) if ring3 else {}
    same(code, regs=regs, phys_mem=slots(d), mem=mem)


@pytest.mark.parametrize("sel", [0, 1, 3, 0x40, 0x43, 0xFFF8, 0x04, 0x0C, 0x2B])
@pytest.mark.parametrize("call", [False, True])
def test_far_jmp_call_bad_selectors(sel, call):
    """Null (#GP(0)), beyond the GDT limit, LDT selector with no LDT (#GP(sel)),
    the busy TSS of the current task (#GP(sel))."""
    code = (far_call if call else far_jmp)(sel, CODE_END, 32)
    ro, re_ = same(code)
    want = 0 if sel & 0xFFFC == 0 else sel & 0xFFFC
    assert (re_.exception.vector, re_.exception.error_code) == (13, want)


@pytest.mark.parametrize("what", ["jmp", "call", "retf", "iret", "retf_outer", "iret_outer",
                                  "jmp_gate", "call_gate", "call_gate_inner", "int_gate"])
def test_transfer_eip_beyond_cs_limit(what):
    """SDM: a far transfer whose new EIP is beyond the new CS limit raises #GP(0)
    (an interrupt: #GP(EXT)) at the transferring instruction, before anything
    is pushed or loaded.  Unicorn/QEMU differs: CALL far reports #GP(selector)
    after pushing, RETF/IRET/call gates do not check (the fetch faults later),
    and a call gate to an inner level with such an EIP aborts Unicorn."""
    m = Machine(ring3=what == "call_gate_inner")
    m.gdt(9, d32(0, 0x1000, 0x9B, 0x4))                    # 0x48: ring-0 code, limit 0x1000
    m.gdt(10, d32(0, 0x1000, 0xFB, 0x4))                   # 0x50: ring-3 code, limit 0x1000
    m.gdt(11, call_gate(0x401007, 0x48, dpl=3))            # 0x58
    m.idt(0x60, int_gate(0x401007, 0x48, dpl=3))
    esp = L.regs["esp"]
    code = {"jmp": far_jmp(0x48, 0x401007, 32), "call": far_call(0x48, 0x401007, 32),
            "retf": retf(), "iret": b"\xcf", "retf_outer": retf(), "iret_outer": b"\xcf",
            "jmp_gate": far_jmp(0x58, 0, 32), "call_gate": far_call(0x58, 0, 32),
            "call_gate_inner": far_call(0x5B, 0, 32), "int_gate": b"\xcd\x60"}[what]
    frame = {"retf": struct.pack("<2I", 0x401001, 0x48),
             "iret": struct.pack("<3I", 0x401001, 0x48, 2),
             "retf_outer": struct.pack("<4I", 0x401001, 0x53, esp - 0x100, 0x23),
             "iret_outer": struct.pack("<5I", 0x401001, 0x53, 2, esp - 0x100, 0x23)}.get(what, b"")
    m.write(esp - 0x40, bytes(0x40) + frame + bytes(0x20))
    before = m.read(esp - 0x40, 0x80)
    m.code(code)
    m.cpu.stop_on_fault = True                  # report the fault, deliver nothing
    regs = list(m.R[:S.EFLAGS + 1])
    segs = [m.seg(n) for n in ("cs", "ss", "ds")]
    st_ = m.run(count=1)
    assert (st_.reason, st_.vector, st_.error_code) == ("exception", 13, 0)
    assert list(m.R[:S.EFLAGS + 1]) == regs and [m.seg(n) for n in ("cs", "ss", "ds")] == segs
    assert m.read(esp - 0x40, 0x80) == before


def test_far_jmp_sets_accessed_bit():
    """SDM Vol. 3 3.4.5.1: loading a segment sets its accessed bit (memory and
    cache).  Unicorn leaves it clear (documented difference)."""
    m = Machine()
    m.gdt(9, d32(0, 0xFFFFF, 0x9A))                   # ring-0 code, A = 0
    end = m.code(far_jmp(0x48, L.code_lin + 7, 32))
    m.run(until=end, count=1)
    assert m.seg("cs").sel == 0x48 and m.seg("cs").attr & 1
    assert m.gdt_raw(9)[5] == 0x9B


def test_far_call_pushes_and_ret_far_returns():
    """CALL far / RETF at the same level (guest program): the callee sees the
    pushed CS:EIP and runs in its own code segment."""
    m = Machine(ring3=True)
    m.gdt(9, d32(0, 0xFFFFF, 0xFB))                   # a second ring-3 code segment (0x4B)
    end = m.code(P.far_call_and_back(0x4B, L.code_lin + 0x400))
    m.code(P.FAR_CALLEE, L.code_lin + 0x400)
    st_ = m.run(until=end)
    assert st_.reason == "until", st_
    R = m.R
    assert R[S.EAX] == 0x1B and R[S.EBX] == 0x4B and R[S.ECX] == L.code_lin + 7
    assert R[S.ESP] == L.regs["esp"] and m.seg("cs").sel == 0x1B


# --- call gates -----------------------------------------------------------------------------

@settings(**SETTINGS)
@given(count=st.integers(0, 5), params=st.lists(st.integers(0, 0xFFFFFFFF), min_size=5, max_size=5),
       gate16=st.booleans(), gdpl=st.integers(0, 3), rpl=st.integers(0, 3),
       target_access=st.sampled_from([0x9B, 0x9F, 0xBB, 0xFB, 0x93, 0x1B, 0xDB]),
       gate_present=st.booleans(), null_target=st.booleans())
def test_call_gate_from_ring3(count, params, gate16, gdpl, rpl, target_access, gate_present,
                              null_target):
    """CALL through a call gate from ring 3: to ring 0 (stack switch + parameter
    copy), and every gate/target fault.  (Through a gate to a conforming
    segment, Unicorn loads CS.RPL = the segment's DPL where the SDM keeps the
    CPL: test_call_gate_to_conforming_keeps_cpl.)"""
    assume(target_access != 0x9F)
    # slot 7: the target code segment, base code_lin, so a 16-bit gate offset reaches it
    target = descriptor(L.code_lin, 0xFFFF, target_access, 0x4)
    off = 7                                             # -> linear code_lin + 7 = the end
    csel = 0 if null_target else SLOT2
    g = call_gate(off, csel, dpl=gdpl, count=count, size=16 if gate16 else 32,
                  present=gate_present)
    code = far_call(SLOT | rpl, 0, 32)
    esp = L.regs["esp"]
    w = 2 if gate16 else 4
    stack = b"".join(struct.pack("<I" if w == 4 else "<H", p & (0xFFFFFFFF if w == 4 else 0xFFFF))
                     for p in params)
    same(code, regs=dict(cpl=3), phys_mem=slots(g, target), mem=[(esp, stack)])


@settings(max_examples=30, deadline=None)
@given(count=st.integers(0, 31), gate16=st.booleans(), dpl=st.integers(0, 2),
       params=st.lists(st.integers(0, 0xFFFFFFFF), min_size=31, max_size=31))
def test_call_gate_inner_frame_sdm(count, gate16, dpl, params):
    """CALL through a call gate from ring 3 to ring ``dpl`` (SDM CALL
    MORE-PRIVILEGE): SS:ESP from the TSS for that level, the frame
    old SS, old ESP, ``count`` parameters (same order as on the caller's
    stack), old CS, old EIP - words for a 16-bit gate - and CPL = dpl."""
    m = Machine(ring3=True)
    tss = L.tss_lin
    new_esp = L.kstack_top - 0x100 * dpl
    m.gdt(9, descriptor(L.code_lin, 0xFFFF, 0x9B | (dpl << 5), 0x4))     # 0x48 target code
    m.gdt(10, d32(0, 0xFFFFF, 0x93 | (dpl << 5)))                        # 0x50 its stack
    ss_sel = 0x50 | dpl
    m.write(tss + 4 + 8 * dpl, struct.pack("<II", new_esp, ss_sel))
    m.gdt(11, call_gate(0x7F0, 0x48, dpl=3, count=count, size=16 if gate16 else 32))
    w = 2 if gate16 else 4
    fmt = "<H" if gate16 else "<I"
    user_esp = L.regs["esp"]
    wmask = (1 << (8 * w)) - 1
    m.write(user_esp, b"".join(struct.pack(fmt, p & wmask) for p in params[:count]))
    m.code(far_call(0x5B, 0, 32))
    m.run(count=1)
    R = m.R
    assert R[S.CPL] == dpl and m.seg("cs").sel == 0x48 | dpl and m.seg("ss").sel == ss_sel
    assert R[S.EIP] == 0x7F0
    n = (4 + count) * w
    assert R[S.ESP] == new_esp - n
    got = m.read(new_esp - n, n)
    want = (struct.pack(fmt, L.code_lin + 7 & wmask) + struct.pack(fmt, 0x1B)
            + b"".join(struct.pack(fmt, p & wmask) for p in params[:count])
            + struct.pack(fmt, user_esp & wmask) + struct.pack(fmt, 0x23))
    assert got == want


@pytest.mark.parametrize("jmp", [False, True])
def test_call_gate_to_conforming_keeps_cpl(jmp):
    """SDM CALL/JMP CALL-GATE, SAME-PRIVILEGE: CS(RPL) <- CPL; a conforming
    segment never changes the CPL and there is no stack switch."""
    m = Machine(ring3=True)
    m.gdt(9, call_gate(7, 0x50, dpl=3))                          # 0x48
    m.gdt(10, descriptor(L.code_lin, 0xFFFF, 0x9F, 0x4))         # 0x50 conforming, DPL 0
    m.code((far_jmp if jmp else far_call)(0x4B, 0, 32))
    m.run(count=1)
    assert m.seg("cs") == (0x53, L.code_lin, 0xFFFF, 0x409F) and m.R[S.CPL] == 3
    assert m.R[S.EIP] == 7 and m.seg("ss").sel == 0x23
    if jmp:
        assert m.R[S.ESP] == L.regs["esp"]
    else:
        assert m.R[S.ESP] == L.regs["esp"] - 8
        assert m.read(L.regs["esp"] - 8, 8) == struct.pack("<II", L.code_lin + 7, 0x1B)


def test_call_gate_round_trip_with_parameters():
    """Ring 3 -> ring 0 through a call gate with 3 parameters, back with RETF 12
    (guest program; SDM Vol. 3 5.8.5/5.8.6)."""
    m = Machine(ring3=True)
    m.gdt(9, call_gate(HANDLER_LIN, 0x08, dpl=3, count=3))      # 0x4B
    end = m.code(P.CALL_GATE_USER)
    m.handler(P.CALL_GATE_KERNEL)
    st_ = m.run(until=end)
    assert st_.reason == "until", st_
    R = m.R
    esp0 = L.regs["esp"]
    # the kernel saw the parameters, the caller's SS:ESP and CS:EIP
    assert (R[S.EAX], R[S.EBX], R[S.ECX]) == (0x11111111, 0x22222222, 0x33333333)
    assert R[S.EDX] == esp0 - 12                # old ESP (parameters on it)
    assert R[S.ESI] == 0x23                     # old SS
    assert R[S.EDI] == 0x1B                     # old CS
    assert R[S.EBP] == 0                        # CPL seen by the kernel (CS & 3)
    assert R[S.ESP] == esp0                     # RETF 12 released the caller's parameters
    assert R[S.CPL] == 3 and m.seg("cs").sel == 0x1B and m.seg("ss").sel == 0x23


# --- RET far -----------------------------------------------------------------------------------

@settings(**SETTINGS)
@given(cs=st.sampled_from([0x08, 0x1B, 0x30, 0x31, 0x33, 0x38, 0x3B, 0x18, 0x1A, 0x13, 0x23,
                           0x28, 0x00, 0x40]),
       ss=st.sampled_from([0x10, 0x23, 0x20, 0x21, 0x1B, 0x00, 0x33, 0x3B, 0x43]),
       imm=st.sampled_from([None, 0, 4, 8]), ring3=st.booleans(), o16=st.booleans(),
       access6=code_data_access(), access7=code_data_access())
def test_retf(cs, ss, imm, ring3, o16, access6, access7):
    """RETF / RETF imm16 at the same level and to an outer level, with random
    return selectors (GDT slots 6/7: random code/data descriptors based at
    code_lin, so that a successful return lands on the end of the test code).
    A return offset beyond the CS limit is test_transfer_eip_beyond_cs_limit:
    Unicorn does not check it at the RETF."""
    if o16 and cs in (0x08, 0x1B):
        return          # a 16-bit IP in a base-0 segment lands on unmapped memory
    code = retf(imm)
    if o16:
        code = b"\x66" + code
    fmt = "<H" if o16 else "<I"
    mask = 0xFFFF if o16 else 0xFFFFFFFF
    eip = len(code) if cs >> 3 in (6, 7) else L.code_lin + len(code)
    frame = struct.pack(fmt, eip & mask) + struct.pack(fmt, cs) + bytes(imm or 0)
    frame += struct.pack(fmt, (L.regs["esp"] - 0x400) & mask) + struct.pack(fmt, ss)
    regs = dict(cpl=3) if ring3 else {}
    d6 = descriptor(L.code_lin, 0xFFFF, access6, 0x4)
    d7 = descriptor(L.code_lin, 0xFFFF, access7, 0x4)
    same(code, regs=regs, mem=[(L.regs["esp"], frame)], phys_mem=slots(d6, d7))


def test_retf_to_outer_level_nulls_data_segments():
    """RETF from ring 0 to ring 3: DS/ES/FS/GS holding DPL-0 data become null;
    a DPL-3 one stays (SDM RET pseudocode); compared with Unicorn."""
    frame = struct.pack("<4I", CODE_END - 6, 0x1B, L.regs["esp"] - 0x100, 0x23)
    ro, re_ = same(retf(), regs=dict(ds=0x10, es=0x23, fs=0x10, gs=0x23),
                   mem=[(L.regs["esp"], frame)])
    assert re_.sregs == dict(es=0x23, cs=0x1B, ss=0x23, ds=0, fs=0, gs=0x23)
    assert re_.cpl == 3


# --- IRET --------------------------------------------------------------------------------------

flags_images = st.integers(0, 0x3FFFFF).map(lambda f: (f & 0x3F7FD7 & ~0x24000) | 2)   # VM=NT=0


@settings(**SETTINGS)
@given(image=flags_images, cur=flags_images, ring3=st.booleans(), to3=st.booleans(),
       o16=st.booleans(), ds=st.sampled_from([0x10, 0x23]))
def test_iret_same_and_outer_level(image, cur, ring3, to3, o16, ds):
    """IRET at the same level and from ring 0 to ring 3: which EFLAGS bits
    load depends on CPL and IOPL (IF, IOPL, VIF/VIP), compared with Unicorn.
    The 16-bit form returns into GDT slot 6/7 (code based at code_lin).

    Unicorn/QEMU never loads VIF/VIP on a protected-mode IRET; the SDM loads
    them at CPL 0 with a 32-bit operand size (test_iret_loads_vif_vip_at_cpl0):
    here the image carries the current VIF/VIP so both agree."""
    image = (image & ~0x180000) | (cur & 0x180000)
    fmt = "<H" if o16 else "<I"
    mask = 0xFFFF if o16 else 0xFFFFFFFF
    dpl3 = ring3 or to3
    if o16:
        tcs, eip = (SLOT2 | 3, 1) if dpl3 else (SLOT, 1)
    else:
        tcs, eip = (0x1B if dpl3 else 0x08), L.code_lin + 1
    tss = 0x23 if dpl3 else 0x10
    frame = struct.pack(fmt, eip) + struct.pack(fmt, tcs) + struct.pack(fmt, image & mask)
    frame += struct.pack(fmt, (L.regs["esp"] - 0x200) & mask) + struct.pack(fmt, tss)
    code = (b"\x66" if o16 else b"") + b"\xcf"
    regs = dict(eflags=cur & ~0x100, ds=ds if not ring3 else 0x23)
    if ring3:
        regs["cpl"] = 3
    d6 = descriptor(L.code_lin, 0xFFFF, 0x9B, 0x4)
    d7 = descriptor(L.code_lin, 0xFFFF, 0xFB, 0x4)
    same(code, regs=regs, mem=[(L.regs["esp"], frame)], phys_mem=slots(d6, d7))


@pytest.mark.parametrize("cpl3", [False, True])
def test_iret_loads_vif_vip_at_cpl0(cpl3):
    """SDM IRET pseudocode: IF CPL = 0 ... IF OperandSize = 32 THEN EFLAGS(VM,
    VIF, VIP) <- tempEFLAGS.  (Unicorn keeps the old VIF/VIP: a QEMU deviation.)"""
    m = Machine(ring3=cpl3, regs=dict(eflags=0x2))
    cs = 0x1B if cpl3 else 0x08
    m.write(L.regs["esp"], struct.pack("<3I", L.code_lin + 1, cs, 0x180002))
    end = m.code("iretd; nop")
    m.run(until=end - 1)
    got = m.emu.reg_read("eflags") & 0x180000
    assert got == (0 if cpl3 else 0x180000)


def test_iret_to_v86_stops_the_vm():
    """IRET with VM=1 in the image at CPL 0 would enter virtual-8086 mode: not
    supported, the run ends with a clean VM stop."""
    m = Machine()
    frame = struct.pack("<9I", 0x100, 0x1000, 0x20002, 0xFF00, 0x2000, 0, 0, 0, 0)
    m.write(L.regs["esp"], frame)
    end = m.code("iretd")
    st_ = m.run(until=end)
    assert st_.reason == "vmstop" and "virtual-8086" in st_.message


# --- task switches -------------------------------------------------------------------------

TSS2_PHYS = 0x6000
TSS2_LIN = L.sys_lin + TSS2_PHYS


def tss32(eip, cs=0x08, ss=0x10, ds=0x10, esp=None, eflags=0x2, regs=(0,) * 8, ldt=0,
          cr3=None, link=0, tbit=0):
    esp = L.kstack_top - 0x800 if esp is None else esp
    cr3 = L.regs["cr3"] if cr3 is None else cr3
    b = bytearray(0x68)
    struct.pack_into("<I", b, 0x00, link)
    struct.pack_into("<II", b, 0x04, L.kstack_top, 0x10)
    struct.pack_into("<III", b, 0x1C, cr3, eip, eflags)
    r = list(regs)
    r[4] = esp
    struct.pack_into("<8I", b, 0x28, *r)
    struct.pack_into("<6I", b, 0x48, ds, cs, ss, ds, ds, ds)
    struct.pack_into("<IHH", b, 0x60, ldt, tbit, 0x68)
    return bytes(b)


def tss_desc(lin, busy=False, dpl=0, present=True, limit=0x67):
    access = (0x80 if present else 0) | (dpl << 5) | (0x0B if busy else 0x09)
    return descriptor(lin, limit, access, 0)


@settings(max_examples=25, deadline=None)
@given(call=st.booleans(), via_gate=st.booleans(), gprs=st.lists(st.integers(0, 0xFFFFFFFF),
       min_size=8, max_size=8), arith=st.integers(0, 0xFFF).map(lambda f: (f & 0x8D5) | 2),
       ring3=st.booleans())
def test_task_switch_jmp_call(call, via_gate, gprs, arith, ring3):
    """JMP/CALL to a TSS descriptor or through a task gate: the new task's
    registers, the saved state in the old TSS, busy bits, link and NT, CR0.TS
    (memory compared in full with Unicorn)."""
    tss2 = tss32(CODE_END, regs=gprs, eflags=arith)
    target = (SLOT2 | (3 if ring3 else 0)) if via_gate else SLOT
    code = (far_call if call else far_jmp)(target, 0, 32)
    regs = dict(eax=0x12345678, ebp=0x9ABC)
    if ring3:
        regs["cpl"] = 3
    d6 = tss_desc(TSS2_LIN, dpl=3 if ring3 and not via_gate else 0)
    d7 = task_gate(SLOT, dpl=3)
    ro, re_ = same(code, regs=regs, phys_mem=slots(d6, d7, [(TSS2_PHYS, tss2)]))
    if ro.exception is None:
        assert re_.cr0 == ro.cr0 and re_.cr0 & 8
        assert bool(re_.eflags & 0x4000) == call
        assert re_.emu.cpu.R[S.TR_SEL] == SLOT


@settings(max_examples=20, deadline=None)
@given(gprs=st.lists(st.integers(0, 0xFFFFFFFF), min_size=8, max_size=8),
       arith=st.integers(0, 0xFFF).map(lambda f: (f & 0x8D5) | 2), busy=st.booleans(),
       link=st.sampled_from([SLOT, SLOT | 3, 0x0C, 0x40, 0x10]))
def test_iret_nt_task_return(gprs, arith, busy, link):
    """IRET with NT=1 returns to the task named by the current TSS's link
    field, which must be a busy TSS (#TS(link) otherwise); compared with
    Unicorn, memory (saved state, busy bits) included.  (A link naming the
    current TSS itself reloads the layout's empty TSS: its null CS is a fault
    after the commit point, which emu delivers even in stop-on-fault mode -
    see tasks.py - so it is not a differential case.)"""
    tss2 = tss32(CODE_END, regs=gprs, eflags=arith)
    # the current task's TSS: link field and (static) CR3, as an OS would set them
    tss1 = [(L.tss_phys, struct.pack("<I", link)),
            (L.tss_phys + 0x1C, struct.pack("<I", L.regs["cr3"]))]
    ro, re_ = same(b"\xcf", regs=dict(eflags=0x4002),
                   phys_mem=slots(tss_desc(TSS2_LIN, busy=busy), None, [(TSS2_PHYS, tss2)] + tss1))
    if ro.exception is None:
        assert re_.emu.cpu.R[S.TR_SEL] == link and re_.cr0 == ro.cr0


def test_task_switch_call_and_iret_back():
    """CALL to a task gate, the new task returns with IRET (NT=1): back in the
    old task after the CALL, busy bits and NT restored (guest program, SDM 7.3/7.4)."""
    m = Machine()
    m.gdt(9, tss_desc(TSS2_LIN))                                     # 0x48 TSS 2
    m.gdt(10, task_gate(0x48, dpl=0))                                # 0x50 task gate
    m.write(TSS2_LIN, tss32(HANDLER_LIN, eflags=0x2))
    end = m.code(P.TASK_CALLER)
    m.handler(P.TASK_CALLEE)
    st_ = m.run(until=end)
    assert st_.reason == "until", st_
    R = m.R
    assert R[S.EAX] == 0xC0FFEE and R[S.EBX] == 0x5A5A      # set by the caller after returning
    assert R[S.ECX] == 0                                    # task 1's own ECX, reloaded
    assert R[S.TR_SEL] == 0x28 and not m.emu.reg_read("eflags") & 0x4000
    assert m.gdt_raw(9)[5] == 0x89                          # task 2 available again
    assert m.gdt_raw(5)[5] == 0x8B                          # task 1 busy
    assert struct.unpack("<H", m.read(TSS2_LIN, 2))[0] == 0x28      # link field
    tss2_eflags = struct.unpack("<I", m.read(TSS2_LIN + 0x24, 4))[0]
    assert not tss2_eflags & 0x4000                         # IRET saved NT=0
    assert struct.unpack("<I", m.read(TSS2_LIN + 0x28 + 4, 4))[0] == 0x77   # ECX of task 2


def test_task_switch_faults_before_commit():
    """Checks made in the old task's context (SDM Table 7-1), nothing changed."""
    cases = [
        (tss_desc(TSS2_LIN, busy=True), SLOT, 13, SLOT),         # JMP to a busy TSS
        (tss_desc(TSS2_LIN, present=False), SLOT, 11, SLOT),     # not present
        (tss_desc(TSS2_LIN, limit=0x60), SLOT, 10, SLOT),        # limit < 67H: #TS
        (tss_desc(TSS2_LIN, dpl=0), SLOT | 3, 13, SLOT),         # RPL > DPL
    ]
    for d, sel, vec, err in cases:
        ro, re_ = same(far_jmp(sel, 0, 32), phys_mem=slots(d, None, [(TSS2_PHYS, tss32(CODE_END))]))
        assert (re_.exception.vector, re_.exception.error_code) == (vec, err), (d.hex(), re_)


@pytest.mark.parametrize("ds, vec", [(0x28, 10), (0x48, 10), (0x4C, 10), (0x58, 11)])
def test_task_switch_bad_new_segment_faults_in_new_task(ds, vec):
    """A bad data selector in the new TSS (system descriptor, beyond the GDT
    limit, TI=1 with no LDT: #TS(sel); not present: #NP(sel)) faults after the
    commit point, in the new task (SDM 7.3 step 14, Table 7-1): TR already
    names the new task and the frame holds the new task's CS:EIP."""
    m = Machine()
    m.R[S.GDTR_LIMIT] = 0x5F                                # 12 entries: 0x60.. beyond
    m.gdt(9, tss_desc(TSS2_LIN))
    m.gdt(11, d32(0, 0xFFFFF, 0x13))                        # 0x58: data, not present
    m.write(TSS2_LIN, tss32(HANDLER_LIN, ds=ds))
    if ds == 0x48:
        m.R[S.GDTR_LIMIT] = 0x4F                # DS = 0x48: the new TSS, a system descriptor
    m.code(far_jmp(0x48, 0, 32))
    m.run(count=5)
    assert m.R[S.TR_SEL] == 0x48
    v, f = m.delivered()
    assert (v, f["err"]) == (vec, ds & 0xFFFC)
    assert (f["eip"], f["cs"]) == (HANDLER_LIN, 0x08)


TSS3_LIN = L.sys_lin + 0x7000
LDT_LIN = L.sys_lin + 0x7800


def _task_machine():
    """Ring 0, TSS 2 at 0x48, a #TS/#NP/#SS task (TSS 3, 0x98) for faults of the
    new task's CS/SS, and descriptors the cases below name."""
    m = Machine()
    m.gdt(9, tss_desc(TSS2_LIN))                                 # 0x48 TSS 2
    m.gdt(10, descriptor(LDT_LIN, 0x0F, 0x82, 0))                # 0x50 LDT (2 entries)
    m.write(LDT_LIN, bytes(8) + descriptor(0x4000, 0xFFF, 0xF3, 0x4))   # LDT 0x0C/0x0F: DPL-3 data
    m.gdt(11, d32(0, 0xFFFFF, 0x13))                             # 0x58 data, not present
    m.gdt(12, d32(0, 0xFFFFF, 0x99))                             # 0x60 execute-only code
    m.gdt(13, d32(0, 0xFFFFF, 0xFB))                             # 0x68 code DPL 3
    m.gdt(14, d32(0, 0xFFFFF, 0xFF))                             # 0x70 conforming code DPL 3
    m.gdt(15, d32(0, 0xFFFFF, 0x93))                             # 0x78 data DPL 0
    m.gdt(16, d32(0, 0xFFFFF, 0x13))                             # 0x80 stack, not present
    m.gdt(17, descriptor(TSS2_LIN, 0x67, 0x81, 0))               # 0x88 16-bit TSS
    m.gdt(18, d32(0, 0x1000, 0x9B, 0x4))                         # 0x90 code, limit 0x1000
    m.gdt(19, tss_desc(TSS3_LIN))                                # 0x98 TSS 3
    m.write(TSS3_LIN, tss32(L.handler_lin(10), esp=L.kstack_top - 0x400))
    for v in (10, 11, 12):
        m.idt(v, task_gate(0x98, dpl=0))
    return m


@pytest.mark.parametrize("fields, want", [
    (dict(ldt=0x0C), ("new", 10, 0x0C)),            # LDT selector with TI=1
    (dict(ldt=0x10), ("new", 10, 0x10)),            # not an LDT descriptor
    (dict(ldt=0x50, ds=0x0F), ("ok", 0x0F, 0x4000)),  # LDT loaded, DS from it
    (dict(cs=0x00), ("new", 10, 0x00)),             # null CS
    (dict(cs=0x10), ("new", 10, 0x10)),             # data as CS
    (dict(cs=0x70), ("new", 10, 0x70)),             # conforming CS, DPL 3 > RPL 0
    (dict(cs=0x6B), ("new", 10, 0x10)),             # CPL 3: SS (DPL 0) != CPL
    (dict(ss=0x00), ("new", 10, 0x00)),             # null SS
    (dict(ss=0x80), ("new", 12, 0x80)),             # SS not present: #SS
    (dict(ss=0x68), ("new", 10, 0x68)),             # code as SS
    (dict(ds=0x60), ("new", 10, 0x60)),             # execute-only code as DS
    (dict(ds=0x13), ("new", 10, 0x10)),             # RPL 3 > DPL 0
    (dict(ds=0x23), ("ok", 0x23, 0)),               # DPL 3 >= CPL 0
    (dict(ds=0x58), ("new", 11, 0x58)),             # DS not present: #NP
    (dict(cs=0x90), ("eip", 13, 0)),                # EIP beyond the new CS limit: #GP(0)
])
def test_task_switch_new_task_checks(fields, want):
    """SDM Table 7-1, checks after the commit point: the fault is delivered in
    the new task (TSS 2: TR = 0x48 and its state loaded).  The #TS/#NP/#SS
    handlers are a task gate to TSS 3 (what the SDM recommends, since CS or
    SS of the faulting task may be unusable): TSS 3 runs with the error code
    on its stack, its link field naming TSS 2."""
    m = _task_machine()
    kw = dict(cs=0x08, ss=0x10, ds=0x10)
    kw.update(fields)
    m.write(TSS2_LIN, tss32(HANDLER_LIN, **kw))
    m.code(far_jmp(0x48, 0, 32))
    kind, a, b = want
    m.run(count=1 if kind == "ok" else 4)
    if kind == "ok":
        assert m.R[S.TR_SEL] == 0x48 and m.R[S.EIP] == HANDLER_LIN
        assert m.seg("ds")[:2] == (a, b)
        return
    if kind == "eip":
        v, f = m.delivered()
        assert (v, f["err"], f["eip"], f["cs"]) == (a, b, HANDLER_LIN, 0x90)
        assert m.R[S.TR_SEL] == 0x48
        return
    assert m.R[S.TR_SEL] == 0x98, hex(m.R[S.TR_SEL])             # in TSS 3
    assert m.stub_vector() == 10                                  # TSS 3's EIP
    assert m.rd32(m.R[S.ESP]) == b                                # error code
    assert m.R[S.ESP] == L.kstack_top - 0x400 - 4
    assert struct.unpack("<H", m.read(TSS3_LIN, 2))[0] == 0x48   # link
    assert m.gdt_raw(9)[5] & 2 and m.gdt_raw(19)[5] & 2          # both busy
    assert struct.unpack("<I", m.read(TSS2_LIN + 0x20, 4))[0] == HANDLER_LIN  # TSS 2's EIP saved


def test_task_switch_pre_commit_and_unsupported():
    m = _task_machine()
    m.write(TSS2_LIN, tss32(HANDLER_LIN))
    m.cpu.stop_on_fault = True
    for code, want in ((far_jmp(0x88, 0, 32), (13, 0x88)),           # 16-bit TSS: unsupported
                       (far_jmp(0x98 | 3, 0, 32), (13, 0x98))):      # RPL 3 > TSS DPL 0
        m.code(code)
        m.R[S.EIP] = L.code_lin
        st_ = m.run(count=1)
        assert (st_.vector, st_.error_code) == want and m.R[S.TR_SEL] == 0x28
    # a task gate: DPL < CPL -> #GP(gate); TSS selector with TI=1 -> #GP(TSS sel)
    m.gdt(20, task_gate(0x48, dpl=0))                                # 0xA0
    m.gdt(21, task_gate(0x4C, dpl=3))                                # 0xA8
    m.gdt(22, task_gate(0x58, dpl=3))                                # 0xB0: not a TSS
    for code, want in ((far_jmp(0xA3, 0, 32), (13, 0xA0)), (far_jmp(0xA8, 0, 32), (13, 0x4C)),
                       (far_jmp(0xB0, 0, 32), (13, 0x58))):
        m.code(code)
        m.R[S.EIP] = L.code_lin
        st_ = m.run(count=1)
        assert (st_.vector, st_.error_code) == want, (st_, want)
    # IRET with NT=1 whose link names an available (not busy) TSS: #TS(link)
    m.write(L.tss_lin, struct.pack("<H", 0x48))
    m.code("iretd")
    m.R[S.EIP] = L.code_lin
    m.cpu.set_eflags(0x4002)
    st_ = m.run(count=1)
    assert (st_.vector, st_.error_code) == (10, 0x48)
    # a new task with VM=1: virtual-8086 mode is not supported -> clean VM stop
    m.cpu.set_eflags(0x2)
    m.write(TSS2_LIN, tss32(HANDLER_LIN, eflags=0x20002))
    m.code(far_jmp(0x48, 0, 32))
    m.R[S.EIP] = L.code_lin
    st_ = m.run(count=1)
    assert st_.reason == "vmstop" and "virtual-8086" in st_.message and m.R[S.TR_SEL] == 0x28


def test_task_switch_t_bit_debug_trap():
    """T=1 in the new TSS: a #DB trap (DR6.BT) once the switch completes, before
    the new task's first instruction (SDM 7.2.1)."""
    m = _task_machine()
    m.write(TSS2_LIN, tss32(HANDLER_LIN, tbit=1))
    m.code(far_jmp(0x48, 0, 32))
    m.run(count=2)
    v, f = m.delivered()
    assert v == 1 and f["eip"] == HANDLER_LIN and m.R[S.DR0 + 6] & 0x8000
    assert m.R[S.TR_SEL] == 0x48


# --- real mode ------------------------------------------------------------------------------

@settings(**SETTINGS)
@given(kind=st.sampled_from(["jmp", "call", "retf", "retf8", "iret"]), o32=st.booleans(),
       sel=st.integers(0, 0xFFFF), off=st.integers(0, 0xFFFF),
       image=st.integers(0, 0xFFFF), cur=st.integers(0, 0x3F7FD7))
def test_real_mode_far(kind, o32, sel, off, image, cur):
    """Real-address mode far transfers against Unicorn (CS := sel, base sel << 4)."""
    # a target inside the IVT's HLT stubs would read as a delivered interrupt
    assume(not 0x8000 <= (sel << 4) + off < 0x9000)
    pre = b"\x66" if o32 else b""
    fmt = "<I" if o32 else "<H"
    if kind == "jmp":
        code = pre + b"\xea" + struct.pack(fmt, off) + struct.pack("<H", sel)
    elif kind == "call":
        code = pre + b"\x9a" + struct.pack(fmt, off) + struct.pack("<H", sel)
    elif kind.startswith("retf"):
        code = pre + (b"\xca\x08\x00" if kind == "retf8" else b"\xcb")
    else:
        code = pre + b"\xcf"
    frame = struct.pack(fmt, off) + struct.pack(fmt, sel) + struct.pack(fmt, image | 2)
    esp = RL.regs["esp"]
    mem = [(RL.stack_lin[0] + esp, frame)]
    regs = dict(eflags=(cur & 0x3F7FD7 & ~0x30300) | 2)
    same(code, regs=regs, mem=mem, layout=RL)


# --- hostile guest ---------------------------------------------------------------------------

_FAR_OPS = st.sampled_from([b"\xea", b"\x9a", b"\xcb", b"\xca\x08\x00", b"\xcf", b"\x66\xcf",
                            b"\x66\xcb", b"\xcd", b"\xce", b"\xcc", b"\xf1", b"\x8e\xd8",
                            b"\x8e\xd0", b"\x66\xea", b"\x66\x9a"])


_sels = st.sampled_from([0x00, 0x08, 0x0B, 0x10, 0x1B, 0x23, 0x28, 0x40, 0x43, 0x48, 0x4B,
                         0x50, 0x58, 0x5B, 0x60, 0x68, 0x70, 0x78, 0x7B, 0x80, 0x0C, 0x44])
_offs = st.sampled_from([L.code_lin, L.code_lin + 0x10, L.code_lin + 0x7F0, 0x10, 0xFFFFFFF0,
                         L.handler_lin(13), L.kstack_top - 4, 0x419800])
_bases = st.sampled_from([0, L.code_lin, L.sys_lin + 0x6000, L.sys_lin + 0x3000, 0x419000,
                          0xFFFFF000, L.tss_lin])
def _mk_seg(base, limit, p, dpl, s_, t, f):
    return descriptor(base, limit, (p << 7) | (dpl << 5) | (s_ << 4) | t, f)


def _mk_gate(off, sel, p, dpl, t, cnt):
    return struct.pack("<HHBBH", off & 0xFFFF, sel, cnt, (p << 7) | (dpl << 5) | t, off >> 16)


def _mk_tss(eip, fl, segs, ldt, cr3, esp, t):
    return tss32(eip, cs=segs[0], ss=segs[1], ds=segs[2], esp=esp, eflags=fl, ldt=ldt, cr3=cr3,
                 tbit=t)


_bit = st.integers(0, 1)
_seg_desc = st.builds(_mk_seg, _bases, st.sampled_from([0xFFFFF, 0x67, 0x0, 0xFFFF, 0x1000, 0x8]),
                      _bit, st.integers(0, 3), _bit, st.integers(0, 15), st.integers(0, 15))
_gate_desc = st.builds(_mk_gate, _offs, _sels, _bit, st.integers(0, 3),
                       st.sampled_from([4, 5, 6, 7, 12, 14, 15, 9, 11, 1, 3]), st.integers(0, 31))
_desc = st.one_of(st.binary(min_size=8, max_size=8), _seg_desc, _gate_desc)
_tss = st.builds(_mk_tss, _offs, st.integers(0, 0x3FFFFF), st.tuples(_sels, _sels, _sels), _sels,
                 st.sampled_from([L.regs["cr3"], 0, 0x7FF000]), _offs, st.integers(0, 3))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gdt=st.lists(_desc, min_size=8, max_size=8),
       idt=st.lists(_gate_desc, min_size=4, max_size=4),
       exc_idt=st.lists(st.tuples(st.sampled_from([8, 10, 11, 12, 13, 14]), _gate_desc),
                        max_size=3),
       tss=st.one_of(st.binary(min_size=0x68, max_size=0x68), _tss),
       tss2=_tss, stack=st.binary(min_size=32, max_size=32),
       ops=st.lists(st.tuples(_FAR_OPS, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
                    min_size=1, max_size=4),
       ring3=st.booleans(), eflags=st.integers(0, 0x3FFFFF),
       tr_limit=st.sampled_from([0x67, 0x8]))
def test_hostile_descriptors_never_escape(gdt, idt, exc_idt, tss, tss2, stack, ops, ring3, eflags,
                                         tr_limit):
    """Random descriptors (GDT 8-15, IDT vectors 0x40-0x43 and the exception
    vectors 8/10-14 left intact or replaced), a random TSS and stack, random
    far transfers / INT / IRET / segment loads: the run ends in a guest-visible
    way (a fault delivered, a VM stop such as a triple fault) - never a Python
    exception - and the MMU audit stays clean (THREATS.md, HYP-DV2/DV3)."""
    m = Machine(ring3=ring3, regs=dict(eflags=(eflags & 0x3F7FD7 & ~0x20000) | 2))
    for i, d in enumerate(gdt):
        m.gdt(8 + i, d)
    if tss2[0x64] & 2:                              # often: 0x40 is a TSS for tss2, 0x48 a gate
        m.gdt(8, descriptor(L.sys_lin + 0x6000, 0x67, 0x80 | (gdt[0][5] & 0x6B), 0))
        m.gdt(9, task_gate(0x40, dpl=gdt[1][0] & 3))
    for i, d in enumerate(idt):
        m.idt(0x40 + i, d)
    for v, d in exc_idt:
        m.idt(v, d)
    m.write(L.sys_lin + 0x6000, tss2)               # a second TSS for descriptors based there
    if tss[0] & 1:
        m.write(L.tss_lin, tss)
        m.R[S.TR_LIMIT] = tr_limit
    m.write(L.regs["esp"], stack)
    code = b""
    for op, sel, off in ops:
        if op in (b"\xea", b"\x9a"):
            code += op + struct.pack("<IH", off, sel & 0x7F)
        elif op in (b"\x66\xea", b"\x66\x9a"):
            code += op + struct.pack("<HH", off & 0xFFFF, sel & 0x7F)
        elif op == b"\xcd":
            code += op + bytes([0x40 + (sel & 3) if off & 1 else sel & 0xFF])
        elif op[0] == 0x8E:
            code = code + b"\x66\xb8" + struct.pack("<H", sel & 0x7F) + op
        else:
            code += op
    m.code(code)
    try:
        st_ = m.run(count=12)
    except Exception as e:          # anything but a Stop is a bug
        raise AssertionError("escaped: %r" % e)
    assert st_.reason in ("count", "hlt", "until", "vmstop", "exception"), st_
    assert m.cpu.mmu.audit() == []
