"""Whole shards written by the writer itself are the bytes zarr writes, and plain zarr reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import attrstream.engine.store.layout as layout_module
import attrstream.engine.store.writer as writer_module
from attrstream.engine.store import example_arrays, open_writer
from attrstream.engine.store.layout import WRITE_CONFIG, compressors_for
from attrstream.engine.store.shards import ShardEncoder
from tests.store._helpers import feed, rows, small_spec


def _chunk_objects(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file() and "/c/" in p.as_posix()}


@pytest.mark.parametrize(("compressor", "unit", "chunk_bytes"), [
    ("lz4", 4, 4 << 20),  # units 0, 1 whole, unit 2 short: one inner chunk, padded as zarr pads
    ("zstd", 4, 4 << 20),
    ("lz4", 8, 200),  # small inner chunks: the short unit 1 holds 2 rows, the chunks past the end are absent
])
def test_direct_shards_equal_zarrs_own_bytes_and_read_back(tmp_path, monkeypatch, compressor, unit, chunk_bytes):
    monkeypatch.setattr(layout_module, "CHUNK_TARGET_BYTES", chunk_bytes)
    spec = small_spec(n=10, unit=unit, compressor=compressor)
    direct, through_zarr = tmp_path / "direct.zarr", tmp_path / "zarr.zarr"
    with open_writer(direct, spec) as w:
        assert all(w._encoders.values()), "every array of the layout is written directly"
        feed(w, spec)
    with monkeypatch.context() as m:
        m.setattr(writer_module.ShardEncoder, "for_array", classmethod(lambda cls, array: None))
        with open_writer(through_zarr, spec) as w:
            feed(w, spec)
    ours, theirs = _chunk_objects(direct), _chunk_objects(through_zarr)
    assert ours.keys() == theirs.keys() and len(ours) > 10
    assert [k for k in ours if ours[k] != theirs[k]] == []
    group = zarr.open_group(direct, mode="r", use_consolidated=False)
    expected = rows(spec, 0, spec.n)
    for arr in example_arrays(spec):
        np.testing.assert_array_equal(group[arr.path][:], expected[arr.path], err_msg=arr.path)


def test_arrays_in_another_codec_layout_go_through_zarr(tmp_path):
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    data = np.arange(8 * 3, dtype="float32").reshape(8, 3)
    blosc, crc = compressors_for(small_spec(), data.dtype)
    ours = group.create_array("ours", shape=data.shape, chunks=(2, 3), shards=(4, 3), dtype=data.dtype,
                              compressors=(blosc, crc), config=WRITE_CONFIG)
    no_crc = group.create_array("no_crc", shape=data.shape, chunks=(2, 3), shards=(4, 3), dtype=data.dtype,
                                compressors=(blosc,), config=WRITE_CONFIG)
    unsharded = group.create_array("unsharded", shape=data.shape, chunks=(4, 3), dtype=data.dtype, compressors=(blosc, crc),
                                   config=WRITE_CONFIG)
    split_rows = group.create_array("split", shape=data.shape, chunks=(2, 1), shards=(4, 3), dtype=data.dtype,
                                    compressors=(blosc, crc), config=WRITE_CONFIG)
    skipping_empty = ours.with_config({"write_empty_chunks": False})
    assert ShardEncoder.for_array(ours) is not None
    assert [ShardEncoder.for_array(a) for a in (no_crc, unsharded, split_rows, skipping_empty)] == [None] * 4
    encoder = ShardEncoder.for_array(ours)
    with pytest.raises(ValueError, match="Expected 1 to 4 rows for a shard, got 5"):
        encoder.inner_chunks(data[:5])
    shard = tmp_path / "g.zarr/ours/c/1/0"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(encoder.encode(data[4:]))
    np.testing.assert_array_equal(ours[4:], data[4:])


def test_inner_chunks_are_encoded_as_their_rows_arrive(tmp_path, monkeypatch):
    """An inner chunk is queued for encoding once its rows are in, before its unit is complete, so
    that a unit's completion (the last unit's flush is on the critical path) leaves only the rest;
    the shard stored is the one its rows make."""
    monkeypatch.setattr(layout_module, "CHUNK_TARGET_BYTES", 200)
    spec = small_spec(n=8, unit=8)
    data, path = rows(spec, 0, 8), tmp_path / "run.zarr"
    with open_writer(path, spec) as w:
        chunk = w._encoders["attributions/saliency"].chunk_rows
        assert 1 < chunk < spec.unit
        w.append(0, {k: v[: chunk + 1] for k, v in data.items()})
        assert len(w._open[0].encoding["attributions/saliency"]) == 1  # the full chunk, not the partial one
        w.append(chunk + 1, {k: v[chunk + 1 :] for k, v in data.items()})
    stored = zarr.open_group(path, mode="r")
    for key, value in data.items():
        np.testing.assert_array_equal(stored[key][:], value, err_msg=key)
