"""``evaluate()``: deletion/insertion curves of a finished store's maps, written into the same store.

check (the sweep's model and data, the maps asked for) → open the evaluation's own writer
(``metrics/``, resumable, see :mod:`attrstream.engine.store.job`) → for each chunk of
``batch_size`` examples of the units to do: load the images, rank every map once on the device,
forward the perturbed images (:mod:`.curves`), append curves and AUCs → record the data-set mean
AUCs and consolidate the metadata.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from attrstream.engine.capture import inference_mode_for_attribution
from attrstream.engine.config import EvaluateConfig
from attrstream.engine.data import IndexedItems, first_readable, make_loader, unreadable
from attrstream.engine.errors import ConfigError, DataError, ModelError, StoreError
from attrstream.engine.faithfulness.curves import auc, map_ranks, perturbation_curves, random_ranks
from attrstream.engine.faithfulness.layout import (
    MEAN_AUC,
    METRICS_GROUP,
    METRICS_KEY,
    PROGRESS,
    RANDOM,
    auc_path,
    curve_path,
    map_name,
    metric_arrays,
    resolve_maps,
)
from attrstream.engine.loop import out_of_memory_as_error
from attrstream.engine.models import weights_sha256
from attrstream.engine.store import Run, StoreWriter, open_run
from attrstream.engine.store.job import JobLayout, annotate_job, open_job_writer
from attrstream.engine.store.meta import read_done

DEFINITION = 1  # bump when the curves' definition changes: older evaluations are then refused
BLUR_MIN_SIDE = 6  # the blur's reflect padding (5 px) needs a larger image


def evaluate(store_or_path: Run | str | os.PathLike, model: nn.Module, dataset: Dataset,
             config: EvaluateConfig | None = None, **options: Any) -> dict[str, dict[str, float]]:
    """Deletion/insertion curves of every requested map of a finished sweep, into ``metrics/`` of its store.

    ``model`` and ``dataset`` must be the sweep's (its weights hash and data set are checked).
    ``options`` are :class:`EvaluateConfig` fields (``maps``, ``metrics``, ``steps``,
    ``batch_size``, ``device``, ...). A rerun resumes. Returns ``{map path: {metric: mean AUC}}``,
    the random baseline under ``"random"``.
    """
    if config is not None and options:
        raise ConfigError("Pass either an EvaluateConfig or keyword options, not both.")
    unknown = sorted(set(options) - {f.name for f in fields(EvaluateConfig)})
    if unknown:
        raise ConfigError(f"Unknown evaluate option(s) {', '.join(unknown)}. "
                          f"Valid options: {', '.join(f.name for f in fields(EvaluateConfig))}.")
    cfg = config if config is not None else EvaluateConfig(**options)
    run = store_or_path if isinstance(store_or_path, Run) else open_run(store_or_path)
    map_paths = resolve_maps(run.spec, cfg.maps)
    device = torch.device(cfg.device) if cfg.device else _device_of(model)
    _check_sweep(run, model, dataset, cfg)
    job = JobLayout(METRICS_GROUP, METRICS_KEY, metric_arrays(run.n, map_paths, cfg.metrics, cfg.steps), PROGRESS,
                    description={"definition": DEFINITION, "maps": map_paths, "metrics": list(cfg.metrics),
                                 "steps": cfg.steps, "seed": cfg.seed, "sweep": run.meta.get("fingerprint")},
                    command="the same `attrstream evaluate` with the options of the first run")
    writer = open_job_writer(run.path, run.spec, job, overwrite=cfg.overwrite, repair=cfg.repair,
                             break_lock=cfg.break_lock, progress=cfg.progress and sys.stderr.isatty())
    if writer.units_done_before:
        print(f"attrstream: resuming the evaluation of {run.path}: {writer.units_done_before} of "
              f"{run.spec.n_units()} units already done", file=sys.stderr)
    model = model.to(device)
    with writer, inference_mode_for_attribution(model), out_of_memory_as_error(cfg.batch_size, device):
        _evaluate_units(model, dataset, run, writer, map_paths, cfg, device)
    return _record_means(run, writer, job, map_paths, cfg)


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _check_sweep(run: Run, model: nn.Module, dataset: Dataset, cfg: EvaluateConfig) -> None:
    """The store is a finished sweep of this model and data set: one clear line otherwise."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Expected model to be a torch.nn.Module, got {type(model).__name__}.")
    if not run.complete:
        raise StoreError(f"Expected a finished sweep in {run.path}, got {int(run.units_done.sum())} of "
                         f"{run.spec.n_units()} units done: rerun the sweep to finish it, then evaluate.")
    recorded = run.spec.config.get("model", {})
    expected = recorded.get("weights_sha256") if isinstance(recorded, dict) else None
    got = weights_sha256(model)
    if expected is not None and got != expected:
        raise ModelError(f"Expected the model the sweep of {run.path} used (weights sha256 {expected[:12]}), got "
                         f"weights hashing to {got[:12]}: pass the sweep's --model and --weights.")
    data = run.spec.config.get("dataset", {})
    name = data.get("name") if isinstance(data, dict) else None
    if cfg.dataset_name is not None and name is not None and cfg.dataset_name != name:
        raise DataError(f"Expected the data set the sweep of {run.path} used ({name!r}), got {cfg.dataset_name!r}: "
                        "pass the sweep's --data.")
    if len(dataset) < run.n:  # type: ignore[arg-type]
        raise DataError(f"Expected the sweep's data set of at least {run.n} examples, got {len(dataset)}.")  # type: ignore[arg-type]
    shape = tuple(first_readable(dataset, run.n, skip_bad_images=True).shape)
    if shape != tuple(run.spec.input_shape):
        raise DataError(f"Expected images of shape {tuple(run.spec.input_shape)} as in the sweep of {run.path}, got "
                        f"{shape}: pass the sweep's --data and --image-size.")
    if "insertion" in cfg.metrics and min(shape[-2:]) < BLUR_MIN_SIDE:
        raise ConfigError(f"Expected images of at least {BLUR_MIN_SIDE}×{BLUR_MIN_SIDE} for insertion (its 11×11 blur), "
                          f"got {shape[-2]}×{shape[-1]}; evaluate --metrics deletion only.")


def _check_items(run: Run, rows: slice, labels: torch.Tensor, errors: list[str]) -> np.ndarray:
    """The sweep's skipped flags of ``rows``; a label that differs from the sweep's is another data set."""
    skipped = run.read("inputs/skipped", rows).astype(bool)
    stored = run.read("inputs/label", rows)
    for i, (error, label) in enumerate(zip(errors, labels.tolist(), strict=True)):
        if skipped[i]:
            continue
        if error:
            raise unreadable(error)
        if label != stored[i]:
            raise DataError(f"Expected example {rows.start + i} to have the label {stored[i]} it had in the sweep of "
                            f"{run.path}, got {label}: pass the sweep's --data (the same data set, in the same order).")
    return skipped


def _evaluate_units(model: nn.Module, dataset: Dataset, run: Run, writer: StoreWriter, map_paths: list[str],
                    cfg: EvaluateConfig, device: torch.device) -> None:
    from tqdm.auto import tqdm

    ranges = [writer.unit_range(u) for u in writer.todo]
    if not ranges:
        return
    _, height, width = run.spec.input_shape
    items = IndexedItems(dataset, False, tuple(run.spec.input_shape))
    loader = make_loader(items, ranges, cfg.batch_size, num_workers=0, pin_memory=device.type == "cuda")
    with tqdm(total=sum(b - a for a, b in ranges), unit="img", disable=not cfg.progress, desc="evaluate",
              dynamic_ncols=True, file=sys.stderr) as bar:
        for x, labels, index, _, errors in loader:
            rows = slice(int(index[0]), int(index[0]) + len(index))
            skipped = _check_items(run, rows, labels, errors)

            def ranks(rows: slice = rows, index: torch.Tensor = index) -> Iterator[tuple[str, torch.Tensor]]:
                for path in map_paths:  # one map read and ranked at a time
                    stored = torch.from_numpy(run.read(path, rows).astype(np.float32)).to(device)
                    yield path, map_ranks(stored, (height, width))
                yield RANDOM, random_ranks(index.tolist(), height * width, cfg.seed, device)

            target = torch.from_numpy(run.read("outputs/target", rows))
            with _channels_last_hint(cfg.channels_last):
                curves = perturbation_curves(model, x.to(device), target, ranks(), cfg.metrics, cfg.steps,
                                             cfg.batch_size, channels_last=cfg.channels_last)
            arrays = {}
            for path, by_metric in curves.items():
                for metric, curve in by_metric.items():  # skipped examples (unreadable images): NaN
                    arrays[curve_path(path, metric)] = np.where(skipped[:, None], np.float32("nan"), curve.cpu().numpy())
                    arrays[auc_path(path, metric)] = np.where(skipped, np.float32("nan"), auc(curve).cpu().numpy())
            writer.append(rows.start, arrays)
            bar.update(len(index))


@contextmanager
def _channels_last_hint(channels_last: bool) -> Iterator[None]:
    """A model that ``.view()``s a channels_last tensor fails with torch's stride message: say what to pass."""
    try:
        yield
    except RuntimeError as err:
        if channels_last and "view size is not compatible" in str(err):
            raise ModelError(f"The model cannot take channels_last inputs ({str(err).splitlines()[0]}): pass "
                             "--contiguous-inputs (channels_last=False).") from None
        raise


def _record_means(run: Run, writer: StoreWriter, job: JobLayout, map_paths: list[str],
                  cfg: EvaluateConfig) -> dict[str, dict[str, float]]:
    """The data-set mean AUC of every map and metric (NaN rows of skipped examples left out), recorded."""
    done = read_done(writer.group, run.path, PROGRESS)
    if not done.all():
        raise StoreError(f"Expected every unit of {run.path}/{METRICS_GROUP} done, got {int(done.sum())} of "
                         f"{len(done)}: rerun the same evaluate to resume.")
    means = {}
    for path in (*map_paths, RANDOM):
        means[path] = {}
        for metric in cfg.metrics:
            values = np.asarray(writer.group[auc_path(path, metric)][:], dtype=np.float64)
            means[path][metric] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    meta = job.meta(writer.group) or {}
    annotate_job(run.path, METRICS_GROUP, {METRICS_KEY: {**meta, MEAN_AUC: means}}, break_lock=cfg.break_lock)
    return means


def format_means(means: dict[str, dict[str, float]]) -> str:
    """The mean AUCs as a plain-text table, one row per map, the random baseline last."""
    metrics = list(next(iter(means.values()), {}))
    lines = [f"{'map':<32}" + "".join(f" {m + ' AUC':>14}" for m in metrics)]
    lines += [f"{map_name(path):<32}" + "".join(f" {by_metric[m]:>14.4f}" for m in metrics)
              for path, by_metric in means.items()]
    return "\n".join(lines)
