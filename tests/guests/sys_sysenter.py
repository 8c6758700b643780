"""SYSENTER/SYSEXIT round trip in PROT32_PAGED (whose GDT has the layout the
instructions assume: 0x08 ring-0 code, 0x10 ring-0 data, 0x18 ring-3 code,
0x20 ring-3 data, so IA32_SYSENTER_CS = 0x08).

    code_lin + 0x00   ring 0: WRMSR SYSENTER_CS/ESP/EIP, ECX = ring-3 ESP,
                      EDX = ring-3 entry, SYSEXIT
    code_lin + 0x60   ring 3: mov ebx, MARK3; mov ebp, esp; [extra]; SYSENTER
    code_lin + 0xA0   ring 0: mov edi, esp; mov esi, MARK0   (end of code)

``build(L, ...)`` returns the code bytes (assembled with keystone, pieces at
fixed offsets since tests/oracle.assemble has no labels) and the values the
SDM predicts.  ``build(L, upto_ring3=True)`` stops after the ring-3 part's
first instructions (before SYSENTER) - the part Unicorn models (it runs
SYSENTER only as a hook).
"""
from tests.oracle import assemble

RING3_OFF, RING0_OFF = 0x60, 0xA0
MARK3, MARK0 = 0x33333333, 0x00C0FFEE


def addresses(L):
    return dict(esp3=L.stack_lin[1] - 0x400, esp0=L.kstack_top - 0x40,
                entry3=L.code_lin + RING3_OFF, entry0=L.code_lin + RING0_OFF)


def build(L, sysenter_cs=0x08, upto_ring3=False, ring3_extra=""):
    a = addresses(L)
    part0 = assemble("""
        mov ecx, 0x174
        mov eax, {cs:#x}
        xor edx, edx
        wrmsr
        mov ecx, 0x175
        mov eax, {esp0:#x}
        wrmsr
        mov ecx, 0x176
        mov eax, {entry0:#x}
        wrmsr
        mov ecx, {esp3:#x}
        mov edx, {entry3:#x}
        sysexit
    """.format(cs=sysenter_cs, **a), 32, L.code_lin)
    assert len(part0) <= RING3_OFF
    body3 = "mov ebx, {m:#x}; mov ebp, esp; {x}".format(m=MARK3, x=ring3_extra)
    if not upto_ring3:
        body3 += "; sysenter"
    part3 = assemble(body3, 32, a["entry3"])
    assert len(part3) <= RING0_OFF - RING3_OFF
    code = part0.ljust(RING3_OFF, b"\x90") + part3
    if not upto_ring3:
        code = code.ljust(RING0_OFF, b"\x90") + assemble(
            "mov edi, esp; mov esi, {m:#x}".format(m=MARK0), 32, a["entry0"])
    expect = dict(ebx=MARK3, ebp=a["esp3"])
    if not upto_ring3:
        expect.update(edi=a["esp0"], esi=MARK0, esp=a["esp0"])
    return code, expect
