"""String instructions: MOVS CMPS STOS LODS SCAS INS OUTS, with REP/REPE/REPNE.

Operands: source DS:(E)SI (the segment is overridable), destination ES:(E)DI
(never overridable); (E)SI/(E)DI/(E)CX by the ADDRESS size (16-bit: SI, DI
and CX wrap at 64 KiB and their upper halves are untouched); the step is
+size or -size by EFLAGS.DF.

REP semantics (SDM "REP/REPE/REPZ/REPNE/REPNZ"): with a count of 0 nothing
happens; every iteration is a complete string operation followed by
count - 1 and, for CMPS/SCAS, the ZF test.  The iterations run in a Python
loop inside one closure call, on local copies of the registers.  A fault in
iteration k leaves (E)CX/(E)SI/(E)DI (and the flags of CMPS/SCAS) as they
were after iteration k-1 -- the registers are written back on the way out,
fault or not -- and the run loop leaves EIP at the instruction, so it
restarts exactly there (SDM Vol. 3 "restartability").

Fast paths: REP MOVS / REP STOS move whole runs of elements that lie in one
4 KiB page of plain RAM (present in the MMU's fast dicts, i.e. writable,
not watched, not MMIO) with one bytearray slice assignment; overlapping
MOVS runs are split so that the result equals the element-by-element copy.
REPNE/REPE SCASB and REPE CMPSB scan a page with bytes methods (both
directions); REP LODS skips to the last element of an in-page run.

Bounding: ``REP_CHUNK`` elements per closure call.  When the run loop
offers a way to resume at the same instruction (``faults.Restart``: the
closure raises it after committing its registers; the run loop then leaves
EIP at the instruction, counts the instructions before it and goes back to
its event check), a long REP yields every REP_CHUNK elements so interrupts
are taken between iterations.  Without it, the loop runs to completion.
"""
from ..faults import CPUFault, GP
from ..flags import K_SUB, SZI, MASK, DF, IOPL_MASK
from ..state import (EAX, ECX, EDX, ESI, EDI, EFLAGS, CPL, ES, LF_OP, LF_RES, LF_A, LF_B)

try:                                         # the run loop's "resume here" signal
    from ..faults import Restart as _Restart
except ImportError:                          # not there yet: loop to completion
    _Restart = None

M32 = 0xFFFFFFFF
REP_CHUNK = 4096 if _Restart is not None else None


def _io_check(cpu):
    """The I/O permission check: io.check_io(cpu, port, size) when present."""
    try:
        from . import io as _io
        chk = getattr(_io, "check_io", None)
    except ImportError:
        chk = None
    if chk is not None:
        return chk
    R = cpu.R

    def iopl_only(cpu_, port, size):
        if cpu_.protected and (cpu_.v86 or R[CPL] > (R[EFLAGS] & IOPL_MASK) >> 12):
            raise CPUFault(GP, 0)
    return iopl_only


class _Ctx:
    """Build-time parameters shared by the string builders."""

    def __init__(self, cpu, insn):
        self.R = cpu.R
        self.size = insn.size
        self.amask = M32 if insn.adsize == 32 else 0xFFFF
        self.keep = M32 ^ self.amask            # register bits the address size leaves alone
        self.src = insn.seg                     # DS or the override
        self.rep = insn.rep


def _pattern(v, size):
    return v.to_bytes(size, "little")


# --- single (non-REP) forms ------------------------------------------------------------

def _single(c, body):
    """Wrap body(si, di, step) -> (dsi, ddi) for the un-prefixed form."""
    R = c.R
    amask = c.amask
    keep = c.keep
    size = c.size

    def f():
        step = -size if R[EFLAGS] & DF else size
        dsi, ddi = body(R[ESI] & amask, R[EDI] & amask, step)
        if dsi:
            R[ESI] = (R[ESI] & keep) | ((R[ESI] + dsi) & amask)
        if ddi:
            R[EDI] = (R[EDI] & keep) | ((R[EDI] + ddi) & amask)
    return f


# --- MOVS -----------------------------------------------------------------------------

def movs(cpu, insn):
    c = _Ctx(cpu, insn)
    R = c.R
    size = c.size
    src = c.src
    rd = cpu.mem.RD[size]
    wr = cpu.mem.WR[size]
    amask = c.amask
    keep = c.keep
    if c.rep is None:
        if amask == M32:
            def movs32():
                step = -size if R[EFLAGS] & DF else size
                si = R[ESI]
                di = R[EDI]
                wr(ES, di, rd(src, si))
                R[ESI] = (si + step) & M32
                R[EDI] = (di + step) & M32
            return movs32

        def body(si, di, step):
            wr(ES, di, rd(src, si))
            return step, step
        return _single(c, body)

    segs = cpu.segs
    ssg = segs[src]
    dsg = segs[ES]
    mmu = cpu.mmu
    ram = cpu.phys.ram
    chunk = REP_CHUNK

    def rep_movs():
        cnt = R[ECX] & amask
        if not cnt:
            return
        down = R[EFLAGS] & DF
        step = -size if down else size
        si = R[ESI] & amask
        di = R[EDI] & amask
        budget = chunk if chunk is not None else cnt
        try:
            while cnt and budget > 0:
                n = 0
                # ---- fast path: a run of whole elements inside one RAM page each side
                if ssg.rmin <= si and si + size - 1 <= ssg.rmax and \
                        dsg.wmin <= di and di + size - 1 <= dsg.wmax:
                    slin = (ssg.base + si) & M32
                    dlin = (dsg.base + di) & M32
                    bs = mmu.rtlb.get(slin >> 12)
                    bd = mmu.wtlb.get(dlin >> 12)
                    so = slin & 0xFFF
                    do = dlin & 0xFFF
                    if bs is not None and bd is not None and so <= 0x1000 - size \
                            and do <= 0x1000 - size:
                        if not down:
                            n = min(cnt, budget, (0x1000 - so) // size, (0x1000 - do) // size,
                                    (ssg.rmax - si + 1) // size, (dsg.wmax - di + 1) // size,
                                    (amask - si + 1) // size, (amask - di + 1) // size)
                            sp = bs | so
                            dp = bd | do
                            if sp < dp < sp + n * size:        # overlapping, dest ahead
                                n = min(n, (dp - sp) // size)
                            if n > 1:
                                nb = n * size
                                ram[dp:dp + nb] = ram[sp:sp + nb]
                        else:
                            n = min(cnt, budget, so // size + 1, do // size + 1,
                                    (si - ssg.rmin) // size + 1, (di - dsg.wmin) // size + 1,
                                    si // size + 1, di // size + 1)
                            sp = bs | so
                            dp = bd | do
                            if dp < sp < dp + n * size:        # overlapping, dest behind
                                n = min(n, (sp - dp) // size)
                            if n > 1:
                                nb = (n - 1) * size
                                ram[dp - nb:dp + size] = ram[sp - nb:sp + size]
                if n > 1:
                    si = (si + step * n) & amask
                    di = (di + step * n) & amask
                    cnt -= n
                    budget -= n
                    continue
                # ---- one element through the checked accessors
                wr(ES, di, rd(src, si))
                si = (si + step) & amask
                di = (di + step) & amask
                cnt -= 1
                budget -= 1
        finally:
            R[ECX] = (R[ECX] & keep) | cnt
            R[ESI] = (R[ESI] & keep) | si
            R[EDI] = (R[EDI] & keep) | di
        if cnt and _Restart is not None:
            cpu.event = True          # let the run loop look at interrupts
            raise _Restart()
    return rep_movs


# --- STOS -----------------------------------------------------------------------------

def stos(cpu, insn):
    c = _Ctx(cpu, insn)
    R = c.R
    size = c.size
    wr = cpu.mem.WR[size]
    amask = c.amask
    keep = c.keep
    vmask = MASK[SZI[size]]
    if c.rep is None:
        if amask == M32:
            def stos32():
                di = R[EDI]
                wr(ES, di, R[EAX] & vmask)
                R[EDI] = (di + (-size if R[EFLAGS] & DF else size)) & M32
            return stos32

        def body(si, di, step):
            wr(ES, di, R[EAX] & vmask)
            return 0, step
        return _single(c, body)

    dsg = cpu.segs[ES]
    mmu = cpu.mmu
    ram = cpu.phys.ram
    chunk = REP_CHUNK

    def rep_stos():
        cnt = R[ECX] & amask
        if not cnt:
            return
        down = R[EFLAGS] & DF
        step = -size if down else size
        di = R[EDI] & amask
        v = R[EAX] & vmask
        pat = None
        budget = chunk if chunk is not None else cnt
        try:
            while cnt and budget > 0:
                n = 0
                if dsg.wmin <= di and di + size - 1 <= dsg.wmax:
                    dlin = (dsg.base + di) & M32
                    bd = mmu.wtlb.get(dlin >> 12)
                    do = dlin & 0xFFF
                    if bd is not None and do <= 0x1000 - size:
                        if not down:
                            n = min(cnt, budget, (0x1000 - do) // size,
                                    (dsg.wmax - di + 1) // size, (amask - di + 1) // size)
                            start = bd | do
                        else:
                            n = min(cnt, budget, do // size + 1, (di - dsg.wmin) // size + 1,
                                    di // size + 1)
                            start = (bd | do) - (n - 1) * size
                        if n > 1:
                            if pat is None:
                                pat = _pattern(v, size)
                            ram[start:start + n * size] = pat * n
                if n > 1:
                    di = (di + step * n) & amask
                    cnt -= n
                    budget -= n
                    continue
                wr(ES, di, v)
                di = (di + step) & amask
                cnt -= 1
                budget -= 1
        finally:
            R[ECX] = (R[ECX] & keep) | cnt
            R[EDI] = (R[EDI] & keep) | di
        if cnt and _Restart is not None:
            cpu.event = True          # let the run loop look at interrupts
            raise _Restart()
    return rep_stos


# --- LODS -----------------------------------------------------------------------------

def lods(cpu, insn):
    c = _Ctx(cpu, insn)
    R = c.R
    size = c.size
    src = c.src
    rd = cpu.mem.RD[size]
    amask = c.amask
    keep = c.keep
    amerge = {1: 0xFFFFFF00, 2: 0xFFFF0000, 4: 0}[size]
    if c.rep is None:
        def body(si, di, step):
            v = rd(src, si)
            R[EAX] = (R[EAX] & amerge) | v
            return step, 0
        return _single(c, body)
    chunk = REP_CHUNK

    ssg = cpu.segs[src]
    mmu = cpu.mmu

    def rep_lods():
        cnt = R[ECX] & amask
        if not cnt:
            return
        down = R[EFLAGS] & DF
        step = -size if down else size
        si = R[ESI] & amask
        budget = chunk if chunk is not None else cnt
        v = None
        try:
            while cnt and budget > 0:
                # a run of whole elements in one readable RAM page: only the last
                # one's value survives, and none of them can fault
                if ssg.rmin <= si and si + size - 1 <= ssg.rmax:
                    slin = (ssg.base + si) & M32
                    so = slin & 0xFFF
                    if so <= 0x1000 - size and mmu.rtlb.get(slin >> 12) is not None:
                        if not down:
                            n = min(cnt, budget, (0x1000 - so) // size, (ssg.rmax - si + 1) // size,
                                    (amask - si + 1) // size)
                        else:
                            n = min(cnt, budget, so // size + 1, (si - ssg.rmin) // size + 1,
                                    si // size + 1)
                        if n > 1:
                            si = (si + step * (n - 1)) & amask
                            cnt -= n - 1
                            budget -= n - 1
                v = rd(src, si)
                si = (si + step) & amask
                cnt -= 1
                budget -= 1
        finally:
            if v is not None:
                R[EAX] = (R[EAX] & amerge) | v
            R[ECX] = (R[ECX] & keep) | cnt
            R[ESI] = (R[ESI] & keep) | si
        if cnt and _Restart is not None:
            cpu.event = True          # let the run loop look at interrupts
            raise _Restart()
    return rep_lods


# --- CMPS / SCAS ----------------------------------------------------------------------

def _flags_setter(R, size):
    op = K_SUB << 2 | SZI[size]
    mask = MASK[SZI[size]]

    def setf(a, b):
        R[LF_OP] = op
        R[LF_RES] = (a - b) & mask
        R[LF_A] = a
        R[LF_B] = b
    return setf


def cmps(cpu, insn):
    c = _Ctx(cpu, insn)
    R = c.R
    size = c.size
    src = c.src
    rd = cpu.mem.RD[size]
    amask = c.amask
    keep = c.keep
    setf = _flags_setter(R, size)
    if c.rep is None:
        def body(si, di, step):
            a = rd(src, si)
            b = rd(ES, di)
            setf(a, b)
            return step, step
        return _single(c, body)
    want_eq = c.rep == "rep"          # REPE: continue while equal
    segs = cpu.segs
    ssg = segs[src]
    dsg = segs[ES]
    mmu = cpu.mmu
    ram = cpu.phys.ram
    chunk = REP_CHUNK
    fast = size == 1 and want_eq

    def rep_cmps():
        cnt = R[ECX] & amask
        if not cnt:
            return
        down = R[EFLAGS] & DF
        step = -size if down else size
        si = R[ESI] & amask
        di = R[EDI] & amask
        budget = chunk if chunk is not None else cnt
        last = None
        try:
            while cnt and budget > 0:
                if fast and ssg.rmin <= si <= ssg.rmax and dsg.rmin <= di <= dsg.rmax:
                    # REPE CMPSB: skip the common prefix (DF=0) / suffix (DF=1) of two
                    # in-page runs; at most cnt-1 here, the last element goes the slow way
                    slin = (ssg.base + si) & M32
                    dlin = (dsg.base + di) & M32
                    bs = mmu.rtlb.get(slin >> 12)
                    bd = mmu.rtlb.get(dlin >> 12)
                    if bs is not None and bd is not None:
                        so = slin & 0xFFF
                        do = dlin & 0xFFF
                        if not down:
                            n = min(cnt - 1, budget, 0x1000 - so, 0x1000 - do, ssg.rmax - si + 1,
                                    dsg.rmax - di + 1, amask - si + 1, amask - di + 1)
                        else:
                            n = min(cnt - 1, budget, so + 1, do + 1, si - ssg.rmin + 1,
                                    di - dsg.rmin + 1, si + 1, di + 1)
                        if n > 1:
                            sp = bs | so
                            dp = bd | do
                            if not down:
                                k = _common_prefix(ram, sp, dp, n)
                                lastb = sp + k - 1
                            else:
                                k = _common_suffix(ram, sp + 1, dp + 1, n)
                                lastb = sp - k + 1
                            if k:
                                b0 = ram[lastb]
                                last = (b0, b0)
                                si = (si + step * k) & amask
                                di = (di + step * k) & amask
                                cnt -= k
                                budget -= k
                                continue
                a = rd(src, si)
                b = rd(ES, di)
                last = (a, b)
                si = (si + step) & amask
                di = (di + step) & amask
                cnt -= 1
                budget -= 1
                if (a == b) != want_eq:
                    break
        finally:
            if last is not None:
                setf(*last)
            R[ECX] = (R[ECX] & keep) | cnt
            R[ESI] = (R[ESI] & keep) | si
            R[EDI] = (R[EDI] & keep) | di
        if cnt and budget <= 0 and _Restart is not None and (last[0] == last[1]) == want_eq:
            cpu.event = True          # let the run loop look at interrupts
            raise _Restart()
    return rep_cmps


def _common_prefix(ram, p, q, n):
    """Length of the common prefix of ram[p:p+n] and ram[q:q+n]."""
    if ram[p:p + n] == ram[q:q + n]:
        return n
    lo, hi = 0, n - 1               # prefix length in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if ram[p:p + mid] == ram[q:q + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(ram, p_end, q_end, n):
    """Length of the common suffix of ram[p_end-n:p_end] and ram[q_end-n:q_end]."""
    if ram[p_end - n:p_end] == ram[q_end - n:q_end]:
        return n
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if ram[p_end - mid:p_end] == ram[q_end - mid:q_end]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def scas(cpu, insn):
    c = _Ctx(cpu, insn)
    R = c.R
    size = c.size
    rd = cpu.mem.RD[size]
    amask = c.amask
    keep = c.keep
    vmask = MASK[SZI[size]]
    setf = _flags_setter(R, size)
    if c.rep is None:
        def body(si, di, step):
            b = rd(ES, di)
            setf(R[EAX] & vmask, b)
            return 0, step
        return _single(c, body)
    want_eq = c.rep == "rep"
    dsg = cpu.segs[ES]
    mmu = cpu.mmu
    ram = cpu.phys.ram
    chunk = REP_CHUNK
    fast = size == 1

    def rep_scas():
        cnt = R[ECX] & amask
        if not cnt:
            return
        down = R[EFLAGS] & DF
        step = -size if down else size
        di = R[EDI] & amask
        a = R[EAX] & vmask
        budget = chunk if chunk is not None else cnt
        last = None
        try:
            while cnt and budget > 0:
                if fast and dsg.rmin <= di <= dsg.rmax:
                    dlin = (dsg.base + di) & M32
                    bd = mmu.rtlb.get(dlin >> 12)
                    if bd is not None:
                        do = dlin & 0xFFF
                        # at most cnt-1 here: the last element goes the slow way
                        if not down:
                            n = min(cnt - 1, budget, 0x1000 - do, dsg.rmax - di + 1, amask - di + 1)
                        else:
                            n = min(cnt - 1, budget, do + 1, di - dsg.rmin + 1, di + 1)
                        if n > 1:
                            p = bd | do
                            if not down:
                                if want_eq:      # REPE: skip the bytes equal to AL
                                    k = n - len(ram[p:p + n].lstrip(bytes((a,))))
                                else:            # REPNE: skip the bytes different from AL
                                    k = ram.find(a, p, p + n)
                                    k = n if k < 0 else k - p
                                lastb = p + k - 1
                            else:
                                lo = p - n + 1
                                if want_eq:
                                    k = n - len(ram[lo:p + 1].rstrip(bytes((a,))))
                                else:
                                    k = ram.rfind(a, lo, p + 1)
                                    k = n if k < 0 else p - k
                                lastb = p - k + 1
                            if k:
                                last = (a, ram[lastb])
                                di = (di + step * k) & amask
                                cnt -= k
                                budget -= k
                                continue
                b = rd(ES, di)
                last = (a, b)
                di = (di + step) & amask
                cnt -= 1
                budget -= 1
                if (a == b) != want_eq:
                    break
        finally:
            if last is not None:
                setf(*last)
            R[ECX] = (R[ECX] & keep) | cnt
            R[EDI] = (R[EDI] & keep) | di
        if cnt and budget <= 0 and _Restart is not None and (last[0] == last[1]) == want_eq:
            cpu.event = True          # let the run loop look at interrupts
            raise _Restart()
    return rep_scas


# --- INS / OUTS -----------------------------------------------------------------------

def ins(cpu, insn):
    """INS: port DX -> ES:(E)DI.  The I/O permission check comes first; the
    destination is checked before the port is read, so a faulting store does
    not consume device data."""
    c = _Ctx(cpu, insn)
    R = c.R
    size = c.size
    wr = cpu.mem.WR[size]
    check_write = cpu.mem.check_write
    amask = c.amask
    keep = c.keep
    io_check = _io_check(cpu)
    rep = c.rep is not None
    chunk = REP_CHUNK
    vmask = MASK[SZI[size]]

    def f():
        port = R[EDX] & 0xFFFF
        io_check(cpu, port, size)
        cnt = R[ECX] & amask if rep else 1
        if not cnt:
            return
        step = -size if R[EFLAGS] & DF else size
        di = R[EDI] & amask
        budget = chunk if (chunk is not None and rep) else cnt
        try:
            while cnt and budget > 0:
                check_write(ES, di, size)
                wr(ES, di, cpu.ports.read(port, size) & vmask)
                di = (di + step) & amask
                cnt -= 1
                budget -= 1
        finally:
            if rep:
                R[ECX] = (R[ECX] & keep) | cnt
            R[EDI] = (R[EDI] & keep) | di
        if cnt and _Restart is not None:
            cpu.event = True          # let the run loop look at interrupts
            raise _Restart()
    return f


def outs(cpu, insn):
    """OUTS: DS:(E)SI (overridable) -> port DX, after the I/O permission check."""
    c = _Ctx(cpu, insn)
    R = c.R
    size = c.size
    src = c.src
    rd = cpu.mem.RD[size]
    amask = c.amask
    keep = c.keep
    io_check = _io_check(cpu)
    rep = c.rep is not None
    chunk = REP_CHUNK

    def f():
        port = R[EDX] & 0xFFFF
        io_check(cpu, port, size)
        cnt = R[ECX] & amask if rep else 1
        if not cnt:
            return
        step = -size if R[EFLAGS] & DF else size
        si = R[ESI] & amask
        budget = chunk if (chunk is not None and rep) else cnt
        try:
            while cnt and budget > 0:
                cpu.ports.write(port, size, rd(src, si))
                si = (si + step) & amask
                cnt -= 1
                budget -= 1
        finally:
            if rep:
                R[ECX] = (R[ECX] & keep) | cnt
            R[ESI] = (R[ESI] & keep) | si
        if cnt and _Restart is not None:
            cpu.event = True          # let the run loop look at interrupts
            raise _Restart()
    return f


__all__ = ["movs", "cmps", "stos", "lods", "scas", "ins", "outs", "REP_CHUNK"]
