"""The kernels' statistic order is the store's ``stat`` coordinate, and each named column holds
that statistic: cross-checked on a real store against numpy statistics of the real activations
(and, for relevance, of the real gradients)."""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from attrstream.engine import open_run, sweep
from attrstream.engine.data import FakeImages
from attrstream.engine.render.activations import activation_figure
from attrstream.engine.store import RunSpec, finalize_store, layout
from attrstream.engine.store.finalize import consolidate
from attrstream.engine.store.location import locate
from attrstream.kernels.names import ACTIVATION_STAT_NAMES, STAT_NAMES
from tests.engine._cli import TINY_SWEEP, run_cli
from tests.engine.models import tiny_cnn
from tests.engine.test_cli_errors import assert_one_line_error, attrstream

NUMPY_STATS = {
    "mean": lambda a, g: a.mean(-1),
    "std": lambda a, g: a.std(-1),
    "min": lambda a, g: a.min(-1),
    "max": lambda a, g: a.max(-1),
    "frac_pos": lambda a, g: (a > 0).mean(-1),
    "relevance": lambda a, g: (a * g).sum(-1),
}


def test_stat_columns_are_named_by_the_store_coordinate(tmp_path) -> None:
    model, data = tiny_cnn(), FakeImages(n=6, image_size=12, num_classes=5)
    path = tmp_path / "run.zarr"
    run = sweep(model, data, path, layers=["stage2"], methods=["stats"], batch_size=4, progress=False)

    coordinate = tuple(str(v) for v in zarr.open_group(path, mode="r")["layers/stage2/stat"][:])
    assert coordinate == STAT_NAMES == run.stat_names("stage2")
    assert set(NUMPY_STATS) == set(coordinate)  # every column has an independent reference below

    x = torch.stack([data[i][0] for i in range(len(data))])
    act = model.stage2(model.stage1(x))
    logits = model.head(act.mean((2, 3)))
    (grad,) = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), act)  # target: pred
    acts, grads = (t.detach().flatten(2).double().numpy() for t in (act, grad))  # [N, C, H*W]
    stats = run.layer_stats("stage2")
    ds = xr.open_zarr(path, group="layers/stage2", consolidated=False)
    for name in coordinate:
        np.testing.assert_allclose(stats[..., coordinate.index(name)], NUMPY_STATS[name](acts, grads),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(ds["stats"].sel(stat=name).values, stats[..., coordinate.index(name)])


# -- stores written before relevance -------------------------------------------------------------

def write_as_before_relevance(path: Path) -> None:
    """Rewrite a finished store as attrstream wrote it before relevance: five statistics per channel
    (``stats`` [N, C, 5], a five-name ``stat`` coordinate and root ``stat_names``, pooled [C, 5]
    ``dataset_stats``), the activation's statistics unchanged, metadata consolidated again."""
    group = zarr.open_group(path, mode="r+")
    meta = dict(group.attrs["attrstream"])
    spec = RunSpec.from_dict(meta["spec"])
    five = len(ACTIVATION_STAT_NAMES)
    with mock.patch.object(layout, "STAT_NAMES", ACTIVATION_STAT_NAMES):  # the old layout, from the same code
        for arr in layout.array_specs(spec):
            if arr.path.endswith(("/stats", "/stat")):
                kept = group[arr.path][:]
                del group[arr.path]
                parent = group[arr.path.rpartition("/")[0]]
                created = layout.create_arrays(locate(path), parent, {arr.path: layout.array_metadata(spec, arr)})[arr.path]
                created[:] = kept[..., :five] if arr.dtype != "str" else kept[:five]
    for name in (lay.name for lay in spec.layers):
        pooled = group[f"layers/{name}/dataset_stats"]
        kept, attrs = pooled[:, :five], dict(pooled.attrs)
        del attrs["relevance_nan_excluded"]
        group.create_array(f"layers/{name}/dataset_stats", shape=kept.shape, dtype="float64", attributes=attrs,
                           dimension_names=("channel", "stat"), fill_value=np.nan, overwrite=True)[:] = kept
    group.attrs["attrstream"] = {**meta, "stat_names": list(ACTIVATION_STAT_NAMES)}
    consolidate(locate(path))


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[list[str], Path]:
    """The CLI command of a tiny sweep and its finished store (statistics of two layers)."""
    path = tmp_path_factory.mktemp("stats") / "run.zarr"
    command = [*TINY_SWEEP, "--layers", "stage1,stage2", "--methods", "stats,grad_x_act", "--out", str(path)]
    assert run_cli(*command) == 0
    return command, path


def test_a_store_written_before_relevance_reads_by_its_coordinate(swept, tmp_path) -> None:
    _, new = swept
    old = tmp_path / "old.zarr"
    shutil.copytree(new, old)
    write_as_before_relevance(old)
    before, after = open_run(old), open_run(new)
    five = len(ACTIVATION_STAT_NAMES)
    for layer in ("stage1", "stage2"):
        assert before.stat_names(layer) == ACTIVATION_STAT_NAMES and after.stat_names(layer) == STAT_NAMES
        np.testing.assert_array_equal(before.layer_stats(layer), after.layer_stats(layer)[..., :five])
        np.testing.assert_array_equal(before.dataset_stats(layer), after.dataset_stats(layer)[:, :five])
        ds = before.to_xarray(f"layers/{layer}")
        assert list(ds["stat"].values) == list(ACTIVATION_STAT_NAMES) and ds["stats"].shape[-1] == five
        for run, drawn in ((before, False), (after, True)):  # the report draws what the coordinate names
            fig = activation_figure(layer, run.layer_stats(layer), run.dataset_stats(layer), run.stat_names(layer))
            assert ("relevance" in {ax.get_title() for ax in fig.axes}) == drawn
    finalize_store(old)  # pooling again goes by the coordinate: the same five columns
    for layer in ("stage1", "stage2"):
        np.testing.assert_array_equal(open_run(old).dataset_stats(layer), after.dataset_stats(layer)[:, :five])


def test_resuming_a_store_written_before_relevance_is_refused_in_one_line(swept, tmp_path) -> None:
    command, new = swept
    old = tmp_path / "old.zarr"
    shutil.copytree(new, old)
    write_as_before_relevance(old)
    command = [*command[:-1], str(old)]
    assert_one_line_error(attrstream(*command), f"Store {old} holds the per-channel statistics mean, std, min, max, "
                          "frac_pos, this attrstream writes mean, std, min, max, frac_pos, relevance",
                          "It stays readable; pass --overwrite")
    assert open_run(old).stat_names("stage2") == ACTIVATION_STAT_NAMES  # refused before anything was written
    assert run_cli(*command, "--overwrite") == 0
    assert open_run(old).stat_names("stage2") == STAT_NAMES
