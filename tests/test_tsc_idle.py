"""The TSC counts the time the CPU spends halted (emu/machine.py, emu/devices/clock.py).

HLT with interrupts enabled jumps the virtual clock to the next timer
deadline.  The TSC reads the same clock, so it must jump too: Linux uses the
TSC as its clocksource and the PIT for its timer events; if the TSC stood
still over a HLT, every PIT event would look early to the kernel, which
re-arms the PIT for the rest of the interval and halts again: an interrupt
storm in which the guest's time only advances with the instructions it runs
(`sleep 2` in the shell took minutes).
"""
import struct

from emu.frontend.serial_backends import BufferBackend
from emu.machine import EXIT_OK, Machine, MachineConfig
from tests.guests.multiboot_build import elf32, nasm

RESULT = 0x200000

KERNEL = r"""
bits 32
org 0x100000
    dd 0x1BADB002, 0, -0x1BADB002      ; Multiboot v1, flags 0: loaded by the ELF headers
start:
    mov eax, handler                   ; IDT entry 0x20: interrupt gate to handler
    mov [idt + 0x20 * 8], ax
    shr eax, 16
    mov [idt + 0x20 * 8 + 6], ax
    mov ax, cs
    mov [idt + 0x20 * 8 + 2], ax
    mov word [idt + 0x20 * 8 + 4], 0x8E00
    lidt [idtr]
    mov al, 0x11                       ; master PIC: vectors 0x20-0x27, only IRQ 0
    out 0x20, al
    mov al, 0x20
    out 0x21, al
    mov al, 4
    out 0x21, al
    mov al, 1
    out 0x21, al
    mov al, 0xFE
    out 0x21, al
    mov al, 0xFF
    out 0xA1, al
    mov al, 0x34                       ; PIT counter 0: mode 2, 11932 clocks (100 Hz)
    out 0x43, al
    mov ax, 11932
    out 0x40, al
    mov al, ah
    out 0x40, al
    sti                                ; the first tick: now in step with the PIT
    hlt
    cli
    rdtsc
    mov esi, eax
    mov edi, edx
    mov ecx, 10                        ; ten more ticks: 100 ms
.tick:
    sti
    hlt
    cli
    dec ecx
    jnz .tick
    rdtsc
    sub eax, esi
    sbb edx, edi
    mov [RESULT], eax
    mov [RESULT + 4], edx
    hlt                                ; interrupts off: the run ends
handler:
    push eax
    mov al, 0x20
    out 0x20, al
    pop eax
    iret
align 8
idt: times 256 dq 0
idtr: dw 256 * 8 - 1
    dd idt
"""


def test_tsc_advances_over_hlt_at_the_clock_rate(tmp_path):
    code = nasm(KERNEL, {"RESULT": RESULT})
    k = tmp_path / "tsc.elf"
    k.write_bytes(elf32([(0x100000, code, len(code))], 0x10000C))
    m = Machine(MachineConfig(memory_mb=16, kernel=str(k)), serial_backend=BufferBackend())
    res = m.run(timeout=60, max_instructions=5_000_000)
    assert res.code == EXIT_OK, res.reason
    ticks = struct.unpack("<Q", m.phys.read_bytes(RESULT, 8))[0]
    # 10 PIT periods of 11932 clocks at 1.193182 MHz = 99.999 ms; the TSC runs at
    # one count per instruction time (10 ns): ~10,000,000 counts
    expect = 10 * 11932 * 1e9 / 1_193_182 / m.clock.ns_per_insn
    assert abs(ticks - expect) < 2000, (ticks, expect)
    assert res.instructions < 100_000            # the time passed halted, not spinning
