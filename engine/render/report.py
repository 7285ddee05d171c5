"""The rendered report of a run: the five visualisations as PNGs plus one ``index.html``.

Reads only the store (no model, no torch): every figure is drawn from stored arrays, and only the
rows it draws are read, except the per-unit streams of :mod:`~attrstream.engine.render.reading`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attrstream.engine.errors import ConfigError
from attrstream.engine.render import reading
from attrstream.engine.render._canvas import class_name, save
from attrstream.engine.render.activations import activation_figure
from attrstream.engine.render.atlas import ExampleBlock, channel_atlas, optimized_grid
from attrstream.engine.render.faithfulness import faithfulness_section
from attrstream.engine.render.gradients import attribution_grid
from attrstream.engine.render.html import Section, write_index
from attrstream.engine.render.inputs import thumbnail_grid
from attrstream.engine.render.normalize import check_outlier_perc
from attrstream.engine.render.outputs import (
    class_distribution,
    confidence_histogram,
    confusion_matrix,
    top_classes,
)
from attrstream.engine.render.topk import ChannelTopK
from attrstream.engine.store import Run, open_run

FEATURE_CHANNELS = 6  # channels of a layer's atlas: the most relevant (or most active) on the data set
FEATURE_TOPK = 4  # examples shown per channel and ranking
RANKINGS = {"relevance": "relevance", "mean": "activation"}  # what ranks the atlas's channels, as the figure says it
TOP_CLASSES = 3
_LIST_SHOWN = 12  # longer lists in the metadata table are shortened
# Config keys shown under another name (the demo records its model's accuracy on a held-out split),
# or not at all because a row of their own shows them (the package version).
_CONFIG_LABELS = {"train_accuracy": "held-out accuracy"}
_CONFIG_SHOWN_ELSEWHERE = ("attrstream_version",)


@dataclass
class _Report:
    """What every section needs: the run, the report folder, the examples drawn, unique file names."""

    run: Run
    out: Path
    done: np.ndarray  # positions of finished, non-skipped examples
    chosen: np.ndarray  # positions drawn in the per-example figures
    class_names: Sequence[str] | None
    used: set[str] = field(default_factory=set)

    def save(self, fig: Any, stem: str) -> str:
        """Save ``fig`` under a file-system-safe, unique name derived from ``stem``; return the name."""
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
        name, i = f"{base}.png", 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}.png"
        self.used.add(name)
        save(fig, self.out / name)
        return name

    def dataset_index(self, positions: np.ndarray) -> np.ndarray:
        return reading.column(self.run, "inputs/index", positions)

    def row_titles(self, labels: np.ndarray, pred: np.ndarray) -> list[str]:
        index = self.dataset_index(self.chosen)
        return [
            f"#{i} {class_name(int(lab), self.class_names)}→{class_name(int(p), self.class_names)}"
            for i, lab, p in zip(index, labels, pred, strict=True)
        ]


def _inputs_section(rep: _Report) -> Section:
    inputs = rep.run.inputs(rep.chosen)
    fig = thumbnail_grid(inputs["thumbnail"], inputs["label"], class_names=rep.class_names, indices=inputs["index"])
    return Section("Inputs", [(rep.save(fig, "inputs"), "Stored thumbnails with their labels and dataset index.")])


def _outputs_section(rep: _Report) -> Section:
    run, done = rep.run, rep.done
    pred = reading.column(run, "outputs/pred", done)
    labels = reading.column(run, "inputs/label", done)
    conf = reading.confidence(run, done)
    k = run.spec.num_classes
    known = labels >= 0
    figures = [
        (rep.save(class_distribution(pred, k, labels=labels, class_names=rep.class_names), "outputs_classes"),
         "Predicted classes over the finished examples, beside the labels."),
        (rep.save(confidence_histogram(conf, correct=(pred == labels) if known.all() else None), "outputs_confidence"),
         "Top-class probability; right and wrong predictions stacked when every label is known."),
    ]
    if known.any():
        figures.append((rep.save(confusion_matrix(labels, pred, k, class_names=rep.class_names), "outputs_confusion"),
                        "Confusion matrix of the labelled examples, rows normalised."))
    index, prob = reading.top_classes(run, rep.chosen, TOP_CLASSES)
    inputs = run.inputs(rep.chosen)
    fig = top_classes(inputs["thumbnail"], index, prob, labels=inputs["label"], class_names=rep.class_names,
                      indices=inputs["index"])
    figures.append((rep.save(fig, "outputs_examples"), f"Top {TOP_CLASSES} classes of the drawn examples."))
    return Section("Outputs", figures, note=f"{len(done)} finished examples of {run.n}.")


def _gradients_section(
    rep: _Report, methods: Sequence[str], layers: Sequence[str], outlier_perc: float, shared_scale: bool
) -> Section:
    run = rep.run
    inputs = run.inputs(rep.chosen)
    pred = run.outputs(rep.chosen)["pred"]
    common = {
        "outlier_perc": outlier_perc,
        "shared_scale": shared_scale,
        "masks": inputs.get("mask"),
        "row_titles": rep.row_titles(inputs["label"], pred),
    }
    figures = []
    if methods:
        maps = {m: run.attribution(m, rep.chosen) for m in methods}
        figures.append((rep.save(attribution_grid(inputs["thumbnail"], maps, **common), "gradients_input"),
                        "Input attributions of the drawn examples (rows: #index label→prediction)."))
    layer_maps = {f"{layer} {m}": v for layer in layers for m, v in reading.layer_maps(run, layer, rep.chosen).items()}
    if layer_maps:
        figures.append((rep.save(attribution_grid(inputs["thumbnail"], layer_maps, **common), "gradients_layers"),
                        "Layer maps (Grad-CAM, gradient × activation) upsampled to the input; layers "
                        "pooled to 1×1 are left out. A panel marked \"all zero\" is a Grad-CAM whose weighted "
                        "sum is negative everywhere (its ReLU leaves nothing)."))
    return Section("Gradients", figures, note="" if figures else "No attribution maps in this store.")


def _activations_section(rep: _Report, layers: Sequence[str]) -> Section:
    run = rep.run
    ids = reading.even_subsample(rep.done)
    figures = []
    for layer in layers:
        fig = activation_figure(layer, run.layer_stats(layer, ids), reading.dataset_stats(run, layer),
                                run.stat_names(layer), example_index=rep.dataset_index(ids))
        figures.append((rep.save(fig, f"activations_{layer}"),
                        f"{layer}: channel means of {len(ids)} evenly spaced examples, statistic distributions, "
                        "dataset statistics."))
    return Section("Activations", figures)


def _top_block(rep: _Report, title: str, top: ChannelTopK, channels: np.ndarray) -> ExampleBlock:
    values, ids = top.result()
    values, ids = values[channels], ids[channels]
    unique = np.unique(ids)
    at = np.searchsorted(unique, ids)
    return ExampleBlock(title, rep.run.inputs(unique)["thumbnail"][at], values, rep.dataset_index(unique)[at])


def _atlas(rep: _Report, layer: str) -> tuple[str, str]:
    """The atlas figure of ``layer``: its most relevant channels (or most active, without relevance)."""
    run = rep.run
    ranking, channels, means, tops = reading.atlas_channels(run, layer, rep.done, FEATURE_CHANNELS, FEATURE_TOPK)
    blocks = [_top_block(rep, "top examples by activation (channel mean)", tops["mean"], channels)]
    if ranking == "relevance":
        blocks.append(_top_block(rep, "top examples by relevance (activation × gradient)", tops["relevance"], channels))
    optimized = reading.optimized_inputs(run, layer, channels)
    label = RANKINGS[ranking]
    why = ("relevance: activation × gradient of the target score" if ranking == "relevance"
           else "this store has no relevance statistic")
    fig = channel_atlas(channels, [f"channel {c}\nmean {label}\n{means[c]:.3g}" for c in channels], blocks,
                        optimized=None if optimized is None else optimized[0],
                        optimized_values=None if optimized is None else optimized[1],
                        title=f"Channel atlas of {layer}: the {len(channels)} channels of highest mean {label} over "
                              f"the data set\n({why})")
    caption = (f"{layer}: per row, one of the {len(channels)} channels of highest mean {label} over the finished "
               f"examples ({why})"
               + (": the input optimized to excite it (its activation)," if optimized is not None else ":")
               + f" its top {FEATURE_TOPK} examples by activation"
               + (" and by relevance" if ranking == "relevance" else "") + " (#dataset index: value).")
    return rep.save(fig, f"features_{layer}"), caption


def _features_section(rep: _Report, layers: Sequence[str]) -> Section:
    figures = [_atlas(rep, layer) for layer in layers]
    figures += [_optimized(rep, layer) for layer in rep.run.feature_layers]
    return Section("Features", figures)


def _optimized(rep: _Report, layer: str) -> tuple[str, str]:
    features = rep.run.features(layer)
    settings = features["settings"]
    fig = optimized_grid(features["image"], features["channel"], features["activation"],
                         title=f"Optimized inputs of {layer} ({settings['steps']} steps, {settings['size']} px)")
    return (rep.save(fig, f"optimized_{layer}"),
            f"{layer}: the input optimized to excite each channel (activation maximization, `attrstream features`), "
            "titled by channel and the mean activation it reaches.")


def _localization_section(run: Run) -> Section | None:
    rows = reading.localization(run)
    if not rows:
        return None
    table = [{"map": r["method"], "pointing game": r["pointing"], "energy in mask": r["energy"], "chance": r["chance"]}
             for r in rows]
    return Section("Localization", note="Maps against the ground-truth object masks: how often the strongest "
                   "pixel lies on the object, and the share of |map| inside it, beside chance (the mask's area).",
                   table=table)


def _short(value: Any) -> Any:
    if isinstance(value, list) and len(value) > _LIST_SHOWN:
        return [*value[:_LIST_SHOWN], f"… ({len(value)} in all)"]
    return value


def _metadata(run: Run, done: np.ndarray) -> dict[str, Any]:
    spec, meta = run.spec, run.meta
    units = run.units_done
    rows: dict[str, Any] = {"store": str(run.path)}
    for key, value in meta.get("config", {}).items():
        if key not in _CONFIG_SHOWN_ELSEWHERE:
            rows[_CONFIG_LABELS.get(key, key)] = f"{value:.1%}" if key in _CONFIG_LABELS else _short(value)
    rows.update({
        "examples": spec.n,
        "progress": f"{int(units.sum())}/{len(units)} units done, {len(done)} examples usable, "
                    f"{'finalized' if meta.get('finalized') else 'not finalized'}",
        "input shape": list(spec.input_shape),
        "classes": spec.num_classes,
        "methods": list(spec.methods),
        "layers": [f"{s.name} ({s.channels} ch" + (f", maps {s.map_shape[0]}×{s.map_shape[1]})" if s.map_shape else ")")
                   for s in spec.layers],
        "layer methods": list(spec.layer_methods),
        "unit / dtype": f"{spec.unit} / {spec.dtype}",
        "created": meta.get("created"),
        "attrstream": meta.get("version"),
        "versions": meta.get("versions"),
        "fingerprint": meta.get("fingerprint"),
    })
    return rows


def report_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir``, created and known to be writable before any figure is drawn."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"Expected --out to be a directory for the report, got the existing file {out}.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"Expected a writable directory for the report (--out), got {out}: {err.strerror or err}.") from None
    return out


def render_report(
    run_or_path: Run | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    examples: int | Sequence[int] = 8,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    outlier_perc: float = 2,
    shared_scale: bool = False,
) -> Path:
    """Render a run's figures into ``out_dir`` and return the path of its ``index.html``.

    ``examples`` is a count (spread evenly over the finished examples) or explicit example
    positions; ``layers`` / ``methods`` restrict the figures to those names (default: all in the
    store). ``outlier_perc`` and ``shared_scale`` set the attribution normalisation (Captum's
    ``outlier_perc``; one scale per map kind instead of one per example).
    """
    run = run_or_path if isinstance(run_or_path, Run) else open_run(run_or_path)
    if run.n == 0 and run.feature_layers:  # feature visualizations written into a new store: no examples
        rep = _Report(run, report_dir(out_dir), np.empty(0, np.int64), np.empty(0, np.int64), None)
        section = Section("Features", [_optimized(rep, layer) for layer in run.feature_layers])
        return write_index(rep.out / "index.html", f"attrstream report: {run.path.name}", _metadata(run, rep.done),
                           [section])
    check_outlier_perc(outlier_perc)
    layers = reading.pick_names("layers", layers, run.layers)
    methods = reading.pick_names("methods", methods, run.methods)
    out = report_dir(out_dir)
    done = reading.done_examples(run)
    rep = _Report(run, out, done, reading.choose_examples(done, examples), run.meta.get("config", {}).get("class_names"))
    stat_layers = layers if "stats" in run.spec.layer_methods else []
    sections = [
        _inputs_section(rep),
        _outputs_section(rep),
        _gradients_section(rep, methods, layers, outlier_perc, shared_scale),
        _activations_section(rep, stat_layers),
        _features_section(rep, stat_layers),
        _localization_section(run),
        faithfulness_section(run, rep.save),
    ]
    sections = [section for section in sections if section is not None]
    return write_index(out / "index.html", f"attrstream report: {run.path.name}", _metadata(run, done), sections)
