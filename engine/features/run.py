"""``visualize_features``: activation maximization of a layer's channels, batched, into ``features/<layer>``.

Prepare (resolve the layer, probe its layout and channel count at the image size, check the
channels, open the store's features group) → optimize the channels still to do, ``batch_size`` at
a time, each batch appended to the writer as its rows finish → mark the job completed and
consolidate the store's metadata.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import numpy as np
import torch
from torch import nn

from attrstream.engine.capture import inference_mode_for_attribution, resolve_layers
from attrstream.engine.config import FeaturesConfig
from attrstream.engine.errors import ConfigError
from attrstream.engine.features.image import SPECTRUM_SD
from attrstream.engine.features.optimize import LEARNING_RATE, Optimized, Recipe, forward_to, maximize
from attrstream.engine.features.redirect import REDIRECT_STEPS
from attrstream.engine.features.store import feature_job, open_features_writer
from attrstream.engine.features.transforms import ANGLES, JITTER, JITTER_AFTER, REFERENCE_SIZE, SCALES
from attrstream.engine.layouts import channels_and_map, decide_layout
from attrstream.engine.plan import model_record
from attrstream.engine.probe import probe_model
from attrstream.engine.store import Run, StoreWriter, open_run
from attrstream.engine.store.job import annotate_job
from attrstream.engine.store.location import locate
from attrstream.engine.vocabulary import IMAGENET_MEAN, IMAGENET_STD

# What the description records of the fixed recipe (changing any of it changes the stored images).
RECIPE = {"parametrization": "fourier 1/f, decorrelated colour, sigmoid", "init_sd": SPECTRUM_SD,
          "redirected_relu_steps": REDIRECT_STEPS, "optimizer": "adam", "lr": LEARNING_RATE,
          "transforms": {"reference_size": REFERENCE_SIZE, "fill": "grey, at the image size", "jitter": JITTER, "jitter_after": JITTER_AFTER,
                         "scales": list(SCALES), "angles": list(ANGLES)}}


def visualize_features(model: nn.Module, out: str | os.PathLike, layer: str, channels: Sequence[int] | None = None,
                       steps: int = 256, size: int = 128, batch_size: int = 32, seed: int = 0,
                       device: str | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                       std: Sequence[float] = IMAGENET_STD, **options) -> Run:
    """Optimize one input per channel of ``layer`` (default: every channel) and store them in ``out``.

    ``out`` is a sweep's store of this model (the features go into its ``features/<layer>``) or a
    new path. ``mean``/``std`` are the model's input normalization. ``options`` are the other
    :class:`FeaturesConfig` fields (``unit``, ``overwrite``, ``progress``, ``model_name``, ...).
    Rerunning the same call resumes; returns the store opened for reading (``run.features(layer)``).
    """
    cfg = FeaturesConfig(layer=layer, channels=channels, steps=steps, size=size, batch_size=batch_size, seed=seed,
                         device=device, mean=mean, std=std, **options)
    return run_features(model, out, cfg)


def run_features(model: nn.Module, out: str | os.PathLike, cfg: FeaturesConfig) -> Run:
    """:func:`visualize_features` with its settings as one :class:`FeaturesConfig` (what the CLI builds)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Expected model to be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(out, (str, os.PathLike)):
        raise ConfigError(f"Expected out to be a store path (str or os.PathLike) or a URL, got {out!r}.")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    location = locate(out)
    model = model.to(device)
    with inference_mode_for_attribution(model):
        module = resolve_layers(model, [cfg.layer])[cfg.layer]
        probe = probe_model(model, torch.zeros(1, 3, cfg.size, cfg.size, device=device),
                            hint="Pass a larger --size (the model's smallest input).")
        probe.check_ran_once([cfg.layer])
        layout = decide_layout(cfg.layer, probe, cfg.layer_layouts.get(cfg.layer))
        n_channels = channels_and_map(probe.shape(cfg.layer), layout, None)[0]
        channels = _check_channels(cfg, n_channels)
        job = feature_job(cfg, model_record(model, cfg.model_name), channels, layout, RECIPE)
        writer = open_features_writer(location, job, cfg, probe.num_classes)
        recipe = Recipe(cfg.steps, cfg.size, cfg.seed, cfg.mean, cfg.std)
        with writer, forward_to(model, cfg.layer, module, layout) as forward:
            _optimize_units(model, writer, forward, channels, recipe, cfg, device, job.group)
    # Records the finished job and consolidates the store's metadata, so plain zarr readers see the group.
    annotate_job(location, job.group, {"completed": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                 break_lock=cfg.break_lock)
    return open_run(location)


def _check_channels(cfg: FeaturesConfig, n_channels: int) -> list[int]:
    if cfg.channels is None:
        return list(range(n_channels))
    bad = [c for c in cfg.channels if c >= n_channels]
    if bad:
        raise ConfigError(f"Expected channels of layer {cfg.layer!r} in 0..{n_channels - 1} (it has {n_channels}), "
                          f"got {', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''}.")
    return list(cfg.channels)


def _batches(writer: StoreWriter, size: int) -> Iterator[np.ndarray]:
    """Row positions of the units still to do, ``size`` at a time, in order."""
    rows = np.concatenate([np.arange(*writer.unit_range(u)) for u in writer.todo] or [np.empty(0, np.int64)])
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _optimize_units(model: nn.Module, writer: StoreWriter, forward, channels: list[int], recipe: Recipe, cfg: FeaturesConfig,
                    device: torch.device, group: str) -> None:
    from tqdm.auto import tqdm

    total = sum(b - a for a, b in map(writer.unit_range, writer.todo))
    with tqdm(total=total, unit="ch", disable=not cfg.progress, dynamic_ncols=True, file=sys.stderr,
              desc=f"features {cfg.layer}") as bar:
        for rows in _batches(writer, cfg.batch_size):
            result = maximize(model, forward, [channels[r] for r in rows], recipe, device)
            _append(writer, group, rows, np.asarray(channels)[rows], result)
            bar.update(len(rows))


def _append(writer: StoreWriter, group: str, rows: np.ndarray, channels: np.ndarray, result: Optimized) -> None:
    """Append a batch's rows (positions in the channel list), one contiguous run at a time: the units still
    to do need not be adjacent."""
    arrays = {
        "channel": channels.astype(np.int64),
        "input": result.input.numpy().astype(np.float16),
        "image": (result.pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(),
        "activation": result.activation.numpy().astype(np.float32),
        "curve": result.curve.numpy().astype(np.float32),
    }
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for run in np.split(np.arange(len(rows)), breaks):
        writer.append(int(rows[run[0]]), {f"{group}/{k}": v[run] for k, v in arrays.items()})
