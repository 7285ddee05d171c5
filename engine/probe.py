"""The shape probe: one forward of one image that records every module call, in the order it finished.

Default layers (which modules ran, in network order, with what output) and layer layouts (which
parametrized operation produced a layer's channels) are both read from this one trace, so they
describe what the model actually does, not what its attribute names suggest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from attrstream.engine.capture import first_tensor
from attrstream.engine.errors import AttrstreamError, ModelError
from attrstream.engine.extract import forward_logits


@dataclass(frozen=True)
class ModuleCall:
    """One finished call of a module: its name, the module, its output shape per example, and whether
    the rest of the forward modified that output in place."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]
    modified_later: bool = False


@dataclass(frozen=True)
class Probe:
    """What one forward revealed: the number of classes and every module call, in finishing order."""

    num_classes: int
    calls: tuple[ModuleCall, ...]

    def index(self, name: str) -> int:
        """Position of the first call of ``name`` in :attr:`calls`."""
        return next(i for i, call in enumerate(self.calls) if call.name == name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.calls[self.index(name)].shape

    def check_ran_once(self, names: Iterable[str]) -> None:
        """Every layer must run exactly once: a missing one has no output, a repeated one no single gradient."""
        counts: dict[str, int] = {}
        for call in self.calls:
            counts[call.name] = counts.get(call.name, 0) + 1
        missing = [n for n in names if n not in counts]
        if missing:
            raise ModelError(f"Layer(s) {', '.join(missing)} did not run in the forward pass; "
                             "pick layers on the path to the output.")
        twice = [n for n in names if counts[n] > 1]
        if twice:
            raise ModelError(f"Layer {twice[0]!r} ran {counts[twice[0]]} times in one forward pass (a shared module); "
                             "pick a layer that runs once.")


def probe_model(model: nn.Module, x: torch.Tensor, *,
                hint: str = "Check --image-size and the input the model expects.") -> Probe:
    """Trace one forward of ``x`` (``[1, C, H, W]``); the model must be in eval mode.

    ``hint`` ends the one-line error when the model rejects ``x`` (it names the caller's size option).

    The forward runs on the meta device (parameters swapped for meta tensors, nothing computed):
    on a loaded 2-core machine a real one-image ResNet-18 forward costs ~1.7 s, 5% of a 64-image
    sweep. Models that cannot run on meta (value-dependent code) get a real forward instead.
    """
    meta = {name: torch.empty_like(t, device="meta") for name, t in (*model.named_parameters(), *model.named_buffers())}
    try:
        return _trace(model, x.to("meta"), meta)
    except Exception:
        pass
    try:
        return _trace(model, x, None)
    except AttrstreamError:
        raise
    except Exception as err:  # the user's model rejected the input: say so in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelError(
            f"The model failed on one input of shape {tuple(x.shape)} ({type(err).__name__}: {first}). {hint}"
        ) from None


def _trace(model: nn.Module, x: torch.Tensor, tensors: dict[str, torch.Tensor] | None) -> Probe:
    calls: list[tuple[str, nn.Module, torch.Tensor, int]] = []

    def make_hook(name: str):
        def hook(module: nn.Module, _inputs: object, output: object) -> None:
            tensor = first_tensor(output)
            if tensor is not None:
                calls.append((name, module, tensor, tensor._version))

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            if tensors is None:
                logits = forward_logits(model, x, autocast=False)
            else:
                logits = forward_logits(lambda v: functional_call(model, tensors, (v,)), x, autocast=False)
    finally:
        for handle in handles:
            handle.remove()
    return Probe(int(logits.shape[1]), tuple(ModuleCall(name, module, tuple(t.shape[1:]), t._version != version)
                                             for name, module, t, version in calls))
