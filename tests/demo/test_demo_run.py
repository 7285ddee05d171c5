"""``attrstream demo`` end to end, as a user runs it: a real subprocess, store, report, localization and AUCs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from attrstream.engine import open_run

pytestmark = pytest.mark.slow


def demo(out: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATTRSTREAM_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "attrstream.engine", "demo", "--out", str(out), "--n", "96",
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=600)


def test_demo_writes_store_report_localization_and_faithfulness(tmp_path, default_model):
    _, info = default_model
    out = tmp_path / "demo"
    proc = demo(out, info.cache_path.parent)
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy" in proc.stdout and "cached" in proc.stdout  # the session's model was reused

    run = open_run(out / "run.zarr")
    assert run.complete and run.n == 96
    assert set(run.methods) == {"grad_x_input", "saliency", "smoothgrad", "integrated_gradients"}
    assert run.inputs()["mask"].shape == (96, 64, 64)
    assert run.feature_layers == ["block3"] and run.features("block3")["channel"].tolist() == list(range(32))

    rows = {row["method"]: row for row in json.loads((out / "localization.json").read_text())}
    assert rows["grad_x_input"]["pointing"] >= 0.85
    assert all(row["energy"] > row["chance"] for row in rows.values()), rows
    assert re.search(r"grad_x_input\s+[01]\.\d{3}", proc.stdout)

    metrics = run.group["metrics"].attrs
    assert metrics["localization"] == json.loads((out / "localization.json").read_text())  # the report reads the store
    aucs = metrics["attrstream_metrics"]["mean_auc"]
    random = aucs["random"]
    for method in ("grad_x_input", "integrated_gradients"):  # faithful maps beat the random ranking on both metrics
        ours = aucs[f"attributions/{method}"]
        assert ours["deletion"] < random["deletion"] and ours["insertion"] > random["insertion"], (method, ours, random)
    assert re.search(r"^random\s+0\.\d{3}\s+0\.\d{3}\s+0\.\d{3}$", proc.stdout, re.MULTILINE), proc.stdout

    index = (out / "report" / "index.html").read_text()
    pngs = re.findall(r'src="([^"]+\.png)"', index)
    assert pngs and all((out / "report" / p).is_file() for p in pngs)
    assert '<h2 id="faithfulness">' in index and '<h2 id="localization">' in index
    assert "faithfulness_deletion.png" in pngs and "faithfulness_insertion.png" in pngs
    assert {"features_block3.png", "optimized_block3.png"} <= set(pngs)  # the atlas, with optimized inputs

    again = demo(out, info.cache_path.parent)  # the finished store is resumed, not recomputed
    assert again.returncode == 0, again.stderr
    assert "1 of 1 units already done" in again.stderr
