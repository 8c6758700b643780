"""Model-specific registers (RDMSR/WRMSR), P6 flavour.

Every MSR value lives in the state words (state.py), so snapshots carry it:

  0x10   IA32_TIME_STAMP_COUNTER  TSC = instruction clock + offset (TSC_HI:TSC_LO).
         Read: the 64-bit TSC.  Write: as on P6 family processors only the
         low 32 bits are written and the high 32 bits are cleared (SDM Vol. 3
         "Time-Stamp Counter"); the offset is adjusted so that the counter
         continues from the written value.
  0x17   IA32_PLATFORM_ID         read-only, reads 0 (write: #GP(0)).
  0x1B   IA32_APIC_BASE           64 bits in APIC_BASE_LO/HI.  Writing a
         reserved bit (0-7, 9, 10, 36-63 on a 36-bit physical address) is
         #GP(0).  (No local APIC is modelled: the value is only stored.)
  0x8B   IA32_BIOS_SIGN_ID        microcode revision: reads 0, writes are
         accepted and ignored (Linux writes 0 then reads it on every family-6
         CPU, without an exception fix-up on older kernels).
  0x174  IA32_SYSENTER_CS         32 bits (EDX ignored on write, reads 0)
  0x175  IA32_SYSENTER_ESP        32 bits
  0x176  IA32_SYSENTER_EIP        32 bits
Any other index: #GP(0).

``clock(cpu)`` is the instruction clock at the current instruction
(cpu.icount is only advanced at block boundaries; clock() adds the part of
the running block that has retired).
"""
from .faults import CPUFault, GP
from .state import (TSC_LO, TSC_HI, SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP,
                    APIC_BASE_LO, APIC_BASE_HI, PAT_LO, PAT_HI)

IA32_TSC = 0x10
IA32_PLATFORM_ID = 0x17
IA32_APIC_BASE = 0x1B
IA32_BIOS_SIGN_ID = 0x8B
IA32_PAT = 0x277
PAT_RESET = 0x0007040600070406
PAT_VALID_TYPES = frozenset((0, 1, 4, 5, 6, 7))   # 2, 3 and 8-255 are reserved: #GP
IA32_SYSENTER_CS = 0x174
IA32_SYSENTER_ESP = 0x175
IA32_SYSENTER_EIP = 0x176

APIC_BASE_RESERVED = 0xFFFFFFF0_000006FF     # bits 0-7, 9, 10, 36-63
MASK64 = (1 << 64) - 1

_SYSENTER = {IA32_SYSENTER_CS: SYSENTER_CS, IA32_SYSENTER_ESP: SYSENTER_ESP,
             IA32_SYSENTER_EIP: SYSENTER_EIP}



def clock(cpu, eip=None):
    """Instructions retired before the current one: cpu.clock(), exact inside
    a block.  (``eip`` is accepted for callers that know the instruction.)"""
    return cpu.clock()

def tsc(cpu, eip=None):
    R = cpu.R
    return (clock(cpu, eip) + (R[TSC_HI] << 32 | R[TSC_LO])) & MASK64


def set_tsc(cpu, value, eip=None):
    R = cpu.R
    off = (value - clock(cpu, eip)) & MASK64
    R[TSC_LO] = off & 0xFFFFFFFF
    R[TSC_HI] = off >> 32


def rdmsr(cpu, index, eip=None):
    """64-bit value of MSR ``index``; raises #GP(0) for an unknown one."""
    R = cpu.R
    if index == IA32_TSC:
        return tsc(cpu, eip)
    w = _SYSENTER.get(index)
    if w is not None:
        return R[w]
    if index == IA32_APIC_BASE:
        return R[APIC_BASE_HI] << 32 | R[APIC_BASE_LO]
    if index == IA32_PAT:
        return R[PAT_HI] << 32 | R[PAT_LO]
    if index == IA32_BIOS_SIGN_ID or index == IA32_PLATFORM_ID:
        return 0
    raise CPUFault(GP, 0)


def wrmsr(cpu, index, value, eip=None):
    """Write MSR ``index``; raises #GP(0) (before any change) when refused."""
    R = cpu.R
    if index == IA32_TSC:
        set_tsc(cpu, value & 0xFFFFFFFF, eip)
        return
    w = _SYSENTER.get(index)
    if w is not None:
        R[w] = value & 0xFFFFFFFF
        return
    if index == IA32_APIC_BASE:
        if value & APIC_BASE_RESERVED:
            raise CPUFault(GP, 0)
        R[APIC_BASE_LO] = value & 0xFFFFFFFF
        R[APIC_BASE_HI] = value >> 32
        return
    if index == IA32_PAT:
        if any(((value >> (8 * i)) & 0xFF) not in PAT_VALID_TYPES for i in range(8)):
            raise CPUFault(GP, 0)
        R[PAT_LO] = value & 0xFFFFFFFF
        R[PAT_HI] = (value >> 32) & 0xFFFFFFFF
        return
    if index == IA32_BIOS_SIGN_ID:
        return
    raise CPUFault(GP, 0)
