"""Time-stamp counter guests: RDTSC exactness and WRMSR to the TSC.

emu's TSC is the instruction clock (instructions retired) plus an offset,
so differences between two reads are exact and can be predicted:

``delta_guest(k)``  RDTSC; save; k NOPs; RDTSC; subtract.
                    Between the two RDTSCs retire: RDTSC, 2 MOVs, k NOPs
                    -> EAX = k + 3 (ECX/EDX: the first reading).
``write_guest(value_lo, value_hi, k)``
                    WRMSR(0x10) with EDX:EAX = hi:lo, k NOPs, RDTSC, RDMSR(0x10).
                    P6: only the low 32 bits are written, the high half is
                    cleared.  The WRMSR itself and the k NOPs retire before
                    RDTSC: it reads lo + k + 1; RDMSR, four instructions
                    later, lo + k + 5 (carried into the high half if lo wraps).
"""
from tests.oracle import assemble


def delta_guest(k, mode=32, addr=0):
    asm = "rdtsc; mov ecx, eax; mov ebx, edx; " + "nop; " * k + "rdtsc; sub eax, ecx"
    return assemble(asm, mode, addr), dict(eax=k + 3)


def write_guest(lo, hi, k, mode=32, addr=0):
    asm = ("mov ecx, 0x10; mov eax, {lo:#x}; mov edx, {hi:#x}; wrmsr; ".format(lo=lo, hi=hi)
           + "nop; " * k + "rdtsc; mov esi, eax; mov edi, edx; mov ecx, 0x10; rdmsr")
    t1 = lo + k + 1
    t2 = lo + k + 5          # rdtsc, mov, mov, mov ecx, then rdmsr itself reads
    return assemble(asm, mode, addr), dict(esi=t1 & 0xFFFFFFFF, edi=t1 >> 32,
                                           eax=t2 & 0xFFFFFFFF, edx=t2 >> 32)
