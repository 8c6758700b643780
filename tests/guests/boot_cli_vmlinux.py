"""A synthetic Linux vmlinux: an i386 ELF without a Multiboot header, linked
like the real one (virtual 0xC1000000, physical 0x1000000, entry given as the
physical address of startup_32), booted through the 32-bit boot protocol.

It prints, to port 0xE9 and COM1, what the protocol promises at entry:

    VM esi=XXXXXXXX ebx=XXXXXXXX ebp=XXXXXXXX edi=XXXXXXXX cs=XXXX ds=XXXX ss=XXXX
    VM boot_flag=XXXX hdr=<4 chars> type_of_loader=XX loadflags=XX
    VM e820_entries=<dec> ram1=XXXXXXXX+XXXXXXXX
    VM ramdisk_image=XXXXXXXX ramdisk_size=XXXXXXXX
    VM cmdline=<text>
    VM done
"""
from .multiboot_build import elf32, nasm

PHYS = 0x1000000
VIRT = 0xC1000000

SOURCE = r"""
bits 32
org PHYS
startup_32:
    mov [r_esi], esi
    mov [r_ebx], ebx
    mov [r_ebp], ebp
    mov [r_edi], edi
    mov esp, stack_top
    mov esi, s_esi
    call puts
    mov eax, [r_esi]
    call hex32
    mov esi, s_ebx
    call puts
    mov eax, [r_ebx]
    call hex32
    mov esi, s_ebp
    call puts
    mov eax, [r_ebp]
    call hex32
    mov esi, s_edi
    call puts
    mov eax, [r_edi]
    call hex32
    mov esi, s_cs
    call puts
    mov eax, cs
    call hex16
    mov esi, s_ds
    call puts
    mov eax, ds
    call hex16
    mov esi, s_ss
    call puts
    mov eax, ss
    call hex16
    call newline

    mov ebx, [r_esi]            ; the zero page
    mov esi, s_bootflag
    call puts
    movzx eax, word [ebx + 0x1FE]
    call hex16
    mov esi, s_hdr
    call puts
    mov ecx, 4
    lea esi, [ebx + 0x202]
.hdr:
    lodsb
    call putc
    loop .hdr
    mov esi, s_type
    call puts
    mov al, [ebx + 0x210]
    call hex8
    mov esi, s_loadflags
    call puts
    mov al, [ebx + 0x211]
    call hex8
    call newline

    mov esi, s_e820
    call puts
    movzx eax, byte [ebx + 0x1E8]
    call dec32
    ; the first usable entry that starts at or above 1 MiB
    movzx ecx, byte [ebx + 0x1E8]
    lea edi, [ebx + 0x2D0]
.e820:
    test ecx, ecx
    jz .e820_end
    cmp dword [edi + 16], 1
    jne .e820_next
    cmp dword [edi], 0x100000
    jb .e820_next
    mov esi, s_ram1
    call puts
    mov eax, [edi]
    call hex32
    mov al, '+'
    call putc
    mov eax, [edi + 8]
    call hex32
    jmp .e820_end
.e820_next:
    add edi, 20
    dec ecx
    jmp .e820
.e820_end:
    call newline

    mov esi, s_rd
    call puts
    mov eax, [ebx + 0x218]
    call hex32
    mov esi, s_rdsize
    call puts
    mov eax, [ebx + 0x21C]
    call hex32
    call newline

    mov esi, s_cmdline
    call puts
    mov esi, [ebx + 0x228]
    call puts
    call newline
    mov esi, s_done
    call puts
    mov dx, 0x3FD               ; wait until COM1 has sent everything (LSR.TEMT), bounded
    mov ecx, 1000000
.drain:
    in al, dx
    test al, 0x40
    jnz .halt
    loop .drain
.halt:
    cli
    hlt
    jmp .halt

putc:
    push edx
    push ecx
    push eax
    mov dx, 0x3FD               ; COM1 ready for a byte (LSR.THRE), bounded
    mov ecx, 100000
.wait:
    in al, dx
    test al, 0x20
    jnz .ready
    loop .wait
.ready:
    pop eax
    push eax
    mov dx, 0x3F8
    out dx, al
    mov dx, 0xE9
    out dx, al
    pop eax
    pop ecx
    pop edx
    ret

puts:
    push eax
.next:
    lodsb
    test al, al
    jz .end
    call putc
    jmp .next
.end:
    pop eax
    ret

newline:
    push eax
    mov al, 10
    call putc
    pop eax
    ret

hex32:
    push eax
    shr eax, 16
    call hex16
    pop eax
hex16:
    push eax
    mov al, ah
    call hex8
    pop eax
hex8:
    push eax
    shr al, 4
    call hex4
    pop eax
hex4:
    push eax
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'A' - '9' - 1
.out:
    call putc
    pop eax
    ret

dec32:
    push eax
    push ebx
    push ecx
    push edx
    mov ebx, 10
    xor ecx, ecx
.div:
    xor edx, edx
    div ebx
    push edx
    inc ecx
    test eax, eax
    jnz .div
.emit:
    pop eax
    add al, '0'
    call putc
    loop .emit
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

s_esi:      db "VM esi=", 0
s_ebx:      db " ebx=", 0
s_ebp:      db " ebp=", 0
s_edi:      db " edi=", 0
s_cs:       db " cs=", 0
s_ds:       db " ds=", 0
s_ss:       db " ss=", 0
s_bootflag: db "VM boot_flag=", 0
s_hdr:      db " hdr=", 0
s_type:     db " type_of_loader=", 0
s_loadflags: db " loadflags=", 0
s_e820:     db "VM e820_entries=", 0
s_ram1:     db " ram1=", 0
s_rd:       db "VM ramdisk_image=", 0
s_rdsize:   db " ramdisk_size=", 0
s_cmdline:  db "VM cmdline=", 0
s_done:     db "VM done", 10, 0
r_esi: dd 0
r_ebx: dd 0
r_ebp: dd 0
r_edi: dd 0
    align 16
    times 1024 db 0
stack_top:
"""


def build():
    code = nasm(SOURCE, {"PHYS": "0x%x" % PHYS})
    # linked high, loaded low: vaddr 0xC1000000, paddr 0x1000000, entry = physical
    return elf32([(PHYS, code, len(code) + 0x1000, VIRT)], PHYS)
