"""Tier 1 (emu/translate): targeted tests of what the JIT must get exactly right.

Every program runs twice from the same PROT32_PAGED state (tests/layout.py):
with the JIT attached (threshold 0: a block is compiled the first time the
interpreter's fast path meets it; no code cache unless the test is about the
cache) and with the interpreter alone.  The two runs must end in the same
state - every state word, EFLAGS materialised, x87, the instruction clock,
all of RAM (emu.translate.lockstep.compare_states) - and the test checks
the values the program must produce, and the JIT's counters that show the
native code really ran (native instructions, fault exits, invalidations,
chain hits, cache hits).

* faults raised in the middle of a compiled block: #PF (load, store, PUSH),
  #GP (segment limit), #DE (DIV): reported with the faulting instruction's
  EIP and the state before it, or delivered through the IDT (the frame, the
  error code and CR2 in RAM);
* self-modifying code: the next instruction of the running compiled block,
  another compiled block then jumped to;
* the persistent code cache: cold run, warm run, corrupt files, no cache;
* chaining, and a code page remapped under a compiled (and chained) block;
* `emu run --jit off` and `--jit on --jit-threshold 0 --stats` on the
  demonstration kernel.
"""
import os
import struct
import subprocess
import sys

import pytest

from emu.cpu import state as S
from emu.translate import jit as jitmod
from emu.translate.jit import attach
from emu.translate.lockstep import compare_states, detach
from tests.emu_side import EmuSide
from tests.guests import sys_paging
from tests.guests.jit_programs import DATA, RO, UNMAPPED
from tests.layout import PROT32_PAGED as P
from tests.oracle import assemble

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = P.extra["sel_data_small"]        # base data_lin, limit 0xFFF
STACK_LOW = P.stack_lin[0]               # the page below it is not mapped


def code_of(asm):
    return assemble(asm, P.mode, addr=P.code_lin)


def addr_of(asm, label):
    """Linear address of ``label:`` in the program (the code before it assembled)."""
    head = asm[:asm.index(label + ":")]
    return P.code_lin + len(code_of(head)) if head.strip() else P.code_lin


class Run:
    """One program on one tier."""

    def __init__(self, asm, regs=None, mem=None, jit=True, deliver=False, cache_dir=None,
                 use_cache=False, threshold=0, code=None):
        self.side = EmuSide(P)
        self.emu = self.side.emu
        self.cpu = self.emu.cpu
        detach(self.cpu)                       # (EMU_TEST_JIT=1 attaches one to every CPU)
        code = (code_of(asm) if code is None else code) + b"\xf4"
        self.side.reset(dict(regs or {}), mem, None, code)
        self.cpu.stop_on_fault = not deliver
        self.jit = attach(self.cpu, threshold=threshold, cache_dir=cache_dir,
                          use_cache=use_cache) if jit else None
        self.end = P.code_lin + len(code) - 1

    def run(self, count=None):
        self.stop = self.emu.run(count=count, until=self.end)
        return self

    def reg(self, name):
        return self.emu.reg_read(name)

    @property
    def stats(self):
        return self.jit.stats()


def both(asm, regs=None, mem=None, deliver=False, **kw):
    """Run on both tiers; assert the same end state; return (jit run, interpreter run)."""
    j = Run(asm, regs, mem, jit=True, deliver=deliver, **kw).run()
    i = Run(asm, regs, mem, jit=False, deliver=deliver).run()
    assert (j.stop.reason, j.stop.vector, j.stop.error_code, j.stop.cr2) == \
        (i.stop.reason, i.stop.vector, i.stop.error_code, i.stop.cr2), (j.stop, i.stop)
    diffs = compare_states(j.cpu, i.cpu)
    assert diffs == [], "JIT and interpreter differ: %s" % diffs[:8]
    return j, i


def ran_natively(j, fault=False):
    s = j.stats
    assert s["blocks_compiled"] > 0 and s["native_instructions"] > 0, s
    if fault:
        assert s["exits"]["fault"] >= 1, s


# --- faults in the middle of a compiled block -------------------------------------------------

PF_STORE = """
    mov esi, {data:#x}
    mov ecx, 12
top:
    add eax, 3
    mov [esi + 8], eax
fault_here:
    mov edx, [esi + 8]
    add esi, 0x1000
    inc ebx
    dec ecx
    jnz top
""".format(data=DATA)


@pytest.mark.parametrize("deliver", [False, True], ids=["reported", "delivered"])
def test_page_fault_on_a_store_in_a_compiled_loop(deliver):
    """Data pages 0-7 are mapped, page 8 is read-only: the 9th iteration's store
    faults (#PF, P|W = 3) after the ADD of its iteration and before the INC."""
    j, i = both(PF_STORE, deliver=deliver)
    ran_natively(j, fault=True)
    eip = addr_of(PF_STORE, "fault_here") - 3         # the store: 89 46 08
    fault_cr2 = RO + 8
    if not deliver:
        assert (j.stop.reason, j.stop.vector, j.stop.error_code) == ("exception", 14, 3)
        assert j.reg("eip") == eip and j.reg("cr2") == fault_cr2
        assert (j.reg("eax"), j.reg("ebx"), j.reg("ecx")) == (27, 8, 4)
        assert j.reg("esi") == RO
    else:
        # delivered: the CPU sits in the #PF stub; the frame holds the error code,
        # the faulting EIP, CS and EFLAGS
        assert j.reg("eip") == P.handler_lin(14) + 1 and j.reg("cr2") == fault_cr2
        err, feip, fcs = struct.unpack("<III", j.emu.virt_read(j.reg("esp"), 12))
        assert (err, feip, fcs) == (3, eip, P.extra["sel_code0"])


PF_LOAD = """
    mov esi, {data:#x}
top:
    mov eax, [esi]
    add edx, eax
    add esi, 0x1000
    jmp top
""".format(data=DATA + 0x7F0)


def test_page_fault_on_a_load_from_an_unmapped_page():
    """The loop runs through data pages 0-7 and the read-only page, then reads
    the unmapped page: #PF (not present, read = 0) at the MOV, CR2 = address."""
    j, i = both(PF_LOAD, mem=[(DATA + 0x1000 * k + 0x7F0, struct.pack("<I", k + 1))
                              for k in range(8)])
    ran_natively(j, fault=True)
    assert (j.stop.vector, j.stop.error_code, j.reg("cr2")) == (14, 0, UNMAPPED + 0x7F0)
    assert j.reg("eip") == P.code_lin + len(code_of("mov esi, 0"))
    assert j.reg("edx") == sum(range(1, 9))           # the read-only page reads as zeros


PF_PUSH = """
    mov esp, {sp:#x}
    mov ecx, 100
top:
    inc eax
    push eax
    inc ebx
    dec ecx
    jnz top
""".format(sp=STACK_LOW + 0x10)


@pytest.mark.parametrize("deliver", [False, True], ids=["reported", "delivered"])
def test_page_fault_in_a_push(deliver):
    """PUSH below the lowest stack page: #PF (write, not present = 2) at the
    fifth PUSH; ESP is not changed by the faulting PUSH."""
    j, i = both(PF_PUSH, deliver=deliver)
    ran_natively(j, fault=True)
    assert j.reg("cr2") == STACK_LOW - 4
    if not deliver:
        assert (j.stop.vector, j.stop.error_code) == (14, 2)
        assert (j.reg("esp"), j.reg("eax"), j.reg("ebx")) == (STACK_LOW, 5, 4)
        assert j.reg("eip") == addr_of(PF_PUSH, "top") + 1
    else:
        # at CPL 0 the #PF's frame goes on the same unmapped stack: #PF while
        # delivering it, #DF, #PF again: a triple fault, after the same 23
        # instructions on both tiers (both() compared the whole state)
        assert j.stop.reason == "vmstop" and "triple fault" in j.stop.message
        assert j.stop.instructions == i.stop.instructions == 2 + 4 * 5 + 1


PUSHF_LOOP = """
    mov ecx, 6
top:
    add eax, 0x7fffffff
    pushfd
    pop edx
    xor ebx, edx
    sub eax, ecx
    pushfd
    dec ecx
    jnz top
"""


def test_pushfd_runs_natively_and_pushes_the_materialised_flags():
    """PUSHFD (sensitive only in V86 mode, which tier 1 never compiles) is
    native: no emu_op call; after ADD and SUB records with OF/CF/AF set and
    clear the pushed images equal the interpreter's.  The stack walks down
    into the unmapped page: the faulting PUSHFD leaves ESP and the flags as
    they were."""
    j, i = both(PUSHF_LOOP, regs={"eax": 0x12345678, "esp": STACK_LOW + 8})
    ran_natively(j, fault=True)
    assert j.stats["helper_ops"] == 0
    assert (j.stop.vector, j.stop.error_code, j.stop.cr2) == (14, 2, STACK_LOW - 4)
    assert j.reg("esp") == STACK_LOW


def test_sti_with_nothing_pending_does_not_stop_native_code():
    """CLI and STI run their interpreter helpers (they are sensitive); with no
    interrupt pending STI's shadow needs no stop, so the loop stays native:
    no helper_stop exit (before, every STI returned to Python)."""
    asm = """
        mov ecx, 50
    top:
        cli
        add eax, ecx
        sti
        dec ecx
        jnz top
    """
    j, i = both(asm)
    ran_natively(j)
    assert j.reg("eax") == sum(range(1, 51))
    assert j.stats["helper_ops"] >= 100 and j.stats["exits"]["helper_stop"] == 0


GP_LIMIT = """
    mov esi, 0xf00
top:
    mov eax, fs:[esi]
    add ebx, eax
    mov fs:[esi + 4], ebx
    add esi, 0x40
    jmp top
"""


def test_segment_limit_gp_in_a_compiled_block():
    """FS = the small data segment (limit 0xFFF): the load at fs:0x1000 is a #GP(0)."""
    j, i = both(GP_LIMIT, regs=dict(fs=SMALL))
    ran_natively(j, fault=True)
    assert (j.stop.vector, j.stop.error_code) == (13, 0)
    assert j.reg("esi") == 0x1000
    assert j.reg("eip") == addr_of(GP_LIMIT, "top")
    # and the store's limit check: the load at fs:0xffc fits, the store at 0x1000 does not
    asm = GP_LIMIT.replace("0xf00", "0xefc")
    j, i = both(asm, regs=dict(fs=SMALL))
    ran_natively(j, fault=True)
    assert (j.stop.vector, j.reg("esi")) == (13, 0xFFC)
    assert j.reg("eip") == addr_of(asm, "top") + len(code_of("mov eax, fs:[esi]\nadd ebx, eax"))


DIV_LOOP = """
    mov ebx, 6
    mov edi, 1000
top:
    mov eax, edi
    xor edx, edx
    add ebp, 1
    div ebx
    add esi, eax
    dec ebx
    jmp top
"""


def test_divide_error_in_a_compiled_block():
    """DIV by a divisor counting down: #DE when it reaches 0, at the DIV, with the
    ADD before it done."""
    j, i = both(DIV_LOOP)
    ran_natively(j)
    assert (j.stop.vector, j.stop.error_code) == (0, None)
    assert j.reg("ebx") == 0 and j.reg("ebp") == 7
    assert j.reg("esi") == sum(1000 // d for d in range(1, 7))
    assert j.reg("eip") == addr_of(DIV_LOOP, "top") + len(code_of(
        "mov eax, edi\nxor edx, edx\nadd ebp, 1"))
    # IDIV overflow: 0x80000000 / -1
    asm = """
        mov ecx, 4
    top:
        mov eax, ecx
        cdq
        mov ebx, -1
        idiv ebx
        dec ecx
        jnz top
        mov eax, 0x80000000
        cdq
        idiv ebx
    """
    j, i = both(asm)
    ran_natively(j)
    assert j.stop.vector == 0 and j.reg("eax") == 0x80000000


# --- self-modifying code ------------------------------------------------------------------------

SMC_NEXT = """
    lea esi, [patch + 2]
    mov ecx, 10
top:
    mov edi, {scratch:#x}
    cmp ecx, 3
    cmove edi, esi
    mov byte ptr [edi], dl
patch:
    add eax, 1
    inc edx
    dec ecx
    jnz top
""".format(scratch=DATA + 0x100)


def test_code_patching_the_next_instruction_of_its_compiled_block():
    """The loop's one block stores into a data byte, except when ECX = 3: then into
    the immediate of the ADD right after the store, in the same (compiled,
    running) block.  That ADD must already use the new value (7): 7 x 1 + 3 x 7."""
    j, i = both(SMC_NEXT)
    ran_natively(j)
    assert j.reg("eax") == 7 * 1 + 3 * 7
    assert j.stats["invalidated"] >= 1
    assert j.emu.counters["interp"]["smc_invalidations"] >= 1


SMC_OTHER = """
    mov ecx, 5
warm:
    call fn
    add ebx, eax
    dec ecx
    jnz warm
    mov dword ptr [fn + 1], 100
    call fn
    add ebx, eax
    jmp done
fn:
    mov eax, 7
    ret
done:
    nop
"""


def test_code_patching_another_compiled_block_then_calling_it():
    j, i = both(SMC_OTHER)
    ran_natively(j)
    assert j.reg("ebx") == 5 * 7 + 100
    assert j.stats["invalidated"] >= 1


# --- chaining and remapping ----------------------------------------------------------------------

CHAIN = """
    mov ecx, 200
top:
    test ecx, 1
    jz even
    add eax, ecx
    jmp next
even:
    call sub1
next:
    dec ecx
    jnz top
    jmp done
sub1:
    sub ebx, ecx
    ret
done:
    nop
"""


def test_a_loop_over_several_blocks_runs_chained():
    j, i = both(CHAIN)
    assert j.reg("eax") == sum(range(1, 201, 2))
    assert j.reg("ebx") == (-sum(range(2, 201, 2))) & 0xFFFFFFFF
    s = j.stats
    # five blocks, 200 iterations: nearly everything native, mostly block to block
    assert s["native_instructions"] > 0.9 * j.cpu.icount
    assert s["chain_hits"] > 300, s
    assert s["native_entries"] < 50, s


REMAP = """
    mov ecx, 10
top:
    {use}
    add ebx, eax
    cmp ecx, 4
    jne skip
    mov edx, [{pte:#x}]
    and edx, 0xfff
    or edx, {frame:#x}
    mov [{pte:#x}], edx
    invlpg [{page:#x}]
skip:
    dec ecx
    jnz top
"""


def _remap(use):
    """Data page 0 is remapped to data page 1's frame (PTE + INVLPG) in the 7th
    iteration of a compiled, chained loop that uses it on every iteration."""
    page, other = DATA, DATA + 0x1000
    asm = REMAP.format(use=use, pte=sys_paging.pte_lin(P, page), frame=P.lin_to_phys(other),
                       page=page)
    return asm, page, other


def test_remapped_code_page_runs_the_new_code():
    """The loop calls a function in data page 0 (compiled, its exit slot chained
    to it); after the remap the same call must run the code of the new frame,
    never the old compiled block."""
    asm, page, other = _remap("call %#x" % DATA)
    mem = [(page, code_of("mov eax, 1\nret")), (other, code_of("mov eax, 100\nret"))]
    j, i = both(asm, mem=mem)
    ran_natively(j)
    assert j.reg("ebx") == 7 * 1 + 3 * 100
    assert j.stats["chain_hits"] > 0


def test_remapped_data_page_is_read_through_the_new_mapping():
    """The same with a load: the native TLB must not keep the old translation."""
    asm, page, other = _remap("mov eax, [%#x]" % DATA)
    mem = [(page, struct.pack("<I", 5)), (other, struct.pack("<I", 1000))]
    j, i = both(asm, mem=mem)
    ran_natively(j)
    assert j.reg("ebx") == 7 * 5 + 3 * 1000
    assert j.stats["chain_hits"] > 0


# --- the persistent code cache -----------------------------------------------------------------

def _cache_files(d):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


def test_code_cache_cold_then_warm(tmp_path):
    cold = Run(CHAIN, cache_dir=str(tmp_path), use_cache=True).run()
    s = cold.stats
    assert s["blocks_compiled"] > 0 and s["cache_hits"] == 0
    files = _cache_files(tmp_path)
    assert any(f.endswith(".bin") for f in files) and any(f.endswith(".idx") for f in files)
    warm = Run(CHAIN, cache_dir=str(tmp_path), use_cache=True).run()
    w = warm.stats
    assert w["blocks_compiled"] == 0, w
    assert w["cache_hits"] > 0 and w["blocks_from_cache"] > 0 and w["native_instructions"] > 0
    assert compare_states(cold.cpu, warm.cpu) == []
    assert warm.reg("eax") == sum(range(1, 201, 2))


@pytest.mark.parametrize("damage", ["flip", "truncate", "version", "index"])
def test_a_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path, damage):
    Run(CHAIN, cache_dir=str(tmp_path), use_cache=True).run()
    objs = [f for f in _cache_files(tmp_path) if f.endswith(".bin")]
    assert objs
    for path in objs if damage != "index" else [f for f in _cache_files(tmp_path)
                                                  if f.endswith(".idx")]:
        data = open(path, "rb").read()
        if damage == "flip":
            # a byte of the object code (past the header line) and one of the header
            body = data.index(b"\n") + 1
            data = bytearray(data)
            data[body + len(data[body:]) // 2] ^= 0xFF
        elif damage == "truncate":
            data = data[:len(data) // 2]
        elif damage == "version":
            data = data.replace(jitmod.VERSION.encode(), b"emu-jit-0", 1)
        else:
            data = b"0" * 64                         # an index naming no object
        with open(path, "wb") as f:
            f.write(bytes(data))
    ref = Run(CHAIN, jit=False).run()
    again = Run(CHAIN, cache_dir=str(tmp_path), use_cache=True).run()
    s = again.stats
    assert s["cache_hits"] == 0, s                   # nothing damaged was loaded
    assert s["blocks_compiled"] > 0 and s["native_instructions"] > 0
    assert compare_states(again.cpu, ref.cpu) == []
    # rebuilt: a third run loads everything from the cache again
    third = Run(CHAIN, cache_dir=str(tmp_path), use_cache=True).run()
    assert third.stats["blocks_compiled"] == 0 and third.stats["cache_hits"] > 0
    assert compare_states(third.cpu, ref.cpu) == []


def test_use_cache_false_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("EMU_JIT_CACHE_DIR", str(tmp_path / "default"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    r = Run(CHAIN, cache_dir=str(tmp_path / "given"), use_cache=False).run()
    assert r.stats["blocks_compiled"] > 0 and r.stats["cache_hits"] == 0
    assert _cache_files(tmp_path) == []


# --- the command line -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_kernel_path(tmp_path_factory):
    from emu.guests import demo_kernel
    return demo_kernel.build(cache=str(tmp_path_factory.mktemp("cache")))


def _emu_run(kernel, serial, *args):
    return subprocess.run(
        [sys.executable, "-m", "emu.cli", "run", "--kernel", kernel, "--serial", str(serial),
         "--display", "none", "--jit-cache", "off", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_emu_run_with_and_without_the_jit_gives_the_same_serial_output(demo_kernel_path,
                                                                       tmp_path):
    from emu.guests import demo_kernel
    off = _emu_run(demo_kernel_path, tmp_path / "off.txt", "--jit", "off", "--stats")
    on = _emu_run(demo_kernel_path, tmp_path / "on.txt", "--jit", "on", "--jit-threshold", "0",
                  "--stats")
    assert off.returncode == 0, off.stderr[-2000:]
    assert on.returncode == 0, on.stderr[-2000:]
    out_off = (tmp_path / "off.txt").read_bytes()
    out_on = (tmp_path / "on.txt").read_bytes()
    assert demo_kernel.GOODBYE.encode() in out_off
    assert out_on == out_off
    assert "jit:" not in off.stderr
    jit_lines = [ln for ln in on.stderr.splitlines() if "jit:" in ln]
    assert len(jit_lines) >= 3, on.stderr
    assert any("blocks compiled" in ln for ln in jit_lines)
    native = [ln for ln in jit_lines if "native instructions" in ln][0]
    assert int(native.split("jit:")[1].split()[0]) > 0
    # the same number of instructions retired with and without tier 1
    count = [ln for ln in off.stderr.splitlines() if "instructions" in ln and "MIPS" in ln]
    count_on = [ln for ln in on.stderr.splitlines() if "instructions" in ln and "MIPS" in ln]
    assert count and count_on
    assert count[0].split()[2] == count_on[0].split()[2]


# --- tier up: hot blocks recompiled optimised ---------------------------------------------

TIER_UP = """
    mov ecx, 30000
    mov esi, {data:#x}
loop:
    mov eax, [esi]
    add eax, ebx
    jmp n1
n1:
    mov [esi+4], eax
    call f
    dec ecx
    jnz loop
    jmp done
f:
    rol ebx, 3
    adc ebx, ecx
    ret
done:
    nop
"""


@pytest.mark.parametrize("background", [False, True])
def test_hot_blocks_tier_up_and_give_the_interpreters_results(background):
    """Blocks entered HOT_ENTRIES times are recompiled optimised and swapped in
    (in-process, or through the background compiler with the old code running
    meanwhile); the guest ends in exactly the interpreter's state."""
    from emu.translate import runtime as rt
    asm = TIER_UP.format(data=DATA)
    code = code_of(asm)
    end = P.code_lin + len(code)
    states = []
    for use_jit in (False, True):
        side = EmuSide(P)
        jit = attach(side.cpu, threshold=2, use_cache=False, background=background) \
            if use_jit else None
        side.reset(dict(ebx=1), code=code)
        for _ in range(200):                   # slices, as the machine runs them
            st = side.emu.run(count=20000, until=end)
            if st.reason != "count":
                break
            if jit is not None and jit.worker is not None:
                jit.settle(timeout=5)          # let the compiler's results in
        assert st.reason == "until", st
        R = side.cpu.R
        states.append(([R[i] for i in range(9)], side.emu.reg_read("eflags"),
                       bytes(side.cpu.phys.ram), side.cpu.icount))
        if jit is not None:
            s = jit.stats()
            assert s["tier_ups"] >= 1, s
            assert s["native_instructions"] > 0.9 * side.cpu.icount, s
            # the optimised code is what runs now: the loop head's block is a tier-2 one
            assert any(nb.name.endswith("o2") for nb in jit.by_key.values())
            assert 30000 >= rt.HOT_ENTRIES
    assert states[0] == states[1]


# --- far transfers through emu_op ---------------------------------------------------------------

def test_int_and_iret_go_on_in_native_code():
    """INT and IRET run their interpreter helpers; unless one asks for a stop
    (a mode change, an event) native code goes on through the dispatch table
    instead of returning to Python after each (IRET did ~40k times a boot)."""
    from tests.layout import STUB_SIZE
    stub = P.handler_base + STUB_SIZE * 0x80
    asm = """
        mov ecx, 40
    top:
        int 0x80
        add ebx, ecx
        dec ecx
        jnz top
    """
    j, i = both(asm, mem=[(stub, b"\xcf")])             # the handler: IRETD
    ran_natively(j)
    assert j.reg("ebx") == sum(range(1, 41))
    s = j.stats
    assert s["helper_ops"] >= 80 and s["exits"]["helper_stop"] == 0, s


# --- code models ---------------------------------------------------------------------------------

def _relocation_types(obj):
    """The x86-64 relocation types an ELF object asks RuntimeDyld to resolve."""
    assert obj[:4] == b"\x7fELF" and obj[4] == 2
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    types = set()
    for i in range(shnum):
        sh = struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize)
        if sh[1] == 4:                                   # SHT_RELA
            for k in range(0, sh[5], sh[9] or 24):
                types.add(struct.unpack_from("<Q", obj, sh[4] + k + 8)[0] & 0xFFFFFFFF)
    return types


def test_engines_after_the_first_few_get_large_model_code(monkeypatch):
    """A process that has made many engines (this test suite; a fuzzer running
    VM after VM) can get an engine whose code and data pools lie more than
    2 GiB apart, and a 32-bit PC-relative relocation then aborts the process
    inside LLVM (it did, under the CPU tests in one order).  Engines after
    the first SMALL_MODEL_ENGINES get large-model code: every object loaded
    into them asks only for 64-bit addresses (R_X86_64_64, R_X86_64_PC64),
    and they give the interpreter's results."""
    from emu.translate import llvm_engine
    monkeypatch.setattr(llvm_engine, "_engines_made", llvm_engine.SMALL_MODEL_ENGINES)
    compiled = []
    real = llvm_engine.compile_object

    def spy(text, optimise=False, model="small"):
        obj = real(text, optimise=optimise, model=model)
        compiled.append((model, obj))
        return obj
    monkeypatch.setattr(llvm_engine, "compile_object", spy)
    j, i = both(PF_STORE + "\n" + PUSHF_LOOP.replace("top", "top2"), deliver=True)
    assert j.jit.model == "large"
    ran_natively(j)
    assert compiled and all(model == "large" for model, obj in compiled)
    objects = [obj for model, obj in compiled] + [llvm_engine._runtime_objs["large"]]
    for obj in objects:
        assert _relocation_types(obj) <= {1, 24}, _relocation_types(obj)
    # a small-model object, for contrast, asks for 32-bit PC-relative ones
    small = llvm_engine.compile_object(llvm_engine._runtime_text, optimise=True, model="small")
    assert _relocation_types(small) - {1, 24}
