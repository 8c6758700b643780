"""CPUID: the identity emu reports, and only features it really implements.

emu presents itself as a family-6 "GenuineIntel" processor of the P6 line
(signature 0x633: family 6, model 3, stepping 3 - the Pentium II "Klamath",
the same value the CPU puts in EDX at reset).  Leaf 1 advertises exactly the
features whose instructions and control bits exist in this emulator:

  bit  0 FPU    x87 (emu/cpu/fpu.py)
  bit  2 DE     CR4.DE: DR4/DR5 are #UD instead of aliasing DR6/DR7.
                (Debug registers are stored and read back; breakpoints of
                 any kind - including the I/O ones DE adds - are not armed.)
  bit  3 PSE    4 MiB pages with CR4.PSE
  bit  4 TSC    RDTSC, CR4.TSD, MSR 0x10
  bit  5 MSR    RDMSR/WRMSR (emu/cpu/msr.py)
  bit  8 CX8    CMPXCHG8B
  bit 11 SEP    SYSENTER/SYSEXIT (valid: model 3 stepping 3 is not the
                Pentium Pro case family 6 model < 3 stepping < 3)
  bit 13 PGE    global pages with CR4.PGE
  bit 15 CMOV   CMOVcc (FCMOV/FCOMI come with the FPU)
  bit 24 FXSR   only when the x87 family provides FXSAVE/FXRSTOR builders
                (checked once, lazily: ``features()``); then CR4.OSFXSR is
                writable too.

  bit 16 PAT    the IA32_PAT MSR (stored; memory types do not matter here)

Not advertised (not implemented): VME, MCE, APIC, MTRR, MCA, PSE-36,
MMX, SSE and everything later.  Leaf 2 gives the Pentium II cache/TLB
descriptors.  Leaves 0x80000000-0x80000004 give a brand string (harmless
on a P6 identity: software that checks 0x80000000 >= 0x80000004 reads it).
Any leaf above the maximum basic leaf (2) that is not one of those
extended leaves returns the data of the highest basic leaf, as the SDM says
for inputs above the maximum of their range.
"""
import struct

MAX_BASIC = 2
MAX_EXT = 0x80000004
VENDOR = b"GenuineIntel"
SIGNATURE = 0x00000633            # family 6, model 3, stepping 3
BRAND = b"emu IA-32 virtual CPU (P6 family)"

F_FPU, F_DE, F_PSE, F_TSC, F_MSR, F_CX8, F_SEP, F_PGE, F_CMOV, F_PAT, F_FXSR = (
    1 << 0, 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 8, 1 << 11, 1 << 13, 1 << 15, 1 << 16,
    1 << 24)
# PAT: the IA32_PAT MSR is kept (emu/cpu/msr.py) and the walker takes PTE bit 7 /
# 4 MiB PDE bit 12 as memory-type bits, as a PAT CPU does (memory types have no
# effect in an emulator); without PAT those bits would be reserved.
BASE_FEATURES = F_FPU | F_DE | F_PSE | F_TSC | F_MSR | F_CX8 | F_SEP | F_PGE | F_CMOV | F_PAT

# Pentium II leaf 2: 01 ITLB 4K, 02 ITLB 4M, 03 DTLB 4K (EAX; AL=1: one call),
# 43 L2 512K, 08 L1I 16K, 04 DTLB 4M, 0C L1D 16K (EDX)
LEAF2 = (0x03020101, 0, 0, 0x0C040843)

_features = None
_table = None


def features():
    """Leaf-1 EDX feature bits (computed once)."""
    global _features
    if _features is None:
        f = BASE_FEATURES
        try:
            from .opcodes import _resolve
            if _resolve("x87.fxsave") is not None and _resolve("x87.fxrstor") is not None:
                f |= F_FXSR
        except Exception:       # an x87 module that fails to import: no FXSR
            pass
        _features = f
    return _features


def has_fxsr():
    return bool(features() & F_FXSR)


def _words(b):
    return struct.unpack("<4I", b)


def table():
    """{leaf: (eax, ebx, ecx, edx)} for every leaf that is not the fallback."""
    global _table
    if _table is None:
        ebx, edx, ecx = struct.unpack("<3I", VENDOR)
        t = {
            0: (MAX_BASIC, ebx, ecx, edx),
            1: (SIGNATURE, 0, 0, features()),
            2: LEAF2,
            0x80000000: (MAX_EXT, 0, 0, 0),
            0x80000001: (0, 0, 0, 0),
        }
        brand = BRAND.ljust(48, b"\0")
        for i in range(3):
            t[0x80000002 + i] = _words(brand[16 * i:16 * i + 16])
        _table = t
    return _table


def cpuid(leaf, subleaf=0):
    """(eax, ebx, ecx, edx) for CPUID with EAX=leaf (ECX is not used by any leaf here)."""
    t = table()
    r = t.get(leaf & 0xFFFFFFFF)
    if r is None:
        r = t[MAX_BASIC]
    return r
