"""A store in TensorBoard: images, ridge-plot histograms, the embedding projector, scalars and text.

Reads only the store, like the report, and with the report's choices: the same spread of
examples and the same map normalisation and colours, so a TensorBoard image and a report panel
of one example agree. Per-example statistics stream one finished unit at a time in two passes
(bin edges, then counts), so memory stays bounded for a store larger than RAM; the projector holds
at most ``embedding_examples`` rows.

Tags (one per map or layer; ``step`` is the channel index where it says so):

- images ``inputs/thumbnail``, ``attributions/<method>``, ``layers/<layer>/<method>``
- histograms ``activations/<layer>/channel_mean`` (step = channel) and
  ``activations/<layer>/all_channel_means`` (step 0)
- scalars ``dataset_stats/<layer>/<stat>`` (step = channel), ``outputs/accuracy``,
  ``localization/<map>/<score>``, ``metrics/<map path>/<metric>_auc``
- text ``run/config``; projector: the last layer's per-example channel means
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attrstream.engine.errors import DependencyError
from attrstream.engine.export.defaults import EMBEDDING_EXAMPLES, HISTOGRAM_BINS, TENSORBOARD_EXAMPLES
from attrstream.engine.export.histograms import ChannelHistograms, ChannelRange
from attrstream.engine.render import reading
from attrstream.engine.render._canvas import class_name
from attrstream.engine.render.gradients import normalized_map, overlay_image
from attrstream.engine.store import Run, open_run

INSTALL_HINT = "pip install 'attrstream[tensorboard]' (or: pip install tensorboard)"


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``, or a DependencyError saying how to install TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DependencyError(f"TensorBoard export needs the tensorboard package: {INSTALL_HINT}.") from None
    return SummaryWriter


def _thumbnails(run: Run, ids: np.ndarray) -> np.ndarray:
    return np.asarray(run.group["inputs/thumbnail"].get_orthogonal_selection((ids,)))


def _images(writer: Any, run: Run, chosen: np.ndarray, methods: Sequence[str], layers: Sequence[str],
            outlier_perc: float) -> None:
    thumbs = _thumbnails(run, chosen)
    writer.add_images("inputs/thumbnail", thumbs, 0, dataformats="NHWC")
    maps = {f"attributions/{m}": (m, run.attribution(m, chosen)) for m in methods}
    for layer in layers:
        maps.update({f"layers/{layer}/{m}": (m, v) for m, v in reading.layer_maps(run, layer, chosen).items()})
    for tag, (method, values) in maps.items():
        normed, _, signed = normalized_map(method, values, outlier_perc=outlier_perc)
        pixels = np.stack([overlay_image(t, m, signed) for t, m in zip(thumbs, normed, strict=True)])
        writer.add_images(tag, pixels, 0, dataformats="NHWC")


def _channel_means(run: Run, layer: str, rows: slice, keep: np.ndarray) -> np.ndarray:
    return run.layer_stats(layer, rows)[keep, :, run.stat_names(layer).index("mean")]


def _histograms(writer: Any, run: Run, layers: Sequence[str], done: np.ndarray, embed_ids: np.ndarray,
                bins: int, bar: Any) -> np.ndarray | None:
    """Two streamed passes over the finished units; returns the last layer's means at ``embed_ids``."""
    spans = {layer: (ChannelRange(), ChannelRange()) for layer in layers}  # per channel, pooled
    for rows, keep in reading.done_blocks(run, done):
        for layer in layers:
            means = _channel_means(run, layer, rows, keep)
            spans[layer][0].update(means)
            spans[layer][1].update(means.reshape(-1, 1))
        bar.update()
    hists = {layer: (ChannelHistograms.over(a, bins), ChannelHistograms.over(b, bins)) for layer, (a, b) in spans.items()}
    embedded = []
    for rows, keep in reading.done_blocks(run, done):
        for layer in layers:
            means = _channel_means(run, layer, rows, keep)
            hists[layer][0].update(means)
            hists[layer][1].update(means.reshape(-1, 1))
            if layer == layers[-1]:
                embedded.append(means[np.isin(rows.start + keep, embed_ids)])
        bar.update()
    for layer in layers:
        (per_channel, pooled), (span, pooled_span) = hists[layer], spans[layer]
        for c in range(per_channel.counts.shape[0]):
            raw = per_channel.raw(c, span)
            if raw is not None:
                writer.add_histogram_raw(f"activations/{layer}/channel_mean", global_step=c, **raw)
        raw = pooled.raw(0, pooled_span)
        if raw is not None:
            writer.add_histogram_raw(f"activations/{layer}/all_channel_means", global_step=0, **raw)
    return np.concatenate(embedded) if layers else None


def _embedding(writer: Any, run: Run, layer: str, ids: np.ndarray, features: np.ndarray) -> None:
    import torch

    names = run.meta.get("config", {}).get("class_names")
    index, label, pred = (reading.column(run, path, ids) for path in ("inputs/index", "inputs/label", "outputs/pred"))
    metadata = [[str(int(i)), class_name(int(lab), names), class_name(int(p), names),
                 "?" if lab < 0 else str(bool(lab == p)).lower()]
                for i, lab, p in zip(index, label, pred, strict=True)]
    sprite = torch.from_numpy(_thumbnails(run, ids)).permute(0, 3, 1, 2).float() / 255
    writer.add_embedding(torch.from_numpy(np.nan_to_num(features)), metadata=metadata, label_img=sprite,
                         metadata_header=["index", "label", "prediction", "correct"], tag=layer,
                         global_step=0)


def _scalars(writer: Any, run: Run, layers: Sequence[str], done: np.ndarray) -> None:
    for layer in layers:
        stats = reading.dataset_stats(run, layer)
        if stats is None:
            continue
        for s, stat in enumerate(run.stat_names(layer)[: stats.shape[1]]):
            for c, value in enumerate(stats[:, s]):
                writer.add_scalar(f"dataset_stats/{layer}/{stat}", float(value), c)
    labels, pred = reading.column(run, "inputs/label", done), reading.column(run, "outputs/pred", done)
    if (labels >= 0).any():
        writer.add_scalar("outputs/accuracy", float(np.mean(labels[labels >= 0] == pred[labels >= 0])), 0)
    for row in reading.localization(run):
        for score in ("pointing", "energy", "chance"):
            writer.add_scalar(f"localization/{row['method']}/{score}", float(row[score]), 0)
    for path, by_metric in reading.mean_aucs(run).items():
        for metric, value in by_metric.items():
            writer.add_scalar(f"metrics/{path}/{metric}_auc", float(value), 0)


def _config_text(run: Run) -> str:
    rows = "\n".join(f"| {key} | `{json.dumps(value)}` |" for key, value in run.meta.get("config", {}).items())
    return f"store `{run.path}`, {run.n} examples\n\n| option | value |\n| --- | --- |\n{rows}"


def export_tensorboard(
    run_or_path: Run | str | os.PathLike,
    logdir: str | os.PathLike,
    *,
    examples: int | Sequence[int] = TENSORBOARD_EXAMPLES,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    embedding_examples: int = EMBEDDING_EXAMPLES,
    bins: int = HISTOGRAM_BINS,
    outlier_perc: float = 2,
    progress: bool = True,
) -> Path:
    """Write a run's images, histograms, projector, scalars and configuration to ``logdir``; return it.

    ``examples`` (a count spread evenly, or positions), ``layers``, ``methods`` and ``outlier_perc``
    mean what they mean for :func:`~attrstream.engine.render.render_report`. Open the result with
    ``tensorboard --logdir LOGDIR``.
    """
    from tqdm.auto import tqdm

    SummaryWriter = summary_writer_class()
    run = run_or_path if isinstance(run_or_path, Run) else open_run(run_or_path)
    layers = reading.pick_names("layers", layers, run.layers)
    methods = reading.pick_names("methods", methods, run.methods)
    done = reading.done_examples(run)
    chosen = reading.choose_examples(done, examples)
    stat_layers = layers if "stats" in run.spec.layer_methods else []
    embed_ids = reading.even_subsample(done, embedding_examples)
    blocks = sum(1 for _ in reading.done_blocks(run, done))
    logdir = Path(logdir)
    with SummaryWriter(str(logdir)) as writer, tqdm(total=2 * blocks, unit="unit", disable=not progress,
                                                    desc="tensorboard", file=sys.stderr, dynamic_ncols=True) as bar:
        writer.add_text("run/config", _config_text(run), 0)
        _images(writer, run, chosen, methods, layers, outlier_perc)
        features = _histograms(writer, run, stat_layers, done, embed_ids, bins, bar)
        if features is not None:
            _embedding(writer, run, stat_layers[-1], embed_ids, features)
        _scalars(writer, run, stat_layers, done)
    return logdir
