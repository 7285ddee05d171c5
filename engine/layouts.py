"""Layer layouts: which axis of a layer's output holds its channels, decided once from the probe.

A per-example output ``[A, B, C]`` is ``nchw`` ([C, H, W]) or ``nhwc`` ([H, W, C], Swin, ConvNeXt
block internals); ``[A, B]`` is ``ncl`` (1-D conv, [C, L]) or ``tokens`` ([T, C]); ``[C]`` is a
``vector`` (statistics only). The shape alone cannot tell these apart, so the decision reads what
the model says: the channel count and side of the last parametrized operation that produced the
output (a Conv/BatchNorm/GroupNorm puts channels first, a Linear/LayerNorm last), and, where the
count does not settle it (concatenated branches), the kind of every such operation inside the
layer. A case that stays open is a ConfigError asking for ``--layer-layout``, never a guess.

Every layout is then read through a ``[N, C, H, W]`` view of the same memory (a permute or an
added axis, no copy): the kernels take any strides.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from attrstream.engine.errors import ConfigError, ModelError
from attrstream.engine.vocabulary import LAYER_LAYOUTS

if TYPE_CHECKING:
    from attrstream.engine.probe import Probe

_RANK = {"nchw": 3, "nhwc": 3, "ncl": 2, "tokens": 2, "vector": 1}


def _channels(module: nn.Module) -> tuple[int, str] | None:
    """(channels, "first" | "last") that a parametrized operation gives its output, if it says."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels, "first"
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return module.num_features, "first"
    if isinstance(module, nn.GroupNorm):
        return module.num_channels, "first"
    if isinstance(module, nn.Linear):
        return module.out_features, "last"
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return module.normalized_shape[0], "last"
    return None


def _override_hint(name: str, rank: int) -> str:
    choices = "|".join(lay for lay, r in _RANK.items() if r == rank)
    return f"pass --layer-layout {name}={choices} (Python: layer_layouts={{{name!r}: ...}})"


def decide_layout(name: str, probe: Probe, given: str | None = None) -> str:
    """The layout of layer ``name`` from the probe's trace, or ``given`` (the user's override) checked against its rank."""
    shape = probe.shape(name)
    if given is not None:
        if given not in LAYER_LAYOUTS:
            raise ConfigError(f"Expected the layout of {name!r} among {', '.join(LAYER_LAYOUTS)}, got {given!r}.")
        if _RANK[given] != len(shape):
            raise ConfigError(f"Layout {given!r} needs a {_RANK[given]}-d output per example, layer {name!r} "
                              f"gives {list(shape)}.")
        return given
    if len(shape) == 1:
        return "vector"
    if len(shape) not in (2, 3):
        raise ConfigError(f"Layer {name!r} has output shape {list(shape)} per example; expected [C,H,W], [H,W,C], "
                          "[C,L], [T,C] or [C].")
    first, last = ("nchw", "nhwc") if len(shape) == 3 else ("ncl", "tokens")
    side_layout = {"first": first, "last": last}
    at = probe.index(name)
    produced = next(((call, found) for call in reversed(probe.calls[:at + 1]) if (found := _channels(call.module))), None)
    inside = {found[1] for call in probe.calls[:at + 1]
              if (call.name == name or call.name.startswith(f"{name}.")) and (found := _channels(call.module))}
    if produced is not None:
        (call, (channels, side)) = produced
        matches = [lay for axis, lay in ((0, first), (-1, last)) if shape[axis] == channels]
        if len(matches) == 1:
            return matches[0]
        if matches and call.shape == shape:  # C equals a spatial size: the producer's own layout
            return side_layout[side]
    if len(inside) == 1:  # e.g. concatenated conv branches: every operation inside puts channels first
        return side_layout[inside.pop()]
    what = (f"its last parametrized operation ({type(produced[0].module).__name__} {produced[0].name!r}) gives "
            f"{produced[1][0]} channels" if produced else "no parametrized operation runs before it")
    raise ConfigError(f"Cannot tell which axis of layer {name!r} (output {list(shape)} per example) holds its "
                      f"channels: {what}. Say it: {_override_hint(name, len(shape))}.")


def channels_and_map(shape: tuple[int, ...], layout: str, grid: tuple[int, int, int] | None) -> tuple[int, tuple[int, int] | None]:
    """The channel count and the (h, w) of the maps of a per-example output ``shape`` read as ``layout``."""
    if layout == "nchw":
        return shape[0], (shape[1], shape[2])
    if layout == "nhwc":
        return shape[2], (shape[0], shape[1])
    if layout == "ncl":
        return shape[0], (1, shape[1])
    if layout == "tokens":
        return shape[1], grid[:2] if grid else None
    return shape[0], None


def as_nchw(t: torch.Tensor, layout: str, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
    """``[N, C, H, W]`` view of a batch in ``layout`` (no copy); tokens need their ``grid``, vectors are 1×1."""
    if layout == "nhwc":
        return t.permute(0, 3, 1, 2)
    if layout == "ncl":
        return t.unsqueeze(2)
    if layout == "tokens":
        return as_grid(t, grid)
    if layout == "vector":
        return t[:, :, None, None]
    return t


def token_grid(tokens: int, given: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """(h, w, dropped) to view ``[N, T, C]`` tokens as an ``h×w`` patch grid.

    T = s² + 1 drops the class token, T = s² drops nothing; anything else needs ``given``.
    """
    if given is not None:
        h, w = given
        if h * w > tokens:
            raise ModelError(f"Token grid {h}x{w} needs {h * w} tokens, the layer has {tokens}.")
        return h, w, tokens - h * w
    for dropped in (1, 0):
        side = math.isqrt(tokens - dropped)
        if side * side == tokens - dropped and side > 0:
            return side, side, dropped
    raise ModelError(
        f"A token layer with {tokens} tokens is neither a square grid nor a square grid plus a class "
        "token; pass token_grid=(h, w) to say how to reshape it, or drop grad_x_act/grad_cam."
    )


def as_grid(t: torch.Tensor, grid: tuple[int, int, int] | None) -> torch.Tensor:
    """``[N, T, C]`` tokens → ``[N, C, h, w]`` view (no copy; the kernels take any strides)."""
    if grid is None:
        raise ModelError("A token layer needs its patch grid to be read as a map.")
    h, w, dropped = grid
    n, _, c = t.shape
    return t[:, dropped:, :].reshape(n, h, w, c).permute(0, 3, 1, 2)
