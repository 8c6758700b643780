"""A boot sector that resets the CPU and asks POST to resume it (the 286 way).

It prints ``RESUME: first``, stores a resume address at 0040:0067, writes
shutdown code 0Ah to CMOS register 0Fh and pulses the CPU reset line through
the keyboard controller (command FEh).  The BIOS's POST must see the code and
jump to the resume address without a cold boot: the program then prints
``RESUME: back`` (through INT 10h, whose vectors the reset left in RAM) and
halts.  A cold boot instead would print the BIOS banner a second time and
run the boot sector from the start.
"""
from tests.guests.boot_common import assemble

SOURCE = r"""
bits 16
org 0x7C00
    jmp 0x0000:entry
entry:
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    mov si, msg_first
    call print
    call drain
    mov word [0x467], resume
    mov word [0x469], 0
    mov al, 0x8F
    out 0x70, al
    mov al, 0x0A                ; shutdown code: jump through 0040:0067
    out 0x71, al
    mov al, 0xFE                ; pulse the reset line
    out 0x64, al
    cli
    hlt

resume:
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    mov si, msg_back
    call print
    call drain
    cli
    hlt

print:
    lodsb
    test al, al
    jz .done
    mov ah, 0x0E
    mov bx, 0x0007
    int 0x10
    jmp print
.done:
    ret

drain:
    mov dx, 0x3FD
.wait:
    in al, dx
    test al, 0x40
    jz .wait
    ret

msg_first: db "RESUME: first", 13, 10, 0
msg_back:  db "RESUME: back", 13, 10, 0
    times 510 - ($ - $$) db 0
    dw 0xAA55
"""


def build_image(size=1 << 20):
    code = assemble(SOURCE)
    return code + bytes(size - len(code))
