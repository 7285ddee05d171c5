"""The layout's metadata documents, written directly, are those ``zarr.create_array`` writes."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from attrstream.engine.store import finalize_store
from attrstream.engine.store.layout import (
    ArraySpec,
    array_metadata,
    array_specs,
    compressors_for,
    create_arrays,
    create_layout,
    inner_chunk_rows,
    shard_key,
)
from attrstream.engine.store.location import locate
from attrstream.engine.store.spec import RunSpec

from ._helpers import small_spec, write_run


def create_with_zarr(group: zarr.Group, spec: RunSpec, arr: ArraySpec) -> zarr.Array:
    """``arr`` created by zarr itself from the options the layout documents describe."""
    if arr.dtype == "str":
        return group.create_array(arr.path, shape=arr.shape, dtype=str, dimension_names=arr.dims)
    dtype = np.dtype(arr.dtype)
    options = {"shape": arr.shape, "dtype": dtype, "compressors": compressors_for(spec, dtype),
               "dimension_names": arr.dims, "fill_value": np.nan if arr.dtype.startswith("float") else 0,
               "attributes": arr.attrs}
    if arr.per_example:
        rows = inner_chunk_rows(dtype.itemsize * math.prod(arr.row_shape), spec.unit)
        options |= {"chunks": (rows, *arr.row_shape), "shards": (spec.unit, *arr.row_shape)}
    else:
        options["chunks"] = arr.chunks or arr.shape
    return group.create_array(arr.path, **options)


def documents(root: Path) -> dict[str, dict]:
    """Every metadata document below the root (the root's own carries the run's metadata)."""
    return {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in root.rglob("zarr.json") if p.parent != root}


@pytest.mark.parametrize("overrides", [{}, {"has_mask": True, "num_classes": 1001}, {"compressor": "zstd", "dtype": "float32"}])
def test_layout_documents_equal_zarrs(tmp_path: Path, overrides: dict) -> None:
    spec = small_spec(**overrides)
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    created = create_layout(locate(ours), zarr.open_group(ours, mode="w"), spec)
    group = zarr.open_group(theirs, mode="w")
    for arr in array_specs(spec):
        create_with_zarr(group, spec, arr)
    assert documents(ours) == documents(theirs)
    assert set(created) == {arr.path for arr in array_specs(spec)}
    reopened = zarr.open_group(ours, mode="r")
    for path, handle in created.items():
        assert repr(handle.metadata) == repr(reopened[path].metadata)  # repr: NaN fill values compare equal


def test_job_arrays_under_a_new_group(tmp_path: Path) -> None:
    """A later job's arrays go under its own group; the groups between are created, the job group's
    attributes are kept."""
    spec = small_spec()
    root = zarr.open_group(tmp_path / "s.zarr", mode="w")
    job = root.create_group("metrics", attributes={"mine": 1})
    arrays = [ArraySpec("metrics/a/b/curve", "float32", (spec.n, 5), ("example", "step")),
              ArraySpec("metrics/progress", "uint8", (spec.n_units(),), ("unit",), per_example=False, chunks=(1,))]
    handles = create_arrays(locate(tmp_path / "s.zarr"), job, {a.path: array_metadata(spec, a) for a in arrays})
    handles["metrics/a/b/curve"][:] = np.arange(spec.n * 5, dtype=np.float32).reshape(spec.n, 5)
    reopened = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert dict(reopened["metrics"].attrs) == {"mine": 1}
    assert isinstance(reopened["metrics/a"], zarr.Group)
    np.testing.assert_array_equal(reopened["metrics/a/b/curve"][:], np.arange(spec.n * 5).reshape(spec.n, 5))
    with pytest.raises(ValueError, match="under 'metrics'"):
        create_arrays(locate(tmp_path / "s.zarr"), job, {"outputs/x": array_metadata(spec, arrays[1])})


def test_shard_keys_are_the_objects_zarr_writes(tmp_path: Path) -> None:
    spec = small_spec()
    write_run(tmp_path / "s.zarr", spec)
    group = zarr.open_group(tmp_path / "s.zarr", mode="r")
    for arr in array_specs(spec):
        if arr.per_example:
            for u in range(spec.n_units()):
                key = arr.shard_key(u)
                assert key == shard_key(arr.path, group[arr.path].ndim, u)
                assert (tmp_path / "s.zarr" / key).is_file(), key
    finalize_store(tmp_path / "s.zarr")
    assert zarr.open_group(tmp_path / "s.zarr", mode="r")["layers/fc/dataset_stats"].shape == (3, 6)


def test_consolidated_metadata_is_zarrs(tmp_path: Path) -> None:
    """Our consolidation writes the root document ``zarr.consolidate_metadata`` writes, and plain zarr
    opens the store from it alone."""
    spec = small_spec(has_mask=True)
    ours = tmp_path / "ours.zarr"
    write_run(ours, spec)
    finalize_store(ours)  # consolidates
    theirs = tmp_path / "theirs.zarr"
    shutil.copytree(ours, theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(theirs, zarr_format=3)
    assert json.loads((ours / "zarr.json").read_text()) == json.loads((theirs / "zarr.json").read_text())
    for member in ("layers/fc/zarr.json", "inputs/mask/zarr.json"):
        (ours / member).unlink()  # only the consolidated copy is left to open them from
    group = zarr.open_group(ours, mode="r", use_consolidated=True)
    assert group["layers/fc/dataset_stats"].shape == (3, 6)
    assert group["inputs/mask"].shape == (spec.n, 8, 6)
