"""Shared test helpers: a small spec and deterministic per-example rows (a rerun regenerates them)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from attrstream.engine.store import LayerSpec, RunSpec, StoreWriter, array_specs, example_arrays, open_writer


def small_spec(**overrides) -> RunSpec:
    fields = dict(
        n=10,  # not a multiple of the unit: last unit short
        input_shape=(3, 8, 6),
        num_classes=7,
        methods=("grad_x_input", "saliency"),
        layer_methods=("stats", "grad_x_act", "grad_cam"),
        layers=(LayerSpec("layer4.1.conv2", 4, (2, 3)), LayerSpec("fc", 3, None)),  # dots; no spatial grid
        unit=4,
        thumb_size=(4, 5),
        config={"model": "tiny", "weights_sha256": "ab" * 32},
    )
    fields.update(overrides)
    return RunSpec(**fields)


def raw_maps(spec: RunSpec, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Unscaled float32 maps per map array path, from a generator seeded by example index."""
    out: dict[str, list[np.ndarray]] = {}
    for i in range(lo, hi):
        rng = np.random.default_rng([i, 1])
        for arr in example_arrays(spec):
            if "scale" in arr.attrs:
                out.setdefault(arr.path, []).append(rng.standard_normal(arr.row_shape).astype(np.float32) * 1e-6)
    return {k: np.stack(v) for k, v in out.items()}


def rows(spec: RunSpec, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Rows [lo, hi) of every per-example array, as the sweep would hand them over."""
    out: dict[str, np.ndarray] = {}
    for arr in example_arrays(spec):
        if "map" in arr.attrs or "scale" in arr.attrs:
            continue
        per = []
        for i in range(lo, hi):
            rng = np.random.default_rng([i, zlib.crc32(arr.path.encode())])
            if arr.dtype.startswith("float"):
                per.append(rng.standard_normal(arr.row_shape).astype(arr.dtype))
            else:
                per.append(rng.integers(0, 2 if arr.path == "inputs/skipped" else 200, arr.row_shape).astype(arr.dtype))
        out[arr.path] = np.stack(per) if per else np.zeros((0, *arr.row_shape), arr.dtype)
    if "inputs/skipped" in out:
        out["inputs/skipped"][:] = 0
    for path, maps in raw_maps(spec, lo, hi).items():
        scale = np.abs(maps).reshape(len(maps), -1).max(axis=1)
        out[path] = (maps / scale[:, None, None]).astype(spec.dtype)
        out[f"{path}_scale"] = scale.astype(np.float32)
    return out


def batches(n: int, sizes: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) batches of the given sizes, cycled until n."""
    sizes, out, lo, k = list(sizes), [], 0, 0
    while lo < n:
        hi = min(n, lo + sizes[k % len(sizes)])
        out.append((lo, hi))
        lo, k = hi, k + 1
    return out


def todo_ranges(writer: StoreWriter) -> list[tuple[int, int]]:
    """The todo units merged into contiguous example ranges (a batch may then span two units)."""
    ranges: list[list[int]] = []
    for u in writer.todo:
        start, stop = writer.unit_range(u)
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = stop
        else:
            ranges.append([start, stop])
    return [(a, b) for a, b in ranges]


def feed(writer: StoreWriter, spec: RunSpec, sizes: Iterable[int] = (3, 5, 2)) -> None:
    for start, stop in todo_ranges(writer):
        for lo, hi in batches(stop - start, sizes):
            writer.append(start + lo, rows(spec, start + lo, start + hi))


def write_run(path: Path, spec: RunSpec, sizes: Iterable[int] = (3, 5, 2), **kwargs) -> StoreWriter:
    """Write every todo unit in uneven batches that span units; returns the closed writer."""
    with open_writer(path, spec, **kwargs) as writer:
        feed(writer, spec, sizes)
    return writer


def assert_stores_equal(a: Path, b: Path, spec: RunSpec) -> None:
    import zarr

    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    for arr in array_specs(spec):
        np.testing.assert_array_equal(np.asarray(ga[arr.path][:]), np.asarray(gb[arr.path][:]), err_msg=arr.path)
