"""Append in uneven batches spanning units -> the reader gives back what was appended."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

from attrstream.engine import open_run as lazy_open_run
from attrstream.engine.errors import StoreError
from attrstream.engine.store import describe_store, finalize_store, open_run, open_writer
from attrstream.kernels.names import STAT_NAMES
from tests.store._helpers import raw_maps, rows, small_spec, write_run

VARIANTS = [
    pytest.param(dict(dtype="float16", topk=0, has_mask=True), id="f16-logits-mask"),
    pytest.param(dict(dtype="float32", topk=3, has_mask=False, compressor="zstd"), id="f32-topk-zstd"),
    pytest.param(dict(dtype="float16", topk=2, has_mask=False, unit=3, n=7), id="f16-topk-unit3"),
]
MAP_RTOL = {"float16": 2.0**-11, "float32": 2.0**-24}  # half an ulp of the stored map / scale ∈ [-1, 1]


@pytest.mark.parametrize("overrides", VARIANTS)
def test_round_trip(tmp_path, overrides):
    spec = small_spec(**overrides)
    path = tmp_path / "run.zarr"
    writer = write_run(path, spec, sizes=(3, 5, 2))  # 3+5 spans units 0|1|2 with unit 4
    assert writer.units_written == spec.n_units() and writer.buffers_allocated <= 2
    expected = rows(spec, 0, spec.n)
    run = open_run(path)
    assert run.complete and run.n == spec.n and run.spec == spec
    assert run.layers == ("layer4.1.conv2", "fc")
    for key, value in run.inputs().items():
        np.testing.assert_array_equal(value, expected[f"inputs/{key}"], err_msg=key)
    assert ("mask" in run.inputs()) == spec.has_mask
    outputs = run.outputs()
    assert set(outputs) == ({"topk_index", "topk_prob"} if spec.topk else {"logits"}) | {"pred", "target", "score"}
    for key, value in outputs.items():
        np.testing.assert_array_equal(value, expected[f"outputs/{key}"], err_msg=key)
    maps = raw_maps(spec, 0, spec.n)
    readers = {"attributions/grad_x_input": lambda sel=slice(None): run.attribution("grad_x_input", sel),
               "attributions/saliency": lambda sel=slice(None): run.attribution("saliency", sel),
               "layers/layer4.1.conv2/grad_x_act": lambda sel=slice(None): run.grad_x_act("layer4.1.conv2", sel),
               "layers/layer4.1.conv2/grad_cam": lambda sel=slice(None): run.cam("layer4.1.conv2", sel)}
    for path_, read in readers.items():
        got = read()
        assert got.dtype == np.float32
        scale = expected[f"{path_}_scale"][:, None, None]
        # exact: stored × scale; close to the raw map within the storage dtype's rounding
        np.testing.assert_array_equal(got, expected[path_].astype(np.float32) * scale)
        np.testing.assert_allclose(got, maps[path_], rtol=0, atol=float(scale.max()) * MAP_RTOL[spec.dtype] * 1.01)
        np.testing.assert_array_equal(read([6, 0, 6]), got[[6, 0, 6]])  # unsorted, repeated rows
        np.testing.assert_array_equal(read(np.array([-1])), got[-1:])
    for layer in run.layers:
        np.testing.assert_array_equal(run.layer_stats(layer), expected[f"layers/{layer}/stats"])
        np.testing.assert_array_equal(run.layer_stats(layer, slice(2, 5)), expected[f"layers/{layer}/stats"][2:5])
    assert "grad_cam" not in run.group["layers/fc"]  # no spatial grid: no maps


def test_unknown_names_list_what_the_store_has(tmp_path):
    spec = small_spec()
    write_run(tmp_path / "run.zarr", spec)
    run = lazy_open_run(tmp_path / "run.zarr")
    with pytest.raises(StoreError, match=r"grad_x_input, saliency.*'salincy'.*Close matches: saliency"):
        run.attribution("salincy")
    with pytest.raises(StoreError, match=r"layer4.1.conv2, fc.*'layer4'"):
        run.layer_stats("layer4")
    with pytest.raises(StoreError, match=r"layer method of this store \(stats\), got 'grad_cam'"):
        run.cam("fc")
    with pytest.raises(StoreError, match="not finalized"):
        run.dataset_stats("fc")
    with pytest.raises(StoreError, match=r"example indices in \[-10, 10\)"):
        run.attribution("saliency", [10])
    with pytest.raises(StoreError, match="Expected an attrstream store"):
        open_run(tmp_path)


def test_layout_follows_design(tmp_path):
    spec = small_spec(has_mask=True)
    write_run(tmp_path / "run.zarr", spec)
    group = zarr.open_group(tmp_path / "run.zarr", mode="r")
    saliency = group["attributions/saliency"]
    assert saliency.shards == (4, 8, 6) and saliency.chunks == (4, 8, 6)
    assert saliency.metadata.dimension_names == ("example", "y", "x")
    assert saliency.attrs["scale"] == "attributions/saliency_scale"
    codecs = [type(c).__name__ for c in saliency.metadata.codecs[0].codecs]
    assert codecs == ["BytesCodec", "BloscCodec", "Crc32cCodec"]  # crc32c last
    assert group["inputs/thumbnail"].metadata.dimension_names == ("example", "thumb_y", "thumb_x", "rgb")
    assert group["progress/unit_done"].chunks == (1,)
    assert list(group["layers/layer4.1.conv2/stat"][:]) == list(STAT_NAMES)
    meta = group.attrs["attrstream"]
    assert meta["schema_version"] == 1 and meta["fingerprint"] == spec.fingerprint()
    assert meta["versions"]["zarr"] == zarr.__version__ and "map / scale" in meta["storage"]
    assert meta["spec"]["layers"][0]["name"] == "layer4.1.conv2"


def _groups(path):
    names = [""]
    group = zarr.open_group(path, mode="r")
    names += [name for name, node in group.members(max_depth=None) if isinstance(node, zarr.Group)]
    return names


@pytest.mark.parametrize("finalized", [False, True])
def test_xarray_opens_every_group(tmp_path, finalized):
    spec = small_spec(has_mask=True)
    path = tmp_path / "run.zarr"
    write_run(path, spec)
    if finalized:
        open_run(path)  # reading does not change anything
        from attrstream.engine.store import finalize_store

        finalize_store(path)
    groups = _groups(path)
    assert {"inputs", "outputs", "attributions", "layers/layer4.1.conv2", "layers/fc", "progress"} <= set(groups)
    for name in groups:
        ds = xr.open_zarr(path, group=name or None, consolidated=finalized)
        for var in ds.variables.values():
            var.values  # noqa: B018 - every variable decodes
    ds = xr.open_zarr(path, group="layers/layer4.1.conv2", consolidated=finalized)
    assert list(ds["stat"].values) == list(STAT_NAMES)
    assert ds["stats"].dims == ("example", "channel", "stat") and ds.sizes["example"] == spec.n


def test_describe_store(tmp_path):
    spec = small_spec()
    path = tmp_path / "run.zarr"
    writer = write_run(path, spec)
    assert writer.todo == [0, 1, 2]
    text = describe_store(path)
    assert "progress  3/3 units done" in text and '"model": "tiny"' in text
    line = next(ln for ln in text.splitlines() if ln.startswith("attributions/saliency "))
    assert "10×8×6" in line and "float16" in line and "960 B" in line  # raw = 10*8*6*2 bytes
    assert all(f"layers/{name}/stats" in text for name in ("layer4.1.conv2", "fc"))


def test_empty_run_is_complete_and_finalizes(tmp_path):
    spec = small_spec(n=0)
    with open_writer(tmp_path / "run.zarr", spec) as writer:
        assert writer.todo == []
    finalize_store(writer.path)
    run = open_run(tmp_path / "run.zarr")
    assert run.complete and run.attribution("saliency").shape == (0, 8, 6)
    assert np.isnan(run.dataset_stats("fc")).all()  # no example: nothing to pool
