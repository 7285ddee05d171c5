"""Deletion-curve throughput: attrstream's batched curves against a per-image loop and Quantus.

Three contenders compute the deletion curve (issue 15's definition, S steps) of the same map for
the same N images on the same model and device; one setup function serves all:

- ``attrstream``: :func:`attrstream.engine.faithfulness.curves.perturbation_curves`: the ranking
  once per image on the device, perturbed inputs of many (image, step) pairs built with one
  comparison and one ``where``, forwards of ``--batch-size`` perturbed images laid out channels_last
  (its default; S+1 points: steps 0 and S shared by every map of a store, counted here as computed
  for this one map);
- ``loop``: the RISE reference's structure on the same device: per image, a stable argsort, then
  S+1 forwards of batch 1, zeroing the next ⌊P/S⌋ pixels between them (S+1 points);
- ``quantus``: ``quantus.PixelFlipping`` configured as close as it allows: baseline 0.0, no
  normalisation, no abs, softmax, ``batch_size`` images per forward, S steps of P/S whole pixels.
  Its features are channel-pixels and ``features_in_step`` must divide the product of the input's
  shape after the channel axis, so the images are handed over as ``[N, 1, C, H·W]`` (the model
  wrapped to reshape them back) with the map repeated over C: ``features_in_step = C·P/S`` then
  takes whole pixels (a pixel's C copies tie and sort together). What differs: no unperturbed point
  (S points, step 0 missing); numpy's unstable argsort (ties between pixels ordered otherwise);
  perturbation and bookkeeping in numpy on the CPU with a host copy of every batch, and a
  per-image "no change" check it always runs.

The figure of merit is images·steps per second: curve points, one forward of one image each,
computed per second (N·(S+1); N·S for Quantus). Each (contender, round) runs in a fresh subprocess after a warm-up on two
images of its own work, in interleaved rounds; the table shows medians, and the speed-ups are
medians of per-round ratios. ``mean curve Δ`` is the largest difference of a contender's mean curve
from attrstream's (a check that everyone computed the same thing).

    python benchmarks/bench_metrics.py                                   # demo CNN, 64², N=64, batch 64, S=16
    python benchmarks/bench_metrics.py --model resnet18 --num-classes 0 --image-size 224 -n 8 --batch-size 16
    python benchmarks/bench_metrics.py --device cuda --model resnet50 --num-classes 0 --image-size 224 -n 256

Prints a table and writes it to benchmarks/results/metrics_<size>[_threads<T>].json (see _common.write_table).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import (
    Column,
    add_contest_args,
    child_or_compare,
    environment,
    interleaved,
    median,
    peak_rss_mb,
    run_child,
    write_table,
)

CONTENDERS = ("attrstream", "loop", "quantus")
DEMO_CNN = "attrstream.engine.demo.model:ShapesNet"


@dataclass
class Setup:
    """What every contender shares: the model (eval, frozen), images, their maps and target classes."""

    model: Any
    x: Any  # [N, C, H, W] on the device
    maps: Any  # [N, H, W] grad×input of the target class, on the device
    target: Any  # [N] predicted classes, on the device
    args: argparse.Namespace

    def sync(self) -> None:
        import torch

        if self.x.device.type == "cuda":
            torch.cuda.synchronize(self.x.device)


def setup(args: argparse.Namespace, n: int, seed: int = 0) -> Setup:
    """Seeded model and standard-normal images; grad×input maps of the predicted class by one backward."""
    import torch

    from attrstream.engine.models import ModelSpec, build_model

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(ModelSpec(args.model, num_classes=args.num_classes or None)).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, args.image_size, args.image_size, generator=gen).to(device)
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    target = logits.argmax(1)
    (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), xg)
    return Setup(model, x, (grad * x).sum(1).detach(), target.detach(), args)


# ---- contenders: each returns its [N, S+1] (Quantus: [N, S], no step 0) deletion curves as numpy ----


def run_attrstream(s: Setup, x, maps, target):
    from attrstream.engine.faithfulness.curves import map_ranks, perturbation_curves

    ranks = [("map", map_ranks(maps, tuple(x.shape[-2:])))]
    curves = perturbation_curves(s.model, x, target, ranks, ("deletion",), s.args.steps, s.args.batch_size)
    return curves["map"]["deletion"].cpu().numpy()


def run_loop(s: Setup, x, maps, target):
    import numpy as np
    import torch

    steps, (channels, height, width) = s.args.steps, x.shape[1:]
    pixels = height * width
    curves = np.empty((len(x), steps + 1), np.float32)
    with torch.inference_mode():
        for i in range(len(x)):
            order = torch.argsort(-maps[i].flatten(), stable=True)
            image = x[i].clone()
            flat, deleted = image.view(channels, pixels), 0
            for k in range(steps + 1):
                flat[:, order[deleted: k * pixels // steps]] = 0.0  # the next pixels of step k
                deleted = k * pixels // steps
                curves[i, k] = float(torch.softmax(s.model(image[None]), 1)[0, target[i]])
    return curves


def pixels_as_features(model, shape: tuple[int, int, int]):
    """``model`` taking Quantus's ``[N, 1, C, H·W]`` view of the images, reshaped back to ``[N, C, H, W]``."""
    import torch

    class PixelsAsFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x.reshape(len(x), *shape))

    return PixelsAsFeatures().eval()


def run_quantus(s: Setup, x, maps, target):
    import numpy as np
    import quantus

    n, channels, height, width = x.shape
    pixels = height * width
    metric = quantus.PixelFlipping(features_in_step=channels * pixels // s.args.steps, perturb_baseline=0.0,
                                   normalise=False, abs=False, disable_warnings=True, display_progressbar=False)
    features = np.repeat(maps.reshape(n, 1, 1, pixels).cpu().numpy(), channels, axis=2)
    scores = metric(model=pixels_as_features(s.model, (channels, height, width)),
                    x_batch=x.reshape(n, 1, channels, pixels).cpu().numpy(), y_batch=target.cpu().numpy(),
                    a_batch=features, device=s.args.device, batch_size=s.args.batch_size, softmax=True,
                    channel_first=True)
    return np.asarray(scores, np.float32)


RUNNERS: dict[str, Callable[..., Any]] = {"attrstream": run_attrstream, "loop": run_loop, "quantus": run_quantus}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One contender, once: warm up on two images, then time the deletion curves of all N."""
    runner = RUNNERS[args.child]
    s = setup(args, args.num_examples)
    runner(s, s.x[:2], s.maps[:2], s.target[:2])
    s.sync()
    t0 = time.perf_counter()
    curves = runner(s, s.x, s.maps, s.target)
    s.sync()
    wall = time.perf_counter() - t0
    return {"contender": args.child, "n": args.num_examples, "points_per_curve": curves.shape[1], "wall_s": wall,
            "points_s": curves.size / wall, "img_s": args.num_examples / wall, "peak_rss_mb": peak_rss_mb(),
            "mean_curve": curves.mean(0).tolist()}


def child_argv(args: argparse.Namespace, contender: str) -> list[str]:
    return [__file__, "--child", contender, "--model", args.model, "--num-classes", str(args.num_classes),
            "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "-n", str(args.num_examples),
            "--steps", str(args.steps), "--device", args.device, "--threads", str(args.threads)]


def curve_gap(run: dict[str, Any], reference: dict[str, Any]) -> float:
    """Largest |Δ| between a contender's mean curve and attrstream's, aligned on the last points."""
    ours, ref = run["mean_curve"], reference["mean_curve"]
    return max(abs(a - b) for a, b in zip(ours[::-1], ref[::-1], strict=False))


def _round_done(name: str, rep: int, r: dict[str, Any]) -> None:
    print(f"#   round {rep + 1} {name:10} {r['points_s']:9.1f} images·steps/s", flush=True)


def compare(args: argparse.Namespace) -> None:
    """The three-way comparison: interleaved rounds, medians, paired speed-ups, one results table."""
    env = environment(args.device)
    print(f"# deletion curves: {args.model} {args.image_size}² N={args.num_examples} S={args.steps} batch "
          f"{args.batch_size} on {args.device}{f', {args.threads} threads' if args.threads else ''}; {args.repeats} "
          f"interleaved rounds; load {env['load_avg_1m']:.1f} on {env['cores']} cores", flush=True)
    contenders = ["attrstream", *(c for c in args.contenders if c != "attrstream")]
    runs = interleaved(contenders, args.repeats, lambda c, _rep: run_child(child_argv(args, c)), _round_done)
    speedup = {ref: statistics.median(a["points_s"] / b["points_s"]
                                      for a, b in zip(runs["attrstream"], runs[ref], strict=True))
               for ref in contenders}
    config = {"model": args.model, "image_size": args.image_size, "n": args.num_examples, "steps": args.steps,
              "batch_size": args.batch_size, "device": args.device, "repeats": args.repeats, "threads": args.threads}
    rows = []
    for c in contenders:
        rows.append({"contender": c, "points_s": median(runs[c], "points_s"), "wall_s": median(runs[c], "wall_s"),
                     "points_per_curve": runs[c][0]["points_per_curve"], "attrstream_speedup": speedup[c],
                     "mean_curve_gap": max(curve_gap(r, a) for r, a in zip(runs[c], runs["attrstream"], strict=True)),
                     "peak_rss_mb": median(runs[c], "peak_rss_mb")})
    name = f"metrics_{args.image_size}" + (f"_threads{args.threads}" if args.threads else "")
    write_table(name, rows, columns=COLUMNS, config=config, machine=env, results_dir=args.results_dir,
                note=args.note, runs=[{"contender": c, **r} for c in contenders for r in runs[c]])
    ratios = ", ".join(f"attrstream / {c} = {speedup[c]:.2f}" for c in contenders[1:])
    print(f"{ratios} (images·steps/s, medians of per-round ratios); load now {environment()['load_avg_1m']:.1f}")


COLUMNS = (
    Column("contender", "contender"), Column("points_s", "img·steps/s", ".1f"), Column("wall_s", "wall s", ".2f"),
    Column("points_per_curve", "points", "d"), Column("attrstream_speedup", "attrstream ×", ".2f"),
    Column("mean_curve_gap", "mean curve Δ", ".2e"), Column("peak_rss_mb", "peak RSS MB", ".0f"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEMO_CNN, help="torchvision name or package.module:factory")
    parser.add_argument("--num-classes", type=int, default=5, help="classes of the model's head (0: its own)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="perturbed images per forward (loop: 1)")
    parser.add_argument("-n", "--num-examples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--contenders", type=lambda v: v.split(","), default=list(CONTENDERS),
                        help="comma-separated (quantus needs the bench extra: pip install 'attrstream[bench]')")
    add_contest_args(parser, CONTENDERS)
    child_or_compare(parser.parse_args(), child, compare)


if __name__ == "__main__":
    main()
