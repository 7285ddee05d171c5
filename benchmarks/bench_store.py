"""Store throughput: the unit writer against raw ``tofile`` (the disk's limit), the same writer through
zarr-python's shard pipeline (and the zarrs one), and naive zarr writes.

Every case runs in a fresh subprocess (so ``ru_maxrss`` is its own peak RSS) on the same batches
from one setup function: two 224×224 float16 attribution maps + scales, four layers of [N, C, 5]
float32 statistics (C = 64, 128, 256, 512), thumbnails, top-5 outputs. MB/s = raw bytes / wall
time from open to close (files are left in the page cache, not fsynced, for every contender).

Raw page-cache writes swing severalfold from one moment to the next on a shared VM, so the cases
run in ``--repeats`` rounds, each round in a rotated order; a row shows medians over rounds, and
its "vs raw" is the median of per-round ratios to the raw write of the same round and size.

    python benchmarks/bench_store.py [--n 4096] [--batch 64] [--compressors lz4,zstd] [--scale 4] [--repeats 3]

Prints a table and writes benchmarks/results/store.json (``store_<dir name>.json`` with ``--dir``:
``--dir /dev/shm`` takes the disk out and leaves the CPU path of each case).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    Column,
    add_output_args,
    dir_bytes,
    environment,
    median,
    peak_rss_mb,
    rotated,
    run_child,
    write_table,
)

# writer: whole shards built by attrstream (engine/store/shards.py); writer-zarr: the same writer with
# zarr-python's own shard pipeline; writer-zarrs: that pipeline swapped for the zarrs Rust one (if installed).
CASES = ("raw", "writer", "writer-zarr", "writer-zarrs", "naive")
POOL = 4  # distinct batches cycled through (data generation stays out of the timing)


def make_spec(n: int, compressor: str, methods: tuple[str, ...] = ("grad_x_input", "integrated_gradients"),
              unit: int | None = None):
    """ResNet-18's four stages with statistics, top-5 outputs and ``methods``' input maps at 224²."""
    from attrstream.engine.store import LayerSpec, RunSpec

    layers = tuple(LayerSpec(f"layer{i + 1}", c, (56 // 2**i, 56 // 2**i)) for i, c in enumerate((64, 128, 256, 512)))
    return RunSpec(n=n, input_shape=(3, 224, 224), num_classes=1000, methods=methods,
                   layer_methods=("stats",), layers=layers, topk=5, compressor=compressor,
                   config={"benchmark": "bench_store"}, **({"unit": unit} if unit else {}))


def make_batches(spec, batch: int) -> list[dict[str, np.ndarray]]:
    """A few realistic batches: smooth signed maps in [-1, 1] (like attributions), random stats."""
    from attrstream.engine.store import example_arrays

    rng = np.random.default_rng(0)
    pool = []
    for _ in range(POOL):
        out = {}
        for arr in example_arrays(spec):
            shape = (batch, *arr.row_shape)
            if "scale" in arr.attrs:  # a map: low-frequency field × sparse-ish magnitude, scaled to 1
                coarse = rng.standard_normal((batch, 28, 28)).astype(np.float32)
                field = np.kron(coarse, np.ones((8, 8), np.float32)) + 0.1 * rng.standard_normal(shape).astype(np.float32)
                field *= np.abs(field) > 0.5
                out[arr.path] = (field / np.abs(field).max(axis=(1, 2), keepdims=True)).astype(spec.dtype)
            elif arr.dtype.startswith("float"):
                out[arr.path] = rng.standard_normal(shape).astype(arr.dtype)
            else:
                out[arr.path] = rng.integers(0, 200, shape).astype(arr.dtype)
        pool.append(out)
    return pool


def run_case(case: str, n: int, batch: int, compressor: str, out: Path) -> dict:
    """One contender, timed from open to close; returns its numbers."""
    import zarr

    from attrstream.engine.store import open_writer
    from attrstream.engine.store.layout import compressors_for

    spec = make_spec(n, compressor)
    pool = make_batches(spec, batch)
    starts = list(range(0, n, batch))
    raw_bytes = sum(v[: min(batch, n - s)].nbytes for s in starts for v in pool[0].values())
    extra = {}
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if case == "raw":
        files = {k: open(out / k.replace("/", "_"), "wb") for k in pool[0]}  # noqa: SIM115
        for i, s in enumerate(starts):
            for k, v in pool[i % POOL].items():
                v[: n - s].tofile(files[k])
        for f in files.values():
            f.close()
    elif case.startswith("writer"):
        if case != "writer":
            import attrstream.engine.store.writer as writer_module

            writer_module.ShardEncoder.for_array = classmethod(lambda cls, array: None)
        if case == "writer-zarrs":
            zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})
        with open_writer(out / "run.zarr", spec) as writer:
            for i, s in enumerate(starts):
                writer.append(s, {k: v[: n - s] for k, v in pool[i % POOL].items()})
        extra = {"writer_idle": writer.idle_fraction, "append_wait_s": writer.append_wait_s}
    elif case == "naive":
        group = zarr.open_group(out / "naive.zarr", mode="w")
        arrays = {k: group.create_array(k, shape=(n, *v.shape[1:]), dtype=v.dtype, chunks=(batch, *v.shape[1:]),
                                        compressors=compressors_for(spec, v.dtype)) for k, v in pool[0].items()}
        for i, s in enumerate(starts):
            for k, v in pool[i % POOL].items():
                arrays[k][s : s + batch] = v[: n - s]
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    stored = dir_bytes(out)
    return {"case": case, "n": n, "batch": batch, "compressor": compressor, "wall_s": wall, "cpu_s": cpu,
            "raw_bytes": raw_bytes, "stored_bytes": stored, "mb_s": raw_bytes / wall / 1e6,
            "peak_rss_mb": peak_rss_mb(), **extra}


COLUMNS = (
    Column("case", "case"), Column("compressor", "comp"), Column("n", "N", "d"), Column("raw_mb", "raw MB", ".0f"),
    Column("stored_mb", "stored MB", ".0f"), Column("wall_s", "wall s", ".2f"), Column("mb_s", "MB/s", ".0f"),
    Column("ratio_to_raw", "vs raw", ".2f"), Column("mb_per_cpu_s", "MB/CPU-s", ".0f"),
    Column("peak_rss_mb", "peak RSS MB", ".0f"), Column("writer_idle", "writer idle", ".2f"),
)


def child(case: str, n: int, batch: int, compressor: str, directory: str | None) -> dict:
    """One case in a fresh process, so that its peak RSS is its own."""
    argv = [__file__, "--child", case, "--n", str(n), "--batch", str(batch), "--compressors", compressor]
    return run_child(argv + (["--dir", directory] if directory else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="examples in the run")
    parser.add_argument("--batch", type=int, default=64, help="rows per append / naive region write")
    parser.add_argument("--compressors", default="lz4,zstd", help="comma-separated: lz4, zstd")
    parser.add_argument("--scale", type=int, default=4,
                        help="also run raw and the writer at N × scale with the first compressor (peak RSS); 0: skip")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every case (rotated order); rows are medians")
    parser.add_argument("--dir", help="where to write (default: the system temp dir; /dev/shm: no disk)")
    add_output_args(parser)
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="bench_store_", dir=args.dir) as tmp:
            print(json.dumps(run_case(args.child, args.n, args.batch, args.compressors, Path(tmp))))
        return
    env = environment()
    keys = []  # (case, compressor, n): one row each
    for i, compressor in enumerate(args.compressors.split(",")):
        keys += [(case, compressor, args.n) for case in CASES if case != "writer-zarrs" or importlib.util.find_spec("zarrs")]
        if args.scale and i == 0:  # flat peak RSS is a property of the writer, not of the codec
            keys += [("raw", compressor, args.n * args.scale), ("writer", compressor, args.n * args.scale)]
    runs = []
    for rep in range(args.repeats):
        for case, compressor, n in rotated(keys, rep):
            runs.append({**child(case, n, args.batch, compressor, args.dir), "round": rep})
    name = f"store_{Path(args.dir).name}" if args.dir else "store"  # --dir /dev/shm: store_shm.json
    write_table(name, summary_rows(keys, runs), columns=COLUMNS, results_dir=args.results_dir, note=args.note,
                config={"n": args.n, "batch": args.batch, "compressors": args.compressors.split(","),
                        "scale": args.scale, "dir": args.dir, "repeats": args.repeats}, machine=env, runs=runs)


def summary_rows(keys: list[tuple[str, str, int]], runs: list[dict]) -> list[dict]:
    """One row per (case, compressor, N): medians over rounds; "vs raw" paired with the same round's raw."""
    raw = {(r["compressor"], r["n"], r["round"]): r["mb_s"] for r in runs if r["case"] == "raw"}
    rows = []
    for case, compressor, n in keys:
        mine = [r for r in runs if (r["case"], r["compressor"], r["n"]) == (case, compressor, n)]
        rows.append({
            "case": case, "compressor": compressor, "n": n, "raw_mb": mine[0]["raw_bytes"] / 1e6,
            "stored_mb": median(mine, "stored_bytes") / 1e6, "wall_s": median(mine, "wall_s"),
            "mb_s": median(mine, "mb_s"), "cpu_s": median(mine, "cpu_s"), "peak_rss_mb": median(mine, "peak_rss_mb"),
            "ratio_to_raw": statistics.median(r["mb_s"] / raw[(compressor, n, r["round"])] for r in mine),
            "mb_per_cpu_s": statistics.median(r["raw_bytes"] / 1e6 / r["cpu_s"] for r in mine),
            "writer_idle": median(mine, "writer_idle"),
        })
    return rows

if __name__ == "__main__":
    main()
