"""Real processes: SIGKILL at several points, a second writer, stale locks, leftover temp files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attrstream.engine.errors import StoreLockedError
from attrstream.engine.store import open_run, open_writer
from tests.store._helpers import assert_stores_equal, small_spec, write_run
from tests.store._slow_writer import CRASH_SPEC

REPO = Path(__file__).resolve().parents[2]


def start_writer(path: Path, delay: float, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store._slow_writer", str(path), str(delay), *extra],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )


def units_done_on_disk(path: Path) -> int:
    chunks = path / "progress" / "unit_done" / "c"
    return sum(1 for _ in chunks.iterdir()) if chunks.is_dir() else 0


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the writer exited before the kill point"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "run.zarr"
    write_run(path, small_spec(**CRASH_SPEC))
    return path


@pytest.mark.parametrize(
    ("kill_after_units", "extra_delay"),
    [
        (None, 0.0),  # as soon as the lock exists: layout possibly half created
        (1, 0.03),  # mid unit 1 or 2: some arrays written, unit not marked
        (3, 0.0),  # right after a unit was marked done
    ],
)
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, reference, kill_after_units, extra_delay):
    spec = small_spec(**CRASH_SPEC)
    path = tmp_path / "run.zarr"
    proc = start_writer(path, 0.01)
    try:
        if kill_after_units is None:
            wait_for(lambda: (path / "writer.lock").exists(), proc)
        else:
            wait_for(lambda: units_done_on_disk(path) >= kill_after_units, proc)
        time.sleep(extra_delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with pytest.warns(UserWarning, match=f"stale writer lock .*'pid': {proc.pid}"):
        rerun = write_run(path, spec)
    if kill_after_units:
        assert len(rerun.todo) <= spec.n_units() - kill_after_units
    assert open_run(path).complete and not list(path.rglob("*.partial"))
    assert_stores_equal(path, reference, spec)


def test_second_writer_is_refused_then_a_dead_holder_is_taken_over(tmp_path):
    spec = small_spec(**CRASH_SPEC)
    path = tmp_path / "run.zarr"
    holder = start_writer(path, 0.0, "hold")
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=rf"pid {holder.pid} on host {socket.gethostname()}"):
            open_writer(path, spec)
        with pytest.raises(StoreLockedError, match="no other writer"):
            open_writer(path, spec, overwrite=True)
    finally:
        holder.kill()
        holder.wait()
    with pytest.warns(UserWarning, match="stale writer lock"):
        write_run(path, spec)
    assert open_run(path).complete


def test_same_process_second_writer_and_foreign_host_locks_are_refused(tmp_path):
    spec = small_spec()
    path = tmp_path / "run.zarr"
    with open_writer(path, spec), pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
        open_writer(path, spec)
    (path / "writer.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(StoreLockedError, match="host elsewhere"):
        open_writer(path, spec)
    (path / "writer.lock").write_text("")  # unreadable: a crash leftover
    with pytest.warns(UserWarning, match="unreadable"):
        write_run(path, spec)


def test_leftover_partial_files_are_cleaned_on_open(tmp_path):
    spec = small_spec()
    path = tmp_path / "run.zarr"
    write_run(path, spec, units=[0])
    leftover = path / "attributions" / "saliency" / "c" / "1" / "0" / "0.0123abcd.partial"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a shard")
    write_run(path, spec)
    assert not leftover.exists() and open_run(path).complete
    np.testing.assert_array_equal(open_run(path).units_done, [True] * 3)


def test_a_writer_killed_before_its_layout_existed_leaves_a_store_path_that_reruns(tmp_path):
    spec, path = small_spec(), tmp_path / "run.zarr"
    path.mkdir()
    (path / "writer.lock").write_text(json.dumps({"pid": 2**22 + 1, "host": socket.gethostname(), "started": "x"}))
    (path / ".writer.lock.0123abcd.tmp").write_text('{"pid"')  # killed while writing its lock
    (path / "zarr.0123abcd.partial").write_bytes(b"{")  # killed while writing the root metadata
    with pytest.warns(UserWarning, match="stale writer lock"):
        write_run(path, spec)
    assert open_run(path).complete and sorted(p.name for p in path.iterdir() if p.is_file()) == ["zarr.json"]
