"""Downstream readers of a store: ``Run.to_xarray`` (decoded maps) and an independent Zarr v3 reader."""

from __future__ import annotations

import numpy as np
import pytest

from attrstream.engine.errors import StoreError
from attrstream.engine.store import open_run
from tests.render.conftest import write_store

xr = pytest.importorskip("xarray")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return open_run(write_store(tmp_path_factory.mktemp("xr") / "run.zarr", seed=3))


@pytest.mark.parametrize("lazy", [True, False], ids=["dask", "numpy"])
def test_maps_are_decoded_and_examples_carry_their_coordinates(run, lazy):
    if lazy:
        pytest.importorskip("dask")
    ds = run.to_xarray("attributions", lazy=lazy)
    assert type(ds["grad_x_input"].data).__module__.startswith("dask" if lazy else "numpy")
    np.testing.assert_array_equal(ds["grad_x_input"].values, run.attribution("grad_x_input"))
    assert "grad_x_input_scale" not in ds
    inputs = run.inputs()
    np.testing.assert_array_equal(ds["example"].values, inputs["index"])
    np.testing.assert_array_equal(ds["label"].values, inputs["label"])
    np.testing.assert_array_equal(ds["pred"].values, run.outputs()["pred"])
    assert ds["done"].values.all()
    picked = ds.sel(example=int(inputs["index"][5]))
    np.testing.assert_array_equal(picked["saliency"].values, run.attribution("saliency", [5])[0])


def test_plain_open_zarr_gives_the_scaled_values_to_xarray_undoes(run):
    plain = xr.open_zarr(str(run.path), group="attributions", consolidated=False)
    stored = plain["grad_x_input"].values
    assert stored.dtype == np.float16 and np.abs(stored).max() == 1.0  # map / scale, not the map
    np.testing.assert_allclose(stored * plain["grad_x_input_scale"].values[:, None, None],
                               run.to_xarray("attributions")["grad_x_input"].values, rtol=1e-6)


def test_layer_group_has_stat_names_channels_and_decoded_layer_maps(run):
    layer = run.layers[1]
    ds = run.to_xarray(f"layers/{layer}", lazy=False)
    assert list(ds["stat"].values) == list(run.stat_names(layer))
    np.testing.assert_array_equal(ds["stats"].sel(stat="mean").values, run.layer_stats(layer)[..., 0])
    np.testing.assert_array_equal(ds["grad_cam"].values, run.cam(layer))
    np.testing.assert_array_equal(ds["channel"].values, np.arange(run.spec.layers[1].channels))
    np.testing.assert_array_equal(ds["dataset_stats"].values, run.dataset_stats(layer))


def test_inputs_group_turns_index_and_label_into_coordinates(run):
    ds = run.to_xarray("inputs", lazy=False)
    assert "index" not in ds.data_vars and "label" not in ds.data_vars
    assert ds["thumbnail"].dims == ("example", "thumb_y", "thumb_x", "rgb")


def test_unknown_group_names_the_groups(run):
    with pytest.raises(StoreError, match=r"layers/layer1.*Close matches: layers/layer1"):
        run.to_xarray("layers/layer")


def test_tensorstore_reads_a_map_and_its_scale_as_is(run):
    ts = pytest.importorskip("tensorstore")

    def read(path):
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{run.path}/{path}"}}
        return ts.open(spec, read=True).result().read().result()

    decoded = read("attributions/grad_x_input").astype(np.float32) * read("attributions/grad_x_input_scale")[:, None, None]
    np.testing.assert_array_equal(decoded, run.attribution("grad_x_input"))
    np.testing.assert_array_equal(read("inputs/index"), run.inputs()["index"])
