"""Activation maximization throughput: channels·steps per second, batched over channels vs one at a time.

Every contender optimizes the same channels of the same model for the same number of steps, in a
fresh subprocess, after a warm-up of one step, in interleaved rounds (medians):

- ``bare``: the limit, forward to the layer and backward of a random batch of every channel's input
  size, nothing else (no parametrization, no transforms, no optimizer);
- ``batched``: attrstream's optimizer, ``--batch-size`` channels per batch;
- ``one_at_a_time``: the same code, one channel per call (how Lucent is used);
- ``lucent``: torch-lucent's ``render_vis`` once per channel (its FFT image, its transforms, a full
  forward), when ``import lucent`` works; otherwise the table says it was skipped.

    python benchmarks/bench_features.py [--model resnet18] [--layer layer3] [--channels 16] [--steps 8]
                                        [--size 64] [--batch-size 16] [--repeats 3] [--device cpu] [--threads 1]

Prints a table and writes benchmarks/results/features.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
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

CONTENDERS = ("bare", "batched", "one_at_a_time", "lucent")


def setup(args: argparse.Namespace):
    """The seeded model (eval, frozen) and the layer, identical for every contender."""
    import torch

    from attrstream.engine.capture import resolve_layers
    from attrstream.engine.models import ModelSpec, build_model

    model = build_model(ModelSpec(args.model)).to(torch.device(args.device)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, resolve_layers(model, [args.layer])[args.layer]


def _recipe(args: argparse.Namespace, steps: int):
    from attrstream.engine.features.optimize import Recipe
    from attrstream.engine.vocabulary import IMAGENET_MEAN, IMAGENET_STD

    return Recipe(steps, args.size, 0, IMAGENET_MEAN, IMAGENET_STD)


def run_ours(args: argparse.Namespace, steps: int, batch: int) -> None:
    import torch

    from attrstream.engine.features.optimize import forward_to, maximize

    model, module = setup(args)
    channels = list(range(args.channels))
    with forward_to(model, args.layer, module, "nchw") as forward:
        for start in range(0, len(channels), batch):
            maximize(model, forward, channels[start:start + batch], _recipe(args, steps), torch.device(args.device))


def run_bare(args: argparse.Namespace, steps: int, _batch: int) -> None:
    import torch

    from attrstream.engine.features.optimize import forward_to
    model, module = setup(args)
    x = torch.randn(args.channels, 3, args.size, args.size, device=torch.device(args.device), requires_grad=True)
    index = torch.arange(args.channels, device=x.device)
    with forward_to(model, args.layer, module, "nchw") as forward:
        for _ in range(steps):
            torch.autograd.grad(forward(x)[index, index].sum(), x)


def run_lucent(args: argparse.Namespace, steps: int, _batch: int) -> None:
    from lucent.optvis import objectives, param, render

    model, _ = setup(args)
    for channel in range(args.channels):
        render.render_vis(model, objectives.channel(args.layer.replace(".", "_"), channel),
                          param_f=lambda: param.image(args.size), thresholds=(steps,), show_image=False,
                          progress=False, fixed_image_size=args.size)


RUNNERS = {"bare": run_bare, "batched": lambda a, s, _b: run_ours(a, s, a.batch_size),
           "one_at_a_time": lambda a, s, _b: run_ours(a, s, 1), "lucent": run_lucent}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One contender: a one-step warm-up of its own work, then the timed run."""
    import torch

    runner = RUNNERS[args.child]
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runner(args, 1, args.batch_size)
    t0 = time.perf_counter()
    runner(args, args.steps, args.batch_size)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"contender": args.child, "wall_s": wall, "channel_steps_s": args.channels * args.steps / wall,
            "peak_rss_mb": peak_rss_mb()}


def child_argv(args: argparse.Namespace, contender: str) -> list[str]:
    return [__file__, "--child", contender, "--model", args.model, "--layer", args.layer, "--channels",
            str(args.channels), "--steps", str(args.steps), "--size", str(args.size), "--batch-size",
            str(args.batch_size), "--device", args.device, "--threads", str(args.threads)]


def compare(args: argparse.Namespace) -> None:
    env = environment(args.device)
    contenders = [c for c in CONTENDERS if c != "lucent" or importlib.util.find_spec("lucent") is not None]
    print(f"# {args.model} {args.layer}: {args.channels} channels × {args.steps} steps at {args.size} px, batch "
          f"{args.batch_size}, on {args.device} ({args.threads or 'default'} threads); {args.repeats} interleaved "
          f"rounds; load {env['load_avg_1m']:.1f} on {env['cores']} cores", flush=True)
    if "lucent" not in contenders:
        print("# lucent: skipped (torch-lucent is not importable; see the README for installing it beside torch)")
    runs = interleaved(contenders, args.repeats, lambda c, _rep: run_child(child_argv(args, c)),
                       lambda c, rep, r: print(f"#   round {rep + 1} {c:14} {r['channel_steps_s']:8.2f} ch·steps/s",
                                               flush=True))
    speed = {c: median(runs[c], "channel_steps_s") for c in contenders}
    config = {k: getattr(args, k) for k in ("model", "layer", "channels", "steps", "size", "batch_size", "repeats",
                                            "threads")}
    rows = [{"contender": c, "channel_steps_s": speed[c], "wall_s": median(runs[c], "wall_s"),
             "ratio_to_bare": speed[c] / speed["bare"], "batched_speedup": speed["batched"] / speed[c],
             "peak_rss_mb": median(runs[c], "peak_rss_mb")} for c in contenders]
    write_table("features", rows, columns=COLUMNS, config=config, machine=env, results_dir=args.results_dir,
                note=args.note, runs=[{"contender": c, **r} for c in contenders for r in runs[c]])


COLUMNS = (
    Column("contender", "contender"), Column("channel_steps_s", "ch·steps/s", ".2f"), Column("wall_s", "wall s", ".2f"),
    Column("ratio_to_bare", "vs bare", ".2f"), Column("batched_speedup", "batched ×", ".2f"),
    Column("peak_rss_mb", "peak RSS MB", ".0f"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="torchvision name or package.module:factory")
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--channels", type=int, default=16, help="channels 0..N-1 are optimized")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="channels per batch of the batched contender")
    add_contest_args(parser, CONTENDERS)
    child_or_compare(parser.parse_args(), child, compare)


if __name__ == "__main__":
    main()
