"""Guest program for the TSS I/O permission bit map (PROT32_PAGED).

Ring 0 loads TR with a TSS that carries an I/O bit map (LTR), then IRETs to
ring 3 with the requested EFLAGS (IOPL 0 unless told), where the body runs:

    phys 0x6000 (lin sys_lin + 0x6000)  TSS: esp0/ss0, I/O map base at +0x66,
                                        the bit map, optionally a final 0xFF
    GDT slot 0x30                        available 32-bit TSS descriptor for it
    code_lin + 0x00                      ring-0 prologue: ltr; push frame; iretd
                                         (clobbers SI only)
    code_lin + RING3_OFF                 ring-3 body

``build(L, bitmap, body)`` assembles both parts with keystone (labels are
not available through tests/oracle.assemble, so the body is placed at a
fixed offset) and returns (code bytes, phys_mem, tss image, tss limit).
``allowed(...)`` is the SDM rule, written independently of emu/cpu/ops/io.py.
"""
import struct

from tests.layout import descriptor
from tests.oracle import assemble

TSS_PHYS = 0x6000
TSS_SEL = 0x30
IOBASE = 0x68
RING3_OFF = 0x40


def tss_image(L, bitmap, trailing_ff=True, iobase=IOBASE):
    """(bytes, limit) of a 32-bit TSS whose I/O map at ``iobase`` is ``bitmap``."""
    tss = bytearray(max(0x68, iobase) + len(bitmap) + (1 if trailing_ff else 0))
    struct.pack_into("<II", tss, 4, L.kstack_top, L.sel_data0)
    struct.pack_into("<H", tss, 0x66, iobase)
    tss[iobase:iobase + len(bitmap)] = bitmap
    if trailing_ff:
        tss[iobase + len(bitmap)] = 0xFF
    return bytes(tss), len(tss) - 1


def build(L, bitmap, body, trailing_ff=True, eflags3=0x2, iobase=IOBASE, limit=None):
    tss, tss_limit = tss_image(L, bitmap, trailing_ff, iobase)
    if limit is not None:
        tss_limit = limit
    desc = descriptor(L.sys_lin + TSS_PHYS, tss_limit, 0x89, 0x0)
    esp3 = L.stack_lin[1] - 0x200
    pro = assemble("""
        mov si, {sel:#x}
        ltr si
        push {ss3:#x}
        push {esp3:#x}
        push {fl:#x}
        push {cs3:#x}
        push {entry:#x}
        iretd
    """.format(sel=TSS_SEL, ss3=L.sel_data3, esp3=esp3, fl=eflags3, cs3=L.sel_code3,
               entry=L.code_lin + RING3_OFF), 32, L.code_lin)
    assert len(pro) <= RING3_OFF
    code = pro.ljust(RING3_OFF, b"\x90") + assemble(body, 32, L.code_lin + RING3_OFF)
    phys_mem = [(TSS_PHYS, tss), (L.gdt_phys + TSS_SEL, desc)]
    return code, phys_mem, tss, tss_limit


def allowed(tss, tss_limit, port, size, cpl=3, iopl=0):
    """SDM rule (protected mode, not V86): may an I/O of size bytes at port run?"""
    if cpl <= iopl:
        return True
    if tss_limit < 0x67:
        return False
    base = struct.unpack_from("<H", tss, 0x66)[0]
    off = base + (port >> 3)
    if off + 1 > tss_limit:
        return False
    word = tss[off] | tss[off + 1] << 8
    return not (word >> (port & 7)) & ((1 << size) - 1)
