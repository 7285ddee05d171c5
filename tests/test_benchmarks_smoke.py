"""Every benchmark script, run for real (a subprocess, as a reader reruns it) at a tiny size.

Each must exit 0, print its table and write ``<table>.json`` with the machine, the command, the
expected columns and sane numbers. The sizes are tiny (a two-layer CNN at 32², 16 images, one
round), so the numbers mean nothing; the paths through each table's code are what is exercised.
Most of the time is process start-up (every contender process imports torch).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from attrstream.kernels.names import STAT_NAMES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "tests.engine.models:tiny_cnn", "--image-size", "32", "-n", "16", "--batch-size", "8",
        "--repeats", "1"]


def run_script(tmp_path: Path, script: str, *argv: str) -> tuple[str, Path]:
    """Run ``benchmarks/<script>`` with results into ``tmp_path/results``; return (stdout, results dir)."""
    results, scratch = tmp_path / "results", tmp_path / "scratch"
    scratch.mkdir()
    # The children import tests.engine.models; one thread each keeps a busy machine's cores shared.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    out_dir = ["--out-dir", str(scratch)] if script == "bench_sweep.py" else []
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *argv, *out_dir,
                           "--results-dir", str(results), "--note", "smoke test"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert list(scratch.iterdir()) == []  # every contender's output was removed after measuring
    return done.stdout, results


def read_table(results: Path, name: str, columns: set[str]) -> dict:
    """The table's JSON, checked for what every results file carries."""
    record = json.loads((results / f"{name}.json").read_text())
    assert record["table"] == name and record["note"] == "smoke test"
    assert record["command"].startswith("python benchmarks/") and "--results-dir" in record["command"]
    machine = record["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["date"] and machine["load_avg_1m_at_end"] >= 0
    assert machine["versions"]["torch"] and machine["versions"]["zarr"]
    assert {c["key"] for c in record["columns"]} == columns and record["rows"]
    for row in record["rows"]:
        assert columns <= set(row), sorted(columns - set(row))
    return record


def printed(stdout: str, first_header: str) -> list[list[str]]:
    """The printed table's lines, header first, split on runs of spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    end = next(i for i, line in enumerate(lines) if line.startswith("-> "))
    return [line.split() for line in lines[start:end]]


COMPARISON = {"n", "layer_count", "bare_img_s", "attrstream_img_s", "captum_img_s", "ratio_to_bare",
              "speedup_over_captum", "extra_s", "attrstream_mb", "captum_mb"}


def test_sweep_main_interleaved(tmp_path: Path) -> None:
    stdout, results = run_script(tmp_path, "bench_sweep.py", *TINY, "--mode", "interleaved")
    record = read_table(results, "sweep_main_interleaved", {
        "contender", "img_s", "wall_s", "ratio_to_bare", "speedup_over_captum", "peak_rss_mb", "written_mb",
        "writer_idle", "peak_gpu_mb"})
    rows = {r["contender"]: r for r in record["rows"]}
    assert sorted(rows) == ["attrstream", "bare", "captum"]
    assert sorted(row[0] for row in printed(stdout, "contender")[1:]) == sorted(rows)
    assert rows["bare"]["ratio_to_bare"] == 1.0 and rows["captum"]["speedup_over_captum"] == 1.0
    assert rows["bare"]["written_mb"] == 0 and rows["bare"]["writer_idle"] is None
    assert 0.0 <= rows["attrstream"]["writer_idle"] <= 1.0
    # Like outputs: both store float16 maps over a float32 scale; the store compresses, numpy.save does not.
    assert 16 * 32 * 32 * 2 * 2 / 1e6 < rows["attrstream"]["written_mb"] < rows["captum"]["written_mb"] * 1.5
    assert rows["captum"]["written_mb"] < 3 * rows["attrstream"]["written_mb"]
    for run in record["runs"]:
        assert run["n"] == 16 and abs(run["img_s"] - 16 / run["wall_s"]) < 1e-6 * run["img_s"]
        assert "peak_rss_mb" not in run  # one process: no contender owns its peak
    assert rows["bare"]["peak_rss_mb"] is None
    assert record["config"]["mode"] == "interleaved" and record["config"]["image_size"] == 32


def test_sweep_layers_interleaved(tmp_path: Path) -> None:
    stdout, results = run_script(tmp_path, "bench_sweep.py", *TINY, "--table", "layers", "--layer-counts", "1,2",
                                 "--mode", "interleaved")
    record = read_table(results, "sweep_layers_interleaved", COMPARISON)
    assert [r["layer_count"] for r in record["rows"]] == [1, 2]
    assert record["rows"][0]["layers"] == ["stage2"] and record["rows"][1]["layers"] == ["stage1", "stage2"]
    assert all(r["speedup_over_captum"] > 0 and r["ratio_to_bare"] > 0 for r in record["rows"])
    assert len(printed(stdout, "N ")) == 3


def test_sweep_sizes_interleaved(tmp_path: Path) -> None:
    _, results = run_script(tmp_path, "bench_sweep.py", *TINY, "--table", "sizes", "--sizes", "8,16",
                            "--mode", "interleaved")
    record = read_table(results, "sweep_sizes_interleaved", COMPARISON)
    assert [r["n"] for r in record["rows"]] == [8, 16] and record["config"]["sizes"] == [8, 16]
    assert sorted({(r["case"], r["contender"]) for r in record["runs"]}) == [
        (i, c) for i in (0, 1) for c in ("attrstream", "bare", "captum")]


def test_sweep_fixed_cost(tmp_path: Path) -> None:
    stdout, results = run_script(tmp_path, "bench_sweep.py", *TINY, "--table", "fixed-cost")
    record = read_table(results, "sweep_fixed_cost", {"phase", "s", "share"})
    phases = {r["phase"].strip(): r["s"] for r in record["rows"]}
    for measured in ("sweep", "_prepare", "probe_model (shape probe)", "weights_sha256 (weights hash)",
                     "open_writer (store creation, lock)", "extract_batch (batch compute)", "thumbnails",
                     "IndexedItems.__getitem__ (data loading)", "StoreWriter.append (rows into the unit buffer)",
                     "StoreWriter.close (last-unit flush)", "consolidate (metadata)", "open_run"):
        assert phases[measured] > 0, measured
    assert phases["_prepare"] + phases["_run"] + phases["_finish"] <= phases["sweep"]
    assert record["rows"][0]["share"] == 1.0 and "sweep" in stdout


def test_sweep_steady(tmp_path: Path) -> None:
    stdout, results = run_script(tmp_path, "bench_sweep.py", *TINY[:-1], "2", "--table", "steady")
    record = read_table(results, "sweep_steady", {
        "round", "bare_s", "attrstream_s", "ratio_to_bare", "fixed_s", "ratio_without_fixed", "bare_batch_ms",
        "attrstream_batch_ms", "batch_ratio"})
    rounds, medians = record["rows"][:-1], record["rows"][-1]
    assert [r["round"] for r in record["rows"]] == ["1", "2", "median"]
    assert [row[0] for row in printed(stdout, "round")[1:]] == ["1", "2", "median"]
    for row in rounds:
        assert 0 < row["fixed_s"] < row["attrstream_s"]
        assert row["ratio_to_bare"] == pytest.approx(row["bare_s"] / row["attrstream_s"])
        assert row["ratio_without_fixed"] > row["ratio_to_bare"]
        assert row["batch_ratio"] == pytest.approx(row["bare_batch_ms"] / row["attrstream_batch_ms"])
    assert medians["batch_ratio"] == pytest.approx(statistics.median(r["batch_ratio"] for r in rounds))
    # two batches a run: one cycle each, counted from the model's real forwards (not the meta-device probe)
    assert all(run["batches"] == 2 for run in record["runs"])


def test_sweep_multi_sample_memory(tmp_path: Path) -> None:
    _, results = run_script(tmp_path, "bench_sweep.py", *TINY, "--table", "multi-sample-memory", "--samples", "2",
                            "--sample-methods", "smoothgrad")
    record = read_table(results, "sweep_multi_sample_memory", {
        "method", "samples", "internal_batch_size", "peak_rss_mb", "sweep_rss_mb", "peak_vs_fewest", "img_s",
        "speed_vs_unchunked"})
    assert [(r["internal_batch_size"], r["chunked"]) for r in record["rows"]] == [(8, True), (16, False)]
    assert record["rows"][1]["speed_vs_unchunked"] == 1.0 and record["config"]["methods"] == ["smoothgrad"]
    assert all(r["peak_rss_mb"] > r["sweep_rss_mb"] >= 0 for r in record["rows"])


def test_sweep_memory_scaling(tmp_path: Path) -> None:
    stdout, results = run_script(tmp_path, "bench_sweep.py", *TINY, "--table", "memory-scaling")
    record = read_table(results, "sweep_memory_scaling", {"n", "units", "img_s", "peak_rss_mb", "written_mb"})
    assert [(r["n"], r["units"]) for r in record["rows"]] == [(16, 2), (64, 8)]
    for run in record["runs"]:  # a fresh process per run (--mode separate): its peak RSS is its own
        assert 50 < run["peak_rss_mb"] < 16_000 and run["rss_before_mb"] <= run["peak_rss_mb"]
    assert "peak RSS growth from N to 4N" in stdout


def test_store(tmp_path: Path) -> None:
    _, results = run_script(tmp_path, "bench_store.py", "--n", "32", "--batch", "16", "--compressors", "lz4",
                            "--scale", "0", "--repeats", "2")
    record = read_table(results, "store", {"case", "compressor", "n", "raw_mb", "stored_mb", "wall_s", "mb_s",
                                           "ratio_to_raw", "mb_per_cpu_s", "peak_rss_mb", "writer_idle"})
    rows = {r["case"]: r for r in record["rows"]}
    zarrs = ["writer-zarrs"] if importlib.util.find_spec("zarrs") else []  # optional: the zarrs Rust pipeline
    assert sorted(rows) == sorted(["naive", "raw", "writer", "writer-zarr", *zarrs]) and rows["raw"]["ratio_to_raw"] == 1.0
    assert rows["raw"]["raw_mb"] == rows["writer"]["raw_mb"] == rows["writer-zarr"]["raw_mb"] > 0
    assert rows["writer"]["stored_mb"] == rows["writer-zarr"]["stored_mb"]  # the same shards, byte for byte
    # two rounds of every case, the second in another order; "vs raw" pairs each run with its round's raw
    runs = record["runs"]
    assert sorted(r["round"] for r in runs) == [0] * len(rows) + [1] * len(rows)
    assert [r["case"] for r in runs if r["round"] == 0] != [r["case"] for r in runs if r["round"] == 1]
    raw = {r["round"]: r["mb_s"] for r in runs if r["case"] == "raw"}
    assert rows["writer"]["ratio_to_raw"] == pytest.approx(
        statistics.median(r["mb_s"] / raw[r["round"]] for r in runs if r["case"] == "writer"))
    md = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "to_markdown.py"), str(results / "store.json")],
                        capture_output=True, text=True, check=True).stdout.splitlines()
    assert md[2].startswith("| case | comp | N |") and md[3].startswith("|---|---:|") and len(md) == 2 + 2 + len(rows) + 1
    assert md[0].startswith("`python benchmarks/bench_store.py --n 32 ") and "--note" not in md[0]
    assert "--results-dir" not in md[0]
    assert md[0].endswith("; smoke test ([store.json](" + str(results / "store.json") + "))")
    assert md[4].startswith("| raw | lz4 | 32 |")


def test_finalize(tmp_path: Path) -> None:
    _, results = run_script(tmp_path, "bench_finalize.py", "--sizes", "8,24", "--unit", "8", "--repeats", "2")
    record = read_table(results, "finalize", {"n", "units", "read_back_s", "pools_s", "speedup", "feeding_s"})
    assert [(r["n"], r["units"]) for r in record["rows"]] == [(8, 1), (24, 3)]
    for run, row in zip(record["runs"], record["rows"], strict=True):  # rows are medians of both rounds
        assert row["pools_s"] == statistics.median(run["seconds"]["pools"]) and len(run["seconds"]["read_back"]) == 2
        assert row["speedup"] == row["read_back_s"] / row["pools_s"] and row["feeding_s"] > 0


def test_kernels(tmp_path: Path) -> None:
    _, results = run_script(tmp_path, "bench_kernels.py", "--device", "cpu", "--batch", "1", "--repeats", "1",
                            "--contenders", "torch")
    record = read_table(results, "kernels", {"op", "shape_str", "contender", "status", "passes", "mb", "ms", "gbps",
                                             "pct_of_copy"})
    rows = {r["op"]: r for r in record["rows"]}
    assert sorted(rows) == sorted(["channel_stats", "product_map", "saliency", "grad_cam", "layer_maps"])
    n, c, h, w = rows["layer_maps"]["shape"]
    one_map = n * h * w * 2 + n * 4
    # layer_maps reads a and g twice each (two passes); product_map reads x and g once.
    assert rows["layer_maps"]["passes"] == 2 and rows["product_map"]["passes"] == 1
    assert rows["layer_maps"]["bytes"] == 2 * 2 * n * c * h * w * 4 + n * c * len(STAT_NAMES) * 4 + 2 * one_map
    assert rows["product_map"]["bytes"] == 2 * n * c * h * w * 4 + one_map
    assert all(r["status"] == "ok" and math.isclose(r["gbps"], r["bytes"] / r["median_s"] / 1e9) for r in rows.values())


def test_bench_metrics_runs_every_contender_on_the_same_curves(tmp_path: Path) -> None:
    contenders = ["attrstream", "loop", *(["quantus"] if importlib.util.find_spec("quantus") else [])]  # bench extra
    stdout, results = run_script(tmp_path, "bench_metrics.py", "--image-size", "16", "-n", "3", "--steps", "4",
                                 "--batch-size", "5", "--repeats", "1", "--contenders", ",".join(contenders))
    record = read_table(results, "metrics_16", {"contender", "points_s", "wall_s", "points_per_curve",
                                                "attrstream_speedup", "mean_curve_gap", "peak_rss_mb"})
    by_name = {r["contender"]: r for r in record["rows"]}
    assert sorted(by_name) == sorted(contenders)
    assert by_name["attrstream"]["points_per_curve"] == by_name["loop"]["points_per_curve"] == 5
    if "quantus" in by_name:
        assert by_name["quantus"]["points_per_curve"] == 4  # no unperturbed point
    for r in by_name.values():
        assert r["points_s"] > 0
        assert r["mean_curve_gap"] < 1e-4, r  # every contender computed the same deletion curve
    assert record["config"]["steps"] == 4
    assert by_name["attrstream"]["attrstream_speedup"] == 1.0
    assert any(line.startswith("attrstream / loop = ") for line in stdout.splitlines())


def test_bench_features_measures_every_contender(tmp_path: Path) -> None:
    _, results = run_script(tmp_path, "bench_features.py", "--model", "tests.engine.models:tiny_cnn",
                                 "--layer", "stage2", "--channels", "2", "--steps", "1", "--size", "16",
                                 "--batch-size", "2", "--repeats", "1", "--threads", "1")
    record = read_table(results, "features", {"contender", "channel_steps_s", "wall_s", "ratio_to_bare",
                                              "batched_speedup", "peak_rss_mb"})
    rows = {r["contender"]: r for r in record["rows"]}
    assert {"bare", "batched", "one_at_a_time"} <= set(rows)  # lucent only where torch-lucent is installed
    assert record["config"]["channels"] == 2
    for run in record["runs"]:
        assert run["channel_steps_s"] > 0 and abs(run["channel_steps_s"] - 2 / run["wall_s"]) < 1e-6 * run["channel_steps_s"]
    assert rows["bare"]["ratio_to_bare"] == 1.0 and rows["batched"]["batched_speedup"] == 1.0


def test_check_features_reports_both_fractions(tmp_path: Path) -> None:
    stdout, results = run_script(tmp_path, "check_features.py", "--model", "tests.engine.models:tiny_cnn", "--layer",
                                 "stage2", "--channels", "0:4", "--size", "16", "--steps", "2", "--examples", "8",
                                 "--threads", "1")
    record = read_table(results, "features_check_tests.engine.models_tiny_cnn_stage2", {
        "model", "layer", "channels", "size", "steps", "diagonal_dominance", "beats_top_example", "median_activation",
        "median_top_example", "seconds", "twins", "dominance_without_twins"})
    (row,) = record["rows"]
    assert row["channels"] == 4 and 0 <= row["diagonal_dominance"] <= 1 and 0 <= row["beats_top_example"] <= 1
    assert 0 <= row["twins"] <= 4 and len(row["with_twin"]) == row["twins"]
    assert row["twins"] == 4 or 0 <= row["dominance_without_twins"] <= 1
    assert len(row["not_dominant"]) == round(4 * (1 - row["diagonal_dominance"])) and "not dominant:" in stdout
