"""A boot-sector program that calls the BIOS services one by one and prints
what they return, for tests to compare with the machine's configuration.

Booted from a hard disk (``build_image``), it prints ``TAG: values`` lines
(hex) through INT 10h:

* INT 11h/12h; INT 15h (E801h, 88h, C0h, A20, 86h wait, an unsupported
  function); INT 1Ah (ticks, RTC time and date, the midnight rollover of the
  tick count, the PCI BIOS);
* INT 13h (drive types, an absent drive, status, EDD check and parameters,
  a write read back through EDD, verify, a buffer in ROM, invalid CHS);
* INT 10h (mode, EGA info, display combination; cursor, write
  char/attribute and char only, read, write string on page 1), and an IRQ
  that no handler serves;
* then ``KBD: ready``, and INT 16h: five keys (the test types them), a
  peek, the shift state, a key stored with AH=05h and read back.

It ends by showing page 1, scrolling windows of it up, down and clear, and
writing ``END`` straight to COM1 before halting.
"""
from tests.guests.boot_common import SECTOR, STAGE1, assemble

HD_SIZE = 2 << 20                       # 4096 sectors: 4 cylinders of 16 x 63
STAGE2_SECTORS = 12
WRITE_LBA = 40                          # where the guest writes (CHS 0/0/41)
WRITE_TEXT = b"WRITTEN BY THE GUEST"
PAGE1_STRING = b"Write string"

STAGE2 = r"""
%macro SAY 1                    ; print a tag
    mov si, %%text
    call print
    jmp %%after
%%text: db %1, ": ", 0
%%after:
%endmacro
%macro SP_ 0                    ; a space
    mov al, ' '
    call putc
%endmacro
%macro CF8 0                    ; "01" when CF was set by the last call, else "00"
    setc al
    call hex8
%endmacro

stage2:
    ; ---------------------------------------------------------------- INT 11h/12h
    SAY "MEM12"
    int 0x12
    call hex16
    call crlf
    SAY "EQUIP"
    int 0x11
    call hex16
    call crlf

    ; ---------------------------------------------------------------- INT 15h
    mov ax, 0xE801
    int 0x15
    push dx
    push cx
    push bx
    push ax
    SAY "E801"
    pop ax
    call hex16
    SP_
    pop ax
    call hex16
    SP_
    pop ax
    call hex16
    SP_
    pop ax
    call hex16
    call crlf

    mov ah, 0x88
    int 0x15
    push ax
    SAY "EXT88"
    pop ax
    call hex16
    call crlf

    push es
    mov ah, 0xC0
    int 0x15
    mov ax, [es:bx]
    mov cl, [es:bx + 2]
    pop es
    push cx
    push ax
    SAY "CONFIG"
    pop ax
    call hex16
    SP_
    pop ax
    call hex8
    call crlf

    mov ax, 0x2402
    int 0x15
    mov [scratch], al
    mov ax, 0x2400
    int 0x15
    mov ax, 0x2402
    int 0x15
    mov [scratch + 1], al
    mov ax, 0x2401
    int 0x15
    mov ax, 0x2402
    int 0x15
    mov [scratch + 2], al
    mov ax, 0x2403
    int 0x15
    mov [scratch + 4], bx
    SAY "A20"
    mov al, [scratch]
    call hex8
    SP_
    mov al, [scratch + 1]
    call hex8
    SP_
    mov al, [scratch + 2]
    call hex8
    SP_
    mov ax, [scratch + 4]
    call hex16
    call crlf

    mov ah, 0x87                ; block move: not offered
    int 0x15
    pushf
    push ax
    SAY "UNSUP"
    pop ax
    popf
    mov cl, ah
    CF8
    SP_
    mov al, cl
    call hex8
    call crlf

    ; ---------------------------------------------------------------- time
    xor ah, ah
    int 0x1A
    mov [scratch], dx
    mov [scratch + 2], cx
    mov ah, 0x86                ; wait 500 ms
    mov cx, 0x0007
    mov dx, 0xA120
    int 0x15
    setc [scratch + 8]
    xor ah, ah
    int 0x1A
    mov [scratch + 4], dx
    mov [scratch + 6], cx
    SAY "WAIT"
    mov al, [scratch + 8]
    call hex8
    SP_
    mov eax, [scratch + 4]
    sub eax, [scratch]
    call hex32
    call crlf

    mov ah, 0x02
    int 0x1A
    push dx
    push cx
    xor ah, ah
    int 0x1A
    mov [scratch], dx
    mov [scratch + 2], cx
    SAY "RTC"
    pop ax
    call hex16
    pop ax
    call hex16
    SP_
    mov eax, [scratch]
    call hex32
    call crlf

    mov ah, 0x04
    int 0x1A
    push dx
    push cx
    SAY "DATE"
    pop ax
    call hex16
    pop ax
    call hex16
    call crlf

    ; midnight: the tick count set two ticks short of 24 hours rolls over to
    ; 0, and AH=00h reports the midnight flag once
    mov ah, 0x01
    mov cx, 0x0018
    mov dx, 0x00AE
    int 0x1A
.midnight_wait:
    sti
    hlt
    push ds
    push word 0x40
    pop ds
    mov eax, [0x6C]             ; the BDA directly: AH=00h would clear the flag
    pop ds
    cmp eax, 0x100
    jae .midnight_wait
    xor ah, ah
    int 0x1A
    mov [scratch], al
    mov [scratch + 2], dx
    mov [scratch + 4], cx
    xor ah, ah
    int 0x1A
    mov [scratch + 1], al
    SAY "MIDNIGHT"
    mov al, [scratch]
    call hex8
    SP_
    mov al, [scratch + 1]
    call hex8
    SP_
    mov eax, [scratch + 2]
    call hex32
    call crlf

    ; ---------------------------------------------------------------- PCI BIOS
    mov ax, 0xB101
    xor edi, edi
    int 0x1A
    pushf
    push edx
    push bx
    push ax
    SAY "PCI"
    pop ax
    call hex16
    SP_
    pop ax
    call hex16
    SP_
    pop eax
    call hex32
    SP_
    popf
    CF8
    call crlf

%macro FIND_DEVICE 2
    mov ax, 0xB102
    mov cx, %2
    mov dx, %1
    xor si, si
    int 0x1A
    pushf
    push bx
    push ax
    SAY "PCIDEV"
    pop ax
    mov al, ah
    call hex8
    SP_
    pop ax
    call hex16
    SP_
    popf
    CF8
    call crlf
%endmacro
    FIND_DEVICE 0x8086, 0x1237
    FIND_DEVICE 0x8086, 0x7000
    FIND_DEVICE 0x1234, 0x5678
    FIND_DEVICE 0xFFFF, 0x0000

    mov ax, 0xB103
    mov ecx, 0x060100           ; ISA bridge
    xor si, si
    int 0x1A
    pushf
    push bx
    push ax
    SAY "PCICLASS"
    pop ax
    mov al, ah
    call hex8
    SP_
    pop ax
    call hex16
    SP_
    popf
    CF8
    call crlf

    mov ax, 0xB10A
    xor bx, bx
    xor di, di
    int 0x1A
    push ecx
    SAY "PCIREAD"
    pop eax
    call hex32
    call crlf
    mov ax, 0xB109
    mov bx, 0x0008
    mov di, 0x000A
    int 0x1A
    push cx
    SAY "PCIREADW"
    pop ax
    call hex16
    call crlf
    mov ax, 0xB10A
    xor bx, bx
    mov di, 2                   ; not dword aligned
    int 0x1A
    pushf
    push ax
    SAY "PCIALIGN"
    pop ax
    mov al, ah
    call hex8
    SP_
    popf
    CF8
    call crlf

    ; ---------------------------------------------------------------- INT 13h
    mov ah, 0x15
    mov dl, 0x80
    int 0x13
    push dx
    push cx
    push ax
    SAY "TYPE80"
    pop ax
    mov al, ah
    call hex8
    SP_
    pop ax
    call hex16
    pop ax
    call hex16
    call crlf

    mov ah, 0x15
    mov dl, 0x81
    int 0x13
    pushf
    push ax
    SAY "TYPE81"
    pop ax
    mov al, ah
    call hex8
    SP_
    popf
    CF8
    call crlf

    mov ax, 0x0201
    mov cx, 0x0001
    xor dh, dh
    mov dl, 0x81
    mov bx, 0xA000
    int 0x13
    pushf
    push ax
    SAY "ABSENT"
    pop ax
    mov al, ah
    call hex8
    SP_
    popf
    CF8
    call crlf
    mov ah, 0x01
    mov dl, 0x80
    int 0x13
    push ax
    SAY "STATUS"
    pop ax
    mov al, ah
    call hex8
    call crlf

    mov ah, 0x41
    mov bx, 0x55AA
    mov dl, 0x80
    int 0x13
    pushf
    push cx
    push bx
    push ax
    SAY "EDDCHECK"
    pop ax
    mov al, ah
    call hex8
    SP_
    pop ax
    call hex16
    SP_
    pop ax
    call hex16
    SP_
    popf
    CF8
    call crlf

    mov word [eddbuf], 0x1E
    mov ah, 0x48
    mov dl, 0x80
    mov si, eddbuf
    int 0x13
    SAY "EDDPARAMS"
    mov ax, [eddbuf]
    call hex16
    SP_
    mov ax, [eddbuf + 2]
    call hex16
    SP_
    mov eax, [eddbuf + 4]
    call hex32
    SP_
    mov eax, [eddbuf + 8]
    call hex32
    SP_
    mov eax, [eddbuf + 12]
    call hex32
    SP_
    mov eax, [eddbuf + 16]
    call hex32
    SP_
    mov ax, [eddbuf + 24]
    call hex16
    SP_
    mov eax, [eddbuf + 26]
    call hex32
    call crlf

    ; write one sector by CHS, read it back by EDD
    mov ax, 0x0301
    mov cx, WRITE_LBA + 1       ; cylinder 0, sector WRITE_LBA + 1
    xor dh, dh
    mov dl, 0x80
    mov bx, wbuf
    int 0x13
    pushf
    push ax
    SAY "WRITE"
    pop ax
    call hex16
    SP_
    popf
    CF8
    call crlf
    mov dword [dap + 8], WRITE_LBA
    mov si, dap
    mov ah, 0x42
    mov dl, 0x80
    int 0x13
    SAY "READBACK"
    mov si, 0xA000
    call print
    call crlf

    mov ax, 0x0402              ; verify two sectors
    mov cx, 0x0001
    xor dh, dh
    mov dl, 0x80
    int 0x13
    pushf
    push ax
    SAY "VERIFY"
    pop ax
    call hex16
    SP_
    popf
    CF8
    call crlf

    push es                     ; a buffer in the BIOS ROM
    push word 0xF000
    pop es
    xor bx, bx
    mov ax, 0x0201
    mov cx, 0x0001
    xor dh, dh
    mov dl, 0x80
    int 0x13
    pop es
    pushf
    push ax
    SAY "ROMBUF"
    pop ax
    call hex16
    SP_
    popf
    CF8
    call crlf

    mov ax, 0x0201              ; head 16 of a 16-head disk
    mov cx, 0x0001
    mov dh, 16
    mov dl, 0x80
    mov bx, 0xA000
    int 0x13
    pushf
    push ax
    SAY "BADCHS"
    pop ax
    call hex16
    SP_
    popf
    CF8
    call crlf

    ; ---------------------------------------------------------------- INT 10h
    mov ah, 0x0F
    int 0x10
    push bx
    push ax
    SAY "VIDEO"
    pop ax
    call hex16
    SP_
    pop ax
    mov al, ah
    call hex8
    call crlf

    mov ah, 0x12
    mov bl, 0x10
    int 0x10
    push bx
    SAY "EGA"
    pop ax
    call hex16
    call crlf

    mov ax, 0x1A00
    int 0x10
    push bx
    push ax
    SAY "DCC"
    pop ax
    call hex8
    SP_
    pop ax
    call hex16
    call crlf

    ; page 1, which is not shown yet
    mov ah, 0x02
    mov bh, 1
    mov dx, 0x050A
    int 0x10
    mov ax, 0x0958              ; 'X'
    mov bx, 0x011E
    mov cx, 3
    int 0x10
    mov ah, 0x08
    mov bh, 1
    int 0x10
    push ax
    mov ah, 0x03
    mov bh, 1
    int 0x10
    push dx
    SAY "PAGE1"
    pop ax
    call hex16
    SP_
    pop ax
    call hex16
    call crlf

    mov ax, 0x1301              ; write string, cursor moves
    mov bx, 0x014F
    mov cx, page1_string_len
    mov dx, 0x0600
    mov bp, page1_string
    int 0x10
    mov ax, 0x1302              ; attributes in the string, cursor stays
    mov bh, 1
    mov cx, 2
    mov dx, 0x0700
    mov bp, cells
    int 0x10
    mov ah, 0x03
    mov bh, 1
    int 0x10
    push dx
    call crlf                   ; AH=13h echoed the strings to COM1 too
    SAY "STRING"
    pop ax
    call hex16
    call crlf
    mov ax, 0x1300              ; "Down" at 10,0 and "Gone" at 20,0, cursor stays
    mov bx, 0x0107
    mov cx, 4
    mov dx, 0x0A00
    mov bp, text_down
    int 0x10
    mov ax, 0x1300
    mov bx, 0x0107
    mov cx, 4
    mov dx, 0x1400
    mov bp, text_gone
    int 0x10
    call crlf
    mov ah, 0x02                ; AH=0Ah: two 'Q' at 14,0, attributes kept
    mov bh, 1
    mov dx, 0x0E00
    int 0x10
    mov ax, 0x0A51
    mov bx, 0x01F0
    mov cx, 2
    int 0x10

    ; ---------------------------------------------------------------- an IRQ nobody serves
    ; COM1's transmitter interrupt, unmasked at the PIC: the BIOS's handler
    ; masks the line again and sends EOI.
    cli
    in al, 0x21
    mov [scratch], al
    and al, 0xEF
    out 0x21, al
    mov dx, 0x3FC
    mov al, 0x0B                ; DTR, RTS, OUT2 (the IRQ gate)
    out dx, al
    mov dx, 0x3F9
    mov al, 0x02                ; THR empty interrupt
    out dx, al
    sti
    hlt                         ; IRQ 4 comes at once
    cli
    in al, 0x21
    mov [scratch + 1], al
    mov dx, 0x3F9
    xor al, al
    out dx, al
    mov dx, 0x3FC
    mov al, 0x03
    out dx, al
    mov al, [scratch]
    out 0x21, al
    sti
    SAY "IRQ4"
    mov al, [scratch]
    call hex8
    SP_
    mov al, [scratch + 1]
    call hex8
    call crlf

    ; ---------------------------------------------------------------- INT 16h
    SAY "KBD"
    mov si, msg_ready
    call print
    mov cx, 4
.keys:
    push cx
    xor ah, ah
    int 0x16
    push ax
    SAY "KEY"
    pop ax
    call hex16
    call crlf
    pop cx
    loop .keys
    mov ah, 0x10
    int 0x16
    push ax
    SAY "KEY10"
    pop ax
    call hex16
    call crlf
    mov ah, 0x01
    int 0x16
    pushf
    SAY "PEEK"
    popf
    setz al
    call hex8
    call crlf
    mov ah, 0x02
    int 0x16
    push ax
    SAY "SHIFT"
    pop ax
    call hex8
    call crlf
    mov ah, 0x05
    mov cx, 0x2E63              ; 'c'
    int 0x16
    push ax
    mov ah, 0x11
    int 0x16
    pushf
    xor ah, ah
    int 0x16
    push ax
    SAY "STORE"
    pop ax
    call hex16
    SP_
    popf
    setz al
    call hex8
    SP_
    pop ax
    call hex8
    call crlf

    SAY "DONE"
    call crlf

    ; ---------------------------------------------------------------- page 1 shown
    mov ax, 0x0501
    int 0x10
    mov ax, 0x0601              ; rows 5-7 up by one, blank line attribute 1Fh
    mov bh, 0x1F
    mov cx, 0x0500
    mov dx, 0x074F
    int 0x10
    mov ax, 0x0701              ; rows 10-12 down by one, blank line attribute 2Eh
    mov bh, 0x2E
    mov cx, 0x0A00
    mov dx, 0x0C4F
    int 0x10
    mov ax, 0x0600              ; rows 20-21 cleared with attribute 5Ah
    mov bh, 0x5A
    mov cx, 0x1400
    mov dx, 0x154F
    int 0x10

    mov si, msg_end             ; straight to COM1, then stop
.end_char:
    lodsb
    test al, al
    jz .drain
    mov ah, al
    mov dx, 0x3FD
.thre:
    in al, dx
    test al, 0x20
    jz .thre
    mov dx, 0x3F8
    mov al, ah
    out dx, al
    jmp .end_char
.drain:
    mov dx, 0x3FD
    in al, dx
    test al, 0x40
    jz .drain
    cli
    hlt

msg_ready: db "ready", 13, 10, 0
msg_end:   db "END", 13, 10, 0
page1_string: db "Write string"
page1_string_len equ $ - page1_string
cells:     db "A", 0x2F, "B", 0x3F
text_down: db "Down"
text_gone: db "Gone"
align 4
dap:
    db 0x10, 0
    dw 1
    dw 0xA000, 0x0000
    dq 0
scratch:   times 16 db 0
eddbuf:    times 32 db 0
wbuf:      db "WRITTEN BY THE GUEST", 0
           times 512 - ($ - wbuf) db 0

    times (1 + STAGE2_SECTORS) * 512 - ($ - $$) db 0
"""

SOURCE = '%define HELLO_TEXT "HELLO: services, drive "\n' + STAGE1 + STAGE2


def build_image():
    code = assemble(SOURCE, {"STAGE2_SECTORS": STAGE2_SECTORS, "WRITE_LBA": WRITE_LBA})
    assert len(code) == (1 + STAGE2_SECTORS) * SECTOR
    img = bytearray(HD_SIZE)
    img[:len(code)] = code
    return bytes(img)


def write_image(path):
    with open(path, "wb") as f:
        f.write(build_image())
    return str(path)
