"""Finalize: exact dataset-level statistics per layer, then consolidated metadata.

Pooling is exact composition of per-example statistics (each example of a layer has the same
number of positions, so every example weighs the same): mean of means; population variance =
mean of variances + variance of means; min of mins; max of maxes; mean of frac_pos. Accumulated
in float64, one unit at a time (bounded memory), variance of means by Chan's merge.

Excluded examples: those with ``inputs/skipped == 1``, and, per channel, examples whose statistics
hold a NaN (a NaN activation propagates into the kernel's stats). Pooling is thus NaN-aware; the
number of excluded (example, channel) pairs is kept in the array's ``nan_excluded`` attribute, and a
channel with no valid example pools to NaN.
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timezone

import numpy as np
import zarr

from attrstream.engine.errors import StoreError, disk_full_as_error
from attrstream.engine.store.layout import compressors_for
from attrstream.engine.store.location import NoLock, StoreLocation, locate, open_group
from attrstream.engine.store.lock import WriterLock
from attrstream.engine.store.meta import read_done, read_ready_meta
from attrstream.engine.store.spec import RunSpec
from attrstream.engine.store.verify import describe_damage, missing_objects, read_checked
from attrstream.kernels.names import STAT_NAMES


class StatsPool:
    """Running exact pool of per-example ``[n, C, 5]`` statistics (mean, std, min, max, frac_pos)."""

    def __init__(self, channels: int) -> None:
        self.count = np.zeros(channels)
        self.mean = np.zeros(channels)  # running mean of per-example means
        self.m2 = np.zeros(channels)  # sum of squared deviations of the means
        self.var_sum = np.zeros(channels)  # sum of per-example variances
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.frac_sum = np.zeros(channels)
        self.nan_excluded = 0

    def add(self, stats: np.ndarray) -> None:
        s = np.asarray(stats, dtype=np.float64)
        valid = ~np.isnan(s).any(axis=-1)  # [n, C]
        self.nan_excluded += int((~valid).sum())
        count = valid.sum(axis=0).astype(np.float64)
        means = np.where(valid, s[..., 0], 0.0)
        batch_mean = np.divide(means.sum(axis=0), count, out=np.zeros_like(count), where=count > 0)
        batch_m2 = np.where(valid, (s[..., 0] - batch_mean) ** 2, 0.0).sum(axis=0)
        total = self.count + count
        delta = batch_mean - self.mean
        safe = np.where(total > 0, total, 1.0)
        self.mean = self.mean + delta * count / safe
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * count / safe
        self.count = total
        self.var_sum += np.where(valid, s[..., 1] ** 2, 0.0).sum(axis=0)
        self.min = np.minimum(self.min, np.where(valid, s[..., 2], np.inf).min(axis=0, initial=np.inf))
        self.max = np.maximum(self.max, np.where(valid, s[..., 3], -np.inf).max(axis=0, initial=-np.inf))
        self.frac_sum += np.where(valid, s[..., 4], 0.0).sum(axis=0)

    def result(self) -> np.ndarray:
        """``[C, 5]`` float64 pooled statistics, NaN for channels without a valid example."""
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(self.count > 0, self.count, np.nan)
            std = np.sqrt(self.var_sum / n + self.m2 / n)
            out = np.stack([self.mean, std, self.min, self.max, self.frac_sum / n], axis=-1)
        out[self.count == 0] = np.nan
        return out


def pool_layer(location: StoreLocation, group: zarr.Group, spec: RunSpec, layer: str, skipped: np.ndarray) -> StatsPool:
    """Pool ``layers/<layer>/stats`` unit by unit, leaving out skipped examples."""
    stats = group[f"layers/{layer}/stats"]
    pool = StatsPool(stats.shape[1])
    for u in range(spec.n_units()):
        lo, hi = spec.unit_range(u)
        pool.add(read_checked(location, stats, spec, slice(lo, hi))[skipped[lo:hi] == 0])
    return pool


def finalize_store(path: str | os.PathLike | StoreLocation, *, break_lock: bool = False) -> None:
    """Write ``layers/<layer>/dataset_stats`` for every layer and consolidate metadata (idempotent).

    A full disk is a :class:`DiskFullError`: the units stay done, and a rerun finalizes again.
    """
    root = locate(path)
    meta = read_ready_meta(root)
    with disk_full_as_error(root, "finalizing"):
        _finalize(root, meta, root.lock("finalize", break_lock=break_lock))


def _finalize(root: StoreLocation, meta: dict, lock: WriterLock | NoLock) -> None:
    spec = RunSpec.from_dict(meta["spec"])
    lock.acquire()
    try:
        group = open_group(root, "r+", use_consolidated=False)
        done = read_done(group, root)
        if not done.all():
            missing = np.flatnonzero(~done)
            raise StoreError(
                f"Expected every unit of {root} written before finalize, got {len(missing)} of {len(done)} "
                f"missing (units {missing[:10].tolist()}{'...' if len(missing) > 10 else ''}); rerun the sweep to resume."
            )
        missing = missing_objects(root, group, spec, range(len(done)))
        if missing:
            raise StoreError(
                f"Expected every object of every unit of {root} before pooling dataset_stats, got missing objects in "
                f"{describe_damage(missing)}; dataset_stats are never pooled over missing examples: rerun the same "
                f"sweep to recompute these units (`attrstream verify {root}` lists all damage, and --repair also "
                "recomputes corrupted objects)."
            )
        skipped = read_checked(root, group["inputs/skipped"], spec, slice(None))
        if "stats" in spec.layer_methods:
            for layer in spec.layers:
                pool = pool_layer(root, group, spec, layer.name, skipped)
                out = group.create_array(
                    f"layers/{layer.name}/dataset_stats", shape=(layer.channels, len(STAT_NAMES)), dtype="float64",
                    compressors=compressors_for(spec, np.dtype("float64")), dimension_names=("channel", "stat"),
                    fill_value=np.nan, overwrite=True,
                    attributes={"examples": int(pool.count.max(initial=0)), "skipped": int(skipped.sum()),
                                "nan_excluded": pool.nan_excluded, "pooling": "exact, float64, NaN-aware"},
                )
                out[:] = pool.result()
        group.attrs["attrstream"] = {**meta, "finalized": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        consolidate(root)
    finally:
        lock.release()


def consolidate(root: StoreLocation) -> None:
    """Rewrite the root's consolidated metadata, so that ``zarr.open_group(path, mode="r")`` (and
    :func:`open_run`) see every array and attribute: after finalize, and after any job that adds
    arrays to a finished store (evaluation metrics)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")  # our lock files
        zarr.consolidate_metadata(root.store(), zarr_format=3)
