"""The native TLB-miss path: a guest page walk in IR (``emurt_walk``).

When a load, a store or a block's code-page check misses the native TLB,
native code walks the guest's page tables itself - the same rules as
``emu/mmu/paging.py`` (32-bit paging, 4 MiB pages with CR4.PSE, rights over
both levels, CR0.WP, the A20 mask, A and D bits set as a locked OR, PDE
first) - and fills the native TLB entry, without a trip to Python.

It succeeds only where a Python walk would succeed *and* its result is safe
to keep without Python's bookkeeping; in every other case it returns -1 and
the caller takes the Python path (``emu_rd``/``emu_wr``), which walks
again, raises the #PF, reaches the MMIO device or the watched page, and
fills the shadow MMU's dicts.  So it gives up when:

* the PDE or PTE is not present, a reserved bit is set, or the rights do
  not allow the access (the fault is Python's to raise, with its error code);
* the page directory or page table is not a RAM page that the shadow MMU
  write-watches (``WATCH_PT``): only then does every store to it reach the
  MMU, which tells tier 1 to drop what it filled itself (``mmu.pt_listener``);
* an A or D bit must be set in a page that is watched for another reason too
  (decoded code: that store must go through PhysMem's listeners);
* the target page is MMIO or outside RAM (reads), or not plain, unwatched
  RAM (writes): those accesses are Python's.

With paging off the "walk" is the identity map with the A20 mask, under the
same target-page rules.

Entries filled here are not in the shadow MMU's dicts.  What keeps them
right (THREATS.md HYP-DV3) is in runtime.py's docstring: the whole native
TLB is emptied when a watched page-table page is written or stops being
watched, and the write entries to a page are dropped when it becomes
watched (``mmu.revoke_listener``).
"""
from ..cpu.state import A20, CPL, CR0, CR3, CR4
from ..mmu import paging as pg
from ..mmu.physmem import KIND_MMIO, KIND_RAM, WATCH_PT
from . import runtime as rt


def _i32(v):
    """An IR i32 literal (LLVM wants signed decimal for values past 2^31)."""
    v &= 0xFFFFFFFF
    return str(v - (1 << 32) if v & 0x80000000 else v)


def _entry(x, base, shift):
    """IR of one level of the walk, the same for the page directory (x="pd")
    and a page table (x="pt"): the entry's address (index bits of %lin from
    ``shift``, the table at %<base>, the A20 mask), the checks that its page
    is RAM the MMU write-watches, the entry itself (%<x>e, its pointer
    %<x>ep, the page's watch byte %<x>w) and P; then on to label <x>3.
    (Part of walk_fn's template: % placeholders are filled there.)"""
    return """  %%l{s} = lshr i32 %%lin, {s}
  %%{x}i = and i32 %%l{s}, 4092
  %%{x}ea0 = or i32 %%{b}, %%{x}i
  %%{x}ea = and i32 %%{x}ea0, %%am
  %%{x}pn = lshr i32 %%{x}ea, 12
  %%{x}pn64 = zext i32 %%{x}pn to i64
  %%{x}in = icmp ult i64 %%{x}pn64, %%npages
  br i1 %%{x}in, label %%{x}1, label %%fail
{x}1:
  %%{x}kp = getelementptr i8, ptr %%kind, i64 %%{x}pn64
  %%{x}k = load i8, ptr %%{x}kp
  %%{x}wp = getelementptr i8, ptr %%watch, i64 %%{x}pn64
  %%{x}w = load i8, ptr %%{x}wp
  %%{x}kok = icmp eq i8 %%{x}k, %(RAMK)d
  %%{x}wt = and i8 %%{x}w, %(WPT)d
  %%{x}wok = icmp ne i8 %%{x}wt, 0
  %%{x}ok = and i1 %%{x}kok, %%{x}wok
  br i1 %%{x}ok, label %%{x}2, label %%fail
{x}2:
  %%{x}ea64 = zext i32 %%{x}ea to i64
  %%{x}ep = getelementptr i8, ptr %%ram, i64 %%{x}ea64
  %%{x}e = load i32, ptr %%{x}ep, align 1
  %%{x}p = and i32 %%{x}e, %(P)d
  %%{x}pz = icmp eq i32 %%{x}p, 0
  br i1 %%{x}pz, label %%fail, label %%{x}3
""".format(x=x, b=base, s=shift)


def walk_fn():
    """IR of ``i64 @emurt_walk(i64 ctx, i32 lin, i32 write)``: the host page
    offset of the filled entry, or -1 (take the Python path)."""
    c = dict(
        R=rt.CTX_R, RAM=rt.CTX_RAM, KIND=rt.CTX_KIND, WATCH=rt.CTX_WATCH,
        NPAGES=rt.CTX_NPAGES, WALKS=rt.CTX_WALKS, WMARK=rt.CTX_WMARK, TLBR=rt.CTX_TLBR, TLBW=rt.CTX_TLBW,
        CR0=CR0, CR3=CR3, CR4=CR4, CPL=CPL, A20=A20,
        A20OFF=_i32(~(1 << 20)), PG=_i32(pg.CR0_PG), WP=pg.CR0_WP, PSE=pg.CR4_PSE,
        F4K=_i32(pg.FRAME_4K), F4M=_i32(pg.FRAME_4M), RSVD=pg.PDE4M_RSVD,
        P=pg.P, RW=pg.RW, US=pg.US, A=pg.A, AD=pg.A | pg.D, PS=pg.PS,
        RAMK=KIND_RAM, MMIO=KIND_MMIO, WPT=WATCH_PT, SLOTS=rt.NTLB - 1)
    return ("""
define internal i64 @emurt_walk(i64 %%ctx, i32 %%lin, i32 %%write) noinline {
entry:
  %%cp = inttoptr i64 %%ctx to ptr
  %%rpp = getelementptr i64, ptr %%cp, i64 %(R)d
  %%rp = load ptr, ptr %%rpp
  %%ramp = getelementptr i64, ptr %%cp, i64 %(RAM)d
  %%ram = load ptr, ptr %%ramp
  %%kp = getelementptr i64, ptr %%cp, i64 %(KIND)d
  %%kind = load ptr, ptr %%kp
  %%wp = getelementptr i64, ptr %%cp, i64 %(WATCH)d
  %%watch = load ptr, ptr %%wp
  %%np = getelementptr i64, ptr %%cp, i64 %(NPAGES)d
  %%npages = load i64, ptr %%np
  %%cr0p = getelementptr i32, ptr %%rp, i64 %(CR0)d
  %%cr0 = load i32, ptr %%cr0p
  %%a20p = getelementptr i32, ptr %%rp, i64 %(A20)d
  %%a20 = load i32, ptr %%a20p
  %%a20z = icmp eq i32 %%a20, 0
  %%am = select i1 %%a20z, i32 %(A20OFF)s, i32 -1
  %%isw = icmp ne i32 %%write, 0
  %%pgb = and i32 %%cr0, %(PG)s
  %%pgon = icmp ne i32 %%pgb, 0
  br i1 %%pgon, label %%paging, label %%flat
flat:
  %%fpa = and i32 %%lin, %%am
  br label %%target
paging:
  %%cr3p = getelementptr i32, ptr %%rp, i64 %(CR3)d
  %%cr3 = load i32, ptr %%cr3p
  %%cr4p = getelementptr i32, ptr %%rp, i64 %(CR4)d
  %%cr4 = load i32, ptr %%cr4p
  %%cplp = getelementptr i32, ptr %%rp, i64 %(CPL)d
  %%cpl = load i32, ptr %%cplp
  %%user = icmp eq i32 %%cpl, 3
  %%wpb = and i32 %%cr0, %(WP)d
  %%nowp = icmp eq i32 %%wpb, 0
  %%pdb = and i32 %%cr3, %(F4K)s
""" + _entry("pd", "pdb", 20) + """pd3:
  %%ps = and i32 %%pde, %(PS)d
  %%pse = and i32 %%cr4, %(PSE)d
  %%psz = icmp eq i32 %%ps, 0
  %%psez = icmp eq i32 %%pse, 0
  %%small4k = or i1 %%psz, %%psez
  br i1 %%small4k, label %%small, label %%big
big:
  %%brs = and i32 %%pde, %(RSVD)d
  %%brsz = icmp eq i32 %%brs, 0
  %%bus = and i32 %%pde, %(US)d
  %%brw = and i32 %%pde, %(RW)d
  %%bok = call i1 @emurt_rights(i1 %%user, i1 %%isw, i1 %%nowp, i32 %%bus, i32 %%brw)
  %%bok2 = and i1 %%bok, %%brsz
  br i1 %%bok2, label %%big1, label %%fail
big1:
  %%bneed = select i1 %%isw, i32 %(AD)d, i32 %(A)d
  %%bhave = and i32 %%pde, %%bneed
  %%bset = icmp ne i32 %%bhave, %%bneed
  %%bwx = icmp ne i8 %%pdw, %(WPT)d
  %%bbad = and i1 %%bset, %%bwx
  br i1 %%bbad, label %%fail, label %%big2
big2:
  br i1 %%bset, label %%bigad, label %%bigdone
bigad:
  %%bcur = load i32, ptr %%pdep, align 1
  %%bnew = or i32 %%bcur, %%bneed
  store i32 %%bnew, ptr %%pdep, align 1
  br label %%bigdone
bigdone:
  %%bfr = and i32 %%pde, %(F4M)s
  %%blo = and i32 %%lin, 4190208
  %%bpa0 = or i32 %%bfr, %%blo
  %%bpa = and i32 %%bpa0, %%am
  br label %%target
small:
  %%ptb = and i32 %%pde, %(F4K)s
""" + _entry("pt", "ptb", 10) + """pt3:
  %%both = and i32 %%pde, %%pte
  %%sus = and i32 %%both, %(US)d
  %%srw = and i32 %%both, %(RW)d
  %%sok = call i1 @emurt_rights(i1 %%user, i1 %%isw, i1 %%nowp, i32 %%sus, i32 %%srw)
  br i1 %%sok, label %%pt4, label %%fail
pt4:
  ; A in the PDE, A (and D on a write) in the PTE: each update is allowed
  ; only into a page watched for nothing but being a page table
  %%da = and i32 %%pde, %(A)d
  %%dset = icmp eq i32 %%da, 0
  %%tneed = select i1 %%isw, i32 %(AD)d, i32 %(A)d
  %%thave = and i32 %%pte, %%tneed
  %%tset = icmp ne i32 %%thave, %%tneed
  %%dwx = icmp ne i8 %%pdw, %(WPT)d
  %%twx = icmp ne i8 %%ptw, %(WPT)d
  %%dbad = and i1 %%dset, %%dwx
  %%tbad = and i1 %%tset, %%twx
  %%adbad = or i1 %%dbad, %%tbad
  br i1 %%adbad, label %%fail, label %%pt5
pt5:
  br i1 %%dset, label %%pdad, label %%pt6
pdad:
  %%dcur = load i32, ptr %%pdep, align 1
  %%dnew = or i32 %%dcur, %(A)d
  store i32 %%dnew, ptr %%pdep, align 1
  br label %%pt6
pt6:
  br i1 %%tset, label %%ptad, label %%smalldone
ptad:
  ; re-read: the PTE may be the PDE just updated (a directory used as its own table)
  %%tcur = load i32, ptr %%ptep, align 1
  %%tnew = or i32 %%tcur, %%tneed
  store i32 %%tnew, ptr %%ptep, align 1
  br label %%smalldone
smalldone:
  %%sfr = and i32 %%pte, %(F4K)s
  %%spa = and i32 %%sfr, %%am
  br label %%target
target:
  %%pa = phi i32 [ %%fpa, %%flat ], [ %%bpa, %%bigdone ], [ %%spa, %%smalldone ]
  %%tpn = lshr i32 %%pa, 12
  %%tpn64 = zext i32 %%tpn to i64
  %%tin = icmp ult i64 %%tpn64, %%npages
  br i1 %%tin, label %%tg1, label %%fail
tg1:
  %%tkp = getelementptr i8, ptr %%kind, i64 %%tpn64
  %%tk = load i8, ptr %%tkp
  %%twp = getelementptr i8, ptr %%watch, i64 %%tpn64
  %%tw = load i8, ptr %%twp
  %%rdok = icmp ne i8 %%tk, %(MMIO)d
  %%tkr = icmp eq i8 %%tk, %(RAMK)d
  %%tw0 = icmp eq i8 %%tw, 0
  %%wrok = and i1 %%tkr, %%tw0
  %%tok = select i1 %%isw, i1 %%wrok, i1 %%rdok
  br i1 %%tok, label %%fill, label %%fail
fill:
  %%hb = shl i64 %%tpn64, 12
  %%vpn = lshr i32 %%lin, 12
  %%vpn64 = zext i32 %%vpn to i64
  %%tag = shl i64 %%vpn64, 32
  %%ent = or i64 %%tag, %%hb
  %%slot = and i32 %%vpn, %(SLOTS)d
  %%trp = getelementptr i64, ptr %%cp, i64 %(TLBR)d
  %%tr = load ptr, ptr %%trp
  %%trs = getelementptr i64, ptr %%tr, i32 %%slot
  store i64 %%ent, ptr %%trs
  br i1 %%isw, label %%fillw, label %%done
fillw:
  %%twpp = getelementptr i64, ptr %%cp, i64 %(TLBW)d
  %%twt = load ptr, ptr %%twpp
  %%tws = getelementptr i64, ptr %%twt, i32 %%slot
  store i64 %%ent, ptr %%tws
  %%wmp = getelementptr i64, ptr %%cp, i64 %(WMARK)d
  %%wm = load ptr, ptr %%wmp
  %%wmb = getelementptr i8, ptr %%wm, i64 %%tpn64
  store i8 1, ptr %%wmb
  br label %%done
done:
  %%cntp = getelementptr i64, ptr %%cp, i64 %(WALKS)d
  %%cnt = load i64, ptr %%cntp
  %%cnt1 = add i64 %%cnt, 1
  store i64 %%cnt1, ptr %%cntp
  ret i64 %%hb
fail:
  ret i64 -1
}

define internal i1 @emurt_rights(i1 %%user, i1 %%isw, i1 %%nowp, i32 %%us, i32 %%rw) alwaysinline {
entry:
  ; paging.py's _check: a user access needs U/S (and R/W to write); a
  ; supervisor write needs R/W only with CR0.WP set
  %%hasus = icmp ne i32 %%us, 0
  %%hasrw = icmp ne i32 %%rw, 0
  %%nw = xor i1 %%isw, true
  %%wok = or i1 %%nw, %%hasrw
  %%uok = and i1 %%hasus, %%wok
  %%sok = or i1 %%wok, %%nowp
  %%ok = select i1 %%user, i1 %%uok, i1 %%sok
  ret i1 %%ok
}
""") % c
