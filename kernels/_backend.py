"""One place that decides which implementation of a kernel runs.

``auto`` picks Triton for CUDA tensors when Triton imports, else the torch reference, quietly.
An explicitly requested backend (``ATTRSTREAM_BACKEND`` or the ``backend=`` argument) that cannot
run raises :class:`BackendError` with the reason (Liger's policy): a benchmark or test that asked
for Triton must never silently measure torch.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from enum import Enum
from typing import Any

import torch

from attrstream.kernels.errors import BackendError, KernelInputError

ENV_VAR = "ATTRSTREAM_BACKEND"


class Backend(str, Enum):
    AUTO = "auto"
    TORCH = "torch"
    TRITON = "triton"
    COMPILE = "compile"


@functools.lru_cache(maxsize=1)
def triton_import_error() -> str | None:
    """``None`` when Triton imports, else why it does not (checked once per process)."""
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception as err:  # ImportError, or a broken install raising anything else
        return f"{type(err).__name__}: {err}"
    return None


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1``, where Triton kernels run on CPU tensors (tests only)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def requested(backend: Backend | str | None = None) -> Backend:
    """The backend asked for: the argument, else ``ATTRSTREAM_BACKEND``, else ``auto``."""
    value = backend if backend is not None else os.environ.get(ENV_VAR, Backend.AUTO.value)
    try:
        return Backend(value.lower() if isinstance(value, str) else value)
    except ValueError:
        allowed = ", ".join(b.value for b in Backend)
        raise KernelInputError(f"Expected a kernel backend in ({allowed}), got {value!r}.") from None


def resolve(*tensors: torch.Tensor, backend: Backend | str | None = None) -> Backend:
    """The concrete backend (torch, triton or compile) that will process ``tensors``."""
    choice = requested(backend)
    on_cuda = all(t.is_cuda for t in tensors)
    if choice is Backend.AUTO:
        return Backend.TRITON if on_cuda and triton_import_error() is None else Backend.TORCH
    if choice is Backend.TRITON:
        reason = triton_import_error()
        if reason is not None:
            raise BackendError(f"Backend 'triton' was requested but Triton does not import ({reason}).")
        if not on_cuda and not interpreting():
            devices = sorted({str(t.device) for t in tensors})
            raise BackendError(
                f"Backend 'triton' was requested for tensors on {', '.join(devices)}; Triton runs on "
                "CUDA tensors, or on CPU tensors only under TRITON_INTERPRET=1 (tests). "
                f"Use {ENV_VAR}=torch or auto on CPU."
            )
    return choice


@functools.cache
def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile`` of a reference function, built once per function."""
    return torch.compile(fn, dynamic=False)


def dispatch(
    torch_fn: Callable[..., Any],
    triton_fn: Callable[..., Any],
    tensors: tuple[torch.Tensor, ...],
    backend: Backend | str | None,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Run ``torch_fn``/``triton_fn``/compiled ``torch_fn`` on ``args`` per :func:`resolve`."""
    chosen = resolve(*tensors, backend=backend)
    if chosen is Backend.TRITON:
        return triton_fn(*args, **kwargs)
    if chosen is Backend.COMPILE:
        return compiled(torch_fn)(*args, **kwargs)
    return torch_fn(*args, **kwargs)
