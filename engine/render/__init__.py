"""Rendering from the store alone: figure functions returning matplotlib Figures, and the report.

Figure functions take numpy arrays (``ax=None`` / ``fig=None``: draw into the caller's axes or
(sub)figure, else a new one), never touch pyplot's global state and never show anything;
:func:`render_report` saves them all as PNGs behind one ``index.html``.
"""

from attrstream.engine.render.activations import (
    activation_figure,
    channel_mean_heatmap,
    dataset_stats_plot,
    stat_histograms,
)
from attrstream.engine.render.faithfulness import perturbation_figure
from attrstream.engine.render.features import top_examples_grid
from attrstream.engine.render.gradients import attribution_grid
from attrstream.engine.render.inputs import thumbnail_grid
from attrstream.engine.render.normalize import SIGNS, cumulative_threshold, normalize_attr
from attrstream.engine.render.outputs import (
    class_distribution,
    confidence_histogram,
    confusion_matrix,
    top_classes,
    topk_probs,
)
from attrstream.engine.render.report import render_report
from attrstream.engine.render.topk import ChannelTopK, channel_topk

__all__ = [
    "SIGNS",
    "ChannelTopK",
    "activation_figure",
    "attribution_grid",
    "channel_mean_heatmap",
    "channel_topk",
    "class_distribution",
    "confidence_histogram",
    "confusion_matrix",
    "cumulative_threshold",
    "dataset_stats_plot",
    "normalize_attr",
    "perturbation_figure",
    "render_report",
    "stat_histograms",
    "thumbnail_grid",
    "top_classes",
    "top_examples_grid",
    "topk_probs",
]
