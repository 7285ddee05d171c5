"""``attrstream demo``: the embedded default, end to end and offline.

Trains (or loads) the shapes CNN, sweeps a held-out split with every method at three layers into
``OUT/run.zarr``, evaluates every stored map's deletion/insertion curves into the same store,
renders ``OUT/report/``, and scores every stored map against the ground-truth masks (pointing game
and energy inside the mask, next to chance). A second run resumes the
finished store and only re-renders, so it takes seconds.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from attrstream.engine.demo.localization import localization_table
from attrstream.engine.demo.shapes import MEAN, STD, ShapesDataset
from attrstream.engine.demo.train import TrainConfig, TrainInfo, load_or_train
from attrstream.engine.faithfulness.layout import (
    LOCALIZATION_KEY,
    METRICS_GROUP,
    RANDOM,
    map_name,
    stored_maps,
)
from attrstream.engine.vocabulary import ALL_METHODS

DEMO_LAYERS = ("block1", "block2", "block3")
DEMO_SEED = 1  # the swept images: a held-out stream, disjoint from training and from the accuracy check
DEMO_SAMPLES = 8  # SmoothGrad samples and Integrated Gradients steps: each costs one more forward+backward
DEMO_STEPS = 8  # deletion/insertion steps: (2·S - 2) forwards per example and map; 8 keep the demo quick
DEMO_FEATURE_STEPS = 64  # activation maximization of the last block's channels: a quarter of the default


@dataclass(frozen=True)
class DemoResult:
    store: Path
    report: Path
    train: TrainInfo
    localization: list[dict]
    aucs: dict[str, dict[str, float]]  # {map path: {metric: mean AUC}}, random baseline under "random"
    seconds: float


def localization_of(run) -> list[dict]:
    """Localization rows of every stored map (input methods, ``layer/method`` layer maps) vs the masks."""
    masks = run.inputs()["mask"].astype(bool)
    readers = {"grad_cam": run.cam, "grad_x_act": run.grad_x_act}
    maps = {}
    for name, path in stored_maps(run.spec).items():
        if path.startswith("attributions/"):
            maps[name] = run.attribution(name)
        else:
            layer, method = name.rsplit("/", 1)
            maps[name] = readers[method](layer)
    return localization_table(maps, masks)


def format_table(rows: list[dict], means: dict[str, dict[str, float]]) -> str:
    """Localization scores and mean deletion/insertion AUCs of every map, the random baseline last."""
    aucs = {map_name(path): by_metric for path, by_metric in means.items()}
    metrics = list(next(iter(means.values()), {}))
    lines = [f"{'map':<24} {'pointing':>9} {'energy':>8} {'chance':>8}" + "".join(f" {m:>10}" for m in metrics)]
    for r in rows:
        lines.append(f"{r['method']:<24} {r['pointing']:>9.3f} {r['energy']:>8.3f} {r['chance']:>8.3f}"
                     + "".join(f" {aucs.get(r['method'], {}).get(m, float('nan')):>10.3f}" for m in metrics))
    chance = rows[0]["chance"] if rows else float("nan")
    lines.append(f"{RANDOM:<24} {'':>9} {'':>8} {chance:>8.3f}" + "".join(f" {aucs[RANDOM][m]:>10.3f}" for m in metrics))
    return "\n".join(lines)


def _finished(store: Path, report: Path) -> bool:
    from attrstream.engine.errors import StoreError
    from attrstream.engine.store import open_run

    try:
        run = open_run(store)
        if not (run.complete and report.is_file() and DEMO_LAYERS[-1] in run.feature_layers):
            return False
        features = run.features(DEMO_LAYERS[-1])
        return len(features["channel"]) == len(features["settings"]["channels"])
    except StoreError:
        return False


def run_demo(out: str | Path = "demo_out", *, n: int = 256, progress: bool = True, cache_dir: Path | None = None,
             train_config: TrainConfig | None = None, batch_size: int = 64, overwrite: bool = False) -> DemoResult:
    """Run the demo into ``out`` and print where everything is and how well the maps localize.

    A finished store with its report is resumed by the sweep (nothing to compute) and not rendered
    again, so a second run takes seconds.
    """
    from attrstream.engine.faithfulness.run import evaluate
    from attrstream.engine.features.run import visualize_features
    from attrstream.engine.pipeline import sweep
    from attrstream.engine.render import render_report
    from attrstream.engine.store.job import annotate_job

    start = time.perf_counter()
    out = Path(out)
    model, info = load_or_train(cache_dir, config=train_config)
    dataset = ShapesDataset(n, image_size=(train_config or TrainConfig()).image_size, seed=DEMO_SEED, split="test")
    store, report = out / "run.zarr", out / "report" / "index.html"
    finished = not overwrite and _finished(store, report)
    run = sweep(model, dataset, store, layers=DEMO_LAYERS, methods=ALL_METHODS, batch_size=batch_size, unit=128,
                smoothgrad_samples=DEMO_SAMPLES, ig_steps=DEMO_SAMPLES, progress=progress, overwrite=overwrite,
                model_name="shapesnet", dataset_name="shapes",
                extra={"class_names": list(ShapesDataset.classes), "train_accuracy": info.accuracy})
    means = evaluate(run, model, dataset, steps=DEMO_STEPS, batch_size=batch_size, progress=progress)
    features = visualize_features(model, store, DEMO_LAYERS[-1], steps=DEMO_FEATURE_STEPS, size=dataset.image_size,
                                  mean=(MEAN,), std=(STD,), progress=progress, overwrite=overwrite,
                                  model_name="shapesnet").features(DEMO_LAYERS[-1])
    rows = localization_of(run)
    (out / "localization.json").write_text(json.dumps(rows, indent=2))
    annotate_job(store, METRICS_GROUP, {LOCALIZATION_KEY: rows})  # the report's localization table
    if not finished:
        report = render_report(store, out / "report")
    seconds = time.perf_counter() - start
    print(
        f"model      shapesnet, held-out accuracy {info.accuracy:.1%} "
        f"({'trained in' if info.trained_now else 'cached; trained in'} {info.train_seconds:.1f} s: {info.cache_path})\n"
        f"store      {store}  ({run.n} held-out images, methods: {', '.join(run.methods)}; "
        f"layers: {', '.join(run.layers)})\n"
        f"features   {len(features['channel'])} optimized inputs of {DEMO_LAYERS[-1]} (features/{DEMO_LAYERS[-1]})\n"
        f"report     {report}\n"
        f"localization of the maps against the object masks (pointing game, energy inside the mask), and their\n"
        f"deletion/insertion AUCs ({DEMO_STEPS} steps; a faithful map has a lower deletion and a higher insertion\n"
        f"AUC than the random ranking of the pixels):\n"
        f"{format_table(rows, means)}\n"
        f"total      {seconds:.1f} s",
        file=sys.stdout,
    )
    return DemoResult(store, report, info, rows, means, seconds)
