"""The unit writer's contract: validation, backpressure, thread errors, incomplete units."""

from __future__ import annotations

import errno
import threading
import time

import numpy as np
import pytest

import attrstream.engine.store.writer as writer_module
from attrstream.engine.errors import StoreError, WriterError
from attrstream.engine.store import open_run, open_writer
from tests.store._helpers import assert_stores_equal, feed, rows, small_spec, write_run


@pytest.fixture
def writer(tmp_path):
    w = open_writer(tmp_path / "run.zarr", small_spec())
    yield w
    w.close(raise_errors=False)  # tests leave units incomplete on purpose


def test_append_refuses_missing_unknown_and_misshaped_arrays(writer):
    spec = writer.spec
    good = rows(spec, 0, 2)
    with pytest.raises(StoreError, match=r"missing outputs/score"):
        writer.append(0, {k: v for k, v in good.items() if k != "outputs/score"})
    with pytest.raises(StoreError, match=r"Expected exactly the keys inputs/index, .*unknown outputs/logit\b"):
        writer.append(0, {**good, "outputs/logit": good["outputs/logits"]})
    with pytest.raises(StoreError, match=r"attributions/saliency as a numpy float16 .*got float32"):
        writer.append(0, {**good, "attributions/saliency": good["attributions/saliency"].astype(np.float32)})
    with pytest.raises(StoreError, match=r"layers/fc/stats .*shape \(rows, 3, 6\), got float32 \(2, 4, 6\)"):
        writer.append(0, {**good, "layers/fc/stats": np.zeros((2, 4, 6), np.float32)})
    with pytest.raises(StoreError, match=r"same length, got lengths \[1, 2\]"):
        writer.append(0, {**good, "outputs/pred": good["outputs/pred"][:1]})
    with pytest.raises(StoreError, match=r"rows within \[0, 10\), got \[9, 11\)"):
        writer.append(9, good)
    writer.append(0, good)
    with pytest.raises(StoreError, match=r"unit 0 to continue at example 2 \(rows in order\), got 3"):
        writer.append(3, rows(spec, 3, 5))
    writer.append(2, rows(spec, 2, 4))  # completes unit 0
    with pytest.raises(StoreError, match=r"got rows of unit 0 \(already complete\)"):
        writer.append(0, good)


def test_more_than_two_open_units_is_an_error_not_a_deadlock(writer):
    spec = writer.spec
    writer.append(0, rows(spec, 0, 1))
    writer.append(4, rows(spec, 4, 5))  # units may come in any order
    with pytest.raises(StoreError, match=r"at most 2 units filled at once, got rows of unit 2 .*\[0, 1\]"):
        writer.append(8, rows(spec, 8, 9))


def test_backpressure_blocks_append_and_keeps_two_buffers(tmp_path, monkeypatch):
    spec = small_spec(n=24, unit=4)  # 6 units
    original = writer_module.write_shard
    in_flight, seen = [], []

    def slow_write(location, array, *args):
        if array.path == "outputs/score":
            time.sleep(0.15)  # the disk is slower than the compute loop
        original(location, array, *args)

    monkeypatch.setattr(writer_module, "write_shard", slow_write)
    with open_writer(tmp_path / "run.zarr", spec) as w:
        for u in range(6):
            t0 = time.perf_counter()
            w.append(4 * u, rows(spec, 4 * u, 4 * u + 4))
            seen.append(time.perf_counter() - t0)
            # the buffer for unit u was free only once unit u-2 had been written
            assert w.units_written >= u - 1
            in_flight.append(w.buffers_allocated)
    assert in_flight[-1] == 2 and max(in_flight) == 2
    assert w.append_wait_s > 0.3 and max(seen[2:]) > 0.05
    assert 0 <= w.idle_fraction < 0.5  # the thread was the bottleneck
    assert open_run(tmp_path / "run.zarr").complete


def test_oserror_in_the_thread_names_the_unit_keeps_earlier_units_and_resumes(tmp_path, monkeypatch):
    spec = small_spec(n=20, unit=4)  # 5 units
    path = tmp_path / "run.zarr"
    original = writer_module.write_shard

    def io_error_at_unit_2(location, array, unit, *args):  # a full disk: tests/store/test_disk_full.py
        if unit == 2 and array.path == "attributions/saliency":
            raise OSError(errno.EIO, "Input/output error")
        original(location, array, unit, *args)

    monkeypatch.setattr(writer_module, "write_shard", io_error_at_unit_2)
    done_units = []
    error = r"unit 2 \(examples 8..11\).*Input/output error.*rerun"
    with pytest.raises(WriterError, match=error), open_writer(path, spec, on_unit_done=lambda u, _rows: done_units.append(u)) as w:
        feed(w, spec)
        w.close()
    assert isinstance(w._error.__cause__, OSError)
    monkeypatch.setattr(writer_module, "write_shard", original)
    run = open_run(path)
    np.testing.assert_array_equal(run.units_done, [True, True, False, False, False])
    assert done_units == [0, 1]
    np.testing.assert_array_equal(run.layer_stats("fc", slice(0, 8)), rows(spec, 0, 8)["layers/fc/stats"])
    rerun = write_run(path, spec)
    assert rerun.todo == [2, 3, 4] and open_run(path).complete
    write_run(tmp_path / "ref.zarr", spec)
    assert_stores_equal(path, tmp_path / "ref.zarr", spec)


def test_close_with_an_incomplete_unit_warns_and_marks_nothing(tmp_path):
    spec = small_spec()
    with pytest.warns(UserWarning, match=r"incomplete units \[1\]"), open_writer(tmp_path / "run.zarr", spec) as w:
        w.append(0, rows(spec, 0, 6))
    np.testing.assert_array_equal(open_run(tmp_path / "run.zarr").units_done, [True, False, False])
    with pytest.raises(StoreError, match="closed"):
        w.append(6, rows(spec, 6, 8))


def test_an_exception_in_the_sweep_marks_no_half_unit(tmp_path):
    spec = small_spec()
    with pytest.raises(KeyError), open_writer(tmp_path / "run.zarr", spec) as w:
        w.append(0, rows(spec, 0, 6))
        raise KeyError("model crashed")
    np.testing.assert_array_equal(open_run(tmp_path / "run.zarr").units_done, [True, False, False])
    assert not (tmp_path / "run.zarr" / "writer.lock").exists()


def test_writer_thread_is_joined_on_close(tmp_path):
    write_run(tmp_path / "run.zarr", small_spec())
    assert not any(t.name == "attrstream-writer" for t in threading.enumerate())
