"""The sweep: stream every requested attribution and statistic of a data set into one store.

Per batch: one forward with hooks, one ``autograd.grad`` over (input, *layer outputs), the fused
kernels, one host copy, and an append to the store writer, whose background thread compresses and
writes whole units while the next batch computes.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from attrstream.engine import __version__
from attrstream.engine.capture import default_layers, inference_mode_for_attribution, resolve_layers
from attrstream.engine.data import IndexedItems, make_loader, rgb_converter, split_item
from attrstream.engine.distributed import RankContext, rank_context
from attrstream.engine.errors import AttrstreamError, ConfigError, DataError, StoreError
from attrstream.engine.extract import ExtractPlan, extract_batch, layer_shapes, token_grid
from attrstream.engine.host_copy import HostCopier
from attrstream.engine.methods import (
    DEFAULT_METHODS,
    REDUCTIONS,
    Target,
    parse_target,
    split_methods,
    target_name,
)
from attrstream.engine.models import weights_sha256
from attrstream.engine.store import LayerSpec, RunSpec, StoreWriter, finalize_store, open_run

THUMB_MAX = 64
TOPK_ABOVE = 1000  # store top-5 index/prob instead of logits when K is larger


@dataclass(frozen=True)
class SweepConfig:
    """Everything that decides what a sweep computes and how; validated on construction."""

    layers: tuple[str, ...] | None = None  # None: the model's default stages
    methods: tuple[str, ...] = DEFAULT_METHODS
    target: Target = "pred"
    batch_size: int = 32
    unit: int = 256
    device: str = "cpu"
    dtype: str = "float16"
    reduce: str = "sum"
    autocast: bool = False
    num_workers: int = 0
    limit: int | None = None
    overwrite: bool = False
    skip_bad_images: bool = False
    compressor: str = "lz4"
    token_grid: tuple[int, int] | None = None
    smoothgrad_samples: int = 8
    ig_steps: int = 16
    progress: bool = True
    finalize: bool = True
    model_name: str | None = None
    dataset_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the store config (e.g. class names)

    def __post_init__(self) -> None:
        for name in ("layers", "methods"):  # lists and "a,b" strings become tuples: the config is hashable data
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(v for v in value.split(",") if v) if isinstance(value, str) else tuple(value))
        split_methods(self.methods)
        object.__setattr__(self, "target", parse_target(self.target))
        for name in ("batch_size", "unit", "smoothgrad_samples", "ig_steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"Expected {name.replace('_', '-')} >= 1, got {getattr(self, name)}.")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"Expected limit >= 0, got {self.limit}.")
        if self.num_workers < 0:
            raise ConfigError(f"Expected num-workers >= 0, got {self.num_workers}.")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"Expected dtype float16 or float32, got {self.dtype!r}.")
        if self.reduce not in REDUCTIONS:
            raise ConfigError(f"Expected reduce in ({', '.join(REDUCTIONS)}), got {self.reduce!r}.")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"Expected device cpu or cuda[:i], got {self.device!r}.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"Device {self.device!r} was requested but CUDA is not available here; use --device cpu.")


def _thumbnail_shape(h: int, w: int) -> tuple[int, int]:
    s = min(1.0, THUMB_MAX / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _thumbnails(x: torch.Tensor, to_rgb, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    rgb = to_rgb(x)
    if rgb.shape[-1] == 1:
        rgb = rgb.expand(*rgb.shape[:-1], 3)
    return rgb[..., :3]


def _layer_spec(name: str, shape: tuple[int, ...], layer_methods: tuple[str, ...], given_grid) -> tuple[LayerSpec, Any]:
    wants_maps = bool({"grad_x_act", "grad_cam"} & set(layer_methods))
    if len(shape) == 3:
        return LayerSpec(name, shape[0], (shape[1], shape[2]) if wants_maps else None), None
    if len(shape) == 2:  # tokens [T, C]
        grid = token_grid(shape[0], given_grid) if wants_maps else None
        return LayerSpec(name, shape[1], grid[:2] if grid else None), grid
    if len(shape) == 1:
        return LayerSpec(name, shape[0], None), None
    raise ConfigError(f"Layer {name!r} has output shape {shape} per example; expected [C,H,W], [T,C] or [C].")


def _describe(model: nn.Module, dataset: Dataset, cfg: SweepConfig, n: int, layers: list[str], image_shape) -> dict[str, Any]:
    return {
        "model": {
            "name": cfg.model_name or type(model).__name__,
            "weights_sha256": weights_sha256(model),
            "n_params": sum(p.numel() for p in model.parameters()),
        },
        "dataset": {"name": cfg.dataset_name or type(dataset).__name__, "n": n, "image_shape": list(image_shape)},
        "layers": layers,
        "target": target_name(cfg.target),
        "reduce": cfg.reduce,
        "autocast": cfg.autocast,
        "smoothgrad_samples": cfg.smoothgrad_samples,
        "ig_steps": cfg.ig_steps,
        "token_grid": list(cfg.token_grid) if cfg.token_grid else None,
        "skip_bad_images": cfg.skip_bad_images,
        "device": cfg.device,
        "attrstream_version": __version__,
        **cfg.extra,
    }


class _NonFiniteWarner:
    """Warns once, naming example indices, when a model produces NaN/Inf; values are kept as they are."""

    def __init__(self) -> None:
        self.warned = False

    def check(self, arrays: dict[str, np.ndarray], index: np.ndarray) -> None:
        if self.warned:
            return
        bad = np.zeros(len(index), dtype=bool)
        for key, arr in arrays.items():
            if arr.dtype.kind == "f" and (key.endswith(("_scale", "/stats", "/score")) or key == "outputs/logits"):
                bad |= ~np.isfinite(arr.reshape(len(index), -1)).all(1)
        if bad.any():
            self.warned = True
            shown = index[bad][:10].tolist()
            warnings.warn(
                f"NaN or Inf in the model's outputs or gradients at example(s) {shown}"
                f"{' ...' if bad.sum() > 10 else ''}; they are stored as they are.",
                RuntimeWarning,
                stacklevel=3,
            )


@dataclass
class SweepStats:
    """How this rank's store writer kept up, filled in by :func:`sweep` when passed ``stats=``.

    ``writer_idle_fraction`` near 1 means the writer thread waited for work (never the
    bottleneck); ``append_wait_s`` is the time compute spent blocked on a full writer.
    """

    units_written: int = 0
    writer_idle_fraction: float = 1.0
    append_wait_s: float = 0.0


def sweep(model: nn.Module, dataset: Dataset, out: str | os.PathLike, config: SweepConfig | None = None, *,
          stats: SweepStats | None = None, **options: Any):
    """Run a sweep of ``model`` over ``dataset`` into the store ``out`` and return the opened run.

    ``options`` are :class:`SweepConfig` fields (``layers``, ``methods``, ``target``, ``batch_size``,
    ``unit``, ``device``, ``dtype``, ...). An existing store with the same configuration is resumed.
    ``stats``, when given, receives the writer's measurements (benchmarks).
    """
    if config is not None and options:
        raise ConfigError("Pass either a SweepConfig or keyword options, not both.")
    unknown = sorted(set(options) - {f.name for f in fields(SweepConfig)})
    if unknown:
        valid = ", ".join(f.name for f in fields(SweepConfig))
        raise ConfigError(f"Unknown sweep option(s) {', '.join(unknown)}. Valid options: {valid}.")
    cfg = config if config is not None else SweepConfig(**options)
    input_methods, layer_methods = split_methods(cfg.methods)
    ctx = rank_context(cfg.device)
    try:
        return _sweep(model, dataset, out, cfg, ctx, input_methods, layer_methods, stats)
    finally:
        ctx.close()


def _sweep(model, dataset, out, cfg: SweepConfig, ctx: RankContext, input_methods, layer_methods,
           stats: SweepStats | None):
    device = torch.device(f"cuda:{ctx.local_rank}" if cfg.device == "cuda" and ctx.world > 1 else cfg.device)

    n = len(dataset)  # type: ignore[arg-type]
    if cfg.limit is not None:
        n = min(n, cfg.limit)
    if n == 0:
        raise DataError("The data set is empty (or --limit 0): nothing to sweep.")
    x0, _ = split_item(dataset[0])
    if x0.ndim != 3:
        raise DataError(f"Expected images of shape [C, H, W], got {tuple(x0.shape)}.")

    model = model.to(device)
    names = list(cfg.layers) if cfg.layers is not None else default_layers(model)
    if cfg.layers is None and layer_methods and ctx.is_main:
        print(f"attrstream: no layers given; using {', '.join(names)}", file=sys.stderr)
    layers = resolve_layers(model, names if layer_methods else [])
    with inference_mode_for_attribution(model):
        num_classes, shapes = layer_shapes(model, x0[None].to(device), layers)
    if isinstance(cfg.target, int) and cfg.target >= num_classes:
        raise ConfigError(f"Target class {cfg.target} is outside the model's outputs: expected 0..{num_classes - 1}.")
    specs_grids = {name: _layer_spec(name, shapes[name], layer_methods, cfg.token_grid) for name in layers}
    has_mask = callable(getattr(dataset, "mask", None))
    spec = RunSpec(
        n=n,
        input_shape=tuple(x0.shape),
        num_classes=num_classes,
        methods=input_methods,
        layer_methods=layer_methods,
        layers=tuple(s for s, _ in specs_grids.values()),
        unit=cfg.unit,
        thumb_size=_thumbnail_shape(*x0.shape[-2:]),
        has_mask=has_mask,
        topk=5 if num_classes > TOPK_ABOVE else 0,
        dtype=cfg.dtype,
        compressor=cfg.compressor,
        config=_describe(model, dataset, cfg, n, list(layers), x0.shape),
    )
    plan = ExtractPlan(
        layers=layers,
        input_methods=input_methods,
        layer_methods=layer_methods,
        target=cfg.target,
        reduce=cfg.reduce,
        out_dtype=torch.float16 if cfg.dtype == "float16" else torch.float32,
        topk=spec.topk,
        autocast=cfg.autocast,
        token_grids={name: grid for name, (_, grid) in specs_grids.items() if grid is not None},
        smoothgrad_samples=cfg.smoothgrad_samples,
        ig_steps=cfg.ig_steps,
    )
    todo = _prepare_store(ctx, out, spec, cfg.overwrite)
    if ctx.is_main and len(todo) < spec.n_units():
        left = sum(min(spec.n, (u + 1) * spec.unit) - u * spec.unit for u in todo)
        print(f"attrstream: resuming {out}: {spec.n_units() - len(todo)} of {spec.n_units()} units already done; "
              f"{left} examples left", file=sys.stderr)
    writer = StoreWriter(out, spec, create=False, units=todo[ctx.rank :: ctx.world], lock_name=f"writer.rank{ctx.rank}")
    ctx.barrier()  # every rank holds its lock (leftover temp files are cleaned) before anyone writes
    failure: BaseException | None = None
    try:
        with writer:
            _run_units(model, dataset, writer, spec, plan, cfg, device, has_mask, show_bar=cfg.progress and ctx.is_main)
    except BaseException as err:
        failure = err
    if stats is not None:
        stats.units_written = writer.units_written
        stats.writer_idle_fraction = writer.idle_fraction
        stats.append_wait_s = writer.append_wait_s
    if not ctx.all_ok(failure is None):
        if failure is not None:
            raise failure
        raise StoreError(f"Another rank failed while sweeping into {out}; rerun the same command to resume.")
    if not ctx.is_main:
        print(f"attrstream: rank {ctx.rank}/{ctx.world} wrote {len(writer.todo)} units", file=sys.stderr)
    if cfg.finalize and ctx.is_main:
        finalize_store(out)
    ctx.barrier()
    return open_run(out)


def _prepare_store(ctx: RankContext, out, spec: RunSpec, overwrite: bool) -> list[int]:
    """Rank 0 creates, validates or recreates the layout; every rank gets the units still to do.

    An error on rank 0 (another configuration, a locked store) reaches every rank as the same
    error instead of leaving the others waiting at a collective.
    """
    result: tuple[str, Any] = ("ok", None)
    if ctx.is_main:
        try:
            with StoreWriter(out, spec, overwrite=overwrite, units=[], lock_name=f"writer.rank{ctx.rank}"):
                pass
            done = open_run(out).units_done
            result = ("ok", [u for u in range(spec.n_units()) if not done[u]])
        except AttrstreamError as err:
            result = ("error", (type(err), str(err)))
    status, value = ctx.broadcast(result)
    if status == "error":
        kind, message = value
        raise kind(message)
    return value


def _run_units(model, dataset, writer, spec: RunSpec, plan: ExtractPlan, cfg: SweepConfig, device, has_mask: bool,
               show_bar: bool) -> None:
    from tqdm.auto import tqdm

    ranges = [writer.unit_range(u) for u in writer.todo]
    n_todo = sum(b - a for a, b in ranges)
    if not ranges:
        return
    units_before = spec.n_units() - len(writer.todo)
    items = IndexedItems(dataset, has_mask, tuple(spec.input_shape))
    loader = make_loader(items, ranges, cfg.batch_size, cfg.num_workers, pin_memory=device.type == "cuda")
    to_rgb = rgb_converter(dataset)
    copier = HostCopier(device)
    warner = _NonFiniteWarner()
    bar = tqdm(total=n_todo, unit="img", disable=not show_bar, dynamic_ncols=True, file=sys.stderr)

    def flush(ready) -> None:
        if ready is None:
            return
        start, arrays = ready
        warner.check(arrays, arrays["inputs/index"])
        writer.append(start, arrays)
        bar.update(len(arrays["inputs/index"]))
        bar.set_postfix(units=f"{units_before + writer.units_written}/{spec.n_units()}", refresh=False)

    try:
        with inference_mode_for_attribution(model):
            for x, labels, index, masks, errors in loader:
                skipped = _check_errors(errors, index, cfg.skip_bad_images)
                host = {
                    "inputs/index": index.numpy().astype(np.int64),
                    "inputs/label": labels.numpy().astype(np.int64),
                    "inputs/thumbnail": _thumbnails(x, to_rgb, spec.thumb_size).numpy(),
                    "inputs/skipped": skipped,
                }
                if has_mask:
                    host["inputs/mask"] = masks.numpy()
                results = extract_batch(model, x.to(device, non_blocking=True), labels.to(device), plan)
                flush(copier.submit(int(index[0]), results, host))
            flush(copier.drain())
    finally:
        bar.close()


def _check_errors(errors: list[str], index: torch.Tensor, skip: bool) -> np.ndarray:
    skipped = np.array([bool(e) for e in errors], dtype=np.uint8)
    if skipped.any() and not skip:
        first = next(e for e in errors if e)
        raise DataError(f"Could not read {first}. Pass --skip-bad-images to record such examples as skipped and go on.")
    if skipped.any():
        bad = [int(i) for i, e in zip(index, errors, strict=False) if e]
        warnings.warn(f"Skipped unreadable example(s) {bad[:10]}: {next(e for e in errors if e)}", RuntimeWarning, stacklevel=2)
    return skipped
