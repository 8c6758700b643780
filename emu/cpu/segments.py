"""Protected-mode segmentation: descriptors, selector checks, segment loads.

Intel SDM Vol. 3 chapters 3 and 5, and the MOV/POP/LxS pseudocode of Vol. 2.

Descriptor-table reads and accessed-bit updates are *implicit supervisor*
accesses: they go through ``cpu.mmu.read_bytes(lin, n, False)`` /
``cpu.mmu.write(lin, 1, v, False)`` whatever the CPL (a #PF they raise has
U/S=0 in its error code, as on hardware), never through the CPL-3 fast path.

Error codes of selector faults are ``selector & 0xFFFC`` (the RPL bits are
replaced by IDT=0 and EXT), plus ``ext`` (1) when the fault happens while an
external event or an exception is being delivered.

The helpers here are shared by far.py (JMP/CALL/RET far), by
protected_interrupts.py (INT n, exceptions, IRQs) and by tasks.py:

  fetch(cpu, sel, vec, ext)      -> (lo, hi, lin)  raw descriptor dwords and its
                                    linear address; CPUFault(vec, sel|ext) when
                                    the selector is beyond its table's limit
  parse(lo, hi)                  -> (base, byte-granular limit, attr word)
  set_accessed(cpu, lin, hi)     sets the accessed bit (1-byte supervisor write)
  load_data_or_stack(cpu, sreg, sel)   MOV/POP/LxS into DS ES FS GS SS
  check_code_for_ret(...)        return CS checks of RET/IRET
  check_outer_ss(...)            return SS checks of RET/IRET to an outer level
  tss_stack(cpu, dpl, ext)       SS:ESP of privilege level ``dpl`` from the TSS
  check_inner_ss(...)            the #TS checks of a stack switch to an inner level
  plan_frame / store_frame / write_frame(...)   push a whole frame on a given stack, all checks
                                 (segment limit -> #SS, pages -> #PF) before any store
  null_outer_segments(cpu, cpl)  DS/ES/FS/GS rule after RET/IRET to an outer level
  commit_cs / load_cs(cpu, sel, base, limit, attr, cpl)   load CS (RPL := cpl) and CPL
"""
import struct

from .faults import CPUFault, GP, NP, TS, UD, SS as SS_FAULT
from .state import (CPL, CS, SS, ES, DS, FS, GS, GDTR_BASE, GDTR_LIMIT, LDTR_SEL, LDTR_BASE,
                    LDTR_LIMIT, TR_SEL, TR_BASE, TR_LIMIT, TR_ATTR,
                    ATTR_P, ATTR_S, ATTR_CODE, ATTR_CONFORMING, ATTR_RW, ATTR_ACCESSED,
                    ATTR_DB, ATTR_G)

MASK32 = 0xFFFFFFFF
_U32x2 = struct.Struct("<II")
_SIZE_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}

# System descriptor types (attr & 0x1F with S = 0)
T_TSS16_AVAIL, T_LDT, T_TSS16_BUSY, T_CALL16, T_TASK, T_INT16, T_TRAP16 = 1, 2, 3, 4, 5, 6, 7
T_TSS32_AVAIL, T_TSS32_BUSY, T_CALL32, T_INT32, T_TRAP32 = 9, 11, 12, 14, 15

# attr & TYPE_MASK: S bit and the 4-bit type
TYPE_MASK = 0x1F
_DATA_W = ATTR_S | ATTR_RW                 # writable data: S=1, code=0, W=1


def dpl_of(attr):
    return (attr >> 5) & 3


def fetch(cpu, sel, vec=GP, ext=0):
    """Raw (lo, hi, lin) of the descriptor ``sel`` names (GDT or LDT).

    Raises CPUFault(vec, (sel & 0xFFFC) | ext) when the descriptor lies
    beyond the table's limit (or the LDT is null), and #PF from the read.
    """
    R = cpu.R
    if sel & 4:
        if not (R[LDTR_SEL] & 0xFFFC):
            raise CPUFault(vec, (sel & 0xFFFC) | ext)
        base = R[LDTR_BASE]
        limit = R[LDTR_LIMIT]
    else:
        base = R[GDTR_BASE]
        limit = R[GDTR_LIMIT]
    off = sel & 0xFFF8
    if off + 7 > limit:
        raise CPUFault(vec, (sel & 0xFFFC) | ext)
    lin = (base + off) & MASK32
    lo, hi = _U32x2.unpack(cpu.mmu.read_bytes(lin, 8, False))
    return lo, hi, lin


def parse(lo, hi):
    """(base, byte-granular limit, attr word of state.py) of a segment descriptor."""
    base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0xF0000)
    attr = (hi >> 8) & 0xF0FF
    if attr & ATTR_G:
        limit = (limit << 12) | 0xFFF
    return base, limit, attr


def gate_fields(lo, hi):
    """(selector, offset, param count) of a call/interrupt/trap/task gate."""
    return (lo >> 16) & 0xFFFF, (lo & 0xFFFF) | (hi & 0xFFFF0000), hi & 0x1F


def set_accessed(cpu, lin, hi):
    """Set the descriptor's accessed bit if clear (1-byte supervisor write)."""
    if not hi & 0x100 and (hi & 0x1000):        # code/data descriptors only
        cpu.mmu.write((lin + 5) & MASK32, 1, ((hi >> 8) & 0xFF) | 1, False)


def set_busy(cpu, lin, hi, busy):
    """Set or clear the busy bit (type bit 1) of a TSS descriptor."""
    b = (hi >> 8) & 0xFF
    b = (b | 2) if busy else (b & ~2 & 0xFF)
    cpu.mmu.write((lin + 5) & MASK32, 1, b, False)


# --- MOV / POP / LxS into a data or stack segment register ----------------------

def load_data_or_stack(cpu, sreg, sel):
    """Protected-mode load of DS ES FS GS SS (SDM Vol. 2, MOV/POP/LDS pseudocode)."""
    R = cpu.R
    if sreg == CS:
        raise CPUFault(UD)                      # CS is loaded only by far transfers
    sel &= 0xFFFF
    code = sel & 0xFFFC
    if not code:
        if sreg == SS:
            raise CPUFault(GP, 0)
        cpu.set_seg(sreg, sel, 0, 0, 0)         # null: loads, every use faults
        return
    lo, hi, lin = fetch(cpu, sel, GP)
    attr = (hi >> 8) & 0xF0FF
    dpl = (attr >> 5) & 3
    cpl = R[CPL]
    if sreg == SS:
        if ((sel & 3) != cpl or (attr & (ATTR_S | ATTR_CODE | ATTR_RW)) != _DATA_W
                or dpl != cpl):
            raise CPUFault(GP, code)
        if not attr & ATTR_P:
            raise CPUFault(SS_FAULT, code)
    else:
        if not attr & ATTR_S or (attr & (ATTR_CODE | ATTR_RW)) == ATTR_CODE:
            raise CPUFault(GP, code)            # system, or execute-only code
        if (attr & (ATTR_CODE | ATTR_CONFORMING)) != (ATTR_CODE | ATTR_CONFORMING):
            if (sel & 3) > dpl or cpl > dpl:    # data or non-conforming code
                raise CPUFault(GP, code)
        if not attr & ATTR_P:
            raise CPUFault(NP, code)
    base, limit, attr = parse(lo, hi)
    set_accessed(cpu, lin, hi)
    cpu.set_seg(sreg, sel, base, limit, attr | ATTR_ACCESSED)


# --- far transfers: shared checks ------------------------------------------------

def is_code(attr):
    return (attr & (ATTR_S | ATTR_CODE)) == (ATTR_S | ATTR_CODE)


def is_conforming_code(attr):
    return (attr & (ATTR_S | ATTR_CODE | ATTR_CONFORMING)) == (ATTR_S | ATTR_CODE | ATTR_CONFORMING)


def check_code_for_ret(cpu, sel):
    """Return-CS checks shared by RET far and IRET (protected mode, same or
    outer level).  Returns (lo, hi, lin, base, limit, attr)."""
    code = sel & 0xFFFC
    if not code:
        raise CPUFault(GP, 0)
    lo, hi, lin = fetch(cpu, sel, GP)
    attr = (hi >> 8) & 0xF0FF
    rpl = sel & 3
    if not is_code(attr) or rpl < cpu.R[CPL]:
        raise CPUFault(GP, code)
    dpl = (attr >> 5) & 3
    if attr & ATTR_CONFORMING:
        if dpl > rpl:
            raise CPUFault(GP, code)
    elif dpl != rpl:
        raise CPUFault(GP, code)
    if not attr & ATTR_P:
        raise CPUFault(NP, code)
    base, limit, attr = parse(lo, hi)
    return lo, hi, lin, base, limit, attr


def check_outer_ss(cpu, ss_sel, rpl):
    """Return-SS checks of RET/IRET to outer level ``rpl``.
    Returns (lo, hi, lin, base, limit, attr)."""
    code = ss_sel & 0xFFFC
    if not code:
        raise CPUFault(GP, 0)
    lo, hi, lin = fetch(cpu, ss_sel, GP)
    attr = (hi >> 8) & 0xF0FF
    if ((ss_sel & 3) != rpl or (attr & (ATTR_S | ATTR_CODE | ATTR_RW)) != _DATA_W
            or ((attr >> 5) & 3) != rpl):
        raise CPUFault(GP, code)
    if not attr & ATTR_P:
        raise CPUFault(SS_FAULT, code)
    base, limit, attr = parse(lo, hi)
    return lo, hi, lin, base, limit, attr


def tss_stack(cpu, dpl, ext=0):
    """(SS selector, ESP) for privilege level ``dpl`` from the current TSS
    (32- or 16-bit TSS); #TS(TR selector | ext) when beyond the TSS limit."""
    R = cpu.R
    tr_base = R[TR_BASE]
    if (R[TR_ATTR] & 0x0F) in (T_TSS32_AVAIL, T_TSS32_BUSY):
        off = dpl * 8 + 4
        if off + 7 > R[TR_LIMIT]:
            raise CPUFault(TS, (R[TR_SEL] & 0xFFFC) | ext)
        esp, ss = _U32x2.unpack(cpu.mmu.read_bytes((tr_base + off) & MASK32, 8, False))
        return ss & 0xFFFF, esp
    off = dpl * 4 + 2
    if off + 3 > R[TR_LIMIT]:
        raise CPUFault(TS, (R[TR_SEL] & 0xFFFC) | ext)
    raw = cpu.mmu.read_bytes((tr_base + off) & MASK32, 4, False)
    return raw[2] | raw[3] << 8, raw[0] | raw[1] << 8


def check_inner_ss(cpu, ss_sel, dpl, ext=0):
    """Checks on the SS from the TSS for a stack switch to level ``dpl``
    (CALL through a gate, interrupts).  Returns (lo, hi, lin, base, limit, attr)."""
    code = (ss_sel & 0xFFFC) | ext
    if not ss_sel & 0xFFFC:
        raise CPUFault(TS, ext)
    lo, hi, lin = fetch(cpu, ss_sel, TS, ext)
    attr = (hi >> 8) & 0xF0FF
    if ((ss_sel & 3) != dpl or ((attr >> 5) & 3) != dpl
            or (attr & (ATTR_S | ATTR_CODE | ATTR_RW)) != _DATA_W):
        raise CPUFault(TS, code)
    if not attr & ATTR_P:
        raise CPUFault(SS_FAULT, code)
    base, limit, attr = parse(lo, hi)
    return lo, hi, lin, base, limit, attr


def stack_bounds(limit, attr):
    """(lowest, highest) valid offset and the ESP mask of a stack segment."""
    mask = 0xFFFFFFFF if attr & ATTR_DB else 0xFFFF
    if attr & ATTR_CONFORMING and not attr & ATTR_CODE:      # expand-down
        return limit + 1, mask, mask
    return 0, limit, mask


def plan_frame(base, limit, attr, esp, items, fault_code, keep=None):
    """Segment-limit part of a push: ``items`` ((size, value) in push order)
    below ``esp`` on the stack base/limit/attr.  Returns (writes, new ESP);
    CPUFault(#SS, fault_code) when a push leaves the segment.

    With a 16-bit stack only SP changes: the new ESP keeps bits 31:16 of
    ``keep`` (default ``esp``) - on a stack switch that is the old ESP, as on
    hardware (the "espfix" behaviour)."""
    lo, hi, mask = stack_bounds(limit, attr)
    sp = esp & mask
    writes = []
    for size, v in items:
        sp = (sp - size) & mask
        if sp < lo or sp + size - 1 > hi:
            raise CPUFault(SS_FAULT, fault_code)
        writes.append(((base + sp) & MASK32, size, v & _SIZE_MASK[size]))
    if keep is None:
        keep = esp
    return writes, ((keep & ~mask) | sp) & MASK32


def store_frame(cpu, writes, user):
    """Store a planned frame: every page is translated (#PF) before any store;
    the stores then go to those physical addresses through PhysMem (watch
    listeners run: page-table and code pages stay coherent)."""
    tr = cpu.mmu.translate
    phys = cpu.phys
    plan = []
    for lin, size, v in writes:
        n1 = 0x1000 - (lin & 0xFFF)
        if n1 >= size:
            plan.append((tr(lin, True, user), None, size, size, v))
        else:                                   # crosses a page boundary
            plan.append((tr(lin, True, user), tr((lin + n1) & MASK32, True, user), n1, size, v))
    for pa, pa2, n1, size, v in plan:
        if pa2 is None:
            phys.write(pa, size, v)
        else:
            data = v.to_bytes(size, "little")
            phys.write_bytes(pa, data[:n1])
            phys.write_bytes(pa2, data[n1:])


def write_frame(cpu, base, limit, attr, esp, items, user, fault_code):
    """plan_frame + store_frame: push a whole frame or fault with nothing
    stored.  Returns the new ESP."""
    writes, nesp = plan_frame(base, limit, attr, esp, items, fault_code)
    store_frame(cpu, writes, user)
    return nesp


def read_stack(cpu, esp, items):
    """Read ``items`` ((offset from ESP, size)) from the current stack (SS with
    its limit checks -> #SS(0), pages at the current privilege)."""
    big = cpu.segs[SS].big
    mask = 0xFFFFFFFF if big else 0xFFFF
    sp = esp & mask
    RD = cpu.mem.RD
    return [RD[size](SS, (sp + off) & mask) for off, size in items]


def null_outer_segments(cpu, cpl):
    """After RET/IRET to outer level ``cpl``: a data or non-conforming code
    segment in DS/ES/FS/GS whose DPL < cpl becomes null (hidden part kept
    except the attributes, so every use faults)."""
    for s in (ES, DS, FS, GS):
        sel, base, limit, attr = cpu.get_seg(s)
        if is_conforming_code(attr):
            continue
        if ((attr >> 5) & 3) < cpl:
            cpu.set_seg(s, 0, base, limit, 0)


def commit_cs(cpu, sel, base, limit, attr, cpl):
    """Load CS (RPL := cpl) and the CPL, after every check has passed."""
    if cpu.R[CPL] != cpl:
        cpu.set_cpl(cpl)
    cpu.set_seg(CS, (sel & 0xFFFC) | cpl, base, limit, attr | ATTR_ACCESSED)


load_cs = commit_cs


__all__ = ["fetch", "parse", "gate_fields", "set_accessed", "set_busy", "load_data_or_stack",
           "check_code_for_ret", "check_outer_ss", "tss_stack", "check_inner_ss",
           "write_frame", "plan_frame", "store_frame", "read_stack", "null_outer_segments",
           "commit_cs", "load_cs", "stack_bounds", "is_code", "is_conforming_code", "dpl_of"]
