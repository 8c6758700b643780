"""Pure-data descriptions of the machines the differential tests run on.

Two layouts, ``REAL16`` and ``PROT32_PAGED``, are shared by the Unicorn
oracle (tests/oracle.py) and by the emulator side of the differential tests:
both start from exactly the state described here.  Nothing in this module
touches Unicorn or the emulator; it is bytes and integers.

A layout gives:

``ram_size``        bytes of guest-physical RAM, starting at physical 0.
``images``          list of ``(phys_addr, bytes)`` written into zeroed RAM
                    before every run (GDT, IDT/IVT, TSS, page tables,
                    exception-handler stubs).
``regs``            the initial registers, a dict:
                      eax ecx edx ebx esp ebp esi edi eip eflags   int
                      cr0 cr2 cr3 cr4                              int
                      gdtr idtr                                    (base, limit)
                      ldtr tr                                      Seg
                      es cs ss ds fs gs                            Seg
                      cpl                                          int
                    ``Seg(sel, base, limit, attr)``: the selector and the
                    hidden descriptor cache.  ``attr`` is the 16-bit word of
                    emu/cpu/state.py (access byte in bits 0-7, G/D/L/AVL in
                    bits 12-15); ``limit`` is the byte-granular (scaled)
                    limit.
``code_lin``        linear address where test code is placed (EIP = its
                    offset in CS; CS base is 0 in PROT32_PAGED).
``code_size``       bytes of code space available from code_lin.
``data_lin``        ``(start, size)``: linear range a test may fill with
                    random data (all mapped, writable).
``data_phys``       ``(start, size)``: the physical range backing data_lin.
                    In PROT32_PAGED the pages are mapped in REVERSE order
                    (see ``lin_to_phys``) so that a page-crossing access that
                    assumes physical contiguity gets caught.
``stack_lin``       ``(low, high)``: the mapped, writable stack range; the
                    initial ESP/SP lies inside it with headroom above.
``handler_lin(v)``  linear address of the stub the IDT/IVT sends vector v to.
``lin_to_phys(lin)`` physical address of a linear address, or None when
                    unmapped (walks the page tables in ``images``).

Conventions for exceptions (both sides of the differential tests report the
same thing): every vector of the IDT/IVT points at its own 16-byte stub of
``HLT`` bytes at ``handler_lin(v)``; a run stops when EIP reaches a stub.  See
tests/oracle.py for how the Unicorn side recovers vector and error code.
"""
from collections import namedtuple
import struct

Seg = namedtuple("Seg", "sel base limit attr")

GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SEGS = ("es", "cs", "ss", "ds", "fs", "gs")      # state.py order

# EFLAGS / CR bits used below
EFLAGS_FIXED = 0x2
CR0_PE, CR0_ET, CR0_WP, CR0_PG = 1 << 0, 1 << 4, 1 << 16, 1 << 31
CR4_PSE = 1 << 4

# Page-table entry bits
PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80

HLT = 0xF4
STUB_SIZE = 16


def descriptor(base, limit, access, flags):
    """An 8-byte segment/system descriptor. ``flags`` is the G/D/L/AVL nibble."""
    return struct.pack("<HHBBBB", limit & 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF,
                       access & 0xFF, ((limit >> 16) & 0xF) | ((flags & 0xF) << 4),
                       (base >> 24) & 0xFF)


def gate(offset, selector, type_attr):
    """An 8-byte IDT gate (type_attr: 0x8E = 32-bit interrupt gate, DPL 0)."""
    return struct.pack("<HHBBH", offset & 0xFFFF, selector, 0, type_attr, offset >> 16)


def seg_from_descriptor(sel, desc):
    """Seg (hidden cache) that loading ``sel`` with descriptor bytes gives."""
    lo, hi = struct.unpack("<II", desc)
    base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    attr = (hi >> 8) & 0xF0FF
    if attr & 0x8000:                       # G: 4 KiB granularity
        limit = (limit << 12) | 0xFFF
    return Seg(sel, base, limit, attr)


class Layout:
    """One test machine.  Attributes are documented in the module docstring."""

    def __init__(self, name, mode, ram_size, images, regs, code_lin, code_size,
                 data_lin, data_phys, stack_lin, handler_base, paging,
                 extra=None):
        self.name = name
        self.mode = mode                    # 16 or 32: the default code size
        self.ram_size = ram_size
        self.images = images
        self.regs = regs
        self.code_lin = code_lin
        self.code_size = code_size
        self.data_lin = data_lin
        self.data_phys = data_phys
        self.stack_lin = stack_lin
        self.handler_base = handler_base
        self.paging = paging
        self.extra = dict(extra or {})
        for k, v in self.extra.items():
            if not hasattr(self, k):        # never shadow the documented fields
                setattr(self, k, v)
        self._mem = None

    def __repr__(self):
        return "<Layout %s>" % self.name

    # -- derived views ----------------------------------------------------
    def handler_lin(self, vector):
        return self.handler_base + STUB_SIZE * vector

    def vector_of(self, lin):
        """The vector whose stub contains ``lin``, or None."""
        off = lin - self.handler_base
        if 0 <= off < 256 * STUB_SIZE:
            return off // STUB_SIZE
        return None

    def initial_ram(self):
        """A bytearray of ``ram_size`` bytes holding the images (a fresh copy)."""
        if self._mem is None:
            ram = bytearray(self.ram_size)
            for addr, data in self.images:
                ram[addr:addr + len(data)] = data
            self._mem = bytes(ram)
        return bytearray(self._mem)

    def _rd32(self, ram, addr):
        return struct.unpack_from("<I", ram, addr)[0]

    def lin_to_phys(self, lin, ram=None, write=False, user=False):
        """Translate with the layout's initial page tables (or those in ``ram``).

        Returns None when the address is not mapped for that access (not
        present, or a write to a read-only page with CR0.WP set, or a user
        access to a supervisor page).  Without paging: identity (A20 on).
        """
        lin &= 0xFFFFFFFF
        if not self.paging:
            return lin
        if ram is None:
            if self._mem is None:
                self.initial_ram()
            ram = self._mem
        cr3 = self.regs["cr3"] & 0xFFFFF000
        pde = self._rd32(ram, cr3 + 4 * (lin >> 22))
        if not pde & PTE_P:
            return None
        if pde & PTE_PS and self.regs["cr4"] & CR4_PSE:
            rights = pde
            phys = (pde & 0xFFC00000) | (lin & 0x3FFFFF)
        else:
            pte = self._rd32(ram, (pde & 0xFFFFF000) + 4 * ((lin >> 12) & 0x3FF))
            if not pte & PTE_P:
                return None
            rights = pde & pte
            phys = (pte & 0xFFFFF000) | (lin & 0xFFF)
        if user and not rights & PTE_US:
            return None
        if write and not rights & PTE_RW and (user or self.regs["cr0"] & CR0_WP):
            return None
        return phys

    def lin_range_to_phys(self, lin, size):
        """List of (phys, n) pieces covering [lin, lin+size); raises if unmapped."""
        out = []
        while size:
            n = min(size, 0x1000 - (lin & 0xFFF))
            p = self.lin_to_phys(lin)
            if p is None:
                raise ValueError("%s: linear 0x%x is not mapped" % (self.name, lin))
            out.append((p, n))
            lin += n
            size -= n
        return out

    def state_words(self, regs=None):
        """{word index in emu/cpu/state.py: value} for the initial registers.

        ``regs`` overrides entries of ``self.regs`` (same keys).  A helper for
        the emulator side; it imports emu.cpu.state lazily.
        """
        from emu.cpu import state as S
        r = dict(self.regs)
        r.update(regs or {})
        w = {}
        for i, name in enumerate(GPRS):
            w[i] = r[name] & 0xFFFFFFFF
        w[S.EIP] = r["eip"]
        w[S.EFLAGS] = r["eflags"]
        w[S.LF_OP] = 0
        for name, idx in (("cr0", S.CR0), ("cr2", S.CR2), ("cr3", S.CR3), ("cr4", S.CR4)):
            w[idx] = r[name]
        w[S.CPL] = r["cpl"]
        for i, name in enumerate(SEGS):
            sel, base, limit, attr = r[name]
            for f, v in enumerate((sel, base, limit, attr)):
                w[S.seg_index(i, f)] = v
        w[S.GDTR_BASE], w[S.GDTR_LIMIT] = r["gdtr"]
        w[S.IDTR_BASE], w[S.IDTR_LIMIT] = r["idtr"]
        w[S.LDTR_SEL], w[S.LDTR_BASE], w[S.LDTR_LIMIT], w[S.LDTR_ATTR] = r["ldtr"]
        w[S.TR_SEL], w[S.TR_BASE], w[S.TR_LIMIT], w[S.TR_ATTR] = r["tr"]
        w[S.A20] = 1
        return w


# ---------------------------------------------------------------------------
# REAL16: 16-bit real mode, 1 MiB + 64 KiB of RAM
# ---------------------------------------------------------------------------
def _real_seg(sel, code=False):
    return Seg(sel, sel << 4, 0xFFFF, 0x009B if code else 0x0093)


def _make_real16():
    ram_size = 0x110000                     # 1 MiB + 64 KiB: FFFF:xxxx lands in RAM
    ivt_seg = 0x0800                        # stubs at 0800:v*16 = phys 0x8000 + 16 v
    handler_base = ivt_seg << 4
    ivt = b"".join(struct.pack("<HH", v * STUB_SIZE, ivt_seg) for v in range(256))
    stubs = bytes([HLT]) * (256 * STUB_SIZE)
    cs, ds, ss, es, fs, gs = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 0x6000
    ip, sp = 0x0100, 0xFF00
    regs = dict(eax=0, ecx=0, edx=0, ebx=0, esp=sp, ebp=0, esi=0, edi=0,
                eip=ip, eflags=EFLAGS_FIXED,
                cr0=CR0_ET, cr2=0, cr3=0, cr4=0,
                gdtr=(0, 0xFFFF), idtr=(0, 0x3FF),
                ldtr=Seg(0, 0, 0xFFFF, 0x0082), tr=Seg(0, 0, 0xFFFF, 0x008B),
                cpl=0,
                es=_real_seg(es), cs=_real_seg(cs, code=True), ss=_real_seg(ss),
                ds=_real_seg(ds), fs=_real_seg(fs), gs=_real_seg(gs))
    return Layout(
        "REAL16", 16, ram_size,
        images=[(0, ivt), (handler_base, stubs)],
        regs=regs,
        code_lin=(cs << 4) + ip, code_size=0x0F00,          # 1000:0100 .. 1000:0FFF
        data_lin=(ds << 4, 0x10000), data_phys=(ds << 4, 0x10000),
        stack_lin=((ss << 4), (ss << 4) + 0x10000),
        handler_base=handler_base, paging=False,
        extra=dict(ivt_base=0, es_lin=(es << 4, 0x10000), fs_lin=(fs << 4, 0x10000),
                   gs_lin=(gs << 4, 0x10000)))


# ---------------------------------------------------------------------------
# PROT32_PAGED: 32-bit protected mode, paging on, 4 KiB pages + one PSE page
# ---------------------------------------------------------------------------
# Physical map                           Linear map (paging)
#  0x01000 GDT                            0xC0001000   (system region:
#  0x02000 IDT (256 gates)                0xC0002000    lin 0xC0000000 + p
#  0x03000 TSS                            0xC0003000    -> phys p for
#  0x04000 exception stubs (256 x 16)     0xC0004000    p < 0x20000,
#  0x08000 ring-0 stack page (TSS.esp0)   0xC0008000    supervisor, RW)
#  0x10000 page directory (CR3)           0xC0010000
#  0x11000 page table: system region      0xC0011000
#  0x12000 page table: user region        0xC0012000
#  0x30000-0x31FFF code (2 pages)         0x00401000-0x00402FFF   user RW
#  0x50000-0x57FFF data (8 pages)         0x00410000-0x00417FFF   user RW, pages REVERSED:
#                                           lin 0x00410000 -> phys 0x57000 ... 0x00417000 -> 0x50000
#  0x58000 read-only page                 0x00418000              user RO
#  (0x59000, PTE present bit clear)       0x00419000              NOT PRESENT
#  0x5A000 supervisor-only page           0x0041A000              supervisor RW
#  0x60000-0x63FFF stack (4 pages)        0x00420000-0x00423FFF   user RW
#  0x400000-0x7FFFFF one 4 MiB PSE page   0x00800000-0x00BFFFFF   user RW
# Linear 0x00000000-0x003FFFFF (null page included) is not mapped at all.
# All PDE/PTEs have A (and PTEs D) preset, all GDT descriptors have their
# accessed bit preset and the TSS is busy (TR holds it: regs["tr"].attr =
# 0x008B), so that neither side writes A/D/accessed/busy bits during a run
# unless a test clears them.  TSS: ESP0 = kstack_top, SS0 = 0x10, no I/O
# bitmap.  IDT: 32-bit interrupt gates to the stubs, DPL 0 except vectors 3,
# 4 and 0x80 (DPL 3).  Extra GDT entries: 0x30 ring-0 data based at
# data_lin with a byte-granular limit of 0xFFF (limit tests), 0x38 ring-0
# 16-bit code, base 0, limit 0xFFFF.
P32 = dict(
    gdt_phys=0x1000, idt_phys=0x2000, tss_phys=0x3000, stubs_phys=0x4000,
    kstack_phys=0x8000, pd_phys=0x10000, pt_sys_phys=0x11000, pt_user_phys=0x12000,
    sys_lin=0xC0000000, sys_size=0x20000,
    code_lin=0x00401000, code_phys=0x30000, code_pages=2,
    data_lin=0x00410000, data_phys=0x50000, data_pages=8,
    ro_lin=0x00418000, ro_phys=0x58000,
    unmapped_lin=0x00419000,
    super_lin=0x0041A000, super_phys=0x5A000,
    stack_lin=0x00420000, stack_phys=0x60000, stack_pages=4,
    pse_lin=0x00800000, pse_phys=0x00400000,
)
SEL_NULL, SEL_CODE0, SEL_DATA0, SEL_CODE3, SEL_DATA3, SEL_TSS = 0x00, 0x08, 0x10, 0x1B, 0x23, 0x28
SEL_DATA_SMALL, SEL_CODE16 = 0x30, 0x38


def _make_prot32():
    p = P32
    sys_lin = p["sys_lin"]
    gdt_lin = sys_lin + p["gdt_phys"]
    idt_lin = sys_lin + p["idt_phys"]
    tss_lin = sys_lin + p["tss_phys"]
    stubs_lin = sys_lin + p["stubs_phys"]
    kstack_top = sys_lin + p["kstack_phys"] + 0x1000

    gdt_entries = [
        b"\0" * 8,                                            # 0x00 null
        descriptor(0, 0xFFFFF, 0x9B, 0xC),                    # 0x08 ring-0 code, flat 32-bit
        descriptor(0, 0xFFFFF, 0x93, 0xC),                    # 0x10 ring-0 data, flat
        descriptor(0, 0xFFFFF, 0xFB, 0xC),                    # 0x18 (0x1B) ring-3 code
        descriptor(0, 0xFFFFF, 0xF3, 0xC),                    # 0x20 (0x23) ring-3 data
        descriptor(tss_lin, 0x67, 0x8B, 0x0),                 # 0x28 32-bit TSS (busy: TR holds it)
        descriptor(p["data_lin"], 0xFFF, 0x93, 0x4),          # 0x30 ring-0 data, base data_lin, limit 0xFFF (byte gran.)
        descriptor(0, 0xFFFF, 0x9B, 0x0),                     # 0x38 ring-0 16-bit code, base 0, limit 0xFFFF
    ]
    gdt = b"".join(gdt_entries)

    def gate_attr(v):
        return 0xEE if v in (3, 4, 0x80) else 0x8E             # DPL 3 for int3/into/int 0x80
    idt = b"".join(gate(stubs_lin + STUB_SIZE * v, SEL_CODE0, gate_attr(v)) for v in range(256))
    stubs = bytes([HLT]) * (256 * STUB_SIZE)

    tss = bytearray(0x68)
    struct.pack_into("<II", tss, 4, kstack_top, SEL_DATA0)   # esp0, ss0
    struct.pack_into("<H", tss, 0x66, 0x68)                  # I/O map base beyond the limit: no bitmap

    # page directory and tables
    pd = bytearray(4096)
    pt_sys = bytearray(4096)
    pt_user = bytearray(4096)
    sysf = PTE_P | PTE_RW | PTE_A | PTE_D
    userf = PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D

    def pde_set(lin, val):
        struct.pack_into("<I", pd, 4 * (lin >> 22), val)

    def pte_set(pt, lin, val):
        struct.pack_into("<I", pt, 4 * ((lin >> 12) & 0x3FF), val)

    pde_set(sys_lin, p["pt_sys_phys"] | PTE_P | PTE_RW | PTE_A)
    for off in range(0, p["sys_size"], 0x1000):
        pte_set(pt_sys, sys_lin + off, off | sysf)
    pde_set(p["code_lin"], p["pt_user_phys"] | PTE_P | PTE_RW | PTE_US | PTE_A)
    for i in range(p["code_pages"]):
        pte_set(pt_user, p["code_lin"] + 0x1000 * i, (p["code_phys"] + 0x1000 * i) | userf)
    n = p["data_pages"]
    for i in range(n):
        pte_set(pt_user, p["data_lin"] + 0x1000 * i, (p["data_phys"] + 0x1000 * (n - 1 - i)) | userf)
    pte_set(pt_user, p["ro_lin"], p["ro_phys"] | (userf & ~PTE_RW))
    pte_set(pt_user, p["unmapped_lin"], (p["ro_phys"] + 0x1000) | (userf & ~PTE_P))
    pte_set(pt_user, p["super_lin"], p["super_phys"] | sysf)
    for i in range(p["stack_pages"]):
        pte_set(pt_user, p["stack_lin"] + 0x1000 * i, (p["stack_phys"] + 0x1000 * i) | userf)
    pde_set(p["pse_lin"], p["pse_phys"] | userf | PTE_PS)

    images = [
        (p["gdt_phys"], gdt), (p["idt_phys"], idt), (p["tss_phys"], bytes(tss)),
        (p["stubs_phys"], stubs),
        (p["pd_phys"], bytes(pd)), (p["pt_sys_phys"], bytes(pt_sys)),
        (p["pt_user_phys"], bytes(pt_user)),
    ]

    def seg(sel):
        return seg_from_descriptor(sel, gdt_entries[sel >> 3])

    stack_top = p["stack_lin"] + 0x1000 * p["stack_pages"]
    regs = dict(eax=0, ecx=0, edx=0, ebx=0, esp=stack_top - 0x100, ebp=0, esi=0, edi=0,
                eip=p["code_lin"], eflags=EFLAGS_FIXED,
                cr0=CR0_PE | CR0_ET | CR0_WP | CR0_PG, cr2=0, cr3=p["pd_phys"], cr4=CR4_PSE,
                gdtr=(gdt_lin, len(gdt) - 1), idtr=(idt_lin, len(idt) - 1),
                ldtr=Seg(0, 0, 0, 0), tr=seg(SEL_TSS),
                cpl=0,
                es=seg(SEL_DATA0), cs=seg(SEL_CODE0), ss=seg(SEL_DATA0),
                ds=seg(SEL_DATA0), fs=seg(SEL_DATA0), gs=seg(SEL_DATA0))
    ring3 = dict(cpl=3, es=seg(SEL_DATA3), cs=seg(SEL_CODE3), ss=seg(SEL_DATA3),
                 ds=seg(SEL_DATA3), fs=seg(SEL_DATA3), gs=seg(SEL_DATA3))
    extra = dict(p)
    extra.update(
        gdt_lin=gdt_lin, idt_lin=idt_lin, tss_lin=tss_lin, kstack_top=kstack_top,
        gdt_entries=gdt_entries,
        # regs overrides that put the CPU in ring 3 (pass as run(regs=...))
        ring3_regs=ring3,
        seg=seg,
        sel_code0=SEL_CODE0, sel_data0=SEL_DATA0, sel_code3=SEL_CODE3,
        sel_data3=SEL_DATA3, sel_tss=SEL_TSS, sel_data_small=SEL_DATA_SMALL,
        sel_code16=SEL_CODE16,
    )
    return Layout(
        "PROT32_PAGED", 32, 0x800000, images, regs,
        code_lin=p["code_lin"], code_size=0x1000 * p["code_pages"],
        data_lin=(p["data_lin"], 0x1000 * p["data_pages"]),
        data_phys=(p["data_phys"], 0x1000 * p["data_pages"]),
        stack_lin=(p["stack_lin"], stack_top),
        handler_base=stubs_lin, paging=True, extra=extra)


REAL16 = _make_real16()
PROT32_PAGED = _make_prot32()
LAYOUTS = {"REAL16": REAL16, "PROT32_PAGED": PROT32_PAGED}
