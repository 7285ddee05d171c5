"""Preparing a sweep: resolve the layers, probe the shapes, and derive what the run stores and computes.

Everything a sweep decides before its first batch comes from the :class:`SweepConfig` through the
functions here: :func:`run_spec` (the store's layout and fingerprint), :func:`extract_plan` (what
each batch computes) and :func:`describe_run` (the configuration recorded in the store).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from attrstream.engine.capture import default_layers, inference_mode_for_attribution, resolve_layers
from attrstream.engine.config import SweepConfig
from attrstream.engine.data import first_readable
from attrstream.engine.errors import ConfigError, DataError
from attrstream.engine.extract import ExtractPlan
from attrstream.engine.layouts import channels_and_map, decide_layout, token_grid
from attrstream.engine.methods import split_methods, target_name
from attrstream.engine.models import weights_sha256
from attrstream.engine.probe import Probe, probe_model
from attrstream.engine.store import LayerSpec, RunSpec
from attrstream.engine.vocabulary import LAYER_MAP_METHODS

THUMB_MAX = 64  # longest side of the stored thumbnails
TOPK_ABOVE = 1000  # store top-5 index/prob instead of logits when K is larger


@dataclass(frozen=True)
class SweepPlan:
    """What :func:`plan_sweep` decided: the store's spec, the per-batch plan and the device."""

    spec: RunSpec
    extract: ExtractPlan
    device: torch.device
    has_mask: bool


@dataclass(frozen=True)
class ProbedLayer:
    """One layer as the shape probe saw it: its store spec and, for tokens, the patch grid."""

    spec: LayerSpec
    grid: tuple[int, int, int] | None = None  # (h, w, leading tokens dropped)


def thumbnail_shape(h: int, w: int) -> tuple[int, int]:
    s = min(1.0, THUMB_MAX / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def probed_layer(name: str, probe: Probe, layer_methods: tuple[str, ...], given_grid: tuple[int, int] | None,
                 given_layout: str | None = None) -> ProbedLayer:
    """The layer's layout (decided here, once), channels and map shape, from the probe's trace."""
    shape = probe.shape(name)
    layout = decide_layout(name, probe, given_layout)
    wants_maps = bool(set(LAYER_MAP_METHODS) & set(layer_methods))
    grid = token_grid(shape[0], given_grid) if layout == "tokens" and wants_maps else None
    channels, map_shape = channels_and_map(shape, layout, grid)
    return ProbedLayer(LayerSpec(name, channels, map_shape if wants_maps else None, layout), grid)


def _warn_vectors(probed: dict[str, ProbedLayer], layer_methods: tuple[str, ...]) -> None:
    """Say once that map methods skip ``vector`` layers, instead of storing nothing without a word."""
    maps = [m for m in LAYER_MAP_METHODS if m in layer_methods]
    vectors = [name for name, p in probed.items() if p.spec.layout == "vector"]
    if maps and vectors:
        warnings.warn(f"Layer(s) {', '.join(vectors)} give one value per channel ([C], layout vector): "
                      f"{'/'.join(maps)} do not apply there; storing their statistics only.", RuntimeWarning, stacklevel=3)


def model_record(model: nn.Module, name: str | None) -> dict[str, Any]:
    """The model as a store records it (and checks it when a later job adds to the store): name, weights hash, size."""
    return {
        "name": name or type(model).__name__,
        "weights_sha256": weights_sha256(model),
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def describe_run(model: nn.Module, dataset: Dataset, cfg: SweepConfig, n: int, layers: list[str],
                 image_shape: tuple[int, ...]) -> dict[str, Any]:
    """The configuration recorded in (and fingerprinted with) the store.

    Only what decides the stored numbers belongs here. How and where they are computed (batch
    size, workers, device, progress, ``skip_bad_images`` on examples that load, attrstream's
    version) is left out, so that a rerun changing those resumes; the store records who wrote its
    units in its ``writers`` list instead.
    """
    return {
        "model": model_record(model, cfg.model_name),
        "dataset": {"name": cfg.dataset_name or type(dataset).__name__, "n": n, "image_shape": list(image_shape)},
        "layers": layers,
        "target": target_name(cfg.target),
        "reduce": cfg.reduce,
        "autocast": cfg.autocast,
        "smoothgrad_samples": cfg.smoothgrad_samples,
        "ig_steps": cfg.ig_steps,
        "token_grid": list(cfg.token_grid) if cfg.token_grid else None,
        **cfg.extra,
    }


def run_spec(cfg: SweepConfig, *, n: int, image_shape: tuple[int, ...], num_classes: int,
             layers: tuple[LayerSpec, ...], has_mask: bool, description: dict[str, Any]) -> RunSpec:
    """The store's spec (layout and fingerprint) for this sweep."""
    input_methods, layer_methods = split_methods(cfg.methods)
    return RunSpec(
        n=n,
        input_shape=tuple(image_shape),
        num_classes=num_classes,
        methods=input_methods,
        layer_methods=layer_methods,
        layers=layers,
        unit=min(cfg.unit, n),  # a run shorter than a unit is one shard of its own length, not a padded one
        thumb_size=thumbnail_shape(*image_shape[-2:]),
        has_mask=has_mask,
        topk=5 if num_classes > TOPK_ABOVE else 0,
        dtype=cfg.dtype,
        compressor=cfg.compressor,
        config=description,
    )


def extract_plan(cfg: SweepConfig, layers: dict[str, nn.Module], probed: dict[str, ProbedLayer], topk: int,
                 copied: frozenset[str] = frozenset()) -> ExtractPlan:
    """What each batch computes, for this sweep."""
    input_methods, layer_methods = split_methods(cfg.methods)
    return ExtractPlan(
        layers=layers,
        input_methods=input_methods,
        layer_methods=layer_methods,
        target=cfg.target,
        reduce=cfg.reduce,
        out_dtype=torch.float16 if cfg.dtype == "float16" else torch.float32,
        topk=topk,
        autocast=cfg.autocast,
        layouts={name: p.spec.layout for name, p in probed.items()},
        token_grids={name: p.grid for name, p in probed.items() if p.grid is not None},
        copied=copied,
        smoothgrad_samples=cfg.smoothgrad_samples,
        ig_steps=cfg.ig_steps,
        internal_batch_size=cfg.internal_batch_size or cfg.batch_size,
    )


def plan_sweep(model: nn.Module, dataset: Dataset, cfg: SweepConfig, device: torch.device, *,
               announce: bool) -> SweepPlan:
    """Probe the model (one forward of the first readable image), pick or check the layers, decide their
    layouts; moves ``model`` to ``device``."""
    n = len(dataset)  # type: ignore[arg-type]
    if cfg.limit is not None:
        n = min(n, cfg.limit)
    if n == 0:
        raise DataError("The data set is empty (or --limit 0): nothing to sweep.")
    x0 = first_readable(dataset, n, cfg.skip_bad_images)
    if x0.ndim != 3:
        raise DataError(f"Expected images of shape [C, H, W], got {tuple(x0.shape)}.")

    _, layer_methods = split_methods(cfg.methods)
    model = model.to(device)
    given = resolve_layers(model, cfg.layers) if cfg.layers is not None and layer_methods else None
    with inference_mode_for_attribution(model):
        probe = probe_model(model, x0[None].to(device))
    names = list(cfg.layers) if cfg.layers is not None else default_layers(model, probe)
    if not names and layer_methods:
        raise ConfigError(f"No layer of {type(model).__name__} has a spatial output at input size {list(x0.shape)}: "
                          "pass --layers, a larger --image-size, or methods without layer methods.")
    if cfg.layers is None and layer_methods and announce:
        print(f"attrstream: no layers given; using {', '.join(names)}", file=sys.stderr)
    layers = given if given is not None else resolve_layers(model, names if layer_methods else [])
    probe.check_ran_once(layers)
    unknown = sorted(set(cfg.layer_layouts) - set(layers))
    if unknown:
        raise ConfigError(f"Expected --layer-layout for layers of this sweep ({', '.join(layers) or 'none'}), "
                          f"got {', '.join(unknown)}.")
    if isinstance(cfg.target, int) and cfg.target >= probe.num_classes:
        raise ConfigError(f"Target class {cfg.target} is outside the model's outputs: expected 0..{probe.num_classes - 1}.")
    probed = {name: probed_layer(name, probe, layer_methods, cfg.token_grid, cfg.layer_layouts.get(name))
              for name in layers}
    _warn_vectors(probed, layer_methods)
    has_mask = callable(getattr(dataset, "mask", None))
    spec = run_spec(cfg, n=n, image_shape=tuple(x0.shape), num_classes=probe.num_classes,
                    layers=tuple(p.spec for p in probed.values()), has_mask=has_mask,
                    description=describe_run(model, dataset, cfg, n, list(layers), tuple(x0.shape)))
    modified = frozenset(n for n in layers if probe.calls[probe.index(n)].modified_later)
    return SweepPlan(spec, extract_plan(cfg, layers, probed, spec.topk, modified), device, has_mask)
