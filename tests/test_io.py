"""Port I/O: the PortBus (emu/devices/portbus.py), IN/OUT (emu/cpu/ops/io.py)
and the I/O permission rules (IOPL, TSS I/O bit map, V86).

Unicorn 2.1.4 does not model port I/O: without an instruction hook IN reads
0 and OUT does nothing, and it never checks IOPL or the TSS I/O bit map
(``in al, 0x80`` at CPL 3 with IOPL 0 runs).  So only the parts it does
model are compared with it (the LTR + IRET prologue of the bit-map guest,
OUT at CPL 0); IN values and every permission outcome are checked against
the SDM rule, written independently in tests/guests/sys_io.py.
"""

import pytest
from hypothesis import given, settings, strategies as st

from emu.api import Emu
from emu.cpu import state as S
from emu.cpu.faults import CPUFault, VMStop
from emu.cpu.ops.io import check_io
from emu.devices.portbus import PortBus
from tests.difftest import check_same
from tests.emu_side import EmuSide
from tests.guests import sys_io
from tests.layout import PROT32_PAGED as P, REAL16 as R
from tests.oracle import assemble

SET = settings(max_examples=60, deadline=None)


# --- PortBus ---------------------------------------------------------------------
class Recorder:
    """A device that answers reads with f(port, size) and records everything."""

    def __init__(self, value=lambda p, s: (p * 0x01010101 + s) & 0xFFFFFFFF):
        self.log = []
        self.value = value

    def read(self, port, size):
        self.log.append(("r", port, size))
        return self.value(port, size)

    def write(self, port, size, v):
        self.log.append(("w", port, size, v))


def test_unhandled_ports_float_high_and_are_counted():
    bus = PortBus()
    assert bus.read(0x80, 1) == 0xFF
    assert bus.read(0x80, 2) == 0xFFFF
    assert bus.read(0x80, 4) == 0xFFFFFFFF
    bus.write(0x80, 1, 0x12)
    bus.write(0x80, 4, 0x12345678)
    c = bus.counters
    assert (c["unhandled_reads"], c["unhandled_writes"]) == (3, 2)
    assert (c["reads"], c["writes"]) == (3, 2)


def test_handler_gets_whole_access():
    bus = PortBus()
    d = Recorder()
    bus.register(0x1F0, 8, d.read, d.write, "ide")
    assert bus.read(0x1F0, 2) == d.value(0x1F0, 2) & 0xFFFF
    assert bus.read(0x1F4, 4) == d.value(0x1F4, 4)
    bus.write(0x1F7, 1, 0x1EC)            # masked to the size
    assert d.log == [("r", 0x1F0, 2), ("r", 0x1F4, 4), ("w", 0x1F7, 1, 0xEC)]
    assert bus.counters["unhandled_reads"] == 0
    assert bus.owner(0x1F3) == "ide" and bus.owner(0x1F8) is None


def test_split_across_devices_and_holes():
    bus = PortBus()
    a, b = Recorder(lambda p, s: 0xA0 | (p & 0xF)), Recorder(lambda p, s: 0xB0 | (p & 0xF))
    bus.register(0x60, 1, a.read, a.write, "a")
    bus.register(0x61, 1, b.read, b.write, "b")
    assert bus.read(0x60, 2) == 0xB1A0
    # 0x62/0x63 unclaimed: those bytes read as 0xFF
    assert bus.read(0x60, 4) == 0xFFFFB1A0
    bus.write(0x60, 2, 0x1234)
    assert a.log[-1] == ("w", 0x60, 1, 0x34) and b.log[-1] == ("w", 0x61, 1, 0x12)
    # straddling the end of a range
    assert bus.read(0x5F, 2) == 0xA0FF


def test_byte_only_device_gets_bytes():
    bus = PortBus()
    d = Recorder(lambda p, s: p & 0xFF)
    bus.register(0x70, 2, d.read, d.write, "cmos", sizes=(1,))
    assert bus.read(0x70, 2) == 0x7170
    assert d.log == [("r", 0x70, 1), ("r", 0x71, 1)]
    bus.write(0x70, 4, 0x44332211)       # bytes 0x72/0x73 unclaimed: dropped
    assert d.log[2:] == [("w", 0x70, 1, 0x11), ("w", 0x71, 1, 0x22)]


def test_word_device_dword_access():
    bus = PortBus()
    d = Recorder(lambda p, s: 0x1111 * (p - 0xCF8 + 1))
    bus.register(0xCF8, 4, d.read, d.write, "w", sizes=(2,))
    assert bus.read(0xCF8, 4) == 0x33331111          # words at 0xCF8 and 0xCFA
    assert bus.read(0xCF8, 1) == 0xFF        # byte size not accepted, cannot split further


def test_port_wraps_at_64k():
    bus = PortBus()
    d = Recorder(lambda p, s: 0x5A)
    bus.register(0x0000, 1, d.read, d.write, "zero")
    assert bus.read(0xFFFF, 2) == 0x5AFF
    assert bus.read(0x10000, 1) == 0x5A


def test_read_only_and_write_only_devices():
    bus = PortBus()
    d = Recorder()
    bus.register(0x40, 1, read=d.read, name="ro")
    bus.register(0x41, 1, write=d.write, name="wo")
    bus.write(0x40, 1, 1)
    assert bus.read(0x41, 1) == 0xFF
    assert d.log == []
    assert (bus.counters["unhandled_reads"], bus.counters["unhandled_writes"]) == (1, 1)


def test_failing_handlers_are_contained():
    bus = PortBus()

    def boom(*a):
        raise ZeroDivisionError("device bug")

    def bad_value(port, size):
        return "x"

    bus.register(0x10, 1, boom, boom, "boom")
    bus.register(0x11, 1, bad_value, None, "bad")
    bus.register(0x12, 1, lambda p, s: -1, None, "neg")
    bus.register(0x13, 1, lambda p, s: 1 << 100, None, "big")
    assert bus.read(0x10, 1) == 0xFF
    bus.write(0x10, 1, 5)
    assert bus.read(0x11, 1) == 0xFF
    assert bus.read(0x12, 1) == 0xFF
    assert bus.read(0x13, 1) == 0
    assert bus.counters["handler_errors"] == 3
    assert bus.last_error[0] == "bad"
    assert bus.read(0x10, 2) == 0xFFFF       # split: both halves contained


def test_vmstop_passes():
    bus = PortBus()

    def stop(port, size, value):
        raise VMStop("guest asked for power-off", kind="shutdown")

    bus.register(0x604, 2, write=stop, name="acpi")
    with pytest.raises(VMStop):
        bus.write(0x604, 2, 0x2000)


def test_register_errors():
    bus = PortBus()
    bus.register(0x3F8, 8, name="com1")
    with pytest.raises(ValueError):
        bus.register(0x3FF, 1, name="overlap")
    with pytest.raises(ValueError):
        bus.register(0xFFFF, 2, name="past the end")
    with pytest.raises(ValueError):
        bus.register(0x10, 1, name="bad size", sizes=(3,))
    bus.unregister(0x3F8)
    bus.register(0x3FF, 1, name="now free")
    with pytest.raises(ValueError):
        bus.unregister(0x3F8)


@settings(max_examples=200, deadline=None)
@given(regs=st.lists(st.tuples(st.integers(0, 0xFFF0), st.integers(1, 8),
                               st.sampled_from([(1,), (2,), (4,), (1, 2), (1, 2, 4)]),
                               st.integers(0, 3)), max_size=6),
       accesses=st.lists(st.tuples(st.integers(0, 0x1FFFF), st.sampled_from([1, 2, 4, 3, 0]),
                                   st.integers(-2**40, 2**40), st.booleans()), max_size=20))
def test_bus_never_raises(regs, accesses):
    """Random devices (some buggy) and random accesses: values are always in
    range and no exception escapes."""
    bus = PortBus()
    behaviours = [lambda p, s: p * 7, lambda p, s: 1 / 0, lambda p, s: None,
                  lambda p, s: -p]
    for base, n, sizes, kind in regs:
        b = behaviours[kind]
        try:
            bus.register(base, n, read=b, write=lambda p, s, v, b=b: b(p, s), sizes=sizes)
        except ValueError:
            pass
    for port, size, value, is_read in accesses:
        if is_read:
            v = bus.read(port, size)
            assert 0 <= v <= 0xFFFFFFFF
            if size in (1, 2, 4):
                assert v < 1 << (8 * size)
        else:
            bus.write(port, size, value)


# --- IN / OUT through the CPU ---------------------------------------------------
def _emu_with_bus(layout):
    side = EmuSide(layout)
    bus = PortBus()
    dev = Recorder()
    bus.register(0, 0x10000, dev.read, dev.write, "everything")
    side.cpu.ports = bus
    return side, dev


_REAL_SIDE = _PROT_SIDE = None


def _side(layout):
    global _REAL_SIDE, _PROT_SIDE
    if layout is R:
        if _REAL_SIDE is None:
            _REAL_SIDE = _emu_with_bus(R)
        side, dev = _REAL_SIDE
    else:
        if _PROT_SIDE is None:
            _PROT_SIDE = _emu_with_bus(P)
        side, dev = _PROT_SIDE
    dev.log.clear()
    return side, dev


FORMS = [  # (asm, is_in, size, imm_port)
    ("in al, {p}", True, 1, True), ("in ax, {p}", True, 2, True), ("in eax, {p}", True, 4, True),
    ("out {p}, al", False, 1, True), ("out {p}, ax", False, 2, True), ("out {p}, eax", False, 4, True),
    ("in al, dx", True, 1, False), ("in ax, dx", True, 2, False), ("in eax, dx", True, 4, False),
    ("out dx, al", False, 1, False), ("out dx, ax", False, 2, False), ("out dx, eax", False, 4, False),
]


@SET
@given(form=st.sampled_from(FORMS), port=st.integers(0, 0xFFFF), eax=st.integers(0, 2**32 - 1),
       layout=st.sampled_from([R, P]))
def test_in_out_values(form, port, eax, layout):
    asm, is_in, size, imm = form
    if imm:
        port &= 0xFF
    port = min(port, 0x10000 - size)          # wrapping accesses: see test_port_wraps_at_64k
    side, dev = _side(layout)
    r = side.run(asm.format(p=port), regs=dict(eax=eax, edx=0xABCD0000 | port))
    assert r.exception is None
    mask = (1 << (8 * size)) - 1
    if is_in:
        assert dev.log == [("r", port, size)]
        assert r.eax == (eax & ~mask & 0xFFFFFFFF) | (dev.value(port, size) & mask)
    else:
        assert dev.log == [("w", port, size, eax & mask)]
        assert r.eax == eax
    assert r.edx == 0xABCD0000 | port


def test_in_out_null_ports():
    """Without devices (NullPorts): IN reads all ones, OUT vanishes."""
    e = Emu()
    e.mem_write(0x7C00, assemble("in al, 0x60; in ax, dx; out 0x80, al", 16))
    e.set_segment("cs", 0)
    e.reg_write("eip", 0x7C00)
    e.reg_write("eax", 0x12345678)
    st = e.run(count=3)
    assert st.reason == "count" and e.reg_read("eip") == 0x7C05
    assert e.reg_read("eax") == 0x1234FFFF


@pytest.mark.parametrize("code", ["out dx, al", "out 0x80, eax", "out dx, ax"])
def test_out_cpl0_same_as_unicorn(code):
    check_same(P, code, regs=dict(edx=0x3F8, eax=0x41))
    check_same(R, code, regs=dict(edx=0x3F8, eax=0x41))


@pytest.mark.parametrize("iopl", [0, 1, 2, 3])
@pytest.mark.parametrize("cpl", [0, 3])
def test_iopl_without_bitmap(cpl, iopl):
    """Layout TSS: I/O map base 0x68 = beyond its limit: no port is allowed
    through the bit map, so CPL > IOPL is #GP(0) for every port."""
    side, dev = _side(P)
    regs = dict(eflags=0x2 | iopl << 12, edx=0x60)
    if cpl == 3:
        regs["cpl"] = 3
    for code in ("in al, dx", "out dx, eax", "in ax, 0x61"):
        dev.log.clear()
        r = side.run(code, regs=regs)
        if cpl <= iopl:
            assert r.exception is None and len(dev.log) == 1
        else:
            assert (r.vector, r.error_code, r.eip) == (13, 0, P.code_lin)
            assert dev.log == []


# --- the TSS I/O permission bit map, in a guest -----------------------------------
def test_bitmap_prologue_same_as_unicorn():
    """LTR of the bit-map TSS (busy bit written), IRET to ring 3: as Unicorn."""
    code, phys_mem, tss, limit = sys_io.build(P, bytes(0x80), "nop")
    ro, re_ = check_same(P, code, phys_mem=phys_mem, count=None)
    assert re_.cpl == 3 and re_.sregs["cs"] == P.sel_code3
    cpu = re_.emu.cpu
    assert cpu.R[S.TR_SEL] == sys_io.TSS_SEL and cpu.R[S.TR_LIMIT] == limit
    assert cpu.R[S.TR_ATTR] & 0x1F == 0x0B                      # busy now
    assert cpu.phys.ram[P.gdt_phys + sys_io.TSS_SEL + 5] == 0x8B


BODIES = [("in al, dx", 1, "r"), ("in ax, dx", 2, "r"), ("in eax, dx", 4, "r"),
          ("out dx, al", 1, "w"), ("out dx, ax", 2, "w"), ("out dx, eax", 4, "w")]


def _run_bitmap(bitmap, body, port, trailing_ff=True, eflags3=0x2, limit=None):
    side, dev = _side(P)
    asm, size, kind = body
    code, phys_mem, tss, tss_limit = sys_io.build(P, bitmap, asm, trailing_ff, eflags3,
                                                  limit=limit)
    r = side.run(code, regs=dict(edx=port, eax=0x5A5A5A5A), phys_mem=phys_mem, count=None)
    return r, dev, tss, tss_limit


@SET
@given(bitmap=st.binary(min_size=0x80, max_size=0x80), body=st.sampled_from(BODIES),
       port=st.integers(0, 0x40F), trailing_ff=st.booleans())
def test_bitmap_cpl3(bitmap, body, port, trailing_ff):
    r, dev, tss, limit = _run_bitmap(bitmap, body, port, trailing_ff)
    asm, size, kind = body
    ok = sys_io.allowed(tss, limit, port, size)
    assert r.cpl == 3
    if ok:
        assert r.exception is None and r.stop == "end"
        assert dev.log[0][:3] == (kind, port, size)
    else:
        assert (r.vector, r.error_code) == (13, 0)
        assert r.eip == P.code_lin + sys_io.RING3_OFF
        assert dev.log == [] and r.eax == 0x5A5A5A5A


def test_bitmap_fixed_cases():
    bm = bytearray(0x80)
    bm[0x40 >> 3] = 0x01            # port 0x40 denied, 0x41-0x47 allowed
    bm[0x7F] = 0x80                 # port 0x3FF denied
    for port, size, ok in ((0x40, 1, False), (0x41, 1, True), (0x41, 4, True),
                           (0x3F, 2, False), (0x3E, 2, True), (0x3FC, 4, False),
                           (0x3F8, 4, True), (0x3FE, 1, True), (0x3FF, 1, False),
                           (0x400, 1, False), (0xFFFF, 1, False)):
        body = [b for b in BODIES if b[1] == size and b[2] == "r"][0]
        r, dev, tss, limit = _run_bitmap(bytes(bm), body, port)
        assert sys_io.allowed(tss, limit, port, size) == ok
        assert (r.exception is None) == ok, (hex(port), size, r.exception)


def test_bitmap_two_byte_read_needs_the_next_byte():
    """Without the final 0xFF byte, a port in the bit map's last byte is #GP:
    the processor reads two bytes and the second is beyond the TSS limit."""
    bm = bytes(0x80)
    body = BODIES[0]
    r, *_ = _run_bitmap(bm, body, 0x3F8, trailing_ff=False)
    assert (r.vector, r.error_code) == (13, 0)
    r, *_ = _run_bitmap(bm, body, 0x3F7, trailing_ff=False)
    assert r.exception is None
    r, *_ = _run_bitmap(bm, body, 0x3F8, trailing_ff=True)
    assert r.exception is None


def test_bitmap_iopl3_ring3_skips_bitmap():
    bm = b"\xff" * 0x80
    for port in (0x40, 0x3FF, 0x1234):
        r, dev, *_ = _run_bitmap(bm, BODIES[5], port, eflags3=0x3002)
        assert r.exception is None and dev.log == [("w", port, 4, 0x5A5A5A5A)]


def test_bitmap_small_tss_limit():
    """A TSS limit below 0x67 (LTR accepts it): every bit-map check is #GP(0)."""
    r, dev, *_ = _run_bitmap(bytes(0x80), BODIES[0], 0x10, limit=0x50)
    assert (r.vector, r.error_code) == (13, 0) and dev.log == []


# --- check_io on its own: modes the guests above do not reach ---------------------
def _cpu_state(protected, cpl, iopl, vm=False, tss_ok=True):
    e = Emu(ram_size=1 << 20)
    cpu = e.cpu
    R = cpu.R
    tss, limit = sys_io.tss_image(P, bytes([0x0F] + [0] * 0x7F))   # ports 0-3 denied
    cpu.phys.write_bytes(0x6000, tss)
    R[S.TR_BASE], R[S.TR_LIMIT], R[S.TR_ATTR] = 0x6000, limit, 0x8B if tss_ok else 0x83
    if protected:
        cpu.write_cr0(R[S.CR0] | 1)
    cpu.set_cpl(cpl)
    cpu.set_eflags(0x2 | iopl << 12 | (0x20000 if vm else 0))
    return cpu


@pytest.mark.parametrize("iopl", [0, 3])
def test_check_io_modes(iopl):
    # real mode: always allowed
    cpu = _cpu_state(False, 0, iopl)
    check_io(cpu, 0, 1)
    # V86: IOPL does not matter, the bit map decides
    cpu = _cpu_state(True, 3, iopl, vm=True)
    check_io(cpu, 4, 4)
    with pytest.raises(CPUFault) as ei:
        check_io(cpu, 3, 1)
    assert (ei.value.vector, ei.value.error_code) == (13, 0)
    # protected mode, CPL 3
    cpu = _cpu_state(True, 3, iopl)
    if iopl == 3:
        check_io(cpu, 3, 1)
    else:
        with pytest.raises(CPUFault):
            check_io(cpu, 2, 2)
        check_io(cpu, 4, 2)


def test_check_io_16bit_tss_has_no_bitmap():
    cpu = _cpu_state(True, 3, 0, tss_ok=False)
    with pytest.raises(CPUFault):
        check_io(cpu, 0x80, 1)
