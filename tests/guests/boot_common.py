"""What the boot-sector guests share: NASM, a stage-1 loader, print helpers.

``STAGE1`` is NASM source for sector 0 (``org 0x7C00``): it sets the
segments and a stack, keeps DL in ``boot_drive``, prints ``HELLO_TEXT`` and
the drive through INT 10h, loads ``STAGE2_SECTORS`` (a -D define) sectors
from CHS 0/0/2 to 0x7E00 with INT 13h AH=02h and jumps to ``stage2``, the
label the including source defines right after it.  ``print``, ``crlf``,
``putc``, ``hex8/16/32`` are there for the rest of the program (all go
through INT 10h teletype; they clobber AX, BX, SI).

``assemble(source, defines)`` runs NASM (Debian's ``nasm``) on the source
and returns the flat binary.
"""
import os
import shutil
import subprocess
import tempfile

SECTOR = 512

STAGE1 = r"""
bits 16
org 0x7C00

start:
    jmp 0x0000:entry            ; CS = 0 whatever the BIOS used
entry:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7C00
    sti
    cld
    mov [boot_drive], dl
    mov si, msg_hello
    call print
    mov al, [boot_drive]
    call hex8
    call crlf
    mov ah, 0x02
    mov al, STAGE2_SECTORS
    mov cx, 0x0002              ; cylinder 0, sector 2
    xor dh, dh
    mov dl, [boot_drive]
    mov bx, 0x7E00
    int 0x13
    jc .fail
    cmp al, STAGE2_SECTORS
    jne .fail
    jmp stage2
.fail:
    mov si, msg_fail
    call print
    cli
    hlt

; print: the NUL-terminated string at DS:SI through INT 10h teletype
print:
    lodsb
    test al, al
    jz .done
    call putc
    jmp print
.done:
    ret

crlf:
    mov si, msg_crlf
    jmp print

putc:
    mov ah, 0x0E
    mov bx, 0x0007
    int 0x10
    ret

; hex8/hex16/hex32: AL/AX/EAX in hex
hex32:
    push eax
    shr eax, 16
    call hex16
    pop eax
hex16:
    push ax
    mov al, ah
    call hex8
    pop ax
hex8:
    push ax
    shr al, 4
    call .digit
    pop ax
    push ax
    and al, 0x0F
    call .digit
    pop ax
    ret
.digit:
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'A' - '0' - 10
.out:
    jmp putc

msg_hello:  db HELLO_TEXT, 0
msg_fail:   db "FAIL: stage 2 did not load", 13, 10, 0
msg_crlf:   db 13, 10, 0
boot_drive: db 0

    times 510 - ($ - $$) db 0
    dw 0xAA55
"""

# Protected mode: the GDT and the 32-bit routine that writes the string at
# ESI to COM1 by programming the UART directly, waits until it has all left,
# and halts with interrupts off (emu's "guest is done").
PM_TAIL = r"""
bits 32
pm_serial_and_halt:
    lodsb
    test al, al
    jz .drain
    mov ah, al
    mov dx, 0x3FD
.wait_thre:
    in al, dx
    test al, 0x20
    jz .wait_thre
    mov dx, 0x3F8
    mov al, ah
    out dx, al
    jmp pm_serial_and_halt
.drain:
    mov dx, 0x3FD
    mov ecx, 1000000
.wait_temt:
    in al, dx
    test al, 0x40
    jnz .halt
    loop .wait_temt
.halt:
    cli
    hlt
    jmp .halt
bits 16

align 8
gdt:
    dq 0
    dq 0x00CF9A000000FFFF       ; 0x08: flat 32-bit code
    dq 0x00CF92000000FFFF       ; 0x10: flat data
gdt_desc:
    dw gdt_desc - gdt - 1
    dd gdt
"""


def nasm_path():
    path = shutil.which("nasm")
    if path is None:
        raise RuntimeError("NASM is needed: apt-get install nasm (./emu.sh installs it)")
    return path


def assemble(source, defines=None):
    """Assemble NASM ``source`` to a flat binary (bytes); -D for ``defines``."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "guest.asm")
        out = os.path.join(d, "guest.bin")
        with open(src, "w") as f:
            f.write(source)
        args = [nasm_path(), "-f", "bin", "-o", out, src]
        for k, v in (defines or {}).items():
            args.insert(1, "-D%s=%s" % (k, v))
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError("nasm failed: %s" % (p.stderr or p.stdout).strip())
        with open(out, "rb") as f:
            return f.read()


def tagged_lines(text, tag):
    """The values of the serial lines ``TAG: value`` (CR dropped)."""
    out = []
    for line in text.replace("\r", "").split("\n"):
        if line.startswith(tag + ": "):
            out.append(line[len(tag) + 2:])
    return out


# A boot sector that prints ``text`` and the boot drive (DL) in hex through
# INT 10h, waits until COM1 has sent it, and halts with interrupts off.
TINY = r"""
bits 16
org 0x7C00
    jmp 0x0000:entry
entry:
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7C00
    mov [drive], dl
    mov si, text
.print:
    lodsb
    test al, al
    jz .hex
    mov ah, 0x0E
    mov bx, 0x0007
    int 0x10
    jmp .print
.hex:
    mov cl, 4
.digit:
    mov al, [drive]
    shr al, cl
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 7
.out:
    mov ah, 0x0E
    mov bx, 0x0007
    int 0x10
    sub cl, 4
    jnc .digit
    mov ax, 0x0E0D
    int 0x10
    mov ax, 0x0E0A
    int 0x10
    mov dx, 0x3FD
.drain:
    in al, dx
    test al, 0x40
    jz .drain
    cli
    hlt
drive: db 0
text: db TEXT, 0
    times 510 - ($ - $$) db 0
    dw 0xAA55
"""


def tiny_boot_sector(text):
    """512 bytes that print ``text`` followed by the boot drive in hex."""
    assert '"' not in text
    return assemble('%%define TEXT "%s"\n' % text + TINY)
