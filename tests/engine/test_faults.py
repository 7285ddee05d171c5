"""Faults a real job meets, through the real CLI and the Python API: one clear line, a non-zero
exit, nothing lost, and a rerun of the same command that resumes (see also tests/store/test_disk_full.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attrstream.engine import open_run, sweep
from attrstream.engine.data import FakeImages, ImageFolderSource, load_rgb
from attrstream.engine.errors import (
    ConfigError,
    DataError,
    FingerprintMismatchError,
    StoreError,
    StoreLockedError,
)
from attrstream.engine.store import open_writer
from tests.engine._cli import TINY_SWEEP, assert_same_store, run_cli
from tests.engine.models import tiny_cnn
from tests.engine.test_cli_errors import REPO, assert_one_line_error, attrstream
from tests.store._helpers import small_spec, write_run


def model_sweep(factory: str, *extra: str) -> list[str]:
    args = [*TINY_SWEEP, *extra]
    args[args.index("--model") + 1] = f"tests.engine.models:{factory}"
    return args


def hours_ago(hours: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - hours * 3600))


# -- what decides a resume ------------------------------------------------------------------------

class UnreadableAt(FakeImages):
    """Fake images whose item ``bad`` cannot be read (a corrupt file)."""

    def __init__(self, bad: int):
        super().__init__(n=24, image_size=16, num_classes=5)
        self.bad = bad

    def __getitem__(self, i: int):
        if i == self.bad:
            raise OSError(f"truncated file {i}.png")
        return super().__getitem__(i)


def test_skip_bad_images_batch_size_and_device_are_not_fingerprinted(tmp_path):
    out, data = tmp_path / "run.zarr", UnreadableAt(12)
    with pytest.raises(DataError, match=r"Could not read item 12: OSError: truncated file 12\.png.*--skip-bad-images"):
        sweep(tiny_cnn(), data, out, unit=8, batch_size=8, progress=False)
    assert open_run(out).units_done.tolist() == [True, False, False]
    # following the error's advice, with another batch size: unit 0 is kept, not recomputed
    run = sweep(tiny_cnn(), data, out, unit=8, batch_size=4, skip_bad_images=True, progress=False)
    assert run.complete and run.inputs()["skipped"].nonzero()[0].tolist() == [12]
    writers = run.meta["writers"]
    assert len(writers) == 2 and {w["device"] for w in writers} == {"cpu"} and all(w["version"] for w in writers)
    with pytest.raises(FingerprintMismatchError) as refused:
        sweep(tiny_cnn(), data, out, unit=8, layers=["stage1"], skip_bad_images=True, progress=False)
    message = str(refused.value)
    assert 'layers: ["stage1", "stage2"] -> ["stage1"]' in message  # what the user changed, said once
    for unchanged in ("batch", "skip", "device", "version", "methods", "weights"):
        assert unchanged not in message.split("):", 1)[1].split(". Pass")[0], message


def test_another_device_resumes_and_is_recorded_but_another_store_format_is_refused(tmp_path):
    spec, path = small_spec(), tmp_path / "run.zarr"
    write_run(path, spec, units=[0], writer_info={"device": "cuda:0"})
    rerun = write_run(path, spec, writer_info={"device": "cpu"})
    assert rerun.todo == [1, 2]
    assert [w["device"] for w in open_run(path).meta["writers"]] == ["cuda:0", "cpu"]
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["attrstream"]["schema_version"] = 99
    (path / "zarr.json").write_text(json.dumps(doc))
    for attempt in (lambda: open_writer(path, spec), lambda: open_run(path)):
        with pytest.raises(StoreError, match=r"store format 99; attrstream .* format 1.*--overwrite"):
            attempt()


# -- out of memory, signals, locks ---------------------------------------------------------------

@pytest.fixture(scope="module")
def oom_reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("oom") / "run.zarr"
    assert run_cli(*model_sweep("oom_cnn"), "--out", str(path)) == 0
    return path


def test_out_of_memory_names_the_batch_size_and_a_rerun_resumes(tmp_path, oom_reference):
    out = tmp_path / "run.zarr"
    env = {**os.environ, "ATTRSTREAM_TEST_OOM_AT": "2"}
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-m", "attrstream.engine", *model_sweep("oom_cnn"), "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, "Out of memory on cpu with --batch-size 8 (OutOfMemoryError)",
                          "smaller --batch-size (e.g. 4)", "a rerun resumes")
    assert open_run(out).units_done.tolist() == [True, False, False] and not list(out.glob("*.lock"))
    assert run_cli(*model_sweep("oom_cnn"), "--out", str(out)) == 0
    assert_same_store(out, oom_reference)


@pytest.fixture(scope="module")
def slow_reference(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("slow") / "run.zarr"
    assert run_cli(*model_sweep("slow_cnn", "--batch-size", "2"), "--out", str(path)) == 0
    return path


@contextmanager
def sigint_not_ignored() -> Iterator[None]:
    """A child started within the block sees Ctrl-C, as one started from a terminal does: a suite run
    in the background of a script inherits SIGINT ignored (POSIX, for asynchronous commands), and an
    ignored signal stays ignored across exec, where a handler resets to the default."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(("sig", "code", "said", "seed"), [
    (signal.SIGTERM, 143, "terminated (SIGTERM)", 1),
    (signal.SIGTERM, 143, "terminated (SIGTERM)", 2),
    (signal.SIGINT, 130, "interrupted", 3),
])
def test_sigterm_and_sigint_release_the_lock_and_a_rerun_resumes(tmp_path, slow_reference, sig, code, said, seed):
    out, args = tmp_path / "run.zarr", model_sweep("slow_cnn", "--batch-size", "2")  # 12 forwards of 0.15 s
    env = {**os.environ}
    env.pop("TRITON_INTERPRET", None)
    with sigint_not_ignored():
        proc = subprocess.Popen([sys.executable, "-m", "attrstream.engine", *args, "--out", str(out)], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "writer.rank0.lock").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep never took its lock"
            time.sleep(0.01)
        time.sleep(random.Random(seed).uniform(0.0, 1.5))  # a random point: layout, a batch, a unit write
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert said in stderr and "rerun the same command to resume" in stderr and "Traceback" not in stderr, stderr
    assert not list(out.glob("*.lock"))
    assert run_cli(*args, "--out", str(out)) == 0
    assert_same_store(out, slow_reference)


def test_a_lock_from_another_host_is_explained_and_break_lock_takes_it_over(tmp_path):
    out = tmp_path / "run.zarr"
    out.mkdir()
    lock = out / "writer.rank0.lock"
    lock.write_text(json.dumps({"pid": 4242, "host": "node-elsewhere", "started": hours_ago(3.1)}))
    proc = attrstream(*TINY_SWEEP, "--out", str(out))
    assert_one_line_error(proc, "pid 4242 on host node-elsewhere", "(3h 6m ago)", "--break-lock")
    assert lock.exists()
    with pytest.warns(UserWarning, match="Breaking the writer lock .* of pid 4242 on host node-elsewhere"):
        assert run_cli(*TINY_SWEEP, "--out", str(out), "--break-lock") == 0
    assert open_run(out).complete and not lock.exists()


def test_break_lock_never_takes_a_lock_of_this_process(tmp_path):
    spec, path = small_spec(), tmp_path / "run.zarr"
    with open_writer(path, spec), pytest.raises(StoreLockedError, match="already being written by this process"):
        open_writer(path, spec, break_lock=True)


# -- unreadable and unusual data -----------------------------------------------------------------

def image_folder(root: Path, first: bytes | None) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    if first is not None:
        (root / "a" / "0.png").write_bytes(first)  # the data set's item 0: the shape probe's
    return root


def test_an_unreadable_first_example_is_one_line_or_skipped(tmp_path):
    root = image_folder(tmp_path / "images", b"\x89PNG\r\n\x1a\n truncated")
    args = ["sweep", "--model", "tests.engine.models:tiny_cnn", "--num-classes", "2", "--data", str(root),
            "--image-size", "16", "--no-progress"]
    proc = attrstream(*args, "--out", str(tmp_path / "a.zarr"))
    assert_one_line_error(proc, f"Could not read {root / 'a' / '0.png'}", "--skip-bad-images")
    assert not (tmp_path / "a.zarr").exists()
    assert run_cli(*args, "--out", str(tmp_path / "b.zarr"), "--skip-bad-images") == 0
    assert open_run(tmp_path / "b.zarr").inputs()["skipped"].tolist() == [1, 0, 0, 0]


def test_a_16_bit_png_is_scaled_by_its_range_not_saturated(tmp_path):
    ramp = np.linspace(0, 65535, 24 * 24).round().astype(np.uint16).reshape(24, 24)
    root = image_folder(tmp_path / "images", None)
    Image.fromarray(ramp).save(root / "a" / "0.png")
    assert Image.open(root / "a" / "0.png").mode == "I;16"
    rgb = np.asarray(load_rgb(str(root / "a" / "0.png")))
    expected = np.round(ramp / 257).astype(np.uint8)
    np.testing.assert_array_equal(rgb, np.repeat(expected[..., None], 3, axis=-1))
    eight_bit = image_folder(tmp_path / "eight", None)
    Image.fromarray(expected).convert("RGB").save(eight_bit / "a" / "0.png")
    x16, x8 = ImageFolderSource(root, image_size=16)[0][0], ImageFolderSource(eight_bit, image_size=16)[0][0]
    torch.testing.assert_close(x16, x8, rtol=0, atol=0)
    assert ImageFolderSource.to_rgb(x16).float().mean() < 200  # a ramp, not a white image


# -- model factories and render -------------------------------------------------------------------

def test_a_factory_that_raises_is_one_line_with_its_own_message(tmp_path):
    proc = attrstream(*model_sweep("unreachable_checkpoint"), "--out", str(tmp_path / "r.zarr"))
    assert_one_line_error(proc, "tests.engine.models:unreachable_checkpoint failed: RuntimeError: "
                          "checkpoint server ckpt.internal is unreachable")


def test_num_classes_for_a_factory_without_that_parameter(tmp_path):
    proc = attrstream(*model_sweep("fixed_head"), "--out", str(tmp_path / "r.zarr"))
    assert_one_line_error(proc, "fixed_head takes no num_classes argument", "signature: ()", "drop --num-classes")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "run.zarr"
    assert run_cli(*TINY_SWEEP, "--limit", "8", "--out", str(path)) == 0
    return path


def test_render_onto_an_existing_file_is_one_line(tmp_path, tiny_store):
    target = tmp_path / "report.html"
    target.write_text("keep me")
    proc = attrstream("render", str(tiny_store), "--out", str(target))
    assert_one_line_error(proc, "directory for the report", str(target))
    assert target.read_text() == "keep me"


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("root ignores permissions and mount -o ro is not allowed here")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def test_render_into_a_read_only_directory_is_one_line(read_only_dir, tiny_store):
    proc = attrstream("render", str(tiny_store), "--out", str(read_only_dir / "report"))
    assert_one_line_error(proc, "writable directory for the report", "Read-only file system" if os.geteuid() == 0
                          else "Permission denied")


# -- the Python API: wrong types, before anything is created --------------------------------------

class PilImages(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return Image.new("RGB", (16, 16)), 0


@pytest.mark.parametrize(("model", "dataset", "out", "options", "error", "match"), [
    ("cnn", "fake", "out", {"batch_size": "16"}, ConfigError, r"batch-size to be an integer >= 1, got '16' \(str\)"),
    ("cnn", "fake", "out", {"limit": "4"}, ConfigError, r"limit to be an integer >= 0, got '4' \(str\)"),
    ("cnn", "fake", None, {}, ConfigError, "Expected out to be a store path .* got None"),
    (tiny_cnn, "fake", "out", {}, ConfigError, "Expected model to be a torch.nn.Module, got function"),
    ("cnn", [1, 2], "out", {}, DataError, "tensor or \\(tensor, label\\), got int"),
    ("cnn", 3, "out", {}, DataError, "Expected dataset to be a map-style dataset .* got int"),
    ("cnn", PilImages(), "out", {}, DataError, "got a PIL image: .*ToTensor()"),
])
def test_api_arguments_of_the_wrong_type_are_refused_before_anything_is_written(
        tmp_path, model, dataset, out, options, error, match):
    target = tmp_path / "run.zarr"
    model = tiny_cnn() if model == "cnn" else model
    dataset = FakeImages(8, 16, 5) if dataset == "fake" else dataset
    with pytest.raises(error, match=match):
        sweep(model, dataset, target if out == "out" else out, progress=False, **options)
    assert not target.exists()
