"""One batch: one forward, one backward, then the fused kernels — small per-example tensors out.

Everything here runs on the model's device and returns device tensors keyed by their store path;
the sweep copies them to the host once per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from attrstream.engine.capture import capture_outputs
from attrstream.engine.errors import AttrstreamError, ModelError
from attrstream.engine.methods import Target, target_scores
from attrstream.engine.multisample import multi_sample_grads
from attrstream.engine.vocabulary import MULTI_SAMPLE_METHODS
from attrstream.kernels import channel_stats, grad_cam, layer_maps, product_map, saliency


@dataclass(frozen=True)
class ExtractPlan:
    """What to compute per batch; built once per sweep."""

    layers: dict[str, nn.Module]
    input_methods: tuple[str, ...]
    layer_methods: tuple[str, ...]
    target: Target
    reduce: str = "sum"
    out_dtype: torch.dtype = torch.float16
    topk: int = 0
    autocast: bool = False
    token_grids: dict[str, tuple[int, int, int]] | None = None  # layer -> (h, w, leading tokens dropped)
    smoothgrad_samples: int = 8
    smoothgrad_noise: float = 0.15
    ig_steps: int = 16
    internal_batch_size: int | None = None  # points per forward of the multi-sample methods (None: the batch size)


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


def as_grid(t: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """``[N, T, C]`` tokens → ``[N, C, h, w]`` view (no copy; the kernels take any strides)."""
    h, w, dropped = grid
    n, _, c = t.shape
    return t[:, dropped:, :].reshape(n, h, w, c).permute(0, 3, 1, 2)


def _forward(model: Callable[[torch.Tensor], object], x: torch.Tensor, autocast: bool) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=torch.bfloat16) if autocast else nullcontext():  # meta has no autocast
        logits = model(x)
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"Expected the model to return logits of shape [N, K], got {got}.")
    return logits


def _layer_results(name: str, a: torch.Tensor, g: torch.Tensor, plan: ExtractPlan) -> dict[str, torch.Tensor]:
    a, g = a.detach(), g.detach()
    wants = set(plan.layer_methods)
    out: dict[str, torch.Tensor] = {}
    key = f"layers/{name}"
    if a.ndim == 2:  # [N, C]: statistics of single values; no spatial map
        a, g = a[:, :, None, None], g[:, :, None, None]
        wants -= {"grad_x_act", "grad_cam"}
    if a.ndim == 3:  # tokens [N, T, C]
        if "stats" in wants:
            out[f"{key}/stats"] = channel_stats(a, layout="tokens")
        grid = (plan.token_grids or {}).get(name)
        if wants & {"grad_x_act", "grad_cam"}:
            a, g = as_grid(a, grid), as_grid(g, grid)
        wants.discard("stats")
    if wants == {"stats", "grad_x_act", "grad_cam"}:
        stats, gxa, cam = layer_maps(a, g, reduce=plan.reduce, out_dtype=plan.out_dtype)
        out[f"{key}/stats"] = stats
        out[f"{key}/grad_x_act"], out[f"{key}/grad_x_act_scale"] = gxa
        out[f"{key}/grad_cam"], out[f"{key}/grad_cam_scale"] = cam
        return out
    if "stats" in wants:
        out[f"{key}/stats"] = channel_stats(a)
    if "grad_x_act" in wants:
        out[f"{key}/grad_x_act"], out[f"{key}/grad_x_act_scale"] = product_map(a, g, reduce=plan.reduce, out_dtype=plan.out_dtype)
    if "grad_cam" in wants:
        out[f"{key}/grad_cam"], out[f"{key}/grad_cam_scale"] = grad_cam(a, g, out_dtype=plan.out_dtype)
    return out


def _multi_sample_maps(model: nn.Module, x: torch.Tensor, examples: torch.Tensor, index: torch.Tensor,
                       plan: ExtractPlan) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    chunk = plan.internal_batch_size or len(x)

    def forward(points: torch.Tensor) -> torch.Tensor:
        return _forward(model, points, plan.autocast).float()

    if "smoothgrad" in plan.input_methods:
        mean_abs = multi_sample_grads(forward, x, examples, index, method="smoothgrad", samples=plan.smoothgrad_samples,
                                      chunk=chunk, noise=plan.smoothgrad_noise)
        # Captum NoiseTunnel(Saliency(abs=True)), smoothgrad: mean |g|, then max over channels
        out["attributions/smoothgrad"], out["attributions/smoothgrad_scale"] = saliency(mean_abs, out_dtype=plan.out_dtype)
    if "integrated_gradients" in plan.input_methods:
        mean_grad = multi_sample_grads(forward, x, examples, index, method="integrated_gradients",
                                       samples=plan.ig_steps, chunk=chunk)
        out["attributions/integrated_gradients"], out["attributions/integrated_gradients_scale"] = product_map(
            x, mean_grad, reduce="sum", out_dtype=plan.out_dtype
        )
    return out


def extract_batch(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, examples: torch.Tensor,
                  plan: ExtractPlan) -> dict[str, torch.Tensor]:
    """Every requested output of one batch, keyed by store path, on ``x``'s device.

    ``examples`` are the data set indices of the batch's rows (CPU int64): they seed SmoothGrad.
    """
    x = x.detach().requires_grad_(True)
    with capture_outputs(model, plan.layers) as captured:
        logits = _forward(model, x, plan.autocast)
    missing = [n for n in plan.layers if n not in captured]
    if missing:
        raise ModelError(f"Layer(s) {', '.join(missing)} did not run in the forward pass; pick layers on the path to the output.")
    chosen = target_scores(logits, labels, plan.target)
    acts = [captured[n] for n in plan.layers]
    need_x_grad = bool({"grad_x_input", "saliency"} & set(plan.input_methods))
    inputs = ([x] if need_x_grad else []) + acts
    grads = torch.autograd.grad(chosen.score.sum(), inputs, allow_unused=True) if inputs else ()
    for name, grad in zip(plan.layers, grads[int(need_x_grad):], strict=False):
        if grad is None:
            raise ModelError(f"The target score does not depend on layer {name!r}; pick a layer before the output.")

    logits = logits.detach().float()
    out: dict[str, torch.Tensor] = {
        "outputs/pred": logits.argmax(1),
        "outputs/target": chosen.index,
        "outputs/score": chosen.score.detach().float(),
    }
    if plan.topk:
        prob, idx = torch.softmax(logits, 1).topk(min(plan.topk, logits.shape[1]), dim=1)
        out["outputs/topk_index"], out["outputs/topk_prob"] = idx, prob
    else:
        out["outputs/logits"] = logits.to(torch.float16)
    with torch.no_grad():
        if need_x_grad:
            gx = grads[0]
            if "grad_x_input" in plan.input_methods:
                out["attributions/grad_x_input"], out["attributions/grad_x_input_scale"] = product_map(
                    x.detach(), gx, reduce=plan.reduce, out_dtype=plan.out_dtype
                )
            if "saliency" in plan.input_methods:
                out["attributions/saliency"], out["attributions/saliency_scale"] = saliency(gx, out_dtype=plan.out_dtype)
        for name, a, g in zip(plan.layers, acts, grads[int(need_x_grad):], strict=False):
            out.update(_layer_results(name, a, g, plan))
    del grads, acts, captured
    if set(MULTI_SAMPLE_METHODS) & set(plan.input_methods):
        out.update(_multi_sample_maps(model, x.detach(), examples, chosen.index, plan))
    return out


def layer_shapes(model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Module]) -> tuple[int, dict[str, tuple[int, ...]]]:
    """Number of classes and each layer's output shape (without the batch axis), from one forward.

    The forward runs on the meta device (parameters swapped for meta tensors, nothing computed):
    on a loaded 2-core machine a real one-image ResNet-18 forward costs ~1.7 s, 5% of a 64-image
    sweep. Models that cannot run on meta (value-dependent code) get a real forward instead.
    """
    meta = {name: torch.empty_like(t, device="meta") for name, t in (*model.named_parameters(), *model.named_buffers())}
    try:
        return _probe(model, x.to("meta"), layers, meta)
    except Exception:
        pass
    try:
        return _probe(model, x, layers, None)
    except AttrstreamError:
        raise
    except Exception as err:  # the user's model rejected the input: say so in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelError(
            f"The model failed on one input of shape {tuple(x.shape)} ({type(err).__name__}: {first}). "
            "Check --image-size and the input the model expects."
        ) from None


def _probe(model: nn.Module, x: torch.Tensor, layers: dict[str, nn.Module], tensors: dict[str, torch.Tensor] | None):
    with torch.no_grad(), capture_outputs(model, layers) as captured:
        if tensors is None:
            logits = _forward(model, x, autocast=False)
        else:
            logits = _forward(lambda v: functional_call(model, tensors, (v,)), x, autocast=False)
    missing: Sequence[str] = [n for n in layers if n not in captured]
    if missing:
        raise ModelError(f"Layer(s) {', '.join(missing)} did not run in the forward pass; pick layers on the path to the output.")
    return logits.shape[1], {n: tuple(captured[n].shape[1:]) for n in layers}
