"""Errors shared by every layer (no imports: devices and the CPU both use them)."""


class VMStop(Exception):
    """The VMM stops the machine; ``reason`` is one line for the user."""

    def __init__(self, reason, kind="error"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind   # "triple-fault", "unsupported", "error", "shutdown", "poweroff"
