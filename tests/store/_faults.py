"""A small real sweep through the CLI's own code, damage to one object of a store, and store equality.

The fixtures ``swept_store`` (written once per module) and ``store_copy`` (a fresh copy to damage)
are brought into scope by the conftest of each test folder that uses them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from attrstream.engine.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
# 12 examples in 3 units of 4: a unit is one batch, so a recomputed unit is bit-identical
SWEEP = ["--model", "tests.engine.models:tiny_cnn", "--data", "fake", "--image-size", "16", "--limit", "12",
         "--num-classes", "5", "--unit", "4", "--batch-size", "4", "--no-progress"]

# one object of each kind: (store key, the array a report names, the unit, its examples as printed)
OBJECTS = {
    "map shard": ("attributions/saliency/c/1/0/0", "attributions/saliency", 1, "4..7"),
    "stats shard": ("layers/stage2/stats/c/2/0/0", "layers/stage2/stats", 2, "8..11"),
    "scale array": ("attributions/grad_x_input_scale/c/0", "attributions/grad_x_input_scale", 0, "0..3"),
    "done marker": ("progress/unit_done/c/1", "progress/unit_done", 1, "4..7"),
    "root metadata": ("zarr.json", "zarr.json", None, None),
}


def sweep_cli(out: Path, *extra: str) -> None:
    """``attrstream sweep`` in this process: the CLI's parser and command, without its error printing."""
    args = build_parser().parse_args(["sweep", *SWEEP, "--out", str(out), *extra])
    args.func(args)


@pytest.fixture(scope="module")
def swept_store(tmp_path_factory) -> Path:
    """A store written once per test module by the sweep above, never damaged."""
    path = tmp_path_factory.mktemp("reference") / "run.zarr"
    sweep_cli(path)
    return path


@pytest.fixture
def store_copy(swept_store, tmp_path) -> Path:
    """A fresh copy of the reference store, for a test to damage."""
    path = tmp_path / "run.zarr"
    shutil.copytree(swept_store, path)
    return path


def attrstream(*args: str) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, "-m", "attrstream.engine", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def damage(store: Path, key: str, fault: str) -> None:
    """Delete, truncate (to half) or corrupt (flip the middle bytes of) one stored object."""
    file = store / key
    data = file.read_bytes()
    if fault == "delete":
        file.unlink()
    elif fault == "truncate":
        file.write_bytes(data[: len(data) // 2])
    else:
        middle = len(data) // 2
        file.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 2]) + data[middle + 2 :])


def arrays(store: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(store, mode="r", use_consolidated=False)
    return {name: np.asarray(node[...]) for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


def assert_same_arrays(store: Path, reference: Path) -> None:
    """Array by array (every array of the store, dataset_stats included), NaN equal to NaN."""
    got, want = arrays(store), arrays(reference)
    assert sorted(got) == sorted(want)
    for name, values in want.items():
        np.testing.assert_array_equal(got[name], values, err_msg=name)
