"""Finalize: exact dataset-level statistics per layer, then consolidated metadata.

Pooling is exact composition of per-example statistics (each example of a layer has the same
number of positions, so every example weighs the same): mean of means; population variance =
mean of variances + variance of means; min of mins; max of maxes; mean of frac_pos; mean of
relevance (the data set's mean concept relevance per channel). Accumulated in float64, one unit at
a time (bounded memory), variance of means by Chan's merge. The columns are those of the layer's
``stat`` coordinate, so a store written before relevance pools its five statistics.

Excluded examples: those with ``inputs/skipped == 1``, and, per channel, examples whose statistics
hold a NaN (a NaN activation propagates into the kernel's stats). Relevance also comes from the
gradient, which can be NaN where the activation is not (NaN logits): it is left out on its own, so
a NaN gradient never removes an example from the activation statistics. Pooling is thus NaN-aware;
the number of excluded (example, channel) pairs is kept in the array's ``nan_excluded`` attribute
(``relevance_nan_excluded`` for relevance), and a channel with no valid example pools to NaN.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone

import numpy as np
import zarr
from zarr.core.common import ZARR_JSON

from attrstream.engine.errors import StoreError, disk_full_as_error
from attrstream.engine.store.layout import ArraySpec, array_metadata, create_arrays
from attrstream.engine.store.location import NoLock, StoreLocation, locate, open_group
from attrstream.engine.store.lock import WriterLock
from attrstream.engine.store.meta import ROOT_META, read_done, read_ready_meta
from attrstream.engine.store.spec import RunSpec
from attrstream.engine.store.verify import describe_damage, missing_objects, read_checked
from attrstream.kernels.names import ACTIVATION_STAT_NAMES, RELEVANCE, STAT_NAMES


class StatsPool:
    """Running exact pool of per-example ``[n, C, S]`` statistics whose columns are ``names`` (a
    layer's ``stat`` coordinate: :data:`STAT_NAMES`, or the five activation statistics of older stores)."""

    def __init__(self, channels: int, names: tuple[str, ...]) -> None:
        if names not in (STAT_NAMES, ACTIVATION_STAT_NAMES):
            raise StoreError(f"Expected the statistics {', '.join(STAT_NAMES)} (or, in stores written before "
                             f"relevance, {', '.join(ACTIVATION_STAT_NAMES)}), got {', '.join(names) or 'none'}.")
        self.names = names
        self.count = np.zeros(channels)
        self.mean = np.zeros(channels)  # running mean of per-example means
        self.m2 = np.zeros(channels)  # sum of squared deviations of the means
        self.var_sum = np.zeros(channels)  # sum of per-example variances
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)
        self.frac_sum = np.zeros(channels)
        self.nan_excluded = 0
        self.relevance_count = np.zeros(channels)
        self.relevance_sum = np.zeros(channels)
        self.relevance_nan_excluded = 0

    def add(self, stats: np.ndarray) -> None:
        # One statistic per contiguous [n, C] plane (strided columns reduce ~2x slower), and no
        # masking when nothing is NaN (the common case): the same sums in the same order either way.
        planes = np.ascontiguousarray(np.moveaxis(np.asarray(stats, dtype=np.float64), -1, 0))
        if RELEVANCE in self.names:
            self._add_relevance(planes[self.names.index(RELEVANCE)])
        mean, std, low, high, frac_pos = planes[: len(ACTIVATION_STAT_NAMES)]
        valid = ~np.isnan(planes[: len(ACTIVATION_STAT_NAMES)]).any(axis=0)  # [n, C]
        every = bool(valid.all())

        def kept(x: np.ndarray, fill: float) -> np.ndarray:
            return x if every else np.where(valid, x, fill)

        self.nan_excluded += int((~valid).sum())
        count = valid.sum(axis=0).astype(np.float64)
        batch_mean = np.divide(kept(mean, 0.0).sum(axis=0), count, out=np.zeros_like(count), where=count > 0)
        batch_m2 = kept((mean - batch_mean) ** 2, 0.0).sum(axis=0)
        total = self.count + count
        delta = batch_mean - self.mean
        safe = np.where(total > 0, total, 1.0)
        self.mean = self.mean + delta * count / safe
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * count / safe
        self.count = total
        self.var_sum += kept(std**2, 0.0).sum(axis=0)
        self.min = np.minimum(self.min, kept(low, np.inf).min(axis=0, initial=np.inf))
        self.max = np.maximum(self.max, kept(high, -np.inf).max(axis=0, initial=-np.inf))
        self.frac_sum += kept(frac_pos, 0.0).sum(axis=0)

    def _add_relevance(self, relevance: np.ndarray) -> None:
        valid = ~np.isnan(relevance)  # [n, C]
        self.relevance_nan_excluded += int((~valid).sum())
        self.relevance_count += valid.sum(axis=0)
        self.relevance_sum += (relevance if valid.all() else np.where(valid, relevance, 0.0)).sum(axis=0)

    def result(self) -> np.ndarray:
        """``[C, S]`` float64 pooled statistics in the order of ``names``, NaN for channels without a
        valid example."""
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(self.count > 0, self.count, np.nan)
            std = np.sqrt(self.var_sum / n + self.m2 / n)
            columns = [self.mean, std, self.min, self.max, self.frac_sum / n]
            activation = np.stack(columns, axis=-1)
            activation[self.count == 0] = np.nan
            if RELEVANCE not in self.names:
                return activation
            relevance = self.relevance_sum / np.where(self.relevance_count > 0, self.relevance_count, np.nan)
        return np.concatenate([activation, relevance[:, None]], axis=-1)

    def attributes(self) -> dict[str, int]:
        """What was left out for NaN, for the ``dataset_stats`` array's attributes."""
        left_out = {"nan_excluded": self.nan_excluded}
        if RELEVANCE in self.names:
            left_out["relevance_nan_excluded"] = self.relevance_nan_excluded
        return left_out


class RunningPools:
    """Every layer's pool, fed by the writer as it stores each unit (pass it as ``on_unit_done``).

    When it saw every unit of the store, in order, :func:`finalize_store` takes its pools instead of
    reading every unit's statistics back, a read that grows with N (~1.5 ms a unit and layer on a
    2-core VM: ~35 ms of a 256-example sweep's finalize, seconds for 100k examples). The numbers are
    the very same: the same float32 rows, as stored, added unit by unit in the same order.
    """

    def __init__(self, spec: RunSpec) -> None:
        self.n_units = spec.n_units()
        stats = "stats" in spec.layer_methods
        self.pools = {layer.name: StatsPool(layer.channels, STAT_NAMES) for layer in spec.layers} if stats else {}
        self.skipped = 0
        self._next = 0  # the unit expected next; -1 once one came out of order (a resumed or shared run)

    def __call__(self, unit: int, rows: Mapping[str, np.ndarray]) -> None:
        if unit != self._next:
            self._next = -1
            return
        kept = rows["inputs/skipped"] == 0
        self.skipped += int((~kept).sum())
        for layer, pool in self.pools.items():
            pool.add(rows[f"layers/{layer}/stats"][kept])
        self._next += 1

    @property
    def complete(self) -> bool:
        """Whether it holds every unit of the store (else finalize reads them back)."""
        return self._next == self.n_units


def pool_layer(location: StoreLocation, group: zarr.Group, spec: RunSpec, layer: str, skipped: np.ndarray) -> StatsPool:
    """Pool ``layers/<layer>/stats`` unit by unit, leaving out skipped examples; the columns are
    named by the layer's ``stat`` coordinate, as stored."""
    stats = group[f"layers/{layer}/stats"]
    pool = StatsPool(stats.shape[1], tuple(str(v) for v in group[f"layers/{layer}/stat"][:]))
    for u in range(spec.n_units()):
        lo, hi = spec.unit_range(u)
        pool.add(read_checked(location, stats, spec, slice(lo, hi))[skipped[lo:hi] == 0])
    return pool


def finalize_store(path: str | os.PathLike | StoreLocation, *, break_lock: bool = False,
                   pooled: RunningPools | None = None) -> None:
    """Write ``layers/<layer>/dataset_stats`` for every layer and consolidate metadata (idempotent).

    ``pooled``: the pools the writer of every unit fed (:class:`RunningPools`); used when complete
    and of the store's statistics, else every unit is read back.
    A full disk is a :class:`DiskFullError`: the units stay done, and a rerun finalizes again.
    """
    root = locate(path)
    meta = read_ready_meta(root)
    with disk_full_as_error(root, "finalizing"):
        _finalize(root, meta, root.lock("finalize", break_lock=break_lock), pooled)


def _finalize(root: StoreLocation, meta: dict, lock: WriterLock | NoLock, pooled: RunningPools | None) -> None:
    spec = RunSpec.from_dict(meta["spec"])
    if pooled is not None and not (pooled.complete and tuple(meta.get("stat_names", ())) == STAT_NAMES):
        pooled = None
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
        missing = missing_objects(root, spec, range(len(done)))
        if missing:
            raise StoreError(
                f"Expected every object of every unit of {root} before pooling dataset_stats, got missing objects in "
                f"{describe_damage(missing)}; dataset_stats are never pooled over missing examples: rerun the same "
                f"sweep to recompute these units (`attrstream verify {root}` lists all damage, and --repair also "
                "recomputes corrupted objects)."
            )
        if "stats" in spec.layer_methods:
            skipped = None if pooled is not None else read_checked(root, group["inputs/skipped"], spec, slice(None))
            n_skipped = pooled.skipped if pooled is not None else int(skipped.sum())
            for layer in spec.layers:
                pool = (pooled.pools[layer.name] if pooled is not None
                        else pool_layer(root, group, spec, layer.name, skipped))
                out_spec = ArraySpec(f"layers/{layer.name}/dataset_stats", "float64", (layer.channels, len(pool.names)),
                                     ("channel", "stat"), per_example=False,
                                     attrs={"examples": int(pool.count.max(initial=0)), "skipped": n_skipped,
                                            **pool.attributes(), "pooling": "exact, float64, NaN-aware"})
                # one chunk, rewritten whole: a second finalize replaces the document and the chunk
                out = create_arrays(root, group[f"layers/{layer.name}"], {out_spec.path: array_metadata(spec, out_spec)})
                out[out_spec.path][:] = pool.result()
        group.attrs["attrstream"] = {**meta, "finalized": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        consolidate(root)
    finally:
        lock.release()


def consolidate(root: StoreLocation) -> None:
    """Rewrite the root's consolidated metadata, so that ``zarr.open_group(path, mode="r")`` (and
    :func:`open_run`) see every array and attribute: after finalize, and after any job that adds
    arrays to a finished store (evaluation metrics).

    The document is the one ``zarr.consolidate_metadata`` writes (tests/store/test_layout.py), built
    from the members' own documents in one walk of the hierarchy (arrays' chunks are never listed):
    zarr's own walk costs ~25 ms of a one-batch sweep's fixed cost in event-loop round trips.
    """
    top = json.loads(root.read(ROOT_META) or b"null")
    if not isinstance(top, dict) or top.get("node_type") != "group":
        raise StoreError(f"Expected a zarr group at {root} to consolidate, got no readable {ROOT_META}.")
    top["consolidated_metadata"] = {"kind": "inline", "must_understand": False, "metadata": _members(root, "")}
    root.write(ROOT_META, [json.dumps(top, indent=2).encode()])


def _members(root: StoreLocation, group: str) -> dict[str, dict]:
    """Every node below ``group`` by path from the root, groups with an empty consolidated entry of
    their own (as zarr marks them), depth first."""
    found: dict[str, dict] = {}
    for name in root.children(group):
        path = f"{group}/{name}".lstrip("/")
        document = root.read(f"{path}/{ZARR_JSON}")
        if document is None:  # a chunk folder, a lock or a temporary file: not a node
            continue
        node = json.loads(document)
        found[path] = node
        if node.get("node_type") == "group":
            node["consolidated_metadata"] = {"kind": "inline", "must_understand": False, "metadata": {}}
            found.update(_members(root, path))
    return found
