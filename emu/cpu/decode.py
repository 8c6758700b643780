"""x86 instruction decoder (16- and 32-bit code), driven by opcodes.py.

``decode(fetch, eip, code32)`` reads bytes through ``fetch(offset) -> int``
(offsets relative to CS, so the caller does segment and page checks) and
returns an ``Insn``.  Invalid encodings raise ``CPUFault(#UD)``; more than 15
bytes raise ``CPUFault(#GP, 0)``, as the SDM says.
"""
from .faults import CPUFault, UD, GP
from .opcodes import build_tables, PREFIX_SEG
from .state import SS, DS

ONE, TWO = build_tables()

# 16-bit ModRM r/m -> (base, index) register numbers (EBX=3 EBP=5 ESI=6 EDI=7)
_EA16 = ((3, 6), (3, 7), (5, 6), (5, 7), (6, None), (7, None), (5, None), (3, None))


class Insn:
    __slots__ = ("eip", "next_eip", "length", "opsize", "adsize", "size", "seg",
                 "seg_override", "rep", "lock", "mod", "reg", "rm", "base", "index",
                 "scale", "disp", "imm", "imm2", "entry", "row", "opcode", "raw")

    def __repr__(self):
        return "<Insn %s @%x len=%d>" % (self.row.mnem if self.row else "?", self.eip, self.length)

    @property
    def is_mem(self):
        return self.mod is not None and self.mod != 3


def decode(fetch, eip, code32):
    ins = Insn()
    ins.eip = eip
    pos = eip
    opsize = adsize = 32 if code32 else 16
    seg_override = None
    rep = None
    lock = False
    n = 0
    while True:
        b = fetch(pos)
        pos += 1
        n += 1
        if n > 15:
            raise CPUFault(GP, 0)
        if b == 0x66:
            opsize = 16 if code32 else 32
        elif b == 0x67:
            adsize = 16 if code32 else 32
        elif b in PREFIX_SEG:
            seg_override = PREFIX_SEG[b]
        elif b == 0xF3:
            rep = "rep"
        elif b == 0xF2:
            rep = "repne"
        elif b == 0xF0:
            lock = True
        else:
            break
    opcode = b
    if b == 0x0F:
        b = fetch(pos)
        pos += 1
        n += 1
        opcode = 0x0F00 | b
        entry = TWO[b]
    else:
        entry = ONE[b]
    if entry is None:
        if n > 15:
            raise CPUFault(GP, 0)
        raise CPUFault(UD)
    ins.opsize = opsize
    ins.adsize = adsize
    ins.seg_override = seg_override
    ins.rep = rep
    ins.lock = lock
    ins.opcode = opcode
    ins.mod = ins.reg = ins.rm = None
    ins.base = ins.index = None
    ins.scale = 0
    ins.disp = 0
    ins.imm = ins.imm2 = None
    seg = DS
    first = entry if not isinstance(entry, list) else entry[0] or next(e for e in entry if e)
    if first.has_modrm:
        m = fetch(pos)
        pos += 1
        n += 1
        mod = m >> 6
        reg = (m >> 3) & 7
        rm = m & 7
        ins.mod, ins.reg, ins.rm = mod, reg, rm
        if isinstance(entry, list):
            entry = entry[reg]
            if entry is None:
                raise CPUFault(UD)
        if entry.reg_only:
            mod = ins.mod = 3     # SDM: MOV to/from CRn/DRn ignore the mod field
        if mod != 3:
            if adsize == 32:
                if rm == 4:
                    sib = fetch(pos)
                    pos += 1
                    n += 1
                    scale = sib >> 6
                    idx = (sib >> 3) & 7
                    base = sib & 7
                    if idx != 4:
                        ins.index = idx
                        ins.scale = scale
                    if base == 5 and mod == 0:
                        ins.base = None
                        ins.disp = fetch(pos) | fetch(pos + 1) << 8 | fetch(pos + 2) << 16 | fetch(pos + 3) << 24
                        pos += 4
                        n += 4
                    else:
                        ins.base = base
                        if base == 4 or base == 5:
                            seg = SS
                elif rm == 5 and mod == 0:
                    ins.disp = fetch(pos) | fetch(pos + 1) << 8 | fetch(pos + 2) << 16 | fetch(pos + 3) << 24
                    pos += 4
                    n += 4
                else:
                    ins.base = rm
                    if rm == 5:
                        seg = SS
                if mod == 1:
                    d = fetch(pos)
                    pos += 1
                    n += 1
                    ins.disp = (d - 0x100 if d & 0x80 else d) & 0xFFFFFFFF
                elif mod == 2:
                    ins.disp = fetch(pos) | fetch(pos + 1) << 8 | fetch(pos + 2) << 16 | fetch(pos + 3) << 24
                    pos += 4
                    n += 4
            else:
                if mod == 0 and rm == 6:
                    ins.disp = fetch(pos) | fetch(pos + 1) << 8
                    pos += 2
                    n += 2
                else:
                    ins.base, ins.index = _EA16[rm]
                    if ins.base == 5:
                        seg = SS
                    if mod == 1:
                        d = fetch(pos)
                        pos += 1
                        n += 1
                        ins.disp = (d - 0x100 if d & 0x80 else d) & 0xFFFF
                    elif mod == 2:
                        ins.disp = fetch(pos) | fetch(pos + 1) << 8
                        pos += 2
                        n += 2
    elif isinstance(entry, list):
        raise CPUFault(UD)
    row = entry.row
    attrs = entry.attrs
    if lock and ("lock" not in attrs or ins.mod is None or ins.mod == 3):
        raise CPUFault(UD)
    if "mem" in attrs and ins.mod == 3:
        raise CPUFault(UD)
    for form in entry.imms:
        if form == "Ib" or form == "Jb":
            v = fetch(pos)
            pos += 1
            n += 1
            if form == "Jb":
                v = v - 0x100 if v & 0x80 else v
        elif form == "Ibs":
            v = fetch(pos)
            pos += 1
            n += 1
            if v & 0x80:
                v = (v - 0x100) & (0xFFFFFFFF if opsize == 32 else 0xFFFF)
        elif form == "Iw":
            v = fetch(pos) | fetch(pos + 1) << 8
            pos += 2
            n += 2
        elif form == "Iz" or form == "Jz":
            if opsize == 32:
                v = fetch(pos) | fetch(pos + 1) << 8 | fetch(pos + 2) << 16 | fetch(pos + 3) << 24
                pos += 4
                n += 4
                if form == "Jz" and v & 0x80000000:
                    v -= 0x100000000
            else:
                v = fetch(pos) | fetch(pos + 1) << 8
                pos += 2
                n += 2
                if form == "Jz" and v & 0x8000:
                    v -= 0x10000
        elif form == "Ob" or form == "Ov":
            k = adsize // 8
            v = 0
            for i in range(k):
                v |= fetch(pos + i) << (8 * i)
            pos += k
            n += k
        else:  # Ap: offset (16/32) then selector
            k = opsize // 8
            v = 0
            for i in range(k):
                v |= fetch(pos + i) << (8 * i)
            pos += k
            ins.imm2 = fetch(pos) | fetch(pos + 1) << 8
            pos += 2
            n += k + 2
            ins.imm = v
            continue
        if ins.imm is None:
            ins.imm = v
        else:
            ins.imm2 = v
        if n > 15:
            raise CPUFault(GP, 0)
    if n > 15:
        raise CPUFault(GP, 0)
    ins.seg = seg if seg_override is None else seg_override
    ins.entry = entry
    ins.row = row
    ins.length = n
    ins.next_eip = pos
    ins.size = 1 if entry.byte else opsize >> 3
    return ins
