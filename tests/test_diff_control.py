"""Differential tests (emu vs Unicorn) for near control transfers: Jcc (short
and near, all 16 conditions), JMP/CALL (relative, register, memory; 16- and
32-bit operand sizes), RET / RET imm16, LOOP/LOOPE/LOOPNE, JCXZ/JECXZ (CX or
ECX by address size) and BOUND (#BR, signed bounds, #UD with a register
operand), in REAL16 and PROT32_PAGED (also with a 16-bit stack segment).

Unicorn fetches the target of a transfer even when it stops after one
instruction, so compared targets always lie in mapped code.  The CS-limit
check (#GP(0) raised by the jumping instruction, nothing committed) is
SDM-only: Unicorn does not check the CS limit on near transfers.
"""
import random

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from tests.layout import REAL16, PROT32_PAGED, Seg, descriptor
from tests.difftest import check_same, emu_side
from tests import oracle as _oracle

if not hasattr(_oracle.Exc, "trap"):         # difftest.py still says .trap, oracle.py .soft
    _oracle.Exc.trap = property(lambda self: self.soft)

P = PROT32_PAGED
DATA32 = P.data_lin[0]
ARITH = 0x8D5
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

CODE32 = P.code_lin + 0x800          # room for backward targets in the 2 mapped code pages
CODE16_IP = 0x8000
SS16 = Seg(0x30, P.stack_lin[0], 0xFFFF, 0x0093)
SS16_GDT = [(P.gdt_phys + 0x30, descriptor(P.stack_lin[0], 0xFFFF, 0x93, 0x0))]


class Env:
    def __init__(self, name, L, regs=None, phys=None):
        self.name, self.L, self.regs, self.phys = name, L, regs or {}, phys or []

    def __repr__(self):
        return self.name

    @property
    def code32(self):
        return self.L.mode == 32

    @property
    def eip(self):
        return CODE32 if self.code32 else CODE16_IP

    @property
    def code_lin(self):
        return CODE32 if self.code32 else 0x10000 + CODE16_IP

    def target(self, rnd):
        """A valid (mapped, inside CS) target offset."""
        if self.code32:
            # not near the end of the last code page: Unicorn translates ahead of
            # the target and faults fetching the unmapped page after it
            return rnd.randrange(P.code_lin, P.code_lin + 0x1800)
        return rnd.getrandbits(16)

    def stack_lin(self, esp):
        if self.L is REAL16:
            return 0x30000 + (esp & 0xFFFF)
        if "ss" in self.regs:
            return P.stack_lin[0] + (esp & 0xFFFF)
        return esp


ENVS = [Env("REAL16", REAL16), Env("PROT32", P),
        Env("PROT32_SS16", P, regs=dict(ss=SS16), phys=SS16_GDT)]


def base(env, rnd):
    regs = {r: rnd.getrandbits(32) for r in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi")}
    regs["eflags"] = 2 | (rnd.getrandbits(12) & ARITH)
    regs["eip"] = env.eip
    if env.L is REAL16:
        regs["esp"] = rnd.getrandbits(16) << 16 | (0x8000 + 2 * rnd.randrange(0x1000))
    elif "ss" in env.regs:
        regs["esp"] = rnd.getrandbits(16) << 16 | (0x1000 + 4 * rnd.randrange(0x400))
    else:
        regs["esp"] = P.stack_lin[0] + 0x1000 + 4 * rnd.randrange(0x400)
    regs.update(env.regs)
    return regs


def go(env, code, regs, mem=None):
    check_same(env.L, bytes(code), regs=regs, mem=mem, phys_mem=env.phys, count=1,
               code_lin=env.code_lin)


def le(v, n):
    return (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


def rel_to(env, rnd, insn_len, width):
    """A relative displacement of ``width`` bytes from an instruction of
    ``insn_len`` bytes at env.eip to a valid target."""
    nxt = env.eip + insn_len
    if width == 1:
        return rnd.randrange(-128, 128)
    if env.code32 and width == 4:
        return env.target(rnd) - nxt
    return (env.target(rnd) - nxt) & 0xFFFF           # 16-bit: wraps inside the segment


# --- Jcc / JMP rel --------------------------------------------------------------------------

def jcc_cases(env, rnd):
    out = []
    for cc in range(16):
        out.append(bytes([0x70 | cc]) + le(rel_to(env, rnd, 2, 1), 1))
        w = 4 if env.code32 else 2
        out.append(bytes([0x0F, 0x80 | cc]) + le(rel_to(env, rnd, 2 + w, w), w))
    if not env.code32:                                  # 66 Jcc rel32 in 16-bit code
        for cc in (2, 5, 12):
            t = rnd.getrandbits(16)
            out.append(bytes([0x66, 0x0F, 0x80 | cc]) + le(t - (env.eip + 7), 4))
    return out


@pytest.mark.parametrize("env", ENVS[:2], ids=repr)
@settings(max_examples=40, **SETTINGS)
@given(seed=st.integers(0, 1 << 30))
def test_jcc(env, seed):
    rnd = random.Random(seed)
    for code in jcc_cases(env, rnd):
        go(env, code, base(env, rnd))


def test_jcc_after_compare():
    """Jcc straight after CMP (the lazy-flags shortcut) with operands around the
    signed/unsigned boundaries."""
    env = ENVS[1]
    vals = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x12345678)
    for cc in range(16):
        for a in vals:
            for b in vals[::2]:
                code = bytes([0x39, 0xD8, 0x70 | cc, 0x10])          # cmp eax, ebx; jcc +0x10
                regs = dict(eax=a, ebx=b, eip=env.eip)
                check_same(P, code, regs=regs, count=2, code_lin=env.code_lin)


@pytest.mark.parametrize("env", ENVS[:2], ids=repr)
def test_jmp_rel(env):
    rnd = random.Random(1)
    for _ in range(20):
        go(env, bytes([0xEB]) + le(rel_to(env, rnd, 2, 1), 1), base(env, rnd))
        w = 4 if env.code32 else 2
        go(env, bytes([0xE9]) + le(rel_to(env, rnd, 1 + w, w), w), base(env, rnd))
    if not env.code32:
        go(env, bytes([0x66, 0xE9]) + le(0x1234 - (env.eip + 6), 4), base(env, rnd))


# --- indirect JMP / CALL, CALL rel, RET ---------------------------------------------------------

def _mem_target(env, rnd, size, value):
    """(modrm+sib+disp bytes for [ebx]/[bx], regs, mem) holding ``value``."""
    if env.code32:
        lin = rnd.randrange(DATA32, DATA32 + 0x7FF8)
        if rnd.random() < 0.3:
            lin = DATA32 + 0x1000 * rnd.randrange(1, 8) - rnd.randrange(1, size)
        return lin, dict(ebx=lin), [(lin, le(value, size))]
    off = rnd.randrange(0, 0xFFF0)
    return 0x20000 + off, dict(ebx=rnd.getrandbits(16) << 16 | off), [(0x20000 + off, le(value, size))]


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_indirect_jmp_call(env):
    rnd = random.Random(2)
    for i in range(12):
        for call in (False, True):
            r = 2 if call else 4
            t = env.target(rnd)
            # register form: FF /r with rm = eax (keystone-free)
            regs = base(env, rnd)
            regs["eax"] = t if env.code32 else (rnd.getrandbits(16) << 16 | t)
            go(env, bytes([0xFF, 0xC0 | r << 3]), regs)
            # memory form [ebx] / [bx+di] (modrm 0x03 in 32-bit, 0x07 in 16-bit = [bx])
            regs = base(env, rnd)
            size = 4 if env.code32 else 2
            lin, mregs, mem = _mem_target(env, rnd, size, t)
            regs.update(mregs)
            go(env, bytes([0xFF, (0x03 if env.code32 else 0x07) | r << 3]), regs, mem)
            if not env.code32:
                # 32-bit operand size in 16-bit code: a 32-bit target (below 64 KiB)
                regs = base(env, rnd)
                regs["eax"] = t
                go(env, bytes([0x66, 0xFF, 0xC0 | r << 3]), regs)
    # call [esp] reads the target before pushing
    if env.code32 and "ss" not in env.regs:
        regs = base(env, rnd)
        t = env.target(rnd)
        go(env, bytes([0xFF, 0x14, 0x24]), regs, [(regs["esp"], le(t, 4))])


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_call_rel(env):
    rnd = random.Random(3)
    for _ in range(15):
        w = 4 if env.code32 else 2
        go(env, bytes([0xE8]) + le(rel_to(env, rnd, 1 + w, w), w), base(env, rnd))
    if not env.code32:
        go(env, bytes([0x66, 0xE8]) + le(0x1234 - (env.eip + 6), 4), base(env, rnd))


@pytest.mark.parametrize("env", ENVS, ids=repr)
def test_ret(env):
    rnd = random.Random(4)
    for _ in range(10):
        # imm16 < 0x8000 only: Unicorn sign-extends RET's imm16 (see test_ret_imm16_unsigned)
        for imm in (None, 0, 8, 0x7FFE, rnd.getrandbits(15)):
            for o_other in (False, True):
                regs = base(env, rnd)
                t = env.target(rnd)
                if o_other and env.code32:
                    continue                         # 66 RET in 32-bit code: IP < 64 KiB unmapped
                size = 4 if (env.code32 or o_other) else 2
                code = (b"\x66" if o_other else b"") + (bytes([0xC3]) if imm is None
                                                        else bytes([0xC2]) + le(imm, 2))
                go(env, code, regs, [(env.stack_lin(regs["esp"]), le(t, size))])


def test_ret_imm16_unsigned():
    """RET imm16 releases imm16 bytes, zero-extended (SDM).  Unicorn 2.1.4
    (QEMU's x86_ldsw_code) sign-extends it: ``ret 0xfffe`` moves ESP by 4 - 2."""
    for env in ENVS:
        rnd = random.Random(5)
        regs = base(env, rnd)
        t = env.target(rnd)
        size = 4 if env.code32 else 2
        side = emu_side(env.L)
        r = side.run(b"\xc2\xfe\xff", regs=regs, mem=[(env.stack_lin(regs["esp"]), le(t, size))],
                     phys_mem=env.phys, count=1, code_lin=env.code_lin)
        assert r.exception is None and r.eip == t
        if env.L is P and "ss" not in env.regs:
            assert r.esp == regs["esp"] + size + 0xFFFE
        else:
            assert r.esp == (regs["esp"] & 0xFFFF0000) | ((regs["esp"] + size + 0xFFFE) & 0xFFFF)


def test_ret16_in_32bit_code_sdm():
    """66 C3 in 32-bit code pops a 16-bit IP (EIP's upper half cleared); the
    target is below 64 KiB, unmapped in the layout, so emu is checked alone."""
    side = emu_side(P)
    regs = dict(esp=P.stack_lin[0] + 0x1000, eip=CODE32)
    r = side.run(b"\x66\xc3", regs=regs, mem=[(P.stack_lin[0] + 0x1000, b"\x34\x12\xff\xff")],
                 count=1, code_lin=CODE32)
    assert r.eip == 0x1234 and r.esp == P.stack_lin[0] + 0x1002
    r = side.run(b"\x66\xeb\x10", regs=dict(eip=CODE32), count=1, code_lin=CODE32)
    assert r.eip == (CODE32 + 3 + 0x10) & 0xFFFF
    r = side.run(b"\x66\xe8\x00\x10", regs=dict(eip=CODE32, esp=P.stack_lin[0] + 0x1000),
                 count=1, code_lin=CODE32)
    assert r.eip == (CODE32 + 4 + 0x1000) & 0xFFFF and r.esp == P.stack_lin[0] + 0xFFE
    assert side.emu.virt_read(P.stack_lin[0] + 0xFFE, 2) == le(CODE32 + 4, 2)


# --- LOOP / JCXZ ---------------------------------------------------------------------------------

COUNTS = (0, 1, 2, 0x10000, 0x10001, 0xFFFFFFFF, 0x12340000)


@pytest.mark.parametrize("env", ENVS[:2], ids=repr)
@pytest.mark.parametrize("op", [0xE0, 0xE1, 0xE2, 0xE3])
def test_loop_jcxz(env, op):
    rnd = random.Random(op)
    for a_other in (False, True):
        for ecx in COUNTS + tuple(rnd.getrandbits(32) for _ in range(3)):
            for zf in (0, 0x40):
                regs = base(env, rnd)
                regs["ecx"] = ecx
                regs["eflags"] = (regs["eflags"] & ~0x40) | zf
                code = (b"\x67" if a_other else b"") + bytes([op]) + le(rnd.randrange(-100, 100), 1)
                go(env, code, regs)


# --- BOUND -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", ENVS[:2], ids=repr)
@settings(max_examples=40, **SETTINGS)
@given(seed=st.integers(0, 1 << 30), o_other=st.booleans())
def test_bound(env, seed, o_other):
    rnd = random.Random(seed)
    size = 4 if env.code32 != o_other else 2
    lo_v, hi_v = sorted(rnd.getrandbits(8 * size) for _ in range(2))
    if rnd.random() < 0.3:
        lo_v, hi_v = hi_v, lo_v                      # an empty range: always #BR
    regs = base(env, rnd)
    lin, mregs, _ = _mem_target(env, rnd, 2 * size, 0)
    regs.update(mregs)
    mem = [(lin, le(lo_v, size) + le(hi_v, size))]
    pick = rnd.randrange(5)
    m = (1 << 8 * size) - 1
    v = [lo_v, hi_v, (lo_v - 1) & m, (hi_v + 1) & m, rnd.getrandbits(32)][pick]
    regs["ecx"] = (regs["ecx"] & ~m) | (v & m)
    code = (b"\x66" if o_other else b"") + bytes([0x62, 0x0B if env.code32 else 0x0F])   # ecx, [ebx]/[bx]
    go(env, code, regs, mem)


def test_bound_faults():
    go(ENVS[1], b"\x62\xc1", base(ENVS[1], random.Random(1)))                     # register: #UD
    regs = base(ENVS[1], random.Random(2))
    regs["ebx"] = P.unmapped_lin - 4                                               # upper bound unmapped
    go(ENVS[1], b"\x62\x0b", regs)


# --- faults: stack and CS limit ------------------------------------------------------------------

def test_call_ret_stack_faults():
    env = ENVS[1]
    rnd = random.Random(9)
    regs = base(env, rnd)
    regs["esp"] = DATA32 + 2                                   # push straddles into unmapped 0x40F000
    go(env, bytes([0xE8]) + le(0x10, 4), regs)
    regs["esp"] = P.ro_lin + 0x10                              # push into the read-only page
    go(env, bytes([0xFF, 0xD0]), dict(regs, eax=CODE32))
    regs["esp"] = P.unmapped_lin - 2                           # pop straddles into unmapped
    go(env, b"\xc3", regs)
    go(env, bytes([0xFF, 0x23]), dict(regs, ebx=P.unmapped_lin - 1))   # jmp [ebx]: #PF


def test_cs_limit_sdm():
    """A near transfer beyond the CS limit: #GP(0) at the jumping instruction,
    nothing committed (no push, ECX unchanged).  Emu alone: Unicorn does not
    check the CS limit."""
    real = emu_side(REAL16)
    r = real.run(b"\x66\xe9" + le(0x10000 - 0x106, 4), regs=dict(), count=1)     # IP -> 0x10000
    assert (r.exception.vector, r.eip) == (13, 0x100)
    r = real.run(b"\x66\xe8" + le(0x20000, 4), regs=dict(esp=0xFF00), count=1)
    assert (r.exception.vector, r.eip, r.esp) == (13, 0x100, 0xFF00)
    r = real.run(b"\x66\xc3", regs=dict(esp=0xFF00), mem=[(0x3FF00, le(0x12345, 4))], count=1)
    assert (r.exception.vector, r.esp) == (13, 0xFF00)
    # 32-bit code segment with a small limit: base 0x400000, limit 0x1FFF (code at 0x1000)
    side = emu_side(P)
    cs = Seg(0x08, 0x400000, 0x1FFF, 0x409B)
    for code, regs in ((bytes([0xE9]) + le(0x1000, 4), {}),
                       (bytes([0xE2, 0x7F]), dict(ecx=5)),                     # loop
                       (bytes([0xE3, 0x7F]), dict(ecx=0)),                     # jecxz
                       (bytes([0x74, 0x7F]), dict(eflags=0x42)),               # jz taken
                       (bytes([0x75, 0x7F]), dict(eflags=0x2)),                # jnz taken
                       (bytes([0xFF, 0xD0]), dict(eax=0x2000)),                # call eax
                       (bytes([0xC3]), {})):
            rr = dict(cs=cs, eip=0x1F80, esp=P.stack_lin[0] + 0x1000)
            rr.update(regs)
            r = side.run(code, regs=rr, mem=[(P.stack_lin[0] + 0x1000, le(0x2000, 4))], count=1,
                         code_lin=0x401F80)
            assert (r.exception.vector, r.exception.error_code, r.eip) == (13, 0, 0x1F80), code
            assert r.ecx == rr.get("ecx", r.ecx) and r.esp == P.stack_lin[0] + 0x1000
    # not taken: no fault
    r = side.run(bytes([0x74, 0x7F]), regs=dict(cs=cs, eip=0x1F80, eflags=2), count=1,
                 code_lin=0x401F80)
    assert r.exception is None and r.eip == 0x1F82
