"""Method names, validation, and the target score.

Input-level methods produce one ``[N, H, W]`` map of the model input; layer methods produce
per-layer outputs. One forward and one backward serve every single-pass method and layer;
SmoothGrad and Integrated Gradients repeat that over an expanded batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attrstream.engine.errors import ConfigError, close_matches
from attrstream.engine.vocabulary import ALL_METHODS, INPUT_METHODS, LAYER_METHODS

if TYPE_CHECKING:
    import torch

TargetFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
Target = str | int | TargetFn


def split_methods(methods: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(input methods, layer methods) of ``methods``, in canonical order; unknown names raise."""
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m]
    for m in methods:
        if m not in ALL_METHODS:
            raise ConfigError(f"Unknown method {m!r}. Valid methods: {', '.join(ALL_METHODS)}.{close_matches(m, ALL_METHODS)}")
    if not methods:
        raise ConfigError(f"Expected at least one method of: {', '.join(ALL_METHODS)}.")
    chosen = set(methods)
    return tuple(m for m in INPUT_METHODS if m in chosen), tuple(m for m in LAYER_METHODS if m in chosen)


def parse_target(value: Target) -> Target:
    """``pred``, ``label``, a class index (int or digit string), or a callable."""
    if callable(value):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"Expected a target of pred, label, a class index or a callable, got {value!r}.")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"Expected a non-negative target class index, got {value}.")
        return value
    if isinstance(value, str):
        if value in ("pred", "label"):
            return value
        if value.lstrip("-").isdigit():
            return parse_target(int(value))
    raise ConfigError(f"Expected a target of pred, label, a class index or a callable, got {value!r}.")


def target_name(target: Target) -> str:
    """Stable description of a target for the config fingerprint."""
    if callable(target):
        return f"callable:{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    return str(target)


@dataclass(frozen=True)
class TargetScores:
    score: torch.Tensor  # [N] float32, differentiable: the quantity whose gradient is explained
    index: torch.Tensor  # [N] int64 class index (-1 where a callable returned scores)


def target_scores(logits: torch.Tensor, labels: torch.Tensor, target: Target) -> TargetScores:
    """The per-example score to differentiate, for the chosen target."""
    import torch

    logits = logits.float()
    n, k = logits.shape
    if callable(target):
        out = target(logits, labels)
        if not isinstance(out, torch.Tensor) or out.shape != (n,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError(f"The target callable must return a tensor of shape ({n},), got {got}.")
        if out.is_floating_point():
            return TargetScores(out.float(), torch.full((n,), -1, dtype=torch.long, device=out.device))
        index = out.long()
    elif target == "pred":
        index = logits.detach().argmax(1)
    elif target == "label":
        index = labels.to(logits.device).long()
        if n and int(index.min()) < 0:
            raise ConfigError("Target 'label' needs labels, but the data set has examples without one; use --target pred.")
    else:
        index = torch.full((n,), int(target), dtype=torch.long, device=logits.device)
    if n and (int(index.min()) < 0 or int(index.max()) >= k):
        bad = int(index.max()) if int(index.max()) >= k else int(index.min())
        raise ConfigError(f"Target class {bad} is outside the model's outputs: expected 0..{k - 1}.")
    return TargetScores(logits.gather(1, index[:, None]).squeeze(1), index)
