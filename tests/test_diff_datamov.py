"""Differential tests (emu vs Unicorn) for the data-movement family:
MOV (all forms, moffs with segment override and address size), MOV to/from
segment registers, LES/LDS/LSS/LFS/LGS, MOVZX/MOVSX, XCHG/NOP/PAUSE, XLAT,
BSWAP, CBW/CWDE/CWD/CDQ, LAHF/SAHF, CLC/STC/CMC/CLD/STD, SETcc, CMOVcc,
XADD, CMPXCHG, CMPXCHG8B -- in REAL16 and PROT32_PAGED, register and
memory forms, 16/32-bit operand and address sizes, page-crossing operands
(PROT32_PAGED's data pages are mapped in reverse physical order) and faults.

Where Unicorn departs from the SDM (segment-limit checks, see tests/oracle.py
A1/A2) the test runs emu alone and checks the SDM's result.
"""
import random

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from tests.layout import REAL16, PROT32_PAGED
from tests.difftest import check_same, emu_side
from emu.cpu import state as S
from tests import oracle as _oracle

if not hasattr(_oracle.Exc, "trap"):         # difftest.py still says .trap, oracle.py .soft
    _oracle.Exc.trap = property(lambda self: self.soft)

LAYOUTS = [REAL16, PROT32_PAGED]
IDS = [L.name for L in LAYOUTS]
ARITH = 0x8D5                 # CF PF AF ZF SF OF
DF = 0x400
CONDS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

P = PROT32_PAGED
DATA32 = P.data_lin[0]                        # 0x410000, 8 pages (reversed physically)
DATA32_END = DATA32 + P.data_lin[1]
R16_DS = 0x20000                              # REAL16 DS base (DS=0x2000)


def fill(L, seed):
    """Random bytes over the layout's data window."""
    rnd = random.Random(seed)
    n = 0x8000 if L.paging else 0x10000
    return [(L.data_lin[0], rnd.randbytes(n))]


def base_regs(L, rnd):
    regs = {r: rnd.getrandbits(32) for r in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi")}
    regs["eflags"] = 2 | (rnd.getrandbits(12) & (ARITH | DF))
    return regs


def memop(L, rnd, size, target=None):
    """(operand text, register overrides, linear address) for a random
    addressing form that points at ``target`` (or a random data address)."""
    if L.paging:
        if target is None:
            if rnd.random() < 0.3:            # straddle a (reversed) page boundary
                target = DATA32 + 0x1000 * rnd.randrange(1, 8) - rnd.randrange(1, size + 1)
            else:
                target = rnd.randrange(DATA32, DATA32_END - size)
        form = rnd.randrange(5)
        if form == 0:
            idx = rnd.getrandbits(8)
            disp = rnd.randrange(-0x80, 0x80)
            ebx = (target - idx * 4 - disp) & 0xFFFFFFFF
            return "[ebx+esi*4%+d]" % disp, dict(ebx=ebx, esi=idx), target
        if form == 1:
            return "[%#x]" % target, {}, target
        if form == 2:
            disp = rnd.randrange(-0x1000, 0x1000)
            return "[ebp%+d]" % disp, dict(ebp=(target - disp) & 0xFFFFFFFF), target   # SS
        if form == 3:                          # fs = ring-0 data, base data_lin, limit 0xFFF
            off = rnd.randrange(0, 0x1000 - size)
            disp = rnd.randrange(-0x80, 0x80)
            return "fs:[edi%+d]" % disp, dict(fs=P.sel_data_small, edi=(off - disp) & 0xFFFFFFFF), \
                DATA32 + off
        # 16-bit addressing in 32-bit code (67 prefix), through fs
        off = rnd.randrange(0, 0x1000 - size)
        si = rnd.getrandbits(16)
        bx = (off - si) & 0xFFFF
        return "fs:[bx+si]", dict(fs=P.sel_data_small, ebx=rnd.getrandbits(16) << 16 | bx,
                                  esi=rnd.getrandbits(16) << 16 | si), DATA32 + off
    # REAL16: offsets kept <= 0xFFFF - size (Unicorn does not fault past the limit)
    off = rnd.randrange(0, 0x10000 - size) if target is None else (target - R16_DS)
    form = rnd.randrange(5)
    hi = rnd.getrandbits(16) << 16
    if form == 0:
        si = rnd.getrandbits(16)
        disp = rnd.randrange(-0x80, 0x80)
        bx = (off - si - disp) & 0xFFFF
        return "[bx+si%+d]" % disp, dict(ebx=hi | bx, esi=rnd.getrandbits(16) << 16 | si), R16_DS + off
    if form == 1:
        return "[%#x]" % off, {}, R16_DS + off
    if form == 2:                              # SS (base 0x30000)
        di = rnd.getrandbits(16)
        bp = (off - di) & 0xFFFF
        return "[bp+di]", dict(ebp=hi | bp, edi=rnd.getrandbits(16) << 16 | di), 0x30000 + off
    if form == 3:                              # ES override (base 0x40000)
        return "es:[di+%#x]" % (off & 0xFF), dict(edi=hi | ((off - (off & 0xFF)) & 0xFFFF)), \
            0x40000 + off
    # 32-bit addressing in 16-bit code (67 prefix); the offset stays <= 0xFFFF
    idx = rnd.randrange(0, off // 2 + 1)
    return "[edx+ecx*2]", dict(edx=off - 2 * idx, ecx=idx), R16_DS + off


def run_case(L, template, seed, size=4, extra=None, setup=None):
    """Instantiate ``template`` ({M} = memory operand) with random state; compare."""
    rnd = random.Random(seed)
    regs = base_regs(L, rnd)
    mem = fill(L, seed)
    lin = None
    code = template
    if "{M}" in template:
        text, mregs, lin = memop(L, rnd, size)
        code = template.replace("{M}", text)
        regs.update(mregs)
    if extra:
        regs.update(extra)
    if setup:
        setup(regs, mem, lin, rnd)
    check_same(L, code, regs=regs, mem=mem, count=None)


# --- the instruction lists -----------------------------------------------------------

MOV_FORMS = [
    ("mov al, cl", 1), ("mov ah, dh", 1), ("mov bh, byte ptr {M}", 1), ("mov byte ptr {M}, ch", 1),
    ("mov byte ptr {M}, 0x5a", 1), ("mov dl, 0x7f", 1), ("db 0x8a, 0xc1", 1),
    ("mov ax, cx", 2), ("mov dx, word ptr {M}", 2), ("mov word ptr {M}, bp", 2),
    ("mov word ptr {M}, 0x1234", 2), ("mov di, 0x8001", 2), ("db 0x8b, 0xc3", 2),
    ("mov eax, ecx", 4), ("mov edx, dword ptr {M}", 4), ("mov dword ptr {M}, ebp", 4),
    ("mov dword ptr {M}, -0x789a", 4), ("mov edi, 0x80000001", 4),
]
EXT_FORMS = [
    ("movzx eax, cl", 1), ("movzx ax, byte ptr {M}", 1), ("movzx ecx, word ptr {M}", 2),
    ("movzx edx, bh", 1), ("movsx edx, ah", 1), ("movsx bp, byte ptr {M}", 1),
    ("movsx edi, word ptr {M}", 2), ("movsx eax, cx", 2), ("movsx si, dl", 1),
    ("db 0x66, 0x0f, 0xb7, 0xc1", 2), ("db 0x66, 0x0f, 0xbf, 0xc1", 2),     # movzx/movsx r16, r/m16
]
XCHG_FORMS = [
    ("xchg eax, ecx", 4), ("xchg edi, eax", 4), ("xchg ax, dx", 2), ("xchg cl, dh", 1),
    ("xchg dword ptr {M}, ebp", 4), ("xchg word ptr {M}, si", 2), ("xchg byte ptr {M}, bl", 1),
    ("xchg ecx, edx", 4), ("nop", 1), ("pause", 1), ("db 0x66, 0x90", 1),
    ("lock xchg dword ptr {M}, eax", 4), ("db 0x87, 0xc9", 4),
]
MISC_FORMS = [
    ("cbw", 1), ("cwde", 1), ("cwd", 1), ("cdq", 1), ("lahf", 1), ("sahf", 1),
    ("clc", 1), ("stc", 1), ("cmc", 1), ("cld", 1), ("std", 1),
    ("bswap eax", 4), ("bswap ecx", 4), ("bswap edx", 4), ("bswap ebx", 4), ("bswap esp", 4),
    ("bswap ebp", 4), ("bswap esi", 4), ("bswap edi", 4),
    ("db 0x66, 0x0f, 0xc9", 4),              # BSWAP r16: undefined; Intel and Unicorn zero it
    ("lea eax, {M}", 4), ("lea cx, {M}", 2),
]
CC_FORMS = ([("set%s al" % c, 1) for c in CONDS] + [("set%s byte ptr {M}" % c, 1) for c in CONDS]
            + [("set%s bh" % c, 1) for c in CONDS[::3]]
            + [("cmov%s eax, ecx" % c, 4) for c in CONDS]
            + [("cmov%s ebp, dword ptr {M}" % c, 4) for c in CONDS]
            + [("cmov%s dx, word ptr {M}" % c, 2) for c in CONDS[::2]]
            + [("cmov%s di, ax" % c, 2) for c in CONDS[1::2]])
XADD_FORMS = [
    ("xadd dword ptr {M}, ecx", 4), ("xadd al, cl", 1), ("xadd word ptr {M}, dx", 2),
    ("xadd eax, eax", 4), ("xadd byte ptr {M}, bh", 1), ("lock xadd dword ptr {M}, eax", 4),
    ("xadd edx, ebp", 4), ("xadd si, di", 2),
]
CMPXCHG_FORMS = [
    ("cmpxchg dword ptr {M}, ecx", 4), ("cmpxchg dl, bh", 1), ("cmpxchg cx, dx", 2),
    ("cmpxchg word ptr {M}, di", 2), ("cmpxchg byte ptr {M}, ah", 1), ("cmpxchg ecx, ecx", 4),
    ("lock cmpxchg dword ptr {M}, edx", 4), ("cmpxchg eax, ebx", 4), ("cmpxchg ebp, esi", 4),
    ("cmpxchg8b qword ptr {M}", 8), ("lock cmpxchg8b qword ptr {M}", 8),
]
ALL_FORMS = MOV_FORMS + EXT_FORMS + XCHG_FORMS + MISC_FORMS + CC_FORMS + XADD_FORMS + CMPXCHG_FORMS


def _equalise(template, size):
    """setup(): make the accumulator equal to the destination (CMPXCHG succeeds)."""
    def setup(regs, mem, lin, rnd):
        if "{M}" not in template:
            dst = template.split()[1].rstrip(",")
            full = {"cl": "ecx", "dl": "edx", "cx": "ecx", "ecx": "ecx", "eax": "eax",
                    "ebp": "ebp"}.get(dst)
            if full:
                regs["eax"] = (regs["eax"] & ~0xFFFFFFFF) | regs[full]
            return
        want = regs["eax"] if size != 8 else regs["eax"] | regs["edx"] << 32
        mem.append((lin, (want & ((1 << (8 * size)) - 1)).to_bytes(size, "little")))
    return setup


# --- deterministic sweep: every form once per layout -----------------------------------

@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
def test_every_form_once(L):
    for i, (t, size) in enumerate(ALL_FORMS):
        run_case(L, t, 1000 + i, size)


# --- randomised -------------------------------------------------------------------------

@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
@settings(max_examples=120, **SETTINGS)
@given(form=st.sampled_from(MOV_FORMS + EXT_FORMS + XCHG_FORMS + MISC_FORMS),
       seed=st.integers(0, 1 << 30))
def test_moves_random(L, form, seed):
    run_case(L, form[0], seed, form[1])


@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
@settings(max_examples=120, **SETTINGS)
@given(form=st.sampled_from(CC_FORMS), seed=st.integers(0, 1 << 30))
def test_setcc_cmovcc_random(L, form, seed):
    run_case(L, form[0], seed, form[1])


@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
@settings(max_examples=100, **SETTINGS)
@given(form=st.sampled_from(XADD_FORMS + CMPXCHG_FORMS), seed=st.integers(0, 1 << 30),
       equal=st.booleans())
def test_xadd_cmpxchg_random(L, form, seed, equal):
    t, size = form
    run_case(L, t, seed, size, setup=_equalise(t, size) if equal and "cmpxchg" in t else None)


def test_cmpxchg_register_forms_equal():
    for L in LAYOUTS:
        for i, t in enumerate(("cmpxchg ecx, edx", "cmpxchg ebp, esi", "cmpxchg dl, bh",
                               "cmpxchg cx, dx")):
            run_case(L, t, 77 + i, setup=_equalise(t, 4))


# --- moffs: segment override and address size ---------------------------------------------

MOFFS32 = [
    bytes([0xA0]) + (DATA32 + 0x10).to_bytes(4, "little"),                  # mov al, [moffs]
    bytes([0xA1]) + (DATA32 + 0x1FFE).to_bytes(4, "little"),                # page-crossing dword
    bytes([0xA2]) + (DATA32 + 0x3FFF).to_bytes(4, "little"),
    bytes([0xA3]) + (DATA32 + 0x4FFD).to_bytes(4, "little"),
    bytes([0x66, 0xA1]) + (DATA32 + 0x5FFF).to_bytes(4, "little"),
    bytes([0x66, 0xA3]) + (DATA32 + 0x20).to_bytes(4, "little"),
    bytes([0x64, 0xA1]) + (0x0FFC).to_bytes(4, "little"),                   # fs: (base data_lin)
    bytes([0x64, 0x67, 0xA1]) + (0x0123).to_bytes(2, "little"),             # fs: + 16-bit moffs
    bytes([0x64, 0x67, 0xA2]) + (0x0FFF).to_bytes(2, "little"),
    bytes([0x3E, 0xA1]) + (DATA32 + 0x7FFC).to_bytes(4, "little"),
    bytes([0x36, 0xA3]) + (P.stack_lin[0] + 0x100).to_bytes(4, "little"),  # ss:
]
MOFFS16 = [
    bytes([0xA0, 0x10, 0x00]), bytes([0xA1, 0xFE, 0xFF - 1]), bytes([0xA2, 0x34, 0x12]),
    bytes([0xA3, 0x00, 0x80]), bytes([0x66, 0xA1, 0x40, 0x00]), bytes([0x66, 0xA3, 0xF0, 0xFF]),
    bytes([0x26, 0xA1, 0x00, 0x10]), bytes([0x64, 0xA3, 0x22, 0x00]),     # es: fs:
    bytes([0x65, 0xA0, 0xFF, 0xFF]),                                       # gs:
    bytes([0x67, 0xA1, 0x34, 0x12, 0x00, 0x00]),                           # 32-bit moffs
    bytes([0x2E, 0x67, 0xA3, 0x00, 0x0F, 0x00, 0x00]),                     # cs: (writable in real mode)
]


@pytest.mark.parametrize("L,code", [(P, c) for c in MOFFS32] + [(REAL16, c) for c in MOFFS16])
def test_moffs(L, code):
    rnd = random.Random(code)
    regs = base_regs(L, rnd)
    if L.paging:
        regs["fs"] = P.sel_data_small
    check_same(L, code, regs=regs, mem=fill(L, 5), count=None)


# --- segment registers ---------------------------------------------------------------------

SEL32 = [0x10, 0x23, 0x30, 0x00, 0x03, 0x08, 0x1B, 0x28, 0x38, 0x40, 0x13, 0x18, 0x2B, 0xFFF8]


@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
def test_mov_from_sreg(L):
    rnd = random.Random(3)
    forms = ["mov eax, %s", "mov dx, %s", "mov word ptr {M}, %s"]
    for i, sreg in enumerate(("es", "cs", "ss", "ds", "fs", "gs")):
        for t in forms:
            tt = t % sreg
            regs = base_regs(L, rnd)
            mem = fill(L, i)
            if "{M}" in tt:
                text, mregs, lin = memop(L, rnd, 2)
                tt = tt.replace("{M}", text)
                regs.update(mregs)
            check_same(L, tt, regs=regs, mem=mem, count=None)
    # 66-prefixed in 32-bit code / plain in 16-bit code: a 16-bit register keeps its upper half
    check_same(L, "db 0x66, 0x8c, 0xd8" if L.paging else "db 0x8c, 0xd8",
               regs=dict(eax=0xDEADBEEF), count=None)
    # reg field 6 and 7 are #UD
    check_same(L, "db 0x8c, 0xf0", count=None)
    check_same(L, "db 0x8c, 0x38", count=None)


@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
def test_mov_to_sreg(L):
    sels = SEL32 if L.paging else [0x0000, 0x1234, 0xFFFF, 0x2000, 0x8000]
    for sreg in ("es", "ds", "fs", "gs", "ss"):
        for sel in sels:
            if L.paging and sreg == "ss" and sel not in (0x10, 0x00, 0x23, 0x08, 0x40):
                continue
            check_same(L, "mov %s, ax" % sreg, regs=dict(eax=0xABCD0000 | sel), count=None)
            off = 0x100 if L.paging else 0x100
            lin = (DATA32 if L.paging else R16_DS) + off
            m = "[%#x]" % lin if L.paging else "[%#x]" % off
            check_same(L, "mov %s, word ptr %s" % (sreg, m), regs={},
                       mem=[(lin, sel.to_bytes(2, "little"))], count=None)
    # MOV CS is #UD, so are sreg numbers 6 and 7
    check_same(L, "db 0x8e, 0xc8", count=None)
    check_same(L, "db 0x8e, 0xf0", count=None)
    check_same(L, "db 0x8e, 0x38", count=None)


def test_mov_ss_inhibits_interrupts():
    """MOV SS / POP SS hold off interrupts until the next instruction is done."""
    for L, code in ((REAL16, "mov ss, ax; nop; nop"), (P, "mov ss, ax; nop; nop"),
                    (REAL16, "pop ss; nop; nop")):
        side = emu_side(L)
        from tests.oracle import assemble
        b = assemble(code, L.mode, addr=L.code_lin)
        sel = 0x3000 if not L.paging else 0x10
        side.reset(regs=dict(eax=sel, eflags=0x202), code=b,
                   mem=[((0x3000 << 4) + 0xFF00, sel.to_bytes(2, "little"))] if not L.paging else None)
        cpu = side.cpu
        cpu.stop_on_fault = True
        cpu.run(1)                       # MOV SS executes
        assert cpu.R[S.INHIBIT_IRQ] == 1
        start = cpu.R[S.EIP]
        cpu.raise_interrupt(0x21)
        cpu.run(1)                       # the next instruction runs, the interrupt waits
        assert cpu.R[S.EIP] == start + 1, hex(cpu.R[S.EIP])
        cpu.run(1)                       # now it is taken (IP at the handler stub)
        assert L.vector_of(cpu.segs[S.CS].base + cpu.R[S.EIP]) == 0x21
        cpu.pending_vectors.clear()


# --- far pointers ---------------------------------------------------------------------------

@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
def test_load_far_pointer(L):
    rnd = random.Random(11)
    sels = [0x10, 0x23, 0x30, 0x00, 0x28, 0x40] if L.paging else [0x1234, 0x0000, 0xFFFF]
    forms = ["les {r}, {M}", "lds {r}, {M}", "lfs {r}, {M}", "lgs {r}, {M}", "lss {r}, {M}"]
    for t in forms:
        for r in ("ebx", "si", "eax", "di"):
            for sel in sels:
                if t.startswith("lss") and L.paging and sel not in (0x10, 0x00, 0x23):
                    continue
                size = 4 if r.startswith("e") else 2
                regs = base_regs(L, rnd)
                text, mregs, lin = memop(L, rnd, size + 2)
                regs.update(mregs)
                ptr = rnd.getrandbits(8 * size).to_bytes(size, "little") + sel.to_bytes(2, "little")
                mem = fill(L, sel) + [(lin, ptr)]
                kw = "fword ptr " if size == 4 else "dword ptr "
                check_same(L, t.format(r=r, M=kw + text), regs=regs, mem=mem, count=None)


# --- XLAT -------------------------------------------------------------------------------------

def _xlat_cases():
    rnd = random.Random(21)
    d = lambda: rnd.randrange(DATA32, DATA32_END - 0x100)       # noqa: E731
    hi = lambda: rnd.getrandbits(16) << 16                      # noqa: E731
    out = []
    for _ in range(6):
        out += [(P, "xlatb", dict(ebx=d())), (P, "db 0x26, 0xd7", dict(ebx=d())),
                (P, "db 0x64, 0xd7", dict(fs=P.sel_data_small, ebx=rnd.randrange(0, 0xF00))),
                (P, "db 0x64, 0x67, 0xd7", dict(fs=P.sel_data_small, ebx=hi() | rnd.randrange(0, 0xF00))),
                (P, "db 0x36, 0xd7", dict(ebx=rnd.randrange(P.stack_lin[0], P.stack_lin[1] - 0x100))),
                (REAL16, "xlatb", dict(ebx=rnd.getrandbits(32))),
                (REAL16, "db 0x26, 0xd7", dict(ebx=rnd.getrandbits(32))),
                (REAL16, "db 0x67, 0xd7", dict(ebx=rnd.randrange(0, 0xFF00))),
                (REAL16, "db 0x36, 0x67, 0xd7", dict(ebx=rnd.randrange(0, 0xFF00)))]
    return out


@pytest.mark.parametrize("L,form,regs", _xlat_cases())
def test_xlat(L, form, regs):
    rnd = random.Random(form)
    r = base_regs(L, rnd)
    r.update(regs)
    check_same(L, form, regs=r, mem=fill(L, r["ebx"]), count=None)


# --- faults ---------------------------------------------------------------------------------------

FAULTS32 = [
    # CMOVcc reads its memory source even when the condition is false (P6)
    ("cmovz eax, dword ptr [%#x]" % P.unmapped_lin, dict(eflags=2)),
    ("cmovnz eax, dword ptr [%#x]" % (P.unmapped_lin - 2), dict(eflags=0x42)),
    # CMPXCHG writes its destination even when the compare fails
    ("cmpxchg dword ptr [%#x], ecx" % P.ro_lin, dict(eax=1)),
    ("cmpxchg byte ptr [%#x], cl" % (P.ro_lin + 5), dict(eax=0)),
    ("cmpxchg8b qword ptr [%#x]" % (P.ro_lin - 4), dict(eax=1, edx=2)),
    ("xchg dword ptr [%#x], ecx" % (P.ro_lin - 2), dict(ecx=5)),
    ("xadd dword ptr [%#x], ecx" % (P.ro_lin + 8), dict(ecx=5)),
    ("mov dword ptr [%#x], ecx" % (P.ro_lin - 1), dict(ecx=5)),     # page-crossing into RO
    ("mov eax, dword ptr [%#x]" % (P.unmapped_lin - 3), {}),
    ("setz byte ptr [%#x]" % P.ro_lin, {}),
    ("mov word ptr [%#x], ds" % (P.ro_lin - 1), {}),
    ("lss esp, fword ptr [%#x]" % (DATA32 + 0x10), dict(mem=b"\x11\x22\x33\x44\x00\x00")),
    ("lds esi, fword ptr [%#x]" % (DATA32 + 0x10), dict(mem=b"\x11\x22\x33\x44\x28\x00")),
    ("lfs si, dword ptr [%#x]" % (DATA32 + 0x10), dict(mem=b"\x11\x22\x43\x00")),
    ("les eax, fword ptr [%#x]" % (P.unmapped_lin - 4), {}),          # selector unreadable
    ("db 0x0f, 0xc7, 0xc8", {}),                                      # CMPXCHG8B reg: #UD
    ("db 0x8d, 0xc0", {}),                                            # LEA reg: #UD
    ("mov ss, ax", dict(eax=0x23)),                                   # SS RPL/DPL != CPL
    ("mov ds, ax", dict(eax=0x28)),                                   # TSS: #GP(sel)
    ("mov es, ax", dict(eax=0x47)),                                   # beyond GDT
]


@pytest.mark.parametrize("code,regs", FAULTS32)
def test_faults_prot32(code, regs):
    regs = dict(regs)
    mem = fill(P, 9)
    if "mem" in regs:
        mem.append((DATA32 + 0x10, regs.pop("mem")))
    check_same(P, code, regs=regs, mem=mem, count=None)


RING3_FAULTS = [
    # (code, regs, vector, error code): compared with Unicorn, and the
    # expected vector/error code (SDM) checked on top
    ("mov eax, dword ptr [%#x]" % P.super_lin, {}, 14, 5),
    ("cmovb eax, dword ptr [%#x]" % (P.super_lin + 8), dict(eflags=2), 14, 5),
    ("cmpxchg dword ptr [%#x], ecx" % (P.ro_lin + 8), dict(eax=1), 14, 7),
    ("mov ds, ax", dict(eax=0x10), 13, 0x10),                # DPL 0 < CPL 3
    ("mov ss, ax", dict(eax=0x10), 13, 0x10),
    ("mov ss, ax", dict(eax=0x20), 13, 0x20),                # RPL 0 != CPL 3
    ("mov ds, ax", dict(eax=0x23), None, None),
]


@pytest.mark.parametrize("code,regs,vector,error", RING3_FAULTS)
def test_faults_ring3(code, regs, vector, error):
    rr = dict(cpl=3)
    rr.update(regs)
    ro, r = check_same(P, code, regs=rr, count=1)   # oracle: count=None from ring 3 gives a spurious #DF
    if vector is None:
        assert r.exception is None
        return
    assert r.exception is not None and (r.exception.vector, r.exception.error_code) == (vector, error)
    assert r.eip == P.code_lin and r.cpl == 3


def _emu_only(L, code, regs=None, mem=None):
    from tests.oracle import assemble
    side = emu_side(L)
    return side.run(assemble(code, L.mode, addr=L.code_lin), regs=regs or {}, mem=mem, count=None)


def test_segment_limits_sdm():
    """Unicorn does not check data-segment limits (oracle.py A1/A2); the SDM does."""
    r = _emu_only(REAL16, "mov ax, word ptr [0xffff]")
    assert r.exception is not None and r.exception.vector == 13 and r.eip == 0x100
    r = _emu_only(REAL16, "mov word ptr ss:[0xffff], ax")
    assert r.exception is not None and r.exception.vector == 12
    r = _emu_only(REAL16, "db 0x67, 0x8b, 0x03", regs=dict(ebx=0x10000))      # mov ax, [ebx]
    assert r.exception is not None and r.exception.vector == 13
    r = _emu_only(P, "mov eax, dword ptr fs:[0xffd]", regs=dict(fs=P.sel_data_small))
    assert r.exception is not None and r.exception.vector == 13 and r.exception.error_code == 0
    r = _emu_only(P, "mov eax, dword ptr fs:[0xffc]", regs=dict(fs=P.sel_data_small))
    assert r.exception is None
    r = _emu_only(P, "cmovz eax, dword ptr fs:[0x1000]", regs=dict(fs=P.sel_data_small, eflags=2))
    assert r.exception is not None and r.exception.vector == 13
    r = _emu_only(P, "mov eax, dword ptr ds:[0]", regs=dict(ds=0))            # null DS
    assert r.exception is not None and r.exception.vector == 13


@pytest.mark.parametrize("L,code", [
    (P, "db 0xc5, 0xc0"),          # LDS with a register operand: #UD (Unicorn: VEX, then #PF)
    (P, "db 0xc4, 0xc0"),          # LES likewise
    (REAL16, "db 0xc5, 0xc0"),
    (P, "db 0x0f, 0xb2, 0xc0"),    # LSS reg
    (P, "db 0xf0, 0x89, 0x03"),    # LOCK MOV: #UD (Unicorn executes it)
    (P, "db 0xf0, 0x87, 0xc1"),    # LOCK XCHG reg, reg: #UD (Unicorn executes it)
    (REAL16, "db 0xf0, 0x0f, 0xb1, 0xc1"),   # LOCK CMPXCHG reg, reg
    (P, "db 0xf0, 0x8b, 0x03"),    # LOCK MOV load
])
def test_ud_sdm(L, code):
    r = _emu_only(L, code, regs=dict(ebx=L.data_lin[0] if L.paging else 0))
    assert r.exception is not None and r.exception.vector == 6 and r.eip == (
        L.code_lin if L.paging else 0x100)


def test_bswap16_zeroes_low_word():
    """BSWAP with a 16-bit operand is undefined (SDM); emu follows Intel parts:
    the low word becomes 0, the upper word stays."""
    r = _emu_only(P, "db 0x66, 0x0f, 0xca", regs=dict(edx=0x11223344))
    assert r.edx == 0x11220000


def test_far_pointer_and_bound_pair_do_not_wrap():
    """LxS's far pointer and BOUND's pair are one memory operand: at offset
    0xFFFC with a 16-bit address the selector/upper bound lies past the real-mode
    limit: #GP, nothing loaded (SDM; Unicorn checks no limits)."""
    r = _emu_only(REAL16, "les bx, dword ptr [0xfffe]", regs=dict(ebx=0x1111))
    assert r.exception.vector == 13 and r.ebx == 0x1111 and r.sregs["es"] == 0x4000
    r = _emu_only(REAL16, "db 0x66, 0xc4, 0x1e, 0xfc, 0xff", regs=dict(ebx=0x1111))   # les ebx, [0xfffc]
    assert r.exception.vector == 13 and r.ebx == 0x1111
    r = _emu_only(REAL16, "bound ax, dword ptr [0xfffe]", regs=dict(eax=5))
    assert r.exception.vector == 13


# every register-number variant of the Z-form rows, and the 0F 19..1F hint NOPs
Z_FORMS = ([bytes([0xB0 + r, 0x80 + 17 * r]) for r in range(8)]                       # mov r8, imm8
           + [bytes([0xB8 + r]) + (0x81234567 + r).to_bytes(4, "little") for r in range(8)]
           + [bytes([0x90 + r]) for r in range(1, 8)]                                   # xchg r, eAX
           + [bytes([0x66, 0x90 + r]) for r in range(1, 8)]
           + [bytes([0x0F, 0x1F, 0xC0])])
HINT_NOPS = {32: [bytes([0x0F, b, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00]) for b in range(0x19, 0x20)]
             + [bytes([0x66, 0x0F, 0x1F, 0x44, 0x00, 0x00])],                 # [eax+eax*1+disp32]
             16: [bytes([0x0F, b, 0x84, 0x00, 0x00]) for b in range(0x19, 0x20)]
             + [bytes([0x66, 0x0F, 0x1F, 0x44, 0x00])]}                       # [si+disp16], [si+disp8]


@pytest.mark.parametrize("L", LAYOUTS, ids=IDS)
def test_z_forms_and_hint_nops(L):
    for i, code in enumerate(Z_FORMS + HINT_NOPS[L.mode]):
        if L.mode == 16 and code[0] in range(0xB8, 0xC0):
            code = code[:3]                                  # mov r16, imm16
        rnd = random.Random(i)
        # hint NOPs with an unmapped/out-of-limit address: no memory access, no fault
        check_same(L, code, regs=base_regs(L, rnd), count=None)
