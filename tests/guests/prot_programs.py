"""Guest programs (32-bit protected mode, PROT32_PAGED) used by the tests.

Assembler text for keystone, assembled at test time; far transfers keystone
0.9.2 mis-assembles are written as bytes (see DESIGN.md, "Peers").
Comments give what each program leaves in the registers.
"""
import struct


def db(data):
    return "db " + ", ".join("0x%02x" % b for b in data)


def far_call_bytes(sel, off=0):
    return db(b"\x9a" + struct.pack("<IH", off, sel))


def far_call_and_back(sel, off):
    """Ring-3 caller: CALL far sel:off; the callee returns with RETF."""
    return far_call_bytes(sel, off)


# Callee of far_call_and_back: EBX = its CS, EAX = pushed CS, ECX = pushed EIP.
FAR_CALLEE = """
    mov ebx, cs
    mov eax, [esp+4]
    mov ecx, [esp]
    db 0xcb
"""

# Ring 3: three parameters on the stack, CALL through the call gate 0x4B.
CALL_GATE_USER = """
    sub esp, 12
    mov dword ptr [esp], 0x11111111
    mov dword ptr [esp+4], 0x22222222
    mov dword ptr [esp+8], 0x33333333
""" + far_call_bytes(0x4B)

# Ring 0, reached through the gate: EAX EBX ECX = the copied parameters,
# EDX = caller's ESP, ESI = caller's SS, EDI = caller's CS, EBP = CPL; RETF 12.
CALL_GATE_KERNEL = """
    mov eax, [esp+8]
    mov ebx, [esp+12]
    mov ecx, [esp+16]
    mov edx, [esp+20]
    mov esi, [esp+24]
    mov edi, [esp+4]
    mov ebp, cs
    and ebp, 3
    db 0xca, 0x0c, 0x00
"""

# Ring 0, task 1: CALL the task gate 0x50; after the return EAX/EBX are set.
TASK_CALLER = """
    mov eax, 0x1234
""" + far_call_bytes(0x50) + """
    mov eax, 0xC0FFEE
    mov ebx, 0x5A5A
"""

# Task 2: ECX = 0x77 (saved in TSS 2 by the IRET), back to task 1 with IRET (NT=1).
TASK_CALLEE = """
    mov ecx, 0x77
    iretd
"""

# Ring 3: EAX = 5, INT 0x80 (handler INT80_KERNEL adds 10), EBX = EAX afterwards.
INT80_USER = """
    mov eax, 5
    int 0x80
    mov ebx, eax
"""

# Ring 0 handler: EAX += 10; ECX EDX ESI EDI EBP = the frame (EIP CS EFLAGS ESP SS).
INT80_KERNEL = """
    add eax, 10
    mov ecx, [esp]
    mov edx, [esp+4]
    mov esi, [esp+8]
    mov edi, [esp+12]
    mov ebp, [esp+16]
    iretd
"""
