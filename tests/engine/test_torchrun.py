"""Scale-out: real ``torchrun`` jobs on CPU (gloo) write the same store as one process, and resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from attrstream.engine import open_run
from attrstream.kernels.names import STAT_NAMES

REPO = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun")

SWEEP = ["sweep", "--data", "fake", "--image-size", "16", "--limit", "40", "--num-classes", "5",
         "--unit", "4", "--batch-size", "4", "--no-progress", "--layers", "stage1,stage2",
         "--methods", "grad_x_input,saliency,stats,grad_cam,grad_x_act"]

pytestmark = pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not on PATH")


def env() -> dict[str, str]:
    e = {**os.environ, "OMP_NUM_THREADS": "1"}
    e.pop("TRITON_INTERPRET", None)
    return e


def single(out: Path, model: str = "tests.engine.models:tiny_cnn") -> None:
    subprocess.run([sys.executable, "-m", "attrstream.engine", *SWEEP, "--model", model, "--out", str(out)],
                   cwd=REPO, env=env(), check=True, capture_output=True, timeout=300)


def torchrun(out: Path, model: str = "tests.engine.models:tiny_cnn", **popen) -> subprocess.Popen:
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "attrstream.engine", *SWEEP,
           "--model", model, "--out", str(out)]
    return subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def assert_same_store(a: Path, b: Path) -> None:
    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    paths_a = sorted(p for p, _ in ga.members(max_depth=None) if isinstance(_, zarr.Array))
    paths_b = sorted(p for p, _ in gb.members(max_depth=None) if isinstance(_, zarr.Array))
    assert paths_a == paths_b
    for path in paths_a:
        np.testing.assert_array_equal(ga[path][...], gb[path][...], err_msg=path)


def test_two_ranks_write_the_same_store_as_one_process(tmp_path):
    single(tmp_path / "one.zarr")
    proc = torchrun(tmp_path / "two.zarr")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "rank 1/2 wrote 5 units" in out
    assert_same_store(tmp_path / "one.zarr", tmp_path / "two.zarr")
    run = open_run(tmp_path / "two.zarr")
    assert run.complete and run.dataset_stats("stage2").shape == (16, len(STAT_NAMES))


def units_done(store: Path) -> set[int]:
    return {int(u) for u in np.flatnonzero(zarr.open_array(store / "progress" / "unit_done", mode="r")[:])}


def unit_shards(store: Path) -> dict[str, tuple[int, int, int]]:
    """Every shard file of every per-example array: relative path -> (unit, inode, mtime in ns).

    A shard holds one unit (its first chunk index), so a file whose inode or mtime changed between
    two snapshots is a unit written in between.
    """
    group = zarr.open_group(store, mode="r", use_consolidated=False)
    shards = {}
    for path, array in group.members(max_depth=None):
        if isinstance(array, zarr.Array) and array.metadata.dimension_names[0] == "example":
            chunks = store / path / "c"
            for f in chunks.rglob("*"):
                if f.is_file():
                    st = f.stat()
                    shards[str(f.relative_to(store))] = (int(f.relative_to(chunks).parts[0]), st.st_ino, st.st_mtime_ns)
    return shards


def kill_job(agent: subprocess.Popen) -> None:
    """SIGKILL torchrun's workers, then torchrun itself: the workers run in sessions of their own,
    so killing torchrun's process group alone leaves them sweeping to the end."""
    workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == agent.pid]
    assert workers, "torchrun has no worker processes to kill"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    agent.kill()
    agent.communicate(timeout=60)


def _parent(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):  # the process ended while we looked
        return None


# Two ranks, 10 units of one batch each; the slow model leaves ~1 s between units to kill in.
@pytest.mark.filterwarnings("ignore:Object at writer.rank:UserWarning")  # the lock files beside the hierarchy
def test_killed_two_rank_job_resumes_only_the_missing_units(tmp_path):
    model = "tests.engine.models:slow_cnn"
    out = tmp_path / "two.zarr"
    proc = torchrun(out, model=model)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "progress" / "unit_done" / "zarr.json").exists() and len(units_done(out)) >= 3:
            break
        time.sleep(0.05)
    kill_job(proc)
    done = units_done(out)  # read after the kill: units may have finished since the last poll
    assert 3 <= len(done) < 10, f"kill landed at {len(done)} units; the test needs a job killed mid-way"
    before = unit_shards(out)
    assert {unit for unit, _, _ in before.values()} >= done

    proc = torchrun(out, model=model)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    after = unit_shards(out)
    rewritten = {unit for path, (unit, *identity) in after.items() if before.get(path, (unit, None, None))[1:] != tuple(identity)}
    assert rewritten == set(range(10)) - done  # every missing unit recomputed, no done unit touched
    assert units_done(out) == set(range(10))
    single(tmp_path / "one.zarr", model=model)
    assert_same_store(tmp_path / "one.zarr", out)
