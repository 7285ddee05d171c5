"""Activation maximization of many channels at once: one batch element per channel, each its own objective.

Per step, one forward that stops at the layer (a hook raises once the layer's output exists, so no
work is spent past it) and one backward of the sum of every element's objective (the mean
activation of its own channel). Each element's gradient then comes from its own objective alone;
Adam's update is elementwise; the parametrization, the transformations and the model in eval mode
act on each element on its own: a channel's result does not depend on which channels share its
batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from attrstream.engine.capture import first_tensor
from attrstream.engine.errors import ModelError
from attrstream.engine.features.image import FourierImage, random_spectrum
from attrstream.engine.features.redirect import REDIRECT_STEPS, redirected_relus
from attrstream.engine.features.transforms import random_affines, transform
from attrstream.engine.layouts import as_nchw
from attrstream.engine.store.features import CURVE_EVERY, curve_points

LEARNING_RATE = 0.05  # Adam, as Lucid and Lucent


class _LayerReached(Exception):
    """Raised by the hook once the layer's output exists: the rest of the forward is not needed."""


def channel_seed(seed: int, channel: int) -> int:
    """A 63-bit seed of channel ``channel``'s own generator: its result depends on (seed, channel) alone."""
    digest = hashlib.blake2b(f"features:{seed}:{channel}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def channel_means(output: torch.Tensor, layout: str) -> torch.Tensor:
    """``[B, C]`` mean activation of every channel of a layer's output in ``layout`` (tokens: over tokens)."""
    return output.float().mean(1) if layout == "tokens" else as_nchw(output, layout).float().mean((2, 3))


@contextmanager
def forward_to(model: nn.Module, layer: str, module: nn.Module, layout: str) -> Iterator:
    """Within the block, a function ``x -> [B, C]`` channel means of ``layer``, running the model only up to it."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        tensor = first_tensor(output)
        if tensor is None:
            raise ModelError(f"Layer {layer!r} returned no tensor ({type(output).__name__}).")
        captured.append(tensor)
        raise _LayerReached

    def forward(x: torch.Tensor) -> torch.Tensor:
        captured.clear()
        try:
            model(x)
        except _LayerReached:
            return channel_means(captured[0], layout)
        raise ModelError(f"Layer {layer!r} did not run in the forward pass; pick a layer on the path to the output.")

    handle = module.register_forward_hook(hook)
    try:
        yield forward
    finally:
        handle.remove()


@dataclass(frozen=True)
class Recipe:
    """The settings that decide an optimized image (with the model, the layer and the channel)."""

    steps: int
    size: int
    seed: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class Optimized:
    """The result of one batch, every tensor on the CPU, one row per channel."""

    input: torch.Tensor  # [B, 3, S, S] the optimized model input (normalized), float32
    pixels: torch.Tensor  # [B, 3, S, S] its RGB pixels in (0, 1)
    activation: torch.Tensor  # [B] the channel's mean activation for `input`, float32
    curve: torch.Tensor  # [B, ceil(steps / CURVE_EVERY)] the objective during optimization, block means


def maximize(model: nn.Module, forward, channels: Sequence[int], recipe: Recipe, device: torch.device) -> Optimized:
    """Optimize one input per channel of ``channels`` so that its channel's mean activation is maximal.

    ``forward`` maps a batch of model inputs to ``[B, C]`` channel means of ``model``'s layer
    (:func:`forward_to`); the first steps redirect ReLU gradients (:mod:`.redirect`).
    """
    generators = [torch.Generator().manual_seed(channel_seed(recipe.seed, c)) for c in channels]
    spectrum = torch.stack([random_spectrum(g, recipe.size) for g in generators]).to(device).requires_grad_(True)
    image = FourierImage(recipe.size, device)
    mean = torch.tensor(recipe.mean, device=device)[None, :, None, None]
    std = torch.tensor(recipe.std, device=device)[None, :, None, None]
    rows = torch.arange(len(channels), device=device)
    index = torch.tensor(list(channels), device=device)
    optimizer = torch.optim.Adam([spectrum], lr=LEARNING_RATE)
    curve = torch.zeros(len(channels), curve_points(recipe.steps), device=device)
    for step in range(recipe.steps):
        x = (transform(image.pixels(spectrum), random_affines(generators, recipe.size)) - mean) / std
        with redirected_relus() if step < REDIRECT_STEPS else nullcontext():
            objective = forward(x)[rows, index]
            optimizer.zero_grad(set_to_none=True)
            (-objective.sum()).backward()
        optimizer.step()
        curve[:, step // CURVE_EVERY] += objective.detach()
    counts = torch.full((curve.shape[1],), float(CURVE_EVERY), device=device)
    counts[-1] = recipe.steps - CURVE_EVERY * (curve.shape[1] - 1)
    with torch.no_grad():
        pixels = image.pixels(spectrum)
        x = (pixels - mean) / std
        activation = forward(x)[rows, index]
    return Optimized(x.cpu(), pixels.cpu(), activation.float().cpu(), (curve / counts).cpu())
