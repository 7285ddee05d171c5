"""Finalize: exact pooled dataset statistics, skipped and NaN examples, idempotence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from attrstream.engine.errors import StoreError
from attrstream.engine.store import LayerSpec, RunningPools, finalize_store, open_run, open_writer
from attrstream.engine.store import finalize as finalize_module
from tests.store._helpers import batches, rows, small_spec, write_run


def per_example_stats(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """[n, C, P] activations and gradients -> [n, C, 6] float32 stats, as the kernels compute them."""
    a, g = acts.astype(np.float64), grads.astype(np.float64)
    stats = np.stack([a.mean(-1), a.std(-1), a.min(-1), a.max(-1), (a > 0).mean(-1), (a * g).sum(-1)], axis=-1)
    return stats.astype(np.float32)


def test_pooled_stats_equal_numpy_over_the_raw_activations(tmp_path):
    spec = small_spec(n=11, unit=4, layers=(LayerSpec("layer4.1.conv2", 6, (3, 4)),), layer_methods=("stats",))
    rng = np.random.default_rng(0)
    acts = (rng.standard_normal((spec.n, 6, 12)) * rng.uniform(0.5, 3, (1, 6, 1)) + rng.uniform(-1, 1, (1, 6, 1)))
    acts = acts.astype(np.float32)
    grads = rng.standard_normal(acts.shape).astype(np.float32)
    data = rows(spec, 0, spec.n)
    data["layers/layer4.1.conv2/stats"] = per_example_stats(acts, grads)
    data["inputs/skipped"][[2, 9]] = 1  # skipped images are left out of the pool
    path = tmp_path / "run.zarr"
    with open_writer(path, spec) as writer:
        for lo in range(0, spec.n, 5):
            writer.append(lo, {k: v[lo : lo + 5] for k, v in data.items()})
    finalize_store(writer.path)
    got = open_run(path).dataset_stats("layer4.1.conv2")
    assert got.dtype == np.float64 and got.shape == (6, 6)

    kept = np.delete(acts, [2, 9], axis=0).astype(np.float64)
    pooled = kept.transpose(1, 0, 2).reshape(6, -1)  # every position of every kept example
    relevance = (kept * np.delete(grads, [2, 9], axis=0)).sum(-1).mean(0)  # mean over kept examples of Σ a·g
    truth = np.stack([pooled.mean(1), pooled.std(1), pooled.min(1), pooled.max(1), (pooled > 0).mean(1), relevance], -1)
    np.testing.assert_array_equal(got[:, 2:4], truth[:, 2:4])  # min / max: exact
    np.testing.assert_allclose(got, truth, rtol=2e-6, atol=1e-6)  # per-example stats were float32

    s = np.delete(data["layers/layer4.1.conv2/stats"], [2, 9], axis=0).astype(np.float64)
    formula = np.stack([s[..., 0].mean(0), np.sqrt((s[..., 1] ** 2).mean(0) + s[..., 0].var(0)),
                        s[..., 2].min(0), s[..., 3].max(0), s[..., 4].mean(0), s[..., 5].mean(0)], -1)
    np.testing.assert_allclose(got, formula, rtol=1e-13, atol=1e-15)  # composition itself is exact
    attrs = zarr.open_group(path, mode="r")["layers/layer4.1.conv2/dataset_stats"].attrs
    assert attrs["examples"] == 9 and attrs["skipped"] == 2 and attrs["nan_excluded"] == 0
    assert attrs["relevance_nan_excluded"] == 0


def test_nan_examples_are_left_out_per_channel(tmp_path):
    spec = small_spec(n=4, layers=(LayerSpec("fc", 2),), layer_methods=("stats",))
    data = rows(spec, 0, 4)
    stats = np.abs(data["layers/fc/stats"])
    stats[1, 0, :] = np.nan  # a NaN activation in example 1, channel 0
    data["layers/fc/stats"] = stats
    with open_writer(tmp_path / "run.zarr", spec) as writer:
        writer.append(0, data)
    finalize_store(writer.path)
    got = open_run(tmp_path / "run.zarr").dataset_stats("fc")
    np.testing.assert_allclose(got[0, 0], stats[[0, 2, 3], 0, 0].astype(np.float64).mean(), rtol=1e-12)
    np.testing.assert_allclose(got[1, 0], stats[:, 1, 0].astype(np.float64).mean(), rtol=1e-12)
    assert np.isfinite(got).all()


def test_a_nan_gradient_leaves_relevance_out_and_the_activation_statistics_in(tmp_path):
    """NaN logits give NaN gradients over finite activations: only relevance loses the example."""
    spec = small_spec(n=4, layers=(LayerSpec("fc", 2),), layer_methods=("stats",))
    data = rows(spec, 0, 4)
    stats = data["layers/fc/stats"]
    stats[1, :, 5] = np.nan  # example 1: relevance NaN in both channels
    with open_writer(tmp_path / "run.zarr", spec) as writer:
        writer.append(0, data)
    finalize_store(writer.path)
    got = open_run(tmp_path / "run.zarr").dataset_stats("fc")
    s = stats.astype(np.float64)
    np.testing.assert_allclose(got[:, 0], s[:, :, 0].mean(0), rtol=1e-12)  # every example's mean
    np.testing.assert_array_equal(got[:, 3], s[:, :, 3].max(0))
    np.testing.assert_allclose(got[:, 5], s[[0, 2, 3], :, 5].mean(0), rtol=1e-12)
    attrs = zarr.open_group(tmp_path / "run.zarr", mode="r")["layers/fc/dataset_stats"].attrs
    assert attrs["nan_excluded"] == 0 and attrs["relevance_nan_excluded"] == 2


def test_finalize_refuses_an_incomplete_store_and_is_idempotent(tmp_path):
    spec = small_spec()
    path = tmp_path / "run.zarr"
    write_run(path, spec, units=[0, 2])
    with pytest.raises(StoreError, match=r"1 of 3 missing \(units \[1\]\); rerun the sweep"):
        finalize_store(path)
    assert "dataset_stats" not in zarr.open_group(path, mode="r")["layers/fc"]
    write_run(path, spec)
    finalize_store(path)
    first = {layer: open_run(path).dataset_stats(layer) for layer in ("fc", "layer4.1.conv2")}
    finalize_store(path)
    run = open_run(path)
    for layer, value in first.items():
        np.testing.assert_array_equal(run.dataset_stats(layer), value)
    assert "finalized" in run.meta
    consolidated = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    assert "layers/fc/dataset_stats" in consolidated and "progress/unit_done" in consolidated
    assert not list(path.glob("*.lock"))


def _pooled(path) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    group = zarr.open_group(path, mode="r")
    arrays = {layer: group[f"layers/{layer}/dataset_stats"] for layer in ("fc", "layer4.1.conv2")}
    return ({k: a[:] for k, a in arrays.items()},
            {k: {n: v for n, v in a.attrs.items() if n != "pooling"} for k, a in arrays.items()})


def test_pools_the_writer_fed_give_the_very_numbers_of_reading_every_unit_back(tmp_path, monkeypatch):
    """What a sweep does (the writer feeds RunningPools, finalize takes them) against a finalize that
    reads every unit back: bit-equal pooled statistics and attributes, skipped and NaN examples in."""
    spec = small_spec(n=23, unit=4)  # 6 units, the last one short; batches span units
    data = rows(spec, 0, spec.n)
    data["inputs/skipped"][[1, 17]] = 1
    data["layers/fc/stats"][5, 0, 0] = np.nan
    path, pools = tmp_path / "run.zarr", RunningPools(spec)
    with open_writer(path, spec, on_unit_done=pools) as writer:
        for lo, hi in batches(spec.n, (3, 5, 2)):
            writer.append(lo, {k: v[lo:hi] for k, v in data.items()})
    assert pools.complete and pools.skipped == 2
    with monkeypatch.context() as patched:
        patched.setattr(finalize_module, "pool_layer", lambda *_: pytest.fail("read a unit back"))
        finalize_store(path, pooled=pools)
    from_pools = _pooled(path)
    finalize_store(path)  # no pools: every unit read back
    read_back = _pooled(path)
    for layer, value in read_back[0].items():
        np.testing.assert_array_equal(from_pools[0][layer], value)
    assert from_pools[1] == read_back[1] and read_back[1]["fc"]["skipped"] == 2
    assert read_back[1]["fc"]["nan_excluded"] == 1


def test_pools_of_a_resumed_run_are_not_used(tmp_path):
    """A writer that stored only some units (a resume) holds partial pools: finalize reads back."""
    spec = small_spec()
    path = tmp_path / "run.zarr"
    write_run(path, spec, units=[0, 2])
    pools = RunningPools(spec)
    write_run(path, spec, on_unit_done=pools)  # unit 1 only
    assert not pools.complete
    finalize_store(path, pooled=pools)
    resumed = _pooled(path)
    write_run(tmp_path / "whole.zarr", spec)
    finalize_store(tmp_path / "whole.zarr")
    whole = _pooled(tmp_path / "whole.zarr")
    for layer, value in whole[0].items():
        np.testing.assert_array_equal(resumed[0][layer], value)
