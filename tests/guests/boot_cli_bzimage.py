"""A synthetic Linux bzImage: a real setup header (boot.rst) around a tiny
real-mode setup program that reports what the boot loader gave it.

The setup program runs where a boot loader enters Linux (real mode, at
setup segment + 0x20, offset 0) and prints, to COM1 and to port 0xE9:

    LX cs=XXXX ds=XXXX es=XXXX ss=XXXX sp=XXXX fs=XXXX gs=XXXX if=X
    LX loadflags=XX type_of_loader=XX vid_mode=XXXX heap_end_ptr=XXXX
    LX ramdisk_image=XXXXXXXX ramdisk_size=XXXXXXXX
    LX cmd_line_ptr=XXXXXXXX
    LX cmdline=<the string at cmd_line_ptr>
    LX int12=<dec>K              (only with BIOS=1: INT 12h, low memory size)
    LX e820 base=XXXXXXXXXXXXXXXX len=XXXXXXXXXXXXXXXX type=<dec>
                                 (only with BIOS=1: one per INT 15h E820h entry)
    LX done

then ``cli; hlt`` once COM1 has sent everything.  The "protected-mode kernel" after the setup sectors is
filler with a marker at its start, so that tests can find it in RAM.
"""
from .multiboot_build import nasm

KERNEL_MARKER = b"EMU-TEST-PM-KERNEL"

SOURCE = r"""
bits 16
org 0

; --- boot sector (0x000-0x1FF) -----------------------------------------------------
    times 0x1F1 - ($ - $$) db 0
    db SETUP_SECTS              ; 0x1F1 setup_sects
    dw 0                        ; 0x1F2 root_flags
    dd SYSSIZE                  ; 0x1F4 syssize (16-byte paragraphs)
    dw 0                        ; 0x1F8 ram_size
    dw 0                        ; 0x1FA vid_mode
    dw 0                        ; 0x1FC root_dev
    dw BOOT_FLAG                ; 0x1FE boot_flag
; --- setup header, then the setup code (0x200-) ---------------------------------------
    db 0xEB, header_end - 0x202 ; 0x200 jump over the header
    db HDR_MAGIC                ; 0x202 "HdrS"
    dw VERSION                  ; 0x206 version
    dd 0                        ; 0x208 realmode_swtch
    dw 0x1000                   ; 0x20C start_sys_seg
    dw 0                        ; 0x20E kernel_version
    db 0                        ; 0x210 type_of_loader
    db LOADFLAGS                ; 0x211 loadflags
    dw 0x8000                   ; 0x212 setup_move_size
    dd 0x100000                 ; 0x214 code32_start
    dd 0                        ; 0x218 ramdisk_image
    dd 0                        ; 0x21C ramdisk_size
    dd 0                        ; 0x220 bootsect_kludge
    dw 0                        ; 0x224 heap_end_ptr
    db 0                        ; 0x226 ext_loader_ver
    db 0                        ; 0x227 ext_loader_type
    dd 0                        ; 0x228 cmd_line_ptr
    dd INITRD_ADDR_MAX          ; 0x22C initrd_addr_max
    dd KERNEL_ALIGNMENT         ; 0x230 kernel_alignment
    db RELOCATABLE              ; 0x234 relocatable_kernel
    db 0                        ; 0x235 min_alignment
    dw 0                        ; 0x236 xloadflags
    dd CMDLINE_SIZE             ; 0x238 cmdline_size
    dd 0                        ; 0x23C hardware_subarch
    dq 0                        ; 0x240 hardware_subarch_data
    dd 0                        ; 0x248 payload_offset
    dd 0                        ; 0x24C payload_length
    dq 0                        ; 0x250 setup_data
    dq PREF_ADDRESS             ; 0x258 pref_address
    dd INIT_SIZE                ; 0x260 init_size
    dd 0                        ; 0x264 handover_offset
    dd 0                        ; 0x268 kernel_info_offset
header_end:

; Entered at (setup segment + 0x20):0000.  Label values are offsets from the
; start of the real-mode code, i.e. offsets in DS.  Near jumps and calls are
; relative, so they work from CS = DS + 0x20.
start:
    pushf                       ; record IF as we got it
    pop word [entry_flags]
    mov [entry_sp], sp
    mov [entry_cs], cs
    mov [entry_ds], ds
    mov [entry_es], es
    mov [entry_ss], ss
    mov [entry_fs], fs
    mov [entry_gs], gs

    mov si, s_cs
    call puts
    mov ax, [entry_cs]
    call hex16
    mov si, s_ds
    call puts
    mov ax, [entry_ds]
    call hex16
    mov si, s_es
    call puts
    mov ax, [entry_es]
    call hex16
    mov si, s_ss
    call puts
    mov ax, [entry_ss]
    call hex16
    mov si, s_sp
    call puts
    mov ax, [entry_sp]
    call hex16
    mov si, s_fs
    call puts
    mov ax, [entry_fs]
    call hex16
    mov si, s_gs
    call puts
    mov ax, [entry_gs]
    call hex16
    mov si, s_if
    call puts
    mov ax, [entry_flags]
    shr ax, 9
    and al, 1
    add al, '0'
    call putc
    call newline

    mov si, s_loadflags
    call puts
    mov al, [0x211]
    call hex8
    mov si, s_type
    call puts
    mov al, [0x210]
    call hex8
    mov si, s_vid
    call puts
    mov ax, [0x1FA]
    call hex16
    mov si, s_heap
    call puts
    mov ax, [0x224]
    call hex16
    call newline

    mov si, s_rd
    call puts
    mov eax, [0x218]
    call hex32
    mov si, s_rdsize
    call puts
    mov eax, [0x21C]
    call hex32
    call newline

    mov si, s_cmdptr
    call puts
    mov eax, [0x228]
    call hex32
    call newline

    mov si, s_cmdline
    call puts
    mov eax, [0x228]            ; print the string at cmd_line_ptr (below 1 MiB)
    mov bx, ax
    and bx, 0x000F
    shr eax, 4
    push ds
    mov ds, ax
    mov cx, 2048
.cmd:
    mov al, [bx]
    test al, al
    jz .cmd_end
    call putc
    inc bx
    loop .cmd
.cmd_end:
    pop ds
    call newline

%if BIOS
    mov si, s_int12
    call puts
    int 0x12
    movzx eax, ax
    call dec32
    mov al, 'K'
    call putc
    call newline

    xor ebx, ebx                ; the BIOS's memory map, INT 15h AX=E820h
    mov bp, 64                  ; at most 64 entries
.e820:
    mov eax, 0xE820
    mov edx, 0x534D4150
    mov ecx, 20
    mov di, e820_buf            ; ES = DS
    int 0x15
    jc .e820_end
    cmp eax, 0x534D4150
    jne .e820_end
    mov si, s_e820
    call puts
    mov eax, [e820_buf + 4]
    call hex32
    mov eax, [e820_buf]
    call hex32
    mov si, s_e820_len
    call puts
    mov eax, [e820_buf + 12]
    call hex32
    mov eax, [e820_buf + 8]
    call hex32
    mov si, s_e820_type
    call puts
    mov eax, [e820_buf + 16]
    call dec32
    call newline
    test ebx, ebx
    jz .e820_end
    dec bp
    jnz .e820
.e820_end:
%endif

    mov si, s_done
    call puts
    mov dx, 0x3FD               ; wait until COM1 has sent everything (LSR.TEMT), bounded
    mov ecx, 1000000
.drain:
    in al, dx
    test al, 0x40
    jnz halt
    dec ecx
    jnz .drain
halt:
    cli
    hlt
    jmp halt

; --- output: COM1 (LSR.THRE polled, bounded) and port 0xE9 -------------------------
putc:
    push dx
    push cx
    push ax
    mov dx, 0x3FD
    mov cx, 0xFFFF
.wait:
    in al, dx
    test al, 0x20
    jnz .ready
    loop .wait
.ready:
    pop ax
    mov dx, 0x3F8
    out dx, al
    mov dx, 0xE9
    out dx, al
    pop cx
    pop dx
    ret

puts:                           ; ds:si
    push ax
.next:
    lodsb
    test al, al
    jz .end
    call putc
    jmp .next
.end:
    pop ax
    ret

newline:
    push ax
    mov al, 10
    call putc
    pop ax
    ret

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
    call hex4
    pop ax
hex4:
    push ax
    and al, 0x0F
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'A' - '9' - 1
.out:
    call putc
    pop ax
    ret

dec32:
    push eax
    push ebx
    push ecx
    push edx
    mov ebx, 10
    xor cx, cx
.div:
    xor edx, edx
    div ebx
    push dx
    inc cx
    test eax, eax
    jnz .div
.emit:
    pop ax
    add al, '0'
    call putc
    loop .emit
    pop edx
    pop ecx
    pop ebx
    pop eax
    ret

s_cs:       db "LX cs=", 0
s_ds:       db " ds=", 0
s_es:       db " es=", 0
s_ss:       db " ss=", 0
s_sp:       db " sp=", 0
s_fs:       db " fs=", 0
s_gs:       db " gs=", 0
s_if:       db " if=", 0
s_loadflags: db "LX loadflags=", 0
s_type:     db " type_of_loader=", 0
s_vid:      db " vid_mode=", 0
s_heap:     db " heap_end_ptr=", 0
s_rd:       db "LX ramdisk_image=", 0
s_rdsize:   db " ramdisk_size=", 0
s_cmdptr:   db "LX cmd_line_ptr=", 0
s_cmdline:  db "LX cmdline=", 0
s_int12:    db "LX int12=", 0
s_done:     db "LX done", 10, 0
s_e820:     db "LX e820 base=", 0
s_e820_len: db " len=", 0
s_e820_type: db " type=", 0
e820_buf:   times 20 db 0
entry_flags: dw 0
entry_sp:   dw 0
entry_cs:   dw 0
entry_ds:   dw 0
entry_es:   dw 0
entry_ss:   dw 0
entry_fs:   dw 0
entry_gs:   dw 0

%if ($ - $$) > (SETUP_SECTS + 1) * 512
%error "setup code larger than SETUP_SECTS"
%endif
    times (SETUP_SECTS + 1) * 512 - ($ - $$) db 0
"""


def build(version=0x020F, setup_sects=4, kernel_size=0x3000, loadflags=0x01,
          initrd_addr_max=0x7FFFFFFF, cmdline_size=2047, init_size=0x10000, pref_address=0x100000,
          relocatable=0, kernel_alignment=0x200000, syssize=None, bios=False,
          boot_flag=0xAA55, hdr_magic=b"HdrS"):
    """The bzImage bytes: setup sectors from NASM, then the filler kernel."""
    kernel = KERNEL_MARKER + bytes(range(256)) * ((kernel_size // 256) + 1)
    kernel = kernel[:kernel_size]
    defines = {
        "SETUP_SECTS": setup_sects, "VERSION": "0x%x" % version, "LOADFLAGS": "0x%x" % loadflags,
        "INITRD_ADDR_MAX": "0x%x" % initrd_addr_max, "CMDLINE_SIZE": cmdline_size,
        "INIT_SIZE": "0x%x" % init_size, "PREF_ADDRESS": "0x%x" % pref_address,
        "RELOCATABLE": relocatable, "KERNEL_ALIGNMENT": "0x%x" % kernel_alignment,
        "SYSSIZE": "0x%x" % (syssize if syssize is not None else (kernel_size + 15) // 16),
        "BIOS": int(bool(bios)), "BOOT_FLAG": "0x%x" % boot_flag,
        "HDR_MAGIC": ", ".join(str(b) for b in hdr_magic),
    }
    setup = nasm(SOURCE, defines)
    if setup_sects == 0:
        raise ValueError("build with the real sector count; patch byte 0x1F1 to test 0")
    return setup + kernel
