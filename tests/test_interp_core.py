"""The interpreter's own mechanisms: decoding limits, block cache, self-modifying
code, run()/step() semantics, the library API."""
import pytest

from emu.api import Emu
from emu.cpu import state as S
from emu.cpu.opcodes import ROWS, build_tables
from emu.cpu.decode import decode
from emu.cpu.faults import CPUFault


def flat32(ram=1 << 20):
    """An Emu in flat 32-bit protected mode (no paging), stopping on faults."""
    e = Emu(ram_size=ram)
    e.reg_write("cr0", 0x11)
    e.set_segment("cs", 0x08, base=0, limit=0xFFFFFFFF, attr=0xC09B)
    for s in ("ds", "es", "ss", "fs", "gs"):
        e.set_segment(s, 0x10, base=0, limit=0xFFFFFFFF, attr=0xC093)
    e.reg_write("esp", 0x80000)
    return e


def load(e, addr, hexcode):
    e.mem_write(addr, bytes.fromhex(hexcode.replace(" ", "")))
    e.reg_write("eip", addr)


# --- decoder ---------------------------------------------------------------------

def _dec(code, code32=True):
    code = bytes(code)
    return decode(lambda i: code[i] if i < len(code) else 0x90, 0, code32)


def test_every_row_is_reachable_by_the_decoder():
    one, two = build_tables()
    for row in ROWS:
        tab = two if row.code > 0xFF else one
        e = tab[row.code & 0xFF]
        if row.reg is not None:
            assert e[row.reg].row is row
        else:
            assert e.row is row


def test_decoder_lengths_and_fields():
    i = _dec(bytes.fromhex("8b84b310203040"))     # mov eax, [ebx+esi*4+0x40302010]
    assert (i.length, i.base, i.index, i.scale, i.disp) == (7, 3, 6, 2, 0x40302010)
    i = _dec(bytes.fromhex("8b4605"), code32=False)  # mov ax, [bp+5]
    assert (i.length, i.base, i.index, i.seg, i.disp) == (3, 5, None, S.SS, 5)
    i = _dec(bytes.fromhex("6766c7400812345678"), code32=False)  # mov dword [eax+8], imm32
    assert i.length == 9 and i.opsize == 32 and i.adsize == 32 and i.imm == 0x78563412
    i = _dec(bytes.fromhex("26f3a5"))              # es rep movsd
    assert i.rep == "rep" and i.seg == S.ES and i.length == 3


def test_fifteen_byte_limit_is_gp0():
    with pytest.raises(CPUFault) as ei:
        _dec(bytes([0x66] * 14) + bytes.fromhex("b8 01 00"))
    assert (ei.value.vector, ei.value.error_code) == (13, 0)
    assert _dec(bytes([0x26] * 13) + bytes.fromhex("90")).length == 14


@pytest.mark.parametrize("code", ["0f0b", "0fff", "8dc0", "f0 01 c0", "f0 90", "0fc7c8"])
def test_invalid_encodings_are_ud(code):
    with pytest.raises(CPUFault) as ei:
        _dec(bytes.fromhex(code.replace(" ", "")))
        raise CPUFault(6)        # ud2 decodes fine: its semantics raise #UD
    assert ei.value.vector == 6


def test_invalid_opcode_in_guest_is_a_guest_ud_not_a_crash():
    e = flat32()
    load(e, 0x1000, "90 0fff")
    st = e.run()
    assert st.reason == "exception" and st.vector == 6 and e.reg_read("eip") == 0x1001


# --- run semantics -------------------------------------------------------------

def test_count_until_and_hlt():
    e = flat32()
    load(e, 0x1000, "40 40 40 40 f4")           # inc eax x4; hlt
    assert e.run(count=2).reason == "count" and e.reg_read("eax") == 2
    assert e.reg_read("eip") == 0x1002
    assert e.run(until=0x1003).reason == "until" and e.reg_read("eax") == 3
    st = e.run()
    assert st.reason == "hlt" and st.instructions == 2 and e.reg_read("eip") == 0x1005


def test_step_is_one_instruction():
    e = flat32()
    load(e, 0x1000, "40 43 40")
    for n in range(1, 4):
        assert e.step().instructions == 1
        assert e.reg_read("eip") == 0x1000 + n
    assert (e.reg_read("eax"), e.reg_read("ebx")) == (2, 1)


def test_fault_reports_exact_state_mid_block():
    e = flat32()
    # inc eax; inc ebx; mov [0xFFFFFFF0], eax (beyond the 1 MiB of RAM: unmapped
    # physical memory, writes are dropped, no fault); then a #GP: mov ds, ... is
    # not available yet, so use a segment-limit violation instead
    e.set_segment("es", 0x18, base=0, limit=0xFFF, attr=0x4093)
    load(e, 0x1000, "40 43 26a300200000 40")    # inc eax; inc ebx; mov es:[0x2000], eax
    st = e.run()
    assert st.reason == "exception" and (st.vector, st.error_code) == (13, 0)
    assert e.reg_read("eip") == 0x1002 and e.reg_read("eax") == 1 and e.reg_read("ebx") == 1
    assert st.instructions == 2


# --- self-modifying code --------------------------------------------------------

def test_code_that_patches_the_next_instruction_sees_the_patch():
    e = flat32()
    # mov byte [0x1007], 0x43 (patch "inc eax" at 0x1007 into "inc ebx"); inc eax; hlt
    load(e, 0x1000, "c605 07100000 43 40 f4")
    st = e.run()
    assert st.reason == "hlt"
    assert (e.reg_read("eax"), e.reg_read("ebx")) == (0, 1)


def test_patching_a_cached_block_invalidates_it():
    e = flat32()
    load(e, 0x1000, "40 f4")                    # inc eax; hlt
    e.run()
    assert e.reg_read("eax") == 1
    e.mem_write(0x1000, b"\x43")                # DMA-like write: inc ebx
    e.reg_write("eip", 0x1000)
    e.run()
    assert (e.reg_read("eax"), e.reg_read("ebx")) == (1, 1)
    assert e.counters["interp"]["smc_invalidations"] >= 1


def test_loop_rewriting_its_own_immediate():
    e = flat32()
    # loop: add eax, imm32 ; inc dword [imm address] ; dec ecx ; jnz loop ; hlt
    # the add's immediate lives at 0x1001 and is incremented each iteration
    load(e, 0x1000, "05 01000000  ff05 01100000  49  75f2  f4")
    e.reg_write("ecx", 5)
    assert e.run().reason == "hlt"
    assert e.reg_read("eax") == 1 + 2 + 3 + 4 + 5


# --- interrupts -----------------------------------------------------------------

def test_real_mode_interrupt_delivery_through_ivt():
    e = Emu(ram_size=1 << 20, stop_on_exception=False)
    e.set_segment("cs", 0)
    e.set_segment("ss", 0)
    e.reg_write("esp", 0x7000)
    e.mem_write(0x20 * 4, bytes.fromhex("0005 0000"))   # vector 0x20 -> 0000:0500
    e.mem_write(0x500, bytes.fromhex("43 cf"))          # inc bx; iret (iret: later)
    load(e, 0x7C00, "fb 90 90 90 f4")                    # sti; nop; nop; nop; hlt
    e.interrupt(0x20)
    e.run(count=2)                       # sti, then the shadowed nop
    assert e.reg_read("eip") == 0x7C02 and e.reg_read("ebx") == 0
    e.run(count=1)                       # the interrupt is taken, then inc bx runs
    assert e.reg_read("ebx") == 1
    frame = e.mem_read(0x7000 - 6, 6)
    assert frame[0:2] == (0x7C02).to_bytes(2, "little") and frame[2:4] == b"\0\0"
    assert frame[4:6] == (0x0202).to_bytes(2, "little")   # FLAGS with IF pushed
    assert not e.reg_read("eflags") & 0x200                # IF cleared


def test_unimplemented_rows_are_counted_and_raise_ud(monkeypatch):
    """A row without semantics is a guest #UD, counted by mnemonic."""
    from emu.cpu import decode as D
    e = flat32()
    entry = D.ONE[0x90]
    monkeypatch.setattr(entry, "builder", None)
    load(e, 0x1000, "90")
    st = e.run()
    assert st.reason == "exception" and st.vector == 6
    assert e.counters["unimplemented"] == {"nop": 1}


def test_nmi_is_blocked_until_iret():
    """SDM 6.7.1: while an NMI handler runs, further NMIs wait for IRET."""
    e = Emu(ram_size=1 << 20, stop_on_exception=False)
    e.set_segment("cs", 0)
    e.set_segment("ss", 0)
    e.reg_write("esp", 0x7000)
    e.mem_write(2 * 4, bytes.fromhex("0005 0000"))     # NMI -> 0000:0500
    e.mem_write(0x500, bytes.fromhex("43 90 90 cf"))   # inc bx; nop; nop; iret
    load(e, 0x7C00, "90" * 16)
    e.cpu.nmi_pending = True
    e.cpu.event = True
    e.run(count=1)                       # NMI taken, inc bx
    assert e.reg_read("ebx") == 1
    e.cpu.nmi_pending = True             # a second NMI arrives inside the handler
    e.cpu.event = True
    e.run(count=2)                       # nop, nop: still blocked
    assert e.reg_read("ebx") == 1 and e.reg_read("eip") == 0x503
    e.run(count=2)                       # iret; then the pending NMI enters again: inc bx
    assert e.reg_read("ebx") == 2


def test_exception_storm_still_returns():
    """A handler that faults on its first instruction, forever (real mode: the
    stack wraps, so it never triple-faults): run(count=N) must still return,
    each delivery counting as a step."""
    e = Emu(ram_size=1 << 20, stop_on_exception=False)
    e.set_segment("cs", 0)
    e.set_segment("ss", 0)
    e.reg_write("esp", 0x7000)
    e.mem_write(6 * 4, bytes.fromhex("0005 0000"))     # #UD -> 0000:0500
    e.mem_write(0x500, bytes.fromhex("0fff"))          # an invalid opcode
    load(e, 0x7C00, "0fff")
    st = e.run(count=1000)
    assert st.reason == "count" and st.instructions == 0
    assert e.reg_read("eip") == 0x500 and e.counters["exceptions"][6] == 1000
