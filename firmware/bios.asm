; emu BIOS: the firmware emu boots by default.
;
; A 64 KiB real-mode ROM (NASM, `nasm -f bin`), mapped by emu/machine.py at
; F000:0000 (0xF0000) and at 0xFFFF0000; the CPU starts at F000:FFF0.  It does
; what a PC BIOS must for boot loaders, DOS-era programs and the Linux/
; Multiboot entry paths: POST, the interrupt vector table, the BIOS data area
; (BDA, 0x400) and the extended BIOS data area (EBDA, 0x9FC00), and the
; services INT 10h (text video), 13h (disks), 15h (system), 16h (keyboard),
; 1Ah (time, PCI BIOS), 11h, 12h, 18h, 19h.
;
; It needs no disk controller: the machine's firmware interface
; (emu/devices/fwcfg.py, ports 0x510-0x518) tells it the RAM size, the drives
; and the boot mode, and moves disk sectors by DMA.  The rest is plain PC
; hardware: 8259A PICs, 8254 PIT, MC146818 RTC, 16550 UART, i8042, VGA.
;
; Layout of the image (offsets = F000:offset):
;   0x0000-0xDFFF  code and tables (see the includes below)
;   0xE05B         POST entry (the IBM PC/AT address, kept for compatibility)
;   0xE6F5         system configuration table (INT 15h AH=C0h)
;   0xEFC7         diskette parameter table (INT 1Eh points here)
;   0xFF53         a bare IRET (the IBM address of the dummy handler)
;   0xFFF0         reset vector: jmp F000:E05B
;   0xFFF5         BIOS date, 0xFFFE model byte (0xFC: AT)
;
; Conventions: every service handler preserves all registers it does not
; return; the bigger ones save everything in a register frame (REGFRAME
; below) and write results into it.  Errors come back with CF set and a
; status in AH, as the IBM interfaces define.

bits 16
cpu 686
org 0

%include "defs.inc"

rom_start:

%include "util.inc"
%include "serial.inc"
%include "video.inc"
%include "disk.inc"
%include "system.inc"
%include "keyboard.inc"
%include "clock.inc"
%include "pci.inc"
%include "boot.inc"
%include "post.inc"

code_end:

; --- fixed addresses of the IBM PC/AT BIOS ----------------------------------

%macro AT_OFFSET 1
  %if ($ - $$) > %1
    %error code grew past a fixed BIOS address
  %endif
    times (%1 - ($ - $$)) db 0
%endmacro

AT_OFFSET 0xE05B
post_entry_fixed:
    jmp post_entry

AT_OFFSET 0xE6F5
; INT 15h AH=C0h: system configuration table.  Model 0xFC (AT-class),
; feature byte 1: 0x74 = EBDA allocated (bit 2), INT 15h AH=4Fh called by
; the keyboard handler (bit 4), RTC present (bit 5), second 8259 (bit 6).
sys_config_table:
    dw 8                    ; bytes that follow
    db 0xFC                 ; model
    db 0x01                 ; submodel
    db 0x00                 ; BIOS revision
    db 0x74                 ; feature byte 1
    db 0x40                 ; feature byte 2: INT 16h AH=09h supported
    db 0, 0, 0              ; feature bytes 3-5

AT_OFFSET 0xEFC7
; Diskette parameter table (INT 1Eh, INT 13h AH=08h ES:DI): the values every
; 1.44 MB BIOS uses; the sectors-per-track byte is the drive's maximum.
diskette_param_table:
    db 0xAF                 ; step rate / head unload
    db 0x02                 ; head load time, DMA mode
    db 0x25                 ; motor off delay (ticks)
    db 0x02                 ; 512 bytes per sector
    db 18                   ; sectors per track
    db 0x1B                 ; gap length
    db 0xFF                 ; data length
    db 0x6C                 ; format gap length
    db 0xF6                 ; format fill byte
    db 0x0F                 ; head settle time (ms)
    db 0x08                 ; motor start time (1/8 s)

AT_OFFSET 0xFF53
dummy_iret:
    iret

AT_OFFSET 0xFFF0
reset_vector:
    jmp 0xF000:post_entry_fixed
    db "06/01/25"           ; BIOS date at F000:FFF5
    db 0                    ; F000:FFFD
    db 0xFC                 ; model byte at F000:FFFE: PC/AT
    db 0x00                 ; checksum byte position (unused)
