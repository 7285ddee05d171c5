"""A full disk at each phase of a sweep: one error line, the lock released, no temp file, and a
rerun of the same command resumes to a store equal to an uninterrupted one.

Two ways to fill the disk: injected ENOSPC at a chosen phase (runs everywhere), and a real small
tmpfs (root only, where mounting is allowed; skipped elsewhere).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attrstream.engine.store import open_run
from tests.engine._cli import TINY_SWEEP, assert_same_store, run_cli
from tests.engine.test_cli_errors import REPO, assert_one_line_error

RESUME_HINT = "free space and rerun the same command to resume"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "run.zarr"
    assert run_cli(*TINY_SWEEP, "--out", str(path)) == 0
    return path


def assert_released(out: Path) -> None:
    assert not list(out.glob("*.lock")), "the writer lock was left behind"
    assert not list(out.glob(".*.tmp")), "the lock's temp file was left behind"


@pytest.mark.parametrize(("phase", "doing"), [
    ("lock", ""),  # the lock's temp file half written
    ("layout", ""),  # some arrays created, the layout not marked ready
    ("units", "writing unit 1, examples 8..15"),  # in the writer thread, unit 0 already done
    ("finalize", "finalizing"),  # every unit done, dataset_stats not yet written
])
def test_injected_disk_full_is_one_line_then_the_same_command_resumes(tmp_path, reference, phase, doing):
    out = tmp_path / "run.zarr"
    env = {**os.environ}
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-m", "tests.store._disk_full", phase, *TINY_SWEEP, "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, f"No space left on {out}", doing, RESUME_HINT)
    assert_released(out)
    if phase in ("units", "finalize"):
        assert open_run(out).units_done.tolist() == ([True, False, False] if phase == "units" else [True] * 3)
    assert run_cli(*TINY_SWEEP, "--out", str(out)) == 0
    assert_same_store(out, reference)


@pytest.fixture
def small_tmpfs(tmp_path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs is not allowed here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path, leave: int) -> Path:
    """Fill the filesystem at ``mount``, then free ``leave`` bytes; returns the filler file."""
    filler = mount / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


@pytest.mark.parametrize("leave", [  # this sweep's store: ~128 KiB of layout, ~90 KiB per unit, ~420 KiB in all
    0,  # nothing: the lock cannot be written
    64 << 10,  # part of the layout
    224 << 10,  # the layout and about a unit: the writer thread hits the wall
])
def test_a_real_full_tmpfs_is_one_line_then_resumes_after_freeing_space(small_tmpfs, reference, capsys, leave):
    out = small_tmpfs / "run.zarr"
    filler = fill(small_tmpfs, leave)
    assert run_cli(*TINY_SWEEP, "--out", str(out)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"No space left on {out}" in errors[0] and RESUME_HINT in errors[0], errors
    assert_released(out)
    filler.unlink()
    assert run_cli(*TINY_SWEEP, "--out", str(out)) == 0
    assert_same_store(out, reference)
