"""Protected-mode interrupt and exception delivery through the IDT.

SDM Vol. 3 chapter 6 (6.10-6.14) and the INT n pseudocode of Vol. 2.

``deliver(cpu, vector, error_code, kind, ret_eip)`` is called by
interrupts.deliver when CR0.PE=1:

  kind "software"   INT n / INT3 / INTO: the gate DPL is checked against the
                    CPL (#GP(vector*8+2)); faults during delivery have EXT=0.
  kind "exception"  raised by the CPU: no DPL check; the vector's error code
                    (8, 10-14, 17) is pushed; faults during delivery have EXT=1.
  kind "external"   IRQ, NMI and INT1/ICEBP: no DPL check, no error code, EXT=1.

Everything that can fault (IDT entry, gate, code segment, TSS stack, new
stack segment, room on the stack, handler EIP, every page of the frame) is
checked before any state changes, so a fault during delivery leaves the
machine as it was and interrupts.raise_exception can apply the double-fault
rules of Table 6-5 on a clean state.

The pushed EFLAGS image has RF=1 for fault-class exceptions (SDM Vol. 3
17.3.1.1); TF, NT, RF and VM are cleared on entry, IF too for an interrupt
gate.  An event in virtual-8086 mode stops the VM (V86 is not supported).
"""
from .faults import CPUFault, VMStop, GP, NP, HAS_ERROR_CODE
from .flags import materialize, TF, NT, RF, VM, IF
from .state import (CPL, CS, SS, ESP, EIP, IDTR_BASE, IDTR_LIMIT, seg_index,
                    ATTR_P, ATTR_CONFORMING)
from . import segments as sg

MASK32 = 0xFFFFFFFF
# fault-class exceptions: RF=1 in the pushed EFLAGS image (#DB excluded)
FAULT_CLASS = frozenset({0, 5, 6, 7, 10, 11, 12, 13, 14, 16, 17, 19})
_GATE_TYPES = frozenset({sg.T_TASK, sg.T_INT16, sg.T_TRAP16, sg.T_INT32, sg.T_TRAP32})
_CS_SEL = seg_index(CS, 0)
_SS_SEL = seg_index(SS, 0)


def read_gate(cpu, vector, ext):
    """(lo, hi) of IDT entry ``vector``; #GP(vector*8+2+EXT) beyond the limit."""
    R = cpu.R
    if vector * 8 + 7 > R[IDTR_LIMIT]:
        raise CPUFault(GP, vector * 8 + 2 + ext)
    raw = cpu.mmu.read_bytes((R[IDTR_BASE] + vector * 8) & MASK32, 8, False)
    lo = int.from_bytes(raw[:4], "little")
    hi = int.from_bytes(raw[4:], "little")
    return lo, hi


def deliver(cpu, vector, error_code, kind, ret_eip):
    R = cpu.R
    if cpu.v86:
        raise VMStop("virtual-8086 mode is not supported (vector %d in V86 mode)" % vector,
                     kind="unsupported")
    ext = 0 if kind == "software" else 1
    vcode = vector * 8 + 2 + ext
    lo, hi = read_gate(cpu, vector, ext)
    access = (hi >> 8) & 0xFF
    gtype = access & 0x1F               # S bit (0x10) must be clear: system descriptor
    if gtype not in _GATE_TYPES:
        raise CPUFault(GP, vcode)
    cpl = R[CPL]
    if kind == "software" and ((access >> 5) & 3) < cpl:
        raise CPUFault(GP, vector * 8 + 2)
    if not access & ATTR_P:
        raise CPUFault(NP, vcode)
    push_err = kind == "exception" and vector in HAS_ERROR_CODE
    err = (error_code or 0) if push_err else None
    csel, off, _ = sg.gate_fields(lo, hi)
    if gtype == sg.T_TASK:
        from . import tasks
        flags = materialize(R)
        if kind == "exception" and vector in FAULT_CLASS:
            flags |= RF
        tasks.interrupt_task(cpu, csel, ext, ret_eip, flags, err)
        return
    gate32 = gtype >= sg.T_INT32
    if not gate32:
        off &= 0xFFFF
    # --- the handler's code segment
    if not csel & 0xFFFC:
        raise CPUFault(GP, ext)
    ccode = (csel & 0xFFFC) | ext
    clo, chi, clin = sg.fetch(cpu, csel, GP, ext)
    cattr = (chi >> 8) & 0xF0FF
    cdpl = (cattr >> 5) & 3
    if not sg.is_code(cattr) or cdpl > cpl:
        raise CPUFault(GP, ccode)
    if not cattr & ATTR_P:
        raise CPUFault(NP, ccode)
    cbase, climit, cattr = sg.parse(clo, chi)
    flags = materialize(R)
    image = flags
    if kind == "exception" and vector in FAULT_CLASS:
        image |= RF
    sz = 4 if gate32 else 2
    fmask = MASK32 if gate32 else 0xFFFF
    old_cs = R[_CS_SEL]
    if not cattr & ATTR_CONFORMING and cdpl < cpl:
        # INTER-PRIVILEGE-LEVEL-INTERRUPT: stack from the TSS
        ss_sel, new_esp = sg.tss_stack(cpu, cdpl, ext)
        slo, shi, slin, sbase, slimit, sattr = sg.check_inner_ss(cpu, ss_sel, cdpl, ext)
        items = [(sz, R[_SS_SEL]), (sz, R[ESP]), (sz, image & fmask), (sz, old_cs),
                 (sz, ret_eip)]
        if err is not None:
            items.append((sz, err))
        writes, nesp = sg.plan_frame(sbase, slimit, sattr, new_esp, items,
                                     (ss_sel & 0xFFFC) | ext, R[ESP])
        if off > climit:
            raise CPUFault(GP, ext)
        sg.set_accessed(cpu, slin, shi)
        sg.set_accessed(cpu, clin, chi)
        sg.store_frame(cpu, writes, cdpl == 3)
        cpu.set_cpl(cdpl)
        cpu.set_seg(SS, (ss_sel & 0xFFFC) | cdpl, sbase, slimit, sattr | 1)
        R[ESP] = nesp
        sg.commit_cs(cpu, csel, cbase, climit, cattr, cdpl)
    elif cattr & ATTR_CONFORMING or cdpl == cpl:
        # INTRA-PRIVILEGE-LEVEL-INTERRUPT
        items = [(sz, image & fmask), (sz, old_cs), (sz, ret_eip)]
        if err is not None:
            items.append((sz, err))
        _, sbase, slimit, sattr = cpu.get_seg(SS)
        writes, nesp = sg.plan_frame(sbase, slimit, sattr, R[ESP], items, ext)
        if off > climit:
            raise CPUFault(GP, ext)
        sg.set_accessed(cpu, clin, chi)
        sg.store_frame(cpu, writes, cpl == 3)
        R[ESP] = nesp
        sg.commit_cs(cpu, csel, cbase, climit, cattr, cpl)
    else:
        raise CPUFault(GP, ccode)
    R[EIP] = off
    clear = TF | NT | RF | VM
    if gtype == sg.T_INT32 or gtype == sg.T_INT16:
        clear |= IF
    cpu.set_eflags(flags & ~clear)
