"""The channel atlas from real stores: ranked by relevance when the stat coordinate has it, else by activation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from attrstream.engine.render import reading, render_report
from attrstream.engine.store import open_run
from attrstream.engine.store.finalize import consolidate
from attrstream.engine.store.layout import ArraySpec, array_metadata, create_arrays
from attrstream.engine.store.location import locate

from .conftest import write_store


def rewrite_stats(path: Path, layer: str, names: list[str], stats: np.ndarray) -> None:
    """Store ``stats [n, C, len(names)]`` as ``layers/<layer>/stats`` with ``names`` as its ``stat`` coordinate."""
    run = open_run(path)
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    for name in ("stats", "stat", "dataset_stats"):  # the pooled columns would no longer match the names
        del group[f"layers/{layer}/{name}"]
    arrays = (ArraySpec(f"layers/{layer}/stats", "float32", stats.shape, ("example", "channel", "stat")),
              ArraySpec(f"layers/{layer}/stat", "str", (len(names),), ("stat",), per_example=False))
    create_arrays(locate(path), group[f"layers/{layer}"], {arr.path: array_metadata(run.spec, arr) for arr in arrays})
    group[f"layers/{layer}/stats"][:] = stats
    group[f"layers/{layer}/stat"][:] = np.array(names)
    consolidate(locate(path))


def with_relevance(path: Path, layer: str, relevance: np.ndarray) -> None:
    """Set (or add) the ``relevance`` column of ``layers/<layer>/stats``."""
    run = open_run(path)
    names, stats = list(run.stat_names(layer)), run.layer_stats(layer)
    if "relevance" not in names:
        names.append("relevance")
        stats = np.concatenate([stats, np.zeros_like(stats[..., :1])], axis=-1)
    stats[..., names.index("relevance")] = relevance
    rewrite_stats(path, layer, names, stats)


def without_relevance(path: Path, layer: str) -> None:
    """Drop the ``relevance`` column, as in a store written before that statistic existed."""
    run = open_run(path)
    names, stats = list(run.stat_names(layer)), run.layer_stats(layer)
    keep = [i for i, name in enumerate(names) if name != "relevance"]
    rewrite_stats(path, layer, [names[i] for i in keep], stats[..., keep])


def test_the_atlas_ranks_channels_by_relevance_and_draws_both_rankings(tmp_path):
    path = write_store(tmp_path / "run.zarr", seed=0)
    mean = open_run(path).layer_stats("layer1")[:, :, 0]
    with_relevance(path, "layer1", -mean)  # the least active channels matter most here
    run = open_run(path)
    done = reading.done_examples(run)
    ranking, channels, means, tops = reading.atlas_channels(run, "layer1", done, 3, 4)
    assert ranking == "relevance"
    np.testing.assert_array_equal(channels, np.argsort(mean.mean(0))[:3])
    np.testing.assert_allclose(means, -mean.mean(0), rtol=1e-5)
    by_relevance = tops["relevance"].result()[1][channels[0]]
    np.testing.assert_array_equal(by_relevance, np.argsort(mean[:, channels[0]])[:4])  # lowest activation first
    index = render_report(path, tmp_path / "report", examples=2, layers=["layer1"]).read_text()
    assert "highest mean relevance" in index and "by activation and by relevance" in index
    assert (tmp_path / "report" / "features_layer1.png").stat().st_size > 10_000


def test_without_relevance_the_atlas_ranks_by_activation_and_says_so(tmp_path):
    store = write_store(tmp_path / "run.zarr", seed=0)
    without_relevance(store, "layer1")
    run = open_run(store)
    assert "relevance" not in run.stat_names("layer1")
    ranking, channels, _, _ = reading.atlas_channels(run, "layer1", reading.done_examples(run), 6, 4)
    assert ranking == "mean"
    np.testing.assert_array_equal(channels, np.argsort(-run.layer_stats("layer1")[:, :, 0].mean(0), kind="stable")[:6])
    index = render_report(store, tmp_path / "report", examples=2, layers=["layer1"]).read_text()
    assert "highest mean activation" in index and "this store has no relevance statistic" in index
