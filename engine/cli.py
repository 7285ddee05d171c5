"""The ``attrstream`` command line: a thin shell that builds configs and calls the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Sequence

from attrstream.engine import __version__
from attrstream.engine.errors import AttrstreamError


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _int_pair(value: str) -> tuple[int, int]:
    h, _, w = value.lower().partition("x")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 14x14), got {value!r}") from None


def _cmd_sweep(args: argparse.Namespace) -> int:
    from attrstream.engine.data import DataSpec, build_dataset
    from attrstream.engine.methods import DEFAULT_METHODS
    from attrstream.engine.models import ModelSpec, build_model
    from attrstream.engine.pipeline import SweepConfig, sweep

    cfg = SweepConfig(
        layers=args.layers,
        methods=args.methods or DEFAULT_METHODS,
        target=args.target,
        batch_size=args.batch_size,
        unit=args.unit,
        device=args.device,
        dtype=args.dtype,
        reduce=args.reduce,
        autocast=args.autocast,
        num_workers=args.num_workers,
        limit=args.limit,
        overwrite=args.overwrite,
        skip_bad_images=args.skip_bad_images,
        compressor=args.compressor,
        token_grid=args.token_grid,
        progress=not args.no_progress,
        model_name=args.model,
        dataset_name=args.data,
    )
    dataset = build_dataset(DataSpec(args.data, image_size=args.image_size, num_classes=args.num_classes or 1000, n=args.limit))
    classes = getattr(dataset, "classes", None)
    if classes is not None:
        cfg = dataclasses.replace(cfg, extra={"class_names": list(classes)})
    model = build_model(ModelSpec(args.model, weights=args.weights, num_classes=args.num_classes))
    run = sweep(model, dataset, args.out, cfg)
    print(f"attrstream: wrote {run.n} examples to {args.out}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from attrstream.engine.store.info import describe_store

    print(describe_store(args.store))
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from attrstream.engine.render import render_report

    index = render_report(args.store, args.out, examples=args.examples, layers=args.layers, methods=args.methods)
    print(f"attrstream: report written to {index}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from attrstream.engine.demo.run import run_demo

    run_demo(args.out, n=args.n, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attrstream",
        description="One-pass attribution and activation-statistics extraction, streamed to Zarr v3.",
    )
    parser.add_argument("--version", action="version", version=f"attrstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("sweep", help="extract attributions and statistics of a data set into a store")
    p.add_argument("--model", required=True, help="torchvision name (resnet18), shapesnet, or package.module:factory")
    p.add_argument("--weights", default=None, help="state dict PATH, or DEFAULT for torchvision's (needs internet)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--data", required=True, help="fake, shapes, or an ImageFolder directory")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--out", required=True, help="the store to write (run.zarr)")
    p.add_argument("--layers", type=_csv, default=None, help="comma-separated layer names (default: top-level stages)")
    p.add_argument("--methods", type=_csv, default=None, help="comma-separated methods (default: grad_x_input,saliency,stats,grad_cam)")
    p.add_argument("--target", default="pred", help="pred, label, or a class index")
    p.add_argument("--reduce", default="sum", help="channel reduction of grad×input and grad×act: sum, abs_sum, l2, max_abs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--unit", type=int, default=256, help="examples per stored shard (resume granularity)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float16", help="map storage: float16 or float32")
    p.add_argument("--compressor", default="lz4", help="lz4 or zstd")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast for the forward pass")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="sweep only the first N examples")
    p.add_argument("--token-grid", type=_int_pair, default=None, help="HxW patch grid of token layers")
    p.add_argument("--skip-bad-images", action="store_true", help="record unreadable images as skipped")
    p.add_argument("--overwrite", action="store_true", help="replace a store written with another configuration")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("info", help="describe a store: config, progress, arrays")
    p.add_argument("store")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("render", help="render a store's figures and index.html")
    p.add_argument("store")
    p.add_argument("--out", required=True)
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--layers", type=_csv, default=None)
    p.add_argument("--methods", type=_csv, default=None)
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("demo", help="the embedded default: shapes data, a small CNN, a sweep and a report")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--n", type=int, default=256, help="held-out images to sweep")
    p.add_argument("--overwrite", action="store_true", help="start over when --out holds a demo of another configuration")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    warnings.simplefilter("default", RuntimeWarning)
    warnings.formatwarning = lambda msg, cat, *_a, **_k: f"attrstream: warning: {msg}\n"
    try:
        return int(args.func(args) or 0)
    except AttrstreamError as err:
        print(f"attrstream {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attrstream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
