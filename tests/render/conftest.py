"""Small real stores on disk, written with the real store writer, for the renderer's tests.

The data are random but structured like a sweep's: one bright blob per image (its mask), maps
peaked on the blob, logits favouring the label, channel statistics with a few strong channels.
Different seeds give different data everywhere, so every figure must change with the seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attrstream.engine.store import (
    LayerSpec,
    RunSpec,
    example_arrays,
    finalize_store,
    open_writer,
)

CLASS_NAMES = ["disc", "ring", "bar", "dot"]


def make_spec(n: int = 40, unit: int = 16) -> RunSpec:
    return RunSpec(
        n=n,
        input_shape=(3, 32, 32),
        num_classes=len(CLASS_NAMES),
        methods=("grad_x_input", "saliency"),
        layer_methods=("stats", "grad_x_act", "grad_cam"),
        layers=(LayerSpec("layer1", 8, (8, 8)), LayerSpec("block.2", 12, (4, 4))),  # dotted name: file names
        unit=unit,  # 40 / 16: the last unit is short
        thumb_size=(32, 32),
        has_mask=True,
        config={"class_names": CLASS_NAMES, "model": "toy-cnn", "dataset": "blobs"},
    )


def _blob(centre: np.ndarray, size: int, width: float) -> np.ndarray:
    """[n, size, size] Gaussian bumps at ``centre`` [n, 2] (fractions of the image)."""
    grid = (np.arange(size) + 0.5) / size
    dy = grid[None, :, None] - centre[:, 0, None, None]
    dx = grid[None, None, :] - centre[:, 1, None, None]
    return np.exp(-(dy**2 + dx**2) / (2 * width**2))


def _scaled(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.abs(maps).reshape(len(maps), -1).max(1).astype(np.float32)
    return (maps / np.where(scale == 0, 1, scale)[:, None, None]).astype(np.float16), scale


def example_data(spec: RunSpec, seed: int) -> dict[str, np.ndarray]:
    """Every per-example array of ``spec`` for all ``spec.n`` examples."""
    rng = np.random.default_rng(seed)
    n, (_, h, w), k = spec.n, spec.input_shape, spec.num_classes
    centre = rng.uniform(0.25, 0.75, (n, 2))
    label = rng.integers(0, k, n)
    thumb = _blob(centre, spec.thumb_size[0], 0.1)[..., None] * rng.uniform(100, 255, (n, 1, 1, 3))
    thumb += rng.uniform(0, 60, (n, *spec.thumb_size, 3))
    logits = rng.normal(0, 1, (n, k)) + 3 * np.eye(k)[label]
    data: dict[str, np.ndarray] = {
        "inputs/index": np.arange(n, dtype=np.int64) + 1000,
        "inputs/label": label.astype(np.int64),
        "inputs/thumbnail": np.clip(thumb, 0, 255).astype(np.uint8),
        "inputs/skipped": np.zeros(n, np.uint8),
        "inputs/mask": (_blob(centre, h, 0.1) > 0.5).astype(np.uint8),
        "outputs/logits": logits.astype(np.float32),
        "outputs/pred": logits.argmax(1).astype(np.int64),
        "outputs/target": logits.argmax(1).astype(np.int64),
        "outputs/score": logits.max(1).astype(np.float32),
    }
    peak = _blob(centre, h, 0.08)
    maps = {
        "attributions/grad_x_input": peak * rng.normal(0.3, 1, (n, h, w)),
        "attributions/saliency": peak * rng.uniform(0.5, 1, (n, h, w)) + 0.05 * rng.uniform(0, 1, (n, h, w)),
    }
    for layer in spec.layers:
        size = layer.map_shape[0]
        coarse = _blob(centre, size, 0.15)
        maps[f"layers/{layer.name}/grad_cam"] = coarse * rng.uniform(0.5, 1.5, (n, 1, 1))
        maps[f"layers/{layer.name}/grad_x_act"] = coarse * rng.normal(0.2, 1, (n, size, size))
        strength = rng.gamma(1.0, 1.0, layer.channels)  # a few strong channels
        mean = rng.gamma(2.0, 1.0, (n, layer.channels)) * strength
        std = mean * rng.uniform(0.5, 1.5, (n, layer.channels))
        frac = rng.uniform(0.2, 0.9, (n, layer.channels))
        relevance = mean * rng.normal(0.1, 1, (n, layer.channels))  # signed: channels for and against the class
        data[f"layers/{layer.name}/stats"] = np.stack(
            [mean, std, np.zeros_like(mean), mean + 3 * std, frac, relevance], axis=-1
        ).astype(np.float32)
    for key, value in maps.items():
        data[key], data[f"{key}_scale"] = _scaled(value)
    expected = {a.path for a in example_arrays(spec)}
    assert data.keys() == expected, data.keys() ^ expected
    return data


def write_store(path: Path, seed: int, *, spec: RunSpec | None = None, units: list[int] | None = None,
                finalize: bool = True) -> Path:
    """A store at ``path`` holding ``units`` (default: all), finalized when every unit is written."""
    spec = spec or make_spec()
    data = example_data(spec, seed)
    writer = open_writer(path, spec, units=units)
    for u in writer.todo:
        a, b = writer.unit_range(u)
        writer.append(a, {key: value[a:b] for key, value in data.items()})
    writer.close()
    if finalize:
        finalize_store(path)
    return path


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("render") / "run.zarr", seed=0)


@pytest.fixture(scope="session")
def other_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same layout as ``store``, different data (seed)."""
    return write_store(tmp_path_factory.mktemp("render") / "run.zarr", seed=1)
