"""The sweep's errors: a run refused before computing anything, a config mismatch, a held lock."""

class SweepInputError(ValueError):
    """A sweep refused before computing anything (bad ``out_dir``, memory, unreadable ``meta.json``)."""


class ConfigMismatchError(SweepInputError):
    """``out_dir`` holds results of a different config."""


class StoreLockedError(RuntimeError):
    """Another run holds ``out_dir``'s lock."""
