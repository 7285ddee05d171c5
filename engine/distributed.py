"""Rank context for sweeps under ``torchrun``; world size 1 is the same code with no-op collectives.

attrstream does not invent cluster machinery: ``torch.distributed`` is initialised from the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), nccl on CUDA and gloo
on CPU. Ranks coordinate only around the store: rank 0 prepares it, every rank writes its own
whole units, rank 0 finalizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class RankContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when this context initialised the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_ok(self, ok: bool) -> bool:
        """True on every rank when ``ok`` holds on every rank (so one rank's error stops them all cleanly)."""
        if self.world == 1:
            return ok
        flag = torch.tensor([0 if ok else 1])
        dist.all_reduce(flag)
        return int(flag) == 0

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def rank_context(device: str) -> RankContext:
    """The context of this process: from an initialised group, from torchrun's env, or single."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return RankContext(dist.get_rank(), dist.get_world_size(), local_rank)
    if world <= 1:
        return RankContext()
    on_cuda = device.startswith("cuda")
    if on_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if on_cuda else "gloo")
    return RankContext(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)
