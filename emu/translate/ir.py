"""LLVM IR text for one guest block: registers, memory, lazy flags, exits.

``BlockEmitter`` is what the instruction semantics (semantics.py) write
with.  It keeps the guest registers and the lazy-flag record (flags.py's
encoding, the same words the interpreter uses) in allocas that the SROA
pass turns into SSA values; they are loaded from the state struct at entry
and stored back at every exit, so the state is exact at every point where
Python can look at it:

* a fault exit (a helper raised a guest exception) stores the values as
  they were *before* the faulting instruction and that instruction's EIP:
  every semantic routine does all its memory accesses (which may fault)
  before it writes a register or the flags;
* a normal exit stores everything and the next EIP, then either jumps
  straight into the next compiled block (a patchable exit slot for direct
  transfers, the dispatch hash table for indirect ones; ``musttail`` keeps
  the native stack flat) or returns an exit code to Python.

Each block starts with the checks that make chaining safe: an exit request
from Python, the instruction budget (the block takes its length up front and
gives back what it did not retire on an early exit), the run's stop address
and the translation of the block's code page, compared with the native TLB
entry it was compiled against (a remapped page runs the interpreter's
lookup, which decodes what is there now).
"""
import re

from ..cpu.flags import K_ADD, K_ADC1, K_SUB, K_SBB1, K_LOGIC, K_INC, K_DEC, K_NEG, K_RES
from . import runtime as rt
from .llvm_engine import HELPER_DECLS
from .tlbwalk import walk_fn

MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
SIGNS = {0: 0x80, 1: 0x8000, 2: 0x80000000}
SZI = {1: 0, 2: 1, 4: 2}
_LF = ("lop", "lres", "la", "lb", "lfl")     # allocas: LF_OP LF_RES LF_A LF_B EFLAGS
_LF_WORD = (10, 11, 12, 13, 9)

MAT_FN = r"""
define internal i32 @emurt_mat(i32 %op, i32 %res, i32 %a, i32 %b, i32 %fl) {
entry:
  %z = icmp eq i32 %op, 0
  br i1 %z, label %exact, label %lazy
exact:
  ret i32 %fl
lazy:
  %kind = lshr i32 %op, 2
  %szi = and i32 %op, 3
  %s0 = icmp eq i32 %szi, 0
  %s1 = icmp eq i32 %szi, 1
  %sh1 = select i1 %s1, i32 15, i32 31
  %sh = select i1 %s0, i32 7, i32 %sh1
  %sign = shl i32 1, %sh
  %lb8 = and i32 %res, 255
  %pc = call i32 @llvm.ctpop.i32(i32 %lb8)
  %podd = and i32 %pc, 1
  %pe = icmp eq i32 %podd, 0
  %pf = select i1 %pe, i32 4, i32 0
  %rz = icmp eq i32 %res, 0
  %zf = select i1 %rz, i32 64, i32 0
  %rs = and i32 %res, %sign
  %rsn = icmp ne i32 %rs, 0
  %sf = select i1 %rsn, i32 128, i32 0
  %x1 = xor i32 %a, %b
  %x2 = xor i32 %x1, %res
  %afab = and i32 %x2, 16
  %ar = xor i32 %a, %res
  %br = xor i32 %b, %res
  %oa1 = and i32 %ar, %br
  %oa2 = and i32 %oa1, %sign
  %ofadd = icmp ne i32 %oa2, 0
  %os1 = and i32 %x1, %ar
  %os2 = and i32 %os1, %sign
  %ofsub = icmp ne i32 %os2, 0
  %isadc = icmp eq i32 %kind, 2
  %isadd = icmp ule i32 %kind, 2
  %c1 = icmp ult i32 %res, %a
  %c2 = icmp eq i32 %res, %a
  %c3 = and i1 %isadc, %c2
  %cfadd = or i1 %c1, %c3
  %issbb = icmp eq i32 %kind, 4
  %issub = icmp eq i32 %kind, 3
  %issubk = or i1 %issub, %issbb
  %d1 = icmp ult i32 %a, %b
  %d2 = icmp eq i32 %a, %b
  %d3 = and i1 %issbb, %d2
  %cfsub = or i1 %d1, %d3
  %bcf = and i32 %b, 1
  %bcfn = icmp ne i32 %bcf, 0
  %isinc = icmp eq i32 %kind, 6
  %isdec = icmp eq i32 %kind, 7
  %isneg = icmp eq i32 %kind, 8
  %isres = icmp eq i32 %kind, 9
  %r4 = and i32 %res, 15
  %incaf = icmp eq i32 %r4, 0
  %decaf = icmp eq i32 %r4, 15
  %incof = icmp eq i32 %res, %sign
  %signm1 = sub i32 %sign, 1
  %decof = icmp eq i32 %res, %signm1
  %anz = icmp ne i32 %a, 0
  %negaf0 = and i32 %ar, 16
  %negaf = icmp ne i32 %negaf0, 0
  %b2 = and i32 %b, 2
  %resof = icmp ne i32 %b2, 0
  %b4 = and i32 %b, 4
  %resaf = icmp ne i32 %b4, 0
  %afabn = icmp ne i32 %afab, 0
  ; CF
  %cf_r = select i1 %isres, i1 %bcfn, i1 false
  %cf_n = select i1 %isneg, i1 %anz, i1 %cf_r
  %cf_id0 = or i1 %isinc, %isdec
  %cf_id = select i1 %cf_id0, i1 %bcfn, i1 %cf_n
  %cf_s = select i1 %issubk, i1 %cfsub, i1 %cf_id
  %cf = select i1 %isadd, i1 %cfadd, i1 %cf_s
  ; OF
  %of_r = select i1 %isres, i1 %resof, i1 false
  %of_n = select i1 %isneg, i1 %incof, i1 %of_r
  %of_d = select i1 %isdec, i1 %decof, i1 %of_n
  %of_i = select i1 %isinc, i1 %incof, i1 %of_d
  %of_s = select i1 %issubk, i1 %ofsub, i1 %of_i
  %of = select i1 %isadd, i1 %ofadd, i1 %of_s
  ; AF
  %af_r = select i1 %isres, i1 %resaf, i1 false
  %af_n = select i1 %isneg, i1 %negaf, i1 %af_r
  %af_d = select i1 %isdec, i1 %decaf, i1 %af_n
  %af_i = select i1 %isinc, i1 %incaf, i1 %af_d
  %af_s = select i1 %issubk, i1 %afabn, i1 %af_i
  %af = select i1 %isadd, i1 %afabn, i1 %af_s
  %cfv = zext i1 %cf to i32
  %ofb = select i1 %of, i32 2048, i32 0
  %afb = select i1 %af, i32 16, i32 0
  %f1 = or i32 %cfv, %pf
  %f2 = or i32 %f1, %zf
  %f3 = or i32 %f2, %sf
  %f4 = or i32 %f3, %ofb
  %f5 = or i32 %f4, %afb
  %keep = and i32 %fl, -2262
  %out = or i32 %keep, %f5
  ret i32 %out
}
declare i32 @llvm.ctpop.i32(i32)
"""


CHAIN_SLOT = 100            # exit kinds of the exit block beyond the EXIT_* codes
CHAIN_DISPATCH = 101
_CODES = {"fault": rt.EXIT_FAULT, "stop_after": rt.EXIT_STOP_AFTER, "interp": rt.EXIT_INTERP,
          "until": rt.EXIT_UNTIL}


class Unsupported(Exception):
    """The instruction has no native semantics (yet): the block ends before it."""


class BlockEmitter:
    def __init__(self, name, start_eip, lin, n, xmax, self_loop_ok=True):
        self.name = name
        self.start = start_eip
        self.lin = lin
        self.n = n                    # instructions compiled in this block
        self.xmax = xmax              # CS limit of the block's mode
        self.body = []
        self.tmp = 0
        self.used = set()
        self.dirty = set()
        self.flags_used = False
        self.segs_used = set()
        self.known = None             # (kind, szi) of the lazy record, if known here
        self.i = 0                    # index of the instruction being emitted
        self.eip = start_eip
        self.next_eip = start_eip
        self.stubs = []               # IR of exit blocks
        self.slots = 0
        self.needs_mat = False
        self.uses_stack = False
        self.stop_var = False
        self.self_loop_ok = self_loop_ok
        self.ended = False
        self.count_entries = False    # set for blocks that may be recompiled optimised
        self.mem_used = set()
        self.has_loop = False
        self.cur_label = "body"
        self.exits = []   # (pred label, eip, retired, exit code, slot global): see _exit_block
        self.helper_ops = []          # EIPs of instructions run through emu_op
        self.until_span = None        # prologue's stop-address range when not the whole span

    # --- basics ----------------------------------------------------------------
    def t(self):
        self.tmp += 1
        return "%%t%d" % self.tmp

    def label(self, hint="L"):
        self.tmp += 1
        return "%s%d" % (hint, self.tmp)

    def emit(self, line):
        self.body.append("  " + line)

    def put_label(self, lab):
        self.body.append(lab + ":")
        self.cur_label = lab

    def op(self, text):
        """Emit ``%tN = text``; return %tN."""
        v = self.t()
        self.emit("%s = %s" % (v, text))
        return v

    # --- instruction framing ------------------------------------------------------
    def begin(self, i, ins):
        self.i = i
        self.eip = ins.eip
        self.next_eip = ins.next_eip
        self.fault_label = "fault%d" % i
        self.fault_used = False
        self.stop_used = False
        self.body.append("; %x %s" % (ins.eip, ins.row.mnem))
        if i and i == self.n - 1:
            # The run's stop address is checked by the prologue for the block's
            # first n - 1 instructions and here for the last one: a run that
            # stops right before a block's last instruction (a HLT after the
            # code, a breakpoint on a jump) still runs the rest natively.
            self.until_span = (ins.eip - self.start) & 0xFFFFFFFF
            up = self.op("getelementptr i64, ptr %%cp, i64 %d" % rt.CTX_UNTIL)
            hit = self.op("icmp eq i64 %s, %d" % (self.op("load i64, ptr %s" % up), ins.eip))
            self.to_shared("until", hit, ins.eip, i)

    def finish(self):
        """After one instruction: the stop-after check (a helper changed code
        or mappings under us, or an event is pending)."""
        if self.stop_used and not self.ended:
            self.to_shared("stop_after", self.op("load i1, ptr %stop"), self.next_eip, self.i + 1)

    # --- instructions without native semantics ----------------------------------
    _SNAP = ("known", "stop_used", "stop_var", "has_loop", "ended", "uses_stack", "needs_mat",
             "slots")

    def checkpoint(self):
        return (len(self.body), len(self.exits), set(self.used), set(self.dirty),
                set(self.mem_used), len(self.helper_ops),
                tuple(getattr(self, a) for a in self._SNAP))

    def rollback(self, cp):
        nb, nx, used, dirty, mem, nh, rest = cp
        del self.body[nb:]
        del self.exits[nx:]
        self.used, self.dirty, self.mem_used = used, dirty, mem
        del self.helper_ops[nh:]
        for a, v in zip(self._SNAP, rest):
            setattr(self, a, v)
        self.cur_label = self._label_at(nb)

    def _label_at(self, nb):
        for line in reversed(self.body[:nb]):
            if line.endswith(":") and not line.startswith(" "):
                return line[:-1]
        return "body"

    def helper_op(self, ins):
        """Run the instruction through the interpreter's own closure, called
        from native code (helper ``emu_op``): the registers go back to the
        state struct first and are reloaded after, so the closure sees and
        leaves the exact architectural state.  Sensitive instructions take
        this path too: the closure *is* the checked VMM helper."""
        self.helper_ops.append(ins.eip)
        k = len(self.helper_ops)
        self.emit(";;FLUSH %d" % k)
        self.emit("store i32 %d, ptr %%R8" % ins.eip)
        r = self.op("call i32 @emu_op(i64 %%ctx, i32 %d, i32 %d)" % (ins.eip, self._ahead()))
        self.emit(";;RELOAD %d" % k)
        self.known = None
        self.to_shared("fault", self.op("icmp slt i32 %s, 0" % r), self.eip, self.i)
        if "jmp" in ins.row.attrs:
            # it set EIP itself (a far transfer, INT, IRET, ...).  Unless it
            # asked for a stop (mode, event, dropped code: 1; not run: 2) the
            # next block is looked up in the dispatch table like any indirect
            # jump's: IRET alone made ~40k returns to Python per Linux boot
            self.to_shared("interp", self.op("icmp eq i32 %s, 2" % r), self.eip, self.i)
            eipv = self.op("load i32, ptr %R8")
            self.to_shared("stop_after", self.op("icmp ne i32 %s, 0" % r), eipv, self.i + 1)
            self.exit_dynamic(eipv, self.i + 1)
            self.ended = True
            return
        self.to_shared("interp", self.op("icmp eq i32 %s, 2" % r), self.eip, self.i)
        self.to_shared("stop_after", self.op("icmp eq i32 %s, 1" % r), self.next_eip, self.i + 1)

    def to_shared(self, kind, cond, eip, retired):
        """Branch to the shared exit ``kind`` when i1 ``cond`` holds."""
        cont = self.label("c")
        self.exits.append((self.cur_label, str(eip), retired, _CODES[kind], "null"))
        self.emit("br i1 %s, label %%exit, label %%%s" % (cond, cont))
        self.put_label(cont)

    # --- registers ------------------------------------------------------------------
    def reg(self, r):
        self.used.add(r)
        return self.op("load i32, ptr %%v%d" % r)

    def set_reg(self, r, v):
        self.used.add(r)
        self.dirty.add(r)
        self.emit("store i32 %s, ptr %%v%d" % (v, r))

    def reg_sz(self, r, size):
        if size == 4:
            return self.reg(r)
        if size == 2:
            return self.op("and i32 %s, 65535" % self.reg(r))
        if r < 4:
            return self.op("and i32 %s, 255" % self.reg(r))
        v = self.op("lshr i32 %s, 8" % self.reg(r - 4))
        return self.op("and i32 %s, 255" % v)

    def set_reg_sz(self, r, size, v):
        """v already masked to size."""
        if size == 4:
            self.set_reg(r, v)
            return
        if size == 2:
            old = self.op("and i32 %s, -65536" % self.reg(r))
            self.set_reg(r, self.op("or i32 %s, %s" % (old, v)))
            return
        if r < 4:
            old = self.op("and i32 %s, -256" % self.reg(r))
            self.set_reg(r, self.op("or i32 %s, %s" % (old, v)))
            return
        old = self.op("and i32 %s, -65281" % self.reg(r - 4))
        sh = self.op("shl i32 %s, 8" % v)
        self.set_reg(r - 4, self.op("or i32 %s, %s" % (old, sh)))

    # --- addresses --------------------------------------------------------------------
    def ea(self, ins):
        """Effective offset of the ModRM memory operand (32-bit addressing)."""
        v = None
        if ins.base is not None:
            v = self.reg(ins.base)
        if ins.index is not None:
            x = self.reg(ins.index)
            if ins.scale:
                x = self.op("shl i32 %s, %d" % (x, ins.scale))
            v = x if v is None else self.op("add i32 %s, %s" % (v, x))
        d = ins.disp & 0xFFFFFFFF
        if v is None:
            return str(d - (1 << 32) if d & 0x80000000 else d)
        if d:
            v = self.op("add i32 %s, %d" % (v, d - (1 << 32) if d & 0x80000000 else d))
        return v

    # --- memory -----------------------------------------------------------------------
    def _seg(self, s):
        self.segs_used.add(s)
        return "%%sb%d" % s, "%%sr0_%d" % s, "%%sr1_%d" % s, "%%sw0_%d" % s, "%%sw1_%d" % s

    def _ahead(self):
        return self.n - self.i

    def load(self, seg, off, size):
        """Read size bytes at seg:off; returns an i32 (zero-extended).  The
        access itself is a module-level routine (``mem_routine``): a call here
        keeps the IR of a block small, which is what its compile time depends
        on; modules compiled with optimisation inline it."""
        self.mem_used.add("ld%d" % size)
        r = self.op("call i64 @emurt_ld%d(i64 %%ctx, i32 %d, i32 %s, i32 %d)"
                    % (size, seg, off, self._ahead()))
        neg = self.op("icmp slt i64 %s, 0" % r)
        self.exits.append((self.cur_label, str(self.eip), self.i, rt.EXIT_FAULT, "null"))
        ok = self.label("rk")
        self.emit("br i1 %s, label %%exit, label %%%s" % (neg, ok))
        self.put_label(ok)
        return self.op("trunc i64 %s to i32" % r)

    def store(self, seg, off, size, val):
        """Write the low size bytes of val at seg:off."""
        self.mem_used.add("st%d" % size)
        self.stop_used = True
        self.stop_var = True
        r = self.op("call i32 @emurt_st%d(i64 %%ctx, i32 %d, i32 %s, i32 %s, i32 %d)"
                    % (size, seg, off, val, self._ahead()))
        neg = self.op("icmp slt i32 %s, 0" % r)
        self.exits.append((self.cur_label, str(self.eip), self.i, rt.EXIT_FAULT, "null"))
        ok = self.label("wk")
        self.emit("br i1 %s, label %%exit, label %%%s" % (neg, ok))
        self.put_label(ok)
        st = self.op("icmp ne i32 %s, 0" % r)
        old = self.op("load i1, ptr %stop")
        self.emit("store i1 %s, ptr %%stop" % self.op("or i1 %s, %s" % (old, st)))

    # --- the stack (SS.B = 1 is checked once at block entry) --------------------------
    def push(self, val, size=4):
        self.uses_stack = True
        sp = self.op("sub i32 %s, %d" % (self.reg(4), size))
        self.store(2, sp, size, val)
        return sp          # the caller commits ESP after its last access

    def pop_read(self, size=4):
        self.uses_stack = True
        sp = self.reg(4)
        v = self.load(2, sp, size)
        return v, sp

    # --- lazy flags -----------------------------------------------------------------------
    def lf(self, k):
        w = _LF_WORD[k]
        self.used.add(w)
        return self.op("load i32, ptr %%v%d" % w)

    def set_lf(self, k, v):
        w = _LF_WORD[k]
        self.used.add(w)
        self.dirty.add(w)
        self.emit("store i32 %s, ptr %%v%d" % (v, w))

    def set_flags(self, kind, size, res, a=None, b=None):
        """Record a flag-setting operation exactly as the interpreter does."""
        szi = SZI[size]
        self.set_lf(0, str(kind << 2 | szi))
        self.set_lf(1, res)
        if a is not None:
            self.set_lf(2, a)
        if b is not None:
            self.set_lf(3, b)
        self.known = (kind, szi)

    def set_flags_dynamic(self, op_val, res, a, b):
        self.set_lf(0, op_val)
        self.set_lf(1, res)
        self.set_lf(2, a)
        self.set_lf(3, b)
        self.known = None

    def eflags(self):
        """Materialised EFLAGS as an i32 (the lazy record stays as it is)."""
        self.needs_mat = True
        return self.op("call i32 @emurt_mat(i32 %s, i32 %s, i32 %s, i32 %s, i32 %s)"
                       % (self.lf(0), self.lf(1), self.lf(2), self.lf(3), self.lf(4)))

    def _bit(self, fl, bit):
        x = self.op("and i32 %s, %d" % (fl, bit))
        return self.op("icmp ne i32 %s, 0" % x)

    def materialize(self, when=None):
        """Do what flags.materialize(R) does to the lazy record: EFLAGS = the
        materialised value, LF_OP = 0 (LF_RES/A/B stay).  The interpreter does
        it as a side effect of reading some flags (get_cf on an ADC/SBB
        record, a condition it does not answer from the record), and that
        side effect is visible: BT* turn a lazy record into K_RES (AF = OF =
        0) but patch only CF into an exact EFLAGS.  So tier 1 materialises
        exactly where the interpreter does.  ``when``: an i1 (only then), or
        None (always).  Returns the materialised EFLAGS (i32)."""
        fl = self.eflags()
        if when is None:
            self.set_lf(4, fl)
            self.set_lf(0, "0")
        else:
            old_op, old_fl = self.lf(0), self.lf(4)
            self.set_lf(4, self.op("select i1 %s, i32 %s, i32 %s" % (when, fl, old_fl)))
            self.set_lf(0, self.op("select i1 %s, i32 0, i32 %s" % (when, old_op)))
        self.known = None
        return fl

    def _kind_is(self, *kinds):
        """i1: the (run-time) lazy record's kind is one of ``kinds``."""
        k = self.op("lshr i32 %s, 2" % self.lf(0))
        out = None
        for kind in kinds:
            c = self.op("icmp eq i32 %s, %d" % (k, kind))
            out = c if out is None else self.op("or i1 %s, %s" % (out, c))
        return out

    def cf(self):
        """CF as i1, the way flags.get_cf reads it (ADC, SBB, INC, DEC, RCL,
        RCR, SALC ...), side effect included: an ADC1/SBB1 record is
        materialised."""
        if self.known is None:
            return self._bit(self.materialize(self._kind_is(K_ADC1, K_SBB1)), 1)
        kind, szi = self.known
        res, a, b = self.lf(1), None, None
        if kind in (K_ADC1, K_SBB1):
            return self._bit(self.materialize(), 1)
        if kind == K_ADD:
            a = self.lf(2)
            return self.op("icmp ult i32 %s, %s" % (res, a))
        if kind == K_SUB:
            a, b = self.lf(2), self.lf(3)
            return self.op("icmp ult i32 %s, %s" % (a, b))
        if kind == K_LOGIC:
            return "false"
        if kind in (K_INC, K_DEC, K_RES):
            return self._bit(self.lf(3), 1)
        if kind == K_NEG:
            return self.op("icmp ne i32 %s, 0" % self.lf(2))
        return self._bit(self.eflags(), 1)

    def zf(self):
        if self.known is None:
            return self._bit(self.eflags(), 0x40)
        return self.op("icmp eq i32 %s, 0" % self.lf(1))

    def sf(self):
        if self.known is None:
            return self._bit(self.eflags(), 0x80)
        return self._bit(self.lf(1), SIGNS[self.known[1]])

    def of(self):
        if self.known is None:
            return self._bit(self.eflags(), 0x800)
        kind, szi = self.known
        sign = SIGNS[szi]
        res = self.lf(1)
        if kind in (K_ADD, K_ADC1):
            a, b = self.lf(2), self.lf(3)
            x = self.op("and i32 %s, %s" % (self.op("xor i32 %s, %s" % (a, res)),
                                            self.op("xor i32 %s, %s" % (b, res))))
            return self._bit(x, sign)
        if kind in (K_SUB, K_SBB1):
            a, b = self.lf(2), self.lf(3)
            x = self.op("and i32 %s, %s" % (self.op("xor i32 %s, %s" % (a, b)),
                                            self.op("xor i32 %s, %s" % (a, res))))
            return self._bit(x, sign)
        if kind == K_LOGIC:
            return "false"
        if kind in (K_INC, K_NEG):
            return self.op("icmp eq i32 %s, %d" % (res, sign))
        if kind == K_DEC:
            return self.op("icmp eq i32 %s, %d" % (res, sign - 1))
        if kind == K_RES:
            return self._bit(self.lf(3), 2)
        return self._bit(self.eflags(), 0x800)

    def pf(self):
        if self.known is None:
            return self._bit(self.eflags(), 0x4)
        lb = self.op("and i32 %s, 255" % self.lf(1))
        pc = self.op("call i32 @llvm.ctpop.i32(i32 %s)" % lb)
        self.needs_ctpop = True
        return self.op("icmp eq i32 %s, 0" % self.op("and i32 %s, 1" % pc))

    def cond(self, cc):
        """Condition code cc (Jcc/SETcc/CMOVcc low nibble) as i1, with the
        interpreter's side effect (flags.make_cond): Z and S come from the
        record as it is; B, BE, L, LE from a SUB record's operands; every
        other case materialises the flags (and the record)."""
        base, neg = cc & 0xE, cc & 1
        k = self.known[0] if self.known else None
        if base == 4:
            r = self.zf()
        elif base == 8:
            r = self.sf()
        elif k == K_SUB and base in (2, 6, 12, 14):
            a, b = self.lf(2), self.lf(3)
            if base == 2:
                r = self.op("icmp ult i32 %s, %s" % (a, b))
            elif base == 6:
                r = self.op("icmp ule i32 %s, %s" % (a, b))
            elif base == 12:
                r = self.op("icmp slt i32 %s, %s" % self._signed_ab())
            else:
                r = self.op("icmp sle i32 %s, %s" % self._signed_ab())
        else:
            if self.known is None and base in (2, 6, 12, 14):
                # a SUB record answers these without materialising: decided at run time
                fl = self.materialize(self.op("xor i1 %s, true" % self._kind_is(K_SUB)))
            else:
                fl = self.materialize()
            if base == 0:
                r = self._bit(fl, 0x800)
            elif base == 2:
                r = self._bit(fl, 1)
            elif base == 6:
                r = self._bit(fl, 0x41)
            elif base == 10:
                r = self._bit(fl, 0x4)
            else:
                s_ = self.op("lshr i32 %s, 7" % fl)
                o_ = self.op("lshr i32 %s, 11" % fl)
                lt = self._bit(self.op("xor i32 %s, %s" % (s_, o_)), 1)
                r = lt if base == 12 else self.op("or i1 %s, %s" % (lt, self._bit(fl, 0x40)))
        if neg:
            r = self.op("xor i1 %s, true" % r)
        return r

    def _signed_ab(self):
        """LF_A, LF_B sign-extended from the operation size (K_SUB only)."""
        szi = self.known[1]
        a, b = self.lf(2), self.lf(3)
        if szi == 2:
            return a, b
        sh = 24 if szi == 0 else 16
        out = []
        for v in (a, b):
            x = self.op("shl i32 %s, %d" % (v, sh))
            out.append(self.op("ashr i32 %s, %d" % (x, sh)))
        return tuple(out)

    # --- block ends -------------------------------------------------------------------------
    def exit_direct(self, target, retired):
        """Continue at the constant EIP ``target`` after ``retired`` instructions."""
        if target == self.start and self.self_loop_ok and retired == self.n:
            self.emit("br label %head")
            self.has_loop = True
            return
        slot = "@s_%s_%d" % (self.name, self.slots)
        self.slots += 1
        self.exits.append((self.cur_label, str(target), retired, CHAIN_SLOT, slot))
        self.emit("br label %exit")

    def exit_dynamic(self, eip_val, retired):
        self.exits.append((self.cur_label, eip_val, retired, CHAIN_DISPATCH, "null"))
        self.emit("br label %exit")

    def exit_interp(self, eip, retired):
        self.exits.append((self.cur_label, str(eip), retired, rt.EXIT_INTERP, "null"))
        self.emit("br label %exit")

    # --- assembling the function --------------------------------------------------------
    def _flush(self, out, tag):
        for w in sorted(self.dirty):
            out.append("  %%%s_v%d = load i32, ptr %%v%d" % (tag, w, w))
            out.append("  store i32 %%%s_v%d, ptr %%R%d" % (tag, w, w))

    def _give_back(self, out, tag, amount):
        """Return ``amount`` (an i64 constant or value) unretired instructions."""
        if amount == "0" or amount == 0:
            return
        out.append("  %%%s_b0 = load i64, ptr %%budgetp" % tag)
        out.append("  %%%s_b1 = add i64 %%%s_b0, %s" % (tag, tag, amount))
        out.append("  store i64 %%%s_b1, ptr %%budgetp" % tag)

    def _exit_block(self):
        """The one exit of the block: every way out (a chained transfer, a
        fault, an instruction to interpret, a stop after a helper) branches
        here with its EIP, unretired count, exit code and slot as phi values;
        the registers are written back once."""
        ex = self.exits
        if not ex:
            return []
        out = ["exit:"]
        out.append("  %%x_e = phi i32 %s" % ", ".join("[%s, %%%s]" % (e, p) for p, e, _, _, _ in ex))
        out.append("  %%x_g = phi i64 %s" % ", ".join(
            "[%d, %%%s]" % (self.n - r, p) for p, _, r, _, _ in ex))
        out.append("  %%x_k = phi i32 %s" % ", ".join("[%d, %%%s]" % (k, p) for p, _, _, k, _ in ex))
        slots = any(s != "null" for _, _, _, _, s in ex)
        if slots:
            out.append("  %%x_s = phi ptr %s" % ", ".join("[%s, %%%s]" % (s, p)
                                                          for p, _, _, _, s in ex))
        self._flush(out, "x")
        if any(self.n - r for _, _, r, _, _ in ex):
            self._give_back(out, "x", "%x_g")
        out.append("  store i32 %x_e, ptr %R8")
        out.append("  %%x_ch = icmp eq i32 %%x_k, %d" % CHAIN_SLOT)
        out.append("  br i1 %x_ch, label %x_slot, label %x_nch")
        out.append("x_slot:")
        if slots:
            out.append("  %x_f = load i64, ptr %x_s")
            out.append("  %x_z = icmp eq i64 %x_f, 0")
            out.append("  br i1 %x_z, label %x_miss, label %x_go")
            out.append("x_miss:")
            out.append("  %x_sa = ptrtoint ptr %x_s to i64")
            out.append("  store i64 %x_sa, ptr %slotp")
            out.append("  ret i32 %d" % rt.EXIT_LOOKUP)
        else:
            out.append("  unreachable")
        out.append("x_nch:")
        out.append("  %%x_dy = icmp eq i32 %%x_k, %d" % CHAIN_DISPATCH)
        out.append("  br i1 %x_dy, label %x_dyn, label %x_ret")
        out.append("x_ret:")
        out.append("  ret i32 %x_k")
        out.append("x_dyn:")
        if any(k == CHAIN_DISPATCH for _, _, _, k, _ in ex):
            out.append("  %x_f2 = call i64 @emurt_dispatch(i64 %ctx, i32 %x_e)")
            out.append("  %x_z2 = icmp eq i64 %x_f2, 0")
            out.append("  br i1 %x_z2, label %x_miss2, label %x_go")
            out.append("x_miss2:")
            out.append("  ret i32 %d" % rt.EXIT_LOOKUP)
        else:
            out.append("  unreachable")
        if slots or any(k == CHAIN_DISPATCH for _, _, _, k, _ in ex):
            out.append("x_go:")
            inc = []
            if slots:
                inc.append("[%x_f, %x_slot]")
            if any(k == CHAIN_DISPATCH for _, _, _, k, _ in ex):
                inc.append("[%x_f2, %x_dyn]")
            out.append("  %%x_t = phi i64 %s" % ", ".join(inc))
            out.append("  %x_p = inttoptr i64 %x_t to ptr")
            out.append("  %x_r = musttail call i32 %x_p(i64 %ctx)")
            out.append("  ret i32 %x_r")
        return out

    def _prologue_call(self, var):
        vpn = self.lin >> 12
        return ("  %%%s = call i32 @emurt_prologue(i64 %%ctx, i32 %d, ptr @p_%s, i64 %d, i64 %d, "
                "i64 %d, i32 %d)" % (var, vpn & (rt.NTLB - 1), self.name, self.n, self.start,
                                      max(1, self.until_span or self.span),
                                      1 if self.uses_stack else 0))

    def function(self):
        """This block's function and globals (module_text() makes a module)."""
        self.slot_globals = []
        name = self.name
        stubs = self._exit_block()
        self.slot_globals = sorted({x[4] for x in self.exits if x[4] != "null"})
        out = []
        for g in self.slot_globals:
            out.append("%s = global i64 0" % g)
        out.append("@p_%s = global i64 -1" % name)      # expected code-page TLB entry
        if self.count_entries:
            out.append("@h_%s = global i64 0" % name)   # entries (tier up)
        out.append("define i32 @b_%s(i64 %%ctx) {" % name)
        out.append("entry:")
        for w in sorted(self.used):
            out.append("  %%v%d = alloca i32" % w)
        if self.stop_var:
            out.append("  %stop = alloca i1")
        # entry checks (routine @prologue): nothing is loaded yet, so a block
        # that may not run returns with the state exactly as it found it
        out.append(self._prologue_call("pc"))
        out.append("  %%pgo = icmp eq i32 %%pc, %d" % PROLOGUE_GO)
        out.append("  br i1 %pgo, label %pre, label %pstop")
        out.append("pstop:")
        out.append("  ret i32 %pc")
        out.append("pre:")
        out.append("  %cp = inttoptr i64 %ctx to ptr")
        if self.count_entries:
            # tier up: a block entered HOT_ENTRIES times asks for optimised code
            out.append("  %%hc = load i64, ptr @h_%s" % name)
            out.append("  %hc1 = add i64 %hc, 1")
            out.append("  store i64 %%hc1, ptr @h_%s" % name)
            out.append("  %%hhot = icmp uge i64 %%hc1, %d" % rt.HOT_ENTRIES)
            out.append("  br i1 %hhot, label %hmark, label %pre1")
            out.append("hmark:")
            out.append("  %%hslot = getelementptr i64, ptr %%cp, i64 %d" % rt.CTX_HOT)
            out.append("  %%haddr = ptrtoint ptr @h_%s to i64" % name)
            out.append("  store i64 %haddr, ptr %hslot")
            out.append("  br label %pre1")
            out.append("pre1:")
        out.append("  %%Rp_a = getelementptr i64, ptr %%cp, i64 %d" % rt.CTX_R)
        out.append("  %Rp = load ptr, ptr %Rp_a")
        out.append("  %%budgetp = getelementptr i64, ptr %%cp, i64 %d" % rt.CTX_BUDGET)
        out.append("  %%slotp = getelementptr i64, ptr %%cp, i64 %d" % rt.CTX_SLOT)
        for w in sorted(self.used | {8}):
            out.append("  %%R%d = getelementptr i32, ptr %%Rp, i64 %d" % (w, w))
        for w in sorted(self.used):
            out.append("  %%in%d = load i32, ptr %%R%d" % (w, w))
            out.append("  store i32 %%in%d, ptr %%v%d" % (w, w))
        out.append("  br label %body")
        if self.has_loop:
            # the back edge: the same checks, with the registers to write back
            out.append("head:")
            out.append(self._prologue_call("lc"))
            out.append("  %%lgo = icmp eq i32 %%lc, %d" % PROLOGUE_GO)
            out.append("  br i1 %lgo, label %body, label %lstop")
            out.append("lstop:")
            self._flush(out, "ls")
            out.append("  store i32 %d, ptr %%R8" % self.start)
            out.append("  ret i32 %lc")
        out.append("body:")
        if self.stop_var:
            out.append("  store i1 false, ptr %stop")
        for line in self.body:
            if line.startswith("  ;;FLUSH "):
                k = line.split()[1]
                for w in sorted(self.dirty):
                    out.append("  %%hf%s_%d = load i32, ptr %%v%d" % (k, w, w))
                    out.append("  store i32 %%hf%s_%d, ptr %%R%d" % (k, w, w))
            elif line.startswith("  ;;RELOAD "):
                k = line.split()[1]
                for w in sorted(self.used):
                    out.append("  %%hr%s_%d = load i32, ptr %%R%d" % (k, w, w))
                    out.append("  store i32 %%hr%s_%d, ptr %%v%d" % (k, w, w))
            else:
                out.append(line)
        out.extend(stubs)
        out.append("}")
        return "\n".join(out) + "\n"


PROLOGUE_GO = 255
PROLOGUE_FN = """
define internal i32 @emurt_prologue(i64 %%ctx, i32 %%slot, ptr %%pg, i64 %%n, i64 %%start, i64 %%span,
                              i32 %%stack) alwaysinline {
entry:
  %%cp = inttoptr i64 %%ctx to ptr
  %%chp = getelementptr i64, ptr %%cp, i64 %(chains)d
  %%ch = load i64, ptr %%chp
  %%ch1 = add i64 %%ch, 1
  store i64 %%ch1, ptr %%chp
  %%tp = getelementptr i64, ptr %%cp, i64 %(tlbr)d
  %%tlb = load ptr, ptr %%tp
  %%ep = getelementptr i64, ptr %%tlb, i32 %%slot
  %%e = load i64, ptr %%ep
  %%x = load i64, ptr %%pg
  %%pok = icmp eq i64 %%e, %%x
  br i1 %%pok, label %%c_ss, label %%refill
refill:
  ; not in the native TLB (flushed, or evicted): walk, then check again
  %%xv = lshr i64 %%x, 32
  %%xv32 = trunc i64 %%xv to i32
  %%xl = shl i32 %%xv32, 12
  %%wb = call i64 @emurt_walk(i64 %%ctx, i32 %%xl, i32 0)
  %%e2 = load i64, ptr %%ep
  %%pok2 = icmp eq i64 %%e2, %%x
  br i1 %%pok2, label %%c_ss, label %%remap
remap:
  %%sp = getelementptr i64, ptr %%cp, i64 %(slot)d
  store i64 0, ptr %%sp
  ret i32 %(lookup)d
c_ss:
  %%needss = icmp ne i32 %%stack, 0
  br i1 %%needss, label %%c_ss2, label %%c_x
c_ss2:
  %%sbp = getelementptr i64, ptr %%cp, i64 %(ssbig)d
  %%sb = load i64, ptr %%sbp
  %%sbz = icmp eq i64 %%sb, 0
  br i1 %%sbz, label %%bail, label %%c_x
bail:
  ret i32 %(bail)d
c_x:
  %%xp = getelementptr i64, ptr %%cp, i64 %(exitreq)d
  %%xr = load i64, ptr %%xp
  %%bp = getelementptr i64, ptr %%cp, i64 %(budget)d
  %%bud = load i64, ptr %%bp
  %%up = getelementptr i64, ptr %%cp, i64 %(until)d
  %%unt = load i64, ptr %%up
  %%c1 = icmp ne i64 %%xr, 0
  %%c2 = icmp slt i64 %%bud, %%n
  %%ud = sub i64 %%unt, %%start
  %%c3 = icmp ult i64 %%ud, %%span
  %%c12 = or i1 %%c1, %%c2
  %%c123 = or i1 %%c12, %%c3
  br i1 %%c123, label %%stop, label %%go
stop:
  %%k1 = select i1 %%c2, i32 %(budget_code)d, i32 %(until_code)d
  %%k = select i1 %%c1, i32 %(event_code)d, i32 %%k1
  ret i32 %%k
go:
  %%b2 = sub i64 %%bud, %%n
  store i64 %%b2, ptr %%bp
  ret i32 %(go)d
}
""" % dict(chains=rt.CTX_CHAINS, tlbr=rt.CTX_TLBR, slot=rt.CTX_SLOT, lookup=rt.EXIT_LOOKUP,
           ssbig=rt.CTX_SS_BIG, bail=rt.EXIT_BAIL, exitreq=rt.CTX_EXIT_REQ,
           budget=rt.CTX_BUDGET, until=rt.CTX_UNTIL, budget_code=rt.EXIT_BUDGET,
           until_code=rt.EXIT_UNTIL, event_code=rt.EXIT_EVENT, go=PROLOGUE_GO)

DISPATCH_FN = """
define internal i64 @emurt_dispatch(i64 %%ctx, i32 %%eip) {
entry:
  %%cp = inttoptr i64 %%ctx to ptr
  %%csp = getelementptr i64, ptr %%cp, i64 %(csbase)d
  %%csq = load i64, ptr %%csp
  %%cs = trunc i64 %%csq to i32
  %%l = add i32 %%cs, %%eip
  %%l64 = zext i32 %%l to i64
  %%mp = getelementptr i64, ptr %%cp, i64 %(mode)d
  %%mode = load i64, ptr %%mp
  %%k = or i64 %%l64, %%mode
  %%h1 = lshr i32 %%l, 2
  %%h2 = lshr i32 %%l, 14
  %%h3 = xor i32 %%h1, %%h2
  %%h = and i32 %%h3, %(mask)d
  %%i = shl i32 %%h, 1
  %%dp = getelementptr i64, ptr %%cp, i64 %(disp)d
  %%d = load ptr, ptr %%dp
  %%ep = getelementptr i64, ptr %%d, i32 %%i
  %%ek = load i64, ptr %%ep
  %%eq = icmp eq i64 %%ek, %%k
  br i1 %%eq, label %%hit, label %%miss
hit:
  %%fp = getelementptr i64, ptr %%ep, i32 1
  %%f = load i64, ptr %%fp
  ret i64 %%f
miss:
  %%sp = getelementptr i64, ptr %%cp, i64 %(slot)d
  store i64 0, ptr %%sp
  ret i64 0
}
""" % dict(csbase=rt.CTX_SEGS + rt.SEG_WORDS * 1, mode=rt.CTX_MODE, mask=rt.NDISP - 1,
           disp=rt.CTX_DISPATCH, slot=rt.CTX_SLOT)


def mem_routine(kind, size):
    """IR of the module-level access routine ld<size>/st<size>.

    Fast path: the segment bounds (mirrored in the context block), then the
    native TLB (tag = vpn, no page crossing), then a direct host access into
    guest RAM.  Anything else calls the Python helper, which does the
    interpreter's full access (segment fault, page walk, #PF, MMIO, watched
    pages) and refills the native TLB.  Loads return the value or a negative
    number (exit: a fault is pending); stores return 0, 1 (done, but stop
    after this instruction) or a negative number."""
    ty = {1: "i8", 2: "i16", 4: "i32"}[size]
    ld = kind == "ld"
    tlb = rt.CTX_TLBR if ld else rt.CTX_TLBW
    lo_w, hi_w = (1, 2) if ld else (3, 4)
    out = []
    if ld:
        out.append("define internal i64 @emurt_ld%d(i64 %%ctx, i32 %%seg, i32 %%off, i32 %%ahead) "
                   "alwaysinline {" % size)
    else:
        out.append("define internal i32 @emurt_st%d(i64 %%ctx, i32 %%seg, i32 %%off, i32 %%val, "
                   "i32 %%ahead) alwaysinline {" % size)
    out.append("entry:")
    out.append("  %cp = inttoptr i64 %ctx to ptr")
    out.append("  %s5 = mul i32 %seg, 5")
    out.append("  %%sw = add i32 %%s5, %d" % rt.CTX_SEGS)
    out.append("  %bp = getelementptr i64, ptr %cp, i32 %sw")
    out.append("  %base64 = load i64, ptr %bp")
    out.append("  %%lop = getelementptr i64, ptr %%bp, i32 %d" % lo_w)
    out.append("  %lo = load i64, ptr %lop")
    out.append("  %%hip = getelementptr i64, ptr %%bp, i32 %d" % hi_w)
    out.append("  %hi = load i64, ptr %hip")
    out.append("  %o64 = zext i32 %off to i64")
    out.append("  %c1 = icmp sge i64 %o64, %lo")
    out.append("  %%end = add i64 %%o64, %d" % (size - 1))
    out.append("  %c2 = icmp sle i64 %end, %hi")
    out.append("  %base = trunc i64 %base64 to i32")
    out.append("  %lin = add i32 %base, %off")
    out.append("  %vpn = lshr i32 %lin, 12")
    out.append("  %%slot = and i32 %%vpn, %d" % (rt.NTLB - 1))
    out.append("  %%tp = getelementptr i64, ptr %%cp, i32 %d" % tlb)
    out.append("  %tlb = load ptr, ptr %tp")
    out.append("  %ep = getelementptr i64, ptr %tlb, i32 %slot")
    out.append("  %e = load i64, ptr %ep")
    out.append("  %tag64 = lshr i64 %e, 32")
    out.append("  %tag = trunc i64 %tag64 to i32")
    out.append("  %c3 = icmp eq i32 %tag, %vpn")
    out.append("  %pofs = and i32 %lin, 4095")
    out.append("  %%c4 = icmp ule i32 %%pofs, %d" % (4096 - size))
    out.append("  %c12 = and i1 %c1, %c2")
    out.append("  %c34 = and i1 %c3, %c4")
    out.append("  %ok = and i1 %c12, %c34")
    out.append("  br i1 %ok, label %fast, label %miss")
    # a native TLB miss inside the segment and the page: the native walk
    # (tlbwalk.py) fills the entry, or sends the access to Python
    out.append("miss:")
    out.append("  %c124 = and i1 %c12, %c4")
    out.append("  br i1 %c124, label %walk, label %slow")
    out.append("walk:")
    out.append("  %%wb = call i64 @emurt_walk(i64 %%ctx, i32 %%lin, i32 %d)" % (0 if ld else 1))
    out.append("  %wok = icmp sge i64 %wb, 0")
    out.append("  br i1 %wok, label %acc, label %slow")
    out.append("fast:")
    out.append("  %hbt = and i64 %e, 4294967295")
    out.append("  br label %acc")
    out.append("acc:")
    out.append("  %hb = phi i64 [ %hbt, %fast ], [ %wb, %walk ]")
    out.append("  %p64 = zext i32 %pofs to i64")
    out.append("  %ha = add i64 %hb, %p64")
    out.append("  %%rp = getelementptr i64, ptr %%cp, i32 %d" % rt.CTX_RAM)
    out.append("  %ram = load ptr, ptr %rp")
    out.append("  %hp = getelementptr i8, ptr %ram, i64 %ha")
    if ld:
        out.append("  %%v = load %s, ptr %%hp, align 1" % ty)
        out.append("  %%v64 = zext %s %%v to i64" % ty)
        out.append("  ret i64 %v64")
        out.append("slow:")
        out.append("  %%r = call i64 @emu_rd(i64 %%ctx, i32 %%seg, i32 %%off, i32 %d, i32 %%ahead)"
                   % size)
        out.append("  ret i64 %r")
    else:
        if size == 4:
            out.append("  store i32 %val, ptr %hp, align 1")
        else:
            out.append("  %%tv = trunc i32 %%val to %s" % ty)
            out.append("  store %s %%tv, ptr %%hp, align 1" % ty)
        out.append("  ret i32 0")
        out.append("slow:")
        out.append("  %%r = call i32 @emu_wr(i64 %%ctx, i32 %%seg, i32 %%off, i32 %d, i32 %%val, "
                   "i32 %%ahead)" % size)
        out.append("  ret i32 %r")
    out.append("}")
    return "\n".join(out) + "\n"


ROUTINES = ("emurt_prologue", "emurt_dispatch", "emurt_mat") + tuple(
    "emurt_%s%d" % (k, n) for k in ("ld", "st") for n in (1, 2, 4)) + ("emurt_walk",)
# routines a block module only ever declares, even an optimised one: the miss
# path is large and cold, inlining it would only cost compile time
OUT_OF_LINE = ("emurt_walk",)


def _routine_defs():
    """{name: IR definition (internal, alwaysinline where it helps)}."""
    defs = {"emurt_prologue": PROLOGUE_FN, "emurt_dispatch": DISPATCH_FN,
            "emurt_mat": MAT_FN.replace("declare i32 @llvm.ctpop.i32(i32)\n", "")}
    for kind in ("ld", "st"):
        for size in (1, 2, 4):
            defs["emurt_%s%d" % (kind, size)] = mem_routine(kind, size)
    defs["emurt_walk"] = walk_fn()
    return defs


_DEFS = None


def _intrinsics(text):
    out = []
    if "@llvm.ctpop.i32" in text:
        out.append("declare i32 @llvm.ctpop.i32(i32)\n")
    if "@llvm.bswap.i32" in text:
        out.append("declare i32 @llvm.bswap.i32(i32)\n")
    for w in (8, 16, 32):
        for f in ("fshl", "fshr"):
            if "@llvm.%s.i%d" % (f, w) in text:
                out.append("declare i%d @llvm.%s.i%d(i%d, i%d, i%d)\n" % (w, f, w, w, w, w))
    return out


def module_text(functions, inline_routines=False):
    """One LLVM module holding the given block functions (``function()``
    texts).  The routines they call (prologue, dispatch, memory accesses,
    flag materialisation) are either defined in the module, internal and
    always inlined (optimised modules: a loop wants its memory accesses
    inline), or declared: they then come from the runtime object every
    engine loads first (``runtime_module_text``), which keeps the module of
    an ordinary block small and its compile time low."""
    global _DEFS
    if _DEFS is None:
        _DEFS = _routine_defs()
    body = "".join(functions)
    parts = [HELPER_DECLS, body]
    if inline_routines:
        # the inlined routines' own calls count too (ld/st call the walk)
        for name in ROUTINES:
            if name not in OUT_OF_LINE and "@%s(" % name in body:
                body += _DEFS[name]
    for name in ROUTINES:
        if "@%s(" % name not in body:
            continue
        d = _DEFS[name]
        if inline_routines and name not in OUT_OF_LINE:
            parts.append(d)
        else:
            head = d[d.index("define"):d.index("{")]
            head = head.replace("define internal", "declare").replace("alwaysinline", "")
            # drop parameter names: "i64 %ctx" -> "i64"
            head = re.sub(r"(i\d+|ptr) %%?\w+", r"\1", head)
            parts.append(head.strip() + "\n")
    all_text = "".join(parts)
    parts.extend(_intrinsics(all_text))
    return "".join(parts)


def runtime_module_text():
    """The routines as externally visible functions: one object per engine."""
    global _DEFS
    if _DEFS is None:
        _DEFS = _routine_defs()
    text = "".join(d.replace("define internal", "define") for d in _DEFS.values())
    return HELPER_DECLS + text + "".join(_intrinsics(text))
