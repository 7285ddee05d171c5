"""The ``attrstream`` command line: a thin shell that builds configs and calls the Python API."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from attrstream.engine import __version__
from attrstream.engine.errors import USER_ERRORS
from attrstream.engine.host_memory import keep_freed_memory
from attrstream.engine.options import add_options, csv, from_args


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default at the end of its help line; none for switches and options without one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if not action.option_strings or action.nargs == 0 or default is None or default is argparse.SUPPRESS:
            return action.help
        shown = ",".join(map(str, default)) if isinstance(default, tuple | list) else "%(default)s"
        return f"{action.help} (default: {shown})"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, Slurm, Kubernetes, ``docker stop``), raised like Ctrl-C so every owner cleans up."""


EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM: what shells and schedulers expect


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once; a repeat is ignored)."""

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup of the first one finish
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (main() called from a thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cmd_sweep(args: argparse.Namespace) -> int:
    import attrstream.engine.demo  # noqa: F401  (registers the demo's model and data set)
    from attrstream.engine.config import DataSpec, ModelSpec, SweepConfig
    from attrstream.engine.data import build_dataset
    from attrstream.engine.models import build_model
    from attrstream.engine.pipeline import SweepStats, sweep

    model_spec = from_args(ModelSpec, args)
    data_spec = from_args(DataSpec, args, num_classes=model_spec.num_classes or 1000)
    dataset = build_dataset(data_spec)
    classes = getattr(dataset, "classes", None)
    cfg = from_args(SweepConfig, args, model_name=model_spec.name, dataset_name=data_spec.name,
                    extra={"class_names": list(classes)} if classes is not None else {})
    stats = SweepStats()
    run = sweep(build_model(model_spec), dataset, args.out, cfg, stats=stats)
    print(f"attrstream: {stats.examples_written} new examples written to {args.out} ({run.n} in the store)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import attrstream.engine.demo  # noqa: F401  (registers the demo's model and data set)
    from attrstream.engine.config import DataSpec, EvaluateConfig, ModelSpec
    from attrstream.engine.data import build_dataset
    from attrstream.engine.faithfulness.run import evaluate, format_means
    from attrstream.engine.models import build_model

    model_spec = from_args(ModelSpec, args)
    data_spec = from_args(DataSpec, args, num_classes=model_spec.num_classes or 1000)
    cfg = from_args(EvaluateConfig, args, dataset_name=data_spec.name)
    means = evaluate(args.store, build_model(model_spec), build_dataset(data_spec), cfg)
    print(f"attrstream: mean AUC of every map over the examples of {args.store} (metrics/ in the store):\n"
          f"{format_means(means)}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from attrstream.engine.store.info import describe_store

    print(describe_store(args.store))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from attrstream.engine.store.verify import verify_store

    report = verify_store(args.store, progress=not args.no_progress and sys.stderr.isatty())
    for line in report.lines():
        print(line)
    return 0 if report.intact else 1


def _cmd_render(args: argparse.Namespace) -> int:
    from attrstream.engine.render import render_report

    index = render_report(args.store, args.out, examples=args.examples, layers=args.layers, methods=args.methods)
    print(f"attrstream: report written to {index}")
    return 0


def _cmd_tensorboard(args: argparse.Namespace) -> int:
    from attrstream.engine.export import export_tensorboard

    logdir = export_tensorboard(args.store, args.logdir, examples=args.examples, layers=args.layers,
                                methods=args.methods, embedding_examples=args.embedding_examples,
                                progress=not args.no_progress)
    print(f"attrstream: TensorBoard logs written to {logdir}; view them with: tensorboard --logdir {logdir}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from attrstream.engine.demo.run import run_demo

    run_demo(args.out, n=args.n, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    import attrstream.engine.demo  # noqa: F401  (registers the demo's model)
    from attrstream.engine.config import FeaturesConfig, ModelSpec
    from attrstream.engine.features.run import run_features
    from attrstream.engine.models import build_model

    model_spec = from_args(ModelSpec, args)
    cfg = from_args(FeaturesConfig, args, model_name=model_spec.name)
    run = run_features(build_model(model_spec), args.out, cfg)
    done = len(run.features(cfg.layer)["channel"])
    print(f"attrstream: {done} optimized inputs of {cfg.layer} in {args.out} (features/{cfg.layer})")
    return 0


def _add_features_parser(sub: argparse._SubParsersAction) -> None:
    from attrstream.engine.config import FeaturesConfig, ModelSpec

    p = sub.add_parser("features", help="activation maximization: an optimized input per channel of a layer, "
                       "batched over channels, into a store's features/<layer>", formatter_class=_HelpFormatter)
    add_options(p, ModelSpec)
    p.add_argument("--out", required=True, help="a sweep's store of the same model, or a new store path")
    add_options(p, FeaturesConfig)
    p.set_defaults(func=_cmd_features)


def build_parser() -> argparse.ArgumentParser:
    from attrstream.engine.config import DataSpec, EvaluateConfig, ModelSpec, SweepConfig
    from attrstream.engine.export.defaults import EMBEDDING_EXAMPLES, TENSORBOARD_EXAMPLES

    parser = argparse.ArgumentParser(
        prog="attrstream",
        description="One-pass attribution and activation-statistics extraction, streamed to Zarr v3.",
    )
    parser.add_argument("--version", action="version", version=f"attrstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("sweep", help="extract attributions and statistics of a data set into a store",
                       formatter_class=_HelpFormatter)
    add_options(p, ModelSpec)
    add_options(p, DataSpec)
    p.add_argument("--out", required=True, help="the store to write (run.zarr, or a URL such as s3://bucket/run.zarr)")
    add_options(p, SweepConfig)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("evaluate", help="deletion/insertion curves of a finished store's maps, into its metrics/",
                       formatter_class=_HelpFormatter)
    p.add_argument("store", help="the finished sweep's store (a path or URL)")
    add_options(p, ModelSpec)
    add_options(p, DataSpec)
    add_options(p, EvaluateConfig)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("info", help="describe a store: config, progress, arrays", formatter_class=_HelpFormatter)
    p.add_argument("store", help="the store to describe (a path or URL)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("verify", help="read every done unit of a store and check its checksums "
                       "(exit 0 intact, 1 damaged, 2 not a store)", formatter_class=_HelpFormatter)
    p.add_argument("store", help="the store to check (a path or URL)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("render", help="render a store's figures and index.html", formatter_class=_HelpFormatter)
    p.add_argument("store", help="the store to render (a path or URL)")
    p.add_argument("--out", required=True, help="folder for the PNG figures and index.html")
    p.add_argument("--examples", type=int, default=8, help="examples drawn in the per-example figures, spread evenly")
    p.add_argument("--layers", type=csv, default=None, metavar="A,B", help="layers to draw (default: all)")
    p.add_argument("--methods", type=csv, default=None, metavar="M,N", help="input methods to draw (default: all)")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("tensorboard", help="export a store's images, histograms, projector and scalars to TensorBoard",
                       formatter_class=_HelpFormatter)
    p.add_argument("store", help="the store to export")
    p.add_argument("--logdir", required=True, help="TensorBoard log directory to write")
    p.add_argument("--examples", type=int, default=TENSORBOARD_EXAMPLES, help="examples shown in the image tabs, spread evenly")
    p.add_argument("--layers", type=csv, default=None, metavar="A,B", help="layers to export (default: all)")
    p.add_argument("--methods", type=csv, default=None, metavar="M,N", help="input methods to export (default: all)")
    p.add_argument("--embedding-examples", type=int, default=EMBEDDING_EXAMPLES, metavar="N",
                   help="rows of the embedding projector at most, spread evenly")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_tensorboard)

    p = sub.add_parser("demo", help="the embedded default: shapes data, a small CNN, a sweep and a report",
                       formatter_class=_HelpFormatter)
    p.add_argument("--out", default="demo_out", help="folder for run.zarr, report/ and localization.json")
    p.add_argument("--n", type=int, default=256, help="held-out images to sweep")
    p.add_argument("--overwrite", action="store_true", help="start over when --out holds a demo of another configuration")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_cmd_demo)
    _add_features_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    keep_freed_memory()  # this process ends with the job: the allocator may keep what torch frees
    warnings.simplefilter("default", RuntimeWarning)
    warnings.formatwarning = lambda msg, cat, *_a, **_k: f"attrstream: warning: {msg}\n"
    try:
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"attrstream {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # the writer closed and released its lock on the way out
        terminated = isinstance(err, Terminated)
        print(f"attrstream {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}; "
              "units already written are kept: rerun the same command to resume", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
