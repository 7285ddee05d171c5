"""The sweep: stream every requested attribution and statistic of a data set into one store.

``sweep()`` = prepare (plan the layers and shapes, open the store once and learn the units to do)
→ run (the batch loop, :mod:`attrstream.engine.loop`) → finish (finalize, return the reader).
Under torchrun every rank runs the same code: rank 0 prepares the store, each rank writes its own
whole units, rank 0 finalizes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from attrstream.engine.config import SweepConfig
from attrstream.engine.distributed import RankContext, rank_context
from attrstream.engine.errors import USER_ERRORS, ConfigError, DataError, StoreError
from attrstream.engine.loop import run_units
from attrstream.engine.plan import SweepPlan, plan_sweep
from attrstream.engine.store import Run, RunningPools, StoreWriter, finalize_store, open_run, open_writer
from attrstream.engine.store.location import LocalLocation, StoreLocation, UrlLocation, locate
from attrstream.engine.store.meta import looks_like_store
from attrstream.engine.store.verify import VerifyReport, verify_store


@dataclass
class SweepStats:
    """How this rank's store writer kept up, filled in by :func:`sweep` when passed ``stats=``.

    ``writer_idle_fraction`` near 1 means the writer thread waited for work (never the
    bottleneck); ``append_wait_s`` is the time compute spent blocked on a full writer.
    """

    units_written: int = 0
    examples_written: int = 0  # rows of the units written by this run (0: the store was already complete)
    writer_idle_fraction: float = 1.0
    append_wait_s: float = 0.0


def sweep(model: nn.Module, dataset: Dataset, out: str | os.PathLike, config: SweepConfig | None = None, *,
          stats: SweepStats | None = None, **options: Any) -> Run:
    """Run a sweep of ``model`` over ``dataset`` into the store ``out`` and return the opened run.

    ``options`` are :class:`SweepConfig` fields (``layers``, ``methods``, ``target``, ``batch_size``,
    ``unit``, ``device``, ``dtype``, ...). An existing store with the same configuration is resumed.
    ``stats``, when given, receives the writer's measurements (benchmarks).
    """
    _check_arguments(model, dataset, out)
    if config is not None and options:
        raise ConfigError("Pass either a SweepConfig or keyword options, not both.")
    unknown = sorted(set(options) - {f.name for f in fields(SweepConfig)})
    if unknown:
        valid = ", ".join(f.name for f in fields(SweepConfig))
        raise ConfigError(f"Unknown sweep option(s) {', '.join(unknown)}. Valid options: {valid}.")
    cfg = config if config is not None else SweepConfig(**options)
    ctx = rank_context(cfg.device)
    try:
        location, plan, writer, pools = _prepare(model, dataset, out, cfg, ctx)
        failure = _run(model, dataset, writer, plan, cfg, ctx, stats)
        return _finish(location, writer, cfg, ctx, failure, pools)
    finally:
        ctx.close()


def _check_arguments(model: object, dataset: object, out: object) -> None:
    """Wrong types are refused here, before anything is created on disk."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"Expected model to be a torch.nn.Module, got {type(model).__name__} {model!r:.80}; "
                          "wrap a function in an nn.Module whose forward calls it.")
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise DataError(f"Expected dataset to be a map-style dataset (with __len__ and __getitem__), got "
                        f"{type(dataset).__name__}.")
    if not isinstance(out, (str, os.PathLike, LocalLocation, UrlLocation)):
        raise ConfigError(f"Expected out to be a store path (str or os.PathLike) or a URL, got {out!r}.")


def _prepare(model: nn.Module, dataset: Dataset, out, cfg: SweepConfig,
             ctx: RankContext) -> tuple[StoreLocation, SweepPlan, StoreWriter, RunningPools | None]:
    """Plan the sweep, then open this rank's writer on the store (rank 0 creates or resumes it).

    A single process that finalizes also gets the pools its writer feeds unit by unit, so that
    finalize need not read every unit's statistics back (it still does after a resume).
    """
    device = torch.device(f"cuda:{ctx.local_rank}" if cfg.device == "cuda" and ctx.world > 1 else cfg.device)
    plan = plan_sweep(model, dataset, cfg, device, announce=ctx.is_main)
    location = locate(out)
    report = _verify_for_repair(location, cfg) if ctx.is_main else None
    pools = RunningPools(plan.spec) if cfg.finalize and ctx.world == 1 else None
    writer = _open_writer(ctx, location, plan, cfg, report, pools)
    if ctx.is_main and writer.units_done_before:
        left = sum(stop - start for start, stop in map(writer.unit_range, writer.todo))
        print(f"attrstream: resuming {location}: {writer.units_done_before} of {plan.spec.n_units()} units already "
              f"done" + (f"; {left} examples left" if ctx.world == 1 else ""), file=sys.stderr)
    return location, plan, writer, pools


def _verify_for_repair(location: StoreLocation, cfg: SweepConfig) -> VerifyReport | None:
    """With ``repair``, the full verify of an existing store (its damage is printed, then recomputed)."""
    if not cfg.repair or cfg.overwrite or not looks_like_store(location):
        return None
    report = verify_store(location, progress=cfg.progress and sys.stderr.isatty(), jobs=False)
    for damage in report.damaged:
        print(f"attrstream: {damage}", file=sys.stderr)
    return report


def _open_writer(ctx: RankContext, location: StoreLocation, plan: SweepPlan, cfg: SweepConfig,
                 repair: VerifyReport | None, pools: RunningPools | None) -> StoreWriter:
    """Rank 0 prepares the layout and opens its writer first; then every other rank joins.

    An error on rank 0 (another configuration, a locked store) reaches every rank as the same
    error instead of leaving the others waiting at a collective.
    """
    spec, lock_name, share = plan.spec, f"writer.rank{ctx.rank}", (ctx.rank, ctx.world)
    writer: StoreWriter | None = None
    result: tuple[str, Any] = ("ok", None)
    if ctx.is_main:
        try:
            writer = open_writer(location, spec, overwrite=cfg.overwrite, lock_name=lock_name, share=share,
                                 break_lock=cfg.break_lock, repair=repair, on_unit_done=pools,
                                 writer_info={"device": str(plan.device), "world_size": ctx.world})
        except USER_ERRORS as err:
            result = ("error", (type(err), str(err)))
    status, value = ctx.broadcast(result)
    if status == "error":
        kind, message = value
        raise kind(message)
    if not ctx.is_main:
        writer = open_writer(location, spec, prepare=False, lock_name=lock_name, share=share, break_lock=cfg.break_lock)
    ctx.barrier()  # every rank holds its lock and knows its units before anyone writes
    assert writer is not None
    return writer


def _run(model: nn.Module, dataset: Dataset, writer: StoreWriter, plan: SweepPlan, cfg: SweepConfig,
         ctx: RankContext, stats: SweepStats | None) -> BaseException | None:
    """The batch loop over this rank's units; returns its failure instead of raising it (see finish)."""
    failure: BaseException | None = None
    try:
        with writer:
            run_units(model, dataset, writer, plan, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                      skip_bad_images=cfg.skip_bad_images, show_bar=cfg.progress and ctx.is_main)
    except BaseException as err:
        failure = err
    if stats is not None:
        stats.units_written = writer.units_written
        stats.examples_written = 0 if failure else sum(b - a for a, b in map(writer.unit_range, writer.todo))
        stats.writer_idle_fraction = writer.idle_fraction
        stats.append_wait_s = writer.append_wait_s
    return failure


def _finish(location: StoreLocation, writer: StoreWriter, cfg: SweepConfig, ctx: RankContext,
            failure: BaseException | None, pools: RunningPools | None) -> Run:
    """Stop every rank if one failed; else rank 0 finalizes, and the run is opened for reading."""
    if not ctx.all_ok(failure is None):
        if failure is not None:
            raise failure
        raise StoreError(f"Another rank failed while sweeping into {location}; rerun the same command to resume.")
    if not ctx.is_main:
        print(f"attrstream: rank {ctx.rank}/{ctx.world} wrote {len(writer.todo)} units", file=sys.stderr)
    if cfg.finalize and ctx.is_main:
        finalize_store(location, break_lock=cfg.break_lock, pooled=pools)
    ctx.barrier()
    return open_run(location)
