"""Decimal adjust and ASCII adjust: DAA DAS AAA AAS AAM AAD, and SALC.

Intel SDM Vol. 2, pages "DAA", "DAS", "AAA", "AAS", "AAM", "AAD"; SALC
(D6) is the undocumented "set AL from carry" (AL = CF ? FF : 00, no flags).
All flags are computed eagerly and recorded as K_RES (ZF/SF/PF from AL).
Undefined flags get what QEMU (Unicorn) gives where that is cheap:
  DAA/DAS     OF undefined -> 0
  AAA/AAS     OF SF ZF PF undefined -> follow the adjusted AL, OF = 0
  AAM/AAD     OF AF CF undefined -> 0 (a logic result on AL)
AAM with an immediate of 0 raises #DE before changing anything.
"""
from ..faults import CPUFault, DE
from ..flags import K_RES, K_LOGIC, AF, materialize, get_cf
from ..state import EAX, LF_OP, LF_RES, LF_B

_RES8 = K_RES << 2
_LOGIC8 = K_LOGIC << 2


def daa(cpu, insn):
    R = cpu.R

    def f():
        e = materialize(R)
        old = R[EAX] & 0xFF
        old_cf = e & 1
        al = old
        cf = 0
        af = 0
        if (al & 0x0F) > 9 or e & AF:
            al += 6
            cf = old_cf | (al >> 8)
            al &= 0xFF
            af = 1
        if old > 0x99 or old_cf:
            al = (al + 0x60) & 0xFF
            cf = 1
        else:
            cf = 0
        R[EAX] = (R[EAX] & 0xFFFFFF00) | al
        R[LF_OP] = _RES8
        R[LF_RES] = al
        R[LF_B] = cf | af << 2
    return f


def das(cpu, insn):
    R = cpu.R

    def f():
        e = materialize(R)
        old = R[EAX] & 0xFF
        old_cf = e & 1
        al = old
        cf = 0
        af = 0
        if (al & 0x0F) > 9 or e & AF:
            cf = old_cf | (1 if al < 6 else 0)
            al = (al - 6) & 0xFF
            af = 1
        if old > 0x99 or old_cf:
            al = (al - 0x60) & 0xFF
            cf = 1
        R[EAX] = (R[EAX] & 0xFFFFFF00) | al
        R[LF_OP] = _RES8
        R[LF_RES] = al
        R[LF_B] = cf | af << 2
    return f


def aaa(cpu, insn):
    R = cpu.R

    def f():
        e = materialize(R)
        ax = R[EAX] & 0xFFFF
        if (ax & 0x0F) > 9 or e & AF:
            ax = (ax + 0x106) & 0xFFFF
            b = 5           # CF | AF
        else:
            b = 0
        ax &= 0xFF0F
        R[EAX] = (R[EAX] & 0xFFFF0000) | ax
        R[LF_OP] = _RES8
        R[LF_RES] = ax & 0xFF
        R[LF_B] = b
    return f


def aas(cpu, insn):
    R = cpu.R

    def f():
        e = materialize(R)
        ax = R[EAX] & 0xFFFF
        if (ax & 0x0F) > 9 or e & AF:
            ax = (ax - 6) & 0xFFFF
            ax = (ax - 0x100) & 0xFFFF
            b = 5
        else:
            b = 0
        ax &= 0xFF0F
        R[EAX] = (R[EAX] & 0xFFFF0000) | ax
        R[LF_OP] = _RES8
        R[LF_RES] = ax & 0xFF
        R[LF_B] = b
    return f


def aam(cpu, insn):
    R = cpu.R
    base = insn.imm & 0xFF
    if base == 0:
        def de():
            raise CPUFault(DE)
        return de

    def f():
        al = R[EAX] & 0xFF
        q, r = divmod(al, base)
        R[EAX] = (R[EAX] & 0xFFFF0000) | q << 8 | r
        R[LF_OP] = _LOGIC8
        R[LF_RES] = r
    return f


def aad(cpu, insn):
    R = cpu.R
    base = insn.imm & 0xFF

    def f():
        ax = R[EAX]
        al = ((ax & 0xFF) + ((ax >> 8) & 0xFF) * base) & 0xFF
        R[EAX] = (ax & 0xFFFF0000) | al
        R[LF_OP] = _LOGIC8
        R[LF_RES] = al
    return f


def salc(cpu, insn):
    R = cpu.R

    def f():
        R[EAX] = (R[EAX] & 0xFFFFFF00) | (0xFF if get_cf(R) else 0)
    return f


__all__ = ["daa", "das", "aaa", "aas", "aam", "aad", "salc"]
