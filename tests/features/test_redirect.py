"""Lucid's redirected ReLU gradient reaches every way a model calls ReLU, and only within its block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attrstream.engine.features.redirect import redirected_relus

CALLS = {
    "module": lambda x: nn.ReLU()(x),
    "inplace module": lambda x: nn.ReLU(inplace=True)(x),
    "F.relu": lambda x: F.relu(x),
    "F.relu inplace": lambda x: F.relu(x, inplace=True),
    "torch.relu": torch.relu,
    "Tensor.relu": lambda x: x.relu(),
}


def _descent_gradient(relu, x: torch.Tensor, redirect: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, input gradient) of maximizing the ReLU's output sum, as the optimization does."""
    x = x.clone().requires_grad_(True)
    with redirected_relus() if redirect else torch.enable_grad():
        out = relu(x * 1.0)  # a non-leaf input, as inside a model (in-place ReLUs need one)
        (-out.sum()).backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("call", CALLS)
def test_a_dead_relu_passes_the_gradient_that_raises_its_input_only_when_redirected(call):
    dead = torch.tensor([[-2.0, -1.0, -0.5], [-3.0, -0.1, -1.0]])
    plain_out, plain_grad = _descent_gradient(CALLS[call], dead, redirect=False)
    out, grad = _descent_gradient(CALLS[call], dead, redirect=True)
    assert torch.equal(out, plain_out) and torch.equal(out, torch.zeros_like(dead))  # same values
    assert torch.equal(plain_grad, torch.zeros_like(dead))  # without: stuck at zero forever
    assert torch.equal(grad, -torch.ones_like(dead))  # with: descent moves every input up


@pytest.mark.parametrize("call", CALLS)
def test_a_live_relu_keeps_its_true_gradient(call):
    live = torch.tensor([[-2.0, 1.0, 0.5], [-3.0, 0.1, -1.0]])
    assert torch.equal(_descent_gradient(CALLS[call], live, True)[1], _descent_gradient(CALLS[call], live, False)[1])


def test_the_mode_ends_with_its_block():
    dead = torch.full((1, 4), -1.0)
    with redirected_relus():
        pass
    assert torch.equal(_descent_gradient(F.relu, dead, redirect=False)[1], torch.zeros_like(dead))
