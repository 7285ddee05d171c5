"""Random jitter, scale and rotation per step and per image: the robustness of Lucid's standard transforms.

An input that excites a channel only at one exact pixel alignment is an adversarial pattern, not a
feature; optimizing through a fresh random transformation at every step keeps what survives them.
Lucid's standard set at 128 pixels: pad 12 (grey), jitter 8, scale 0.9..1.1, rotate -10..10°,
jitter 4, here scaled with the image size and folded into one affine resampling per image.

One departure: the model's input keeps the image's own size. Lucid pads the image with a grey border
and feeds the padded canvas (about 12 pixels larger at 128 after its crops), so the image it stores
is never the input it optimized. Here the resampling fills with grey what the transformation moves
into the frame (no border to pad), and the identity transformation gives the image itself: the
stored input is the optimized input. On layers whose stride is a large part of the image this
decides whether the result works at all: optimized on the 76-pixel canvas, evaluated on the 64-pixel
image, a random ResNet-18's layer3 (4×4 positions at 64 pixels) was dominant for 25% of 32 channels
(100% on the canvas it was optimized on), layer4 for 16% (100%); optimized at the image's size, 100%
and 100% (benchmarks/check_features.py, 128 steps). The demo network's block2 and block3 (stride 2
and 4) hardly change (75 → 81%, 53 → 50%: most of their failures are twins, see check.twins).

Each image draws its transformation from its own generator, so that what happens to a channel
never depends on which channels share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

REFERENCE_SIZE = 128  # the image side at which the pixel amounts below are Lucid's
JITTER = 8  # first random shift, pixels in each direction
JITTER_AFTER = 4  # second random shift, after scaling and rotation
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.9 .. 1.1
ANGLES = (*range(-10, 11), 0, 0, 0, 0, 0)  # degrees, unrotated six times as likely
DRAWS = 6  # uniform numbers drawn per image and step: two shifts of two axes, a scale, an angle


def pixels_at(amount: int, size: int) -> int:
    """A pixel amount of Lucid's at 128 pixels, at ``size`` (at least one pixel)."""
    return max(1, round(amount * size / REFERENCE_SIZE))


def _shift(u: torch.Tensor, amount: int, side: int) -> torch.Tensor:
    """Integer pixel shifts in ``[-amount, amount]`` from uniforms, in ``affine_grid``'s [-1, 1] units of the image."""
    return (torch.floor(u * (2 * amount + 1)) - amount) * 2.0 / side


def _pick(u: torch.Tensor, choices: Sequence[float]) -> torch.Tensor:
    return torch.tensor(choices, dtype=u.dtype)[torch.clamp((u * len(choices)).long(), max=len(choices) - 1)]


def random_affines(generators: Sequence[torch.Generator], size: int) -> torch.Tensor:
    """``[B, 2, 3]`` sampling matrices (output → input coordinates, ``affine_grid``'s convention), one per generator.

    The forward map is ``shift_after ∘ rotate ∘ scale ∘ shift`` about the image centre; its inverse
    is what ``grid_sample`` needs.
    """
    u = torch.stack([torch.rand(DRAWS, generator=g, dtype=torch.float64) for g in generators])  # [B, DRAWS]
    t1 = torch.stack([_shift(u[:, 0], pixels_at(JITTER, size), size), _shift(u[:, 1], pixels_at(JITTER, size), size)], 1)
    scale = _pick(u[:, 2], SCALES)
    angle = _pick(u[:, 3], ANGLES) * math.pi / 180
    t2 = torch.stack([_shift(u[:, 4], pixels_at(JITTER_AFTER, size), size),
                      _shift(u[:, 5], pixels_at(JITTER_AFTER, size), size)], 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    inverse = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # R(-a) / s, [B, 2, 2]
    offset = -(inverse @ t2[:, :, None])[:, :, 0] - t1
    return torch.cat([inverse, offset[:, :, None]], 2).float()


def transform(pixels: torch.Tensor, affines: torch.Tensor) -> torch.Tensor:
    """``pixels [B, 3, S, S]`` in (0, 1) resampled through ``affines``, grey where they fall outside: ``[B, 3, S, S]``.

    Resampling ``pixels - 0.5`` with zero padding and adding 0.5 back is the grey fill in one step.
    """
    grid = F.affine_grid(affines.to(pixels.device), list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
