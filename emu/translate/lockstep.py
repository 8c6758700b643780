"""Run a guest under both tiers and compare the whole architectural state at
every block boundary: the JIT's verification harness.

    from emu.translate.lockstep import run_lockstep
    report = run_lockstep(build, max_insns=100000)   # raises Divergence

``build()`` returns a fresh, identically set-up ``emu.api.Emu`` (or a bare
``CPU``).  Two are built: one gets tier 1 (threshold 0, no code cache), the
other runs the interpreter alone.  The JIT side advances one block at a time:

* natively when the block at EIP has native code (it is compiled on the
  spot) and nothing is pending: the native code is entered with a budget of
  exactly the block's native length, so it cannot chain into a second block;
* otherwise through the interpreter, ``run(count=k)`` with ``k`` the length of
  the interpreter's block at EIP (1 when it cannot be decoded), which takes
  pending interrupts, single-steps, delivers faults, etc.

The reference side then runs exactly as many instructions as the JIT side
retired (``run(count=...)``; a fault raised by native code is then raised -
and delivered, or reported - by the reference side's next instruction), and
the two states are compared: every state word (GPRs, EIP, CRs, DRs, CPL,
segment selectors and hidden parts, descriptor-table registers, ...) with
EFLAGS compared *materialised* (flags.materialize on a copy: the lazy-flag
record itself may differ - e.g. a logic op's LF_A/LF_B - without any visible
difference, and materialising the live state would hide the lazy paths of
the next block), the x87 registers, the retired-instruction clock, the stop
reasons, and guest RAM (``phys.ram_np``).  The first difference raises
``Divergence`` with a description (what, where, both values, the last
blocks run).

``native_step`` is the primitive that enters native code for the block at
EIP the way the interpreter's fast path does (tests/jit_mode.py uses it too,
so that even a one-block test program runs natively).
"""
from collections import deque

import numpy as np

from ..cpu import interrupts
from ..cpu.faults import CPUFault, VMStop
from ..cpu.flags import materialize, TF, IF
from ..cpu.state import (EIP, EFLAGS, LF_OP, LF_RES, LF_A, LF_B, CS, HALTED, INHIBIT_IRQ,
                         NMI_BLOCKED, NWORDS, SEG_NAMES, SEG0, CR0, CR2, CR3, CR4, CPL, DR0)

_GPR_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
_LAZY = (LF_OP, LF_RES, LF_A, LF_B)


class Divergence(AssertionError):
    """The two tiers disagree; ``diffs`` lists (what, jit value, interpreter value)."""

    def __init__(self, message, diffs=(), step=None):
        super().__init__(message)
        self.diffs = list(diffs)
        self.step = step


def word_name(i):
    """Readable name of state word ``i``."""
    if i < 8:
        return _GPR_NAMES[i]
    named = {EIP: "eip", EFLAGS: "eflags", CR0: "cr0", CR2: "cr2", CR3: "cr3", CR4: "cr4",
             CPL: "cpl", HALTED: "halted", INHIBIT_IRQ: "inhibit_irq", NMI_BLOCKED: "nmi_blocked"}
    if i in named:
        return named[i]
    if DR0 <= i < DR0 + 8:
        return "dr%d" % (i - DR0)
    if SEG0 <= i < SEG0 + 24:
        s, f = divmod(i - SEG0, 4)
        return "%s.%s" % (SEG_NAMES[s], ("sel", "base", "limit", "attr")[f])
    return "word[%d]" % i


def _cpu(x):
    return getattr(x, "cpu", x)


# --- entering native code -------------------------------------------------------------

def _quiet(cpu):
    """Nothing for the interpreter's event slow path to do (so it may be skipped)."""
    R = cpu.R
    if cpu.stop_requested or R[HALTED] or R[INHIBIT_IRQ] or (R[EFLAGS] & TF):
        return False
    if cpu.nmi_pending and not R[NMI_BLOCKED]:
        return False
    if (R[EFLAGS] & IF) and cpu.irq_pending():
        return False
    return True


def native_step(cpu, budget=None, until=None):
    """Enter native code for the block at EIP, as the interpreter's fast path
    does (compiling it first when its hit count reaches the threshold).

    ``budget``: instructions the native code may retire (it chains blocks
    while the budget lasts); None = exactly the block's native length.
    Returns (retired, fault or None) when native code was entered, None when
    it could not be here (no JIT, events pending, the fetch faults, the block
    has no native code or does not fit the budget); then nothing has run."""
    interp = cpu.interp
    t1 = interp.tier1
    if t1 is None or (budget is not None and budget <= 0):
        return None
    R = cpu.R
    eip = R[EIP]
    if eip == until:
        return None
    if cpu.event:
        if not _quiet(cpu):
            return None
        if interp._events() is not None or cpu.event:
            return None
    lin = (cpu.segs[CS].base + eip) & 0xFFFFFFFF
    try:
        blk = interp._lookup(eip, lin)
    except CPUFault:
        return None
    if blk.native is None:
        blk.hits += 1
        if blk.hits >= interp.hot_threshold:
            t1.compile(blk)
    nat = blk.native
    if not nat:
        return None
    if budget is None:
        budget = nat.n
    if budget < nat.n:
        return None
    return t1.enter(blk, budget, until)


# --- comparing ------------------------------------------------------------------------------

def compare_states(a, b, ram=True):
    """Differences between two CPUs (or Emus): list of (what, a value, b value)."""
    ca, cb = _cpu(a), _cpu(b)
    Ra, Rb = list(ca.R), list(cb.R)
    diffs = []
    fa, fb = materialize(list(Ra)), materialize(list(Rb))
    if fa != fb:
        diffs.append(("eflags", fa, fb))
    for i in range(NWORDS):
        if i == EFLAGS or i in _LAZY:
            continue
        if Ra[i] != Rb[i]:
            diffs.append((word_name(i), Ra[i], Rb[i]))
    for i in range(8):
        x, y = ca.F[i], cb.F[i]
        if x != y and not (x != x and y != y):
            diffs.append(("st%d" % i, x, y))
    if ca.icount != cb.icount:
        diffs.append(("instructions retired", ca.icount, cb.icount))
    if ram:
        ma, mb = ca.phys.ram_np, cb.phys.ram_np
        if ma.shape != mb.shape:
            diffs.append(("ram size", ma.shape[0], mb.shape[0]))
        else:
            idx = np.flatnonzero(ma != mb)
            if len(idx):
                first = int(idx[0])
                diffs.append(("ram[%#x] (%d bytes differ, last at %#x)"
                              % (first, len(idx), int(idx[-1])), int(ma[first]), int(mb[first])))
    return diffs


def _fmt(v):
    return "%#x" % v if isinstance(v, int) else repr(v)


# --- the lockstep run -----------------------------------------------------------------------

class _Side:
    """Run one step on a CPU: returns (instructions retired, stop reason or None)."""

    def __init__(self, x):
        self.x = x
        self.cpu = _cpu(x)

    def run(self, count):
        cpu = self.cpu
        start = cpu.icount
        try:
            reason = cpu.run(count)
        except VMStop as e:
            return cpu.icount - start, "vmstop: %s" % e.reason
        if reason == "count":
            reason = None
        elif reason == "exception":
            f = cpu.last_fault
            reason = "exception %d/%s" % (f.vector, f.error_code)
        return cpu.icount - start, reason


def detach(cpu):
    """Take tier 1 off ``cpu`` again: the interpreter alone runs it."""
    interp = cpu.interp
    interp.tier1 = None
    interp.hot_threshold = 0
    cpu.mmu.tlb_listener = None
    cpu.mmu.pt_listener = None
    cpu.mmu.revoke_listener = None
    for s in cpu.segs:
        s.listener = None
    cpu.event = True             # the run loop's fast path caches tier1: make it look again


def _block_len(cpu):
    """Instructions in the interpreter's block at EIP (1 if it cannot be decoded)."""
    interp = cpu.interp
    eip = cpu.R[EIP]
    lin = (cpu.segs[CS].base + eip) & 0xFFFFFFFF
    try:
        blk = interp._lookup(eip, lin)
    except CPUFault:
        return 1
    return max(1, blk.n)


def run_lockstep(build, max_insns, ram=True, history=8, compare_every=1, ram_every=1,
                 poke=None, max_steps=None):
    """Run ``build()``'s guest under tier 1 and under the interpreter alone,
    comparing after every block (every ``compare_every`` steps, RAM every
    ``ram_every`` comparisons; everything at the end).  Stops at max_insns
    retired instructions, HLT, a reported fault (stop_on_exception) or a VM
    stop, when both sides stop alike.

    ``poke(x, stop)``, when given, is called for each side (JIT side first)
    after every step, with the step's stop reason (None, "hlt", ...): it may
    inject what a device would (``Emu.interrupt``), the same on both sides
    since their states are equal.  When a step ends in HLT and ``poke``
    returns true for both, the run goes on.

    Returns a report dict: steps, native_steps, instructions, native_instructions,
    stop, and the JIT's stats().  Raises Divergence at the first difference."""
    from .jit import attach
    jx, rx = build(), build()
    jcpu, rcpu = _cpu(jx), _cpu(rx)
    if jcpu.interp.tier1 is None:
        jit = attach(jcpu, threshold=0, use_cache=False)
    else:
        jit = jcpu.interp.tier1
    if rcpu.interp.tier1 is not None:
        detach(rcpu)             # e.g. every CPU gets one under EMU_TEST_JIT=1
    pre = compare_states(jcpu, rcpu, ram)
    if pre:
        raise Divergence("build() gave two different machines: %s" % pre[:4], pre)
    jside, rside = _Side(jx), _Side(rx)
    last = deque(maxlen=history)
    steps = native_steps = native_insns = 0
    stop = None
    if max_steps is None:
        max_steps = 4 * max_insns + 100     # steps may retire nothing (deliveries)
    while jcpu.icount < max_insns and steps < max_steps:
        steps += 1
        eip0 = jcpu.R[EIP]
        fault = None
        ic0 = jcpu.icount
        stop_j = vmstop = None
        try:
            r = native_step(jcpu, None, None)
        except VMStop as e:           # a helper stopped the VM (a device, a triple fault)
            jcpu.interp.cur_iter = None
            r = (jcpu.icount - ic0, None)
            stop_j = vmstop = "vmstop: %s" % e.reason
        if r is not None:
            done, fault = r
            how = "native"
            if done or fault is not None or vmstop is not None:
                native_steps += 1
                native_insns += done
            if vmstop is not None:
                rdone, stop_r = rside.run(done) if done else (0, None)
                if stop_r is None:
                    more, stop_r = rside.run(1)
                    rdone += more
            elif fault is not None:
                if jcpu.stop_on_fault:
                    jcpu.interp._stop_fault(fault)
                    stop_j = "exception %d/%s" % (fault.vector, fault.error_code)
                else:
                    try:
                        interrupts.raise_exception(jcpu, fault)
                    except VMStop as e:
                        stop_j = "vmstop: %s" % e.reason
            if vmstop is None and done == 0 and fault is None:
                # no progress natively (the first instruction is the interpreter's to run,
                # e.g. a DIV that raises #DE): both sides interpret the block
                k = _block_len(jcpu)
                how = "interp"
                done, stop_j = jside.run(k)
                rdone, stop_r = rside.run(k)
            elif vmstop is None:
                # the reference side: the same instructions, then the faulting one
                rdone, stop_r = rside.run(done) if done else (0, None)
                if fault is not None and stop_r is None:
                    more, stop_r = rside.run(1)
                    rdone += more
        else:
            k = _block_len(jcpu)
            how = "interp"
            done, stop_j = jside.run(k)
            rdone, stop_r = rside.run(k)
        last.append("%s block at %#x: %d insns%s" % (how, eip0, done,
                                                      ", %s" % stop_j if stop_j else ""))
        final = stop_j is not None or stop_r is not None
        if poke is not None and stop_j == stop_r:
            pj, pr = poke(jx, stop_j), poke(rx, stop_r)
            if final and stop_j == "hlt" and pj and pr:
                final = False
        last_step = jcpu.icount >= max_insns or steps >= max_steps
        if final or last_step or steps % compare_every == 0:
            cmp_ram = ram and (final or last_step or (steps // compare_every) % ram_every == 0)
            diffs = compare_states(jcpu, rcpu, cmp_ram)
            if stop_j != stop_r:
                diffs.insert(0, ("stop", stop_j, stop_r))
            if rdone != done and fault is None:
                diffs.insert(0, ("instructions this step", done, rdone))
            if diffs:
                lines = ["tiers diverge after step %d (%s block at eip %#x, %d instructions "
                         "retired in all):" % (steps, how, eip0, jcpu.icount)]
                for what, x, y in diffs[:16]:
                    lines.append("  %s: jit %s, interpreter %s" % (what, _fmt(x), _fmt(y)))
                lines.append("  last steps: " + "; ".join(last))
                raise Divergence("\n".join(lines), diffs, steps)
        if final:
            stop = stop_j
            break
    return {"steps": steps, "native_steps": native_steps, "instructions": jcpu.icount,
            "native_instructions": native_insns, "stop": stop, "jit": jit.stats()}
