"""System instructions (SDM Vol. 2/3), P6 behaviour.

HLT CLI STI; grp6 SLDT STR LLDT LTR VERR VERW; grp7 SGDT SIDT LGDT LIDT
SMSW LMSW INVLPG; LAR LSL ARPL; CLTS INVD WBINVD UD2; MOV to/from CR0 CR2
CR3 CR4 and DR0-DR7; CPUID (emu/cpu/cpuid.py); RDTSC RDMSR WRMSR
(emu/cpu/msr.py); SYSENTER SYSEXIT.

Privilege: "CPL 0 only" instructions raise #GP(0) in protected mode when
CPL > 0 and in virtual-8086 mode; in real mode they are allowed.  The
privilege check comes first (before the memory operand is read), as
Unicorn/QEMU order it.  Instructions marked "pm" in opcodes.py (grp6,
LAR, LSL, ARPL) are #UD in real and V86 mode before they get here.

Descriptor-table reads (LLDT LTR VERR VERW LAR LSL) and the busy-bit write
of LTR are implicit supervisor-mode accesses: cpu.mmu.read_bytes(lin, 8,
False).  Error codes for selector faults are the selector with its RPL
bits cleared (TI kept), as the SDM's "#GP(selector)" means.  Descriptors
are decoded by emu/cpu/segments.py's parse() (imported at build time; a
local copy is used if that module is absent), and the "beyond the table"
rule is the one of segments.fetch (a TI=1 selector with a null LDTR is).

Choices where the SDM leaves room (documented, tested):
* SLDT/STR/SMSW to a 32-bit register write all 32 bits: SLDT/STR
  zero-extend the selector (P6 and later), SMSW stores all of CR0 (as
  Bochs does; the SDM calls the high half undefined; Unicorn 2.1.4 writes
  only the low 16 bits).
  To memory they always store 16 bits.
* SGDT/SIDT with 16-bit operand size store the limit, 24 bits of base and
  a zero byte (386 .. P6: "the sixth byte filled with 0s"); LGDT/LIDT with
  16-bit operand size keep 24 bits of the base.
* LAR's 32-bit result is descriptor dword 1 AND 0x00F0FF00 (the "x" nibble
  of the SDM's 0x00FxFF00 - limit 19:16 - reads 0); 16-bit: AND 0xFF00.
* MOV to CR0: reserved bits are ignored (cpu.write_cr0 keeps only the P6
  bits) - the SDM raises #GP only for PG=1 with PE=0 and NW=1 with CD=0.
  MOV to CR3 stores the value as written.  MOV to CR4: writable bits are
  TSD, DE, PSE, PGE, PCE (RDPMC is not implemented, so PCE has no effect)
  and OSFXSR when CPUID advertises FXSR; setting any other bit (VME, PVI,
  PAE, MCE, OSXMMEXCPT, ...: features emu does not have) is #GP(0).
  CR1, CR5-CR7 are #UD at any CPL (decode-time).
* Debug registers are stored and read back; no breakpoint is armed.
  DR6 reads/writes with its P6 fixed bits (4-11, 16-31 = 1, bit 12 = 0),
  DR7 with bit 10 = 1 and bits 11, 12, 14, 15 = 0.  DR4/DR5 alias DR6/DR7
  when CR4.DE = 0 and are #UD when CR4.DE = 1.  General detect (DR7.GD):
  a MOV DR at CPL 0 with GD set raises #DB (a fault) after setting DR6.BD
  and clearing GD, as the processor does on entry to the handler.  Order
  of checks: CPL (#GP) then DR4/5 (#UD) then GD (#DB).
* RDTSC/RDMSR TSC: see msr.clock() - exact per instruction.
"""
import struct

from ..faults import CPUFault, GP, UD, NP, DB
from ..flags import IF, IOPL_MASK, VM, RF, ZF, materialize, set_flags
from ..operands import ea, rm_get, rm_set, rm_rmw, reg_get, reg_set
from ..state import (EFLAGS, EIP, HALTED, CPL, EAX, ECX, EDX, EBX, ESP,
                     CR0, CR2, CR3, CR4, DR0, CS, SS,
                     GDTR_BASE, GDTR_LIMIT, IDTR_BASE,
                     LDTR_SEL, LDTR_BASE, LDTR_LIMIT, LDTR_ATTR,
                     TR_SEL, TR_BASE, TR_LIMIT, TR_ATTR,
                     SYSENTER_CS, SYSENTER_ESP, SYSENTER_EIP,
                     ATTR_P, ATTR_S, ATTR_CODE, ATTR_CONFORMING, ATTR_RW, ATTR_G)
from .. import cpuid as _cpuid
from .. import msr as _msr

M32 = 0xFFFFFFFF
CR0_PE, CR0_TS, CR0_NW, CR0_CD, CR0_PG = 1, 8, 1 << 29, 1 << 30, 1 << 31
CR4_TSD, CR4_DE, CR4_PSE, CR4_PGE, CR4_PCE, CR4_OSFXSR = 4, 8, 0x10, 0x80, 0x100, 0x200
DR6, DR7 = DR0 + 6, DR0 + 7
DR6_FIXED1, DR6_WRITABLE = 0xFFFF0FF0, 0x0000E00F
DR7_FIXED1, DR7_WRITABLE = 0x00000400, 0xFFFF23FF
DR6_BD, DR7_GD = 0x2000, 0x2000


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
            # the shadow; the run loop stops only if something is pending
            # (~40k stops fewer on a Linux boot: cpu.hold_interrupts)
            cpu.hold_interrupts()
    return f


# --- helpers -----------------------------------------------------------------
def _not_cpl0(R):
    """True when a CPL-0-only instruction must #GP(0): protected mode with CPL > 0, or V86."""
    return R[CR0] & 1 and (R[CPL] or R[EFLAGS] & VM)


def _desc_lin(cpu, sel):
    """Linear address of the descriptor ``sel`` names (GDT or LDT by TI), or
    None when it lies beyond that table's limit or names a null LDT (the
    rule of segments.fetch)."""
    R = cpu.R
    off = sel & 0xFFF8
    if sel & 4:
        if not R[LDTR_SEL] & 0xFFFC:
            return None
        base, limit = R[LDTR_BASE], R[LDTR_LIMIT]
    else:
        base, limit = R[GDTR_BASE], R[GDTR_LIMIT]
    if off + 7 > limit:
        return None
    return (base + off) & M32


def _gdt_lin(cpu, sel):
    R = cpu.R
    off = sel & 0xFFF8
    if off + 7 > R[GDTR_LIMIT]:
        return None
    return (R[GDTR_BASE] + off) & M32


_U2 = struct.Struct("<II")


def _read_desc(cpu, lin):
    """(dword0, dword1) of the descriptor at linear ``lin`` (supervisor access)."""
    return _U2.unpack(cpu.mmu.read_bytes(lin, 8, False))


def _local_parse(lo, hi):
    """(base, byte-granular limit, attr word) of a descriptor."""
    base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    attr = (hi >> 8) & 0xF0FF
    if attr & ATTR_G:
        limit = (limit << 12) | 0xFFF
    return base, limit, attr


def _parser():
    """segments.parse when emu/cpu/segments.py provides it (imported lazily,
    at build time), else the local copy."""
    try:
        from ..segments import parse
        return parse
    except ImportError:
        return _local_parse


def _set_zf(R, ok):
    set_flags(R, ZF if ok else 0, ZF)


def _visible(cpu, sel):
    """(lo, hi) of a non-null selector's descriptor, or None (null / beyond the
    table limit): the common first step of VERR VERW LAR LSL."""
    if not sel & 0xFFFC:
        return None
    lin = _desc_lin(cpu, sel)
    if lin is None:
        return None
    return _read_desc(cpu, lin)


def _priv_ok(R, sel, attr):
    dpl = (attr >> 5) & 3
    return dpl >= R[CPL] and dpl >= (sel & 3)


# --- grp6: SLDT STR LLDT LTR VERR VERW -----------------------------------------
def grp6(cpu, insn):
    r = insn.reg
    if r == 0:
        return _store_sel(cpu, insn, LDTR_SEL)
    if r == 1:
        return _store_sel(cpu, insn, TR_SEL)
    if r == 2:
        return _lldt(cpu, insn)
    if r == 3:
        return _ltr(cpu, insn)
    return _verr_verw(cpu, insn, r == 5)


def _store_sel(cpu, insn, word):
    R = cpu.R
    if insn.mod == 3:
        rm = insn.rm
        if insn.opsize == 32:
            def f32():
                R[rm] = R[word] & 0xFFFF
            return f32

        def f16():
            R[rm] = (R[rm] & 0xFFFF0000) | (R[word] & 0xFFFF)
        return f16
    put = rm_set(cpu, insn, 2)

    def fm():
        put(R[word] & 0xFFFF)
    return fm


def _lldt(cpu, insn):
    R = cpu.R
    parse = _parser()
    get = rm_get(cpu, insn, 2)

    def f():
        if R[CPL]:
            raise CPUFault(GP, 0)
        sel = get()
        if not sel & 0xFFFC:                 # null: LDTR marked invalid
            R[LDTR_SEL] = sel
            R[LDTR_BASE] = 0
            R[LDTR_LIMIT] = 0
            R[LDTR_ATTR] = 0
            return
        code = sel & 0xFFFC
        if sel & 4:
            raise CPUFault(GP, code)
        lin = _gdt_lin(cpu, sel)
        if lin is None:
            raise CPUFault(GP, code)
        lo, hi = _read_desc(cpu, lin)
        base, limit, attr = parse(lo, hi)
        if attr & 0x1F != 0x02:               # system, type 2 (LDT)
            raise CPUFault(GP, code)
        if not attr & ATTR_P:
            raise CPUFault(NP, code)
        R[LDTR_SEL] = sel
        R[LDTR_BASE] = base
        R[LDTR_LIMIT] = limit
        R[LDTR_ATTR] = attr
    return f


def _ltr(cpu, insn):
    R = cpu.R
    parse = _parser()
    get = rm_get(cpu, insn, 2)
    mmu = cpu.mmu

    def f():
        if R[CPL]:
            raise CPUFault(GP, 0)
        sel = get()
        if not sel & 0xFFFC:
            raise CPUFault(GP, 0)
        code = sel & 0xFFFC
        if sel & 4:
            raise CPUFault(GP, code)
        lin = _gdt_lin(cpu, sel)
        if lin is None:
            raise CPUFault(GP, code)
        lo, hi = _read_desc(cpu, lin)
        base, limit, attr = parse(lo, hi)
        if attr & 0x1F not in (0x01, 0x09):   # available 16- or 32-bit TSS
            raise CPUFault(GP, code)
        if not attr & ATTR_P:
            raise CPUFault(NP, code)
        mmu.write((lin + 5) & M32, 1, ((hi >> 8) & 0xFF) | 0x02, False)   # busy
        R[TR_SEL] = sel
        R[TR_BASE] = base
        R[TR_LIMIT] = limit
        R[TR_ATTR] = attr | 0x02
    return f


def _verr_verw(cpu, insn, write):
    R = cpu.R
    get = rm_get(cpu, insn, 2)

    def f():
        sel = get()
        d = _visible(cpu, sel)
        ok = False
        if d is not None:
            attr = (d[1] >> 8) & 0xFF
            if attr & ATTR_S:
                if attr & ATTR_CODE:
                    if not write and attr & ATTR_RW:
                        ok = bool(attr & ATTR_CONFORMING) or _priv_ok(R, sel, attr)
                elif not write or attr & ATTR_RW:
                    ok = _priv_ok(R, sel, attr)
        _set_zf(R, ok)
    return f


# --- LAR LSL ARPL ------------------------------------------------------------
# system descriptor types each accepts (SDM Vol. 2, LAR and LSL)
LAR_TYPES = frozenset((0x1, 0x2, 0x3, 0x4, 0x5, 0x9, 0xB, 0xC))
LSL_TYPES = frozenset((0x1, 0x2, 0x3, 0x9, 0xB))


def lar_lsl(cpu, insn):
    R = cpu.R
    get = rm_get(cpu, insn, 2)
    size = insn.opsize >> 3
    put = reg_set(cpu, insn.reg, size)
    lar = insn.row.mnem == "lar"
    types = LAR_TYPES if lar else LSL_TYPES
    lar_mask = 0x00F0FF00 if size == 4 else 0xFF00
    lim_mask = 0xFFFFFFFF if size == 4 else 0xFFFF
    parse = _parser()

    def f():
        sel = get()
        d = _visible(cpu, sel)
        ok = False
        if d is not None:
            lo, hi = d
            attr = (hi >> 8) & 0xFF
            if attr & ATTR_S:
                ok = ((attr & (ATTR_CODE | ATTR_CONFORMING)) == (ATTR_CODE | ATTR_CONFORMING)
                      or _priv_ok(R, sel, attr))
            else:
                ok = (attr & 0xF) in types and _priv_ok(R, sel, attr)
            if ok:
                if lar:
                    put(hi & lar_mask)
                else:
                    put(parse(lo, hi)[1] & lim_mask)
        _set_zf(R, ok)
    return f


def arpl(cpu, insn):
    R = cpu.R
    get, put = rm_rmw(cpu, insn, 2)
    src = reg_get(cpu, insn.reg, 2)

    def f():
        d = get()
        s = src() & 3
        if (d & 3) < s:
            put((d & 0xFFFC) | s)
            _set_zf(R, True)
        else:
            put(d)          # a read-modify-write: the store happens (and may fault) anyway
            _set_zf(R, False)
    return f


# --- grp7: SGDT SIDT LGDT LIDT SMSW LMSW INVLPG --------------------------------
def grp7(cpu, insn):
    r = insn.reg
    if r in (0, 1):
        return _sdt(cpu, insn, GDTR_BASE if r == 0 else IDTR_BASE)
    if r in (2, 3):
        return _ldt_reg(cpu, insn, GDTR_BASE if r == 2 else IDTR_BASE)
    if r == 4:
        return _smsw(cpu, insn)
    if r == 6:
        return _lmsw(cpu, insn)
    return _invlpg(cpu, insn)


def _sdt(cpu, insn, wbase):
    R = cpu.R
    wlimit = wbase + 1          # GDTR_LIMIT / IDTR_LIMIT follow their base word
    addr = ea(cpu, insn)
    s = insn.seg
    wb = cpu.mem.write_bytes
    bmask = 0xFFFFFF if insn.opsize == 16 else M32
    pack = struct.Struct("<HI").pack

    def f():
        wb(s, addr(), pack(R[wlimit] & 0xFFFF, R[wbase] & bmask))
    return f


def _ldt_reg(cpu, insn, wbase):
    R = cpu.R
    wlimit = wbase + 1
    addr = ea(cpu, insn)
    s = insn.seg
    rb = cpu.mem.read_bytes
    bmask = 0xFFFFFF if insn.opsize == 16 else M32
    unpack = struct.Struct("<HI").unpack

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        limit, base = unpack(rb(s, addr(), 6))
        R[wlimit] = limit
        R[wbase] = base & bmask
    return f


def _smsw(cpu, insn):
    R = cpu.R
    if insn.mod == 3:
        rm = insn.rm
        if insn.opsize == 32:
            def f32():
                R[rm] = R[CR0]
            return f32

        def f16():
            R[rm] = (R[rm] & 0xFFFF0000) | (R[CR0] & 0xFFFF)
        return f16
    put = rm_set(cpu, insn, 2)

    def fm():
        put(R[CR0] & 0xFFFF)
    return fm


def _lmsw(cpu, insn):
    R = cpu.R
    get = rm_get(cpu, insn, 2)

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        v = get()
        cr0 = R[CR0]
        # PE, MP, EM, TS from the operand; PE can be set but not cleared
        cpu.write_cr0((cr0 & ~0xF & M32) | (v & 0xF) | (cr0 & CR0_PE))
    return f


def _invlpg(cpu, insn):
    R = cpu.R
    addr = ea(cpu, insn)
    sg = cpu.segs[insn.seg]
    mmu = cpu.mmu

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        mmu.invlpg((sg.base + addr()) & M32)
    return f


# --- CLTS INVD WBINVD UD2 ------------------------------------------------------------
def clts(cpu, insn):
    R = cpu.R

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        if R[CR0] & CR0_TS:
            cpu.write_cr0(R[CR0] & ~CR0_TS & M32)
    return f


def wbinvd(cpu, insn):
    """INVD and WBINVD: CPL 0; caches are not modelled, so nothing else."""
    R = cpu.R

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
    return f


def ud2(cpu, insn):
    def f():
        raise CPUFault(UD)
    return f


# --- MOV CRn / DRn -------------------------------------------------------------------
_CR_WORD = {0: CR0, 2: CR2, 3: CR3, 4: CR4}


def cr4_writable():
    m = CR4_TSD | CR4_DE | CR4_PSE | CR4_PGE | CR4_PCE
    if _cpuid.has_fxsr():
        m |= CR4_OSFXSR
    return m


def mov_from_cr(cpu, insn):
    R = cpu.R
    w = _CR_WORD.get(insn.reg)
    if w is None:
        raise CPUFault(UD)
    rm = insn.rm            # the mod bits are ignored: always a register

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        R[rm] = R[w]
    return f


def mov_to_cr(cpu, insn):
    R = cpu.R
    n = insn.reg
    if n not in _CR_WORD:
        raise CPUFault(UD)
    rm = insn.rm
    if n == 0:
        def f():
            if _not_cpl0(R):
                raise CPUFault(GP, 0)
            v = R[rm]
            if (v & CR0_PG and not v & CR0_PE) or (v & CR0_NW and not v & CR0_CD):
                raise CPUFault(GP, 0)
            cpu.write_cr0(v)
        return f
    if n == 2:
        def f():
            if _not_cpl0(R):
                raise CPUFault(GP, 0)
            R[CR2] = R[rm]
        return f
    if n == 3:
        mmu = cpu.mmu

        def f():
            if _not_cpl0(R):
                raise CPUFault(GP, 0)
            R[CR3] = R[rm]
            mmu.cr3_changed()
        return f
    bad = M32 & ~cr4_writable()

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        v = R[rm]
        if v & bad:
            raise CPUFault(GP, 0)
        cpu.write_cr4(v)
    return f


def _dr_common(R, n):
    """Checks shared by both MOV DR directions; returns the register word."""
    if _not_cpl0(R):
        raise CPUFault(GP, 0)
    if n == 4 or n == 5:
        if R[CR4] & CR4_DE:
            raise CPUFault(UD)
        n += 2
    if R[DR7] & DR7_GD:
        R[DR6] |= DR6_BD
        R[DR7] &= ~DR7_GD & M32
        raise CPUFault(DB)
    return DR0 + n


def mov_from_dr(cpu, insn):
    R = cpu.R
    n = insn.reg
    rm = insn.rm

    def f():
        w = _dr_common(R, n)
        v = R[w]
        if w == DR6:
            v = (v & DR6_WRITABLE) | DR6_FIXED1
        elif w == DR7:
            v = (v & DR7_WRITABLE) | DR7_FIXED1
        R[rm] = v
    return f


def mov_to_dr(cpu, insn):
    R = cpu.R
    n = insn.reg
    rm = insn.rm

    def f():
        w = _dr_common(R, n)
        v = R[rm]
        if w == DR6:
            v = (v & DR6_WRITABLE) | DR6_FIXED1
        elif w == DR7:
            v = (v & DR7_WRITABLE) | DR7_FIXED1
        R[w] = v
    return f


# --- CPUID RDTSC RDMSR WRMSR -------------------------------------------------------
def cpuid(cpu, insn):
    R = cpu.R
    table = _cpuid.table()
    fallback = table[_cpuid.MAX_BASIC]
    get = table.get

    def f():
        a, b, c, d = get(R[EAX], fallback)
        R[EAX] = a
        R[EBX] = b
        R[ECX] = c
        R[EDX] = d
    return f


def rdtsc(cpu, insn):
    R = cpu.R
    eip = insn.eip
    tsc = _msr.tsc

    def f():
        if R[CR4] & CR4_TSD and _not_cpl0(R):
            raise CPUFault(GP, 0)
        v = tsc(cpu, eip)
        R[EAX] = v & M32
        R[EDX] = v >> 32
    return f


def rdmsr(cpu, insn):
    R = cpu.R
    eip = insn.eip
    rd = _msr.rdmsr

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        v = rd(cpu, R[ECX], eip)
        R[EAX] = v & M32
        R[EDX] = v >> 32
    return f


def wrmsr(cpu, insn):
    R = cpu.R
    eip = insn.eip
    wr = _msr.wrmsr

    def f():
        if _not_cpl0(R):
            raise CPUFault(GP, 0)
        wr(cpu, R[ECX], R[EDX] << 32 | R[EAX], eip)
    return f


# --- SYSENTER SYSEXIT -------------------------------------------------------------
FLAT_CODE0, FLAT_DATA0 = 0xC09B, 0xC093     # G, D/B, P, DPL 0, code RX accessed / data RW accessed
FLAT_CODE3, FLAT_DATA3 = 0xC0FB, 0xC0F3


def sysenter(cpu, insn):
    R = cpu.R

    def f():
        cs = R[SYSENTER_CS]
        if not R[CR0] & CR0_PE or not cs & 0xFFFC:
            raise CPUFault(GP, 0)
        e = materialize(R)
        if e & (VM | IF | RF):
            cpu.set_eflags(e & ~(VM | IF | RF))
        cpu.set_cpl(0)
        sel = cs & 0xFFFC
        cpu.set_seg(CS, sel, 0, M32, FLAT_CODE0)
        cpu.set_seg(SS, sel + 8, 0, M32, FLAT_DATA0)
        R[ESP] = R[SYSENTER_ESP]
        R[EIP] = R[SYSENTER_EIP]
    return f


def sysexit(cpu, insn):
    R = cpu.R

    def f():
        cs = R[SYSENTER_CS]
        if not R[CR0] & CR0_PE or not cs & 0xFFFC or R[CPL] or R[EFLAGS] & VM:
            raise CPUFault(GP, 0)
        cpu.set_cpl(3)
        cpu.set_seg(CS, (cs + 16) | 3, 0, M32, FLAT_CODE3)
        cpu.set_seg(SS, (cs + 24) | 3, 0, M32, FLAT_DATA3)
        R[ESP] = R[ECX]
        R[EIP] = R[EDX]
    return f
