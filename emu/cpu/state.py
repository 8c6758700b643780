"""The one CPU-state layout shared by the interpreter (and later the JIT).

The architectural state lives in a single ctypes structure.  The interpreter
reads and writes it through a flat ``memoryview`` of 32-bit words (``R``),
indexed by the constants below; native code compiled later gets the
structure's address and uses the same offsets (``4 * index``).  Switching
tiers therefore copies nothing, and a snapshot is this structure's bytes.

Python-side caches (segment bounds, TLB dictionaries, decoded blocks) are
*derived* from this state and can always be rebuilt from it.
"""
import ctypes

# --- 32-bit word indices -----------------------------------------------------
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
EIP = 8
EFLAGS = 9          # all flag bits; the six arithmetic ones are stale while LF_OP != 0
LF_OP = 10          # lazy-flags: operation kind (see flags.py), 0 = EFLAGS is exact
LF_RES = 11         # result of the last flag-setting operation (masked to its size)
LF_A = 12           # first operand
LF_B = 13           # second operand (or carry-in / saved CF, per operation)
CR0, CR2, CR3, CR4 = 14, 15, 16, 17
DR0 = 18            # DR0..DR7 = 18..25
CPL = 26
HALTED = 27         # 1 while the CPU sits in HLT
# Segment registers: ES CS SS DS FS GS, 4 words each: selector, base, limit, attr
ES, CS, SS, DS, FS, GS = range(6)
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
SEG0 = 28           # SEG0 + 4*sreg + {0: selector, 1: base, 2: limit, 3: attr}
GDTR_BASE, GDTR_LIMIT, IDTR_BASE, IDTR_LIMIT = 52, 53, 54, 55
LDTR_SEL, LDTR_BASE, LDTR_LIMIT, LDTR_ATTR = 56, 57, 58, 59
TR_SEL, TR_BASE, TR_LIMIT, TR_ATTR = 60, 61, 62, 63
SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP = 64, 65, 66
TSC_LO, TSC_HI = 67, 68          # TSC offset added to the instruction clock
APIC_BASE_LO, APIC_BASE_HI = 69, 70
INHIBIT_IRQ = 71    # 1: interrupts are held off for one instruction (STI, MOV SS)
A20 = 72            # 1: address line 20 enabled
NMI_BLOCKED = 73    # 1: an NMI handler is running; NMIs wait for the next IRET
PAT_LO, PAT_HI = 74, 75   # IA32_PAT (memory types: stored, no effect on emulation)
# x87 control/status words live in the same word array.
FPU_CW, FPU_SW, FPU_TW, FPU_TOP = 80, 81, 82, 83
FPU_IP, FPU_CS, FPU_DP, FPU_DS, FPU_OP = 84, 85, 86, 87, 88
MXCSR = 89
NWORDS = 128

# Segment attribute word (the descriptor's access byte in bits 0-7, flags
# nibble G/D/L/AVL in bits 12-15, exactly as bits 8-23 of the descriptor's
# high dword, shifted down by 8).  Real-mode segments get 0x0093 (present,
# data, writable, accessed); CS 0x009B.
ATTR_P = 0x80
ATTR_DPL_SHIFT = 5
ATTR_S = 0x10           # code/data (not system)
ATTR_CODE = 0x08
ATTR_CONFORMING = 0x04  # code: conforming; data: expand-down
ATTR_RW = 0x02          # code: readable; data: writable
ATTR_ACCESSED = 0x01
ATTR_DB = 0x4000        # D/B bit
ATTR_G = 0x8000


class CPUState(ctypes.Structure):
    """Word array + the eight x87 data registers (IEEE double for now)."""
    _fields_ = [
        ("words", ctypes.c_uint32 * NWORDS),
        ("fpr", ctypes.c_double * 8),
    ]


def views(state):
    """Return (R, F): a 'I' memoryview over the words, a 'd' view over fpr."""
    raw = memoryview(state).cast("B")
    R = raw[: 4 * NWORDS].cast("I")
    F = raw[4 * NWORDS: 4 * NWORDS + 64].cast("d")
    return R, F


def seg_index(sreg, field):
    """Word index of field (0 sel, 1 base, 2 limit, 3 attr) of segment sreg."""
    return SEG0 + 4 * sreg + field
