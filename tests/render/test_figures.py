"""Figure functions on plain numpy arrays: the notebook API (``ax=`` / ``fig=``), and what they draw."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from attrstream.engine.render import (
    attribution_grid,
    class_distribution,
    confusion_matrix,
    thumbnail_grid,
    top_examples_grid,
    topk_probs,
)


def test_topk_probs_is_a_sorted_softmax() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 30, (6, 11)).astype(np.float16)  # large logits: the softmax must be stable
    index, prob = topk_probs(logits, 3)
    z = logits.astype(np.float64)
    full = np.exp(z - z.max(1, keepdims=True))
    full /= full.sum(1, keepdims=True)
    np.testing.assert_array_equal(index[:, 0], z.argmax(1))
    np.testing.assert_allclose(prob, np.sort(full, axis=1)[:, ::-1][:, :3], rtol=1e-12)
    assert topk_probs(logits, 50)[0].shape == (6, 11)  # k capped at the number of classes


def test_draws_into_the_callers_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot(1, 2, 2)
    assert class_distribution(np.array([0, 1, 1, 2]), 3, ax=ax) is fig
    assert [p.get_height() for p in ax.patches] == [1, 2, 1]


def test_many_classes_keep_the_most_frequent_and_an_other_column() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 50, 2000)
    pred = np.where(rng.random(2000) < 0.7, labels, rng.integers(0, 50, 2000))
    labels[:10] = -1  # unknown labels are left out
    fig = confusion_matrix(labels, pred, 50, max_classes=20)
    ax = fig.axes[0]
    rates = ax.images[0].get_array()
    assert rates.shape == (20, 21)  # 20 most frequent labels × (same 20 predictions + other)
    np.testing.assert_allclose(rates.sum(1), 1.0)
    assert "1990 labelled" in ax.get_title()
    bars = class_distribution(pred, 50, labels=labels, max_classes=20).axes[0]
    assert len(bars.patches) == 40 and "top 20 of 50" in bars.get_title()  # predicted + label bars


def test_grids_fill_a_subfigure() -> None:
    rng = np.random.default_rng(2)
    thumbs = rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    parent = Figure()
    left, right = parent.subfigures(1, 2)
    assert thumbnail_grid(thumbs, np.array([0, -1, 2]), class_names=["a", "b", "c"], fig=left) is left
    assert [a.get_title() for a in left.axes[:3]] == ["a", "?", "c"]
    maps = {"grad_x_input": rng.normal(size=(3, 16, 16)), "layer grad_cam": rng.random((3, 4, 4))}
    assert attribution_grid(thumbs, maps, shared_scale=True, fig=right) is right
    assert right.axes[1].get_title().startswith("grad_x_input\n±")  # shared scale: the threshold is shown


@pytest.mark.parametrize("k", [1, 4])
def test_top_examples_grid_leaves_missing_slots_empty(k: int) -> None:
    values = np.full((2, k), -np.inf)
    values[:, 0] = [3.0, 2.0]  # one example only
    thumbs = np.zeros((2, k, 8, 8, 3), np.uint8)
    fig = top_examples_grid(thumbs, values, np.zeros((2, k), int), np.array([5, 9]), layer="l")
    shown = [a for a in fig.axes if a.axison]
    assert len(shown) == 2 and shown[0].get_title() == "#0: 3"
