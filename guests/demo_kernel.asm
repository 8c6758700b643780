; emu's demonstration kernel: a small Multiboot v1 kernel that shows protected
; mode, paging and interrupts at work, on the serial console (COM1) and on
; the VGA text screen at the same time.
;
; What it does, in order:
;   1. loads its own GDT (flat 4 GiB code and data) and reloads every segment;
;   2. prints a banner, the boot loader's name and command line, and the
;      memory map the boot loader passed in the Multiboot information
;      structure (the BIOS's E820 map);
;   3. builds an IDT: 32 exception gates, 16 IRQ gates at 0x20-0x2F, the rest
;      "unexpected";
;   4. turns paging on: the first 4 MiB identity-mapped plus the same page
;      table again at 0xC0000000 (a higher-half alias), CR0.WP set; then
;      calls a routine through its higher-half address to prove the alias;
;   5. remaps the 8259A pair to vectors 0x20/0x28, programs PIT channel 0 for
;      100 Hz, enables interrupts and, for DEMO_SECONDS of guest (virtual)
;      time, updates a tick-count line in place on the VGA screen and prints
;      a line on the serial console once a second;
;   6. writes to an unmapped address on purpose: the page-fault handler maps
;      a page there on demand and the write is restarted and read back;
;   7. says goodbye and halts with interrupts disabled (emu then exits 0).
;
; Anything unexpected (an exception other than the demonstration page fault,
; a bad Multiboot magic) prints "PANIC: ..." and forces a triple fault, so
; emu exits with its triple-fault code instead of 0.
;
; It is a flat binary (nasm -f bin) loaded at 1 MiB: the Multiboot header
; sets flag 16 and gives the load addresses itself (the "a.out kludge"), so no
; ELF linker is needed.  Build: nasm -f bin -o demo_kernel.bin demo_kernel.asm
; (emu/guests/demo_kernel.py does this into the user's cache directory).

bits 32
cpu 586

KERNEL_BASE     equ 0x00100000
HIGH_ALIAS      equ 0xC0000000          ; where the first 4 MiB appear again
DEMO_SECONDS    equ 3                   ; how long the tick demonstration runs
TIMER_HZ        equ 100
PIT_INPUT_HZ    equ 1193182
PIT_DIVISOR     equ (PIT_INPUT_HZ + TIMER_HZ / 2) / TIMER_HZ    ; 11932

DEMAND_BASE     equ 0x00800000          ; 8 MiB: not mapped until first touched
DEMAND_END      equ 0x00C00000          ; the one 4 MiB region the #PF handler serves

COM1            equ 0x3F8
VGA_TEXT        equ 0xB8000
VGA_COLS        equ 80
VGA_ROWS        equ 25
ATTR_NORMAL     equ 0x07                ; light grey on black
ATTR_BANNER     equ 0x1F                ; white on blue
ATTR_TICK       equ 0x0A                ; light green on black

MB_MAGIC        equ 0x1BADB002
MB_FLAGS        equ (1 << 1) | (1 << 16) ; want memory info; header has load addresses
MB_BOOT_MAGIC   equ 0x2BADB002          ; in EAX when a Multiboot loader enters us

; Multiboot information structure (Multiboot 0.6.96, section 3.3)
MBI_FLAGS       equ 0
MBI_MEM_LOWER   equ 4
MBI_MEM_UPPER   equ 8
MBI_CMDLINE     equ 16
MBI_MMAP_LENGTH equ 44
MBI_MMAP_ADDR   equ 48
MBI_LOADER_NAME equ 64

SEL_CODE        equ 0x08
SEL_DATA        equ 0x10

        org KERNEL_BASE

section .text

; --- Multiboot header (must sit in the first 8 KiB, 4-byte aligned) ----------
multiboot_header:
        dd MB_MAGIC
        dd MB_FLAGS
        dd -(MB_MAGIC + MB_FLAGS)
        dd multiboot_header             ; header_addr
        dd KERNEL_BASE                  ; load_addr: the file starts here
        dd load_end                     ; load_end_addr: text + data
        dd bss_end                      ; bss_end_addr: the loader zeroes up to here
        dd start                        ; entry_addr

; --- entry: EAX = magic, EBX = physical address of the information structure --
start:
        cli
        mov esp, stack_top
        mov [mb_magic], eax
        mov [mb_info], ebx

        ; Our own GDT: the loader's CS/DS are valid but its GDT may be gone.
        lgdt [gdt_descriptor]
        jmp SEL_CODE:.reload
.reload:
        mov ax, SEL_DATA
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax

        call serial_init
        call vga_init

        mov esi, msg_banner
        mov bl, ATTR_BANNER
        call print_attr
        mov esi, msg_banner2
        call print

        cmp dword [mb_magic], MB_BOOT_MAGIC
        je .magic_ok
        mov esi, msg_bad_magic
        jmp panic
.magic_ok:
        mov esi, msg_gdt
        call print
        call show_cr0

        call show_boot_info
        call show_memory_map

        call idt_init
        mov esi, msg_idt
        call print

        call paging_init
        mov esi, msg_paging
        call print
        call show_cr0
        ; Call a routine through its higher-half address: same bytes, same
        ; physical page, reached through page-directory entry 0x300.
        mov eax, alias_hello + HIGH_ALIAS
        call eax

        call pic_init
        call pit_init
        mov esi, msg_irq
        call print

        call tick_demo
        call page_fault_demo

        mov esi, msg_goodbye
        call print
        cli
.halt:
        hlt
        jmp .halt                       ; only an NMI gets here

; --- showing what the CPU is doing --------------------------------------------------
show_cr0:
        mov esi, msg_cr0
        call print
        mov eax, cr0
        call print_hex32
        mov esi, msg_cr0_pe
        call print
        mov eax, cr0
        test eax, 0x80000000
        jz .nopg
        mov esi, msg_cr0_pg
        call print
.nopg:
        mov al, ')'
        call putc
        jmp print_newline

; Runs at 0xC01xxxxx when called through the alias: print where we are.
alias_hello:
        call .here
.here:
        pop eax                         ; EIP of .here, as the CPU sees it
        push eax
        mov esi, msg_alias
        call print
        pop eax
        call print_hex32
        mov esi, msg_alias2
        call print
        ret

; --- Multiboot information -----------------------------------------------------------
show_boot_info:
        mov ebx, [mb_info]
        test dword [ebx + MBI_FLAGS], 1 << 9
        jz .noname
        mov esi, msg_loader
        call print
        mov esi, [ebx + MBI_LOADER_NAME]
        call print_bounded
        call print_newline
.noname:
        test dword [ebx + MBI_FLAGS], 1 << 2
        jz .nocmd
        mov esi, msg_cmdline
        call print
        mov esi, [ebx + MBI_CMDLINE]
        call print_bounded
        mov esi, msg_quote_nl
        call print
.nocmd:
        test dword [ebx + MBI_FLAGS], 1 << 0
        jz .nomem
        mov esi, msg_mem_lower
        call print
        mov eax, [ebx + MBI_MEM_LOWER]
        call print_dec
        mov esi, msg_mem_upper
        call print
        mov eax, [ebx + MBI_MEM_UPPER]
        call print_dec
        mov esi, msg_kib
        call print
.nomem:
        ret

show_memory_map:
        mov ebx, [mb_info]
        test dword [ebx + MBI_FLAGS], 1 << 6
        jnz .have_map
        mov esi, msg_no_mmap
        jmp print
.have_map:
        mov esi, msg_mmap
        call print
        mov edi, [ebx + MBI_MMAP_ADDR]
        mov ebp, [ebx + MBI_MMAP_LENGTH]
        add ebp, edi                    ; end of the entries
        mov ecx, 64                     ; never more than this many lines
.entry:
        cmp edi, ebp
        jae .done
        ; entry: size (not counting itself), base (64), length (64), type
        mov esi, msg_mmap_indent
        call print
        mov eax, [edi + 8]
        call print_hex32_bare
        mov eax, [edi + 4]
        call print_hex32_bare
        mov esi, msg_dash
        call print
        mov eax, [edi + 4]              ; end = base + length - 1 (64-bit)
        mov edx, [edi + 8]
        add eax, [edi + 12]
        adc edx, [edi + 16]
        sub eax, 1
        sbb edx, 0
        push eax
        mov eax, edx
        call print_hex32_bare
        pop eax
        call print_hex32_bare
        mov al, ' '
        call putc
        mov eax, [edi + 20]
        call print_mmap_type
        call print_newline
        mov eax, [edi]
        lea edi, [edi + eax + 4]
        dec ecx
        jnz .entry
.done:
        ret

print_mmap_type:
        cmp eax, 1
        mov esi, msg_type_ram
        je print
        cmp eax, 2
        mov esi, msg_type_reserved
        je print
        cmp eax, 3
        mov esi, msg_type_acpi
        je print
        cmp eax, 4
        mov esi, msg_type_nvs
        je print
        cmp eax, 5
        mov esi, msg_type_bad
        je print
        mov esi, msg_type_other
        call print
        jmp print_dec

; --- descriptor tables -----------------------------------------------------------------
; Gate i points at stub i: exception stubs, IRQ stubs, then "unexpected".
idt_init:
        xor ecx, ecx
.gate:
        cmp ecx, 32
        jae .not_exc
        mov eax, [exception_stubs + ecx * 4]
        jmp .set
.not_exc:
        cmp ecx, 0x30
        jae .unexpected
        mov eax, [irq_stubs + ecx * 4 - 0x20 * 4]
        jmp .set
.unexpected:
        mov eax, unexpected_interrupt
.set:
        mov [idt + ecx * 8], ax
        mov word [idt + ecx * 8 + 2], SEL_CODE
        mov word [idt + ecx * 8 + 4], 0x8E00   ; present, DPL 0, 32-bit interrupt gate
        shr eax, 16
        mov [idt + ecx * 8 + 6], ax
        inc ecx
        cmp ecx, 256
        jb .gate
        lidt [idt_descriptor]
        ret

; --- paging ----------------------------------------------------------------------------
paging_init:
        ; page table 0: 1024 x 4 KiB, identity, present + writable
        mov edi, page_table0
        mov eax, 0x003
        mov ecx, 1024
.pte:
        mov [edi], eax
        add eax, 0x1000
        add edi, 4
        loop .pte
        ; the page directory is in the BSS (zeroed by the loader); be sure
        mov edi, page_directory
        xor eax, eax
        mov ecx, 1024
        cld
        rep stosd
        mov dword [page_directory], page_table0 + 0x003
        mov dword [page_directory + (HIGH_ALIAS >> 22) * 4], page_table0 + 0x003
        mov eax, page_directory
        mov cr3, eax
        mov eax, cr0
        or eax, 0x80010000              ; PG | WP
        mov cr0, eax
        jmp .flush                      ; (a jump after enabling paging, as the SDM asks)
.flush:
        ret

; --- interrupt controllers and timer ---------------------------------------------------
pic_init:
        mov al, 0x11                    ; ICW1: edge, cascade, ICW4 follows
        out 0x20, al
        out 0xA0, al
        mov al, 0x20                    ; ICW2: master vectors 0x20-0x27
        out 0x21, al
        mov al, 0x28                    ;       slave vectors 0x28-0x2F
        out 0xA1, al
        mov al, 0x04                    ; ICW3: slave on master's IRQ 2
        out 0x21, al
        mov al, 0x02                    ;       slave's cascade identity
        out 0xA1, al
        mov al, 0x01                    ; ICW4: 8086 mode, normal EOI
        out 0x21, al
        out 0xA1, al
        mov al, 0xFE                    ; OCW1: only IRQ 0 (the PIT) unmasked
        out 0x21, al
        mov al, 0xFF
        out 0xA1, al
        ret

pit_init:
        mov al, 0x34                    ; channel 0, lobyte/hibyte, mode 2 (rate generator)
        out 0x43, al
        mov al, PIT_DIVISOR & 0xFF
        out 0x40, al
        mov al, PIT_DIVISOR >> 8
        out 0x40, al
        ret

; For DEMO_SECONDS of guest time: sleep with HLT until the next tick, rewrite
; the tick line on the VGA screen in place, and print a serial line once a
; second.
tick_demo:
        mov eax, [vga_row]
        mov [tick_row], eax
        call print_newline_vga_only     ; leave the tick line's row to the ticker
        mov dword [last_second], 0
        sti
.wait:
        cli                             ; look at the count with interrupts off...
        mov eax, [ticks]
        cmp eax, [shown_ticks]
        jne .changed
        sti                             ; ...then STI;HLT: no tick can slip in between
        hlt
        jmp .wait
.changed:
        sti
        mov [shown_ticks], eax
        call vga_tick_line
        mov eax, [shown_ticks]
        xor edx, edx
        mov ecx, TIMER_HZ
        div ecx                         ; eax = whole seconds
        cmp eax, [last_second]
        je .wait
        mov [last_second], eax
        call serial_tick_line
        cmp dword [last_second], DEMO_SECONDS
        jb .wait
        cli
        mov al, 0xFF                    ; mask the timer again: the demo is over
        out 0x21, al
        sti
        ret

vga_tick_line:
        mov eax, [tick_row]
        imul eax, VGA_COLS * 2
        lea edi, [VGA_TEXT + eax]
        mov esi, msg_tick_vga
        mov ah, ATTR_TICK
        call vga_put_string_at
        mov eax, [shown_ticks]
        call format_dec                 ; esi -> digits
        mov ah, ATTR_TICK
        call vga_put_string_at
        mov esi, msg_tick_vga2
        mov ah, ATTR_TICK
        call vga_put_string_at
        mov eax, [shown_ticks]
        xor edx, edx
        mov ecx, TIMER_HZ
        div ecx
        push edx
        call format_dec
        mov ah, ATTR_TICK
        call vga_put_string_at
        mov byte [scratch], '.'
        pop eax
        xor edx, edx
        mov ecx, 10
        div ecx
        add al, '0'
        add dl, '0'
        mov [scratch + 1], al
        mov [scratch + 2], dl
        mov dword [scratch + 3], ' s  '
        mov byte [scratch + 7], 0
        mov esi, scratch
        mov ah, ATTR_TICK
        jmp vga_put_string_at

serial_tick_line:
        mov esi, msg_tick_serial
        call serial_print
        mov eax, [shown_ticks]
        call format_dec
        call serial_print
        mov esi, msg_tick_serial2
        call serial_print
        mov eax, [last_second]
        call format_dec
        call serial_print
        mov esi, msg_tick_serial3
        jmp serial_print

; --- the demonstration page fault --------------------------------------------------------
page_fault_demo:
        mov esi, msg_pf_try
        call print
        mov dword [DEMAND_BASE + 0x123 * 4], 0xC0FFEE   ; not mapped: #PF, fixed, restarted
        mov esi, msg_pf_back
        call print
        mov eax, [DEMAND_BASE + 0x123 * 4]
        call print_hex32
        call print_newline
        cmp dword [DEMAND_BASE + 0x123 * 4], 0xC0FFEE
        je .ok
        mov esi, msg_pf_bad
        jmp panic
.ok:
        ret

; #PF inside [DEMAND_BASE, DEMAND_END) with no page table there: give the region
; a page table whose every entry points at one spare 4 KiB frame, and retry.
; EAX, ECX, EDI are saved by the stub (PUSHAD).
page_fault_fixup:
        mov eax, cr2
        cmp eax, DEMAND_BASE
        jb .no
        cmp eax, DEMAND_END
        jae .no
        cmp dword [page_directory + (DEMAND_BASE >> 22) * 4], 0
        jne .no                         ; already mapped: a second fault is a bug
        push eax
        mov esi, msg_pf_caught
        call print
        pop eax
        call print_hex32
        mov esi, msg_pf_err
        call print
        mov eax, [esp + 4 + 36]         ; error code (return address + PUSHAD + vector)
        call print_hex32
        mov esi, msg_pf_fixed
        call print
        mov edi, demand_table
        mov eax, demand_frame + 0x003
        mov ecx, 1024
.fill:
        mov [edi], eax
        add edi, 4
        loop .fill
        mov dword [page_directory + (DEMAND_BASE >> 22) * 4], demand_table + 0x003
        mov eax, cr2
        invlpg [eax]
        inc dword [page_faults_fixed]
        clc
        ret
.no:
        stc
        ret

; --- interrupt and exception entry -------------------------------------------------------
; Every stub leaves: [vector][error code or 0][EIP][CS][EFLAGS] on the stack.
%macro EXC_NOERR 1
exc_%1:
        push dword 0
        push dword %1
        jmp exception_common
%endmacro
%macro EXC_ERR 1
exc_%1:
        push dword %1
        jmp exception_common
%endmacro
%macro IRQ 1
irq_%1:
        push dword 0
        push dword 0x20 + %1
        jmp irq_common
%endmacro

%assign v 0
%rep 32
%if v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21
        EXC_ERR v
%else
        EXC_NOERR v
%endif
%assign v v + 1
%endrep

%assign v 0
%rep 16
        IRQ v
%assign v v + 1
%endrep

exception_common:
        pushad
        cmp dword [esp + 32], 14
        jne .fatal
        call page_fault_fixup
        jc .fatal
        popad
        add esp, 8
        iretd
.fatal:
        mov esi, msg_exception
        call print
        mov eax, [esp + 32]
        call print_dec
        mov esi, msg_exc_err
        call print
        mov eax, [esp + 36]
        call print_hex32
        mov esi, msg_exc_eip
        call print
        mov eax, [esp + 40]
        call print_hex32
        mov eax, cr2
        mov esi, msg_exc_cr2
        call print
        call print_hex32
        call print_newline
        mov esi, msg_exc_panic
        jmp panic

irq_common:
        pushad
        mov eax, [esp + 32]
        cmp eax, 0x20
        jne .other
        inc dword [ticks]
        jmp .eoi_master
.other:
        ; IRQ 7 / 15 without their in-service bit set are spurious: no EOI
        ; for that chip (8259A datasheet, "spurious interrupt").
        cmp eax, 0x27
        jne .not7
        mov al, 0x0B                    ; OCW3: read ISR
        out 0x20, al
        in al, 0x20
        test al, 0x80
        jz .done
        jmp .eoi_master
.not7:
        cmp eax, 0x2F
        jne .not15
        mov al, 0x0B
        out 0xA0, al
        in al, 0xA0
        test al, 0x80
        jnz .eoi_slave
        mov al, 0x20                    ; the master did see IRQ 2
        out 0x20, al
        jmp .done
.not15:
        inc dword [other_irqs]
        cmp eax, 0x28
        jb .eoi_master
.eoi_slave:
        mov al, 0x20
        out 0xA0, al
.eoi_master:
        mov al, 0x20
        out 0x20, al
.done:
        popad
        add esp, 8
        iretd

unexpected_interrupt:
        mov esi, msg_unexpected
        jmp panic

; Print "PANIC: <esi>" and triple-fault on purpose: an empty IDT turns the
; next exception into a shutdown, which emu reports with a non-zero exit code.
panic:
        cli
        push esi
        mov esi, msg_panic
        call print
        pop esi
        call print
        call print_newline
        lidt [null_idt_descriptor]
        int3
.hang:
        hlt
        jmp .hang

; --- output: both consoles ---------------------------------------------------------------
; print: NUL-terminated string at ESI to serial and VGA (normal attribute).
print:
        push ebx
        mov bl, ATTR_NORMAL
        call print_attr
        pop ebx
        ret

; print_attr: string at ESI, VGA attribute BL.  Preserves all but ESI.
print_attr:
        push eax
.next:
        lodsb
        test al, al
        jz .done
        call putc_attr
        jmp .next
.done:
        pop eax
        jmp vga_update_cursor

; print_bounded: a guest-supplied string (at most 200 characters shown).
print_bounded:
        push eax
        push ecx
        mov ecx, 200
.next:
        lodsb
        test al, al
        jz .done
        cmp al, 0x20
        jb .dot
        cmp al, 0x7E
        jbe .put
.dot:
        mov al, '?'
.put:
        call putc
        loop .next
.done:
        pop ecx
        pop eax
        jmp vga_update_cursor

print_newline:
        push eax
        mov al, 10
        call putc
        pop eax
        jmp vga_update_cursor

putc:
        push ebx
        mov bl, ATTR_NORMAL
        call putc_attr
        pop ebx
        ret

; putc_attr: character AL to both consoles, VGA attribute BL.
putc_attr:
        call serial_putc
        jmp vga_putc

; print_hex32: "0x" and EAX in eight hex digits.
print_hex32:
        push esi
        mov esi, msg_0x
        call print
        pop esi
print_hex32_bare:
        push eax
        push ecx
        push edx
        mov edx, eax
        mov ecx, 8
.digit:
        rol edx, 4
        mov eax, edx
        and eax, 15
        mov al, [hex_digits + eax]
        call putc
        loop .digit
        pop edx
        pop ecx
        pop eax
        ret

; print_dec: EAX in decimal.
print_dec:
        push esi
        call format_dec
        call print
        pop esi
        ret

; format_dec: EAX in decimal into a buffer; ESI -> the NUL-terminated digits.
format_dec:
        push eax
        push ecx
        push edx
        mov esi, dec_buffer + 11
        mov byte [esi], 0
        mov ecx, 10
.digit:
        xor edx, edx
        div ecx
        add dl, '0'
        dec esi
        mov [esi], dl
        test eax, eax
        jnz .digit
        pop edx
        pop ecx
        pop eax
        ret

; --- COM1: a 16550 driven by polling ----------------------------------------------------
serial_init:
        mov dx, COM1 + 1
        xor al, al
        out dx, al                      ; IER: no UART interrupts, we poll
        mov dx, COM1 + 3
        mov al, 0x80
        out dx, al                      ; LCR: DLAB on
        mov dx, COM1
        mov al, 1
        out dx, al                      ; divisor 1 = 115200 baud
        mov dx, COM1 + 1
        xor al, al
        out dx, al
        mov dx, COM1 + 3
        mov al, 0x03
        out dx, al                      ; LCR: 8N1, DLAB off
        mov dx, COM1 + 2
        mov al, 0xC7
        out dx, al                      ; FCR: FIFOs on and cleared, 14-byte trigger
        mov dx, COM1 + 4
        mov al, 0x03
        out dx, al                      ; MCR: DTR, RTS
        ret

; serial_putc: AL to COM1 ("\n" becomes "\r\n").  Waits for THRE, but not
; forever: a UART that never drains must not hang the kernel.
serial_putc:
        cmp al, 10
        jne serial_raw
        push eax
        mov al, 13
        call serial_raw
        pop eax
serial_raw:
        push ecx
        push edx
        push eax
        mov dx, COM1 + 5
        mov ecx, 100000
.wait:
        in al, dx
        test al, 0x20                   ; LSR bit 5: transmit holding register empty
        jnz .ready
        loop .wait
.ready:
        pop eax
        mov dx, COM1
        out dx, al
        pop edx
        pop ecx
        ret

serial_print:
        push eax
.next:
        lodsb
        test al, al
        jz .done
        call serial_putc
        jmp .next
.done:
        pop eax
        ret

; --- VGA text console: 80x25 at B8000, scrolling, hardware cursor ------------------------
vga_init:
        mov edi, VGA_TEXT
        mov ecx, VGA_COLS * VGA_ROWS
        mov ax, (ATTR_NORMAL << 8) | ' '
        cld
        rep stosw
        mov dword [vga_row], 0
        mov dword [vga_col], 0
        jmp vga_update_cursor

; vga_putc: AL with attribute BL at the cursor; handles "\n" and scrolling.
vga_putc:
        push eax
        push edi
        cmp al, 10
        je .newline
        mov edi, [vga_row]
        imul edi, VGA_COLS
        add edi, [vga_col]
        mov ah, bl
        mov [VGA_TEXT + edi * 2], ax
        inc dword [vga_col]
        cmp dword [vga_col], VGA_COLS
        jb .done
.newline:
        mov dword [vga_col], 0
        inc dword [vga_row]
        cmp dword [vga_row], VGA_ROWS
        jb .done
        call vga_scroll
.done:
        pop edi
        pop eax
        ret

; Move rows 1..24 up by one, blank the last row.
vga_scroll:
        push ecx
        push esi
        push edi
        push eax
        cld
        mov esi, VGA_TEXT + VGA_COLS * 2
        mov edi, VGA_TEXT
        mov ecx, VGA_COLS * (VGA_ROWS - 1) * 2 / 4
        rep movsd
        mov ecx, VGA_COLS
        mov ax, (ATTR_NORMAL << 8) | ' '
        rep stosw
        mov dword [vga_row], VGA_ROWS - 1
        dec dword [tick_row]            ; the ticker's row moved up with the rest
        jns .kept
        mov dword [tick_row], 0
.kept:
        pop eax
        pop edi
        pop esi
        pop ecx
        ret

print_newline_vga_only:
        push eax
        push ebx
        mov al, 10
        mov bl, ATTR_NORMAL
        call vga_putc
        pop ebx
        pop eax
        jmp vga_update_cursor

; vga_put_string_at: string ESI with attribute AH at EDI (a VGA address);
; EDI advances.  No cursor movement, no scrolling: for the in-place ticker.
vga_put_string_at:
.next:
        mov al, [esi]
        test al, al
        jz .done
        mov [edi], ax
        inc esi
        add edi, 2
        jmp .next
.done:
        ret

; The CRTC's cursor location registers (0x0E high, 0x0F low) follow the text.
vga_update_cursor:
        push eax
        push ecx
        push edx
        mov ecx, [vga_row]
        imul ecx, VGA_COLS
        add ecx, [vga_col]
        mov dx, 0x3D4
        mov al, 0x0E
        out dx, al
        inc dx
        mov al, ch
        out dx, al
        dec dx
        mov al, 0x0F
        out dx, al
        inc dx
        mov al, cl
        out dx, al
        pop edx
        pop ecx
        pop eax
        ret

; --- data --------------------------------------------------------------------------------
section .data
align 8
gdt:
        dq 0                            ; null descriptor
        dq 0x00CF9A000000FFFF           ; 0x08: code, base 0, limit 4 GiB, 32-bit
        dq 0x00CF92000000FFFF           ; 0x10: data, base 0, limit 4 GiB
gdt_end:
gdt_descriptor:
        dw gdt_end - gdt - 1
        dd gdt
idt_descriptor:
        dw 256 * 8 - 1
        dd idt
null_idt_descriptor:
        dw 0
        dd 0

align 4
exception_stubs:
%assign v 0
%rep 32
        dd exc_ %+ v
%assign v v + 1
%endrep
irq_stubs:
%assign v 0
%rep 16
        dd irq_ %+ v
%assign v v + 1
%endrep

hex_digits:        db "0123456789abcdef"
msg_0x:            db "0x", 0
msg_banner:        db "emu demonstration kernel", 0
msg_banner2:       db " - protected mode, paging and interrupts at work", 10, 0
msg_bad_magic:     db "not started by a Multiboot loader (EAX is not 0x2BADB002)", 0
msg_gdt:           db "GDT loaded: flat 32-bit code 0x08, data 0x10", 10, 0
msg_cr0:           db "CR0 = ", 0
msg_cr0_pe:        db " (PE: protected mode", 0
msg_cr0_pg:        db ", PG: paging", 0
msg_loader:        db "boot loader: ", 0
msg_cmdline:       db 'command line: "', 0
msg_quote_nl:      db '"', 10, 0
msg_mem_lower:     db "memory: ", 0
msg_mem_upper:     db " KiB low, ", 0
msg_kib:           db " KiB above 1 MiB", 10, 0
msg_no_mmap:       db "the boot loader passed no memory map", 10, 0
msg_mmap:          db "memory map (from the boot loader):", 10, 0
msg_mmap_indent:   db "  ", 0
msg_dash:          db "-", 0
msg_type_ram:      db "available", 0
msg_type_reserved: db "reserved", 0
msg_type_acpi:     db "ACPI reclaimable", 0
msg_type_nvs:      db "ACPI NVS", 0
msg_type_bad:      db "bad memory", 0
msg_type_other:    db "type ", 0
msg_idt:           db "IDT loaded: 32 exception gates, IRQ gates at 0x20-0x2f", 10, 0
msg_paging:        db "paging on: 0-4 MiB identity-mapped and aliased at 0xc0000000", 10, 0
msg_alias:         db "running through the higher-half alias: EIP = ", 0
msg_alias2:        db 10, 0
msg_irq:           db "8259A PICs remapped to 0x20/0x28, PIT channel 0 at 100 Hz, interrupts on", 10, 0
msg_tick_vga:      db "timer: ", 0
msg_tick_vga2:     db " ticks = ", 0
msg_tick_serial:   db "timer: ", 0
msg_tick_serial2:  db " ticks, ", 0
msg_tick_serial3:  db " s of guest time", 10, 0
msg_pf_try:        db "writing to unmapped address 0x0080048c...", 10, 0
msg_pf_caught:     db "#PF at CR2 = ", 0
msg_pf_err:        db ", error ", 0
msg_pf_fixed:      db ": page mapped on demand, retrying", 10, 0
msg_pf_back:       db "survived the page fault; the value reads back: ", 0
msg_pf_bad:        db "the demand-mapped page did not keep its value", 0
msg_goodbye:       db "goodbye: halting with interrupts disabled", 10, 0
msg_exception:     db "exception ", 0
msg_exc_err:       db ", error code ", 0
msg_exc_eip:       db ", EIP ", 0
msg_exc_cr2:       db ", CR2 ", 0
msg_exc_panic:     db "unexpected exception", 0
msg_unexpected:    db "unexpected interrupt (vector 0x30-0xff)", 0
msg_panic:         db "PANIC: ", 0
load_end:

; --- BSS: zeroed by the loader up to bss_end ---------------------------------------------
section .bss align=4096
page_directory:    resb 4096
page_table0:       resb 4096
demand_table:      resb 4096
demand_frame:      resb 4096
idt:               resb 256 * 8
stack:             resb 16384
stack_top:
mb_magic:          resd 1
mb_info:           resd 1
ticks:             resd 1
shown_ticks:       resd 1
last_second:       resd 1
tick_row:          resd 1
other_irqs:        resd 1
page_faults_fixed: resd 1
vga_row:           resd 1
vga_col:           resd 1
dec_buffer:        resb 12
scratch:           resb 16
bss_end:
