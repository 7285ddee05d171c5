"""The contenders of ``bench_sweep.py`` and the child process that runs them.

Three contenders on the same model and the same batches (one setup function serves all):

- ``bare``: forward + ``autograd.grad`` to the input for the predicted class, nothing kept: the
  limit any extraction of gradient methods has to pay;
- ``attrstream``: ``sweep()`` with grad×input, saliency, Grad-CAM and statistics at the case's
  layers, logits and thumbnails, streamed into a fresh Zarr store (maps float16 / scale, Blosc lz4);
- ``captum``: what a Captum user writes for the same outputs: ``InputXGradient``, ``Saliency``,
  ``LayerGradCam(relu_attributions=True)`` per layer (each a forward and a backward of its own),
  ``LayerActivation`` + per-channel statistics in torch and ``LayerGradientXActivation`` summed over
  space for their relevance (one more forward and backward), thumbnails; the same arrays in the same
  dtypes as the store (maps float16 divided by a float32 per-example scale, logits and statistics
  float32), saved with ``numpy.save`` per batch (uncompressed).

A child process runs a list of cases × contenders × rounds: the whole table in one process
(``--mode interleaved``) or a single run (``--mode separate``, one child per run). Each
(case, contender) first runs once on a batch of other images (warm-up), then rounds start at a
rotating contender (:func:`schedule`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import dir_bytes, peak_rss_mb, rotated

CONTENDERS = ("bare", "attrstream", "captum")
METHODS = ("grad_x_input", "saliency", "grad_cam", "stats")
THUMB = 64  # longest side of a thumbnail, as the store keeps them


@dataclass(frozen=True)
class Case:
    """What every contender of one comparison runs: ``n`` images at the last ``layer_count`` layers.

    ``options`` are further :func:`sweep` options (sample counts, ``internal_batch_size``).
    """

    n: int
    layer_count: int | None = None  # the last k of the layers (--layers or the model's stages); None: all
    methods: tuple[str, ...] = METHODS
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        layers = f" last {self.layer_count} layers" if self.layer_count else ""
        methods = "" if self.methods == METHODS else f" {','.join(self.methods)}"
        options = "".join(f" {k}={v}" for k, v in self.options.items())
        return f"N={self.n}{layers}{methods}{options}"


def progress(rep: int, case: Case, result: dict[str, Any]) -> None:
    """One line per run on stderr, while a table is measured."""
    print(f"#   round {rep + 1} {case.describe():32} {result['contender']:10} {result['img_s']:8.2f} img/s",
          file=sys.stderr, flush=True)


def schedule(n_cases: int, contenders: tuple[str, ...], repeats: int) -> Iterator[tuple[int, int, str]]:
    """(round, case index, contender): every case in every round, contenders rotated per round.

    Round-major, so that slow drift of the machine's load spreads over every case alike.
    """
    for rep in range(repeats):
        for i in range(n_cases):
            for name in rotated(contenders, rep):
                yield rep, i, name


@dataclass
class Setup:
    """What every contender shares: the model (eval, frozen), its layers and the data."""

    model: Any
    layer_names: list[str]
    device: Any
    args: argparse.Namespace

    def layers(self, case: Case) -> dict[str, Any]:
        from attrstream.engine.capture import resolve_layers
        from attrstream.engine.methods import split_methods

        if not split_methods(case.methods)[1]:
            return {}
        names = self.layer_names[-case.layer_count:] if case.layer_count else self.layer_names
        return resolve_layers(self.model, names)

    def dataset(self, n: int, seed: int = 0):
        from attrstream.engine.data import FakeImages

        return FakeImages(n=n, image_size=self.args.image_size, num_classes=1000, seed=seed)

    def loader(self, dataset):
        """The batches, exactly as the sweep's own loader forms them (in order, same workers)."""
        from torch.utils.data import DataLoader

        return DataLoader(dataset, batch_size=self.args.batch_size, shuffle=False, num_workers=self.args.num_workers,
                          pin_memory=self.device.type == "cuda")

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.args.autocast)

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def setup(args: argparse.Namespace) -> Setup:
    """Model (seeded, eval mode, parameters frozen as the sweep freezes them), its layers, the device.

    Every contender's process keeps freed host memory the way ``attrstream``'s CLI does
    (:func:`~attrstream.engine.host_memory.keep_freed_memory`), so that none pays page faults the
    others do not."""
    import torch

    from attrstream.engine.capture import default_layers
    from attrstream.engine.host_memory import keep_freed_memory
    from attrstream.engine.models import ModelSpec, build_model
    from attrstream.engine.probe import probe_model

    keep_freed_memory()
    device = torch.device(args.device)
    model = build_model(ModelSpec(args.model)).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    example = torch.zeros(1, 3, args.image_size, args.image_size, device=device)
    names = args.layers.split(",") if args.layers else default_layers(model, probe_model(model, example))
    return Setup(model, names, device, args)


# ---- contenders: each takes the setup, the case, a data set and a scratch directory; returns extra fields ----


def run_bare(s: Setup, _case: Case, dataset, _scratch: Path) -> dict[str, Any]:
    import torch

    for x, _ in s.loader(dataset):
        x = x.to(s.device, non_blocking=True).requires_grad_(True)
        with s.autocast():
            logits = s.model(x)
        score = logits.float().gather(1, logits.detach().argmax(1, keepdim=True)).sum()
        torch.autograd.grad(score, x)
    return {}


def run_attrstream(s: Setup, case: Case, dataset, scratch: Path) -> dict[str, Any]:
    from attrstream.engine.pipeline import SweepStats, sweep

    stats = SweepStats()
    a = s.args
    sweep(s.model, dataset, scratch / "run.zarr", stats=stats, layers=tuple(s.layers(case)), methods=case.methods,
          batch_size=a.batch_size, unit=a.unit, device=a.device, autocast=a.autocast, num_workers=a.num_workers,
          progress=False, overwrite=True, model_name=a.model, **case.options)
    return {"writer_idle": stats.writer_idle_fraction, "append_wait_s": stats.append_wait_s}


def _scaled(m):
    """A map as the store keeps it: float16 values of ``m / scale``, scale = per-example max |m| (float32)."""
    import torch

    m = m.detach().float()
    scale = m.flatten(1).abs().amax(1)
    values = m / torch.where(scale > 0, scale, 1.0).view(-1, *[1] * (m.ndim - 1))
    return values.half(), scale


def run_captum(s: Setup, case: Case, dataset, scratch: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from captum.attr import InputXGradient, LayerActivation, LayerGradCam, LayerGradientXActivation, Saliency

    if case.methods != METHODS or case.options:
        raise SystemExit(f"the captum contender computes {', '.join(METHODS)} only, got {case.methods} {case.options}")
    # Captum sets requires_grad on the input itself and warns that it did, once per call.
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    layers = s.layers(case)
    ixg, sal = InputXGradient(s.model), Saliency(s.model)
    cams = {name: LayerGradCam(s.model, layer) for name, layer in layers.items()}
    activations = LayerActivation(s.model, list(layers.values()))
    relevances = LayerGradientXActivation(s.model, list(layers.values()))
    scratch.mkdir(parents=True, exist_ok=True)
    start = 0
    for b, (x, label) in enumerate(s.loader(dataset)):
        x = x.to(s.device, non_blocking=True)
        out: dict[str, torch.Tensor] = {"index": torch.arange(start, start + len(x)), "label": label}
        start += len(x)
        side = THUMB / max(x.shape[-2:])
        thumb = F.interpolate(x, scale_factor=min(1.0, side), mode="bilinear", antialias=True) if side < 1 else x
        out["thumbnail"] = ((thumb.clamp(-3, 3) + 3) * (255 / 6)).to(torch.uint8).permute(0, 2, 3, 1)
        with s.autocast():
            with torch.no_grad():
                logits = s.model(x).float()
            pred = logits.argmax(1)
            out["logits"], out["pred"] = logits, pred
            out["grad_x_input"], out["grad_x_input_scale"] = _scaled(ixg.attribute(x, target=pred).sum(1))
            out["saliency"], out["saliency_scale"] = _scaled(sal.attribute(x, target=pred, abs=True).amax(1))
            for name, cam in cams.items():
                maps = cam.attribute(x, target=pred, relu_attributions=True)[:, 0]
                out[f"{name}_grad_cam"], out[f"{name}_grad_cam_scale"] = _scaled(maps)
            acts = activations.attribute(x)
            relevance = relevances.attribute(x, target=pred)
        acts = acts if isinstance(acts, (list, tuple)) else [acts]
        relevance = relevance if isinstance(relevance, (list, tuple)) else [relevance]
        for name, a, r in zip(layers, acts, relevance, strict=True):
            a = a.float().flatten(2)
            out[f"{name}_stats"] = torch.stack(
                (a.mean(-1), a.std(-1, correction=0), a.amin(-1), a.amax(-1), (a > 0).float().mean(-1),
                 r.float().flatten(2).sum(-1)), dim=-1)
        for key, value in out.items():
            np.save(scratch / f"batch{b:05d}_{key}.npy", value.detach().cpu().numpy())
    return {}


RUNNERS: dict[str, Callable[[Setup, Case, Any, Path], dict[str, Any]]] = {
    "bare": run_bare, "attrstream": run_attrstream, "captum": run_captum,
}


def timed(s: Setup, name: str, case: Case, dataset, out: Path) -> dict[str, Any]:
    """One run of one contender over ``dataset``: wall time, img/s, what it wrote (then removed)."""
    s.sync()
    t0 = time.perf_counter()
    extra = RUNNERS[name](s, case, dataset, out)
    s.sync()
    wall = time.perf_counter() - t0
    written = dir_bytes(out) if out.exists() else 0
    shutil.rmtree(out, ignore_errors=True)
    return {"contender": name, "n": len(dataset), "wall_s": wall, "img_s": len(dataset) / wall,
            "bytes_written": written, **extra}


def run_job(s: Setup, job: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """The child's work: warm up every (case, contender), then every scheduled run; returns the runs.

    With one run in the process (separate mode) its peak RSS is the contender's own; with several
    (interleaved) the process's peak belongs to no contender and is reported once, for the job.
    """
    import torch

    cases = [Case(**{**c, "methods": tuple(c["methods"])}) for c in job["cases"]]
    contenders = tuple(job["contenders"])
    own = len(cases) * len(contenders) * job["repeats"] == 1
    rss_before = peak_rss_mb()
    for case in cases:
        for name in contenders:
            timed(s, name, case, s.dataset(s.args.batch_size, seed=1), scratch / "warmup")
    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(s.device)
    runs = []
    for rep, i, name in schedule(len(cases), contenders, job["repeats"]):
        r = {"case": i, "round": rep, "layers": list(s.layers(cases[i])),
             **timed(s, name, cases[i], s.dataset(cases[i].n), scratch / "out")}
        if own:
            r["peak_rss_mb"], r["rss_before_mb"] = peak_rss_mb(), rss_before
            if s.device.type == "cuda":
                r["peak_gpu_mb"] = torch.cuda.max_memory_allocated(s.device) / 2**20
        if not own:  # a separate run's parent says which case and round it was
            progress(rep, cases[i], r)
        runs.append(r)
    return {"runs": runs, "peak_rss_mb": peak_rss_mb()}


def job_argv(script: str, args: argparse.Namespace, kind: str, cases: list[Case], contenders: tuple[str, ...],
             repeats: int) -> list[str]:
    """The child's command line: the shared settings, then the job (``kind``: a key of bench_sweep.JOBS) as JSON."""
    argv = [script, "--model", args.model, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
            "--device", args.device, "--unit", str(args.unit), "--num-workers", str(args.num_workers)]
    argv += ["--autocast"] if args.autocast else []
    argv += ["--layers", args.layers] if args.layers else []
    argv += ["--out-dir", args.out_dir] if args.out_dir else []
    job = {"kind": kind, "cases": [asdict(c) for c in cases], "contenders": list(contenders), "repeats": repeats}
    return [*argv, "--child", json.dumps(job)]
