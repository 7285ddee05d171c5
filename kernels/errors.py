"""Errors of the kernel library.

``attrstream.kernels`` stands alone (it never imports the engine), so it owns its exceptions; the
engine re-exports them and its command line prints them as one line like its own.
"""

from __future__ import annotations


class KernelError(Exception):
    """Base class of every error the kernels raise on purpose."""


class KernelInputError(KernelError, ValueError):
    """An op was called with inputs it does not accept (shape, dtype, layout, reduction)."""


class BackendError(KernelError, RuntimeError):
    """An explicitly requested kernel backend cannot run here."""
