"""Does activation maximization work on a real model: diagonal dominance and the data set's top example.

For every optimized channel c of a layer: does its optimized input excite c more than any other
channel's optimized input does (diagonal dominance), and more than the data set's most exciting
example does? Runs ``visualize_features`` into a fresh store, feeds the stored inputs back, and
reads the data set's per-channel maximum from one pass over it.

    python benchmarks/check_features.py --model shapesnet --layer block3 --size 64 --steps 256
    python benchmarks/check_features.py --model resnet18 --layer layer4 --channels 0:64 --size 64 --steps 128

``shapesnet`` is the demo's trained network with its held-out shapes; any other model gets seeded
random weights and ``fake`` images (ImageNet normalization). Prints a table and appends a JSON line
to benchmarks/results/features_check.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RESULTS_DIR, append_jsonl, environment

RESULTS = RESULTS_DIR / "features_check.json"


def model_and_data(args: argparse.Namespace):
    """The model, its input normalization and ``args.examples`` data set images at ``args.size``."""
    import torch

    from attrstream.engine.data import FakeImages
    from attrstream.engine.models import ModelSpec, build_model
    from attrstream.engine.vocabulary import IMAGENET_MEAN, IMAGENET_STD

    if args.model == "shapesnet":
        from attrstream.engine.demo.shapes import MEAN, STD, ShapesDataset
        from attrstream.engine.demo.train import load_or_train

        x = ShapesDataset(args.examples, image_size=args.size, seed=1, split="test").batch(range(args.examples))[0]
        return load_or_train()[0], (MEAN,) * 3, (STD,) * 3, x
    data = FakeImages(n=args.examples, image_size=args.size, num_classes=1000)
    return build_model(ModelSpec(args.model)), IMAGENET_MEAN, IMAGENET_STD, torch.stack([data[i][0] for i in range(len(data))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapesnet")
    parser.add_argument("--layer", default="block3")
    parser.add_argument("--channels", default=None, help="START:STOP (default: every channel)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=256, help="data set images searched for the top example")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--json", default=RESULTS)
    args = parser.parse_args()

    import torch

    from attrstream.engine.features.check import diagonal_dominance, excitation
    from attrstream.engine.features.run import visualize_features
    from attrstream.engine.options import int_list

    if args.threads:
        torch.set_num_threads(args.threads)
    model, mean, std, data = model_and_data(args)
    channels = int_list(args.channels) if args.channels else None
    with tempfile.TemporaryDirectory(prefix="check_features_") as tmp:
        t0 = time.perf_counter()
        run = visualize_features(model, Path(tmp) / "features.zarr", args.layer, channels, steps=args.steps,
                                 size=args.size, batch_size=args.batch_size, seed=args.seed, mean=mean, std=std,
                                 progress=False, model_name=args.model)
        seconds = time.perf_counter() - t0
        features = run.features(args.layer)
    layout, optimized = features["settings"]["layout"], features["channel"]
    matrix = excitation(model, args.layer, layout, features["input"], optimized)
    dominant = diagonal_dominance(matrix)
    top = excitation(model, args.layer, layout, data.numpy(), optimized).max(axis=0)
    beats = np.diagonal(matrix) > top
    record = {"benchmark": "features_check", **environment(), "config": vars(args) | {"json": str(args.json)},
              "channels": len(optimized), "seconds": seconds, "diagonal_dominance": float(dominant.mean()),
              "beats_top_example": float(beats.mean()), "not_dominant": optimized[~dominant].tolist(),
              "not_above_top_example": optimized[~beats].tolist(),
              "median_activation": float(np.median(np.diagonal(matrix))), "median_top_example": float(np.median(top))}
    print(f"{'model':10} {'layer':8} {'channels':>8} {'size':>4} {'steps':>5} {'dominant':>8} {'> top ex.':>9} "
          f"{'median act':>10} {'median top':>10} {'seconds':>7}")
    print(f"{args.model:10} {args.layer:8} {len(optimized):8d} {args.size:4d} {args.steps:5d} "
          f"{record['diagonal_dominance']:8.1%} {record['beats_top_example']:9.1%} "
          f"{record['median_activation']:10.3g} {record['median_top_example']:10.3g} {seconds:7.0f}")
    print(f"not dominant: {record['not_dominant']}; not above the top example: {record['not_above_top_example']}")
    append_jsonl(Path(args.json), [record])


if __name__ == "__main__":
    main()
