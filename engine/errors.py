"""Project exceptions.

Every error a user can cause is raised as an :class:`AttrstreamError` subclass with a message that
says what was expected and what was given. The CLI prints such errors as one line and exits
non-zero; any other exception reaching the CLI is a bug. The kernel library's errors
(:mod:`attrstream.kernels.errors`) are re-exported here and printed the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from attrstream.kernels.errors import BackendError, KernelError, KernelInputError

__all__ = [
    "USER_ERRORS",
    "AttrstreamError",
    "BackendError",
    "ConfigError",
    "DataError",
    "DependencyError",
    "FingerprintMismatchError",
    "KernelError",
    "KernelInputError",
    "ModelError",
    "StoreError",
    "StoreLockedError",
    "WriterError",
    "close_matches",
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


class DataError(AttrstreamError):
    """The data set cannot be read (missing path, corrupt image, ...)."""


class ModelError(AttrstreamError):
    """The model cannot be built, loaded or hooked."""


class DependencyError(AttrstreamError):
    """An optional package that a reader or exporter needs is not installed; the message says how to install it."""


# What the CLI reports as one line: every error attrstream or its kernels raise on purpose.
USER_ERRORS = (AttrstreamError, KernelError)


def close_matches(given: str, choices: Iterable[str], n: int = 5) -> str:
    """Return ``" Close matches: a, b."`` for an unknown name, or ``""`` when nothing is close."""
    matches = difflib.get_close_matches(given, list(choices), n=n, cutoff=0.5)
    return f" Close matches: {', '.join(matches)}." if matches else ""
