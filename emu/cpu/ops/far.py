"""Far control transfers: CALL far, JMP far, RET far, INT n/INT3/INTO/INT1, IRET.

Real-address and virtual-8086 mode: CS := selector, base = selector << 4.
Protected mode (SDM Vol. 2 pseudocode of CALL, JMP, RET, IRET; Vol. 3
chapter 5.8): conforming / non-conforming code segments, call gates (with
the stack switch and parameter copying of an inter-privilege call), RET to
the same or an outer level (with the DS/ES/FS/GS nulling rule), IRET to the
same or an outer level, and task switches through TSS descriptors and task
gates (tasks.py).  Entering or leaving virtual-8086 mode (IRET with VM=1 in
the popped image, IRET in V86 mode) stops the VM: V86 is not supported.

Every closure reads and checks everything (descriptors, stack limits, the
target EIP, the pages of the frame it will write) before it changes any
register or memory, so a fault leaves the instruction undone.

The mode (real / V86 / protected) is fixed when the instruction is built: a
decoded block belongs to one mode (interp.mode_changed), and CR0.PE or
EFLAGS.VM cannot change inside a block.
"""
from ..faults import CPUFault, VMStop, GP, NP
from ..flags import materialize, OF, NT, VM, RF, AC, ID, VIF, VIP, IF, IOPL_MASK, FIXED1
from ..operands import ea
from ..state import (EIP, ESP, CPL, CS, SS, NMI_BLOCKED, seg_index, ATTR_P, ATTR_S, ATTR_CODE,
                     ATTR_CONFORMING)
from .. import segments as sg

MASK32 = 0xFFFFFFFF
_CS_SEL = seg_index(CS, 0)
_SS_SEL = seg_index(SS, 0)
_SMASK = {2: 0xFFFF, 4: 0xFFFFFFFF}


# --- operand helpers ---------------------------------------------------------------

def _far_pointer(cpu, insn):
    """Closure -> (offset, selector) of the far pointer operand (Ap or Mp)."""
    sz = insn.opsize >> 3
    if insn.mod is None:                          # Ap: ptr16:16 / ptr16:32 immediate
        p = (insn.imm & _SMASK[sz], insn.imm2 & 0xFFFF)
        return lambda: p
    addr = ea(cpu, insn)
    rd = cpu.mem.RD[sz]
    rd16 = cpu.mem.rd16
    s = insn.seg
    amask = 0xFFFFFFFF if insn.adsize == 32 else 0xFFFF

    def get():
        a = addr()
        off = rd(s, a)
        return off, rd16(s, (a + sz) & amask)
    return get


def _push_current(cpu, vals, sz):
    """Push ``vals`` on the current stack with every check (limits #SS(0),
    pages #PF) done before the first store; returns the new ESP."""
    R = cpu.R
    mem = cpu.mem
    mask = 0xFFFFFFFF if cpu.segs[SS].big else 0xFFFF
    sp = R[ESP] & mask
    offs = []
    for _ in vals:
        sp = (sp - sz) & mask
        mem.check_write(SS, sp, sz)
        offs.append(sp)
    wr = mem.WR[sz]
    m = _SMASK[sz]
    for v, o in zip(vals, offs):
        wr(SS, o, v & m)
    return ((R[ESP] & ~mask) | sp) & MASK32


def _v86_stop():
    raise VMStop("virtual-8086 mode is not supported", kind="unsupported")


def _real_or_v86(cpu):
    return not cpu.protected or cpu.v86


# --- CALL far ----------------------------------------------------------------------

def call_far(cpu, insn):
    R = cpu.R
    sz = insn.opsize >> 3
    getp = _far_pointer(cpu, insn)
    nxt = insn.next_eip
    cs = cpu.segs[CS]
    if _real_or_v86(cpu):
        load = cpu.load_sreg

        def real():
            off, sel = getp()
            if off > cs.limit:
                raise CPUFault(GP, 0)
            nesp = _push_current(cpu, (R[_CS_SEL], nxt), sz)
            R[ESP] = nesp
            load(CS, sel)
            R[EIP] = off
        return real

    def prot():
        off, sel = getp()
        pm_call(cpu, sel, off, sz, nxt)
    return prot


def pm_call(cpu, sel, off, sz, nxt):
    """Protected-mode CALL far to sel:off (SDM Vol. 2 CALL, PE=1 VM=0)."""
    R = cpu.R
    cpl = R[CPL]
    code = sel & 0xFFFC
    if not code:
        raise CPUFault(GP, 0)
    lo, hi, lin = sg.fetch(cpu, sel, GP)
    attr = (hi >> 8) & 0xF0FF
    dpl = (attr >> 5) & 3
    if attr & ATTR_S:
        if not attr & ATTR_CODE:
            raise CPUFault(GP, code)
        if attr & ATTR_CONFORMING:
            if dpl > cpl:
                raise CPUFault(GP, code)
        elif (sel & 3) > cpl or dpl != cpl:
            raise CPUFault(GP, code)
        if not attr & ATTR_P:
            raise CPUFault(NP, code)
        base, limit, attr = sg.parse(lo, hi)
        _, sbase, slimit, sattr = cpu.get_seg(SS)
        writes, nesp = sg.plan_frame(sbase, slimit, sattr, R[ESP],
                                     ((sz, R[_CS_SEL]), (sz, nxt)), 0)
        if off > limit:
            raise CPUFault(GP, 0)
        sg.set_accessed(cpu, lin, hi)
        sg.store_frame(cpu, writes, cpu.user)
        R[ESP] = nesp
        sg.commit_cs(cpu, sel, base, limit, attr, cpl)
        R[EIP] = off
        return
    t = attr & 0x1F
    if t == sg.T_CALL32 or t == sg.T_CALL16:
        _call_gate(cpu, sel, lo, hi, attr, sz, nxt)
        return
    from .. import tasks
    if t == sg.T_TASK:
        tasks.through_task_gate(cpu, sel, lo, hi, "call", nxt)
        return
    if t in (sg.T_TSS32_AVAIL, sg.T_TSS32_BUSY, sg.T_TSS16_AVAIL, sg.T_TSS16_BUSY):
        tasks.to_tss(cpu, sel, lo, hi, lin, "call", nxt)
        return
    raise CPUFault(GP, code)


def _gate_target(cpu, gsel, lo, hi, attr):
    """Common call-gate checks (gate DPL, present, target code segment
    selector/descriptor).  Returns (csel, goff, count, gate32, clo, chi, clin, cattr)."""
    R = cpu.R
    cpl = R[CPL]
    gcode = gsel & 0xFFFC
    gdpl = (attr >> 5) & 3
    if gdpl < cpl or gdpl < (gsel & 3):
        raise CPUFault(GP, gcode)
    if not attr & ATTR_P:
        raise CPUFault(NP, gcode)
    csel, goff, count = sg.gate_fields(lo, hi)
    gate32 = (attr & 0x1F) == sg.T_CALL32
    if not gate32:
        goff &= 0xFFFF
    if not csel & 0xFFFC:
        raise CPUFault(GP, 0)
    clo, chi, clin = sg.fetch(cpu, csel, GP)
    cattr = (chi >> 8) & 0xF0FF
    return csel, goff, count, gate32, clo, chi, clin, cattr


def _call_gate(cpu, gsel, lo, hi, attr, sz, nxt):
    R = cpu.R
    cpl = R[CPL]
    csel, goff, count, gate32, clo, chi, clin, cattr = _gate_target(cpu, gsel, lo, hi, attr)
    ccode = csel & 0xFFFC
    cdpl = (cattr >> 5) & 3
    if not sg.is_code(cattr) or cdpl > cpl:
        raise CPUFault(GP, ccode)
    if not cattr & ATTR_P:
        raise CPUFault(NP, ccode)
    cbase, climit, cattr = sg.parse(clo, chi)
    gsz = 4 if gate32 else 2
    if not cattr & ATTR_CONFORMING and cdpl < cpl:
        # MORE-PRIVILEGE: new stack from the TSS, parameters copied
        ss_sel, tss_esp = sg.tss_stack(cpu, cdpl)
        slo, shi, slin, sbase, slimit, sattr = sg.check_inner_ss(cpu, ss_sel, cdpl)
        old_esp = R[ESP]
        params = sg.read_stack(cpu, old_esp, [(i * gsz, gsz) for i in range(count)])
        items = [(gsz, R[_SS_SEL]), (gsz, old_esp)]
        for i in range(count - 1, -1, -1):
            items.append((gsz, params[i]))
        items.append((gsz, R[_CS_SEL]))
        items.append((gsz, nxt))
        writes, nesp = sg.plan_frame(sbase, slimit, sattr, tss_esp, items, ss_sel & 0xFFFC,
                                     old_esp)
        if goff > climit:
            raise CPUFault(GP, 0)
        sg.set_accessed(cpu, slin, shi)
        sg.set_accessed(cpu, clin, chi)
        sg.store_frame(cpu, writes, cdpl == 3)
        cpu.set_cpl(cdpl)
        cpu.set_seg(SS, (ss_sel & 0xFFFC) | cdpl, sbase, slimit, sattr | 1)
        R[ESP] = nesp
        sg.commit_cs(cpu, csel, cbase, climit, cattr, cdpl)
        R[EIP] = goff
        return
    # SAME-PRIVILEGE through the gate (conforming, or DPL = CPL)
    _, sbase, slimit, sattr = cpu.get_seg(SS)
    writes, nesp = sg.plan_frame(sbase, slimit, sattr, R[ESP],
                                 ((gsz, R[_CS_SEL]), (gsz, nxt)), 0)
    if goff > climit:
        raise CPUFault(GP, 0)
    sg.set_accessed(cpu, clin, chi)
    sg.store_frame(cpu, writes, cpu.user)
    R[ESP] = nesp
    sg.commit_cs(cpu, csel, cbase, climit, cattr, cpl)
    R[EIP] = goff


# --- JMP far -----------------------------------------------------------------------

def jmp_far(cpu, insn):
    R = cpu.R
    getp = _far_pointer(cpu, insn)
    nxt = insn.next_eip
    cs = cpu.segs[CS]
    if _real_or_v86(cpu):
        load = cpu.load_sreg

        def real():
            off, sel = getp()
            if off > cs.limit:
                raise CPUFault(GP, 0)
            load(CS, sel)
            R[EIP] = off
        return real

    def prot():
        off, sel = getp()
        pm_jmp(cpu, sel, off, nxt)
    return prot


def pm_jmp(cpu, sel, off, nxt):
    """Protected-mode JMP far to sel:off (SDM Vol. 2 JMP, PE=1 VM=0)."""
    R = cpu.R
    cpl = R[CPL]
    code = sel & 0xFFFC
    if not code:
        raise CPUFault(GP, 0)
    lo, hi, lin = sg.fetch(cpu, sel, GP)
    attr = (hi >> 8) & 0xF0FF
    dpl = (attr >> 5) & 3
    if attr & ATTR_S:
        if not attr & ATTR_CODE:
            raise CPUFault(GP, code)
        if attr & ATTR_CONFORMING:
            if dpl > cpl:
                raise CPUFault(GP, code)
        elif (sel & 3) > cpl or dpl != cpl:
            raise CPUFault(GP, code)
        if not attr & ATTR_P:
            raise CPUFault(NP, code)
        base, limit, attr = sg.parse(lo, hi)
        if off > limit:
            raise CPUFault(GP, 0)
        sg.set_accessed(cpu, lin, hi)
        sg.commit_cs(cpu, sel, base, limit, attr, cpl)
        R[EIP] = off
        return
    t = attr & 0x1F
    if t == sg.T_CALL32 or t == sg.T_CALL16:
        csel, goff, count, gate32, clo, chi, clin, cattr = _gate_target(cpu, sel, lo, hi, attr)
        ccode = csel & 0xFFFC
        cdpl = (cattr >> 5) & 3
        if not sg.is_code(cattr):
            raise CPUFault(GP, ccode)
        if cattr & ATTR_CONFORMING:
            if cdpl > cpl:
                raise CPUFault(GP, ccode)
        elif cdpl != cpl:
            raise CPUFault(GP, ccode)
        if not cattr & ATTR_P:
            raise CPUFault(NP, ccode)
        cbase, climit, cattr = sg.parse(clo, chi)
        if goff > climit:
            raise CPUFault(GP, 0)
        sg.set_accessed(cpu, clin, chi)
        sg.commit_cs(cpu, csel, cbase, climit, cattr, cpl)
        R[EIP] = goff
        return
    from .. import tasks
    if t == sg.T_TASK:
        tasks.through_task_gate(cpu, sel, lo, hi, "jmp", nxt)
        return
    if t in (sg.T_TSS32_AVAIL, sg.T_TSS32_BUSY, sg.T_TSS16_AVAIL, sg.T_TSS16_BUSY):
        tasks.to_tss(cpu, sel, lo, hi, lin, "jmp", nxt)
        return
    raise CPUFault(GP, code)


# --- RET far -----------------------------------------------------------------------

def ret_far(cpu, insn):
    R = cpu.R
    sz = insn.opsize >> 3
    imm = insn.imm or 0
    cs = cpu.segs[CS]
    ssc = cpu.segs[SS]
    rd = cpu.mem.RD[sz]
    if _real_or_v86(cpu):
        load = cpu.load_sreg

        def real():
            mask = 0xFFFFFFFF if ssc.big else 0xFFFF
            sp = R[ESP] & mask
            off = rd(SS, sp)
            sel = rd(SS, (sp + sz) & mask) & 0xFFFF
            if off > cs.limit:
                raise CPUFault(GP, 0)
            R[ESP] = ((R[ESP] & ~mask) | ((sp + 2 * sz + imm) & mask)) & MASK32
            load(CS, sel)
            R[EIP] = off
        return real

    def prot():
        pm_ret(cpu, sz, imm)
    return prot


def pm_ret(cpu, sz, imm):
    """Protected-mode RET far / RET far imm16 (SDM Vol. 2 RET, PE=1 VM=0)."""
    R = cpu.R
    cpl = R[CPL]
    esp = R[ESP]
    off, sel = sg.read_stack(cpu, esp, ((0, sz), (sz, sz)))
    sel &= 0xFFFF
    clo, chi, clin, cbase, climit, cattr = sg.check_code_for_ret(cpu, sel)
    rpl = sel & 3
    mask = 0xFFFFFFFF if cpu.segs[SS].big else 0xFFFF
    if rpl == cpl:
        if off > climit:
            raise CPUFault(GP, 0)
        sg.set_accessed(cpu, clin, chi)
        R[ESP] = ((esp & ~mask) | ((esp + 2 * sz + imm) & mask)) & MASK32
        sg.commit_cs(cpu, sel, cbase, climit, cattr, cpl)
        R[EIP] = off
        return
    # RETURN-OUTER-PRIVILEGE-LEVEL
    new_esp, ss_sel = sg.read_stack(cpu, esp, ((2 * sz + imm, sz), (3 * sz + imm, sz)))
    ss_sel &= 0xFFFF
    slo, shi, slin, sbase, slimit, sattr = sg.check_outer_ss(cpu, ss_sel, rpl)
    if off > climit:
        raise CPUFault(GP, 0)
    sg.set_accessed(cpu, clin, chi)
    sg.set_accessed(cpu, slin, shi)
    nmask = 0xFFFFFFFF if sattr & 0x4000 else 0xFFFF
    cpu.set_cpl(rpl)
    sg.commit_cs(cpu, sel, cbase, climit, cattr, rpl)
    R[EIP] = off
    cpu.set_seg(SS, ss_sel, sbase, slimit, sattr | 1)
    R[ESP] = ((esp & ~nmask) | ((new_esp + imm) & nmask)) & MASK32
    sg.null_outer_segments(cpu, rpl)


# --- INT n / INT3 / INTO / INT1 -------------------------------------------------------

def int_n(cpu, insn):
    v = insn.imm & 0xFF
    n = insn.next_eip
    deliver = cpu.deliver

    def f():
        deliver(v, None, "software", n)
    return f


def int3(cpu, insn):
    n = insn.next_eip
    deliver = cpu.deliver

    def f():
        deliver(3, None, "software", n)
    return f


def into(cpu, insn):
    R = cpu.R
    n = insn.next_eip
    deliver = cpu.deliver

    def f():
        if materialize(R) & OF:
            deliver(4, None, "software", n)
        else:
            R[EIP] = n
    return f


def int1(cpu, insn):
    """INT1 / ICEBP (F1): a #DB trap that is delivered like a hardware event:
    no gate-DPL check, EXT=1 in the error code of a fault during delivery
    (SDM Vol. 2 INT n: 'does not apply to INT1'; Vol. 3 6.13)."""
    n = insn.next_eip
    deliver = cpu.deliver

    def f():
        deliver(1, None, "external", n)
    return f


# --- IRET ----------------------------------------------------------------------------

_RM_IRET32_KEEP = VIP | VIF | VM            # 1A0000H
_RM_IRET32_LOAD = 0x257FD5


def iret(cpu, insn):
    R = cpu.R
    sz = insn.opsize >> 3
    nxt = insn.next_eip
    if cpu.protected and cpu.v86:
        def v86():
            _v86_stop()
        return v86
    if not cpu.protected:
        cs = cpu.segs[CS]
        ssc = cpu.segs[SS]
        rd = cpu.mem.RD[sz]
        load = cpu.load_sreg

        def real():
            R[NMI_BLOCKED] = 0       # SDM 6.7.1: IRET unblocks NMIs, even if it faults
            mask = 0xFFFFFFFF if ssc.big else 0xFFFF
            sp = R[ESP] & mask
            off = rd(SS, sp)
            sel = rd(SS, (sp + sz) & mask) & 0xFFFF
            fl = rd(SS, (sp + 2 * sz) & mask)
            if off > cs.limit:
                raise CPUFault(GP, 0)
            cur = materialize(R)
            if sz == 4:
                new = (fl & _RM_IRET32_LOAD) | (cur & _RM_IRET32_KEEP)
            else:
                new = (cur & 0xFFFF0000) | fl
            R[ESP] = ((R[ESP] & ~mask) | ((sp + 3 * sz) & mask)) & MASK32
            load(CS, sel)
            R[EIP] = off
            cpu.set_eflags(new)
        return real

    def prot():
        R[NMI_BLOCKED] = 0
        pm_iret(cpu, sz, nxt)
    return prot


def _iret_flags(cpu, cur, tflags, sz, cpl):
    """EFLAGS after a protected-mode IRET from privilege ``cpl`` (the old CPL)."""
    mask = 0x4DD5 | 0x100                 # CF PF AF ZF SF TF DF OF NT
    if sz == 4:
        mask |= RF | AC | ID
    if cpl <= (cur & IOPL_MASK) >> 12:
        mask |= IF
    if cpl == 0:
        mask |= IOPL_MASK
        if sz == 4:
            mask |= VIF | VIP
    if sz == 2:
        mask &= 0xFFFF
    return ((cur & ~mask) | (tflags & mask) | FIXED1) & MASK32


def pm_iret(cpu, sz, nxt):
    R = cpu.R
    cur = materialize(R)
    if cur & NT:
        from .. import tasks
        tasks.iret_task(cpu, nxt)
        return
    cpl = R[CPL]
    esp = R[ESP]
    off, sel, tflags = sg.read_stack(cpu, esp, ((0, sz), (sz, sz), (2 * sz, sz)))
    sel &= 0xFFFF
    if sz == 4 and tflags & VM and cpl == 0:
        _v86_stop()                               # RETURN-TO-VIRTUAL-8086-MODE
    clo, chi, clin, cbase, climit, cattr = sg.check_code_for_ret(cpu, sel)
    rpl = sel & 3
    new_flags = _iret_flags(cpu, cur, tflags, sz, cpl)
    if rpl == cpl:
        if off > climit:
            raise CPUFault(GP, 0)
        mask = 0xFFFFFFFF if cpu.segs[SS].big else 0xFFFF
        sg.set_accessed(cpu, clin, chi)
        R[ESP] = ((esp & ~mask) | ((esp + 3 * sz) & mask)) & MASK32
        sg.commit_cs(cpu, sel, cbase, climit, cattr, cpl)
        R[EIP] = off
        cpu.set_eflags(new_flags)
        return
    # RETURN-TO-OUTER-PRIVILEGE-LEVEL
    new_esp, ss_sel = sg.read_stack(cpu, esp, ((3 * sz, sz), (4 * sz, sz)))
    ss_sel &= 0xFFFF
    slo, shi, slin, sbase, slimit, sattr = sg.check_outer_ss(cpu, ss_sel, rpl)
    if off > climit:
        raise CPUFault(GP, 0)
    sg.set_accessed(cpu, clin, chi)
    sg.set_accessed(cpu, slin, shi)
    nmask = 0xFFFFFFFF if sattr & 0x4000 else 0xFFFF
    cpu.set_cpl(rpl)
    sg.commit_cs(cpu, sel, cbase, climit, cattr, rpl)
    R[EIP] = off
    cpu.set_seg(SS, ss_sel, sbase, slimit, sattr | 1)
    R[ESP] = ((esp & ~nmask) | (new_esp & nmask)) & MASK32
    cpu.set_eflags(new_flags)
    sg.null_outer_segments(cpu, rpl)
