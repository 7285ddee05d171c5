"""Fused kernels against eager torch and ``torch.compile`` of the same reference, on ResNet-50 shapes.

For each op and shape, one setup builds the inputs that every contender then reads:

- ``torch``: the reference, eager (the CPU path and the specification);
- ``compile``: ``torch.compile(reference, dynamic=False)``, compiled before timing;
- ``triton`` (CUDA only): the fused kernel;
- ``copy`` (CUDA only): a device-to-device copy moving the same number of bytes (half read, half
  written), the bandwidth ceiling; other rows report their time as a percentage of it.

GB/s = bytes / median time, bytes = what the kernel actually moves: every input read as many
times as the op reads it (``layer_maps`` reads ``a`` and ``g`` twice: two passes) + every output
written once (written next to each op below). Repetitions are interleaved across contenders; on CUDA each call
is timed with CUDA events after an L2 flush, so tensors smaller than L2 are not read from cache.

    python benchmarks/bench_kernels.py [--device cuda] [--batch 64] [--repeats 20] [--ops channel_stats,...]

``--contenders torch`` skips ``torch.compile`` (minutes of compilation on a CPU). Prints a table
and writes benchmarks/results/kernels.json.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from _common import Column, add_output_args, environment, interleaved, median, write_table

from attrstream.kernels.names import ACTIVATION_STAT_NAMES, STAT_NAMES

# ResNet-50 layer outputs (C, H, W) at 224×224, and the input batch itself.
SHAPES = {
    "layer1": (256, 56, 56),
    "layer2": (512, 28, 28),
    "layer3": (1024, 14, 14),
    "layer4": (2048, 7, 7),
    "input": (3, 224, 224),
}
# per (example, channel): float32 statistics of the activation alone, and with relevance (given g)
ACTIVATION_STATS_BYTES, STATS_BYTES = len(ACTIVATION_STAT_NAMES) * 4, len(STAT_NAMES) * 4


@dataclass(frozen=True)
class Op:
    """One kernel: where it lives, how many [N,C,H,W] inputs it reads and how often, the bytes it writes."""

    name: str
    inputs: int  # tensors of the layer's shape read: a (+ g)
    out_bytes: Callable[[int, int, int, int], int]  # (N, C, H, W) -> bytes written
    passes: int = 1  # times the kernel reads each input

    def bytes(self, n: int, c: int, h: int, w: int, itemsize: int) -> int:
        """Bytes moved: passes × inputs × N·C·H·W × itemsize read, plus the outputs written once."""
        return self.passes * self.inputs * n * c * h * w * itemsize + self.out_bytes(n, c, h, w)

    def load(self) -> tuple[Callable, Callable] | str:
        """(torch reference, triton launcher), or why the op is unavailable."""
        try:
            module = importlib.import_module(f"attrstream.kernels._{self.name}")
            return getattr(module, f"{self.name}_torch"), getattr(module, f"{self.name}_triton")
        except (ImportError, AttributeError) as err:
            return f"unavailable ({type(err).__name__}: {err})"


def _map(n: int, c: int, h: int, w: int) -> int:
    return n * h * w * 2 + n * 4  # values [N,H,W] float16 + scale [N] float32


OPS = {
    # stats [N,C,S] float32; a read once
    "channel_stats": Op("channel_stats", 1, lambda n, c, h, w: n * c * ACTIVATION_STATS_BYTES),
    # x and g read once; one map
    "product_map": Op("product_map", 2, _map),
    # g read once; one map
    "saliency": Op("saliency", 1, _map),
    # a and g read once; one map
    "grad_cam": Op("grad_cam", 2, _map),
    # a and g read twice each (pass 1: stats of a and the mean of g; pass 2: both maps); stats + two maps
    "layer_maps": Op("layer_maps", 2, lambda n, c, h, w: n * c * STATS_BYTES + 2 * _map(n, c, h, w), passes=2),
}


class Timer:
    """Seconds of one call: CUDA events after an L2 flush on the GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        # Twice an H100/H200 L2 (50 MB): zeroing it evicts the previous contender's data.
        self.flush = torch.empty(100 * 2**20, dtype=torch.uint8, device=device) if self.cuda else None

    def __call__(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        self.flush.zero_()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1e3


def contenders(reference: Callable, triton_fn: Callable, args: tuple, nbytes: int, device: torch.device,
               wanted: tuple[str, ...]) -> dict[str, Callable[[], object]]:
    calls: dict[str, Callable[[], object]] = {"torch": lambda: reference(*args)}
    if "compile" in wanted:
        compiled = torch.compile(reference, dynamic=False)
        calls["compile"] = lambda: compiled(*args)
    if device.type == "cuda":
        src = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        calls["triton"] = lambda: triton_fn(*args)
        calls["copy"] = lambda: dst.copy_(src)
    return calls


def bench_case(op: Op, shape_name: str, args: argparse.Namespace, device: torch.device,
               timer: Timer) -> list[dict]:
    torch._dynamo.reset()  # each case compiles afresh: no recompile limit reached, no cache carried over
    c, h, w = SHAPES[shape_name]
    n, dtype = args.batch, getattr(torch, args.dtype)
    record = {"op": op.name, "shape_name": shape_name, "shape": [n, c, h, w], "dtype": args.dtype,
              "layout": args.layout, "passes": op.passes}
    loaded = op.load()
    if isinstance(loaded, str):
        return [{**record, "contender": None, "status": loaded, "shape_str": "x".join(map(str, record["shape"]))}]
    reference, triton_fn = loaded
    gen = torch.Generator(device=device).manual_seed(0)
    memory_format = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    inputs = tuple(
        torch.randn(n, c, h, w, generator=gen, device=device, dtype=dtype).contiguous(memory_format=memory_format)
        for _ in range(op.inputs)
    )
    nbytes = op.bytes(n, c, h, w, inputs[0].element_size())
    calls = contenders(reference, triton_fn, inputs, nbytes, device, args.contenders)
    for call in calls.values():  # warm-up: compilation (inductor, Triton JIT) stays out of the timing
        call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    runs = interleaved(list(calls), args.repeats, lambda name, rep: {"s": timer(calls[name])})
    seconds = {name: median(runs[name], "s") for name in calls}
    records = []
    for name, s in seconds.items():
        records.append({**record, "shape_str": "x".join(map(str, record["shape"])), "contender": name,
                        "status": "ok", "mb": nbytes / 1e6, "bytes": nbytes, "median_s": s, "ms": s * 1e3,
                        "gbps": nbytes / s / 1e9, "repeats": args.repeats,
                        "pct_of_copy": 100 * seconds["copy"] / s if "copy" in seconds else None})
    return records


COLUMNS = (
    Column("op", "op"), Column("shape_str", "shape"), Column("contender", "contender"), Column("status", "status"),
    Column("passes", "passes"), Column("mb", "MB moved", ".1f"), Column("ms", "ms", ".3f"),
    Column("gbps", "GB/s", ".2f"), Column("pct_of_copy", "% copy", ".0f"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, help="examples per batch (default 64 on CUDA, 8 on CPU)")
    p.add_argument("--repeats", type=int, help="timed calls per contender (default 20 on CUDA, 3 on CPU)")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, from {','.join(OPS)}")
    p.add_argument("--shapes", help=f"comma-separated, from {','.join(SHAPES)} (default all on CUDA; "
                   "layer4 on CPU, where compiling every case would take minutes)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--layout", default="contiguous", choices=("contiguous", "channels_last"))
    p.add_argument("--contenders", default="torch,compile",
                   help="torch and/or compile (triton and copy are added on CUDA); torch alone skips compiling")
    add_output_args(p)
    p.add_argument("--target-pct", type=float, help="exit 1 unless every Triton row reaches this %% of the "
                   "copy bandwidth and beats torch.compile (CUDA)")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available here")
    args.batch = args.batch or (64 if cuda else 8)
    args.repeats = args.repeats or (20 if cuda else 3)
    args.shapes = args.shapes or (",".join(SHAPES) if cuda else "layer4")
    for flag, given, allowed in (("--ops", args.ops, OPS), ("--shapes", args.shapes, SHAPES),
                                 ("--contenders", args.contenders, ("torch", "compile"))):
        unknown = [x for x in given.split(",") if x not in allowed]
        if unknown:
            p.error(f"{flag}: expected names from {', '.join(allowed)}, got {', '.join(unknown)}")
    args.contenders = tuple(args.contenders.split(","))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    env = environment(args.device)
    timer = Timer(device)
    records = []
    for op_name in args.ops.split(","):
        for shape_name in args.shapes.split(","):
            records += bench_case(OPS[op_name], shape_name, args, device, timer)
    config = {"device": args.device, "batch": args.batch, "repeats": args.repeats, "ops": args.ops.split(","),
              "shapes": args.shapes.split(","), "dtype": args.dtype, "layout": args.layout,
              "contenders": list(args.contenders)}
    write_table("kernels", records, columns=COLUMNS, config=config, machine=env, results_dir=args.results_dir,
                note=args.note)
    if args.target_pct is not None and not meets_target(records, args.target_pct):
        raise SystemExit(1)


def meets_target(records: list[dict], pct: float) -> bool:
    """Print one verdict per Triton row: at least ``pct`` of copy bandwidth, faster than compile."""
    compiled = {(r["op"], r["shape_name"]): r["median_s"] for r in records if r["contender"] == "compile"}
    ok = True
    for r in (r for r in records if r["contender"] == "triton"):
        faster = r["median_s"] < compiled[r["op"], r["shape_name"]]
        good = r["pct_of_copy"] >= pct and faster
        ok &= good
        print(f"{'PASS' if good else 'MISS'} {r['op']} {r['shape_name']}: {r['pct_of_copy']:.0f}% of copy "
              f"(target {pct:.0f}%), {compiled[r['op'], r['shape_name']] / r['median_s']:.2f}x torch.compile")
    return ok


if __name__ == "__main__":
    main()
