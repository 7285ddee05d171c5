"""Random jitter, scale and rotation per step and per image: the robustness of Lucid's standard transforms.

An input that excites a channel only at one exact pixel alignment is an adversarial pattern, not a
feature; optimizing through a fresh random transformation at every step keeps what survives them.
Lucid's standard set at 128 pixels: pad 12 (grey), jitter 8, scale 0.9..1.1, rotate -10..10°,
jitter 4, here scaled with the image size and folded into one affine resampling per image.

Each image draws its transformation from its own generator, so that what happens to a channel
never depends on which channels share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

REFERENCE_SIZE = 128  # the image side at which the pixel amounts below are Lucid's
PAD = 12  # grey border around the image: room to move
JITTER = 8  # first random shift, pixels in each direction
JITTER_AFTER = 4  # second random shift, after scaling and rotation
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.9 .. 1.1
ANGLES = (*range(-10, 11), 0, 0, 0, 0, 0)  # degrees, unrotated six times as likely
DRAWS = 6  # uniform numbers drawn per image and step: two shifts of two axes, a scale, an angle


def pixels_at(amount: int, size: int) -> int:
    """A pixel amount of Lucid's at 128 pixels, at ``size`` (at least one pixel)."""
    return max(1, round(amount * size / REFERENCE_SIZE))


def canvas(size: int) -> int:
    """Side of the model's input during optimization: the image and its grey border."""
    return size + 2 * pixels_at(PAD, size)


def _shift(u: torch.Tensor, amount: int, side: int) -> torch.Tensor:
    """Integer pixel shifts in ``[-amount, amount]`` from uniforms, as fractions of the canvas in [-1, 1] units."""
    return (torch.floor(u * (2 * amount + 1)) - amount) * 2.0 / side


def _pick(u: torch.Tensor, choices: Sequence[float]) -> torch.Tensor:
    return torch.tensor(choices, dtype=u.dtype)[torch.clamp((u * len(choices)).long(), max=len(choices) - 1)]


def random_affines(generators: Sequence[torch.Generator], size: int) -> torch.Tensor:
    """``[B, 2, 3]`` sampling matrices (output → input coordinates, ``affine_grid``'s convention), one per generator.

    The forward map is ``shift_after ∘ rotate ∘ scale ∘ shift`` about the canvas centre; its inverse
    is what ``grid_sample`` needs.
    """
    side = canvas(size)
    u = torch.stack([torch.rand(DRAWS, generator=g, dtype=torch.float64) for g in generators])  # [B, DRAWS]
    t1 = torch.stack([_shift(u[:, 0], pixels_at(JITTER, size), side), _shift(u[:, 1], pixels_at(JITTER, size), side)], 1)
    scale = _pick(u[:, 2], SCALES)
    angle = _pick(u[:, 3], ANGLES) * math.pi / 180
    t2 = torch.stack([_shift(u[:, 4], pixels_at(JITTER_AFTER, size), side),
                      _shift(u[:, 5], pixels_at(JITTER_AFTER, size), side)], 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    inverse = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # R(-a) / s, [B, 2, 2]
    offset = -(inverse @ t2[:, :, None])[:, :, 0] - t1
    return torch.cat([inverse, offset[:, :, None]], 2).float()


def transform(pixels: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """``pixels [B, 3, S, S]`` in (0, 1), padded grey and resampled through ``affines``: ``[B, 3, canvas, canvas]``.

    Resampling ``pixels - 0.5`` with zero padding and adding 0.5 back is grey padding in one step.
    """
    size = pixels.shape[-1]
    pad = pixels_at(PAD, size)
    centred = F.pad(pixels - 0.5, (pad, pad, pad, pad))
    grid = F.affine_grid(affines.to(pixels.device), list(centred.shape), align_corners=False)
    return F.grid_sample(centred, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
