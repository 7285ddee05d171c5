"""Layer capture: forward hooks that keep the outputs of named layers for one forward pass.

The sweep asks autograd for the gradient of the target score with respect to the input and to
every captured output in one ``torch.autograd.grad`` call, so the hooks keep the output tensors
themselves (still attached to the graph), not copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from attrstream.engine.errors import ModelError, close_matches

if TYPE_CHECKING:
    from attrstream.engine.probe import Probe


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Map each requested layer name to its module, or raise with close matches.

    Names are those of ``model.named_modules()`` (``layer4``, ``layer4.1.conv2``,
    ``encoder.layers.encoder_layer_11``).
    """
    modules = dict(model.named_modules())
    resolved: dict[str, nn.Module] = {}
    for name in names:
        if name not in modules or name == "":
            top_level = ", ".join(n for n, _ in model.named_children())
            raise ModelError(
                f"Expected a layer name of {type(model).__name__}, got {name!r}."
                f"{close_matches(name, [n for n in modules if n])} Top-level layers: {top_level}."
            )
        resolved[name] = modules[name]
    if len(set(resolved)) != len(resolved):
        raise ModelError(f"Layer names must be unique, got {list(names)}.")
    return resolved


def default_layers(model: nn.Module, probe: Probe) -> list[str]:
    """The layers worth explaining when the user names none, read from the probe's trace.

    Vision transformers (a class token read out by the head): the last encoder block's input norm,
    whose patch tokens reach the output through attention (the last block's own output reaches it
    only through the class token, so its patch maps are zero by construction). Anything else: the
    model's stages — its top-level children, in the order they ran, with a spatial or token-grid
    output, up to the first that pools to 1×1 or flattens (the head, the classifier); a
    ``ModuleList`` that never runs itself stands for its last child that ran; auxiliary heads are
    excluded because they do not run in eval. Lone operations (a conv, a norm, a pool) are parts
    of a stage, not stages, and count only in a model made of nothing else.
    """
    vit = _vision_transformer_layer(model)
    if vit is not None:
        return [vit]
    candidates = _stage_names(model)
    body: list[str] = []
    seen: set[str] = set()
    for call in probe.calls:
        if call.name not in candidates or call.name in seen:
            continue
        seen.add(call.name)
        if not _has_grid(call.shape):
            break
        body.append(call.name)
    body = _last_of_each_list(model, body)
    stages = [n for n in body if any(True for _ in model.get_submodule(n).children())]
    return stages or body


def _vision_transformer_layer(model: nn.Module) -> str | None:
    if not isinstance(getattr(model, "class_token", None), torch.Tensor):
        return None
    norms = [n for n, _ in model.named_modules() if n.startswith("encoder.layers.") and n.endswith(".ln_1")]
    return norms[-1] if norms else None


def _stage_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    for name, child in model.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            names.update(f"{name}.{sub}" for sub, _ in child.named_children())
        else:
            names.add(name)
    return names


def _has_grid(shape: tuple[int, ...]) -> bool:
    """A map worth drawing: [C,H,W] or [H,W,C] not pooled to 1×1, or [T,C] / [C,L] with more than one position."""
    if len(shape) == 3:
        return shape[1:] != (1, 1) and shape[:2] != (1, 1)
    return len(shape) == 2 and min(shape) > 1


def _last_of_each_list(model: nn.Module, names: list[str]) -> list[str]:
    """Keep, of the children of one ModuleList/ModuleDict, only the last that ran."""
    last: dict[str, str] = {}
    for name in names:
        parent = name.rpartition(".")[0]
        if parent:
            last[parent] = name
    return [n for n in names if not n.rpartition(".")[0] or last[n.rpartition(".")[0]] == n]


def first_tensor(output: object) -> torch.Tensor | None:
    """The tensor a module returned, or the first one of a tuple/list output (what hooks keep)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


@contextmanager
def capture_outputs(model: nn.Module, layers: dict[str, nn.Module],
                    copied: frozenset[str] = frozenset()) -> Iterator[dict[str, torch.Tensor]]:
    """Keep the output of each layer (the first tensor of a tuple output) while the block runs.

    The model goes on with a copy of the output of each layer in ``copied``: those the model later
    modifies in place (DenseNet's ``F.relu(features, inplace=True)``), which would otherwise turn
    the kept activation into another layer's. Hooks are removed in ``finally``, whatever happens
    inside. A layer called twice in one forward (shared modules) is an error: its gradient would
    be ambiguous.
    """
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            tensor = first_tensor(output)
            if tensor is None:
                raise ModelError(f"Layer {name!r} returned no tensor ({type(output).__name__}).")
            if name in captured:
                raise ModelError(
                    f"Layer {name!r} ran twice in one forward pass (a shared module); "
                    "pick a layer that runs once."
                )
            captured[name] = tensor
            return tensor.clone() if name in copied and tensor is output else None

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in layers.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def inference_mode_for_attribution(model: nn.Module) -> Iterator[nn.Module]:
    """``eval()`` and frozen parameters for the sweep; the previous state is restored after.

    Freezing parameters keeps autograd from recording what weight gradients would need: the
    sweep asks only for input and activation gradients.
    """
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
