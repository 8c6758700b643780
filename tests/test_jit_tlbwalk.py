"""Tier 1's native TLB-miss path (emu/translate/tlbwalk.py).

A load, a store or a block's code-page check that misses the native TLB
walks the guest's page tables in native code and fills the entry itself;
only faults, MMIO and watched pages go to Python.  Each program runs on
both tiers from the same PROT32_PAGED state (tests/test_jit.py's ``both``:
every state word, all of RAM - so the A/D bits the walks set - and the
stop reason must agree), and then:

* the JIT's counters show the misses were served natively (``native_walks``
  grew, and the Python slow path was not taken where it must not be);
* ``JIT.audit_tlb()`` finds every native TLB entry allowed by the guest's
  tables as they are now, with its PDE/PTE on write-watched pages.

The cases are the rules the walk must keep: A and D bits, 4 MiB pages and
their reserved bits, rights (ring 3 against a supervisor page, CR0.WP),
a PTE rewritten with no INVLPG, and a page that becomes code or a page
table after the native walk gave it a write entry.
"""
import struct

import pytest

from emu.translate import runtime as rt
from tests.guests import sys_paging
from tests.guests.jit_programs import DATA, RO
from tests.layout import PROT32_PAGED as P
from tests.test_jit import Run, both, code_of, ran_natively

PTE_A, PTE_D, PTE_P = 0x20, 0x40, 0x01
SUPER = P.extra["super_lin"]
PSE_LIN, PSE_PHYS = P.extra["pse_lin"], P.extra["pse_phys"]
PD_LIN = P.sys_lin + P.extra["pd_phys"]


def data(i):
    return DATA + 0x1000 * i


def pte(lin):
    return sys_paging.pte_lin(P, lin)


def pte_value(lin):
    return sys_paging.pte_value(P, lin)


def ram32(run, phys):
    return struct.unpack_from("<I", run.cpu.phys.ram, phys)[0]


def audited(j):
    errs = j.jit.audit_tlb()
    assert errs == [], errs[:5]


def test_misses_after_a_cr3_reload_are_walked_natively():
    """Eight data pages read on every iteration, CR3 reloaded in between (which
    empties the native TLB): every refill is a native walk, none goes to Python."""
    asm = """
        mov ecx, 6
    top:
        mov esi, {d0:#x}
        mov edx, 8
    inner:
        add eax, [esi]
        add esi, 0x1000
        dec edx
        jnz inner
        mov ebx, cr3
        mov cr3, ebx
        dec ecx
        jnz top
    """.format(d0=data(0))
    mem = [(data(i), struct.pack("<I", i + 1)) for i in range(8)]
    j, i = both(asm, mem=mem)
    ran_natively(j)
    assert j.reg("eax") == 6 * sum(range(1, 9))
    s = j.stats
    assert s["native_walks"] >= 6 * 8, s
    assert s["slow_reads"] == 0, s
    audited(j)


def test_the_native_walk_sets_a_and_d_bits_like_the_interpreter():
    """PTEs with A (and D) clear: a read sets A, a write sets A and D, in the
    PTE in guest RAM, exactly as the interpreter's walk does."""
    rd_page, wr_page = data(2), data(3)
    mem = [(pte(rd_page), struct.pack("<I", pte_value(rd_page) & ~(PTE_A | PTE_D))),
           (pte(wr_page), struct.pack("<I", pte_value(wr_page) & ~(PTE_A | PTE_D)))]
    asm = """
        mov ecx, 3
    top:
        mov eax, [{rd:#x}]
        mov dword ptr [{wr:#x}], 0x1234
        dec ecx
        jnz top
    """.format(rd=rd_page + 8, wr=wr_page + 12)
    j, i = both(asm, mem=mem)
    ran_natively(j)
    s = j.stats
    assert s["native_walks"] >= 2 and s["slow_reads"] == 0 and s["slow_writes"] == 0, s
    pt = P.extra["pt_user_phys"]
    rd_pte = ram32(j, pt + 4 * ((rd_page >> 12) & 0x3FF))
    wr_pte = ram32(j, pt + 4 * ((wr_page >> 12) & 0x3FF))
    assert rd_pte & (PTE_A | PTE_D) == PTE_A
    assert wr_pte & (PTE_A | PTE_D) == PTE_A | PTE_D
    audited(j)


def test_a_pte_rewritten_without_invlpg_is_seen_at_once():
    """The loop reads data page 0 natively; in its fourth iteration it points
    the PTE at data page 1's frame with a plain store (no INVLPG).  The store
    reaches the write-watched page table, which empties what the native walk
    filled: the next read goes through the new frame (as in the interpreter,
    which tracks every PTE it cached)."""
    page, other = data(0), data(1)
    asm = """
        mov ecx, 7
    top:
        add ebx, [{page:#x}]
        cmp ecx, 4
        jne skip
        mov edx, [{pte:#x}]
        and edx, 0xfff
        or edx, {frame:#x}
        mov [{pte:#x}], edx
    skip:
        dec ecx
        jnz top
    """.format(page=page, pte=pte(page), frame=P.lin_to_phys(other))
    mem = [(page, struct.pack("<I", 5)), (other, struct.pack("<I", 1000))]
    j, i = both(asm, mem=mem)
    ran_natively(j)
    assert j.reg("ebx") == 4 * 5 + 3 * 1000
    assert j.stats["native_walks"] > 0
    audited(j)


def test_a_pte_made_not_present_faults_with_exact_state():
    """The same, but the PTE is cleared: the next native access misses, the
    native walk gives up on P=0 and Python raises the #PF, reported with the
    faulting instruction's EIP and the registers before it."""
    page = data(0)
    asm = """
        mov ecx, 7
    top:
        add ebx, [{page:#x}]
        cmp ecx, 4
        jne skip
        mov dword ptr [{pte:#x}], 0
    skip:
        dec ecx
        jnz top
    """.format(page=page, pte=pte(page))
    j, i = both(asm, mem=[(page, struct.pack("<I", 5))])
    ran_natively(j, fault=True)
    assert (j.stop.vector, j.stop.error_code, j.stop.cr2) == (14, 0, page)
    assert j.reg("ebx") == 4 * 5 and j.reg("ecx") == 3
    audited(j)


def test_a_4mib_page_walks_natively_sets_d_in_the_pde_and_follows_a_new_pde():
    """CR4.PSE with a 4 MiB PDE: a store sets D in the PDE; then the PDE is
    pointed at physical 0 (a plain store, no INVLPG) and the same linear
    address reads the new frame; then a reserved bit (13) is set in the PDE
    and the access faults with RSVD in the error code."""
    pde = PD_LIN + 4 * (PSE_LIN >> 22)
    pde0 = sys_paging._rd32(P, P.extra["pd_phys"] + 4 * (PSE_LIN >> 22))
    off = P.extra["code_phys"] + 0x800        # under the new frame: code page bytes
    asm = """
        mov dword ptr [{lin:#x}], 0xCAFE
        mov eax, [{lin:#x}]
        mov dword ptr [{pde:#x}], {pde_new:#x}
        mov ebx, [{lin:#x}]
        or dword ptr [{pde:#x}], 0x2000
        mov ecx, [{lin:#x}]
    """.format(lin=PSE_LIN + off, pde=pde, pde_new=(pde0 & 0x3FFFFF) & ~PTE_D)
    tail = bytes(range(1, 17))
    j, i = both(asm, mem=[(P.code_lin + 0x800, tail)])
    ran_natively(j, fault=True)
    assert j.reg("eax") == 0xCAFE
    assert j.reg("ebx") == struct.unpack("<I", tail[:4])[0]
    assert (j.stop.vector, j.stop.error_code) == (14, 0x9)      # P | RSVD, a read at CPL 0
    assert ram32(j, PSE_PHYS + off) == 0xCAFE
    assert j.stats["native_walks"] > 0
    audited(j)


def test_ring3_cannot_reach_a_supervisor_page_through_the_native_walk():
    """At CPL 3 the user data pages are walked natively; the supervisor page
    is not (U/S=0): the #PF is raised with error code 5 (P, user, read)."""
    asm = """
        mov eax, [{d:#x}]
        add eax, [{d1:#x}]
        mov ebx, [{sup:#x}]
    """.format(d=data(0), d1=data(1), sup=SUPER)
    mem = [(data(0), struct.pack("<I", 7)), (data(1), struct.pack("<I", 8))]
    j, i = both(asm, regs={"cpl": 3}, mem=mem)
    ran_natively(j, fault=True)
    assert j.reg("eax") == 15
    assert (j.stop.vector, j.stop.error_code, j.stop.cr2) == (14, 5, SUPER)
    assert j.stats["native_walks"] > 0
    audited(j)


def test_cr0_wp_decides_supervisor_writes_to_a_read_only_page():
    """CR0.WP=1: a CPL 0 store to the read-only page faults (error 3).  With
    WP cleared the same store is allowed (and the walk sets D)."""
    asm_wp = "mov dword ptr [{ro:#x}], 0x55".format(ro=RO)
    j, i = both(asm_wp)
    assert (j.stop.vector, j.stop.error_code, j.stop.cr2) == (14, 3, RO)
    asm = """
        mov eax, cr0
        and eax, 0xFFFEFFFF
        mov cr0, eax
        mov ecx, 3
    top:
        add dword ptr [{ro:#x}], 0x55
        dec ecx
        jnz top
        mov ebx, [{ro:#x}]
    """.format(ro=RO)
    j, i = both(asm)
    ran_natively(j)
    assert j.reg("ebx") == 3 * 0x55
    assert j.stats["native_walks"] > 0
    audited(j)


def test_a_page_written_natively_then_run_as_code_then_patched():
    """Data page 0 gets a native write entry, then holds code that runs (the
    page becomes watched for code: the entry must go), then the code is
    patched through the same linear address and called again: the new code
    runs, never the stale compiled block."""
    asm = """
        mov ecx, 3
        mov edi, {page:#x}
    top:
        mov dword ptr [edi], 0x000000B8
        mov [edi + 1], ecx
        mov byte ptr [edi + 5], 0xC3
        call edi
        add ebx, eax
        dec ecx
        jnz top
    """.format(page=data(0))
    j, i = both(asm)
    ran_natively(j)
    assert j.reg("ebx") == 3 + 2 + 1
    assert j.stats["invalidated"] > 0 and j.stats["native_walks"] > 0
    audited(j)


def test_a_page_written_natively_then_used_as_a_page_table():
    """A PDE (set up before the run) makes data page 5's frame the page table
    of linear 16 MiB.  The program stores a PTE value into data page 5 (a
    native write entry: nothing watches the page yet), reads through 16 MiB
    (the MMU's walk now write-watches page 5, so that native write entry must
    go), stores a second PTE value through the same data mapping, and reads
    through 16 MiB again: it must see the second frame."""
    pt_page = data(5)
    pt_frame = P.lin_to_phys(pt_page)
    f1, f2 = P.lin_to_phys(data(6)), P.lin_to_phys(data(7))
    lin = 0x01000000
    asm = """
        mov dword ptr [{pt:#x}], {pte1:#x}
        mov eax, [{lin:#x}]
        mov dword ptr [{pt:#x}], {pte2:#x}
        mov ebx, [{lin:#x}]
    """.format(pt=pt_page, pte1=f1 | 0x63, pte2=f2 | 0x63, lin=lin)
    mem = [(data(6), struct.pack("<I", 0x6666)), (data(7), struct.pack("<I", 0x7777)),
           (PD_LIN + 4 * (lin >> 22), struct.pack("<I", pt_frame | 0x23))]
    j, i = both(asm, mem=mem)
    ran_natively(j)
    assert (j.reg("eax"), j.reg("ebx")) == (0x6666, 0x7777)
    assert j.stats["native_walks"] > 0
    audited(j)


def test_the_audit_reports_an_entry_the_tables_do_not_allow():
    """The audit itself: a forged write entry for the read-only page, and a
    read entry pointing at the wrong frame, are both reported."""
    j = Run("mov eax, [%#x]" % data(0)).run()
    assert j.jit.audit_tlb() == []
    ctx = j.jit.ctx
    vpn = RO >> 12
    ctx.TW[vpn & (rt.NTLB - 1)] = (vpn << 32) | P.lin_to_phys(RO)
    vpn2 = data(1) >> 12
    ctx.TR[vpn2 & (rt.NTLB - 1)] = (vpn2 << 32) | P.lin_to_phys(data(2))
    errs = j.jit.audit_tlb()
    assert any("0x%05x" % vpn in e and "fault" in e for e in errs), errs
    assert any("0x%05x" % vpn2 in e and "give" in e for e in errs), errs


# --- random page-table programs --------------------------------------------------------------

PTE_FLAGS = (0x01, 0x02, 0x20, 0x40)            # P RW A D (U/S stays set: CPL 0 ignores it)


def random_paging_program(seed):
    """A loop over random accesses to the eight data pages and the 4 MiB page,
    mixed with stores that rewrite their PTEs (frame and P/RW/A/D bits) and
    the 4 MiB PDE, INVLPG, CR3 reloads and CR0.WP toggles.  It runs at CPL 0
    and stops at its first fault."""
    import random
    r = random.Random(seed)
    frames = [P.lin_to_phys(data(i)) for i in range(8)]
    pde = PD_LIN + 4 * (PSE_LIN >> 22)
    lines = ["mov ebp, 3", "top:"]
    for _ in range(r.randrange(8, 24)):
        k = r.random()
        if k < 0.55:
            lin = r.choice([data(r.randrange(8)), PSE_LIN + 0x1000 * r.randrange(64)])
            lin += r.randrange(0, 0x1000 - 4) & ~3
            if r.random() < 0.5:
                lines.append("add eax, [%#x]" % lin)
            else:
                lines.append("mov dword ptr [%#x], %#x" % (lin, r.getrandbits(32)))
                lines.append("add eax, [%#x]" % lin)
        elif k < 0.8:
            i = r.randrange(8)
            flags = 0x04 | sum(f for f in PTE_FLAGS if r.random() < (0.95 if f == 1 else 0.6))
            lines.append("mov dword ptr [%#x], %#x" % (pte(data(i)), r.choice(frames) | flags))
        elif k < 0.85:
            flags = 0x85 | sum(f for f in (0x02, 0x20, 0x40) if r.random() < 0.6)
            lines.append("mov dword ptr [%#x], %#x" % (pde, PSE_PHYS | flags))
        elif k < 0.9:
            lines.append("invlpg [%#x]" % data(r.randrange(8)))
        elif k < 0.95:
            lines += ["mov ebx, cr3", "mov cr3, ebx"]
        else:
            lines += ["mov ebx, cr0", "xor ebx, 0x10000", "mov cr0, ebx"]
    lines += ["dec ebp", "jnz top"]
    return "\n".join(lines)


@pytest.mark.parametrize("seed", range(40))
def test_random_page_table_programs_agree_and_audit_clean(seed):
    j, i = both(random_paging_program(seed))
    if j.stop.instructions > 10:          # (some programs fault at once)
        assert j.stats["native_walks"] > 0
    audited(j)
