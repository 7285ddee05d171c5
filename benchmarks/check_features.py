"""Does activation maximization work on a real model: diagonal dominance and the data set's top example.

For every optimized channel c of a layer: does its optimized input excite c more than any other
channel's optimized input does (diagonal dominance), and more than the data set's most exciting
example does? Channels with a twin (another channel correlating above 0.99 over the data set and
the optimized inputs, :func:`~attrstream.engine.features.check.twins`) cannot all be dominant, so
the table also gives the dominance among the others. Runs ``visualize_features`` into a fresh
store, feeds the stored inputs back, and reads the data set's per-channel maximum from one pass
over it.

    python benchmarks/check_features.py --model shapesnet --layer block3 --size 64 --steps 256
    python benchmarks/check_features.py --model resnet18 --layer layer4 --channels 0:64 --size 64 --steps 128

``shapesnet`` is the demo's trained network with its held-out shapes; any other model gets seeded
random weights and ``fake`` images (ImageNet normalization). Prints a table and writes
benchmarks/results/features_check_<model>_<layer>.json (``--results-dir``).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import Column, add_output_args, environment, write_table

COLUMNS = (
    Column("model", "model"), Column("layer", "layer"), Column("channels", "channels", "d"), Column("size", "size", "d"),
    Column("steps", "steps", "d"), Column("diagonal_dominance", "dominant", ".1%"),
    Column("twins", "twins", "d"), Column("dominance_without_twins", "dominant w/o twins", ".1%"),
    Column("beats_top_example", "> top ex.", ".1%"), Column("median_activation", "median act", ".3g"),
    Column("median_top_example", "median top", ".3g"), Column("seconds", "seconds", ".0f"),
)


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
    add_output_args(parser)
    args = parser.parse_args()

    import torch

    from attrstream.engine.features.check import diagonal_dominance, excitation, twins
    from attrstream.engine.features.run import visualize_features
    from attrstream.engine.options import int_list

    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment()
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
    responses = excitation(model, args.layer, layout, data.numpy(), optimized)
    top = responses.max(axis=0)
    twin = twins(np.concatenate([responses, matrix]))
    beats = np.diagonal(matrix) > top
    row = {"model": args.model, "layer": args.layer, "channels": len(optimized), "size": args.size, "steps": args.steps,
           "diagonal_dominance": float(dominant.mean()), "twins": int(twin.sum()),
           "dominance_without_twins": float(dominant[~twin].mean()) if (~twin).any() else float("nan"),
           "beats_top_example": float(beats.mean()),
           "median_activation": float(np.median(np.diagonal(matrix))), "median_top_example": float(np.median(top)),
           "seconds": seconds, "not_dominant": optimized[~dominant].tolist(),
           "not_above_top_example": optimized[~beats].tolist(), "with_twin": optimized[twin].tolist()}
    config = {k: v for k, v in vars(args).items() if k not in ("results_dir", "note")}
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"features_check_{args.model}_{args.layer}")
    write_table(name, [row], columns=COLUMNS, config=config, machine=env,
                results_dir=args.results_dir, note=args.note)
    print(f"not dominant: {row['not_dominant']}; not above the top example: {row['not_above_top_example']}")


if __name__ == "__main__":
    main()
