"""Lucid's redirected ReLU gradient, for the first steps of an optimization.

A channel that is zero everywhere on the nearly grey starting image has a zero gradient through its
ReLU, and would stay zero forever. For the first :data:`REDIRECT_STEPS` steps, Lucid lets the
gradient through a ReLU whose output is zero when nothing else passes for that image: where the
input is negative, only the part of the gradient that would raise it. Decided per image (the norm
of its own ReLU gradient), so batch companions never change it.

Applied to every ReLU the model calls, as a module (``nn.ReLU``) or as a function (``F.relu``,
``torch.relu``, ``Tensor.relu``: Inception, GoogLeNet and DenseNet call it so), through a torch
function mode that exists only within :func:`redirected_relus`; in-place ReLUs run out of place
meanwhile, so that their input survives for the backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

REDIRECT_STEPS = 16  # Lucid's: only the first steps, while channels wake up


class _RedirectedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        negative = x < 0
        relu_grad = torch.where(negative, torch.zeros_like(grad), grad)
        # Gradient descent moves x by -grad: where x < 0 and grad > 0 it would push x lower still.
        redirected = torch.where(negative & (grad > 0), torch.zeros_like(grad), grad)
        passes = relu_grad.flatten(1).norm(dim=1) > 0  # per image: did the true gradient get through?
        return torch.where(passes.view(-1, *([1] * (x.dim() - 1))), relu_grad, redirected)


_RELUS = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_})


class _RedirectMode(TorchFunctionMode):
    """Every ReLU call becomes :class:`_RedirectedReLU` (out of place); any other call runs as it is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _RELUS:
            return _RedirectedReLU.apply(args[0])
        return func(*args, **(kwargs or {}))


@contextmanager
def redirected_relus() -> Iterator[None]:
    """Within the block, every ReLU the running code calls passes Lucid's redirected gradient."""
    with _RedirectMode():
        yield
