"""Delivering exceptions and interrupts: real mode (IVT) and protected mode (IDT).

``deliver(cpu, vector, error_code, kind, next_eip)``:
  kind = "exception" (faults and traps raised by the CPU),
         "software"  (INT n, INT3, INTO: gate DPL is checked against CPL),
         "external"  (an IRQ or NMI from the machine: no DPL check, EXT=1).
``next_eip`` is the return address for traps and software interrupts; None
means "the current EIP" (faults, where the run loop has already rewound EIP
to the faulting instruction).

``raise_exception(cpu, fault)`` adds the double-fault rules of SDM Vol. 3
Table 6-5 and turns a fault while delivering #DF into a triple fault.
"""
from .faults import CPUFault, VMStop, DF, PF, GP, CONTRIBUTORY, VECTOR_NAMES
from .state import EIP, EFLAGS, CS, IDTR_BASE, IDTR_LIMIT, CR2, HALTED, INHIBIT_IRQ
from .flags import materialize, IF, TF, AC, RF

_AC_TF_IF = AC | TF | IF


def deliver(cpu, vector, error_code=None, kind="exception", next_eip=None):
    R = cpu.R
    R[HALTED] = 0
    ret = R[EIP] if next_eip is None else next_eip
    if cpu.protected:
        from . import protected_interrupts
        protected_interrupts.deliver(cpu, vector, error_code, kind, ret)
        return
    # Real-address mode (SDM Vol. 2, INT n pseudocode, REAL-ADDRESS-MODE)
    if vector * 4 + 3 > R[IDTR_LIMIT]:
        raise CPUFault(GP, vector * 8 + 2 + (1 if kind == "external" else 0))
    flags = materialize(R)
    mem = cpu.mem
    off = (R[IDTR_BASE] + vector * 4) & 0xFFFFFFFF
    new_ip = cpu.mmu.read(off, 2, False)
    new_cs = cpu.mmu.read((off + 2) & 0xFFFFFFFF, 2, False)
    cs_sel = cpu.get_seg(CS)[0]
    # push FLAGS, CS, IP; a stack fault here is #SS (escalated by the caller)
    cpu.push(flags & 0xFFFF, 2)
    cpu.push(cs_sel, 2)
    cpu.push(ret & 0xFFFF, 2)
    R[EFLAGS] = flags & ~_AC_TF_IF
    cpu.load_sreg(CS, new_cs)
    R[EIP] = new_ip
    del mem


def raise_exception(cpu, fault):
    """Deliver an exception raised by an instruction, with #DF/triple-fault rules."""
    R = cpu.R
    first = fault.vector
    c = cpu.counters["exceptions"]
    c[first] = c.get(first, 0) + 1
    if first == PF and fault.cr2 is not None:
        R[CR2] = fault.cr2 & 0xFFFFFFFF
    R[INHIBIT_IRQ] = 0
    R[EFLAGS] &= ~RF & 0xFFFFFFFF
    try:
        deliver(cpu, first, fault.error_code, "exception")
        return
    except CPUFault as second:
        if first == DF:
            return triple_fault(cpu, "fault while delivering #DF: %s" % second)
        benign_pair = not ((first in CONTRIBUTORY and second.vector in CONTRIBUTORY) or
                           (first == PF and (second.vector in CONTRIBUTORY or second.vector == PF)))
        if benign_pair:
            # handled serially: deliver the second one instead
            if second.vector == PF and second.cr2 is not None:
                R[CR2] = second.cr2 & 0xFFFFFFFF
            try:
                deliver(cpu, second.vector, second.error_code, "exception")
                return
            except CPUFault as third:
                return raise_double_fault(cpu, "%s, %s, then %s" % (fault, second, third))
        if second.vector == PF and second.cr2 is not None:
            R[CR2] = second.cr2 & 0xFFFFFFFF
        return raise_double_fault(cpu, "%s then %s" % (fault, second))


def raise_double_fault(cpu, why):
    c = cpu.counters["exceptions"]
    c[DF] = c.get(DF, 0) + 1
    try:
        deliver(cpu, DF, 0, "exception")
    except CPUFault as e:
        triple_fault(cpu, "%s; then %s while delivering #DF" % (why, e))


def triple_fault(cpu, why):
    """Shutdown.  The machine may reset the CPU instead of stopping the VM."""
    if cpu.on_triple_fault is not None:
        cpu.on_triple_fault(why)
        return
    raise VMStop("triple fault: " + why, kind="triple-fault")


def describe(vector):
    return VECTOR_NAMES.get(vector, "vector %d" % vector)
