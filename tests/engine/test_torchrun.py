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
    assert run.complete and run.dataset_stats("stage2").shape == (16, 5)


def test_killed_two_rank_job_resumes_only_the_missing_units(tmp_path):
    model = "tests.engine.models:slow_cnn"
    out = tmp_path / "two.zarr"
    proc = torchrun(out, model=model, start_new_session=True)
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "progress" / "unit_done" / "zarr.json").exists():
            done = int(np.asarray(zarr.open_array(out / "progress" / "unit_done", mode="r")[:]).sum())
            if done >= 3:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert 3 <= done < 10, f"kill landed at {done} units; the test needs a job killed mid-way"

    proc = torchrun(out, model=model)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    assert "units already done" in log
    single(tmp_path / "one.zarr", model=model)
    assert_same_store(tmp_path / "one.zarr", out)
