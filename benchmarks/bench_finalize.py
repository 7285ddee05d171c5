"""Finalize by N: the pooled ``dataset_stats`` from the pools the writer fed unit by unit (what a
single-process sweep does) against reading every unit's statistics back (a resumed or torchrun
sweep, or ``finalize_store`` on its own).

Each N gets one store of ResNet-18's four stages of [N, C, 6] float32 statistics (C = 64, 128, 256,
512) and per-example inputs and outputs, written by the unit writer with :class:`RunningPools`
fed; then the two finalizes alternate on it (finalize is idempotent) in ``--repeats`` rounds, the
first rotated. The pools' own cost is paid in the writer thread while the sweep computes: "feeding
s" is its total over the run. Both give bit-equal statistics (tests/store/test_finalize.py).

    python benchmarks/bench_finalize.py [--sizes 256,4096,16384] [--unit U] [--repeats 5]

Prints a table and writes benchmarks/results/finalize.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import Column, add_output_args, environment, rotated, write_table
from bench_store import make_batches, make_spec

COLUMNS = (
    Column("n", "N", "d"), Column("units", "units", "d"), Column("read_back_s", "read back s", ".3f"),
    Column("pools_s", "from pools s", ".3f"), Column("speedup", "speed-up", ".1f"),
    Column("feeding_s", "feeding s", ".3f"),
)
BATCH = 64


class Timed:
    """The pools as the writer calls them, with the time they take summed."""

    def __init__(self, pools) -> None:
        self.pools, self.seconds = pools, 0.0

    def __call__(self, unit, rows) -> None:
        t0 = time.perf_counter()
        self.pools(unit, rows)
        self.seconds += time.perf_counter() - t0


def write_store(path: Path, n: int, unit: int | None):
    """A stats-only store of ``n`` examples; returns the writer-fed pools (timed) and the spec."""
    from attrstream.engine.store import RunningPools, open_writer

    spec = make_spec(n, "lz4", methods=(), unit=unit)
    batches = make_batches(spec, BATCH)
    fed = Timed(RunningPools(spec))
    with open_writer(path, spec, on_unit_done=fed) as writer:
        for i, lo in enumerate(range(0, n, BATCH)):
            writer.append(lo, {k: v[: min(BATCH, n - lo)] for k, v in batches[i % len(batches)].items()})
    assert fed.pools.complete
    return fed, spec


def measure(n: int, unit: int | None, repeats: int, directory: str | None) -> dict:
    from attrstream.engine.store import finalize_store

    with tempfile.TemporaryDirectory(prefix="bench_finalize_", dir=directory) as tmp:
        path = Path(tmp) / "run.zarr"
        fed, spec = write_store(path, n, unit)
        ways = {"read_back": lambda: finalize_store(path), "pools": lambda: finalize_store(path, pooled=fed.pools)}
        seconds: dict[str, list[float]] = {k: [] for k in ways}
        for rep in range(repeats):
            for way in rotated(list(ways), rep):
                t0 = time.perf_counter()
                ways[way]()
                seconds[way].append(time.perf_counter() - t0)
    return {"n": n, "unit": spec.unit, "units": spec.n_units(), "feeding_s": fed.seconds, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,4096,16384", help="comma-separated values of N")
    parser.add_argument("--unit", type=int, help="examples per shard (default: the store's, as a sweep's)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of both finalizes (rotated); rows are medians")
    parser.add_argument("--dir", help="where to write (default: the system temp dir)")
    add_output_args(parser)
    args = parser.parse_args()
    from attrstream.engine.host_memory import keep_freed_memory

    keep_freed_memory()  # the allocator as the CLI sets it (bench_sweep.py's contenders too)
    env = environment()
    runs = [measure(int(n), args.unit, args.repeats, args.dir) for n in args.sizes.split(",")]
    rows = []
    for r in runs:
        read_back, pools = (statistics.median(r["seconds"][k]) for k in ("read_back", "pools"))
        rows.append({"n": r["n"], "units": r["units"], "read_back_s": read_back, "pools_s": pools,
                     "speedup": read_back / pools, "feeding_s": r["feeding_s"]})
    write_table("finalize", rows, columns=COLUMNS, results_dir=args.results_dir, note=args.note,
                config={"sizes": [r["n"] for r in runs], "unit": runs[0]["unit"], "repeats": args.repeats, "dir": args.dir,
                        "batch": BATCH}, machine=env, runs=runs)


if __name__ == "__main__":
    main()
