"""One IA-32 CPU: state, memory path, stack helpers, segment loads, and run().

The CPU owns no devices.  It reaches I/O ports through ``ports`` (any object
with ``read(port, size)`` and ``write(port, size, value)``) and interrupt
controllers through ``irq`` (an object with ``pending()`` -> bool and
``acknowledge()`` -> vector), both provided by the machine.
"""
from .state import (CPUState, views, EIP, EFLAGS, CR0, CR4, CPL, ESP, SS, CS, HALTED, A20,
                    INHIBIT_IRQ,
                    seg_index, FPU_CW, FPU_TW, MXCSR, LF_OP, GDTR_LIMIT, IDTR_LIMIT,
                    LDTR_LIMIT, LDTR_ATTR, TR_LIMIT, TR_ATTR, DR0, PAT_LO, PAT_HI)
from .memory import SegCache, make_accessors
from .flags import materialize, FIXED1, IF, TF, VM
from .faults import CPUFault, VMStop
from . import interrupts
from .interp import Interpreter
from ..mmu.physmem import PhysMem
from ..mmu.shadow import MMU

CR0_PE, CR0_MP, CR0_EM, CR0_TS, CR0_ET, CR0_NE, CR0_WP, CR0_AM, CR0_NW, CR0_CD, CR0_PG = (
    1, 2, 4, 8, 0x10, 0x20, 0x10000, 0x40000, 0x20000000, 0x40000000, 0x80000000)


class NullPorts:
    """Port bus with nothing on it: reads float high, writes vanish; counted."""

    def __init__(self):
        self.unhandled = 0

    def read(self, port, size):
        self.unhandled += 1
        return (1 << (8 * size)) - 1

    def write(self, port, size, value):
        self.unhandled += 1


class CPU:
    def __init__(self, phys=None, ram_size=16 << 20, ports=None):
        self.state = CPUState()
        self.R, self.F = views(self.state)
        self.phys = phys if phys is not None else PhysMem(ram_size)
        self.mmu = MMU(self.phys, self.R)
        self.segs = [SegCache(i) for i in range(6)]
        self.user = False
        self.mem = make_accessors(self)
        self.ports = ports if ports is not None else NullPorts()
        self.irq = None                 # interrupt controller (machine's)
        self.nmi_pending = False
        self.pending_vectors = []       # interrupts queued through the API (no PIC)
        self.inhibit_end = None         # clock at which an STI/MOV SS shadow was set (hold_interrupts)
        self.event = True               # something to look at between blocks
        self.stop_on_fault = False      # API/tests: stop at a fault instead of delivering it
        self.stop_requested = False
        self.last_fault = None
        self.icount = 0                 # instructions retired: the virtual clock
        self.counters = {"unimplemented": {}, "exceptions": {}, "interrupts": 0}
        self.on_triple_fault = None     # machine hook; default: VMStop
        self.fpu = None
        try:
            from .fpu import FPU
            self.fpu = FPU(self.R, self.F)
        except ImportError:
            pass
        self.interp = Interpreter(self)
        self.reset()

    # --- reset / mode ---------------------------------------------------------
    def reset(self):
        """Power-on state (SDM Vol. 3 §9.1.1), with CS:IP = F000:FFF0."""
        R = self.R
        for i in range(len(R)):
            R[i] = 0
        R[EFLAGS] = FIXED1
        R[CR0] = CR0_ET | CR0_CD | CR0_NW
        R[EIP] = 0xFFF0
        R[A20] = 1
        R[FPU_CW] = 0x40
        R[FPU_TW] = 0xFFFF
        R[MXCSR] = 0x1F80
        R[2] = 0x0633    # EDX: family 6 model 3 stepping 3 signature after reset
        R[GDTR_LIMIT] = R[IDTR_LIMIT] = 0xFFFF
        R[LDTR_LIMIT] = R[TR_LIMIT] = 0xFFFF
        R[PAT_LO] = R[PAT_HI] = 0x00070406      # IA32_PAT power-on value
        R[DR0 + 6] = 0xFFFF0FF0
        R[DR0 + 7] = 0x400
        R[LDTR_ATTR] = 0x82
        R[TR_ATTR] = 0x8B
        if self.fpu is not None:
            self.fpu.power_on_reset()
        for s in range(6):
            self.set_seg(s, 0, 0, 0xFFFF, 0x93)
        self.set_seg(CS, 0xF000, 0xFFFF0000, 0xFFFF, 0x9B)
        self.set_cpl(0)
        self.mmu.paging_changed()
        self.interp.flush()

    @property
    def protected(self):
        return bool(self.R[CR0] & CR0_PE)

    @property
    def v86(self):
        return bool(self.R[EFLAGS] & VM)

    def set_cpl(self, cpl):
        self.R[CPL] = cpl
        user = cpl == 3
        if user != self.user:
            self.user = user
        self.mmu.set_privilege(user)

    # --- segments -------------------------------------------------------------
    def set_seg(self, sreg, sel, base, limit, attr):
        """Load a segment register's selector and hidden part directly."""
        R = self.R
        i = seg_index(sreg, 0)
        R[i] = sel & 0xFFFF
        R[i + 1] = base & 0xFFFFFFFF
        R[i + 2] = limit & 0xFFFFFFFF
        R[i + 3] = attr & 0xFFFF
        self.segs[sreg].update(base & 0xFFFFFFFF, limit & 0xFFFFFFFF, attr & 0xFFFF,
                               self.protected and not self.v86)
        if sreg == CS:
            self.interp.mode_changed()

    def refresh_segs(self):
        """Rebuild the derived segment caches from the state words."""
        R = self.R
        prot = self.protected and not self.v86
        for s in range(6):
            i = seg_index(s, 0)
            self.segs[s].update(R[i + 1], R[i + 2], R[i + 3], prot)
        self.interp.mode_changed()

    def get_seg(self, sreg):
        i = seg_index(sreg, 0)
        R = self.R
        return R[i], R[i + 1], R[i + 2], R[i + 3]

    def load_sreg(self, sreg, sel):
        """MOV/POP/LxS to a segment register, with the mode's rules."""
        if not self.protected:
            i = seg_index(sreg, 0)
            self.set_seg(sreg, sel, sel << 4, self.R[i + 2], self.R[i + 3])
        elif self.v86:
            self.set_seg(sreg, sel, sel << 4, 0xFFFF, 0xF3 if sreg != CS else 0xFB)
        else:
            from . import segments
            segments.load_data_or_stack(self, sreg, sel)

    # --- stack ------------------------------------------------------------------
    def push(self, v, size):
        R = self.R
        if self.segs[SS].big:
            sp = (R[ESP] - size) & 0xFFFFFFFF
            self.mem.WR[size](SS, sp, v)
            R[ESP] = sp
        else:
            sp = (R[ESP] - size) & 0xFFFF
            self.mem.WR[size](SS, sp, v)
            R[ESP] = (R[ESP] & 0xFFFF0000) | sp

    def pop(self, size):
        R = self.R
        if self.segs[SS].big:
            sp = R[ESP]
            v = self.mem.RD[size](SS, sp)
            R[ESP] = (sp + size) & 0xFFFFFFFF
        else:
            sp = R[ESP] & 0xFFFF
            v = self.mem.RD[size](SS, sp)
            R[ESP] = (R[ESP] & 0xFFFF0000) | ((sp + size) & 0xFFFF)
        return v

    # --- flags ------------------------------------------------------------------
    def get_eflags(self):
        return materialize(self.R)

    def set_eflags(self, value):
        """Write all of EFLAGS (no privilege rules: that is POPF's/IRET's job)."""
        R = self.R
        old = R[EFLAGS]
        R[LF_OP] = 0
        new = R[EFLAGS] = (value & 0x3F7FD7) | FIXED1
        # the run loop must look at events only if this can start one: IF set
        # with an interrupt (or an NMI) waiting, single-stepping, a mode change.
        # (An interrupt that arrives later sets cpu.event itself; an event
        # for nothing makes native code return to Python: IRET does this
        # ~40k times on a Linux boot.)
        if (new & TF) or (new ^ old) & VM or (
                new & ~old & IF and (self.irq_pending() or self.nmi_pending)) or self.nmi_pending:
            self.event = True
        if (new ^ old) & VM:
            self.refresh_segs()

    # --- control registers ---------------------------------------------------------
    def write_cr0(self, value):
        R = self.R
        old = R[CR0]
        value = (value | CR0_ET) & 0xE005003F
        R[CR0] = value
        if (old ^ value) & CR0_PE:
            self.refresh_segs()
        if (old ^ value) & (CR0_PG | CR0_WP | CR0_PE):
            self.mmu.paging_changed()

    def write_cr4(self, value):
        R = self.R
        old = R[CR4]
        R[CR4] = value
        if (old ^ value) & 0xB0:        # PSE, PAE, PGE change translations
            self.mmu.paging_changed()

    def set_a20(self, enabled):
        if bool(self.R[A20]) != bool(enabled):
            self.R[A20] = 1 if enabled else 0
            self.mmu.paging_changed()
            self.interp.flush()

    # --- events ------------------------------------------------------------------
    def deliver(self, vector, error_code=None, kind="exception", next_eip=None):
        interrupts.deliver(self, vector, error_code, kind, next_eip)

    def hold_interrupts(self, always_look=False):
        """STI (IF 0 -> 1), MOV SS, POP SS: interrupts and NMIs are held off
        until the next instruction has run (INHIBIT_IRQ).  The shadow ends by
        the clock, not at the next look at events: with nothing pending the
        run loop need not stop at all (the interpreter's slow path, and for
        native code a return to Python), and an interrupt that arrives later
        must not be held off by a shadow long over.  ``always_look``: make the
        run loop look at events anyway (a stack switch, as before)."""
        R = self.R
        R[INHIBIT_IRQ] = 1
        self.inhibit_end = self.clock() + 1      # the clock once this instruction retired
        if always_look or self.nmi_pending or (R[EFLAGS] & TF) or self.irq_pending():
            self.event = True

    def shadow_over(self):
        """Clear INHIBIT_IRQ if the instruction after the one that set it has run."""
        end = self.inhibit_end
        if end is not None and self.clock() > end:
            self.R[INHIBIT_IRQ] = 0
            self.inhibit_end = None

    def irq_pending(self):
        if self.pending_vectors:
            return True
        return self.irq is not None and self.irq.pending()

    def irq_acknowledge(self):
        if self.pending_vectors:
            return self.pending_vectors.pop(0)
        return self.irq.acknowledge()

    def request_stop(self):
        """Make run() return "stop" at the next block boundary (the machine's
        devices ask for this: power-off, reset, a closed window)."""
        self.stop_requested = True
        self.event = True

    def raise_interrupt(self, vector):
        """Queue an external (maskable) interrupt with the given vector."""
        self.pending_vectors.append(vector & 0xFF)
        self.event = True

    def clock(self):
        """Instructions retired so far, exact even in the middle of a block: the
        virtual clock that the TSC and (later) every device timer read."""
        n = self.icount
        it = self.interp.cur_iter
        if it is not None:
            st = it.__reduce__()
            if len(st) > 2 and st[2] > 1:
                n += st[2] - 1
        return n

    def halted(self):
        return bool(self.R[HALTED])

    def count_unimplemented(self, mnem):
        d = self.counters["unimplemented"]
        d[mnem] = d.get(mnem, 0) + 1

    # --- running ----------------------------------------------------------------
    def run(self, max_insns=None, until=None):
        """Run until max_insns retire, EIP == until at an instruction boundary,
        HLT, or a VM stop.  Returns the stop reason string."""
        return self.interp.run(max_insns, until)

    def step(self):
        return self.interp.run(1, None)


__all__ = ["CPU", "CPUFault", "VMStop"]
