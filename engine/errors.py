"""Project exceptions.

Every error a user can cause is raised as an :class:`AttrstreamError` subclass with a message that
says what was expected and what was given. The CLI prints such errors as one line and exits
non-zero; any other exception reaching the CLI is a bug. The kernel library's errors
(:mod:`attrstream.kernels.errors`) are re-exported here and printed the same way.
"""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from attrstream.kernels.errors import BackendError, KernelError, KernelInputError

__all__ = [
    "USER_ERRORS",
    "AttrstreamError",
    "BackendError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "DiskFullError",
    "FingerprintMismatchError",
    "KernelError",
    "KernelInputError",
    "ModelError",
    "OutOfMemoryError",
    "StoreError",
    "StoreLockedError",
    "WriterError",
    "close_matches",
    "disk_full_as_error",
    "is_disk_full",
    "no_space_message",
]


class AttrstreamError(Exception):
    """Base class of every error attrstream raises on purpose."""


class ConfigError(AttrstreamError, ValueError):
    """A configuration value (CLI flag or API argument) is invalid."""


class StoreError(AttrstreamError):
    """A store cannot be created, opened, written or resumed."""


class StoreLockedError(StoreError):
    """Another live process holds the store's writer lock."""


class FingerprintMismatchError(StoreError):
    """An existing store was written with a different configuration."""


class WriterError(StoreError):
    """The background writer failed; the message names the unit."""


class DiskFullError(StoreError):
    """The store's filesystem ran out of space (or quota); units marked done are intact."""


class DataError(AttrstreamError):
    """The data set cannot be read (missing path, corrupt image, ...)."""


class ModelError(AttrstreamError):
    """The model cannot be built, loaded or hooked."""


class DependencyError(AttrstreamError):
    """An optional package that a reader or exporter needs is not installed; the message says how to install it."""


class OutOfMemoryError(AttrstreamError):
    """A batch did not fit in memory; the message names the batch size to lower."""


# What the CLI reports as one line: every error attrstream or its kernels raise on purpose.
USER_ERRORS = (AttrstreamError, KernelError)


def close_matches(given: str, choices: Iterable[str], n: int = 5) -> str:
    """Return ``" Close matches: a, b."`` for an unknown name, or ``""`` when nothing is close."""
    matches = difflib.get_close_matches(given, list(choices), n=n, cutoff=0.5)
    return f" Close matches: {', '.join(matches)}." if matches else ""


_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err``, or an exception it was raised from, is an out-of-space OSError."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _DISK_FULL_ERRNOS:
            return True
        err = err.__cause__ or err.__context__
    return False


def no_space_message(where: object, doing: str = "") -> str:
    """The one line a full disk gets, whatever was being written (``doing``: e.g. "writing unit 3")."""
    return f"No space left on {where}{f' ({doing})' if doing else ''}: free space and rerun the same command to resume."


@contextmanager
def disk_full_as_error(where: object, doing: str = "") -> Iterator[None]:
    """Turn running out of space (ENOSPC, EDQUOT) inside the block into a :class:`DiskFullError`."""
    try:
        yield
    except Exception as err:  # also a library's own error raised from the OSError
        if is_disk_full(err):
            raise DiskFullError(no_space_message(where, doing)) from None
        raise
