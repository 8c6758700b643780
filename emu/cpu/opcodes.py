"""THE opcode table: one row per opcode (per /reg for group opcodes).

Each row gives the encoding, the mnemonic, the operand forms, attributes
and the semantic builder ("module.function" in emu/cpu/ops/).  The decoder
derives ModRM/immediate layout from the operand forms; the interpreter gets
each instruction's closure from the builder; the block scanner reads the
attributes; the differential tests and the coverage report enumerate the rows.
Adding an instruction = one row here + its semantics in one ops/ module.

Operand forms (Intel SDM appendix A style):
  E = ModRM r/m, G = ModRM reg, M = memory-only r/m, R = register-only r/m,
  S = segment register in reg, C/D = control/debug register in reg,
  I = immediate, J = relative target, O = moffs, A = far pointer immediate,
  Z = register in the opcode's low three bits.
  size suffix: b = 8, w = 16, d = 32, v = 16/32 by operand size,
  z = imm 16/32 by operand size, bs = imm8 sign-extended to operand size,
  p = far pointer (16:16/16:32), a = BOUND pair, s = 6-byte table register,
  q = 64-bit.  Fixed: AL, eAX, DX, CL, 1 and segment names.
Attributes:
  lock   LOCK prefix allowed (memory destination only)
  jmp    control transfer: ends a block
  sens   sensitive: ends a block, reads/changes privileged state (DESIGN.md)
  pm     protected mode only (#UD in real and V86 mode)
  mem    ModRM must name memory (mod != 3) else #UD
  str    string instruction (REP prefixes apply)
  fpu    x87 escape
"""
from collections import namedtuple
import importlib

Row = namedtuple("Row", "code reg mnem operands build attrs")

_rows = []


def op(code, mnem, operands="", build=None, attrs="", reg=None):
    _rows.append(Row(code, reg, mnem, tuple(o for o in operands.split(",") if o),
                     build, frozenset(attrs.split())))


# --- one-byte opcodes ---------------------------------------------------------
for base, name in ((0x00, "add"), (0x08, "or"), (0x10, "adc"), (0x18, "sbb"),
                   (0x20, "and"), (0x28, "sub"), (0x30, "xor"), (0x38, "cmp")):
    lk = "" if name == "cmp" else "lock"
    op(base + 0, name, "Eb,Gb", "alu.binop", lk)
    op(base + 1, name, "Ev,Gv", "alu.binop", lk)
    op(base + 2, name, "Gb,Eb", "alu.binop")
    op(base + 3, name, "Gv,Ev", "alu.binop")
    op(base + 4, name, "AL,Ib", "alu.binop")
    op(base + 5, name, "eAX,Iz", "alu.binop")
op(0x06, "push", "ES", "stack.push_sreg")
op(0x07, "pop", "ES", "stack.pop_sreg", "sens")
op(0x0E, "push", "CS", "stack.push_sreg")
op(0x16, "push", "SS", "stack.push_sreg")
op(0x17, "pop", "SS", "stack.pop_sreg", "sens")
op(0x1E, "push", "DS", "stack.push_sreg")
op(0x1F, "pop", "DS", "stack.pop_sreg", "sens")
op(0x27, "daa", "", "bcd.daa")
op(0x2F, "das", "", "bcd.das")
op(0x37, "aaa", "", "bcd.aaa")
op(0x3F, "aas", "", "bcd.aas")
for r in range(8):
    op(0x40 + r, "inc", "Zv", "alu.incdec")
    op(0x48 + r, "dec", "Zv", "alu.incdec")
    op(0x50 + r, "push", "Zv", "stack.push")
    op(0x58 + r, "pop", "Zv", "stack.pop")
op(0x60, "pusha", "", "stack.pusha")
op(0x61, "popa", "", "stack.popa")
op(0x62, "bound", "Gv,Ma", "control.bound", "mem")
op(0x63, "arpl", "Ew,Gw", "system.arpl", "pm sens")
op(0x68, "push", "Iz", "stack.push")
op(0x69, "imul", "Gv,Ev,Iz", "muldiv.imul3")
op(0x6A, "push", "Ibs", "stack.push")
op(0x6B, "imul", "Gv,Ev,Ibs", "muldiv.imul3")
op(0x6C, "insb", "", "string.ins", "str sens")
op(0x6D, "ins", "", "string.ins", "str sens")
op(0x6E, "outsb", "", "string.outs", "str sens")
op(0x6F, "outs", "", "string.outs", "str sens")
for cc in range(16):
    op(0x70 + cc, "jcc", "Jb", "control.jcc", "jmp")
_grp1 = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")
for r, name in enumerate(_grp1):
    lk = "" if name == "cmp" else "lock"
    op(0x80, name, "Eb,Ib", "alu.binop", lk, reg=r)
    op(0x81, name, "Ev,Iz", "alu.binop", lk, reg=r)
    op(0x82, name, "Eb,Ib", "alu.binop", lk, reg=r)
    op(0x83, name, "Ev,Ibs", "alu.binop", lk, reg=r)
op(0x84, "test", "Eb,Gb", "alu.binop")
op(0x85, "test", "Ev,Gv", "alu.binop")
op(0x86, "xchg", "Eb,Gb", "datamov.xchg", "lock")
op(0x87, "xchg", "Ev,Gv", "datamov.xchg", "lock")
op(0x88, "mov", "Eb,Gb", "datamov.mov")
op(0x89, "mov", "Ev,Gv", "datamov.mov")
op(0x8A, "mov", "Gb,Eb", "datamov.mov")
op(0x8B, "mov", "Gv,Ev", "datamov.mov")
op(0x8C, "mov", "Ev,Sw", "datamov.mov_from_sreg")
op(0x8D, "lea", "Gv,M", "datamov.lea", "mem")
op(0x8E, "mov", "Sw,Ew", "datamov.mov_to_sreg", "sens")
op(0x8F, "pop", "Ev", "stack.pop", reg=0)
op(0x90, "nop", "", "datamov.nop")
for r in range(1, 8):
    op(0x90 + r, "xchg", "Zv,eAX", "datamov.xchg")
op(0x98, "cbw", "", "datamov.cbw")
op(0x99, "cwd", "", "datamov.cwd")
op(0x9A, "callf", "Ap", "far.call_far", "jmp sens")
op(0x9B, "fwait", "", "x87.fwait", "fpu")
op(0x9C, "pushf", "", "stack.pushf", "sens")
op(0x9D, "popf", "", "stack.popf", "sens")
op(0x9E, "sahf", "", "datamov.sahf")
op(0x9F, "lahf", "", "datamov.lahf")
op(0xA0, "mov", "AL,Ob", "datamov.mov")
op(0xA1, "mov", "eAX,Ov", "datamov.mov")
op(0xA2, "mov", "Ob,AL", "datamov.mov")
op(0xA3, "mov", "Ov,eAX", "datamov.mov")
op(0xA4, "movsb", "", "string.movs", "str")
op(0xA5, "movs", "", "string.movs", "str")
op(0xA6, "cmpsb", "", "string.cmps", "str")
op(0xA7, "cmps", "", "string.cmps", "str")
op(0xA8, "test", "AL,Ib", "alu.binop")
op(0xA9, "test", "eAX,Iz", "alu.binop")
op(0xAA, "stosb", "", "string.stos", "str")
op(0xAB, "stos", "", "string.stos", "str")
op(0xAC, "lodsb", "", "string.lods", "str")
op(0xAD, "lods", "", "string.lods", "str")
op(0xAE, "scasb", "", "string.scas", "str")
op(0xAF, "scas", "", "string.scas", "str")
for r in range(8):
    op(0xB0 + r, "mov", "Zb,Ib", "datamov.mov")
    op(0xB8 + r, "mov", "Zv,Iz", "datamov.mov")
_grp2 = ("rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar")
for r, name in enumerate(_grp2):
    op(0xC0, name, "Eb,Ib", "shift.shift", reg=r)
    op(0xC1, name, "Ev,Ib", "shift.shift", reg=r)
    op(0xD0, name, "Eb,1", "shift.shift", reg=r)
    op(0xD1, name, "Ev,1", "shift.shift", reg=r)
    op(0xD2, name, "Eb,CL", "shift.shift", reg=r)
    op(0xD3, name, "Ev,CL", "shift.shift", reg=r)
op(0xC2, "ret", "Iw", "control.ret", "jmp")
op(0xC3, "ret", "", "control.ret", "jmp")
op(0xC4, "les", "Gv,Mp", "datamov.load_far_ptr", "mem sens")
op(0xC5, "lds", "Gv,Mp", "datamov.load_far_ptr", "mem sens")
op(0xC6, "mov", "Eb,Ib", "datamov.mov", reg=0)
op(0xC7, "mov", "Ev,Iz", "datamov.mov", reg=0)
op(0xC8, "enter", "Iw,Ib", "stack.enter")
op(0xC9, "leave", "", "stack.leave")
op(0xCA, "retf", "Iw", "far.ret_far", "jmp sens")
op(0xCB, "retf", "", "far.ret_far", "jmp sens")
op(0xCC, "int3", "", "far.int3", "jmp sens")
op(0xCD, "int", "Ib", "far.int_n", "jmp sens")
op(0xCE, "into", "", "far.into", "jmp sens")
op(0xCF, "iret", "", "far.iret", "jmp sens")
op(0xD4, "aam", "Ib", "bcd.aam")
op(0xD5, "aad", "Ib", "bcd.aad")
op(0xD6, "salc", "", "bcd.salc")
op(0xD7, "xlat", "", "datamov.xlat")
for esc in range(0xD8, 0xE0):
    op(esc, "x87", "E", "x87.build", "fpu")
op(0xE0, "loopne", "Jb", "control.loop", "jmp")
op(0xE1, "loope", "Jb", "control.loop", "jmp")
op(0xE2, "loop", "Jb", "control.loop", "jmp")
op(0xE3, "jcxz", "Jb", "control.jcxz", "jmp")
op(0xE4, "in", "AL,Ib", "io.in_", "sens")
op(0xE5, "in", "eAX,Ib", "io.in_", "sens")
op(0xE6, "out", "Ib,AL", "io.out", "sens")
op(0xE7, "out", "Ib,eAX", "io.out", "sens")
op(0xE8, "call", "Jz", "control.call", "jmp")
op(0xE9, "jmp", "Jz", "control.jmp", "jmp")
op(0xEA, "jmpf", "Ap", "far.jmp_far", "jmp sens")
op(0xEB, "jmp", "Jb", "control.jmp", "jmp")
op(0xEC, "in", "AL,DX", "io.in_", "sens")
op(0xED, "in", "eAX,DX", "io.in_", "sens")
op(0xEE, "out", "DX,AL", "io.out", "sens")
op(0xEF, "out", "DX,eAX", "io.out", "sens")
op(0xF1, "int1", "", "far.int1", "jmp sens")
op(0xF4, "hlt", "", "system.hlt", "jmp sens")
op(0xF5, "cmc", "", "datamov.flagop")
for r, (name, b) in enumerate((("test", "alu.binop"), ("test", "alu.binop"), ("not", "alu.unop"),
                               ("neg", "alu.unop"), ("mul", "muldiv.muldiv"), ("imul", "muldiv.muldiv"),
                               ("div", "muldiv.muldiv"), ("idiv", "muldiv.muldiv"))):
    lk = "lock" if name in ("not", "neg") else ""
    op(0xF6, name, "Eb,Ib" if name == "test" else "Eb", b, lk, reg=r)
    op(0xF7, name, "Ev,Iz" if name == "test" else "Ev", b, lk, reg=r)
op(0xF8, "clc", "", "datamov.flagop")
op(0xF9, "stc", "", "datamov.flagop")
op(0xFA, "cli", "", "system.cli", "sens")
op(0xFB, "sti", "", "system.sti", "sens")
op(0xFC, "cld", "", "datamov.flagop")
op(0xFD, "std", "", "datamov.flagop")
op(0xFE, "inc", "Eb", "alu.incdec", "lock", reg=0)
op(0xFE, "dec", "Eb", "alu.incdec", "lock", reg=1)
op(0xFF, "inc", "Ev", "alu.incdec", "lock", reg=0)
op(0xFF, "dec", "Ev", "alu.incdec", "lock", reg=1)
op(0xFF, "call", "Ev", "control.call", "jmp", reg=2)
op(0xFF, "callf", "Mp", "far.call_far", "jmp sens mem", reg=3)
op(0xFF, "jmp", "Ev", "control.jmp", "jmp", reg=4)
op(0xFF, "jmpf", "Mp", "far.jmp_far", "jmp sens mem", reg=5)
op(0xFF, "push", "Ev", "stack.push", reg=6)

# --- two-byte opcodes (0F xx) ------------------------------------------------
T = 0x0F00
for r, name in enumerate(("sldt", "str", "lldt", "ltr", "verr", "verw")):
    op(T | 0x00, name, "Ew", "system.grp6", "pm sens", reg=r)
for r, name, ops_ in ((0, "sgdt", "Ms"), (1, "sidt", "Ms"), (2, "lgdt", "Ms"), (3, "lidt", "Ms"),
                      (4, "smsw", "Ew"), (6, "lmsw", "Ew"), (7, "invlpg", "M")):
    op(T | 0x01, name, ops_, "system.grp7", "sens" + (" mem" if ops_[0] == "M" else ""), reg=r)
op(T | 0x02, "lar", "Gv,Ew", "system.lar_lsl", "pm sens")
op(T | 0x03, "lsl", "Gv,Ew", "system.lar_lsl", "pm sens")
op(T | 0x06, "clts", "", "system.clts", "sens")
op(T | 0x08, "invd", "", "system.wbinvd", "sens")
op(T | 0x09, "wbinvd", "", "system.wbinvd", "sens")
op(T | 0x0B, "ud2", "", "system.ud2", "jmp")
for b in range(0x19, 0x20):
    op(T | b, "nop", "Ev", "datamov.nop")
op(T | 0x20, "mov", "Rd,Cd", "system.mov_from_cr", "sens")
op(T | 0x21, "mov", "Rd,Dd", "system.mov_from_dr", "sens")
op(T | 0x22, "mov", "Cd,Rd", "system.mov_to_cr", "sens")
op(T | 0x23, "mov", "Dd,Rd", "system.mov_to_dr", "sens")
op(T | 0x30, "wrmsr", "", "system.wrmsr", "sens")
op(T | 0x31, "rdtsc", "", "system.rdtsc", "sens")
op(T | 0x32, "rdmsr", "", "system.rdmsr", "sens")
op(T | 0x34, "sysenter", "", "system.sysenter", "jmp sens")
op(T | 0x35, "sysexit", "", "system.sysexit", "jmp sens")
for cc in range(16):
    op(T | (0x40 + cc), "cmovcc", "Gv,Ev", "datamov.cmovcc")
    op(T | (0x80 + cc), "jcc", "Jz", "control.jcc", "jmp")
    op(T | (0x90 + cc), "setcc", "Eb", "datamov.setcc")
op(T | 0xA0, "push", "FS", "stack.push_sreg")
op(T | 0xA1, "pop", "FS", "stack.pop_sreg", "sens")
op(T | 0xA2, "cpuid", "", "system.cpuid", "sens")
op(T | 0xA3, "bt", "Ev,Gv", "bits.bt")
op(T | 0xA4, "shld", "Ev,Gv,Ib", "shift.shxd")
op(T | 0xA5, "shld", "Ev,Gv,CL", "shift.shxd")
op(T | 0xA8, "push", "GS", "stack.push_sreg")
op(T | 0xA9, "pop", "GS", "stack.pop_sreg", "sens")
op(T | 0xAB, "bts", "Ev,Gv", "bits.bt", "lock")
op(T | 0xAC, "shrd", "Ev,Gv,Ib", "shift.shxd")
op(T | 0xAD, "shrd", "Ev,Gv,CL", "shift.shxd")
op(T | 0xAE, "fxsave", "M", "x87.fxsave", "mem fpu", reg=0)
op(T | 0xAE, "fxrstor", "M", "x87.fxrstor", "mem fpu", reg=1)
op(T | 0xAF, "imul", "Gv,Ev", "muldiv.imul2")
op(T | 0xB0, "cmpxchg", "Eb,Gb", "datamov.cmpxchg", "lock")
op(T | 0xB1, "cmpxchg", "Ev,Gv", "datamov.cmpxchg", "lock")
op(T | 0xB2, "lss", "Gv,Mp", "datamov.load_far_ptr", "mem sens")
op(T | 0xB3, "btr", "Ev,Gv", "bits.bt", "lock")
op(T | 0xB4, "lfs", "Gv,Mp", "datamov.load_far_ptr", "mem sens")
op(T | 0xB5, "lgs", "Gv,Mp", "datamov.load_far_ptr", "mem sens")
op(T | 0xB6, "movzx", "Gv,Eb", "datamov.movx")
op(T | 0xB7, "movzx", "Gv,Ew", "datamov.movx")
for r, name in ((4, "bt"), (5, "bts"), (6, "btr"), (7, "btc")):
    op(T | 0xBA, name, "Ev,Ib", "bits.bt", "" if name == "bt" else "lock", reg=r)
op(T | 0xBB, "btc", "Ev,Gv", "bits.bt", "lock")
op(T | 0xBC, "bsf", "Gv,Ev", "bits.bsf_bsr")
op(T | 0xBD, "bsr", "Gv,Ev", "bits.bsf_bsr")
op(T | 0xBE, "movsx", "Gv,Eb", "datamov.movx")
op(T | 0xBF, "movsx", "Gv,Ew", "datamov.movx")
op(T | 0xC0, "xadd", "Eb,Gb", "datamov.xadd", "lock")
op(T | 0xC1, "xadd", "Ev,Gv", "datamov.xadd", "lock")
op(T | 0xC7, "cmpxchg8b", "Mq", "datamov.cmpxchg8b", "lock mem", reg=1)
for r in range(8):
    op(T | (0xC8 + r), "bswap", "Zd", "datamov.bswap")

ROWS = tuple(_rows)

# Prefix bytes (handled by the decoder, not rows).
PREFIX_SEG = {0x26: 0, 0x2E: 1, 0x36: 2, 0x3E: 3, 0x64: 4, 0x65: 5}
PREFIXES = frozenset(PREFIX_SEG) | {0x66, 0x67, 0xF0, 0xF2, 0xF3}

_BYTE_STRING_OPS = {"movsb", "cmpsb", "stosb", "lodsb", "scasb", "insb", "outsb"}
_IMM_FORMS = {"Ib", "Ibs", "Iw", "Iz", "Jb", "Jz", "Ap", "Ob", "Ov"}
_MODRM_LETTERS = set("EGMRSCD")


def _is_modrm_form(o):
    """'Ev', 'Gb', 'M', 'Sw', 'Cd' ... but not fixed registers like 'GS', 'DS'."""
    return o[0] in _MODRM_LETTERS and (len(o) == 1 or o[1:] in ("b", "v", "w", "d", "p", "a", "s", "q"))


class Entry:
    """The decoder's view of one row: derived once from the row's forms."""

    __slots__ = ("row", "has_modrm", "imms", "builder", "attrs", "key", "byte", "reg_only")

    def __init__(self, row):
        self.row = row
        self.attrs = row.attrs
        self.has_modrm = any(_is_modrm_form(o) for o in row.operands)
        self.imms = tuple(o for o in row.operands if o in _IMM_FORMS)
        self.builder = None
        self.key = (row.code, row.reg)
        # MOV CRn/DRn: the mod bits are ignored, the operand is always a register
        self.reg_only = any(o[0] == "R" for o in row.operands)
        ops = row.operands
        # byte-sized operation: an 8-bit register/memory operand, or a byte string op
        self.byte = ("AL" in ops or (ops and ops[0] in ("Eb", "Gb", "Zb", "Ob"))
                     or row.mnem in _BYTE_STRING_OPS)


def _resolve(name):
    """Import ops.<module>.<func>; None if that family does not provide it yet."""
    mod, _, fn = name.partition(".")
    try:
        m = importlib.import_module("emu.cpu.ops." + mod)
    except ModuleNotFoundError as e:
        if e.name != "emu.cpu.ops." + mod:
            raise
        return None
    return getattr(m, fn, None)


def build_tables():
    """Return (one_byte, two_byte) lists of 256: Entry, list of 8 Entries, or None."""
    one = [None] * 256
    two = [None] * 256
    for row in ROWS:
        tab, b = (two, row.code & 0xFF) if row.code >= 0x100 else (one, row.code)
        e = Entry(row)
        e.builder = _resolve(row.build)
        if row.reg is None:
            tab[b] = e
        else:
            if tab[b] is None:
                tab[b] = [None] * 8
            tab[b][row.reg] = e
    return one, two


def implemented_rows():
    return [r for r in ROWS if _resolve(r.build) is not None]
