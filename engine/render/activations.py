"""Activation visualisation: per-channel statistics of one layer across examples and data set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import NullLocator

from attrstream.engine.render._canvas import FigureLike, axes_or_new, figure_or_new


def _limits(values: np.ndarray) -> tuple[float, float, str]:
    """Robust colour limits (1st/99th percentile) and a colour map: diverging when both signs occur."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0, "viridis"
    lo, hi = np.percentile(finite, [1, 99])
    if lo < 0 < hi:
        m = max(-lo, hi)
        return -m, m, "RdBu_r"
    return float(lo), float(max(hi, lo + 1e-12)), "viridis"


def channel_mean_heatmap(
    means: np.ndarray,
    *,
    example_index: np.ndarray | None = None,
    title: str = "Channel means",
    ax: Axes | None = None,
) -> FigureLike:
    """Heatmap of per-example channel means ``[n, C]`` (rows: examples, columns: channels)."""
    ax = axes_or_new(ax, 8, 4)
    vmin, vmax, cmap = _limits(means)
    image = ax.imshow(means, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xlabel("channel")
    if example_index is not None and len(example_index):
        ticks = np.linspace(0, len(example_index) - 1, min(6, len(example_index))).round().astype(int)
        ax.set_yticks(ticks, [str(int(example_index[t])) for t in ticks], fontsize=7)
    ax.set_ylabel("example")
    ax.set_title(f"{title} ({means.shape[0]} examples × {means.shape[1]} channels)", fontsize=10)
    ax.figure.colorbar(image, ax=ax, label="mean activation")
    return ax.figure


def _varying(stats: np.ndarray, stat_names: Sequence[str]) -> list[int]:
    """Columns of ``stats [n, C, S]`` that take more than one finite value (a ReLU layer's min is all 0)."""
    keep = []
    for s in range(len(stat_names)):
        values = stats[..., s][np.isfinite(stats[..., s])]
        if values.size and values.min() < values.max():
            keep.append(s)
    return keep or list(range(len(stat_names)))


def stat_histograms(stats: np.ndarray, stat_names: Sequence[str], *, fig: FigureLike | None = None) -> FigureLike:
    """One histogram per statistic of ``stats [n, C, S]`` over all (example, channel) pairs.

    A statistic that is one value over the whole layer is named in the title instead of drawn as a spike.
    """
    shown = _varying(stats, stat_names)
    fig = figure_or_new(fig, 2.2 * len(shown), 2.4)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, s in zip(axes, shown, strict=True):
        name = stat_names[s]
        values = stats[..., s].ravel()
        values = values[np.isfinite(values)]
        ax.hist(values, bins=40, color="tab:blue")
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("example × channel")
    constant = [f"{stat_names[s]} = {float(np.nanmax(stats[..., s])):.3g}" for s in range(len(stat_names))
                if s not in shown and np.isfinite(stats[..., s]).any()]
    left_out = f" ({', '.join(constant)} everywhere, not drawn)" if constant else ""
    fig.suptitle(f"Distributions of per-example channel statistics{left_out}", fontsize=10)
    return fig


def dataset_stats_plot(
    dataset_stats: np.ndarray | None, stat_names: Sequence[str], *, ax: Axes | None = None
) -> FigureLike:
    """Dataset-level per-channel statistics ``[C, S]``: mean ± std band, min/max, fraction positive.

    ``None`` (a run not finalized yet) draws a note instead, so a report of a partial run still
    renders.
    """
    ax = axes_or_new(ax, 8, 3)
    if dataset_stats is None:
        ax.text(0.5, 0.5, "Dataset statistics appear once the run is finalized.", ha="center", va="center")
        ax.set_axis_off()
        return ax.figure
    column = {name: dataset_stats[:, s] for s, name in enumerate(stat_names)}
    mean, std, low, high, frac_pos = (column[name] for name in ("mean", "std", "min", "max", "frac_pos"))
    c = np.arange(len(mean))
    ax.fill_between(c, mean - std, mean + std, alpha=0.3, label="mean ± std", step="mid")
    ax.plot(c, mean, lw=1, label="mean", drawstyle="steps-mid")
    ax.plot(c, low, lw=0.6, ls=":", color="gray", label="min / max", drawstyle="steps-mid")
    ax.plot(c, high, lw=0.6, ls=":", color="gray", drawstyle="steps-mid")
    ax.set_xlabel("channel")
    ax.set_ylabel("activation")
    ax.set_xlim(-0.5, len(mean) - 0.5)
    twin = ax.twinx()
    twin.plot(c, frac_pos, lw=0.8, color="tab:red", label="fraction > 0", drawstyle="steps-mid")
    twin.set_ylim(0, 1)
    twin.set_ylabel("fraction > 0", color="tab:red")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=4, frameon=False)
    ax.set_title("Dataset statistics per channel", fontsize=10, pad=18)  # above the legend, off the data
    return ax.figure


def activation_figure(
    layer: str,
    stats: np.ndarray,
    dataset_stats: np.ndarray | None,
    stat_names: Sequence[str],
    *,
    example_index: np.ndarray | None = None,
    fig: FigureLike | None = None,
) -> FigureLike:
    """One layer's page: channel-mean heatmap, statistic histograms and dataset statistics."""
    fig = figure_or_new(fig, 11, 9)
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[2.2, 1.1, 1.3])
    channel_mean_heatmap(stats[..., list(stat_names).index("mean")], example_index=example_index, ax=top.add_subplot())
    stat_histograms(stats, stat_names, fig=middle)
    dataset_stats_plot(dataset_stats, stat_names, ax=bottom.add_subplot())
    fig.suptitle(f"Activations of {layer}")
    return fig
