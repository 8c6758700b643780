"""Port I/O: IN and OUT (E4-E7, EC-EF), and the I/O permission check.

``check_io(cpu, port, size)`` is the protection rule of SDM Vol. 1 §18.5 /
Vol. 3 "I/O permission bit map" for every I/O instruction (the string forms
INS/OUTS import it too).  In real mode everything is allowed; in protected
mode with CPL <= IOPL as well.  With CPL > IOPL, or in virtual-8086 mode
(where IOPL does not matter for I/O instructions), the TSS I/O permission
bit map decides:

* TR must hold a present 32-bit TSS (type 9 or 11) with limit >= 0x67,
  else #GP(0) (a 16-bit TSS has no bit map);
* the bit map starts at the 16-bit offset stored at TSS+0x66;
* the processor reads the two bytes at bitmap + port/8 (so that a 2- or
  4-byte access whose bits straddle a byte boundary is covered); both must
  lie within the TSS limit, else #GP(0);
* every bit for port .. port+size-1 must be 0, else #GP(0).
The TSS reads are implicit supervisor-mode accesses (a page fault there is
a #PF with U/S = 0 in its error code).

The port value itself comes from / goes to ``cpu.ports`` (the machine's
PortBus, emu/devices/portbus.py) as ``read(port, size)`` /
``write(port, size, value)``; the check is done before the access, so a
refused instruction has no effect at all.
"""
from ..faults import CPUFault, GP
from ..flags import VM
from ..state import EAX, EDX, EFLAGS, CPL, CR0, TR_BASE, TR_LIMIT, TR_ATTR

_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


def bitmap_allows(cpu, port, size):
    """The TSS I/O bit-map test alone: raises #GP(0) unless every bit is 0."""
    R = cpu.R
    attr = R[TR_ATTR]
    limit = R[TR_LIMIT]
    # present (0x80), system (S = 0), type 9 or 11 (32-bit TSS, available/busy)
    if (attr & 0x9D) != 0x89 or limit < 0x67:
        raise CPUFault(GP, 0)
    base = R[TR_BASE]
    mmu = cpu.mmu
    off = mmu.read((base + 0x66) & 0xFFFFFFFF, 2, False) + (port >> 3)
    if off + 1 > limit:
        raise CPUFault(GP, 0)
    bits = mmu.read((base + off) & 0xFFFFFFFF, 2, False)
    if (bits >> (port & 7)) & ((1 << size) - 1):
        raise CPUFault(GP, 0)


def check_io(cpu, port, size):
    """Raise #GP(0) if an I/O access of ``size`` bytes at ``port`` is not allowed now."""
    R = cpu.R
    if not R[CR0] & 1:
        return
    e = R[EFLAGS]
    if not (e & VM) and R[CPL] <= (e >> 12) & 3:
        return
    bitmap_allows(cpu, port & 0xFFFF, size)


def _port_getter(cpu, insn):
    """(fixed_port or None) for the row's port operand (Ib or DX)."""
    if "Ib" in insn.row.operands:
        return insn.imm & 0xFF
    return None


def in_(cpu, insn):
    R = cpu.R
    size = insn.size
    mask = _MASK[size]
    keep = 0xFFFFFFFF & ~mask
    fixed = _port_getter(cpu, insn)

    def f():
        port = fixed if fixed is not None else R[EDX] & 0xFFFF
        if R[CR0] & 1:
            e = R[EFLAGS]
            if (e & VM) or R[CPL] > (e >> 12) & 3:
                bitmap_allows(cpu, port, size)
        v = cpu.ports.read(port, size) & mask
        R[EAX] = (R[EAX] & keep) | v
    return f


def out(cpu, insn):
    R = cpu.R
    size = insn.size
    mask = _MASK[size]
    fixed = _port_getter(cpu, insn)

    def f():
        port = fixed if fixed is not None else R[EDX] & 0xFFFF
        if R[CR0] & 1:
            e = R[EFLAGS]
            if (e & VM) or R[CPL] > (e >> 12) & 3:
                bitmap_allows(cpu, port, size)
        cpu.ports.write(port, size, R[EAX] & mask)
    return f
