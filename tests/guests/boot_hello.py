"""A boot sector that exercises what boot loaders take from the BIOS.

Built at test time with NASM (``build_image``): sector 0 is the boot sector,
sectors 1-2 its second stage, sector 3 a data sector, and one more sector at
a CHS address that is not on the first track (``CHS_SECTOR``).  Run from a
hard disk or a 1.44 MB floppy, it

1. prints a greeting through INT 10h teletype (so it reaches the VGA text
   screen and, by the BIOS's echo, COM1) with the boot drive in DL;
2. loads its second stage with INT 13h AH=02h (CHS), then sector 3 with the
   EDD extended read (AH=42h, after the AH=41h check), and the CHS_SECTOR
   sector with AH=02h at cylinder/head/sector != 0, printing what it read;
3. prints the drive parameters (AH=08h) and what an EDD read past the end
   of the disk returns;
4. walks the E820 memory map and prints each entry;
5. enables A20 (INT 15h AX=2401h), switches to 32-bit protected mode,
   checks that 0x100000 does not alias 0, and writes "PM OK" to COM1 by
   programming the UART directly;
6. waits for the UART to send everything, then halts with interrupts off.

Every printed line starts with a tag, so tests can pick lines out.
"""
from tests.guests.boot_common import PM_TAIL, SECTOR, STAGE1, assemble

FLOPPY_144 = 1474560
HD_SIZE = 2 << 20                        # 2 MiB: 4 cylinders of 16 x 63

# (cylinder, head, sector) of the extra sector, and its LBA, per drive kind
CHS_SECTOR = {
    "floppy": ((1, 1, 5), (1 * 2 + 1) * 18 + 4),
    "hd": ((1, 2, 7), (1 * 16 + 2) * 63 + 6),
}
EDD_TEXT = b"EDD: sector 3 came through AH=42h"
CHS_TEXT = b"CHS: the sector at C/H/S came through AH=02h"

STAGE2 = r"""
; ===================== sectors 1-2: the second stage =====================
stage2:
    mov si, msg_stage2
    call print

    ; --- EDD: AH=41h, then AH=42h for sector 3 into 0900:0000
    mov ah, 0x41
    mov bx, 0x55AA
    mov dl, [boot_drive]
    int 0x13
    jc .no_edd
    cmp bx, 0xAA55
    jne .no_edd
    mov si, dap
    mov ah, 0x42
    mov dl, [boot_drive]
    int 0x13
    jc .edd_failed
    push ds
    push word 0x0900
    pop ds
    xor si, si
    call print
    pop ds
    call crlf
    jmp .chs
.no_edd:
    mov si, msg_no_edd
    call print
    jmp .chs
.edd_failed:
    mov si, msg_edd_failed
    call print

    ; --- CHS: the sector at CHS_C/CHS_H/CHS_S into 0000:A000
.chs:
    mov ax, 0x0201
    mov ch, CHS_C & 0xFF
    mov cl, CHS_S | ((CHS_C >> 2) & 0xC0)
    mov dh, CHS_H
    mov dl, [boot_drive]
    mov bx, 0xA000
    int 0x13
    jc .chs_failed
    mov si, 0xA000
    call print
    call crlf
    jmp .params
.chs_failed:
    mov si, msg_chs_failed
    call print

    ; --- AH=08h: cylinders, heads, sectors per track (decimal would be nicer;
    ; hex keeps this small)
.params:
    push es                     ; AH=08h returns ES:DI for floppies
    mov ah, 0x08
    mov dl, [boot_drive]
    int 0x13
    pop es
    mov si, msg_params
    call print
    mov al, ch                  ; max cylinder, low bits
    mov ah, cl
    shr ah, 6
    call hex16
    mov al, ' '
    call putc
    mov al, dh                  ; max head
    call hex8
    mov al, ' '
    call putc
    mov al, cl
    and al, 0x3F                ; sectors per track
    call hex8
    call crlf

    ; --- an EDD read past the end: CF and AH = 04h expected
    mov dword [dap + 8], 0x00FFFFF0
    mov si, dap
    mov ah, 0x42
    mov dl, [boot_drive]
    int 0x13
    pushf
    push ax
    mov si, msg_past_end
    call print
    pop ax
    popf
    mov cl, ah                  ; the status
    setc al                     ; the carry
    call hex8
    mov al, ' '
    call putc
    mov al, cl
    call hex8
    call crlf

    ; --- the E820 map
    xor ebx, ebx
.e820:
    mov eax, 0xE820
    mov edx, 0x534D4150
    mov ecx, 20
    mov di, e820_buf
    int 0x15
    jc .e820_done
    cmp eax, 0x534D4150
    jne .e820_done
    push ebx
    mov si, msg_e820
    call print
    mov eax, [e820_buf + 4]
    call hex32
    mov eax, [e820_buf + 0]
    call hex32
    mov al, ' '
    call putc
    mov eax, [e820_buf + 12]
    call hex32
    mov eax, [e820_buf + 8]
    call hex32
    mov al, ' '
    call putc
    mov al, [e820_buf + 16]
    call hex8
    call crlf
    pop ebx
    test ebx, ebx
    jnz .e820
.e820_done:

    ; --- protected mode
    mov ax, 0x2401              ; A20 on
    int 0x15
    mov si, msg_pm
    call print
    cli
    lgdt [gdt_desc]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm_entry

bits 32
pm_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x90000
    ; A20 really on: 0x100000 and 0 are different bytes
    mov byte [0x000000], 0x11
    mov byte [0x100000], 0x22
    mov esi, msg_a20_off
    cmp byte [0x000000], 0x11
    jne pm_serial_and_halt
    mov esi, msg_pm_ok
    jmp pm_serial_and_halt

bits 16
msg_stage2:     db "STAGE2: loaded by CHS", 13, 10, 0
msg_no_edd:     db "EDD: not supported", 13, 10, 0
msg_edd_failed: db "EDD: read failed", 13, 10, 0
msg_chs_failed: db "CHS: read failed", 13, 10, 0
msg_params:     db "PARAMS: ", 0
msg_past_end:   db "PASTEND: ", 0
msg_e820:       db "E820: ", 0
msg_pm:         db "PM: switching", 13, 10, 0
msg_pm_ok:      db "PM OK", 13, 10, 0
msg_a20_off:    db "PM A20 OFF", 13, 10, 0

align 4
dap:
    db 0x10, 0
    dw 1                        ; one sector
    dw 0x0000, 0x0900           ; to 0900:0000
    dq 3                        ; LBA 3
e820_buf:
    times 24 db 0

""" + PM_TAIL + r"""
    times 3 * 512 - ($ - $$) db 0
"""

SOURCE = '%define HELLO_TEXT "HELLO: boot sector running, drive "\n' + STAGE1 + STAGE2


def build_image(kind="hd"):
    """The whole disk image (bytes) for a hard disk ("hd") or a 1.44 MB floppy."""
    (c, h, s), lba = CHS_SECTOR[kind]
    code = assemble(SOURCE, {"CHS_C": c, "CHS_H": h, "CHS_S": s, "STAGE2_SECTORS": 2})
    assert len(code) == 3 * SECTOR
    img = bytearray(HD_SIZE if kind == "hd" else FLOPPY_144)
    img[:len(code)] = code
    img[3 * SECTOR:3 * SECTOR + len(EDD_TEXT)] = EDD_TEXT
    img[lba * SECTOR:lba * SECTOR + len(CHS_TEXT)] = CHS_TEXT
    return bytes(img)


def write_image(path, kind="hd"):
    with open(path, "wb") as f:
        f.write(build_image(kind))
    return str(path)


if __name__ == "__main__":
    # python -m tests.guests.boot_hello OUT.img [hd|floppy]: an image for `emu run`
    import sys
    if len(sys.argv) not in (2, 3) or (sys.argv[2:] and sys.argv[2] not in CHS_SECTOR):
        sys.exit("usage: python -m tests.guests.boot_hello OUT.img [hd|floppy]")
    print(write_image(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else "hd"))
