"""Lucid's redirected ReLU gradient, for the first steps of an optimization.

A channel that is zero everywhere on the nearly grey starting image has a zero gradient through its
ReLU, and would stay zero forever. For the first :data:`REDIRECT_STEPS` steps, Lucid lets the
gradient through a ReLU whose output is zero when nothing else passes for that image: where the
input is negative, only the part of the gradient that would raise it. Decided per image (the norm
of its own ReLU gradient), so batch companions never change it.

Applied to every ``nn.ReLU`` module (ReLUs called as functions are left as they are): a hook
replaces the module's output by the same values with the redirected gradient; in-place ReLUs run
out of place meanwhile, so that their input survives. Everything is restored on leaving.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

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


def _hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> torch.Tensor:
    return _RedirectedReLU.apply(inputs[0])


@contextmanager
def redirected_relus(model: nn.Module) -> Iterator[None]:
    """Within the block, every ``nn.ReLU`` of ``model`` passes Lucid's redirected gradient."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    inplace = [m.inplace for m in relus]
    handles = []
    try:
        for module in relus:
            module.inplace = False
            handles.append(module.register_forward_hook(_hook, prepend=True))  # before a hook that reads the output
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in zip(relus, inplace, strict=True):
            module.inplace = flag
