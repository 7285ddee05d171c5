"""Layer capture: forward hooks that keep the outputs of named layers for one forward pass.

The sweep asks autograd for the gradient of the target score with respect to the input and to
every captured output in one ``torch.autograd.grad`` call, so the hooks keep the output tensors
themselves (still attached to the graph), not copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from attrstream.engine.errors import ModelError, close_matches


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


def default_layers(model: nn.Module) -> list[str]:
    """Top-level stages worth explaining when the user names none.

    torchvision CNNs: the ``layer1..4`` / ``features`` blocks; ViTs: the last encoder block;
    anything else: every top-level child that produces a spatial map (decided later, by shape).
    """
    children = [n for n, _ in model.named_children()]
    stages = [n for n in children if n.startswith("layer") and n[5:].isdigit()]
    if stages:
        return stages
    modules = dict(model.named_modules())
    encoder_blocks = [n for n in modules if n.startswith("encoder.layers.") and n.count(".") == 2]
    if encoder_blocks:
        return [encoder_blocks[-1]]
    if "features" in children:
        return ["features"]
    return [n for n, m in model.named_children() if not isinstance(m, (nn.Linear, nn.Dropout, nn.Flatten))]


def _first_tensor(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


@contextmanager
def capture_outputs(model: nn.Module, layers: dict[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Keep the output of each layer (the first tensor of a tuple output) while the block runs.

    Hooks are removed in ``finally``, whatever happens inside. A layer called twice in one
    forward (shared modules) is an error: its gradient would be ambiguous.
    """
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            tensor = _first_tensor(output)
            if tensor is None:
                raise ModelError(f"Layer {name!r} returned no tensor ({type(output).__name__}).")
            if name in captured:
                raise ModelError(
                    f"Layer {name!r} ran twice in one forward pass (a shared module); "
                    "pick a layer that runs once."
                )
            captured[name] = tensor

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
