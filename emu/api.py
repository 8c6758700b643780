"""The library API: a whole IA-32 CPU with its system state, scriptable.

Like Unicorn's API, but the CPU keeps real system semantics (descriptor
caches, paging through shadow page tables, exceptions delivered through the
IDT unless you ask to stop on them)::

    from emu.api import Emu
    e = Emu(ram_size=1 << 20)                     # real mode, like after reset
    e.set_segment("cs", 0x0000)                   # real-mode load: base = sel << 4
    e.mem_write(0x7C00, bytes.fromhex("b80500" "83c003" "f4"))   # mov ax,5; add ax,3; hlt
    e.reg_write("eip", 0x7C00)
    r = e.run()                                   # -> Stop(reason='hlt', ...)
    assert e.reg_read("eax") == 8

Registers by name: eax..edi, ax.., al..bh, eip, eflags, cr0 cr2 cr3 cr4,
dr0..dr7, cpl, gdtr_base/gdtr_limit, idtr_base/idtr_limit, sysenter_cs/esp/eip,
and segment selectors es cs ss ds fs gs (set_segment/get_segment for the
hidden parts).
"""
from dataclasses import dataclass

from .cpu.cpu import CPU
from .cpu import state as S
from .cpu.faults import CPUFault, VMStop, VECTOR_NAMES
from .cpu.flags import materialize

_GPR = {n: i for i, n in enumerate(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"))}
_GPR16 = {n: i for i, n in enumerate(("ax", "cx", "dx", "bx", "sp", "bp", "si", "di"))}
_GPR8 = {n: i for i, n in enumerate(("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"))}
_SEGS = {n: i for i, n in enumerate(S.SEG_NAMES)}
_WORDS = {
    "eip": S.EIP, "cr0": S.CR0, "cr2": S.CR2, "cr3": S.CR3, "cr4": S.CR4, "cpl": S.CPL,
    "gdtr_base": S.GDTR_BASE, "gdtr_limit": S.GDTR_LIMIT,
    "idtr_base": S.IDTR_BASE, "idtr_limit": S.IDTR_LIMIT,
    "ldtr": S.LDTR_SEL, "tr": S.TR_SEL,
    "sysenter_cs": S.SYSENTER_CS, "sysenter_esp": S.SYSENTER_ESP, "sysenter_eip": S.SYSENTER_EIP,
    "fpu_cw": S.FPU_CW, "fpu_sw": S.FPU_SW, "fpu_tw": S.FPU_TW,
}
for _i in range(8):
    _WORDS["dr%d" % _i] = S.DR0 + _i


@dataclass
class Stop:
    """Why run() returned."""
    reason: str                 # 'count', 'until', 'hlt', 'exception', 'vmstop'
    instructions: int           # retired during this run
    vector: int = None          # with 'exception': the fault
    error_code: int = None
    cr2: int = None
    message: str = ""

    @property
    def exception_name(self):
        return VECTOR_NAMES.get(self.vector) if self.vector is not None else None


class Emu:
    def __init__(self, ram_size=1 << 20, ports=None, stop_on_exception=True):
        self.cpu = CPU(ram_size=ram_size, ports=ports)
        self.cpu.stop_on_fault = stop_on_exception
        self.phys = self.cpu.phys
        self.mmu = self.cpu.mmu
        self.R = self.cpu.R

    # --- registers ------------------------------------------------------------
    def reg_read(self, name):
        n = name.lower()
        R = self.R
        if n in _GPR:
            return R[_GPR[n]]
        if n in _GPR16:
            return R[_GPR16[n]] & 0xFFFF
        if n in _GPR8:
            i = _GPR8[n]
            return (R[i - 4] >> 8) & 0xFF if i >= 4 else R[i] & 0xFF
        if n in ("eflags", "flags"):
            return materialize(R)
        if n in _SEGS:
            return R[S.seg_index(_SEGS[n], 0)]
        if n in _WORDS:
            return R[_WORDS[n]]
        raise KeyError("unknown register %r" % name)

    def reg_write(self, name, value):
        n = name.lower()
        R = self.R
        cpu = self.cpu
        if n in _GPR:
            R[_GPR[n]] = value & 0xFFFFFFFF
        elif n in _GPR16:
            i = _GPR16[n]
            R[i] = (R[i] & 0xFFFF0000) | (value & 0xFFFF)
        elif n in _GPR8:
            i = _GPR8[n]
            if i >= 4:
                R[i - 4] = (R[i - 4] & 0xFFFF00FF) | ((value & 0xFF) << 8)
            else:
                R[i] = (R[i] & 0xFFFFFF00) | (value & 0xFF)
        elif n in ("eflags", "flags"):
            cpu.set_eflags(value)
        elif n == "cr0":
            cpu.write_cr0(value)
        elif n == "cr4":
            cpu.write_cr4(value)
        elif n == "cr3":
            R[S.CR3] = value & 0xFFFFFFFF
            cpu.mmu.cr3_changed()
        elif n == "cpl":
            cpu.set_cpl(value & 3)
        elif n in _SEGS:
            self.set_segment(n, value)
        elif n in _WORDS:
            R[_WORDS[n]] = value & 0xFFFFFFFF
            if n == "eip":
                R[S.HALTED] = 0        # an explicit EIP write restarts a halted CPU
                cpu.event = True
        else:
            raise KeyError("unknown register %r" % name)

    def set_segment(self, name, selector, base=None, limit=None, attr=None):
        """Set a segment register.  With only a selector: real-mode style
        (base = selector << 4, limit and attributes kept).  With base/limit/
        attr: the hidden descriptor cache is set exactly (no table lookup)."""
        s = _SEGS[name.lower()]
        sel, b0, l0, a0 = self.cpu.get_seg(s)
        if base is None:
            base = (selector & 0xFFFF) << 4
        self.cpu.set_seg(s, selector, base, l0 if limit is None else limit,
                         a0 if attr is None else attr)

    def get_segment(self, name):
        """(selector, base, limit, attr) of a segment register."""
        return self.cpu.get_seg(_SEGS[name.lower()])

    # --- memory -----------------------------------------------------------------
    def mem_write(self, paddr, data):
        """Write guest-physical memory (as a device would: code caches see it)."""
        self.phys.write_bytes(paddr, bytes(data))

    def mem_read(self, paddr, n):
        return bytes(self.phys.read_bytes(paddr, n))

    def virt_read(self, lin, n):
        """Read through the current translation (supervisor access); may raise CPUFault."""
        return bytes(self.mmu.read_bytes(lin, n, False))

    def virt_write(self, lin, data):
        self.mmu.write_bytes(lin, bytes(data), False)

    # --- running ------------------------------------------------------------------
    def run(self, count=None, until=None):
        cpu = self.cpu
        start = cpu.icount
        try:
            reason = cpu.run(count, until)
        except VMStop as e:
            return Stop("vmstop", cpu.icount - start, message=e.reason)
        st = Stop(reason, cpu.icount - start)
        if reason == "exception":
            f = cpu.last_fault
            st.vector, st.error_code, st.cr2 = f.vector, f.error_code, f.cr2
            st.message = str(f)
        return st

    def step(self):
        return self.run(count=1)

    def interrupt(self, vector):
        """Raise an external interrupt (taken when IF=1 at the next boundary)."""
        self.cpu.raise_interrupt(vector)

    @property
    def counters(self):
        c = dict(self.cpu.counters)
        c["mmu"] = dict(self.mmu.counters)
        c["interp"] = dict(self.cpu.interp.counters)
        return c


__all__ = ["Emu", "Stop", "CPUFault", "VMStop"]
