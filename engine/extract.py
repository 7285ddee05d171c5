"""One batch: one forward, one backward, then the fused kernels — small per-example tensors out.

Everything here runs on the model's device and returns device tensors keyed by their store path;
the sweep copies them to the host once per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn

from attrstream.engine.capture import capture_outputs
from attrstream.engine.errors import ModelError
from attrstream.engine.layouts import as_nchw
from attrstream.engine.methods import Target, target_scores
from attrstream.engine.multisample import multi_sample_grads
from attrstream.engine.vocabulary import LAYER_MAP_METHODS, MULTI_SAMPLE_METHODS
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
    layouts: dict[str, str] = field(default_factory=dict)  # layer -> LAYER_LAYOUTS entry (absent: nchw)
    token_grids: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # tokens layer -> (h, w, dropped)
    copied: frozenset[str] = frozenset()  # layers whose output the model modifies in place later
    smoothgrad_samples: int = 8
    smoothgrad_noise: float = 0.15
    ig_steps: int = 16
    internal_batch_size: int | None = None  # points per forward of the multi-sample methods (None: the batch size)


def forward_logits(model: Callable[[torch.Tensor], object], x: torch.Tensor, autocast: bool) -> torch.Tensor:
    """The model's ``[N, K]`` logits (the first output of a tuple), or a ModelError saying what came back."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16) if autocast else nullcontext():  # meta has no autocast
        logits = model(x)
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"Expected the model to return logits of shape [N, K], got {got}.")
    return logits


def _layer_results(name: str, a: torch.Tensor, g: torch.Tensor, plan: ExtractPlan) -> dict[str, torch.Tensor]:
    """One layer's stored results. Every layer has its gradient here, so its statistics always end
    with relevance (Σ a·g over the positions the statistics cover: every token of a token layer)."""
    a, g = a.detach(), g.detach()
    wants = set(plan.layer_methods)
    out: dict[str, torch.Tensor] = {}
    key = f"layers/{name}"
    layout = plan.layouts.get(name, "nchw")
    grid = plan.token_grids.get(name)
    if layout == "vector":  # [N, C]: statistics of single values; no spatial map
        wants -= set(LAYER_MAP_METHODS)
    if layout == "tokens" and "stats" in wants:  # over every token, the class token too
        out[f"{key}/stats"] = channel_stats(a, layout="tokens", g=g)
        wants.discard("stats")
    if layout == "tokens" and not wants:
        return out
    a, g = as_nchw(a, layout, grid), as_nchw(g, layout, grid)
    if wants == {"stats", "grad_x_act", "grad_cam"}:
        stats, gxa, cam = layer_maps(a, g, reduce=plan.reduce, out_dtype=plan.out_dtype)
        out[f"{key}/stats"] = stats
        out[f"{key}/grad_x_act"], out[f"{key}/grad_x_act_scale"] = gxa
        out[f"{key}/grad_cam"], out[f"{key}/grad_cam_scale"] = cam
        return out
    if "stats" in wants:
        out[f"{key}/stats"] = channel_stats(a, g=g)
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
        return forward_logits(model, points, plan.autocast).float()

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
    with capture_outputs(model, plan.layers, plan.copied) as captured:
        logits = forward_logits(model, x, plan.autocast)
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
        out["outputs/logits"] = logits  # float32: random-init logits reach 1e12
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
