"""Tier 1 against the interpreter in lockstep (emu/translate/lockstep.py): the
guest programs of the test suite, random programs over the compiled
instruction families, and the demonstration kernel, each run under both
tiers with the whole architectural state and RAM compared at every block
boundary.  Plus the checks that the harness itself sees a difference."""
import struct

import pytest

from emu.translate import lockstep
from emu.translate.lockstep import Divergence, compare_states, run_lockstep
from tests.emu_side import EmuSide
from tests.guests import jit_programs as JP
from tests.guests import sys_paging
from tests.guests.prot_machine import Machine, HANDLER_LIN, int_gate
from tests.layout import PROT32_PAGED as P
from tests.oracle import assemble


def side_build(asm, regs=None, mem=None, phys_mem=None, stop=True):
    """build() for run_lockstep: a fresh PROT32_PAGED Emu with the program
    (followed by a HLT) at code_lin."""
    code = (asm if isinstance(asm, bytes) else assemble(asm, P.mode, addr=P.code_lin)) + b"\xf4"

    def build():
        s = EmuSide(P)
        s.reset(dict(regs or {}), mem, phys_mem, code)
        s.emu.cpu.stop_on_fault = stop
        return s.emu
    return build


def check(rep, min_native=0.5):
    assert rep["stop"] in ("hlt",) or rep["stop"].startswith("exception"), rep["stop"]
    assert rep["native_instructions"] >= min_native * rep["instructions"], \
        {k: v for k, v in rep.items() if k != "jit"}
    return rep


# --- fixed programs ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["LOOP_SUM", "MEMOPS", "RECURSE"])
def test_fixed_programs(name):
    rep = check(run_lockstep(side_build(getattr(JP, name)), 200000, ram_every=8))
    assert rep["stop"] == "hlt" and rep["instructions"] > 1000


def test_fixed_program_results_are_right():
    """Lockstep only compares the tiers: the programs' known results, once."""
    e = side_build(JP.RECURSE)()
    e.run(count=100000)
    fib = [1, 1]
    while len(fib) < 13:
        fib.append(fib[-1] + fib[-2])
    assert e.reg_read("eax") == fib[12]


@pytest.mark.parametrize("make", sys_paging.GUESTS, ids=lambda f: f.__name__)
def test_paging_guests(make):
    """tests/guests/sys_paging.py: PTE edits + INVLPG, CR3 switches, A/D bits, CR0.WP."""
    g = make(P)
    rep = run_lockstep(side_build(g.asm, g.regs, g.mem, g.phys_mem), 10000)
    assert rep["stop"] == "hlt" or rep["stop"].startswith("exception")
    assert rep["native_steps"] > 0


def test_system_calls_from_ring3():
    """Ring 3 code in a loop calls a ring-0 handler through INT 0x80 (privilege
    change, IRET back), which works on memory: native blocks on both sides of
    the privilege switch, the native TLB swapped with it."""
    def build():
        m = Machine(ring3=True)
        m.idt(0x80, int_gate(HANDLER_LIN, dpl=3))
        m.handler("""
            add dword ptr [0xc0000500], eax
            mov ebx, [0xc0000500]
            inc esi
            iretd
        """)
        m.code("""
            mov ecx, 40
        again:
            mov eax, ecx
            int 0x80
            add edi, ebx
            mov [esp - 8], edi
            dec ecx
            jnz again
            hlt
        """)
        return m.emu
    rep = run_lockstep(build, 20000)
    assert rep["native_steps"] > 40
    e = build()
    e.run(count=20000)
    assert e.reg_read("esi") == 40


# --- random programs ------------------------------------------------------------------------

def _random_build(seed, ring3=False, deliver=False):
    """The random program of ``seed`` (the next seeds if keystone cannot assemble
    it); at CPL 3 with ``ring3``; with ``deliver`` faults go through the IDT (to
    the layout's HLT stubs) instead of stopping the run."""
    for s in range(seed, seed + 50 * 100000, 100000):
        asm, regs, mem = JP.random_program(s)
        try:
            code = assemble(asm, P.mode, addr=P.code_lin)
        except Exception:
            continue
        if ring3:
            regs = dict(regs, cpl=3)      # FS keeps the small (DPL 0) segment loaded
        return side_build(code, regs, mem, stop=not deliver), asm
    raise AssertionError("no assemblable program for seed %d" % seed)


@pytest.mark.parametrize("chunk,ring3,deliver", [(c, False, False) for c in range(4)] + [
    (4, True, False), (5, False, True), (6, True, True)])
def test_random_programs(chunk, ring3, deliver):
    """Random programs (tests/guests/jit_programs.py), 25 per chunk: loops, calls,
    every condition, every operand size and form, page-crossing accesses, the
    other families in between (shifts, multiplies and divides, bit tests,
    strings, flags, segment loads, RDTSC, ports, BCD ...), ending in faults;
    at CPL 0 and 3, faults reported or delivered."""
    native = total = 0
    for seed in range(chunk * 25, chunk * 25 + 25):
        build, asm = _random_build(seed, ring3, deliver)
        try:
            rep = run_lockstep(build, 5000)
        except Divergence as e:
            raise AssertionError("seed %d:\n%s\nprogram:\n%s" % (seed, e, asm)) from None
        native += rep["native_instructions"]
        total += rep["instructions"]
    assert native > 0.5 * total, (native, total)


# --- the demonstration kernel --------------------------------------------------------------

def test_demo_kernel_in_lockstep(tmp_path):
    """The demo kernel on the bare CPU (as tests/test_demo_kernel.py boots it):
    GDT/IDT setup, paging on, the higher-half alias, a page fault handled,
    timer interrupts (injected at the same instruction on both sides) and HLT
    loops, to its final HLT with interrupts off."""
    from emu.api import Emu
    from emu.guests import demo_kernel
    import tests.test_demo_kernel as T
    image = open(demo_kernel.build(cache=str(tmp_path)), "rb").read()

    def build():
        ports = T._StubPorts()
        e = Emu(ram_size=16 << 20, ports=ports, stop_on_exception=False)
        e.serial = ports.serial
        e.mem_write(T.LOAD_ADDR, image)
        mmap = b"".join(struct.pack("<IQQI", 20, b, n, t) for b, n, t in T.MMAP)
        e.mem_write(0x9100, mmap)
        e.mem_write(0x9200, b"bare-cpu test\0")
        e.mem_write(0x9300, b"demo console=both\0")
        info = bytearray(88)
        struct.pack_into("<III", info, 0, 1 | 4 | 64 | 512, 639, 15 << 10)
        struct.pack_into("<I", info, 16, 0x9300)
        struct.pack_into("<II", info, 44, len(mmap), 0x9100)
        struct.pack_into("<I", info, 64, 0x9200)
        e.mem_write(0x9000, bytes(info))
        e.reg_write("cr0", 1)
        e.set_segment("cs", 0x08, base=0, limit=0xFFFFFFFF, attr=0xC09B)
        for s in ("ds", "es", "ss", "fs", "gs"):
            e.set_segment(s, 0x10, base=0, limit=0xFFFFFFFF, attr=0xC093)
        e.reg_write("eax", T.MB_BOOT_MAGIC)
        e.reg_write("ebx", 0x9000)
        e.reg_write("eip", struct.unpack_from("<I", image, 28)[0])
        e.next_tick = 5000
        return e

    sides = []

    def poke(e, stop):
        if not sides or sides[-1] is not e:
            sides.append(e)
        if e.cpu.icount >= e.next_tick or stop == "hlt":
            e.next_tick = e.cpu.icount + 5000
            if e.reg_read("eflags") & 0x200:
                e.interrupt(0x20)
                return True
        return False

    rep = run_lockstep(build, 1_000_000, poke=poke, ram_every=64)
    assert rep["stop"] == "hlt"
    assert rep["native_instructions"] > 0.8 * rep["instructions"]
    j, r = sides[0], sides[1]
    assert bytes(j.serial) == bytes(r.serial)
    assert demo_kernel.GOODBYE.encode() in bytes(j.serial)


# --- the harness sees differences ---------------------------------------------------------

def test_compare_states_reports_every_kind_of_difference():
    a, b = side_build("nop")(), side_build("nop")()
    assert compare_states(a, b) == []
    b.reg_write("ebx", 1)
    b.mem_write(0x50010, b"\x01")
    b.cpu.R[10], b.cpu.R[11] = 1 << 2 | 2, 5       # lazy ADD record, 0 + 5: no flag set ...
    b.cpu.R[12], b.cpu.R[13] = 0, 5
    what = [d[0] for d in compare_states(a, b)]
    assert what[:1] == ["eflags"]                    # ... but PF: materialised EFLAGS differ
    assert "ebx" in what and any(w.startswith("ram[0x50010]") for w in what)


def test_lockstep_catches_a_wrong_native_semantic(monkeypatch):
    """A deliberately broken ADD in tier 1 must be reported, with the register."""
    from emu.translate import semantics
    good = semantics.FAMILIES["alu.binop"]

    def bad(e, ins):
        if ins.row.mnem == "add" and ins.size == 4 and ins.mod == 3:
            e.set_reg(ins.rm, e.op("add i32 %s, 1" % e.reg(ins.rm)))
            e.set_flags_dynamic("0", "0", "0", "0")
            return
        good(e, ins)
    monkeypatch.setitem(semantics.FAMILIES, "alu.binop", bad)
    with pytest.raises(Divergence) as ei:
        run_lockstep(side_build("mov ecx, 5\nx: add eax, ebx\ndec ecx\njnz x",
                                regs=dict(ebx=7)), 1000)
    msg = str(ei.value)
    assert "eax" in msg and "native block" in msg


def test_lockstep_catches_a_fault_at_the_wrong_eip(monkeypatch):
    """Native code that reported a #PF with the EIP of the next instruction (say)
    must be caught: the tiers stop in different places."""
    from emu.translate import jit
    orig = jit.JIT.enter

    def enter(self, blk, budget, until):
        done, fault = orig(self, blk, budget, until)
        if fault is not None:
            self.cpu.R[8] += 3
        return done, fault
    monkeypatch.setattr(jit.JIT, "enter", enter)
    asm = "mov esi, %#x\nx: inc edx\nmov eax, [esi]\nadd esi, 0x1000\njmp x" % JP.DATA
    with pytest.raises(Divergence) as ei:
        run_lockstep(side_build(asm), 1000)
    assert "eip" in str(ei.value)


def test_native_step_runs_exactly_one_block():
    e = side_build(JP.LOOP_SUM)()
    lockstep.detach(e.cpu)
    from emu.translate.jit import attach
    attach(e.cpu, threshold=0, use_cache=False)
    n0 = e.cpu.icount
    r = lockstep.native_step(e.cpu)
    assert r is not None and r[1] is None and r[0] > 0
    assert e.cpu.icount - n0 == r[0]
