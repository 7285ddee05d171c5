"""bench_sweep.py end to end on a tiny configuration: every contender runs and reports sane numbers."""

from __future__ import annotations

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


def test_bench_features_measures_every_contender(tmp_path: Path) -> None:
    results = tmp_path / "features.json"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}  # the children import tests.engine.models
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_features.py"), "--model", "tests.engine.models:tiny_cnn",
         "--layer", "stage2", "--channels", "2", "--steps", "1", "--size", "16", "--batch-size", "2",
         "--repeats", "1", "--threads", "1", "--json", str(results)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = {r["contender"]: r for r in map(json.loads, results.read_text().splitlines())}
    assert {"bare", "batched", "one_at_a_time"} <= set(records)  # lucent only where torch-lucent is installed
    for r in records.values():
        assert r["benchmark"] == "features" and r["config"]["channels"] == 2 and r["versions"]["torch"]
        assert r["channel_steps_s"] > 0 and abs(r["channel_steps_s"] - 2 / r["wall_s"]) < 1e-6 * r["channel_steps_s"]
    assert records["bare"]["ratio_to_bare"] == 1.0 and records["batched"]["batched_speedup"] == 1.0
