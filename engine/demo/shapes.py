"""The ``shapes`` data set: procedurally generated images with a ground-truth object mask.

The demo must run offline, so the project brings its own data: one coloured shape per image over a
background that is textured on purpose (a colour gradient, a sinusoidal grating and pixel noise), so
that a model has to find the object rather than read the background, and the attribution maps can
be scored against the mask.

Item ``i`` depends only on ``(seed, split, i)``: a per-item ``torch.Generator`` draws every random
number of the item, so any item is reproducible on its own and nothing has to be stored. Images and
masks are rasterized together, vectorized over a batch of items.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from attrstream.engine.errors import ConfigError

CLASSES = ("circle", "square", "triangle", "cross", "star")
SPLITS = ("train", "test")

# Normalization of RGB values in [0, 1] for the model: x = (rgb - MEAN) / STD, the same constant
# for every channel, so that mid-grey is 0 and the data span about [-2, 2].
MEAN = 0.5
STD = 0.25

_RADIUS = (0.14, 0.26)  # object circumradius, as a fraction of the image size
_MAX_TILT = 20.0  # degrees either way: shapes stay near upright, so a small CNN learns them fast
_MARGIN = 1.5  # pixels between the object's circumcircle and the image border
_BACKGROUND = (0.3, 0.7)  # range of each channel of the background gradient's two colours
_MIN_CONTRAST = 0.4  # least RGB distance between the object colour and any background colour
_MIN_VIVID = 0.45  # least RGB distance between the object colour and mid-grey
_COLOUR_TRIES = 16
_GRATING_AMPLITUDE = (0.04, 0.12)
_GRATING_PERIOD = (0.08, 0.3)  # as a fraction of the image size
_NOISE_SIGMA = (0.02, 0.08)
# Layout of the scalars one item draws from its generator (one call, then sliced).
_N_SCALARS = 11
# Items rasterized together: large enough to amortize per-op overhead, small enough to stay in cache
# (4000 items render ~4x faster in chunks of 128 than in one batch).
_CHUNK = 128


def _item_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed per item; different splits are different keys, hence disjoint streams."""
    digest = hashlib.blake2b(f"shapes:{seed}:{split}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ShapesDataset(Dataset):
    """``n`` RGB images of one shape each, with labels and object masks.

    ``self[i]`` is ``(x, label)``: ``x`` float32 ``[3, H, W]`` normalized as
    ``(rgb - MEAN) / STD`` with ``rgb`` in ``[0, 1]``; :meth:`mask` gives the object mask and
    :meth:`to_rgb` undoes the normalization for thumbnails.
    """

    classes: tuple[str, ...] = CLASSES

    def __init__(self, n: int, image_size: int = 64, seed: int = 0, split: str = "train") -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"Expected the number of shapes images as an integer >= 0, got {n!r}.")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
            raise ConfigError(f"Expected the shapes image size as an integer >= 16, got {image_size!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"Expected the shapes seed as an integer, got {seed!r}.")
        if split not in SPLITS:
            raise ConfigError(f"Expected the shapes split to be one of {', '.join(SPLITS)}, got {split!r}.")
        self.n = n
        self.image_size = image_size
        self.seed = seed
        self.split = split

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, label, _ = self._item(index)
        return x, label

    def mask(self, index: int) -> torch.Tensor:
        """The ground-truth object mask of item ``index``, bool ``[H, W]``."""
        return self._item(index)[2]

    def _item(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        """One item, remembered until the next: a sweep asks for ``self[i]`` then ``mask(i)``."""
        last = getattr(self, "_last", None)
        if last is None or last[0] != index:
            x, labels, masks = self.batch([index])
            last = self._last = (index, (x[0], int(labels[0]), masks[0]))
        return last[1]

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Items ``indices`` at once: ``x [B,3,H,W]`` float32, labels int64 ``[B]``, masks bool ``[B,H,W]``.

        Much faster than indexing one by one (the rasterization is vectorized over the batch);
        each item is identical to ``self[i]``.
        """
        idx = [self._check_index(i) for i in indices]
        size = self.image_size
        parts = [self._render_items(idx[k:k + _CHUNK]) for k in range(0, len(idx), _CHUNK)]
        if not parts:
            return (torch.empty(0, 3, size, size), torch.empty(0, dtype=torch.int64),
                    torch.empty(0, size, size, dtype=torch.bool))
        x, labels, masks = (torch.cat(p) for p in zip(*parts, strict=True))
        return x, labels, masks

    def _render_items(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scalars, colours, noise = [], [], []
        for i in idx:
            gen = torch.Generator().manual_seed(_item_seed(self.seed, self.split, i))
            scalars.append(torch.rand(_N_SCALARS, generator=gen, dtype=torch.float64))
            colours.append(_colours(gen))
            noise.append(torch.randn(3, self.image_size, self.image_size, generator=gen))
        rgb, labels, masks = _render(torch.stack(scalars), torch.stack(colours), torch.stack(noise),
                                     self.image_size)
        return (rgb - MEAN) / STD, labels, masks

    @staticmethod
    def to_rgb(x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization: ``[..., 3, H, W]`` float → uint8 ``[..., H, W, 3]`` (a batch works too)."""
        if x.dim() < 3 or x.shape[-3] != 3:
            raise ConfigError(f"Expected normalized images shaped [..., 3, H, W], got shape {tuple(x.shape)}.")
        rgb = (x.detach().float() * STD + MEAN).clamp(0.0, 1.0)
        return (rgb * 255.0).round().to(torch.uint8).movedim(-3, -1)

    def _check_index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"Expected an index of the shapes data set in [0, {self.n}), got {index}.")
        return i


def _colours(gen: torch.Generator) -> torch.Tensor:
    """Object colour and the two background gradient colours, ``[3, 3]`` (rows: object, bg0, bg1).

    The background is muted (near mid-grey, the model's zero input) and the object vivid: at
    least ``_MIN_CONTRAST`` from every colour of the background gradient and ``_MIN_VIVID`` from
    grey. Why: gradients of a contour are about as large on its outer side as on its inner side,
    and grad×input weighs them by the input, so a vivid object over a muted background puts the
    map's peak on the object, not on the background pixels hugging it (with colours drawn alike
    for both, a third of the peaks landed just outside the mask).
    Candidates are drawn together and the first that qualifies is kept.
    """
    obj = torch.rand(_COLOUR_TRIES, 3, generator=gen, dtype=torch.float64)
    bg = _uniform(torch.rand(_COLOUR_TRIES, 2, 3, generator=gen, dtype=torch.float64), _BACKGROUND)
    c0, seg = bg[:, 0], bg[:, 1] - bg[:, 0]
    t = (((obj - c0) * seg).sum(-1) / (seg * seg).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)
    contrast = (obj - (c0 + t[:, None] * seg)).norm(dim=-1)
    ok = torch.nonzero((contrast >= _MIN_CONTRAST) & ((obj - 0.5).norm(dim=-1) >= _MIN_VIVID))
    # Rare: no candidate qualifies; the first object colour pushed to the nearest cube corner does.
    return torch.cat([obj[int(ok[0, 0])][None], bg[int(ok[0, 0])]]) if len(ok) else \
        torch.cat([obj[0].round()[None], bg[0]])


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + u * (bounds[1] - bounds[0])


def _render(scalars: torch.Tensor, colours: torch.Tensor, noise: torch.Tensor,
            size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rasterize a batch: scalars ``[B, _N_SCALARS]`` in [0, 1), colours ``[B, 3, 3]``, noise ``[B, 3, H, W]``."""
    s = scalars.float()
    labels = (s[:, 0] * len(CLASSES)).long().clamp_max(len(CLASSES) - 1)
    radius = _uniform(s[:, 1], _RADIUS) * size
    reach = radius + _MARGIN  # centres keep the whole object off the border pixels
    cy = reach + s[:, 2] * (size - 1 - 2 * reach)
    cx = reach + s[:, 3] * (size - 1 - 2 * reach)
    angle = (2 * s[:, 4] - 1) * math.radians(_MAX_TILT)

    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    dy = (yy - cy[:, None, None]) / radius[:, None, None]
    dx = (xx - cx[:, None, None]) / radius[:, None, None]
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    u = cos * dx + sin * dy
    v = -sin * dx + cos * dy
    masks = _shape_masks(u, v, labels)

    # Background: a linear colour gradient along a random direction, plus a sinusoidal grating.
    direction = s[:, 5] * 2 * math.pi
    ramp = (xx * direction.cos()[:, None, None] + yy * direction.sin()[:, None, None]) / size
    ramp = ((ramp - ramp.amin((1, 2), keepdim=True))
            / (ramp.amax((1, 2), keepdim=True) - ramp.amin((1, 2), keepdim=True)).clamp_min(1e-6))
    c = colours.float()
    background = c[:, 1, :, None, None] + ramp[:, None] * (c[:, 2] - c[:, 1])[:, :, None, None]
    period = _uniform(s[:, 6], _GRATING_PERIOD) * size
    theta = s[:, 7] * math.pi
    phase = s[:, 8] * 2 * math.pi
    wave = (xx * theta.cos()[:, None, None] + yy * theta.sin()[:, None, None]) * (2 * math.pi / period)[:, None, None]
    grating = _uniform(s[:, 9], _GRATING_AMPLITUDE)[:, None, None] * torch.sin(wave + phase[:, None, None])
    background = background + grating[:, None]

    m = masks[:, None].float()
    rgb = background * (1 - m) + c[:, 0, :, None, None] * m
    rgb = rgb + _uniform(s[:, 10], _NOISE_SIGMA)[:, None, None, None] * noise
    return rgb.clamp(0.0, 1.0), labels, masks


def _circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u * u + v * v <= 1.0


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.8


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Equilateral, circumradius 1, a flat side up: three half-planes at apothem 0.5."""
    inside = torch.ones_like(u, dtype=torch.bool)
    for k in range(3):
        a = -math.pi / 2 + k * 2 * math.pi / 3
        inside &= u * math.cos(a) + v * math.sin(a) <= 0.5
    return inside


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    au, av = u.abs(), v.abs()
    return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))


def _star(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Five points (outer radius 1, inner 0.45): fold the angle onto one tip's half-sector and test
    against the edge from the tip (1, 0) to the inner vertex at angle pi/5."""
    sector = 2 * math.pi / 5
    r = torch.sqrt(u * u + v * v)
    folded = torch.remainder(torch.atan2(v, u) + sector / 2, sector) - sector / 2
    px, py = r * folded.cos(), r * folded.abs().sin()
    ix, iy = 0.45 * math.cos(sector / 2), 0.45 * math.sin(sector / 2)
    return (ix - 1.0) * py - iy * (px - 1.0) >= 0.0


_SHAPES = (_circle, _square, _triangle, _cross, _star)  # in the order of CLASSES


def _shape_masks(u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Inside test of each item's own class on rotated, radius-normalized coordinates ``[B, H, W]``."""
    masks = torch.empty_like(u, dtype=torch.bool)
    for k, inside in enumerate(_SHAPES):
        items = torch.nonzero(labels == k)[:, 0]
        if len(items):
            masks[items] = inside(u[items], v[items])
    return masks
