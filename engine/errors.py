"""The one error type a user is meant to read."""

import errno

#: errno values that mean "the disk (or the user's quota) is full".
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e is not None)


class SproutError(ValueError):
    """A problem with the user's input or request, stated in plain words.

    The CLI prints its message on one line and exits with status 2; the app shows it
    as an error box. Anything else that escapes is a bug.
    """


class DiskFullError(SproutError, OSError):
    """Writing failed because the disk is full: a SproutError with a plain message, and an
    OSError (``errno`` ENOSPC) for code that handles I/O failures generally."""

    def __init__(self, message: str, errno_: int = errno.ENOSPC):
        super().__init__(message)
        self.errno = errno_
        self.strerror = "No space left on device"

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "the disk is full"


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` is an OSError saying the disk (or quota) is full."""
    return isinstance(exc, OSError) and getattr(exc, "errno", None) in DISK_FULL_ERRNOS
