"""Output visualisation: what the model predicted, how sure it was, and where it was wrong."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from attrstream.engine.render._canvas import (
    FigureLike,
    axes_or_new,
    class_name,
    figure_or_new,
    show_image,
)


def topk_probs(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax of ``logits [n, K]`` (stable, float64) reduced to its ``k`` largest: ``(index, prob)`` ``[n, k]``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    k = min(k, p.shape[1])
    index = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return index, np.take_along_axis(p, index, axis=1)


def _frequent(counts: np.ndarray, max_classes: int) -> np.ndarray:
    """Indices of the ``max_classes`` largest counts, in class order (stable for small K)."""
    if len(counts) <= max_classes:
        return np.arange(len(counts))
    return np.sort(np.argsort(-counts, kind="stable")[:max_classes])


def class_distribution(
    pred: np.ndarray,
    num_classes: int,
    *,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    max_classes: int = 20,
    ax: Axes | None = None,
) -> Figure:
    """Bar chart of predicted-class counts, beside the true-label counts when labels are known.

    With more than ``max_classes`` classes only the most predicted ones are drawn.
    """
    ax = axes_or_new(ax, 7, 3.5)
    counts = np.bincount(pred, minlength=num_classes)
    shown = _frequent(counts, max_classes)
    x = np.arange(len(shown))
    known = labels[labels >= 0] if labels is not None else np.empty(0, np.int64)
    width = 0.4 if known.size else 0.8
    ax.bar(x - (width / 2 if known.size else 0), counts[shown], width, label="predicted")
    if known.size:
        true_counts = np.bincount(known, minlength=num_classes)
        ax.bar(x + width / 2, true_counts[shown], width, label="label", alpha=0.6)
        ax.legend(fontsize=8)
    ax.set_xticks(x, [class_name(int(c), class_names) for c in shown], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("examples")
    extra = f", top {len(shown)} of {num_classes} classes" if len(shown) < num_classes else ""
    ax.set_title(f"Predicted classes ({len(pred)} examples{extra})")
    return ax.figure


def confidence_histogram(
    confidence: np.ndarray, *, correct: np.ndarray | None = None, bins: int = 20, ax: Axes | None = None
) -> Figure:
    """Histogram of the top-class probability, split into right and wrong predictions when known."""
    ax = axes_or_new(ax, 5, 3.5)
    edges = np.linspace(0, 1, bins + 1)
    if correct is None:
        ax.hist(confidence, bins=edges)
    else:
        groups = [(name, confidence[m]) for name, m in (("correct", correct), ("wrong", ~correct)) if m.any()]
        if groups:
            ax.hist([v for _, v in groups], bins=edges, stacked=True, label=[name for name, _ in groups])
            ax.legend(fontsize=8)  # only the categories present: no "wrong" entry when every prediction is right
    ax.set_xlim(0, 1)
    ax.set_xlabel("max softmax probability")
    ax.set_ylabel("examples")
    ax.set_title(f"Confidence (median {np.median(confidence):.2f})" if len(confidence) else "Confidence")
    return ax.figure


def confusion_matrix(
    labels: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    *,
    class_names: Sequence[str] | None = None,
    max_classes: int = 20,
    ax: Axes | None = None,
) -> Figure:
    """Row-normalised confusion matrix over labelled examples (``label >= 0``), counts annotated.

    With more than ``max_classes`` classes, rows are the most frequent labels and predictions
    outside them fall into an ``other`` column.
    """
    ax = axes_or_new(ax, 6.5, 5.5)
    known = labels >= 0
    labels, pred = labels[known], pred[known]
    counts = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    full = counts.reshape(num_classes, num_classes)
    shown = _frequent(full.sum(axis=1), max_classes)
    matrix = full[np.ix_(shown, shown)]
    names = [class_name(int(c), class_names) for c in shown]
    if len(shown) < num_classes:
        matrix = np.concatenate([matrix, full[shown].sum(axis=1, keepdims=True) - matrix.sum(1, keepdims=True)], 1)
        names_x = [*names, "other"]
    else:
        names_x = names
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if matrix.size <= 400:
        for (i, j), c in np.ndenumerate(matrix):
            if c:
                ax.text(j, i, str(c), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(np.arange(len(names_x)), names_x, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")
    accuracy = float(np.mean(labels == pred)) if len(labels) else float("nan")
    ax.set_title(f"Confusion matrix ({len(labels)} labelled, accuracy {accuracy:.1%})")
    ax.figure.colorbar(image, ax=ax, label="fraction of label row")
    return ax.figure


def top_classes(
    thumbnails: np.ndarray,
    top_index: np.ndarray,
    top_prob: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    indices: np.ndarray | None = None,
    per_row: int = 2,
    fig: FigureLike | None = None,
) -> FigureLike:
    """Each example's thumbnail beside a bar chart of its top classes; the true class in green."""
    n, k = top_index.shape
    per_row = max(1, min(per_row, n))
    rows = max(1, math.ceil(n / per_row))
    fig = figure_or_new(fig, 4.6 * per_row, 1.5 * rows + 0.4)
    axes = fig.subplots(rows, 2 * per_row, squeeze=False, width_ratios=[1, 1.8] * per_row)
    for i in range(rows * per_row):
        ax_img, ax_bar = axes[i // per_row, 2 * (i % per_row)], axes[i // per_row, 2 * (i % per_row) + 1]
        if i >= n:
            ax_img.set_axis_off()
            ax_bar.set_axis_off()
            continue
        label = int(labels[i]) if labels is not None else -1
        title = f"#{int(indices[i])}" if indices is not None else None
        show_image(ax_img, thumbnails[i], title)
        colors = ["tab:green" if c == label else "tab:gray" for c in top_index[i]]
        y = np.arange(k)
        ax_bar.barh(y, top_prob[i], color=colors)
        ax_bar.set_yticks(y, [class_name(int(c), class_names) for c in top_index[i]], fontsize=7)
        ax_bar.invert_yaxis()
        ax_bar.set_xlim(0, 1)
        ax_bar.tick_params(axis="x", labelsize=7)
        ax_bar.set_xlabel("probability", fontsize=7)
        if label >= 0:
            ax_bar.set_title(f"label: {class_name(label, class_names)}", fontsize=8)
    fig.suptitle("Top classes per example (true class in green)")
    return fig
