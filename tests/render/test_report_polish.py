"""The report as a new user reads it: figures first, configuration collapsed, localization in the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from attrstream.engine.render import attribution_grid, confidence_histogram, render_report, stat_histograms

STATS = ("mean", "std", "min", "max", "frac_pos")


def test_index_puts_figures_first_and_lists_localization(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "demo" / "run.zarr"
    shutil.copytree(store, copy)
    rows = [{"method": "saliency", "pointing": 0.875, "energy": 0.5, "chance": 0.125, "n": 40}]
    (copy.parent / "localization.json").write_text(json.dumps(rows))
    html = render_report(copy, tmp_path / "report", examples=2).read_text()
    assert html.index("<img") < html.index("<details>") < html.index("fingerprint")
    assert "attrstream_version" not in html  # the version has its own row
    assert '<h2 id="localization">' in html and "<td>saliency</td><td>0.875</td>" in html


def test_a_statistic_constant_over_the_layer_is_named_not_drawn() -> None:
    stats = np.random.default_rng(0).uniform(0.1, 1, (6, 4, 5))
    stats[..., 2] = 0.0  # min of a ReLU layer
    fig = stat_histograms(stats, STATS)
    assert [ax.get_title() for ax in fig.axes] == ["mean", "std", "max", "frac_pos"]
    assert "min = 0 everywhere" in fig.get_suptitle()


def test_all_zero_map_says_so_in_its_panel() -> None:
    thumbs = np.zeros((2, 8, 8, 3), np.uint8)
    cam = np.zeros((2, 4, 4))
    cam[1, 1, 1] = 1.0
    fig = attribution_grid(thumbs, {"grad_cam": cam})
    panels = [[t.get_text() for t in fig.axes[i].texts] for i in (1, 3)]  # column "grad_cam", rows 0 and 1 (row-major)
    assert panels == [["all zero"], []]


def test_confidence_legend_lists_only_present_categories() -> None:
    fig = confidence_histogram(np.array([0.9, 0.8]), correct=np.array([True, True]))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["correct"]
