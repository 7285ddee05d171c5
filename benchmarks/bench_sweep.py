"""End-to-end extraction throughput: attrstream against the bare loop (the limit) and against Captum.

Three contenders on the same model and the same batches (one setup function serves all):

- ``bare``: forward + ``autograd.grad`` to the input for the predicted class, nothing kept;
- ``attrstream``: ``sweep()`` with grad×input, saliency, Grad-CAM and statistics at every layer,
  outputs, thumbnails, streamed into a fresh Zarr store;
- ``captum``: what a Captum user writes for the same outputs (``InputXGradient``, ``Saliency``,
  ``LayerGradCam`` per layer, ``LayerActivation`` + per-channel statistics in torch), saved with
  ``numpy.save`` per batch.

Each (contender, repetition) runs in a fresh subprocess, after one warm-up batch of its own work,
in interleaved rounds; the table shows medians of img/s, and the ratios are medians of the
per-round ratios. ``--memory-scaling`` instead runs attrstream at N
and 4N, each in a fresh subprocess, and prints both peak RSS (streaming: they must be equal).

    python benchmarks/bench_sweep.py                       # ResNet-18, 224², batch 16, N=256, unit 64, 3 rounds
    python benchmarks/bench_sweep.py --memory-scaling
    python benchmarks/bench_sweep.py --model resnet50 --device cuda --autocast --batch-size 128 -n 4096

Prints a table and appends JSON lines to benchmarks/results/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    RESULTS_DIR,
    append_jsonl,
    dir_bytes,
    environment,
    interleaved,
    median,
    peak_rss_mb,
    run_child,
)

CONTENDERS = ("bare", "attrstream", "captum")
DEFAULT_UNIT = 64  # 4 units at the default N: the writer overlaps compute, as in any run of real length
METHODS = ("grad_x_input", "saliency", "grad_cam", "stats")


@dataclass
class Setup:
    """What every contender shares: the model (eval, frozen), its layers and the data set."""

    model: Any
    layers: dict[str, Any]
    dataset: Any
    device: Any
    args: argparse.Namespace

    def loader(self, dataset=None):
        """The batches, exactly as the sweep's own loader forms them (in order, same workers)."""
        from torch.utils.data import DataLoader

        return DataLoader(dataset if dataset is not None else self.dataset, batch_size=self.args.batch_size,
                          shuffle=False, num_workers=self.args.num_workers, pin_memory=self.device.type == "cuda")

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.autocast)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def setup(args: argparse.Namespace, n: int) -> Setup:
    """Model (seeded, eval mode, parameters frozen as the sweep freezes them) and data, for everyone."""
    import torch

    from attrstream.engine.capture import default_layers, resolve_layers
    from attrstream.engine.data import FakeImages
    from attrstream.engine.models import ModelSpec, build_model
    from attrstream.engine.probe import probe_model

    device = torch.device(args.device)
    model = build_model(ModelSpec(args.model)).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    example = torch.zeros(1, 3, args.image_size, args.image_size, device=device)
    names = args.layers.split(",") if args.layers else default_layers(model, probe_model(model, example))
    dataset = FakeImages(n=n, image_size=args.image_size, num_classes=1000, seed=0)
    return Setup(model, resolve_layers(model, names), dataset, device, args)


# ---- contenders: each takes the setup, a data set and a scratch directory; returns extra fields ----


def run_bare(s: Setup, dataset, _scratch: Path) -> dict[str, Any]:
    import torch

    for x, _ in s.loader(dataset):
        x = x.to(s.device, non_blocking=True).requires_grad_(True)
        with s.autocast():
            logits = s.model(x)
        score = logits.float().gather(1, logits.detach().argmax(1, keepdim=True)).sum()
        torch.autograd.grad(score, x)
    return {}


def run_attrstream(s: Setup, dataset, scratch: Path) -> dict[str, Any]:
    from attrstream.engine.pipeline import SweepStats, sweep

    stats = SweepStats()
    out = scratch / "run.zarr"
    sweep(s.model, dataset, out, stats=stats, layers=tuple(s.layers), methods=METHODS,
          batch_size=s.args.batch_size, unit=s.args.unit, device=s.args.device, autocast=s.args.autocast,
          num_workers=s.args.num_workers, progress=False, overwrite=True, model_name=s.args.model)
    return {"writer_idle": stats.writer_idle_fraction, "append_wait_s": stats.append_wait_s}


def run_captum(s: Setup, dataset, scratch: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    from captum.attr import InputXGradient, LayerActivation, LayerGradCam, Saliency

    names = list(s.layers)
    ixg, sal = InputXGradient(s.model), Saliency(s.model)
    cams = {name: LayerGradCam(s.model, layer) for name, layer in s.layers.items()}
    activations = LayerActivation(s.model, list(s.layers.values()))
    scratch.mkdir(parents=True, exist_ok=True)
    for b, (x, _) in enumerate(s.loader(dataset)):
        x = x.to(s.device, non_blocking=True)
        out: dict[str, torch.Tensor] = {}
        with s.autocast():
            with torch.no_grad():
                logits = s.model(x).float()
            pred = logits.argmax(1)
            out["logits"], out["pred"] = logits, pred
            out["grad_x_input"] = ixg.attribute(x, target=pred).sum(1)
            out["saliency"] = sal.attribute(x, target=pred).amax(1)
            for name in names:
                out[f"{name}_grad_cam"] = cams[name].attribute(x, target=pred)[:, 0]
            acts = activations.attribute(x)
        for name, a in zip(names, acts, strict=True):
            a = a.float().flatten(2)
            out[f"{name}_stats"] = torch.stack(
                (a.mean(-1), a.std(-1, correction=0), a.amin(-1), a.amax(-1), (a > 0).float().mean(-1)), dim=-1)
        for key, value in out.items():
            np.save(scratch / f"batch{b:05d}_{key}.npy", value.detach().float().cpu().numpy()
                    if value.is_floating_point() else value.cpu().numpy())
    return {}


RUNNERS: dict[str, Callable[[Setup, Any, Path], dict[str, Any]]] = {
    "bare": run_bare, "attrstream": run_attrstream, "captum": run_captum,
}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One contender, once: warm up on one batch of its own work, then time the whole data set."""
    import torch

    from attrstream.engine.data import FakeImages

    s = setup(args, args.num_examples)
    runner = RUNNERS[args.child]
    base = Path(args.out_dir) if args.out_dir else None
    with tempfile.TemporaryDirectory(prefix=f"bench_sweep_{args.child}_", dir=base) as tmp:
        warm = FakeImages(n=args.batch_size, image_size=args.image_size, num_classes=1000, seed=1)
        runner(s, warm, Path(tmp) / "warmup")
        shutil.rmtree(Path(tmp) / "warmup", ignore_errors=True)
        if s.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(s.device)
        s.sync()
        t0 = time.perf_counter()
        extra = runner(s, s.dataset, Path(tmp) / "out")
        s.sync()
        wall = time.perf_counter() - t0
        written = dir_bytes(Path(tmp) / "out") if (Path(tmp) / "out").exists() else 0
    result = {"contender": args.child, "n": args.num_examples, "wall_s": wall, "img_s": args.num_examples / wall,
              "peak_rss_mb": peak_rss_mb(), "bytes_written": written, **extra}
    if s.device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(s.device) / 2**20
    return result


def child_argv(args: argparse.Namespace, contender: str, n: int, unit: int) -> list[str]:
    argv = [__file__, "--child", contender, "--model", args.model, "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size), "-n", str(n), "--device", args.device, "--unit", str(unit),
            "--num-workers", str(args.num_workers)]
    argv += ["--autocast"] if args.autocast else []
    argv += ["--layers", args.layers] if args.layers else []
    argv += ["--out-dir", args.out_dir] if args.out_dir else []
    return argv


def config_record(args: argparse.Namespace, unit: int) -> dict[str, Any]:
    return {"model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
            "n": args.num_examples, "repeats": args.repeats, "device": args.device, "autocast": args.autocast,
            "unit": unit, "num_workers": args.num_workers, "methods": list(METHODS), "layers": args.layers}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def compare(args: argparse.Namespace) -> None:
    """The three-way comparison: interleaved rounds, medians, ratios, one JSON line per contender."""
    unit = args.unit
    env = environment(args.device)
    print(f"# {args.model} {args.image_size}² batch {args.batch_size} N={args.num_examples} on {args.device}"
          f"{' bf16 autocast' if args.autocast else ''}; {args.repeats} interleaved rounds; "
          f"load {env['load_avg_1m']:.1f} on {env['cores']} cores", flush=True)

    def progress(name: str, rep: int, r: dict[str, Any]) -> None:
        print(f"#   round {rep + 1} {name:10} {r['img_s']:8.2f} img/s  {r['peak_rss_mb']:7.0f} MB RSS", flush=True)

    runs = interleaved(CONTENDERS, args.repeats,
                       lambda c, _rep: run_child(child_argv(args, c, args.num_examples, unit)), progress)
    img_s = {c: median(runs[c], "img_s") for c in CONTENDERS}
    # Paired per round (adjacent runs share the machine's load of the moment), then the median:
    # steadier than a ratio of medians when the load of a shared machine drifts.
    paired = {c: {ref: statistics.median(a["img_s"] / b["img_s"] for a, b in zip(runs[c], runs[ref], strict=True))
                  for ref in ("bare", "captum")} for c in CONTENDERS}
    records = []
    print(f"{'contender':10} {'img/s':>8} {'wall s':>7} {'vs bare':>7} {'vs captum':>9} {'peak RSS MB':>11} "
          f"{'written MB':>10} {'writer idle':>11}" + (f" {'peak GPU MB':>11}" if args.device != "cpu" else ""))
    for c in CONTENDERS:
        rec = {
            "benchmark": "sweep", **env, "config": config_record(args, unit), "contender": c,
            "img_s": img_s[c], "wall_s": median(runs[c], "wall_s"),
            "ratio_to_bare": paired[c]["bare"], "speedup_over_captum": paired[c]["captum"],
            "ratio_of_medians_to_bare": img_s[c] / img_s["bare"],
            "ratio_of_medians_to_captum": img_s[c] / img_s["captum"],
            "peak_rss_mb": median(runs[c], "peak_rss_mb"), "bytes_written": median(runs[c], "bytes_written"),
            "writer_idle": median(runs[c], "writer_idle"), "append_wait_s": median(runs[c], "append_wait_s"),
            "peak_gpu_mb": median(runs[c], "peak_gpu_mb"), "runs": runs[c],
        }
        records.append(rec)
        print(f"{c:10} {rec['img_s']:8.2f} {rec['wall_s']:7.2f} {rec['ratio_to_bare']:7.2f} "
              f"{rec['speedup_over_captum']:9.2f} {rec['peak_rss_mb']:11.0f} {rec['bytes_written'] / 1e6:10.1f} "
              f"{_fmt(rec['writer_idle'], '11.2f'):>11}"
              + (f" {_fmt(rec['peak_gpu_mb'], '11.0f'):>11}" if args.device != "cpu" else ""))
    ratio, speedup = paired["attrstream"]["bare"], paired["attrstream"]["captum"]
    print(f"attrstream / bare = {ratio:.2f} (target >= 0.90); attrstream / captum = {speedup:.2f} (target >= 4); "
          f"medians of per-round ratios; load now {environment()['load_avg_1m']:.1f}")
    append_jsonl(args.json, records)


def memory_scaling(args: argparse.Namespace) -> None:
    """attrstream at N and 4N, each in a fresh process: a streaming sweep's peak RSS does not grow.

    The unit defaults to N/2 here, so that both runs span several units and the bounded buffers
    (two units) are filled in both.
    """
    unit = args.unit if args.unit != DEFAULT_UNIT else max(1, args.num_examples // 2)
    env = environment(args.device)
    records = []
    print(f"# memory scaling: attrstream, {args.model} {args.image_size}² batch {args.batch_size}, unit {unit}; "
          f"load {env['load_avg_1m']:.1f}")
    print(f"{'N':>7} {'units':>5} {'img/s':>8} {'peak RSS MB':>11} {'written MB':>10}")
    for n in (args.num_examples, 4 * args.num_examples):
        r = run_child(child_argv(args, "attrstream", n, unit))
        print(f"{n:7d} {-(-n // unit):5d} {r['img_s']:8.2f} {r['peak_rss_mb']:11.0f} {r['bytes_written'] / 1e6:10.1f}",
              flush=True)
        records.append({"benchmark": "sweep_memory", **env, "config": {**config_record(args, unit), "n": n}, **r})
    growth = records[1]["peak_rss_mb"] - records[0]["peak_rss_mb"]
    print(f"peak RSS growth from N to 4N: {growth:+.0f} MB ({growth / records[0]['peak_rss_mb']:+.1%})")
    append_jsonl(args.json, records)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="torchvision name or package.module:factory")
    parser.add_argument("--layers", help="comma-separated layer names (default: the model's stages)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("-n", "--num-examples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the table shows medians")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast for every contender")
    parser.add_argument("--unit", type=int, default=DEFAULT_UNIT, help="attrstream examples per shard")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader workers, every contender")
    parser.add_argument("--out-dir", help="where contenders write (default: the system temp dir)")
    parser.add_argument("--json", type=Path, default=RESULTS_DIR / "sweep.json", help="JSON lines to append to")
    parser.add_argument("--memory-scaling", action="store_true", help="attrstream peak RSS at N and 4N instead")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
    elif args.memory_scaling:
        memory_scaling(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
