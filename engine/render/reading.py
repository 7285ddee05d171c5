"""What the report reads from a run, and nothing more: a 100k-example store renders in bounded memory.

Per-example scalars (labels, predictions, confidence) are O(N) and read whole; anything wider is
either read for the few examples drawn, or streamed one finished unit at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from attrstream.engine.errors import ConfigError, StoreError, close_matches
from attrstream.engine.faithfulness.layout import (
    LOCALIZATION_KEY,
    MEAN_AUC,
    METRICS_GROUP,
    METRICS_KEY,
    PROGRESS,
    curve_path,
)
from attrstream.engine.render.outputs import topk_probs
from attrstream.engine.render.topk import ChannelTopK
from attrstream.engine.store import Run
from attrstream.engine.store.meta import read_done
from attrstream.engine.store.verify import job_command, read_checked

HEATMAP_ROWS = 256  # examples drawn in a layer's channel-mean heatmap at most


def pick_names(kind: str, given: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """``given`` checked against what the store holds (all of them when ``None``)."""
    if given is None:
        return list(available)
    for name in given:
        if name not in available:
            raise ConfigError(
                f"Expected {kind} among {', '.join(available) or '(none in this store)'}, got {name!r}."
                f"{close_matches(name, available)}"
            )
    return list(dict.fromkeys(given))


def unit_rows(run: Run) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` example rows of every finished unit, in order."""
    unit = run.spec.unit
    for u in np.flatnonzero(run.units_done):
        yield int(u) * unit, min(int(u + 1) * unit, run.n)


def done_examples(run: Run) -> np.ndarray:
    """Positions of the examples whose unit is finished and that were not skipped by the loader."""
    ids = [np.arange(a, b) for a, b in unit_rows(run)]
    done = np.concatenate(ids) if ids else np.empty(0, np.int64)
    if done.size == 0:
        raise StoreError(f"Expected a store with at least one finished unit, got none ({run.path}).")
    skipped = run.read("inputs/skipped")[done]
    return done[skipped == 0]


def choose_examples(done: np.ndarray, examples: int | Sequence[int]) -> np.ndarray:
    """``examples`` positions spread evenly over the finished ones, or the given positions checked."""
    if isinstance(examples, int):
        if examples < 1:
            raise ConfigError(f"Expected examples >= 1, got {examples}.")
        return np.unique(done[np.linspace(0, len(done) - 1, min(examples, len(done))).round().astype(int)])
    chosen = np.asarray(examples, dtype=np.int64)
    missing = np.setdiff1d(chosen, done)
    if chosen.size == 0 or missing.size:
        raise ConfigError(
            f"Expected example positions of finished, non-skipped examples, got {chosen.tolist()} "
            f"(not available: {missing.tolist()})."
        )
    return chosen


def even_subsample(done: np.ndarray, rows: int = HEATMAP_ROWS) -> np.ndarray:
    return np.unique(done[np.linspace(0, len(done) - 1, min(rows, len(done))).round().astype(int)])


def column(run: Run, path: str, ids: np.ndarray) -> np.ndarray:
    """One 1-D per-example array of the layout at ``ids`` (read whole: O(N) scalars)."""
    return run.read(path)[ids]


def done_blocks(run: Run, done: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Each finished unit as a row slice and the positions of its kept rows, relative to the slice."""
    for a, b in unit_rows(run):
        keep = done[(done >= a) & (done < b)] - a
        if keep.size:
            yield slice(a, b), keep


def layer_maps(run: Run, layer: str, ids: np.ndarray) -> dict[str, np.ndarray]:
    """``{method: [n, h, w]}`` of the layer's maps at ``ids``; none for a layer pooled to one value per example."""
    spec = next(s for s in run.spec.layers if s.name == layer)
    if spec.map_shape is None or spec.map_shape[0] * spec.map_shape[1] == 1:
        return {}
    readers = {"grad_cam": run.cam, "grad_x_act": run.grad_x_act}
    return {m: readers[m](layer, ids) for m in readers if m in run.spec.layer_methods}


def confidence(run: Run, done: np.ndarray) -> np.ndarray:
    """Top-class probability of every finished example, one unit of logits in memory at a time."""
    parts = []
    for rows, keep in done_blocks(run, done):
        out = run.outputs(rows)
        prob = out["topk_prob"][keep, 0] if "topk_prob" in out else topk_probs(out["logits"][keep], 1)[1][:, 0]
        parts.append(prob)
    return np.concatenate(parts)


def top_classes(run: Run, ids: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(class index, probability) [n, k]`` of the examples at ``ids``, from logits or stored top-k."""
    out = run.outputs(ids)
    if "topk_prob" in out:
        return out["topk_index"][:, :k], out["topk_prob"][:, :k]
    return topk_probs(out["logits"], k)


def layer_topk(run: Run, layer: str, done: np.ndarray, k: int) -> ChannelTopK:
    """Running top-``k`` examples of every channel of ``layer`` by per-example channel mean."""
    return layer_topks(run, layer, done, k, ("mean",))["mean"]


def layer_topks(run: Run, layer: str, done: np.ndarray, k: int, stats: Sequence[str]) -> dict[str, ChannelTopK]:
    """Running top-``k`` examples of every channel of ``layer`` by each statistic of ``stats``, in one read."""
    names = run.stat_names(layer)
    tops = {stat: ChannelTopK(k) for stat in stats}
    for rows, keep in done_blocks(run, done):
        block = run.layer_stats(layer, rows)[keep]
        for stat, top in tops.items():
            top.update(rows.start + keep, block[:, :, names.index(stat)])
    return tops


def atlas_channels(run: Run, layer: str, done: np.ndarray, channels: int,
                   k: int) -> tuple[str, np.ndarray, np.ndarray, dict[str, ChannelTopK]]:
    """The ``channels`` channels of an atlas and what ranked them, in one read of the layer's statistics.

    Ranked by mean ``relevance`` over ``done`` (activation × gradient of the target: what the decision
    used) where the store's ``stat`` coordinate has it, else by mean activation. Returns the ranking
    statistic, the channels (best first), every channel's mean of it, and the top-``k`` examples of every
    channel by activation (``"mean"``) and by the ranking statistic.
    """
    ranking = "relevance" if "relevance" in run.stat_names(layer) else "mean"
    tops = layer_topks(run, layer, done, k, list(dict.fromkeys(("mean", ranking))))
    means = tops[ranking].mean()
    order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")[:channels]
    return ranking, order, means, tops


def optimized_inputs(run: Run, layer: str, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(images [r, S, S, 3], activations [r])`` of the optimized inputs of ``channels`` (NaN activation and a
    blank image where a channel has none); ``None`` when the store has no features of ``layer``."""
    if layer not in run.feature_layers:
        return None
    features = run.features(layer)
    size = features["settings"]["size"]
    images = np.zeros((len(channels), size, size, 3), np.uint8)
    values = np.full(len(channels), np.nan, np.float32)
    position = {int(c): i for i, c in enumerate(features["channel"])}
    for r, channel in enumerate(channels):
        if int(channel) in position:
            images[r] = features["image"][position[int(channel)]]
            values[r] = features["activation"][position[int(channel)]]
    return images, values


def dataset_stats(run: Run, layer: str) -> np.ndarray | None:
    """Dataset-level statistics of ``layer``, or ``None`` while the run is not finalized."""
    return run.dataset_stats(layer) if f"layers/{layer}/dataset_stats" in run.group else None


# Evaluation results (``attrstream evaluate``, the demo) sit in the ``metrics`` group, laid out in
# :mod:`attrstream.engine.faithfulness.layout`; a demo store written before the localization table
# moved into the store's ``metrics`` attributes has it as ``localization.json`` beside it.
LOCALIZATION_FILE = "localization.json"


def _metrics_attrs(run: Run) -> dict:
    return dict(run.group[METRICS_GROUP].attrs) if METRICS_GROUP in run.group else {}


def mean_aucs(run: Run) -> dict[str, dict[str, float]]:
    """``{map path: {metric: mean AUC}}`` of an evaluated store; empty until its evaluation finished."""
    return dict(_metrics_attrs(run).get(METRICS_KEY, {}).get(MEAN_AUC, {}))


def metric_curves(run: Run, map_path: str, metric: str) -> np.ndarray:
    """float32 ``[n, S+1]`` curves of a map (or of ``random``) for the examples that have one (not skipped)."""
    array = run.group[curve_path(map_path, metric)]
    command = job_command(_metrics_attrs(run).get(METRICS_KEY, {}))
    curves = read_checked(run.path, array, run.spec, slice(None), read_done(run.group, run.path, PROGRESS, command),
                          command)
    return curves[np.isfinite(curves).all(axis=1)]


def localization(run: Run) -> list[dict]:
    """Localization rows (map, pointing game, energy in the mask, chance) recorded for the store, if any."""
    rows = _metrics_attrs(run).get(LOCALIZATION_KEY)
    if rows is None and isinstance(getattr(run.path, "path", None), Path):
        beside = run.path.path.parent / LOCALIZATION_FILE
        rows = json.loads(beside.read_text()) if beside.is_file() else None
    return list(rows or [])
