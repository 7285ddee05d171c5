"""Faithfulness figures: mean deletion/insertion curves of each map beside the random baseline.

A map that reflects what the model uses makes the target-class probability fall faster than
chance when its top pixels are deleted (deletion curve below the random band, lower AUC) and rise
faster when they are put back into a blurred image (insertion curve above it, higher AUC).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
from matplotlib.figure import Figure

from attrstream.engine.faithfulness.layout import RANDOM, map_name
from attrstream.engine.render import reading
from attrstream.engine.render._canvas import FigureLike, figure_or_new
from attrstream.engine.render.html import Section
from attrstream.engine.store import Run

_COLUMNS = 4
_VERB = {"deletion": "deleted", "insertion": "inserted"}
_BETTER = {"deletion": "lower", "insertion": "higher"}


def perturbation_figure(metric: str, curves: Mapping[str, np.ndarray], baseline: np.ndarray, *,
                        fig: FigureLike | None = None) -> FigureLike:
    """One panel per map: its mean curve over the random baseline's mean and interquartile band.

    ``curves`` maps a map's name to its ``[n, S+1]`` curves, ``baseline`` is ``[n, S+1]``; the
    title of each panel carries the mean AUC.
    """
    cols = max(1, min(_COLUMNS, len(curves)))
    rows = max(1, math.ceil(len(curves) / cols))
    fig = figure_or_new(fig, 3.0 * cols, 2.4 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    steps = baseline.shape[1] - 1
    t = np.linspace(0.0, 1.0, steps + 1)
    q1, q3 = np.percentile(baseline, [25, 75], axis=0) if len(baseline) else (np.full(steps + 1, np.nan),) * 2
    for ax, (name, c) in zip(axes, curves.items(), strict=False):
        ax.fill_between(t, q1, q3, color="0.85", label="random, IQR")
        ax.plot(t, baseline.mean(0), "--", color="0.45", lw=1, label=f"random, mean (AUC {_auc(baseline):.3f})")
        ax.plot(t, c.mean(0), color="C0", lw=1.6, label="mean")
        ax.set_title(f"{name}: AUC {_auc(c):.3f}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    fig.supxlabel(f"fraction of pixels {_VERB.get(metric, 'perturbed')} (highest-ranked first)", fontsize=9)
    fig.supylabel("target-class probability", fontsize=9)
    fig.suptitle(f"{metric.capitalize()} ({len(baseline)} examples; {_BETTER.get(metric, '')} AUC is better)",
                 fontsize=10)
    return fig


def _auc(curves: np.ndarray) -> float:
    mean = curves.mean(0) if len(curves) else np.full(curves.shape[1], np.nan)
    return float((mean.sum() - (mean[0] + mean[-1]) / 2) / (len(mean) - 1))


def faithfulness_section(run: Run, save: Callable[[Figure, str], str]) -> Section | None:
    """The report's section of an evaluated store (``attrstream evaluate``): the AUC table and one
    figure per metric; None when the store holds no finished evaluation."""
    means = reading.mean_aucs(run)
    if not means:
        return None
    metrics = list(next(iter(means.values())))
    table = [{"map": map_name(path), **{f"{m} AUC ({_BETTER.get(m, '')} is better)": v for m, v in by.items()}}
             for path, by in means.items()]
    figures = []
    for metric in metrics:
        curves = {map_name(path): reading.metric_curves(run, path, metric) for path in means if path != RANDOM}
        fig = perturbation_figure(metric, curves, reading.metric_curves(run, RANDOM, metric))
        figures.append((save(fig, f"faithfulness_{metric}"),
                        f"{metric.capitalize()}: the mean curve of each map (blue) against a random ranking of the "
                        "pixels (dashed; grey band: its interquartile range over the examples)."))
    note = ("Deletion sets a map's highest-ranked pixels to 0, step by step; insertion puts them back into a blurred "
            "copy of the image. A faithful map lowers the target-class probability faster than the random ranking "
            "under deletion (lower AUC) and raises it faster under insertion (higher AUC).")
    return Section("Faithfulness", figures, note=note, table=table)
