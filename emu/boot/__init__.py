"""Direct kernel boot (`--kernel`): the Linux boot protocol and Multiboot v1.

``prepare(machine)`` runs when the machine is built: it identifies the image
(bzImage, vmlinux ELF, Multiboot ELF), places kernel, initrd and command line
in guest RAM as the protocol says, and returns a plan.  ``handoff(machine,
plan)`` runs when our BIOS, after POST, writes the firmware interface's
kernel-handoff port: it sets the CPU state the protocol defines.
"""
from .loader import prepare, handoff  # noqa: F401
