"""Guest programs that exercise paging through the system instructions.

Each ``*_guest(L)`` returns a ``Guest`` for the PROT32_PAGED layout ``L``:
assembler source (assembled by the test with keystone, at L.code_lin), the
register overrides, memory to preload (linear ``mem`` and physical
``phys_mem``, as tests/oracle.py and tests/emu_side.py take them) and the
values the SDM predicts, worked out here from the layout.

All programs run at CPL 0 and end by falling off the end of their code
(run with count=None); a fault stops them where it happens.

Physical pages used besides the layout's (free in PROT32_PAGED): 0x13000 a
second page directory, 0x14000 a second user page table.
"""
from collections import namedtuple
import struct

Guest = namedtuple("Guest", "name asm regs mem phys_mem expect")

PTE_A, PTE_D = 0x20, 0x40
PD2_PHYS, PT2_PHYS = 0x13000, 0x14000


def pte_lin(L, lin):
    """Linear address (through the supervisor system region) of lin's PTE."""
    assert L.code_lin >> 22 == lin >> 22 == 1, "only the user page table is used"
    return L.sys_lin + L.pt_user_phys + 4 * ((lin >> 12) & 0x3FF)


def pde_lin(L, lin):
    return L.sys_lin + L.pd_phys + 4 * (lin >> 22)


def _rd32(L, phys):
    ram = L.initial_ram()
    return struct.unpack_from("<I", ram, phys)[0]


def pte_value(L, lin):
    return _rd32(L, L.pt_user_phys + 4 * ((lin >> 12) & 0x3FF))


def pte_invlpg_guest(L):
    """Read a data page, point its PTE at another frame, INVLPG, read again;
    then write through the new mapping."""
    lin = L.data_lin[0]                      # -> phys 0x57000 (pages reversed)
    new_frame = L.lin_to_phys(L.data_lin[0] + 0x7000)   # phys 0x50000
    a, b = 0x11111111, 0x22222222
    pte = pte_lin(L, lin)
    asm = """
        mov eax, [{lin:#x}]
        mov ebx, [{pte:#x}]
        and ebx, 0xfff
        or ebx, {frame:#x}
        mov [{pte:#x}], ebx
        invlpg [{lin:#x}]
        mov ecx, [{lin:#x}]
        mov dword ptr [{lin4:#x}], 0x33333333
    """.format(lin=lin, pte=pte, frame=new_frame, lin4=lin + 4)
    expect = dict(eax=a, ecx=b,
                  phys={new_frame + 4: 0x33333333,
                        L.pt_user_phys + 4 * ((lin >> 12) & 0x3FF):
                            (pte_value(L, lin) & 0xFFF) | new_frame})
    return Guest("pte_invlpg", asm, {}, [(lin, struct.pack("<I", a)),
                                         (L.data_lin[0] + 0x7000, struct.pack("<I", b))],
                 [], expect)


def cr3_switch_guest(L):
    """Two page directories that differ in one mapping; MOV CR3 between them."""
    lin = L.data_lin[0]
    other = L.lin_to_phys(L.data_lin[0] + 0x7000)       # phys 0x50000
    ram = L.initial_ram()
    pd = bytearray(ram[L.pd_phys:L.pd_phys + 0x1000])
    pt = bytearray(ram[L.pt_user_phys:L.pt_user_phys + 0x1000])
    idx = (lin >> 12) & 0x3FF
    pte = struct.unpack_from("<I", pt, 4 * idx)[0]
    struct.pack_into("<I", pt, 4 * idx, (pte & 0xFFF) | other)
    pde = struct.unpack_from("<I", pd, 4)[0]
    struct.pack_into("<I", pd, 4, (pde & 0xFFF) | PT2_PHYS)
    a, b = 0x44444444, 0x55555555
    asm = """
        mov eax, [{lin:#x}]
        mov edx, cr3
        mov ebx, {pd2:#x}
        mov cr3, ebx
        mov ecx, [{lin:#x}]
        mov edi, cr3
        mov cr3, edx
        mov esi, [{lin:#x}]
    """.format(lin=lin, pd2=PD2_PHYS)
    expect = dict(eax=a, ecx=b, esi=a, edi=PD2_PHYS, edx=L.regs["cr3"])
    return Guest("cr3_switch", asm, {}, [(lin, struct.pack("<I", a)),
                                         (L.data_lin[0] + 0x7000, struct.pack("<I", b))],
                 [(PD2_PHYS, bytes(pd)), (PT2_PHYS, bytes(pt))], expect)


def ad_bits_guest(L):
    """PDE/PTE with A and D clear: a read sets A, a write sets D (4 KiB and
    4 MiB pages), seen by the guest reading its own tables."""
    lin = L.data_lin[0] + 0x1000
    pse = L.pse_lin + 0x1234
    pt_off = L.pt_user_phys + 4 * ((lin >> 12) & 0x3FF)
    pte0 = pte_value(L, lin) & ~(PTE_A | PTE_D)
    pd_user_off = L.pd_phys + 4 * (lin >> 22)
    pde_user0 = _rd32(L, pd_user_off) & ~PTE_A
    pd_pse_off = L.pd_phys + 4 * (pse >> 22)
    pde_pse0 = _rd32(L, pd_pse_off) & ~(PTE_A | PTE_D)
    asm = """
        mov eax, [{pte:#x}]
        mov ebx, [{lin:#x}]
        mov ecx, [{pte:#x}]
        mov [{lin:#x}], ebx
        mov edx, [{pte:#x}]
        mov esi, [{pdu:#x}]
        mov ebx, [{pse:#x}]
        mov edi, [{pdp:#x}]
        mov [{pse:#x}], ebx
        mov ebp, [{pdp:#x}]
    """.format(pte=pte_lin(L, lin), lin=lin, pdu=pde_lin(L, lin), pse=pse,
               pdp=pde_lin(L, pse))
    expect = dict(eax=pte0, ecx=pte0 | PTE_A, edx=pte0 | PTE_A | PTE_D,
                  esi=pde_user0 | PTE_A, edi=pde_pse0 | PTE_A,
                  ebp=pde_pse0 | PTE_A | PTE_D)
    return Guest("ad_bits", asm, {}, [],
                 [(pt_off, struct.pack("<I", pte0)), (pd_user_off, struct.pack("<I", pde_user0)),
                  (pd_pse_off, struct.pack("<I", pde_pse0))], expect)


def wp_guest(L):
    """CR0.WP: a supervisor write to a read-only user page succeeds with WP=0
    and is a #PF(P|W) with WP=1."""
    ro = L.ro_lin
    asm = """
        mov ebx, cr0
        and ebx, 0xfffeffff
        mov cr0, ebx
        mov dword ptr [{ro:#x}], 0x66666666
        mov ecx, [{ro:#x}]
        or ebx, 0x10000
        mov cr0, ebx
        mov dword ptr [{ro:#x}], 0x77777777
    """.format(ro=ro)
    expect = dict(ecx=0x66666666, vector=14, error_code=0x3, cr2=ro,
                  phys={L.ro_phys: 0x66666666})
    return Guest("wp", asm, {}, [], [], expect)


GUESTS = (pte_invlpg_guest, cr3_switch_guest, ad_bits_guest, wp_guest)
