"""The demonstration guest: a tiny kernel, as assembly source, assembled at run time.

It starts in real mode at 0000:7C00 like a boot sector, loads a GDT, enters
32-bit protected mode, builds an IDT, turns paging on (identity map of the
first 4 MiB plus a higher-half alias at 0xC0000000), takes a software
interrupt, recovers from a page fault by mapping the page on demand, counts
timer interrupts (vector 0x20, raised by the host every few thousand
instructions) while computing primes, and halts with interrupts off.  All its
output goes to the debug port 0xE9.
"""

REAL_BASE = 0x7C00
PM_BASE = 0x8000

REAL_SRC = """
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7000
    lgdt [gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    .byte 0x66, 0xEA, 0x00, 0x80, 0x00, 0x00, 0x08, 0x00
    .align 8
gdt:
    .byte 0,0,0,0,0,0,0,0
    .byte 0xFF,0xFF,0,0,0,0x9A,0xCF,0
    .byte 0xFF,0xFF,0,0,0,0x92,0xCF,0
gdtr:
    .word 23
    .long gdt
"""

PM_SRC = """
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov fs, ax
    mov gs, ax
    mov ss, ax
    mov esp, 0x70000
    mov esi, banner
    call puts

    mov edi, 0x6000
    mov ecx, 256
fill_idt:
    mov eax, unexpected
    call put_gate
    add edi, 8
    loop fill_idt
    mov edi, 0x6000 + 14*8
    mov eax, pf_handler
    call put_gate
    mov edi, 0x6000 + 0x20*8
    mov eax, tick_handler
    call put_gate
    mov edi, 0x6000 + 0x30*8
    mov eax, int30_handler
    call put_gate
    lidt [idtr]
    mov esi, msg_idt
    call puts

    mov edi, 0x11000
    mov eax, 3
    mov ecx, 1024
fill_pt:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop fill_pt
    mov edi, 0x10000
    xor eax, eax
    mov ecx, 1024
    cld
    rep stosd
    mov dword ptr [0x10000], 0x11003
    mov dword ptr [0x10000 + 0x300*4], 0x11003
    mov eax, 0x10000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000
    mov cr0, eax
    mov esi, msg_paging
    call puts

    mov eax, [banner]
    cmp eax, [banner + 0xC0000000]
    jne alias_bad
    mov esi, msg_alias
    call puts
alias_bad:
    int 0x30

    mov dword ptr [0x00800000], 0xC0FFEE
    mov eax, [0x00800000]
    mov esi, msg_read
    call puts
    call puthex
    call newline

    sti
    mov esi, msg_primes
    call puts
    xor ebx, ebx
    mov ecx, 2
next_candidate:
    mov edi, 2
trial:
    mov eax, edi
    mul edi
    cmp eax, ecx
    ja is_prime
    mov eax, ecx
    xor edx, edx
    div edi
    test edx, edx
    jz not_prime
    inc edi
    jmp trial
is_prime:
    inc ebx
not_prime:
    inc ecx
    cmp ecx, 20000
    jb next_candidate
    cli
    mov eax, ebx
    call puthex
    call newline
    mov esi, msg_ticks
    call puts
    mov eax, [ticks]
    call puthex
    call newline
    mov esi, msg_bye
    call puts
    hlt

put_gate:
    mov [edi], ax
    mov word ptr [edi+2], 0x08
    mov word ptr [edi+4], 0x8E00
    push eax
    shr eax, 16
    mov [edi+6], ax
    pop eax
    ret

pf_handler:
    push eax
    push ecx
    push edi
    mov esi, msg_pf
    call puts
    mov eax, cr2
    call puthex
    call newline
    mov edi, 0x12000
    mov eax, 0x200003
    mov ecx, 1024
pf_fill:
    mov [edi], eax
    add eax, 0x1000
    add edi, 4
    loop pf_fill
    mov eax, cr2
    shr eax, 22
    mov dword ptr [0x10000 + eax*4], 0x12003
    pop edi
    pop ecx
    pop eax
    add esp, 4
    iretd

int30_handler:
    push esi
    mov esi, msg_int
    call puts
    pop esi
    iretd

tick_handler:
    inc dword ptr [ticks]
    iretd

unexpected:
    mov esi, msg_unexpected
    call puts
    cli
    hlt

puts:
    push eax
puts_loop:
    lodsb
    test al, al
    jz puts_done
    out 0xE9, al
    jmp puts_loop
puts_done:
    pop eax
    ret

newline:
    push eax
    mov al, 10
    out 0xE9, al
    pop eax
    ret

puthex:
    push eax
    push ecx
    push edx
    mov edx, eax
    mov ecx, 8
hex_loop:
    rol edx, 4
    mov eax, edx
    and eax, 15
    mov al, [hexdigits + eax]
    out 0xE9, al
    loop hex_loop
    pop edx
    pop ecx
    pop eax
    ret

    .align 4
ticks:
    .long 0
idtr:
    .word 256*8-1
    .long 0x6000
hexdigits:
    .ascii "0123456789ABCDEF"
banner:
    .asciz "emu demo guest: real mode -> protected mode\\n"
msg_idt:
    .asciz "IDT loaded (256 gates)\\n"
msg_paging:
    .asciz "paging on: identity map + alias at 0xC0000000, CR0.WP set\\n"
msg_alias:
    .asciz "higher-half alias reads the same bytes\\n"
msg_int:
    .asciz "INT 0x30 handled through an interrupt gate\\n"
msg_pf:
    .asciz "#PF at CR2="
msg_read:
    .asciz "demand-mapped page reads back 0x"
msg_primes:
    .asciz "counting primes below 20000 with interrupts on... 0x"
msg_ticks:
    .asciz "timer interrupts taken: 0x"
msg_bye:
    .asciz "halting with interrupts off\\n"
msg_unexpected:
    .asciz "unexpected interrupt\\n"
"""


def assemble():
    """Return [(physical address, bytes)] of the demo guest."""
    import keystone
    ks16 = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_16)
    ks32 = keystone.Ks(keystone.KS_ARCH_X86, keystone.KS_MODE_32)
    real, _ = ks16.asm(REAL_SRC, REAL_BASE)
    pm, _ = ks32.asm(PM_SRC, PM_BASE)
    return [(REAL_BASE, bytes(real)), (PM_BASE, bytes(pm))]
