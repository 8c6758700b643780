"""The guest page-table walker: IA-32 32-bit paging (2 levels, no PAE).

``walk`` is pure architecture: given the control registers and a linear
address it reads the guest's page directory and page table through
``PhysMem.read`` (so a page table in ROM, MMIO or unmapped space is read
exactly as the CPU would read it: unmapped reads give all-ones), checks the
access rights, sets the accessed/dirty bits as hardware does and returns the
physical address plus a ``WalkInfo`` describing the translation, or raises
``CPUFault(14, error_code, cr2=lin)``.

Rules implemented (Intel SDM vol. 3A §4.3, §4.6, §4.7, §4.8):

* CR4.PSE=1 and PDE.PS=1: a 4 MiB page.  Without PSE-36 (MAXPHYADDR = 32)
  bits 21:13 of such a PDE are reserved; any set -> #PF with P=1, RSVD=1.
  With CR4.PSE=0 the PS bit is ignored and the PDE points to a page table.
  Bit 12 of a 4 MiB PDE and bit 7 of a PTE are PAT bits (PAT supported), not
  reserved; 32-bit paging has no other reserved bits.
* A not-present PDE or PTE -> #PF with P=0, whatever the rights would be.
* Rights combine over both levels: user access needs U/S=1 in both; a user
  write needs R/W=1 in both; a supervisor write needs R/W=1 in both only when
  CR0.WP=1 (with WP=0 the supervisor may write anything, user pages too).
* Error code: bit 0 P (protection/reserved, not "not present"), bit 1 W/R
  (the access was a write), bit 2 U/S (the access was a user access),
  bit 3 RSVD.  Bit 4 (I/D) is never set: 32-bit paging without NX/SMEP.
* On a successful translation the A bit is set in the PDE and in the PTE,
  and on a write the D bit in the PTE (or the 4 MiB PDE).  Nothing is set on
  a fault.  Each update is a 4-byte write of (current value | bits) through
  ``PhysMem.write``, done only when a bit actually changes (hardware's locked
  OR), PDE first.
"""
from ..cpu.faults import CPUFault, PF

P = 0x001
RW = 0x002
US = 0x004
PWT = 0x008
PCD = 0x010
A = 0x020
D = 0x040
PS = 0x080
G = 0x100

PDE4M_RSVD = 0x003FE000     # bits 21:13 of a 4 MiB PDE (no PSE-36)
FRAME_4K = 0xFFFFF000
FRAME_4M = 0xFFC00000

ERR_P = 1
ERR_W = 2
ERR_U = 4
ERR_RSVD = 8

CR0_PG = 1 << 31
CR0_WP = 1 << 16
CR4_PSE = 1 << 4
CR4_PGE = 1 << 7

MASK32 = 0xFFFFFFFF


class WalkInfo:
    """What the shadow layer needs to know about one translation.

    pde_addr / pte_addr: physical addresses of the entries used (pte_addr is
    None for a 4 MiB page); pde / pte: their values as read (before A/D
    updates); large: 4 MiB page; global_: PTE.G (PDE.G for 4 MiB) with
    CR4.PGE=1; user: U/S=1 at every level; rw: R/W=1 at every level;
    sup_write: a supervisor write is allowed (rw or CR0.WP=0); dirty: the D
    bit is set after this walk.
    """

    __slots__ = ("pde_addr", "pte_addr", "pde", "pte", "large", "global_",
                 "user", "rw", "sup_write", "dirty")

    def __init__(self, pde_addr, pte_addr, pde, pte, large, global_, user, rw,
                 sup_write, dirty):
        self.pde_addr = pde_addr
        self.pte_addr = pte_addr
        self.pde = pde
        self.pte = pte
        self.large = large
        self.global_ = global_
        self.user = user
        self.rw = rw
        self.sup_write = sup_write
        self.dirty = dirty

    @property
    def user_write(self):
        return self.user and self.rw

    def allows(self, write, user):
        """Would an access of this kind be allowed (ignoring the D bit)?"""
        if user:
            return self.user and (self.rw or not write)
        return self.sup_write or not write

    def __repr__(self):
        return ("WalkInfo(pde@0x%x=0x%08x, pte@%s=%s, %s%s%s%s%s)"
                % (self.pde_addr, self.pde,
                   "-" if self.pte_addr is None else "0x%x" % self.pte_addr,
                   "-" if self.pte is None else "0x%08x" % self.pte,
                   "4M " if self.large else "", "U" if self.user else "S",
                   "W" if self.rw else "R", " G" if self.global_ else "",
                   " D" if self.dirty else ""))


def walk(phys, cr3, cr0, cr4, lin, write, user, fetch=False, update=True,
         a20_mask=MASK32, read=None, ad_write=None):
    """Translate ``lin``; return (paddr, WalkInfo) or raise CPUFault(#PF).

    ``write``/``user``/``fetch`` describe the access (``fetch`` changes
    nothing in 32-bit paging without NX; it is accepted for symmetry).
    ``update=False`` skips the A/D updates (for audits and debuggers).
    ``a20_mask`` is applied to every physical address (A20M#).  ``read``
    overrides how entries are read (default ``phys.read``; an audit passes a
    side-effect-free reader); ``ad_write(addr, 4, value)`` how A/D updates are
    stored (default ``phys.write``).  CR0.PG is not looked at: the caller
    walks only when paging is on.
    """
    lin &= MASK32
    rd = phys.read if read is None else read
    wr = phys.write if ad_write is None else ad_write
    pde_addr = ((cr3 & FRAME_4K) | ((lin >> 20) & 0xFFC)) & a20_mask
    pde = rd(pde_addr, 4)
    if not pde & P:
        raise CPUFault(PF, (ERR_W if write else 0) | (ERR_U if user else 0), cr2=lin)
    if pde & PS and cr4 & CR4_PSE:
        # ---- 4 MiB page
        if pde & PDE4M_RSVD:
            raise CPUFault(PF, ERR_P | ERR_RSVD | (ERR_W if write else 0)
                           | (ERR_U if user else 0), cr2=lin)
        us = pde & US
        rw = pde & RW
        _check(lin, write, user, us, rw, cr0)
        dirty = pde & D
        if update:
            bits = A | D if write else A
            if pde & bits != bits:
                _set_bits(wr, rd, pde_addr, bits)
            if write:
                dirty = D
        paddr = ((pde & FRAME_4M) | (lin & 0x3FFFFF)) & a20_mask
        return paddr, WalkInfo(pde_addr, None, pde, None, True,
                               bool(pde & G and cr4 & CR4_PGE), bool(us), bool(rw),
                               bool(rw or not cr0 & CR0_WP), bool(dirty))
    # ---- 4 KiB page
    pte_addr = ((pde & FRAME_4K) | ((lin >> 10) & 0xFFC)) & a20_mask
    pte = rd(pte_addr, 4)
    if not pte & P:
        raise CPUFault(PF, (ERR_W if write else 0) | (ERR_U if user else 0), cr2=lin)
    us = pde & pte & US
    rw = pde & pte & RW
    _check(lin, write, user, us, rw, cr0)
    dirty = pte & D
    if update:
        if not pde & A:
            _set_bits(wr, rd, pde_addr, A)
        bits = A | D if write else A
        if pte & bits != bits:
            _set_bits(wr, rd, pte_addr, bits)
        if write:
            dirty = D
    paddr = ((pte & FRAME_4K) | (lin & 0xFFF)) & a20_mask
    return paddr, WalkInfo(pde_addr, pte_addr, pde, pte, False,
                           bool(pte & G and cr4 & CR4_PGE), bool(us), bool(rw),
                           bool(rw or not cr0 & CR0_WP), bool(dirty))


def _check(lin, write, user, us, rw, cr0):
    if user:
        if not us or (write and not rw):
            raise CPUFault(PF, ERR_P | ERR_U | (ERR_W if write else 0), cr2=lin)
    elif write and not rw and cr0 & CR0_WP:
        raise CPUFault(PF, ERR_P | ERR_W, cr2=lin)


def _set_bits(wr, rd, addr, bits):
    """Locked OR of ``bits`` into the dword at ``addr`` (re-read: the entry may
    alias one just updated, e.g. a page directory used as its own table)."""
    cur = rd(addr, 4)
    if cur & bits != bits:
        wr(addr, 4, cur | bits)
