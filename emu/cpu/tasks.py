"""Hardware task switching with 32-bit TSSs (SDM Vol. 3 chapter 7).

Entry points:

  to_tss(cpu, sel, lo, hi, lin, reason, nxt)           JMP/CALL to a TSS descriptor
  through_task_gate(cpu, sel, lo, hi, reason, nxt)     JMP/CALL to a task gate (GDT/LDT)
  interrupt_task(cpu, tss_sel, ext, ret_eip, flags, err)   interrupt/exception through
                                                       an IDT task gate
  iret_task(cpu, nxt)                                  IRET with EFLAGS.NT = 1

The switch follows SDM 7.3.  Everything checked before the commit point
(selectors, TSS descriptor type/busy/present, the new TSS limit >= 67H, the
pages of both TSSs and of the GDT entries whose busy bits change) raises
CPUFault in the context of the OLD task, with nothing changed.  Then the
old task's state is saved (EIP = the instruction after JMP/CALL/IRET, or
the return address of the interrupt; EFLAGS with NT cleared for IRET), busy
bits and the previous-task link are updated (CALL/interrupt: link := old TR,
NT := 1 in the new task), TR and CR0.TS are set, CR3 (when paging is on),
LDTR, EFLAGS, EIP, the general registers and the segment selectors are
loaded, and finally the LDT, CS, SS, ES, DS, FS, GS descriptors are checked
and loaded (Table 7-1), in that order.  A fault in this last phase (#TS/#NP/#SS on a bad selector of
the new task, #GP for an EIP beyond the new CS limit, #SS/#PF pushing the
error code of an exception delivered through a task gate) is an exception
in the context of the NEW task: it is delivered right here through
interrupts.raise_exception, and the instruction (or event) that caused the
switch completes.  The T bit of the new TSS raises a #DB trap (DR6.BT) once
the switch is complete.

A fault after the commit point is delivered even when the API asked to stop
on faults (``cpu.stop_on_fault``): the run loop would otherwise rewind EIP to
the old task's instruction.  (Reporting it instead would need a CPUFault
that carries the EIP the run loop should leave in place.)

Not supported (documented limits, each a clean guest-visible fault or VM
stop, never a host exception):
  * 16-bit TSSs (types 1/3): a switch to one, or away from a current 16-bit
    TSS, raises #GP(new TSS selector);
  * a new task whose EFLAGS has VM=1 stops the VM (virtual-8086 mode is not
    supported), before anything changes.
"""
import struct

from .faults import CPUFault, VMStop, GP, NP, TS, DB, SS as SS_FAULT
from .flags import materialize, NT, VM
from .state import (EIP, ESP, CPL, CS, SS, DS, ES, FS, GS, CR0, CR3, DR0, seg_index,
                    TR_SEL, TR_BASE, TR_LIMIT, TR_ATTR,
                    LDTR_SEL, LDTR_BASE, LDTR_LIMIT, LDTR_ATTR,
                    ATTR_P, ATTR_S, ATTR_CODE, ATTR_CONFORMING, ATTR_RW, ATTR_ACCESSED)
from . import segments as sg

MASK32 = 0xFFFFFFFF
CR0_TS = 0x8
CR0_PG = 0x80000000
DR6 = DR0 + 6
_TSS = struct.Struct("<" + "I" * 26)          # 0x00 .. 0x67 as dwords

# dword indices into a 32-bit TSS
L_LINK, L_CR3, L_EIP, L_EFLAGS, L_EAX = 0, 7, 8, 9, 10
L_ES, L_LDT, L_TBIT = 18, 24, 25
_SEG_ORDER = (ES, CS, SS, DS, FS, GS)         # TSS order == state.py order


def _is_tss32(attr):
    return (attr & 0x1F) in (sg.T_TSS32_AVAIL, sg.T_TSS32_BUSY)


# --- entry points ------------------------------------------------------------------------

def to_tss(cpu, sel, lo, hi, lin, reason, nxt):
    """JMP/CALL with a TSS descriptor as target (TASK-STATE-SEGMENT)."""
    R = cpu.R
    code = sel & 0xFFFC
    attr = (hi >> 8) & 0xFF
    dpl = (attr >> 5) & 3
    if dpl < R[CPL] or dpl < (sel & 3) or (attr & 0x1F) != sg.T_TSS32_AVAIL:
        raise CPUFault(GP, code)              # (a 16-bit TSS: unsupported, see above)
    if not attr & ATTR_P:
        raise CPUFault(NP, code)
    switch(cpu, sel, lo, hi, lin, reason, nxt, 0)


def through_task_gate(cpu, gsel, lo, hi, reason, nxt):
    """JMP/CALL with a task gate (in the GDT or LDT) as target (TASK-GATE)."""
    R = cpu.R
    gcode = gsel & 0xFFFC
    gattr = (hi >> 8) & 0xFF
    gdpl = (gattr >> 5) & 3
    if gdpl < R[CPL] or gdpl < (gsel & 3):
        raise CPUFault(GP, gcode)
    if not gattr & ATTR_P:
        raise CPUFault(NP, gcode)
    tss_sel = (lo >> 16) & 0xFFFF
    tlo, thi, tlin = _gdt_tss(cpu, tss_sel, GP, 0)
    tattr = (thi >> 8) & 0xFF
    if (tattr & 0x1F) != sg.T_TSS32_AVAIL:
        raise CPUFault(GP, tss_sel & 0xFFFC)
    if not tattr & ATTR_P:
        raise CPUFault(NP, tss_sel & 0xFFFC)
    switch(cpu, tss_sel, tlo, thi, tlin, reason, nxt, 0)


def interrupt_task(cpu, tss_sel, ext, ret_eip, flags, err):
    """An interrupt or exception through an IDT task gate (INT n TASK-GATE)."""
    tlo, thi, tlin = _gdt_tss(cpu, tss_sel, GP, ext)
    tattr = (thi >> 8) & 0xFF
    code = (tss_sel & 0xFFFC) | ext
    if (tattr & 0x1F) != sg.T_TSS32_AVAIL:
        raise CPUFault(GP, code)
    if not tattr & ATTR_P:
        raise CPUFault(NP, code)
    switch(cpu, tss_sel, tlo, thi, tlin, "int", ret_eip, ext, flags, err)


def iret_task(cpu, nxt):
    """IRET with NT=1: return to the task in the current TSS's link field."""
    R = cpu.R
    link = cpu.mmu.read(R[TR_BASE], 2, False)
    tlo, thi, tlin = _gdt_tss(cpu, link, TS, 0)
    tattr = (thi >> 8) & 0xFF
    if (tattr & 0x1F) != sg.T_TSS32_BUSY:
        raise CPUFault(TS, link & 0xFFFC)
    if not tattr & ATTR_P:
        raise CPUFault(NP, link & 0xFFFC)
    switch(cpu, link, tlo, thi, tlin, "iret", nxt, 0)


def _gdt_tss(cpu, sel, vec, ext):
    """A TSS selector must name the GDT: TI=1 or beyond the GDT limit -> vec(sel|ext)."""
    if sel & 4 or not sel & 0xFFFC:
        raise CPUFault(vec, (sel & 0xFFFC) | ext)
    return sg.fetch(cpu, sel, vec, ext)


# --- the switch ----------------------------------------------------------------------------

def switch(cpu, sel, lo, hi, lin, reason, save_eip, ext, flags=None, err=None):
    R = cpu.R
    mmu = cpu.mmu
    code = (sel & 0xFFFC) | ext
    base, limit, attr = sg.parse(lo, hi)
    if not _is_tss32(attr) or not _is_tss32(R[TR_ATTR]):
        raise CPUFault(GP, code)             # 16-bit TSSs are not supported
    if limit < 0x67:
        raise CPUFault(TS, code)
    nested = reason in ("call", "int")
    # --- everything that can fault in the old task's context -----------------------
    new = list(_TSS.unpack(mmu.read_bytes(base, 0x68, False)))
    if new[L_EFLAGS] & VM:
        raise VMStop("virtual-8086 mode is not supported (task switch to a V86 task)",
                     kind="unsupported")
    old_base = R[TR_BASE]
    old_sel = R[TR_SEL]
    mmu.translate((old_base + 0x20) & MASK32, True, False)
    mmu.translate((old_base + 0x5F) & MASK32, True, False)
    if nested:
        mmu.translate(base, True, False)
    old_desc = None
    if reason in ("jmp", "iret"):
        olo, ohi, olin = sg.fetch(cpu, old_sel, TS, ext)
        old_desc = (olin, ohi)
        mmu.translate((olin + 5) & MASK32, True, False)
    if reason != "iret":
        mmu.translate((lin + 5) & MASK32, True, False)
    # --- commit: save the old task ----------------------------------------------------
    if flags is None:
        flags = materialize(R)
    if reason == "iret":
        flags &= ~NT & MASK32
    if old_desc is not None:
        sg.set_busy(cpu, old_desc[0], old_desc[1], False)
    w = mmu.write
    w((old_base + 0x20) & MASK32, 4, save_eip & MASK32, False)
    w((old_base + 0x24) & MASK32, 4, flags, False)
    for i in range(8):
        w((old_base + 0x28 + 4 * i) & MASK32, 4, R[i], False)
    for i, s in enumerate(_SEG_ORDER):
        w((old_base + 0x48 + 4 * i) & MASK32, 2, R[seg_index(s, 0)], False)
    if nested:
        w(base, 2, old_sel, False)
    if reason != "iret":
        sg.set_busy(cpu, lin, hi, True)
    # --- load TR and the new task's registers ---------------------------------------------
    R[TR_SEL] = sel & 0xFFFF
    R[TR_BASE] = base
    R[TR_LIMIT] = limit
    R[TR_ATTR] = (attr & 0xFFF0) | sg.T_TSS32_BUSY
    cpu.write_cr0(R[CR0] | CR0_TS)
    if R[CR0] & CR0_PG:
        R[CR3] = new[L_CR3]
        mmu.cr3_changed()
    eflags = new[L_EFLAGS]
    if nested:
        eflags |= NT
    for i in range(8):
        R[i] = new[L_EAX + i]
    R[EIP] = new[L_EIP]
    sels = [new[L_ES + i] & 0xFFFF for i in range(6)]
    ldt = new[L_LDT] & 0xFFFF
    R[LDTR_SEL], R[LDTR_BASE], R[LDTR_LIMIT], R[LDTR_ATTR] = ldt, 0, 0, 0
    for i, s in enumerate(_SEG_ORDER):
        cpu.set_seg(s, sels[i], 0, 0, 0)
    cpl = sels[1] & 3
    cpu.set_cpl(cpl)
    cpu.set_eflags(eflags)
    # --- faults from here on belong to the new task -----------------------------------------
    try:
        _load_ldt(cpu, ldt, ext)
        for i in (1, 2, 0, 3, 4, 5):           # CS, SS, then ES DS FS GS
            _load_seg(cpu, _SEG_ORDER[i], sels[i], cpl, ext)
        if R[EIP] > cpu.segs[CS].limit:
            raise CPUFault(GP, ext)
        if err is not None:
            _, sbase, slimit, sattr = cpu.get_seg(SS)
            R[ESP] = sg.write_frame(cpu, sbase, slimit, sattr, R[ESP], ((4, err),),
                                    cpl == 3, ext)
    except CPUFault as e:
        from . import interrupts
        interrupts.raise_exception(cpu, e)
        return
    if new[L_TBIT] & 1:
        from . import interrupts
        R[DR6] |= 0x8000                        # BT: task-switch debug trap
        interrupts.raise_exception(cpu, CPUFault(DB))


def _load_ldt(cpu, ldt, ext):
    R = cpu.R
    if not ldt & 0xFFFC:
        return
    code = (ldt & 0xFFFC) | ext
    if ldt & 4:
        raise CPUFault(TS, code)
    lo, hi, lin = sg.fetch(cpu, ldt, TS, ext)
    attr = (hi >> 8) & 0xFF
    if (attr & 0x1F) != sg.T_LDT or not attr & ATTR_P:
        raise CPUFault(TS, code)
    base, limit, attr = sg.parse(lo, hi)
    R[LDTR_BASE], R[LDTR_LIMIT], R[LDTR_ATTR] = base, limit, attr


def _load_seg(cpu, sreg, sel, cpl, ext):
    """Descriptor checks of Table 7-1 for one segment register of the new task."""
    code = (sel & 0xFFFC) | ext
    if not sel & 0xFFFC:
        if sreg == CS or sreg == SS:
            raise CPUFault(TS, code)
        cpu.set_seg(sreg, sel, 0, 0, 0)
        return
    lo, hi, lin = sg.fetch(cpu, sel, TS, ext)
    attr = (hi >> 8) & 0xF0FF
    dpl = (attr >> 5) & 3
    rpl = sel & 3
    if not attr & ATTR_S:
        raise CPUFault(TS, code)
    if sreg == CS:
        if not attr & ATTR_CODE:
            raise CPUFault(TS, code)
        if (dpl > rpl) if attr & ATTR_CONFORMING else (dpl != rpl):
            raise CPUFault(TS, code)
    elif sreg == SS:
        if (attr & (ATTR_CODE | ATTR_RW)) != ATTR_RW or dpl != cpl or rpl != cpl:
            raise CPUFault(TS, code)
    else:
        if (attr & (ATTR_CODE | ATTR_RW)) == ATTR_CODE:
            raise CPUFault(TS, code)
        if (attr & (ATTR_CODE | ATTR_CONFORMING)) != (ATTR_CODE | ATTR_CONFORMING):
            if dpl < cpl or dpl < rpl:
                raise CPUFault(TS, code)
    if not attr & ATTR_P:
        raise CPUFault(SS_FAULT if sreg == SS else NP, code)
    base, limit, attr = sg.parse(lo, hi)
    sg.set_accessed(cpu, lin, hi)
    cpu.set_seg(sreg, sel, base, limit, attr | ATTR_ACCESSED)
