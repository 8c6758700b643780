"""x87 escape opcodes D8-DF, FWAIT (9B) and FXSAVE/FXRSTOR (0F AE /0, /1).

The opcode table has one row per escape byte (``x87.build``); ``build``
dispatches on the ModRM byte at decode time and returns a closure that calls
the x87 unit (``cpu.fpu``, emu/cpu/fpu.py), which does all the arithmetic.

Every closure, in this order:
  1. CR0.EM or CR0.TS set -> #NM (vector 7), before anything else;
  2. waiting instructions (all but FNINIT, FNCLEX, FNSTSW, FNSTCW, FNSTENV,
     FNSAVE, SDM Vol. 1 8.3.12) call ``fpu.check_pending()``: #MF with
     CR0.NE, else the FERR#/IRQ13 callback;
  3. memory operands: the effective address; loads read memory, stores
     check that the whole destination is writable (segment and page) before
     the unit changes any state, so a #GP/#SS/#PF leaves the FPU untouched;
  4. non-control instructions record FIP/FCS/FOP (and FDP/FDS with a
     memory operand) through ``fpu.set_pointers``;
  5. the operation; stores write the bytes the unit returned (none when an
     unmasked exception suppressed the store).

Reserved encodings raise #UD.  Undocumented aliases behave as on Intel
hardware (and QEMU): D9 D8+i FSTP1, DC D0+i FCOM2, DC D8+i FCOMP3,
DD C8+i FXCH4, DE D0+i FCOMP5, DF C8+i FXCH7, DF D0+i / D8+i FSTP8/9,
DF C0+i FFREEP; DB E0/E1/E4 (FENI, FDISI, FSETPM) are no-ops.
FISTTP (SSE3) is implemented regardless of CPUID.
"""
from ..faults import CPUFault, UD, GP
from ..flags import CONDS, set_flags, ZF, PF, CF, OF, SF, AF
from ..operands import ea
from ..state import CR0, CR4, EAX, FPU_SW, CS, seg_index
from .. import fpu as X

NM = 7
CR0_MP, CR0_EM, CR0_TS = 0x2, 0x4, 0x8
CR4_OSFXSR = 0x200
_ES = X.ES
_FCOMI_MASK = ZF | PF | CF | OF | SF | AF


def _raise_ud():
    raise CPUFault(UD)


# --------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------
def _pre(cpu, wait):
    """#NM check, then (waiting instructions) the pending-exception check."""
    R = cpu.R
    fpu = cpu.fpu
    if wait:
        def pre():
            if R[CR0] & (CR0_EM | CR0_TS):
                raise CPUFault(NM)
            if R[FPU_SW] & _ES:
                fpu.check_pending()
    else:
        def pre():
            if R[CR0] & (CR0_EM | CR0_TS):
                raise CPUFault(NM)
    return pre


def _opword(insn):
    return ((insn.opcode & 7) << 8) | (insn.mod << 6) | (insn.reg << 3) | insn.rm


def _note_reg(cpu, insn):
    R = cpu.R
    ip = insn.eip
    op = _opword(insn)
    csi = seg_index(CS, 0)
    setp = cpu.fpu.set_pointers

    def note():
        setp(ip, R[csi], op)
    return note


def _note_mem(cpu, insn):
    R = cpu.R
    ip = insn.eip
    op = _opword(insn)
    csi = seg_index(CS, 0)
    dsi = seg_index(insn.seg, 0)
    setp = cpu.fpu.set_pointers

    def note(off):
        setp(ip, R[csi], op, off, R[dsi])
    return note


def _reader(cpu, n):
    mem = cpu.mem
    if n == 2:
        rd16 = mem.rd16
        return lambda s, off: rd16(s, off).to_bytes(2, "little")
    if n == 4:
        rd32 = mem.rd32
        return lambda s, off: rd32(s, off).to_bytes(4, "little")
    rb = mem.read_bytes
    return lambda s, off: rb(s, off, n)


def _writer(cpu, n):
    mem = cpu.mem
    if n == 2:
        wr16 = mem.wr16
        return lambda s, off, data: wr16(s, off, int.from_bytes(data, "little"))
    if n == 4:
        wr32 = mem.wr32
        return lambda s, off, data: wr32(s, off, int.from_bytes(data, "little"))
    return mem.write_bytes


def _reg_op(cpu, insn, action, wait=True, control=False):
    """A register-form (or operand-less) instruction running action()."""
    pre = _pre(cpu, wait)
    if control:
        def f():
            pre()
            action()
        return f
    note = _note_reg(cpu, insn)

    def g():
        pre()
        note()
        action()
    return g


def _load(cpu, insn, n, action, wait=True, control=False):
    """Memory-source instruction: action(data) with the n bytes read."""
    pre = _pre(cpu, wait)
    addr = ea(cpu, insn)
    s = insn.seg
    read = _reader(cpu, n)
    if control:
        def f():
            pre()
            action(read(s, addr()))
        return f
    note = _note_mem(cpu, insn)

    def g():
        pre()
        off = addr()
        data = read(s, off)
        note(off)
        action(data)
    return g


def _store(cpu, insn, n, produce, wait=True, control=False):
    """Memory-destination instruction: produce() -> bytes or None (no store)."""
    pre = _pre(cpu, wait)
    addr = ea(cpu, insn)
    s = insn.seg
    check = cpu.mem.check_write
    write = _writer(cpu, n)
    note = None if control else _note_mem(cpu, insn)

    def f():
        pre()
        off = addr()
        check(s, off, n)
        if note is not None:
            note(off)
        data = produce()
        if data is not None:
            write(s, off, data)
    return f


def _real_layout(cpu):
    return not cpu.protected or cpu.v86


# --------------------------------------------------------------------------
# memory forms
# --------------------------------------------------------------------------
_ARITH_FMT = {0: ("m32", 4), 2: ("m32i", 4), 4: ("m64", 8), 6: ("m16i", 2)}


def _build_mem(cpu, insn, esc):
    fpu = cpu.fpu
    r = insn.reg
    if esc in _ARITH_FMT:                      # D8 DA DC DE: arithmetic group
        fmt, n = _ARITH_FMT[esc]
        arith = fpu.farith_m
        return _load(cpu, insn, n, lambda data: arith(r, data, fmt))
    if esc == 1:                                # D9
        if r == 0:
            return _load(cpu, insn, 4, fpu.fld_m32)
        if r == 2:
            return _store(cpu, insn, 4, lambda: fpu.fst_m32(False))
        if r == 3:
            return _store(cpu, insn, 4, lambda: fpu.fst_m32(True))
        if r == 4:                              # FLDENV
            n = 28 if insn.opsize == 32 else 14
            op32 = insn.opsize == 32
            return _load(cpu, insn, n,
                         lambda data: fpu.fldenv(data, op32, _real_layout(cpu)), control=True)
        if r == 5:                              # FLDCW
            return _load(cpu, insn, 2, lambda data: fpu.fldcw(int.from_bytes(data, "little")),
                         control=True)
        if r == 6:                              # FNSTENV
            n = 28 if insn.opsize == 32 else 14
            op32 = insn.opsize == 32
            return _store(cpu, insn, n, lambda: fpu.fnstenv(op32, _real_layout(cpu)),
                          wait=False, control=True)
        if r == 7:                              # FNSTCW
            return _store(cpu, insn, 2, lambda: fpu.fnstcw().to_bytes(2, "little"),
                          wait=False, control=True)
        return _raise_ud
    if esc == 3:                                # DB
        if r == 0:
            return _load(cpu, insn, 4, fpu.fild_m32)
        if r == 1:
            return _store(cpu, insn, 4, lambda: fpu.fist(4, True, truncate=True))
        if r == 2:
            return _store(cpu, insn, 4, lambda: fpu.fist(4, False))
        if r == 3:
            return _store(cpu, insn, 4, lambda: fpu.fist(4, True))
        if r == 5:
            return _load(cpu, insn, 10, fpu.fld_m80)
        if r == 7:
            return _store(cpu, insn, 10, fpu.fstp_m80)
        return _raise_ud
    if esc == 5:                                # DD
        if r == 0:
            return _load(cpu, insn, 8, fpu.fld_m64)
        if r == 1:
            return _store(cpu, insn, 8, lambda: fpu.fist(8, True, truncate=True))
        if r == 2:
            return _store(cpu, insn, 8, lambda: fpu.fst_m64(False))
        if r == 3:
            return _store(cpu, insn, 8, lambda: fpu.fst_m64(True))
        if r == 4:                              # FRSTOR
            n = 108 if insn.opsize == 32 else 94
            op32 = insn.opsize == 32
            return _load(cpu, insn, n,
                         lambda data: fpu.frstor(data, op32, _real_layout(cpu)), control=True)
        if r == 6:                              # FNSAVE
            n = 108 if insn.opsize == 32 else 94
            op32 = insn.opsize == 32
            return _store(cpu, insn, n, lambda: fpu.fnsave(op32, _real_layout(cpu)),
                          wait=False, control=True)
        if r == 7:                              # FNSTSW m16
            return _store(cpu, insn, 2, lambda: fpu.fnstsw().to_bytes(2, "little"),
                          wait=False, control=True)
        return _raise_ud
    # esc == 7: DF
    if r == 0:
        return _load(cpu, insn, 2, fpu.fild_m16)
    if r == 1:
        return _store(cpu, insn, 2, lambda: fpu.fist(2, True, truncate=True))
    if r == 2:
        return _store(cpu, insn, 2, lambda: fpu.fist(2, False))
    if r == 3:
        return _store(cpu, insn, 2, lambda: fpu.fist(2, True))
    if r == 4:
        return _load(cpu, insn, 10, fpu.fbld)
    if r == 5:
        return _load(cpu, insn, 8, fpu.fild_m64)
    if r == 6:
        return _store(cpu, insn, 10, fpu.fbstp)
    return _store(cpu, insn, 8, lambda: fpu.fist(8, True))


# --------------------------------------------------------------------------
# register forms
# --------------------------------------------------------------------------
# DC/DE register forms: /reg -> operation on ST(i) <- ST(i) op ST(0)
_DC_OPS = {0: X.ADD, 1: X.MUL, 4: X.SUBR, 5: X.SUB, 6: X.DIVR, 7: X.DIV}

_D9_E0 = {0xE0: "fchs", 0xE1: "fabs", 0xE4: "ftst", 0xE5: "fxam",
          0xF0: "f2xm1", 0xF1: "fyl2x", 0xF2: "fptan", 0xF3: "fpatan", 0xF4: "fxtract",
          0xF5: "fprem1", 0xF6: "fdecstp", 0xF7: "fincstp", 0xF8: "fprem", 0xF9: "fyl2xp1",
          0xFA: "fsqrt", 0xFB: "fsincos", 0xFC: "frndint", 0xFD: "fscale", 0xFE: "fsin",
          0xFF: "fcos"}

# FCMOVcc: DA C0/C8/D0/D8 = B E BE U, DB = the negations (EFLAGS condition codes)
_FCMOV_CC = {0: 2, 1: 4, 2: 6, 3: 10}


def _fcomi(cpu, insn, pop, unordered):
    R = cpu.R
    fpu = cpu.fpu
    i = insn.rm

    def action():
        r = fpu.fcomi(i, pop, unordered)
        if r is not None:
            zf, pf, cf = r
            set_flags(R, (ZF if zf else 0) | (PF if pf else 0) | (CF if cf else 0), _FCOMI_MASK)
    return _reg_op(cpu, insn, action)


def _build_reg(cpu, insn, esc):
    fpu = cpu.fpu
    r = insn.reg
    i = insn.rm
    modrm = 0xC0 | (r << 3) | i
    if esc == 0:                                 # D8: ST0 <- ST0 op ST(i)
        if r == 2:
            return _reg_op(cpu, insn, lambda: fpu.fcom(i))
        if r == 3:
            return _reg_op(cpu, insn, lambda: fpu.fcom(i, 1))
        return _reg_op(cpu, insn, lambda: fpu.farith(r, 0, i))
    if esc == 1:                                 # D9
        if r == 0:
            return _reg_op(cpu, insn, lambda: fpu.fld_st(i))
        if r == 1:
            return _reg_op(cpu, insn, lambda: fpu.fxch(i))
        if r == 2:
            if i == 0:                           # FNOP (a waiting instruction)
                return _reg_op(cpu, insn, lambda: None)
            return _raise_ud
        if r == 3:                               # FSTP1 (alias)
            return _reg_op(cpu, insn, lambda: fpu.fst_st(i, True))
        if 0xE8 <= modrm <= 0xEE:
            k = modrm - 0xE8
            return _reg_op(cpu, insn, lambda: fpu.fld_const(k))
        name = _D9_E0.get(modrm)
        if name is None:
            return _raise_ud
        return _reg_op(cpu, insn, getattr(fpu, name))
    if esc == 2:                                 # DA
        if r < 4:
            cond = CONDS[_FCMOV_CC[r]]
            R = cpu.R
            return _reg_op(cpu, insn, lambda: fpu.fcmov(i, cond(R)))
        if modrm == 0xE9:                        # FUCOMPP
            return _reg_op(cpu, insn, lambda: fpu.fcom(1, 2, unordered=True))
        return _raise_ud
    if esc == 3:                                 # DB
        if r < 4:
            cond = CONDS[_FCMOV_CC[r] | 1]
            R = cpu.R
            return _reg_op(cpu, insn, lambda: fpu.fcmov(i, cond(R)))
        if r == 4:
            if modrm in (0xE0, 0xE1, 0xE4):      # FENI, FDISI, FSETPM: no-ops on a 387+
                return _reg_op(cpu, insn, lambda: None, wait=False, control=True)
            if modrm == 0xE2:
                return _reg_op(cpu, insn, fpu.fnclex, wait=False, control=True)
            if modrm == 0xE3:
                return _reg_op(cpu, insn, fpu.fninit, wait=False, control=True)
            return _raise_ud
        if r == 5:
            return _fcomi(cpu, insn, False, True)
        if r == 6:
            return _fcomi(cpu, insn, False, False)
        return _raise_ud
    if esc == 4:                                 # DC: ST(i) <- ST(i) op ST0
        if r == 2:                               # FCOM2 (alias)
            return _reg_op(cpu, insn, lambda: fpu.fcom(i))
        if r == 3:                               # FCOMP3 (alias)
            return _reg_op(cpu, insn, lambda: fpu.fcom(i, 1))
        op = _DC_OPS[r]
        return _reg_op(cpu, insn, lambda: fpu.farith(op, i, 0))
    if esc == 5:                                 # DD
        if r == 0:
            return _reg_op(cpu, insn, lambda: fpu.ffree(i))
        if r == 1:                               # FXCH4 (alias)
            return _reg_op(cpu, insn, lambda: fpu.fxch(i))
        if r == 2:
            return _reg_op(cpu, insn, lambda: fpu.fst_st(i))
        if r == 3:
            return _reg_op(cpu, insn, lambda: fpu.fst_st(i, True))
        if r == 4:
            return _reg_op(cpu, insn, lambda: fpu.fcom(i, unordered=True))
        if r == 5:
            return _reg_op(cpu, insn, lambda: fpu.fcom(i, 1, unordered=True))
        return _raise_ud
    if esc == 6:                                 # DE: ST(i) <- ST(i) op ST0, pop
        if r == 2:                               # FCOMP5 (alias)
            return _reg_op(cpu, insn, lambda: fpu.fcom(i, 1))
        if r == 3:
            if i == 1:                           # FCOMPP
                return _reg_op(cpu, insn, lambda: fpu.fcom(1, 2))
            return _raise_ud
        op = _DC_OPS[r]
        return _reg_op(cpu, insn, lambda: fpu.farith(op, i, 0, pop=True))
    # esc == 7: DF
    if r == 0:                                   # FFREEP (undocumented)
        return _reg_op(cpu, insn, lambda: fpu.ffreep(i))
    if r == 1:                                   # FXCH7 (alias)
        return _reg_op(cpu, insn, lambda: fpu.fxch(i))
    if r in (2, 3):                              # FSTP8 / FSTP9 (aliases)
        return _reg_op(cpu, insn, lambda: fpu.fst_st(i, True))
    if r == 4:
        if i == 0:                               # FNSTSW AX
            R = cpu.R

            def fnstsw_ax():
                R[EAX] = (R[EAX] & 0xFFFF0000) | fpu.fnstsw()
            return _reg_op(cpu, insn, fnstsw_ax, wait=False, control=True)
        return _raise_ud
    if r == 5:
        return _fcomi(cpu, insn, True, True)
    if r == 6:
        return _fcomi(cpu, insn, True, False)
    return _raise_ud


# --------------------------------------------------------------------------
# table entry points
# --------------------------------------------------------------------------
def build(cpu, insn):
    """Builder of the D8-DF rows: dispatch on the escape byte and ModRM."""
    if cpu.fpu is None:
        return _raise_ud
    esc = insn.opcode & 7
    if insn.mod == 3:
        return _build_reg(cpu, insn, esc)
    return _build_mem(cpu, insn, esc)


def fwait(cpu, insn):
    """9B WAIT/FWAIT: #NM if CR0.TS and CR0.MP; then pending exceptions."""
    R = cpu.R
    fpu = cpu.fpu
    if fpu is None:
        return lambda: None

    def f():
        if R[CR0] & (CR0_TS | CR0_MP) == (CR0_TS | CR0_MP):
            raise CPUFault(NM)
        if R[FPU_SW] & _ES:
            fpu.check_pending()
    return f


def _fx_pre(cpu, insn):
    R = cpu.R
    addr = ea(cpu, insn)
    s = insn.seg
    segs = cpu.segs

    def pre():
        cr0 = R[CR0]
        if cr0 & CR0_EM:
            raise CPUFault(UD)
        if cr0 & CR0_TS:
            raise CPUFault(NM)
        off = addr()
        if (segs[s].base + off) & 0xF:
            raise CPUFault(GP, 0)
        return off
    return pre


def fxsave(cpu, insn):
    """0F AE /0.  Writes the x87 legacy region (bytes 0-159 but MXCSR); with
    CR4.OSFXSR also MXCSR/MXCSR_MASK and XMM0-7 (zero: emu has no SSE
    state).  Bytes 288-511 are left alone."""
    if cpu.fpu is None:
        return _raise_ud
    R = cpu.R
    fpu = cpu.fpu
    pre = _fx_pre(cpu, insn)
    s = insn.seg
    check = cpu.mem.check_write
    wb = cpu.mem.write_bytes

    def f():
        off = pre()
        osfxsr = R[CR4] & CR4_OSFXSR
        n = 288 if osfxsr else 160
        check(s, off, n)
        img = fpu.fxsave()
        if osfxsr:
            wb(s, off, img[:288])
        else:
            wb(s, off, img[:24])
            wb(s, off + 32, img[32:160])
    return f


def fxrstor(cpu, insn):
    """0F AE /1.  Loads the x87 legacy region (and MXCSR with CR4.OSFXSR,
    #GP(0) on reserved MXCSR bits)."""
    if cpu.fpu is None:
        return _raise_ud
    R = cpu.R
    fpu = cpu.fpu
    pre = _fx_pre(cpu, insn)
    s = insn.seg
    rb = cpu.mem.read_bytes

    def f():
        off = pre()
        data = rb(s, off, 512)
        fpu.fxrstor(data, load_mxcsr=bool(R[CR4] & CR4_OSFXSR))
    return f
