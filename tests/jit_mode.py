"""Run the CPU tests with tier 1 (the JIT) forced on: ``EMU_TEST_JIT=1``.

The one switch for the whole test suite.  ``install()`` (called by
tests/conftest.py before any test module is imported) wraps ``CPU.__init__``
so that every CPU the tests build - through emu.api.Emu (tests/emu_side.py,
the differential tests, test_interp_core, test_system_insns ...), through a
test's own Machine helper or through emu.machine - gets a JIT attached with
threshold 0 (a block is compiled the first time the interpreter's fast path
meets it) and no persistent code cache.  The interpreter and the JIT must
give exactly the same results, so the same assertions hold in both modes.

The interpreter enters native code from its slow path too (the first block
of a run, the block after an event), so a test program of one block runs
natively as soon as its budget covers the block.

Options (environment):
  EMU_TEST_JIT=1            attach the JIT to every CPU
  EMU_TEST_JIT_THRESHOLD=N  compile at the N-th run of a block instead (default 0)
  EMU_TEST_JIT_REPORT=PATH  append one JSON line per test: instructions retired,
                            of them natively, blocks compiled, exits
At the end of the session a summary line says how much guest code ran natively.
After every test the native TLB of each live JIT is audited against the
guest's page tables (``JIT.audit_tlb``); a violation fails the test.
"""
import json
import os
import weakref

ENV = "EMU_TEST_JIT"


def enabled():
    return os.environ.get(ENV, "") not in ("", "0")


def threshold():
    try:
        return int(os.environ.get("EMU_TEST_JIT_THRESHOLD", "0"))
    except ValueError:
        return 0


_LIVE = weakref.WeakSet()          # JITs attached by install()
_installed = False

# session totals, accumulated after every test
TOTALS = {"tests": 0, "tests_with_cpu": 0, "tests_native": 0, "instructions": 0,
          "native_instructions": 0, "blocks_compiled": 0, "native_entries": 0,
          "chain_hits": 0, "exits": {}}


def attach_jit(cpu):
    """Attach tier 1 to ``cpu`` the way EMU_TEST_JIT wants it; returns the JIT."""
    from emu.translate.jit import attach
    jit = attach(cpu, threshold=threshold(), use_cache=False)
    jit._tm_seen = (0, 0, 0, 0, 0, {})
    jit._tm_icount = cpu.icount
    _LIVE.add(jit)
    return jit


def install():
    """Wrap CPU.__init__ so every new CPU gets a JIT (only with EMU_TEST_JIT=1)."""
    global _installed
    if _installed or not enabled():
        return
    from emu.cpu.cpu import CPU
    orig = CPU.__init__

    def __init__(self, *a, **kw):
        orig(self, *a, **kw)
        attach_jit(self)

    __init__.__wrapped__ = orig
    CPU.__init__ = __init__
    _installed = True


def _snapshot(jit):
    from emu.translate.runtime import CTX_CHAINS
    c = jit.counters
    return (c["native_instructions"], c["blocks_compiled"], c["native_entries"],
            int(jit.ctx.words[CTX_CHAINS]), jit.cpu.icount, dict(c["exits"]))


def collect(nodeid=None):
    """Account what the live JITs did since the last call (one test)."""
    if not _installed:
        return None
    t = TOTALS
    t["tests"] += 1
    ins = nat = comp = ent = ch = 0
    exits = {}
    seen_cpu = False
    for jit in list(_LIVE):
        n0, b0, e0, c0, i0, x0 = jit._tm_seen
        snap = _snapshot(jit)
        n1, b1, e1, c1, i1, x1 = snap
        if i1 < i0:                # the test reset the clock
            i0 = 0
        if (n1, b1, e1, i1) != (n0, b0, e0, i0):
            seen_cpu = True
        nat += n1 - n0
        comp += b1 - b0
        ent += e1 - e0
        ch += max(0, (c1 - c0) - (e1 - e0))     # the prologue counts Python's entries too
        ins += i1 - i0
        for k, v in x1.items():
            d = v - x0.get(k, 0)
            if d:
                exits[k] = exits.get(k, 0) + d
        jit._tm_seen = snap
    if seen_cpu:
        t["tests_with_cpu"] += 1
    if nat:
        t["tests_native"] += 1
    t["instructions"] += ins
    t["native_instructions"] += nat
    t["blocks_compiled"] += comp
    t["native_entries"] += ent
    t["chain_hits"] += ch
    for k, v in exits.items():
        t["exits"][k] = t["exits"].get(k, 0) + v
    rec = {"test": nodeid, "instructions": ins, "native": nat, "compiled": comp,
           "entries": ent, "chain_hits": ch, "exits": exits}
    path = os.environ.get("EMU_TEST_JIT_REPORT")
    if path:
        try:
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError:
            pass
    return rec


def audit():
    """Native TLB audit of every live JIT still attached to its CPU: lines."""
    if not _installed:
        return []
    errs = []
    for jit in list(_LIVE):
        if jit.cpu.interp.tier1 is jit:
            errs.extend(jit.audit_tlb())
    return errs


def summary_line():
    t = TOTALS
    share = 100.0 * t["native_instructions"] / t["instructions"] if t["instructions"] else 0.0
    return ("jit (EMU_TEST_JIT): native code ran in %d of %d tests (%d ran a CPU); "
            "%d of %d guest instructions natively (%.1f%%), %d blocks compiled, "
            "%d native entries, %d chain hits, exits %s"
            % (t["tests_native"], t["tests"], t["tests_with_cpu"], t["native_instructions"],
               t["instructions"], share, t["blocks_compiled"], t["native_entries"],
               t["chain_hits"], json.dumps(t["exits"], sort_keys=True)))
