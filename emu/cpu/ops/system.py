"""System instructions: HLT, CLI/STI (more of the family below)."""
from ..faults import CPUFault, GP
from ..flags import IF, IOPL_MASK, VM
from ..state import EFLAGS, EIP, HALTED, CPL, INHIBIT_IRQ


def hlt(cpu, insn):
    R = cpu.R
    n = insn.next_eip

    def f():
        if R[CPL] != 0 and cpu.protected:
            raise CPUFault(GP, 0)
        R[EIP] = n
        R[HALTED] = 1
        cpu.event = True
    return f


def _iopl_ok(cpu):
    R = cpu.R
    if not cpu.protected:
        return True
    return R[CPL] <= (R[EFLAGS] & IOPL_MASK) >> 12


def cli(cpu, insn):
    R = cpu.R

    def f():
        if not _iopl_ok(cpu):
            raise CPUFault(GP, 0)
        R[EFLAGS] &= ~IF & 0xFFFFFFFF
    return f


def sti(cpu, insn):
    R = cpu.R

    def f():
        if not _iopl_ok(cpu):
            raise CPUFault(GP, 0)
        if not R[EFLAGS] & IF:
            R[EFLAGS] |= IF
            R[INHIBIT_IRQ] = 1
        cpu.event = True
    return f
