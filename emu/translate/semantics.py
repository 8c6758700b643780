"""Native semantics of the instruction families tier 1 compiles.

The table is keyed by the *builder names of opcodes.py* ("alu.binop",
"datamov.mov", ...): the one opcode table says which family an opcode
belongs to, the interpreter gets its closure from ``emu/cpu/ops/<module>``,
and the translator its IR from the function registered here for the same
name.  A family missing here, or a form a function declines (by raising
``Unsupported``), ends the native block before that instruction; the
interpreter runs it.  Both tiers record flags in the same lazy encoding
(cpu/flags.py), and every routine here follows its interpreter twin's order
of effects: memory accesses (which may fault) first, then registers and
flags, so that a fault leaves the state of the instruction's start.

Tier 1 compiles only 32-bit code (CS.D = 1) with 32-bit addressing; a 0x66
operand-size prefix is accepted where the routine handles 16-bit operands.
"""
from ..cpu.flags import K_ADD, K_ADC1, K_SUB, K_SBB1, K_LOGIC, K_INC, K_DEC, K_NEG
from .ir import Unsupported, MASKS, SZI

FAMILIES = {}


def family(*names):
    def deco(fn):
        for n in names:
            FAMILIES[n] = fn
        return fn
    return deco


def _check_common(e, ins):
    # LOCK: one emulated processor makes every instruction atomic; the
    # decoder has already raised #UD where the opcode table does not allow it
    if ins.adsize != 32 or ins.rep is not None:
        raise Unsupported("prefix")


def _imm(v, size):
    v &= MASKS[size]
    return str(v - (1 << 32) if v & 0x80000000 else v)


def _operand_get(e, ins, form, size, addr=None):
    """Value of a source operand form; ``addr`` = offset of the memory operand."""
    k = form[0]
    if form in ("AL", "eAX"):
        return e.reg_sz(0, size)
    if k == "G":
        return e.reg_sz(ins.reg, size)
    if k == "E":
        if ins.mod == 3:
            return e.reg_sz(ins.rm, size)
        return e.load(ins.seg, addr, size)
    if k == "I":
        return _imm(ins.imm, size)
    if k == "Z":
        return e.reg_sz(ins.opcode & 7, size)
    if k == "O":
        return e.load(ins.seg, _imm(ins.imm, 4), size)
    raise Unsupported(form)


def _dest_is_mem(ins, form):
    return (form[0] == "E" and ins.mod != 3) or form[0] == "O"


def _dest_addr(e, ins, form):
    if form[0] == "O":
        return _imm(ins.imm, 4)
    return e.ea(ins)


def _dest_reg(ins, form):
    k = form[0]
    if form in ("AL", "eAX"):
        return 0
    if k == "G":
        return ins.reg
    if k == "E":
        return ins.rm
    if k == "Z":
        return ins.opcode & 7
    raise Unsupported(form)


def _size(ins):
    if ins.size not in (1, 2, 4):
        raise Unsupported("size")
    return ins.size


# --- ALU --------------------------------------------------------------------------------

@family("alu.binop")
def binop(e, ins):
    _check_common(e, ins)
    mnem = ins.row.mnem
    size = _size(ins)
    mask = MASKS[size]
    dform, sform = ins.row.operands[:2]
    mem = _dest_is_mem(ins, dform) or (sform[0] == "E" and ins.mod != 3)
    addr = e.ea(ins) if (mem and ins.mod is not None and ins.mod != 3) else None
    b = _operand_get(e, ins, sform, size, addr)
    if _dest_is_mem(ins, dform):
        a = e.load(ins.seg, addr, size)
    else:
        a = e.reg_sz(_dest_reg(ins, dform), size)
    szi = SZI[size]
    if mnem in ("add", "adc"):
        r = e.op("add i32 %s, %s" % (a, b))
    elif mnem in ("sub", "cmp", "sbb"):
        r = e.op("sub i32 %s, %s" % (a, b))
    elif mnem in ("and", "test"):
        r = e.op("and i32 %s, %s" % (a, b))
    elif mnem == "or":
        r = e.op("or i32 %s, %s" % (a, b))
    elif mnem == "xor":
        r = e.op("xor i32 %s, %s" % (a, b))
    else:
        raise Unsupported(mnem)
    cf = None
    if mnem in ("adc", "sbb"):
        cf = e.cf()
        c32 = e.op("zext i1 %s to i32" % cf)
        r = e.op("%s i32 %s, %s" % ("add" if mnem == "adc" else "sub", r, c32))
    if size < 4:
        r = e.op("and i32 %s, %d" % (r, mask))
    if mnem not in ("cmp", "test"):
        if _dest_is_mem(ins, dform):
            e.store(ins.seg, addr, size, r)
        else:
            e.set_reg_sz(_dest_reg(ins, dform), size, r)
    if mnem == "add":
        e.set_flags(K_ADD, size, r, a, b)
    elif mnem in ("sub", "cmp"):
        e.set_flags(K_SUB, size, r, a, b)
    elif mnem in ("and", "test", "or", "xor"):
        e.set_flags(K_LOGIC, size, r, a, b)
    else:
        plain, plus1 = (K_ADD, K_ADC1) if mnem == "adc" else (K_SUB, K_SBB1)
        opv = e.op("select i1 %s, i32 %d, i32 %d" % (cf, plus1 << 2 | szi, plain << 2 | szi))
        e.set_flags_dynamic(opv, r, a, b)


@family("alu.incdec")
def incdec(e, ins):
    _check_common(e, ins)
    size = _size(ins)
    inc = ins.row.mnem == "inc"
    form = ins.row.operands[0]
    cf = e.op("zext i1 %s to i32" % e.cf())
    if form[0] == "E" and ins.mod != 3:
        addr = e.ea(ins)
        a = e.load(ins.seg, addr, size)
    else:
        addr = None
        a = e.reg_sz(_dest_reg(ins, form), size)
    r = e.op("%s i32 %s, 1" % ("add" if inc else "sub", a))
    if size < 4:
        r = e.op("and i32 %s, %d" % (r, MASKS[size]))
    if addr is not None:
        e.store(ins.seg, addr, size, r)
    else:
        e.set_reg_sz(_dest_reg(ins, form), size, r)
    e.set_flags(K_INC if inc else K_DEC, size, r, None, cf)


@family("alu.unop")
def unop(e, ins):
    _check_common(e, ins)
    size = _size(ins)
    mask = MASKS[size]
    if ins.mod != 3:
        addr = e.ea(ins)
        a = e.load(ins.seg, addr, size)
    else:
        addr = None
        a = e.reg_sz(ins.rm, size)
    if ins.row.mnem == "not":
        r = e.op("xor i32 %s, %d" % (a, mask if size < 4 else -1))
    else:
        r = e.op("sub i32 0, %s" % a)
        if size < 4:
            r = e.op("and i32 %s, %d" % (r, mask))
    if addr is not None:
        e.store(ins.seg, addr, size, r)
    else:
        e.set_reg_sz(ins.rm, size, r)
    if ins.row.mnem == "neg":
        e.set_flags(K_NEG, size, r, a, "0")


# --- data movement ------------------------------------------------------------------------

@family("datamov.mov")
def mov(e, ins):
    _check_common(e, ins)
    size = _size(ins)
    dform, sform = ins.row.operands[:2]
    addr = e.ea(ins) if ins.mod is not None and ins.mod != 3 else None
    v = _operand_get(e, ins, sform, size, addr)
    if _dest_is_mem(ins, dform):
        e.store(ins.seg, addr if dform[0] == "E" else _imm(ins.imm, 4), size, v)
    else:
        e.set_reg_sz(_dest_reg(ins, dform), size, v)


@family("datamov.lea")
def lea(e, ins):
    _check_common(e, ins)
    v = e.ea(ins)
    if ins.opsize == 16:
        v = e.op("and i32 %s, 65535" % v)
        e.set_reg_sz(ins.reg, 2, v)
    else:
        e.set_reg(ins.reg, e.op("add i32 %s, 0" % v))


@family("datamov.nop")
def nop(e, ins):
    if ins.adsize != 32:
        raise Unsupported("adsize")


@family("datamov.movx")
def movx(e, ins):
    _check_common(e, ins)
    src = 1 if ins.opcode in (0x0FB6, 0x0FBE) else 2
    dsize = ins.opsize >> 3
    if ins.mod == 3:
        v = e.reg_sz(ins.rm, src)
    else:
        v = e.load(ins.seg, e.ea(ins), src)
    if ins.row.mnem == "movsx":
        sh = 32 - 8 * src
        v = e.op("ashr i32 %s, %d" % (e.op("shl i32 %s, %d" % (v, sh)), sh))
        if dsize == 2:
            v = e.op("and i32 %s, 65535" % v)
    e.set_reg_sz(ins.reg, dsize, v)


@family("datamov.cbw")
def cbw(e, ins):
    if ins.opsize != 32:
        raise Unsupported("cbw16")
    a = e.reg(0)
    e.set_reg(0, e.op("ashr i32 %s, 16" % e.op("shl i32 %s, 16" % a)))


@family("datamov.cwd")
def cwd(e, ins):
    if ins.opsize != 32:
        raise Unsupported("cwd16")
    e.set_reg(2, e.op("ashr i32 %s, 31" % e.reg(0)))


@family("datamov.setcc")
def setcc(e, ins):
    _check_common(e, ins)
    addr = e.ea(ins) if ins.mod != 3 else None
    c = e.op("zext i1 %s to i32" % e.cond(ins.opcode & 0xF))
    if addr is not None:
        e.store(ins.seg, addr, 1, c)
    else:
        e.set_reg_sz(ins.rm, 1, c)


@family("datamov.cmovcc")
def cmovcc(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("cmov16")
    v = e.reg(ins.rm) if ins.mod == 3 else e.load(ins.seg, e.ea(ins), 4)
    c = e.cond(ins.opcode & 0xF)
    old = e.reg(ins.reg)
    e.set_reg(ins.reg, e.op("select i1 %s, i32 %s, i32 %s" % (c, v, old)))


@family("datamov.xchg")
def xchg(e, ins):
    _check_common(e, ins)
    size = _size(ins)
    form = ins.row.operands[0]
    if form[0] == "Z":
        r1, r2 = ins.opcode & 7, 0
    elif ins.mod == 3:
        r1, r2 = ins.rm, ins.reg
    else:
        addr = e.ea(ins)
        m = e.load(ins.seg, addr, size)
        r = e.reg_sz(ins.reg, size)
        e.store(ins.seg, addr, size, r)
        e.set_reg_sz(ins.reg, size, m)
        return
    a = e.reg_sz(r1, size)
    b = e.reg_sz(r2, size)
    e.set_reg_sz(r1, size, b)
    e.set_reg_sz(r2, size, a)


# --- stack ------------------------------------------------------------------------------

@family("stack.push")
def push(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("push16")
    form = ins.row.operands[0]
    if form[0] == "Z":
        v = e.reg(ins.opcode & 7)
    elif form[0] == "I":
        v = _imm(ins.imm, 4)
    elif ins.mod == 3:
        v = e.reg(ins.rm)
    else:
        v = e.load(ins.seg, e.ea(ins), 4)
    sp = e.push(v)
    e.set_reg(4, sp)


@family("stack.pop")
def pop(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("pop16")
    form = ins.row.operands[0]
    if form[0] == "Z":
        r = ins.opcode & 7
    elif ins.mod == 3:
        r = ins.rm
    else:
        raise Unsupported("pop m")
    v, sp = e.pop_read()
    e.set_reg(4, e.op("add i32 %s, 4" % sp))
    e.set_reg(r, v)


@family("stack.pushf")
def pushf(e, ins):
    """PUSHFD.  The opcode table marks PUSHF sensitive for V86 mode (IOPL < 3
    gives #GP there); tier 1 compiles no V86 code (jit._prepare), and outside
    it PUSHF is an ordinary push of EFLAGS with VM and RF clear.  It
    materialises the lazy flags first, as the interpreter's does."""
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("pushf16")
    fl = e.materialize()
    sp = e.push(e.op("and i32 %s, %d" % (fl, 0x00FCFFFF)))
    e.set_reg(4, sp)


@family("stack.leave")
def leave(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("leave16")
    e.uses_stack = True
    sp = e.reg(5)
    v = e.load(2, sp, 4)
    e.set_reg(4, e.op("add i32 %s, 4" % sp))
    e.set_reg(5, v)


# --- control transfers (they end the block) --------------------------------------------

def _target(ins):
    return (ins.next_eip + ins.imm) & 0xFFFFFFFF


@family("control.jcc")
def jcc(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("jcc16")
    t = _target(ins)
    if t > e.xmax:
        raise Unsupported("target beyond CS limit")
    c = e.cond(ins.opcode & 0xF)
    yes, no = e.label("jt"), e.label("jf")
    e.emit("br i1 %s, label %%%s, label %%%s" % (c, yes, no))
    e.put_label(yes)
    e.exit_direct(t, e.i + 1)
    e.put_label(no)
    e.exit_direct(ins.next_eip, e.i + 1)
    e.ended = True


@family("control.jmp")
def jmp(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("jmp16")
    if ins.imm is not None and ins.mod is None:
        t = _target(ins)
        if t > e.xmax:
            raise Unsupported("target beyond CS limit")
        e.exit_direct(t, e.i + 1)
    else:
        t = e.reg(ins.rm) if ins.mod == 3 else e.load(ins.seg, e.ea(ins), 4)
        _check_limit(e, t)
        e.exit_dynamic(t, e.i + 1)
    e.ended = True


def _check_limit(e, t):
    """A dynamic target beyond the CS limit: the interpreter raises the #GP."""
    if e.xmax >= 0xFFFFFFFF:
        return
    bad = e.op("icmp ugt i32 %s, %d" % (t, e.xmax))
    e.to_shared("interp", bad, e.eip, e.i)


@family("control.call")
def call(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("call16")
    ret = ins.next_eip & 0xFFFFFFFF
    if ins.imm is not None and ins.mod is None:
        t = _target(ins)
        if t > e.xmax:
            raise Unsupported("target beyond CS limit")
        sp = e.push(str(ret))
        e.set_reg(4, sp)
        e.exit_direct(t, e.i + 1)
    else:
        t = e.reg(ins.rm) if ins.mod == 3 else e.load(ins.seg, e.ea(ins), 4)
        _check_limit(e, t)
        sp = e.push(str(ret))
        e.set_reg(4, sp)
        e.exit_dynamic(t, e.i + 1)
    e.ended = True


@family("control.ret")
def ret(e, ins):
    _check_common(e, ins)
    if ins.opsize != 32:
        raise Unsupported("ret16")
    extra = ins.imm or 0
    t, sp = e.pop_read()
    _check_limit(e, t)
    e.set_reg(4, e.op("add i32 %s, %d" % (sp, 4 + extra)))
    e.exit_dynamic(t, e.i + 1)
    e.ended = True


def _register_more():
    from . import semantics_more  # noqa: F401  (registers its families in FAMILIES)


# rows the opcode table marks sensitive only because of virtual-8086 mode:
# in the protected-mode code tier 1 compiles they are not, so they get native
# semantics (every other sensitive row runs its checked interpreter helper)
SENSITIVE_ONLY_IN_V86 = frozenset(("stack.pushf",))


def emit_instruction(e, ins):
    """Emit one instruction; raises Unsupported when tier 1 has no semantics."""
    fam = FAMILIES.get(ins.row.build)
    if fam is None:
        raise Unsupported(ins.row.build or "no builder")
    if getattr(ins.entry, "builder", None) is None:
        # the interpreter has no closure for it (#UD, counted): neither do we
        raise Unsupported("no interpreter builder")
    if "sens" in ins.row.attrs and ins.row.build not in SENSITIVE_ONLY_IN_V86:
        raise Unsupported("sensitive")
    fam(e, ins)


def supported(ins):
    """Cheap pre-check used to size a block before emitting it."""
    if FAMILIES.get(ins.row.build) is None or \
            ("sens" in ins.row.attrs and ins.row.build not in SENSITIVE_ONLY_IN_V86):
        return False
    if getattr(ins.entry, "builder", None) is None:
        return False
    if ins.adsize != 32 or ins.rep is not None:
        return False
    return True


_register_more()
