"""Opening ``features/<layer>`` for writing: in a sweep's store of the same model, or in a new store.

The group is a store job (:func:`~attrstream.engine.store.job.open_job_writer`): its own lock,
done markers and fingerprinted description, resumed after a kill, refused with the changed
settings when the description differs (unless ``overwrite``, which recomputes that group alone).
A new store is first created holding an empty sweep (no examples: the root metadata every reader
knows, recording the model), so that ``open_run``, ``info``, ``verify`` and ``render`` open it as
any other store.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from attrstream.engine.config import FeaturesConfig
from attrstream.engine.errors import ModelError
from attrstream.engine.store import RunSpec, StoreWriter, finalize_store, open_writer
from attrstream.engine.store.features import (
    FEATURES_KEY,
    feature_arrays,
    features_group,
    progress_path,
)
from attrstream.engine.store.job import JobLayout, open_job_writer
from attrstream.engine.store.location import StoreLocation
from attrstream.engine.store.meta import read_ready_meta, read_root_meta
from attrstream.engine.store.spec import UnitGrid

RECIPE_VERSION = 1  # bump when the optimization changes in a way the description does not capture


def feature_job(cfg: FeaturesConfig, model: Mapping[str, Any], channels: Sequence[int], layout: str,
                recipe: Mapping[str, Any]) -> JobLayout:
    """The job of ``features/<cfg.layer>``: its arrays, markers, and the description that decides its numbers."""
    description = {
        "model": dict(model),
        "layer": cfg.layer,
        "layout": layout,
        "channels": list(channels),
        "steps": cfg.steps,
        "size": cfg.size,
        "seed": cfg.seed,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "unit": cfg.unit,
        "recipe": {**recipe, "version": RECIPE_VERSION},
    }
    return JobLayout(group=features_group(cfg.layer), key=FEATURES_KEY,
                     arrays=feature_arrays(cfg.layer, len(channels), cfg.size, cfg.steps),
                     progress=progress_path(cfg.layer), description=description,
                     command="the same attrstream features command")


def _create_store(location: StoreLocation, model: Mapping[str, Any], size: int, num_classes: int) -> None:
    spec = RunSpec(n=0, input_shape=(3, size, size), num_classes=num_classes, methods=(), layer_methods=(), layers=(),
                   config={"model": dict(model), "contents": "feature visualizations (features/), no sweep"})
    open_writer(location, spec).close()
    finalize_store(location)


def _check_model(location: StoreLocation, meta: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    recorded = meta.get("config", {}).get("model")
    expected = recorded.get("weights_sha256") if isinstance(recorded, dict) else None
    if expected != model["weights_sha256"]:
        held = f"weights sha256 {expected[:12]}" if expected else "no record of its model's weights"
        raise ModelError(f"Expected the model of the store {location} ({held}), got weights hashing to "
                         f"{model['weights_sha256'][:12]}: features must be of the model whose examples the store "
                         "holds; pass its --model and --weights, or another --out.")


def open_features_writer(location: StoreLocation, job: JobLayout, cfg: FeaturesConfig, num_classes: int) -> StoreWriter:
    """A running writer of the job's channels not yet done; creates the store first when ``location`` has none."""
    model = job.description["model"]
    if read_root_meta(location) is None:  # absent or empty (open_writer refuses anything else)
        _create_store(location, model, cfg.size, num_classes)
    _check_model(location, read_ready_meta(location), model)
    return open_job_writer(location, UnitGrid(len(job.description["channels"]), cfg.unit), job,
                           overwrite=cfg.overwrite, repair=cfg.repair, break_lock=cfg.break_lock,
                           progress=cfg.progress and sys.stderr.isatty())
