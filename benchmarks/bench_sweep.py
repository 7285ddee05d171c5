"""End-to-end extraction throughput: attrstream against the bare loop (the limit) and against Captum.

The contenders (``bare``, ``attrstream``, ``captum``: see ``_sweep_contenders.py``) run the same
model on the same batches. ``--mode separate`` runs every (contender, round) in a fresh process
(peak RSS is the contender's own); ``--mode interleaved`` alternates the contenders in one
process. Either way each contender first runs one warm-up batch, rounds rotate which contender
goes first, img/s are medians, and ratios are medians of per-round ratios. Tables:

- ``main``: the three contenders at one size (grad×input, saliency, Grad-CAM, statistics at every layer);
- ``layers``: the same at 1, 2 and 4 layers (``--layer-counts``; the last k of the layers): the
  speed-up over Captum grows with the layer count, since Captum pays a forward and a backward per layer;
- ``sizes``: N = 16, 96, 256 (``--sizes``), so that a sweep's fixed costs show beside its steady state;
- ``steady``: bare and attrstream alone, many rounds in one process: whole-run ratios beside the
  ratio without the sweep's fixed cost and the ratio of median batch cycles (``_steady_state.py``);
- ``fixed-cost``: a one-batch sweep timed phase by phase (``_fixed_cost.py``) against one bare batch;
- ``multi-sample-memory``: peak RSS and img/s of SmoothGrad / Integrated Gradients at ``--samples``
  (8, 48) with ``internal_batch_size`` = the batch size against unchunked (batch × samples), each in
  its own process;
- ``memory-scaling``: attrstream's peak RSS at N and 4N (streaming: flat).

    python benchmarks/bench_sweep.py                                   # main, separate processes
    python benchmarks/bench_sweep.py --mode interleaved                # main, one process
    python benchmarks/bench_sweep.py --table layers --mode interleaved
    python benchmarks/bench_sweep.py --table sizes --mode interleaved
    python benchmarks/bench_sweep.py --table steady --repeats 10
    python benchmarks/bench_sweep.py --table fixed-cost --repeats 5
    python benchmarks/bench_sweep.py --table multi-sample-memory --image-size 112 --batch-size 8 -n 16 --repeats 1
    python benchmarks/bench_sweep.py --model resnet50 --device cuda --autocast --batch-size 128 -n 4096

Prints a table and writes benchmarks/results/sweep_<table>[_<mode>].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Column, add_output_args, environment, median, run_child, write_table
from _fixed_cost import PHASES, TOTAL, fixed_cost_job
from _steady_state import CONTENDERS as STEADY_CONTENDERS
from _steady_state import steady_job, steady_rows
from _sweep_contenders import CONTENDERS, METHODS, Case, job_argv, progress, run_job, schedule, setup

DEFAULT_UNIT = 64  # 4 units at the default N: the writer overlaps compute, as in any run of real length
SAMPLE_OPTIONS = {"smoothgrad": "smoothgrad_samples", "integrated_gradients": "ig_steps"}
TABLES = ("main", "layers", "sizes", "steady", "fixed-cost", "multi-sample-memory", "memory-scaling")


def measure(args: argparse.Namespace, cases: list[Case], contenders: tuple[str, ...], mode: str) -> list[dict]:
    """Every scheduled run of ``cases`` × ``contenders`` × ``args.repeats`` rounds, in ``mode``."""
    if mode == "interleaved":
        return run_child(job_argv(__file__, args, "rounds", cases, contenders, args.repeats))["runs"]
    runs = []
    for rep, i, name in schedule(len(cases), contenders, args.repeats):
        (r,) = run_child(job_argv(__file__, args, "rounds", [cases[i]], (name,), 1))["runs"]
        progress(rep, cases[i], r)
        runs.append({**r, "case": i, "round": rep})
    return runs


def _of(runs: list[dict], case: int, contender: str) -> list[dict]:
    return [r for r in runs if r["case"] == case and r["contender"] == contender]


def paired(runs: list[dict], case: int, a: str, b: str, combine: Callable[[dict, dict], float]) -> float | None:
    """Median over rounds of ``combine(run of a, run of b)``: adjacent runs share the load of the moment."""
    of_b = {r["round"]: r for r in _of(runs, case, b)}
    values = [combine(r, of_b[r["round"]]) for r in _of(runs, case, a) if r["round"] in of_b]
    return statistics.median(values) if values else None


def ratio(a: dict, b: dict) -> float:
    return a["img_s"] / b["img_s"]


def extra_seconds(a: dict, b: dict) -> float:
    return a["wall_s"] - b["wall_s"]


def _mb(runs: list[dict]) -> float | None:
    written = median(runs, "bytes_written")
    return None if written is None else written / 1e6


def config_record(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    return {"model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
            "n": args.num_examples, "repeats": args.repeats, "device": args.device, "autocast": args.autocast,
            "unit": args.unit, "num_workers": args.num_workers, "methods": list(METHODS), "layers": args.layers,
            **extra}


def announce(args: argparse.Namespace, env: dict[str, Any], what: str) -> None:
    print(f"# {what}: {args.model} {args.image_size}² batch {args.batch_size} on {args.device}"
          f"{' bf16 autocast' if args.autocast else ''}; {args.repeats} rounds; "
          f"load {env['load_avg_1m']:.1f} on {env['cores']} cores", flush=True)


def save(args: argparse.Namespace, name: str, rows: list[dict], columns: tuple[Column, ...], env: dict[str, Any],
         runs: list[dict], **config: Any) -> None:
    write_table(name, rows, columns=columns, config=config_record(args, **config), machine=env,
                results_dir=args.results_dir, note=args.note, runs=runs)


MAIN_COLUMNS = (
    Column("contender", "contender"), Column("img_s", "img/s", ".2f"), Column("wall_s", "wall s", ".2f"),
    Column("ratio_to_bare", "vs bare", ".2f"), Column("speedup_over_captum", "vs captum", ".2f"),
    Column("peak_rss_mb", "peak RSS MB", ".0f"), Column("written_mb", "written MB", ".1f"),
    Column("writer_idle", "writer idle", ".2f"), Column("peak_gpu_mb", "peak GPU MB", ".0f"),
)


def table_main(args: argparse.Namespace) -> None:
    """The three contenders at one size: one row each."""
    env = environment(args.device)
    announce(args, env, f"main, N={args.num_examples}, {args.mode}")
    runs = measure(args, [Case(args.num_examples)], CONTENDERS, args.mode)
    rows = []
    for c in CONTENDERS:
        mine = _of(runs, 0, c)
        rows.append({
            "contender": c, "layers": mine[0]["layers"], "img_s": median(mine, "img_s"), "wall_s": median(mine, "wall_s"),
            "ratio_to_bare": paired(runs, 0, c, "bare", ratio), "speedup_over_captum": paired(runs, 0, c, "captum", ratio),
            "ratio_of_medians_to_bare": median(mine, "img_s") / median(_of(runs, 0, "bare"), "img_s"),
            "peak_rss_mb": median(mine, "peak_rss_mb"), "written_mb": _mb(mine),
            "writer_idle": median(mine, "writer_idle"), "append_wait_s": median(mine, "append_wait_s"),
            "peak_gpu_mb": median(mine, "peak_gpu_mb"),
        })
    save(args, f"sweep_main_{args.mode}", rows, MAIN_COLUMNS, env, runs, mode=args.mode)


COMPARISON_COLUMNS = (
    Column("n", "N", "d"), Column("layer_count", "layers", "d"), Column("bare_img_s", "bare img/s", ".2f"),
    Column("attrstream_img_s", "attrstream img/s", ".2f"), Column("captum_img_s", "captum img/s", ".2f"),
    Column("ratio_to_bare", "attrstream/bare", ".2f"), Column("speedup_over_captum", "attrstream/captum", ".2f"),
    Column("extra_s", "attrstream - bare s", ".2f"), Column("attrstream_mb", "attrstream MB", ".1f"),
    Column("captum_mb", "captum MB", ".1f"),
)


def comparison_rows(cases: list[Case], runs: list[dict]) -> list[dict]:
    """One row per case: each contender's img/s, attrstream's paired ratios and extra seconds over bare."""
    rows = []
    for i, case in enumerate(cases):
        layers = _of(runs, i, "attrstream")[0]["layers"]
        rows.append({
            "n": case.n, "layer_count": len(layers), "layers": layers,
            **{f"{c}_img_s": median(_of(runs, i, c), "img_s") for c in CONTENDERS},
            "ratio_to_bare": paired(runs, i, "attrstream", "bare", ratio),
            "speedup_over_captum": paired(runs, i, "attrstream", "captum", ratio),
            "extra_s": paired(runs, i, "attrstream", "bare", extra_seconds),
            "attrstream_mb": _mb(_of(runs, i, "attrstream")), "captum_mb": _mb(_of(runs, i, "captum")),
        })
    return rows


def table_layers(args: argparse.Namespace) -> None:
    counts = [int(k) for k in args.layer_counts.split(",")]
    env = environment(args.device)
    announce(args, env, f"layers {counts}, N={args.num_examples}, {args.mode}")
    cases = [Case(args.num_examples, layer_count=k) for k in counts]
    runs = measure(args, cases, CONTENDERS, args.mode)
    save(args, f"sweep_layers_{args.mode}", comparison_rows(cases, runs), COMPARISON_COLUMNS, env, runs,
         mode=args.mode, layer_counts=counts)


def table_sizes(args: argparse.Namespace) -> None:
    sizes = [int(n) for n in args.sizes.split(",")]
    env = environment(args.device)
    announce(args, env, f"sizes {sizes}, {args.mode}")
    cases = [Case(n) for n in sizes]
    runs = measure(args, cases, CONTENDERS, args.mode)
    save(args, f"sweep_sizes_{args.mode}", comparison_rows(cases, runs), COMPARISON_COLUMNS, env, runs,
         mode=args.mode, sizes=sizes)


STEADY_COLUMNS = (
    Column("round", "round"), Column("bare_s", "bare s", ".2f"), Column("attrstream_s", "attrstream s", ".2f"),
    Column("ratio_to_bare", "attrstream/bare", ".3f"), Column("fixed_s", "fixed cost s", ".3f"),
    Column("ratio_without_fixed", "without fixed cost", ".3f"), Column("bare_batch_ms", "bare batch ms", ".1f"),
    Column("attrstream_batch_ms", "attrstream batch ms", ".1f"), Column("batch_ratio", "batch ratio", ".3f"),
)


def table_steady(args: argparse.Namespace) -> None:
    """Bare and attrstream alone at one size, alternated in one process: one row per round, then medians."""
    env = environment(args.device)
    announce(args, env, f"steady state, N={args.num_examples}, bare and attrstream in one process")
    result = run_child(job_argv(__file__, args, "steady", [Case(args.num_examples)], STEADY_CONTENDERS, args.repeats))
    save(args, "sweep_steady", steady_rows(result["runs"]), STEADY_COLUMNS, env, result["runs"],
         layer_names=result["layers"])


FIXED_COLUMNS = (Column("phase", "phase"), Column("s", "s", ".3f"), Column("share", "of sweep", ".0%"))


PER_BATCH = (":extract_batch", ":IndexedItems.__getitem__")  # phases a bare batch pays its own version of


def phase_rows(runs: list[dict]) -> list[dict]:
    """The phase tree (each parent followed by its children and its own rest), then the sweep against
    the bare batch of the same round; medians over rounds."""
    sweeps = [r for r in runs if r["contender"] == "attrstream"]
    bare = {r["round"]: r["wall_s"] for r in runs if r["contender"] == "bare"}
    children: dict[str, list[str]] = {}
    for p in PHASES:
        children.setdefault(p.parent, []).append(p.label)
    per_batch = [p.label for p in PHASES if p.target.endswith(PER_BATCH)]
    rows: list[dict] = []

    def add(label: str, seconds: Callable[[dict], float]) -> None:
        rows.append({"phase": label, "s": statistics.median(seconds(r) for r in sweeps)})

    def visit(label: str, depth: int) -> None:
        add("  " * depth + label, lambda r: r["phases"][label])
        kids = children.get(label, [])
        for kid in kids:
            visit(kid, depth + 1)
        if kids:
            add("  " * (depth + 1) + "(rest)", lambda r: r["phases"][label] - sum(r["phases"][k] for k in kids))

    def batch_work(r: dict) -> float:
        return sum(r["phases"][label] for label in per_batch)

    visit(TOTAL, 0)
    rows.append({"phase": "bare batch (data, forward, input gradient)", "s": statistics.median(bare.values())})
    add("sweep - bare batch", lambda r: r["wall_s"] - bare[r["round"]])
    add("  batch work beyond bare: extract_batch + data loading - bare batch", lambda r: batch_work(r) - bare[r["round"]])
    add("  fixed cost: sweep - extract_batch - data loading", lambda r: r["wall_s"] - batch_work(r))
    total = rows[0]["s"]
    return [{**row, "share": row["s"] / total} for row in rows]


def table_fixed_cost(args: argparse.Namespace) -> None:
    """A one-batch sweep (N = batch size, one unit), in one process after a warm-up sweep."""
    env = environment(args.device)
    announce(args, env, f"fixed cost of a one-batch sweep (N={args.batch_size})")
    result = run_child(job_argv(__file__, args, "fixed_cost", [], ("attrstream",), args.repeats))
    save(args, "sweep_fixed_cost", phase_rows(result["runs"]), FIXED_COLUMNS, env, result["runs"],
         n=args.batch_size, layer_names=result["layers"])


MULTI_COLUMNS = (
    Column("method", "method"), Column("samples", "samples", "d"), Column("internal_batch_size", "internal batch", "d"),
    Column("peak_rss_mb", "peak RSS MB", ".0f"), Column("sweep_rss_mb", "over setup MB", ".0f"),
    Column("peak_vs_fewest", "peak vs fewest samples", ".2f"), Column("img_s", "img/s", ".3f"),
    Column("speed_vs_unchunked", "speed vs unchunked", ".2f"),
)


def table_multi_sample_memory(args: argparse.Namespace) -> None:
    """Chunked (internal batch = batch size) against unchunked expanded batches, one process per run."""
    samples = [int(k) for k in args.samples.split(",")]
    methods = args.sample_methods.split(",")
    env = environment(args.device)
    announce(args, env, f"multi-sample memory, N={args.num_examples}, samples {samples}")
    cases, keys = [], []
    for method in methods:
        for k in samples:
            for chunk in (args.batch_size, args.batch_size * k):
                cases.append(Case(args.num_examples, methods=(method,),
                                  options={SAMPLE_OPTIONS[method]: k, "internal_batch_size": chunk}))
                keys.append((method, k, chunk))
    runs = measure(args, cases, ("attrstream",), "separate")
    rows = []
    for i, (method, k, chunk) in enumerate(keys):
        mine = _of(runs, i, "attrstream")
        rows.append({"method": method, "samples": k, "internal_batch_size": chunk,
                     "chunked": chunk == args.batch_size, "peak_rss_mb": median(mine, "peak_rss_mb"),
                     "sweep_rss_mb": statistics.median(r["peak_rss_mb"] - r["rss_before_mb"] for r in mine),
                     "img_s": median(mine, "img_s")})
    for row in rows:
        same = [r for r in rows if r["method"] == row["method"] and r["chunked"] == row["chunked"]]
        fewest = min(same, key=lambda r: r["samples"])
        unchunked = next(r for r in rows if r["method"] == row["method"] and r["samples"] == row["samples"]
                         and r["internal_batch_size"] == args.batch_size * row["samples"])
        row["peak_vs_fewest"] = row["peak_rss_mb"] / fewest["peak_rss_mb"]
        row["speed_vs_unchunked"] = row["img_s"] / unchunked["img_s"]
    save(args, "sweep_multi_sample_memory", rows, MULTI_COLUMNS, env, runs, samples=samples, methods=methods)


SCALING_COLUMNS = (
    Column("n", "N", "d"), Column("units", "units", "d"), Column("img_s", "img/s", ".2f"),
    Column("peak_rss_mb", "peak RSS MB", ".0f"), Column("written_mb", "written MB", ".1f"),
)


def table_memory_scaling(args: argparse.Namespace) -> None:
    """attrstream at N and 4N, each in a fresh process: a streaming sweep's peak RSS does not grow.

    The unit defaults to N/2 here, so that both runs span several units and the bounded buffers
    (two units) are filled in both.
    """
    unit = args.unit if args.unit != DEFAULT_UNIT else max(1, args.num_examples // 2)
    scaled = argparse.Namespace(**{**vars(args), "unit": unit})
    env = environment(args.device)
    announce(scaled, env, f"memory scaling, unit {unit}")
    cases = [Case(args.num_examples), Case(4 * args.num_examples)]
    runs = measure(scaled, cases, ("attrstream",), "separate")
    rows = [{"n": case.n, "units": -(-case.n // unit), "img_s": median(_of(runs, i, "attrstream"), "img_s"),
             "peak_rss_mb": median(_of(runs, i, "attrstream"), "peak_rss_mb"),
             "written_mb": _mb(_of(runs, i, "attrstream"))} for i, case in enumerate(cases)]
    growth = rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]
    print(f"peak RSS growth from N to 4N: {growth:+.0f} MB ({growth / rows[0]['peak_rss_mb']:+.1%})")
    save(scaled, "sweep_memory_scaling", rows, SCALING_COLUMNS, env, runs)


TABLE_FUNCTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "main": table_main, "layers": table_layers, "sizes": table_sizes, "steady": table_steady,
    "fixed-cost": table_fixed_cost,
    "multi-sample-memory": table_multi_sample_memory, "memory-scaling": table_memory_scaling,
}


JOBS: dict[str, Callable[[Any, dict[str, Any], Path], dict[str, Any]]] = {
    "rounds": run_job, "steady": steady_job, "fixed_cost": fixed_cost_job,
}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """A child process: build the shared setup once, then run its job (rounds, steady or fixed cost)."""
    job = json.loads(args.child)
    s = setup(args)
    if args.out_dir:
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_", dir=args.out_dir) as tmp:
        return JOBS[job["kind"]](s, job, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=TABLES, default="main", help="which table to measure (default main)")
    parser.add_argument("--mode", choices=("separate", "interleaved"), default="separate",
                        help="main, layers, sizes: a fresh process per run, or every run in one process")
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
    parser.add_argument("--sizes", default="16,96,256", help="sizes table: the values of N")
    parser.add_argument("--layer-counts", default="1,2,4", help="layers table: how many of the last layers")
    parser.add_argument("--samples", default="8,48", help="multi-sample-memory table: samples / steps per image")
    parser.add_argument("--sample-methods", default="smoothgrad,integrated_gradients",
                        help="multi-sample-memory table: the methods")
    add_output_args(parser)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
    else:
        TABLE_FUNCTIONS[args.table](args)


if __name__ == "__main__":
    main()
