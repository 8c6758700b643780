"""Differential tests (emu vs Unicorn) for the string instructions MOVS CMPS
STOS LODS SCAS INS OUTS: byte/word/dword, no prefix / REP / REPE / REPNE
(and F2 on the non-compare ones, which acts as REP), small counts including
0, DF = 0 and 1, source segment overrides (ES:(E)DI is never overridden),
16- and 32-bit address sizes (SI/DI/CX wrap at 64 KiB, upper halves kept),
page-crossing elements and runs over PROT32_PAGED's physically reversed data
pages, overlapping MOVS (the bulk fast path must equal the element-by-element
copy), and faults in the middle of a REP (#PF with the right error code and
CR2, ECX/ESI/EDI at the faulting iteration, earlier iterations' stores done).

SDM-only checks (emu alone): data-segment limit faults (Unicorn checks no
limits, oracle.py A1/A2) and the I/O permission check of INS/OUTS at CPL >
IOPL (Unicorn performs none).
"""
import random
import time

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from tests.layout import REAL16, PROT32_PAGED
from tests.difftest import check_same, run_both, differences, emu_side
from tests import oracle as _oracle
from emu.cpu import state as S

if not hasattr(_oracle.Exc, "trap"):         # difftest.py still says .trap, oracle.py .soft
    _oracle.Exc.trap = property(lambda self: self.soft)

P = PROT32_PAGED
DATA32 = P.data_lin[0]
DATA32_END = DATA32 + P.data_lin[1]
ARITH = 0x8D5
DF = 0x400
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

OPS = {"movs": 0xA4, "cmps": 0xA6, "stos": 0xAA, "lods": 0xAC, "scas": 0xAE,
       "ins": 0x6C, "outs": 0x6E}
SRC_OPS = ("movs", "cmps", "lods", "outs")           # read DS:(E)SI (overridable)
DST_OPS = ("movs", "cmps", "stos", "scas", "ins")    # use ES:(E)DI
SEG_PREFIX = {"es": 0x26, "cs": 0x2E, "ss": 0x36, "ds": 0x3E, "fs": 0x64, "gs": 0x65}


class Env:
    """A machine flavour: layout, address size, segment bases for the test."""

    def __init__(self, name, L, a16, regs, bases):
        self.name, self.L, self.a16, self.regs, self.bases = name, L, a16, regs, bases

    def __repr__(self):
        return self.name

    def prefix(self):
        return b"\x67" if self.a16 != (self.L.mode == 16) else b""


ENVS = [
    Env("REAL16", REAL16, True, {},
        dict(es=0x40000, cs=0x10000, ss=0x30000, ds=0x20000, fs=0x50000, gs=0x60000)),
    Env("REAL16_A32", REAL16, False, {},
        dict(es=0x40000, cs=0x10000, ss=0x30000, ds=0x20000, fs=0x50000, gs=0x60000)),
    Env("PROT32", P, False, {}, dict(es=0, cs=0, ss=0, ds=0, fs=0, gs=0)),
    # 16-bit addressing in 32-bit code: DS/ES/FS = data_lin-based segment (limit 0xFFF)
    Env("PROT32_A16", P, True, dict(ds=P.sel_data_small, es=P.sel_data_small, fs=P.sel_data_small),
        dict(es=DATA32, ds=DATA32, fs=DATA32, ss=0, cs=0, gs=0)),
]


def encode(env, op, size, rep=None, seg=None):
    """Bytes of one string instruction."""
    b = bytearray()
    if rep:
        b.append(0xF3 if rep == "rep" else 0xF2)
    if seg:
        b.append(SEG_PREFIX[seg])
    b += env.prefix()
    if size == 2 and env.L.mode == 32 or size == 4 and env.L.mode == 16:
        b.append(0x66)
    b.append(OPS[op] + (0 if size == 1 else 1))
    return bytes(b)


def _offsets(env, rnd, size, count, df):
    """An (E)SI or (E)DI offset such that count elements stay inside the test's
    window (Unicorn checks no segment limit, so the windows respect them)."""
    span = size * (count + 1)
    if env.L is REAL16 and env.a16:
        if rnd.random() < 0.3:            # around the 64 KiB wrap, aligned: no straddling
            o = (rnd.randrange(-span, span) * size) & 0xFFFF
        else:
            o = rnd.randrange(span + 8, 0x10000 - span - 8)
        return o
    if env.L is REAL16:                   # 32-bit addressing: stay below 64 KiB
        return rnd.randrange(span + 8, 0x10000 - span - 8)
    if env.a16:                           # limit 0xFFF
        return rnd.randrange(span + 4, 0x1000 - span - 4)
    if rnd.random() < 0.5:                # near a reversed page boundary
        b = DATA32 + 0x1000 * rnd.randrange(1, 8)
        return b + rnd.randrange(-span, span)
    return rnd.randrange(DATA32 + span + 8, DATA32_END - span - 8)


def _lin(env, seg, off):
    return env.bases[seg] + (off & (0xFFFF if env.a16 else 0xFFFFFFFF))


def _region(env, seg, off, size, count):
    """(lin, n) of the bytes count elements from off may touch in either direction."""
    span = size * (count + 1)
    if env.L is REAL16 and seg == "cs":
        return []                          # the code segment: leave the code alone
    if env.L is REAL16 and env.a16:
        return [(env.bases[seg], 0x10000)]
    lo = max(off - span, 0)
    return [(_lin(env, seg, lo), 2 * span + 4)]


def case(env, op, size, rep, df, count, seed, seg=None, flips=None):
    """Registers and memory for one string-instruction run."""
    rnd = random.Random(seed)
    regs = {r: rnd.getrandbits(32) for r in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi")}
    regs.update(env.regs)
    regs["eflags"] = 2 | (rnd.getrandbits(12) & ARITH) | (DF if df else 0)
    hi = lambda: rnd.getrandbits(16) << 16 if env.a16 else 0       # noqa: E731
    si = _offsets(env, rnd, size, count, df)
    di = _offsets(env, rnd, size, count, df)
    regs["esi"] = hi() | si
    regs["edi"] = hi() | di
    regs["ecx"] = hi() | count
    regs["edx"] = rnd.getrandbits(16) << 16 | 0x80          # port for INS/OUTS
    sseg = seg or "ds"
    mem = []
    for lin, n in _region(env, sseg, si, size, count) + _region(env, "es", di, size, count):
        mem.append((lin, rnd.randbytes(n)))
    if op == "cmps" and flips is not None:
        # destination = copy of the source with a few differences
        slin = _lin(env, sseg, si)
        dlin = _lin(env, "es", di)
        span = size * (count + 1)
        if not (env.L is REAL16 and env.a16):
            src = rnd.randbytes(2 * span + 8)
            dst = bytearray(src)
            for _ in range(flips):
                dst[rnd.randrange(len(dst))] ^= 1 << rnd.randrange(8)
            mem += [(slin - span - 4, src), (dlin - span - 4, bytes(dst))]
    if op == "scas" and flips is not None:
        dlin = _lin(env, "es", di)
        span = size * (count + 1)
        if not (env.L is REAL16 and env.a16):
            unit = (regs["eax"] & ((1 << 8 * size) - 1)).to_bytes(size, "little")
            blk = bytearray(unit * (2 * (count + 1) + 4))
            if rnd.random() < 0.5:
                blk = bytearray(rnd.randbytes(len(blk)))
                for _ in range(flips):
                    p = rnd.randrange(0, len(blk) - size) // size * size
                    blk[p:p + size] = unit
            else:
                for _ in range(flips):
                    blk[rnd.randrange(len(blk))] ^= 1 << rnd.randrange(8)
            mem.append((dlin - span - 2 * size - ((dlin - span) % size) % size, bytes(blk)))
    return regs, mem


def run_case(env, op, size, rep, df, count, seed, seg=None, flips=None):
    regs, mem = case(env, op, size, rep, df, count, seed, seg, flips)
    code = encode(env, op, size, rep, seg)
    return check_same(env.L, code, regs=regs, mem=mem, count=None)


# --- zero-port I/O: Unicorn's IN reads 0 without a hook; emu gets the same ---------------

class ZeroPorts:
    def __init__(self):
        self.log = []

    def read(self, port, size):
        self.log.append(("r", port, size))
        return 0

    def write(self, port, size, value):
        self.log.append(("w", port, size, value))


@pytest.fixture
def zero_ports():
    saved = {}
    ports = ZeroPorts()
    for env in ENVS:
        side = emu_side(env.L)
        saved.setdefault(id(side), (side, side.cpu.ports))
        side.cpu.ports = ports
    yield ports
    for side, p in saved.values():
        side.cpu.ports = p


# --- deterministic sweep -------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_every_form(env, zero_ports):
    n = 0
    for op in OPS:
        for size in (1, 2, 4):
            for rep in (None, "rep", "repne"):
                for df in (0, 1):
                    count = (n * 7) % 9
                    run_case(env, op, size, rep, df, count, n, flips=n % 3)
                    n += 1


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_count_zero_and_one(env, zero_ports):
    for op in OPS:
        for size in (1, 4):
            for count in (0, 1):
                run_case(env, op, size, "rep", count, count, count * 13 + size)


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_source_segment_override(env, zero_ports):
    segs = ("es", "cs", "ss", "fs", "gs") if env.L is REAL16 else ("es", "ss", "fs", "gs", "cs")
    for i, op in enumerate(SRC_OPS):
        for seg in segs:
            if env.name == "PROT32_A16" and seg not in ("es", "fs"):
                continue
            # a segment override prefix on STOS/SCAS/INS changes nothing (ES:DI)
            for size in (1, 2):
                run_case(env, op, size, "rep", i & 1, 5, hash((op, seg)) & 0xFFFF, seg=seg, flips=1)
    for op in ("stos", "scas", "ins"):
        run_case(env, op, 4, "rep", 0, 3, 99, seg="fs" if env.name != "PROT32_A16" else "fs")


# --- randomised ----------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS, ids=repr)
@settings(max_examples=70, **SETTINGS)
@given(op=st.sampled_from(["movs", "cmps", "stos", "lods", "scas"]), size=st.sampled_from([1, 2, 4]),
       rep=st.sampled_from([None, "rep", "repne"]), df=st.booleans(), count=st.integers(0, 40),
       seed=st.integers(0, 1 << 30), flips=st.integers(0, 3))
def test_random(env, op, size, rep, df, count, seed, flips):
    run_case(env, op, size, rep, df, count, seed, flips=flips)


# --- the bulk fast paths: long runs, overlap, reversed pages --------------------------------

def _set(regs, **kw):
    r = dict(regs)
    r.update(kw)
    return r


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("df", [0, 1])
def test_long_runs_cross_pages(size, df):
    env = ENVS[2]
    rnd = random.Random(size * 10 + df)
    for count in (0x300, 0x1801 // size):
        si = DATA32 + 0x4000 + rnd.randrange(-7, 8) if df else DATA32 + rnd.randrange(0, 8)
        di = DATA32 + 0x7FF0 - rnd.randrange(0, 8) if df else DATA32 + 0x3000 + rnd.randrange(0, 0x10)
        if df:
            si = DATA32 + 0x3F00 + rnd.randrange(-7, 8)
            di = DATA32 + 0x7FF0 - rnd.randrange(0, 8) - size
        for op in ("movs", "stos", "lods"):
            regs, mem = case(env, op, size, "rep", df, 8, count + size)
            mem = [(DATA32, rnd.randbytes(0x8000))]
            regs = _set(regs, esi=si, edi=di, ecx=count)
            check_same(P, encode(env, op, size, "rep"), regs=regs, mem=mem, count=None)


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("df", [0, 1])
def test_overlapping_movs(size, df):
    """REP MOVS with source and destination a few bytes apart: the result is the
    element-by-element copy (a repeating pattern when the destination leads)."""
    env = ENVS[2]
    rnd = random.Random(size + 10 * df)
    mem = [(DATA32, rnd.randbytes(0x8000))]
    for d in (-9, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 8, 9, 0x7F):
        si = DATA32 + 0x2F80 + rnd.randrange(0, 4) if not df else DATA32 + 0x3080 + rnd.randrange(0, 4)
        regs = dict(esi=si, edi=si + d, ecx=0x150 // size + 3, eflags=2 | (DF if df else 0))
        check_same(P, encode(env, "movs", size, "rep"), regs=regs, mem=mem, count=None)
    # same physical page through two linear pages? (the layout has no aliases): skip


def test_long_scas_cmps():
    env = ENVS[2]
    rnd = random.Random(5)
    blk = rnd.randbytes(0x2000)
    for size in (1, 2, 4):
        for rep in ("rep", "repne"):
            for df in (0, 1):
                for where in (0x0, 0x1234, 0x1FFF, None):
                    base = DATA32 + 0x0FF0
                    mem = [(DATA32, bytes(0x8000)), (base, blk), (base + 0x3000, blk)]
                    if where is not None:                       # plant one difference / match
                        mem.append((base + 0x3000 + where, b"\x5a"))
                        mem.append((base + where, b"\x5a"))
                    st_ = base + (0x1FF0 if df else 0)
                    regs = dict(esi=st_, edi=st_ + 0x3000, ecx=0x2000 // size - 2,
                                eflags=2 | (DF if df else 0) | 0x41, eax=0x5A5A5A5A)
                    check_same(P, encode(env, "cmps", size, rep), regs=regs, mem=mem, count=None)
                    # SCAS over zeroes then the block: REPE stops at the first non-AL,
                    # REPNE at the first AL
                    regs2 = _set(regs, edi=st_, eax=0 if rep == "rep" else 0x5A5A5A5A)
                    check_same(P, encode(env, "scas", size, rep), regs=regs2, mem=mem, count=None)


def test_rep_movs_large_is_fast():
    """The bulk path: 256 KiB in the PSE page, both directions."""
    side = emu_side(P)
    for df in (0, 1):
        code = encode(ENVS[2], "movs", 4, "rep")
        regs = dict(esi=P.pse_lin + (0x3FFFC if df else 0), edi=P.pse_lin + 0x100000 + (0x3FFFC if df else 0),
                    ecx=0x10000, eflags=2 | (DF if df else 0))
        t = time.perf_counter()
        r = side.run(code, regs=regs, count=None)
        dt = time.perf_counter() - t
        assert r.exception is None and r.ecx == 0
        assert dt < 2.0, dt


# --- 16-bit address wrap --------------------------------------------------------------------

def test_address_wrap_16():
    env = ENVS[0]
    for op in ("movs", "stos", "lods", "cmps", "scas"):
        for size in (1, 2, 4):
            for df in (0, 1):
                regs, mem = case(env, op, size, "rep", df, 6, size)
                start = 0x10000 - 2 * size if not df else 2 * size - size
                regs = _set(regs, esi=0xABCD0000 | start, edi=0x12340000 | start, ecx=0x55550006)
                check_same(REAL16, encode(env, op, size, "rep"), regs=regs, mem=mem, count=None)
    # CX wraps: count 0x10000 is CX = 0 -> nothing happens, ECX's upper half is not a count
    check_same(REAL16, encode(env, "stos", 1, "rep"), regs=dict(ecx=0x00010000, edi=0x100),
               count=None)
    # with a 32-bit address size the whole ECX counts
    check_same(REAL16, encode(ENVS[1], "stos", 1, "rep"), regs=dict(ecx=0x00000005, edi=0x100),
               count=None)


# --- faults in the middle of a REP --------------------------------------------------------------

FAULTS = [
    # (op, size, df, esi, edi, count): PROT32 flat
    ("movs", 4, 0, DATA32 + 0x100, P.ro_lin - 10, 8),           # dest straddles into RO
    ("movs", 1, 0, DATA32 + 0x100, P.ro_lin - 0x20, 0x40),       # bulk part, then RO
    ("movs", 2, 1, DATA32 + 0x500, DATA32 + 8, 0x40),            # downwards into unmapped 0x40Fxxx
    ("movs", 4, 0, P.unmapped_lin - 0x10, DATA32 + 0x100, 0x40),  # source runs into unmapped
    ("movs", 4, 0, DATA32 + 0x100, P.super_lin + 0xFF8, 8),      # supervisor page, then unmapped
    ("stos", 1, 0, 0, P.ro_lin - 0x123, 0x400),
    ("stos", 4, 1, 0, DATA32 + 0x30, 0x400),
    ("stos", 2, 0, 0, P.ro_lin - 1, 3),                          # first element straddles
    ("lods", 4, 0, P.unmapped_lin - 0x22, 0, 0x20),
    ("cmps", 1, 0, P.unmapped_lin - 0x80, P.unmapped_lin - 0x80, 0x100),   # equal until unmapped
    ("scas", 4, 0, 0, P.unmapped_lin - 0x40, 0x40),
]


@pytest.mark.parametrize("op,size,df,esi,edi,count", FAULTS)
def test_rep_faults(op, size, df, esi, edi, count):
    env = ENVS[2]
    regs = dict(esi=esi, edi=edi, ecx=count, eflags=2 | (DF if df else 0), eax=0)
    mem = [(DATA32, bytes(0x8000))] if op in ("cmps", "scas") else \
        [(DATA32, random.Random(count).randbytes(0x8000))]
    rep = "rep"
    code, ro, re_ = run_both(P, encode(env, op, size, rep), regs=regs, mem=mem, count=None)
    d = differences(P, ro, re_)
    assert not d, d
    assert ro.exception is not None and ro.exception.vector == 14


def test_rep_fault_ring3():
    """At CPL 3: a write into the read-only page (error code U|W|P = 7) after two
    iterations, and the supervisor page (U|W|P, no iteration).  Emu alone: the
    oracle reports ring-3 faults as #DF (see the report)."""
    side = emu_side(P)
    code = encode(ENVS[2], "movs", 4, "rep")
    r = side.run(code, regs=dict(cpl=3, esi=DATA32, edi=P.ro_lin - 8, ecx=8), count=None)
    assert (r.exception.vector, r.exception.error_code, r.cr2) == (14, 7, P.ro_lin)
    assert (r.ecx, r.esi, r.edi) == (6, DATA32 + 8, P.ro_lin)
    assert r.eip == P.code_lin
    r = side.run(code, regs=dict(cpl=3, esi=DATA32, edi=P.super_lin + 0x10, ecx=8), count=None)
    assert (r.exception.vector, r.exception.error_code, r.cr2) == (14, 7, P.super_lin + 0x10)
    assert (r.ecx, r.esi, r.edi) == (8, DATA32, P.super_lin + 0x10)
    r = side.run(code, regs=dict(cpl=3, esi=P.super_lin, edi=DATA32, ecx=8), count=None)
    assert (r.exception.vector, r.exception.error_code, r.cr2) == (14, 5, P.super_lin)


def test_restart_after_fault_completes():
    """A #PF in the middle of REP MOVSB; map the page and run again from the same
    EIP: the result equals an uninterrupted run (restartability)."""
    side = emu_side(P)
    cpu = side.cpu
    code = encode(ENVS[2], "movs", 1, "rep")
    src = random.Random(1).randbytes(0x3000)
    regs = dict(esi=DATA32, edi=P.pse_lin + 0xFF0, ecx=0x2800)
    ref = side.run(code, regs=regs, mem=[(DATA32, src)], count=None)
    want = side.emu.virt_read(P.pse_lin + 0xFF0, 0x2800)
    assert ref.exception is None and want == src[:0x2800]
    # now the destination's second page is read-only at CPL 3 (a user-RO PSE would be
    # all or nothing): run at ring 3 with the RO page as destination middle
    regs3 = dict(cpl=3, esi=DATA32, edi=P.ro_lin - 0x800, ecx=0x1000)
    r = side.run(code, regs=regs3, mem=[(DATA32, src)], count=None)
    assert (r.exception.vector, r.exception.error_code, r.cr2) == (14, 7, P.ro_lin)
    assert (r.ecx, r.esi, r.edi) == (0x800, DATA32 + 0x800, P.ro_lin)
    # make the RO page writable (PTE RW bit) and resume at the same EIP
    pte = P.pt_user_phys + 4 * ((P.ro_lin >> 12) & 0x3FF)
    v = int.from_bytes(cpu.phys.ram[pte:pte + 4], "little") | 2
    cpu.phys.ram[pte:pte + 4] = v.to_bytes(4, "little")
    cpu.mmu.flush()
    cpu.run(None, until=P.code_lin + len(code))
    assert cpu.R[S.ECX] == 0 and cpu.R[S.EIP] == P.code_lin + len(code)
    assert side.emu.virt_read(P.ro_lin - 0x800, 0x1000) == src[:0x1000]


# --- SDM-only: segment limits, I/O permission --------------------------------------------------

def test_segment_limit_mid_rep():
    """A REP whose element reaches past the segment limit faults there with the
    earlier iterations done (Unicorn checks no data-segment limits, A1/A2)."""
    side = emu_side(P)
    # DS/ES limit 0xFFF, 16-bit addresses: words at 0xFF0..0xFFE go, 0x1000 faults
    r = side.run(encode(ENVS[3], "movs", 2, "rep"),
                 regs=dict(ds=P.sel_data_small, es=P.sel_data_small, esi=0xABCD0FF0,
                           edi=0x12340100, ecx=0x55550020), count=None)
    assert (r.exception.vector, r.exception.error_code) == (13, 0)
    assert (r.ecx, r.esi, r.edi) == (0x55550018, 0xABCD1000, 0x12340110)
    real = emu_side(REAL16)
    r = real.run(encode(ENVS[0], "stos", 2, "rep"), regs=dict(edi=0xFFF8, ecx=10), count=None)
    assert r.exception is None and r.edi == 0x000C        # aligned words wrap, never straddle
    r = real.run(encode(ENVS[0], "stos", 2, "rep"), regs=dict(edi=0xFFF9, ecx=10), count=None)
    assert (r.exception.vector, r.ecx, r.edi) == (13, 7, 0xFFFF)
    r = real.run(encode(ENVS[0], "lods", 4, "rep", seg="ss"), regs=dict(esi=0xFFFE, ecx=2),
                 count=None)
    assert (r.exception.vector, r.ecx, r.esi) == (12, 2, 0xFFFE)          # SS: #SS


@pytest.mark.parametrize("op", ["ins", "outs"])
@pytest.mark.parametrize("iopl", [0, 3])
def test_io_permission_ring3(op, iopl):
    side = emu_side(P)
    ports = ZeroPorts()
    saved = side.cpu.ports
    side.cpu.ports = ports
    try:
        for rep, count in ((None, 0), ("rep", 3), ("rep", 0)):
            code = encode(ENVS[2], op, 1, rep)
            r = side.run(code, regs=dict(cpl=3, eflags=2 | iopl << 12, esi=DATA32, edi=DATA32,
                                         ecx=count, edx=0x60), count=None)
            if iopl < 3:
                # no I/O bitmap in the layout's TSS: #GP(0), nothing done, no port touched
                assert (r.exception.vector, r.exception.error_code) == (13, 0)
                assert (r.ecx, r.esi, r.edi) == (count, DATA32, DATA32) and not ports.log
            else:
                assert r.exception is None
                n = 1 if rep is None else count
                assert len(ports.log) == n
                ports.log.clear()
    finally:
        side.cpu.ports = saved


# --- bounded REP chunks (the run loop's resume mechanism, simulated) ---------------------------

class _Yield(Exception):
    pass


@pytest.mark.parametrize("op", ["movs", "stos", "lods", "cmps", "scas", "ins", "outs"])
@pytest.mark.parametrize("size", [1, 4])
@pytest.mark.parametrize("df", [0, 1])
def test_rep_in_chunks_equals_whole(monkeypatch, op, size, df, zero_ports):
    """With a chunk bound, a REP closure stops after REP_CHUNK elements with its
    registers committed and raises the resume signal; calling it again until it
    returns gives exactly the state of one uninterrupted run."""
    from emu.cpu.decode import decode
    from emu.cpu.ops import string as sm
    env = ENVS[2]
    rep = "repne" if op == "scas" else "rep"
    code = encode(env, op, size, rep)
    rnd = random.Random(size * 2 + df)
    blk = bytearray(rnd.randbytes(0x3000))
    if op == "cmps":
        blk[0x1800:] = blk[:0x1800]
    regs = dict(esi=DATA32 + (0x17F0 if df else 0x10), edi=DATA32 + (0x2FF0 if df else 0x1810),
                ecx=0x5F0 // size, eflags=2 | (DF if df else 0), eax=0x1234_5600 | blk[0x2F00 - 0x1810])
    if op == "cmps":
        regs["edi"] = regs["esi"] + 0x1800
    side = emu_side(P)
    whole = side.run(code, regs=regs, mem=[(DATA32, bytes(blk))], count=None)
    want = (whole.regs, whole.emu.virt_read(DATA32, 0x3000))
    monkeypatch.setattr(sm, "_Restart", _Yield)
    monkeypatch.setattr(sm, "REP_CHUNK", 37)
    side.reset(regs=regs, mem=[(DATA32, bytes(blk))], code=code)
    cpu = side.cpu
    ins = decode(lambda o: code[o - P.code_lin], P.code_lin, True)
    f = getattr(sm, op)(cpu, ins)
    calls = 0
    while True:
        calls += 1
        try:
            f()
            break
        except _Yield:
            assert cpu.event
    from emu.cpu.flags import materialize
    got = {n: cpu.R[i] for i, n in enumerate(("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"))}
    got["eflags"] = materialize(cpu.R)
    assert {k: v for k, v in got.items()} == {k: want[0][k] for k in got}
    assert side.emu.virt_read(DATA32, 0x3000) == want[1]
    if op not in ("cmps", "scas"):
        assert calls == -(-regs["ecx"] // 37)
