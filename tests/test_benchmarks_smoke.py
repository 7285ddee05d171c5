"""bench_sweep.py end to end on a tiny configuration: every contender runs and reports sane numbers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_sweep_writes_every_contender(tmp_path: Path) -> None:
    results = tmp_path / "sweep.json"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the children import tests.engine.models
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_sweep.py"), "--model", "tests.engine.models:tiny_cnn",
         "--image-size", "32", "-n", "16", "--batch-size", "8", "--repeats", "1",
         "--out-dir", str(scratch), "--json", str(results)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    by_name = {r["contender"]: r for r in records}
    assert sorted(by_name) == ["attrstream", "bare", "captum"]
    for r in records:
        assert r["benchmark"] == "sweep" and r["config"]["n"] == 16 and r["config"]["image_size"] == 32
        assert r["versions"]["torch"] and r["date"] and r["cores"] >= 1
        assert r["img_s"] > 0 and abs(r["img_s"] - 16 / r["wall_s"]) < 1e-6 * r["img_s"]
        assert 50 < r["peak_rss_mb"] < 16_000
        assert len(r["runs"]) == 1 and r["runs"][0]["contender"] == r["contender"]
    assert by_name["bare"]["ratio_to_bare"] == 1.0 and by_name["captum"]["speedup_over_captum"] == 1.0
    assert by_name["bare"]["bytes_written"] == 0
    assert by_name["attrstream"]["bytes_written"] > 16 * 32 * 32 * 2  # two float16 input maps at least
    assert by_name["captum"]["bytes_written"] > 16 * 32 * 32 * 4 * 2  # two float32 input maps at least
    assert 0.0 <= by_name["attrstream"]["writer_idle"] <= 1.0
    assert by_name["bare"]["writer_idle"] is None
    assert list(scratch.iterdir()) == []  # every contender's output was removed after measuring
    table = done.stdout.splitlines()
    assert any(line.startswith("attrstream / bare = ") for line in table)
    rows = [line.split() for line in table if line.split()[:1] and line.split()[0] in by_name and "=" not in line]
    assert sorted(row[0] for row in rows) == sorted(by_name)


def test_bench_metrics_runs_every_contender_on_the_same_curves(tmp_path: Path) -> None:
    results = tmp_path / "metrics.json"
    contenders = ["attrstream", "loop", *(["quantus"] if importlib.util.find_spec("quantus") else [])]  # bench extra
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_metrics.py"), "--image-size", "16", "-n", "3",
         "--steps", "4", "--batch-size", "5", "--repeats", "1", "--contenders", ",".join(contenders),
         "--json", str(results)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(ROOT)])},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    by_name = {r["contender"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert sorted(by_name) == sorted(contenders)
    assert by_name["attrstream"]["points_per_curve"] == by_name["loop"]["points_per_curve"] == 5
    if "quantus" in by_name:
        assert by_name["quantus"]["points_per_curve"] == 3 * 4  # C·S steps of channel-pixels
    for r in by_name.values():
        assert r["benchmark"] == "metrics" and r["config"]["steps"] == 4 and r["points_s"] > 0
        assert r["mean_curve_gap"] < 1e-4, r  # every contender computed the same deletion curve
    assert by_name["attrstream"]["attrstream_speedup"] == 1.0
    assert any(line.startswith("attrstream / loop = ") for line in done.stdout.splitlines())
