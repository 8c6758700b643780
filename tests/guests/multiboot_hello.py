"""A Multiboot v1 kernel that reports what its boot loader gave it.

It checks EAX = 0x2BADB002, reads the information structure at EBX (flags,
mem_lower/mem_upper, the memory map, the command line, the boot loader name,
the modules), checks that its .bss arrived zeroed, reloads every segment
register from the loader's GDT (a far jump to CS 0x10, data 0x18), prints
each fact as one line to COM1 and to the debug port 0xE9, and ends with
``cli; hlt`` once COM1 has sent everything.  Lines (numbers in hex unless noted):

    MB magic ok
    MB flags=XXXXXXXX
    MB mem_lower=<dec>K mem_upper=<dec>K
    MB cmdline=<text>
    MB loader=<text>
    MB mmap base=XXXXXXXXXXXXXXXX len=XXXXXXXXXXXXXXXX type=<dec>     (one per entry)
    MB mod start=XXXXXXXX end=XXXXXXXX name=<text> head=<first 8 bytes as text>
    MB bss ok            (or "MB bss dirty")
    MB cr0=XXXXXXXX eflags=XXXXXXXX
    MB gdt reload ok
    MB done

``build_elf()`` wraps it in an ELF executable (one PT_LOAD at 0x100000 with
a 16 KiB .bss); ``build_aout()`` gives the same kernel as a raw image whose
header sets flag 16 (the "a.out kludge" address fields).  ``SPIN`` makes the
kernel loop forever after its report (for timeout tests).
"""
from .multiboot_build import elf32, nasm

LOAD_ADDR = 0x100000
ENTRY_OFFSET = 0x40
BSS_SIZE = 0x4000
MAGIC = 0x1BADB002

SOURCE = r"""
bits 32
org LOAD_ADDR

%ifndef FLAGS
%define FLAGS 0x00000003
%endif
%ifndef SPIN
%define SPIN 0
%endif
%ifndef CHECKSUM
%define CHECKSUM (-(0x1BADB002 + FLAGS))
%endif

header:
    dd 0x1BADB002
    dd FLAGS
    dd CHECKSUM
%if FLAGS & 0x10000
    dd header                   ; header_addr
    dd LOAD_ADDR                ; load_addr
    dd image_end                ; load_end_addr
    dd bss_end                  ; bss_end_addr
    dd start                    ; entry_addr
%endif
    times ENTRY_OFFSET - ($ - $$) db 0

start:
    mov esp, bss_end            ; the stack is the top of our .bss
    mov [magic], eax
    mov [info], ebx
    ; .bss must arrive zeroed (check all but the 1 KiB stack we just started using)
    mov edi, bss_start
    mov ecx, (BSS_SIZE - 1024) / 4
    xor eax, eax
    repe scasd
    setne byte [bss_dirty]

    cmp dword [magic], 0x2BADB002
    je .magic_ok
    mov esi, s_badmagic
    call puts
    mov eax, [magic]
    call hex32
    call newline
    jmp finish
.magic_ok:
    mov esi, s_magic
    call puts

    mov ebx, [info]
    mov esi, s_flags
    call puts
    mov eax, [ebx]
    call hex32
    call newline

    test dword [ebx], 1
    jz .no_mem
    mov esi, s_memlo
    call puts
    mov eax, [ebx + 4]
    call dec32
    mov esi, s_memhi
    call puts
    mov eax, [ebx + 8]
    call dec32
    mov al, 'K'
    call putc
    call newline
.no_mem:

    test dword [ebx], 4
    jz .no_cmd
    mov esi, s_cmd
    call puts
    mov esi, [ebx + 16]
    call puts
    call newline
.no_cmd:

    test dword [ebx], 0x200
    jz .no_name
    mov esi, s_loader
    call puts
    mov esi, [ebx + 64]
    call puts
    call newline
.no_name:

    test dword [ebx], 0x40
    jz .no_mmap
    mov edi, [ebx + 48]         ; mmap_addr
    mov ebp, edi
    add ebp, [ebx + 44]         ; end = addr + length
.mmap_loop:
    cmp edi, ebp
    jae .no_mmap
    mov esi, s_mmap_base
    call puts
    mov eax, [edi + 8]
    call hex32
    mov eax, [edi + 4]
    call hex32
    mov esi, s_mmap_len
    call puts
    mov eax, [edi + 16]
    call hex32
    mov eax, [edi + 12]
    call hex32
    mov esi, s_mmap_type
    call puts
    mov eax, [edi + 20]
    call dec32
    call newline
    mov eax, [edi]              ; size field does not count itself
    lea edi, [edi + eax + 4]
    jmp .mmap_loop
.no_mmap:

    test dword [ebx], 8
    jz .no_mods
    mov ecx, [ebx + 20]         ; mods_count
    mov edi, [ebx + 24]         ; mods_addr
.mod_loop:
    test ecx, ecx
    jz .no_mods
    push ecx
    mov esi, s_mod_start
    call puts
    mov eax, [edi]
    call hex32
    mov esi, s_mod_end
    call puts
    mov eax, [edi + 4]
    call hex32
    mov esi, s_mod_name
    call puts
    mov esi, [edi + 8]
    call puts
    mov esi, s_mod_head
    call puts
    mov esi, [edi]
    mov ecx, 8
.head:
    lodsb
    call putc
    loop .head
    call newline
    pop ecx
    add edi, 16
    dec ecx
    jmp .mod_loop
.no_mods:

    mov esi, s_bss_ok
    cmp byte [bss_dirty], 0
    je .bss_print
    mov esi, s_bss_dirty
.bss_print:
    call puts

    mov esi, s_cr0
    call puts
    mov eax, cr0
    call hex32
    mov esi, s_eflags
    call puts
    pushfd
    pop eax
    call hex32
    call newline

    ; reload every segment register from the loader's GDT
    mov ax, 0x18
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    jmp dword 0x10:.reloaded
.reloaded:
    mov esi, s_gdt
    call puts

finish:
    mov esi, s_done
    call puts
    call drain
%if SPIN
.spin:                          ; registers only: a store here would hit our own code page
    inc eax
    jmp .spin
%endif
    cli
    hlt
    jmp finish

; --- output: COM1 (polling LSR.THRE, bounded) and the debug port 0xE9 -------------
putc:                           ; al = character
    push edx
    push ecx
    push eax
    mov dx, 0x3FD
    mov ecx, 100000
.wait:
    in al, dx
    test al, 0x20
    jnz .ready
    loop .wait
.ready:
    pop eax
    mov dx, 0x3F8
    out dx, al
    mov dx, 0xE9
    out dx, al
    pop ecx
    pop edx
    ret

drain:                          ; wait until COM1 has sent everything (LSR.TEMT), bounded
    push eax
    push ecx
    push edx
    mov dx, 0x3FD
    mov ecx, 1000000
.wait:
    in al, dx
    test al, 0x40
    jnz .done
    loop .wait
.done:
    pop edx
    pop ecx
    pop eax
    ret

puts:                           ; esi = NUL-terminated string
    push eax
    push esi
.next:
    lodsb
    test al, al
    jz .end
    call putc
    jmp .next
.end:
    pop esi
    pop eax
    ret

newline:
    push eax
    mov al, 10
    call putc
    pop eax
    ret

hex32:                          ; eax, 8 hex digits
    push ecx
    push eax
    mov ecx, 8
.digit:
    rol eax, 4
    push eax
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'A' - '9' - 1
.out:
    call putc
    pop eax
    loop .digit
    pop eax
    pop ecx
    ret

dec32:                          ; eax, decimal
    push eax
    push ecx
    push edx
    push ebx
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
    pop ebx
    pop edx
    pop ecx
    pop eax
    ret

s_magic:     db "MB magic ok", 10, 0
s_badmagic:  db "MB bad magic ", 0
s_flags:     db "MB flags=", 0
s_memlo:     db "MB mem_lower=", 0
s_memhi:     db "K mem_upper=", 0
s_cmd:       db "MB cmdline=", 0
s_loader:    db "MB loader=", 0
s_mmap_base: db "MB mmap base=", 0
s_mmap_len:  db " len=", 0
s_mmap_type: db " type=", 0
s_mod_start: db "MB mod start=", 0
s_mod_end:   db " end=", 0
s_mod_name:  db " name=", 0
s_mod_head:  db " head=", 0
s_bss_ok:    db "MB bss ok", 10, 0
s_bss_dirty: db "MB bss dirty", 10, 0
s_cr0:       db "MB cr0=", 0
s_eflags:    db " eflags=", 0
s_gdt:       db "MB gdt reload ok", 10, 0
s_done:      db "MB done", 10, 0
magic:       dd 0
info:        dd 0
bss_dirty:   db 0

    align 16
image_end:
bss_start equ image_end
bss_end   equ image_end + BSS_SIZE
"""


def assemble(flags=0x00000003, spin=False, checksum=None):
    """The kernel as a flat binary loaded at LOAD_ADDR (entry at LOAD_ADDR + ENTRY_OFFSET)."""
    defines = {"LOAD_ADDR": LOAD_ADDR, "ENTRY_OFFSET": ENTRY_OFFSET, "BSS_SIZE": BSS_SIZE,
               "FLAGS": "0x%x" % flags, "SPIN": int(bool(spin))}
    if checksum is not None:
        defines["CHECKSUM"] = "0x%x" % checksum
    return nasm(SOURCE, defines)


def build_elf(spin=False, flags=0x00000003, checksum=None, paddr=LOAD_ADDR, bss=BSS_SIZE):
    """The kernel as an ELF executable: one PT_LOAD (code+data, then .bss)."""
    code = assemble(flags=flags, spin=spin, checksum=checksum)
    return elf32([(paddr, code, len(code) + bss)], LOAD_ADDR + ENTRY_OFFSET)


def build_aout(spin=False):
    """The kernel as a raw image whose header carries the load addresses (flag 16)."""
    return assemble(flags=0x00010003, spin=spin)
