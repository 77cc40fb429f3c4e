"""``thor rl`` on several data-parallel ranks: ``accelerate launch --multi_gpu --num_processes N -m
thor_cli rl ...`` (or torchrun) starts N processes; this module is their few collectives.

How the ranks share a step (docs/ARCHITECTURE.md, "thor rl on several ranks"):

- **Generation:** every rank runs the rollouts of its share of the step's requests
  (``shard``: every N-th), scores them with its own grader, and ``gather`` hands every rank the
  whole list, in the same order. From there each rank runs the same deterministic code on the
  same data: filters, group statistics, dynamic sampling's decision to generate more, the
  step-level cuts, the advantages (over whole groups, as on one rank). Rewards must depend on
  their own record only (the graders' and TAPO's do).
- **Update:** each rank backpropagates its share of each mini-batch's samples, each loss term
  normalised by the mini-batch's global token (or row) count, known to every rank since every
  rank holds the whole batch; ``sum_grads`` then adds the gradients over ranks (an all-reduce
  SUM, not DDP's mean, so that the sum is exactly the one-rank gradient), and every rank takes
  the same clipped optimizer step: the weights stay identical without being broadcast.
- **Files:** rank 0 (``main``) alone writes checkpoints, metrics, trajectories and the final
  model; every rank resumes from the same checkpoint.

The process group is gloo: the trainer's weights live on the CPU (generation on the ``hf``
backend). A single process has ``Ranks()`` (rank 0 of 1), whose collectives return at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

# a rank waits in a collective while the others generate, grade or save: allow long steps
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run and the collectives ``thor rl`` uses."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of ``items``: every ``world``-th, from ``rank``."""
        return list(items[self.rank::self.world])

    def gather(self, part: list[T]) -> list[T]:
        """Every rank's ``part``, concatenated in rank order (the same list on every rank)."""
        if self.world == 1:
            return list(part)
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, part)
        return [x for p in parts for x in p]

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def max(self, value: int) -> int:
        """The largest ``value`` over the ranks."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def sum_grads(self, params: Sequence[Any]) -> None:
        """Replace each parameter's gradient by its sum over ranks, in one flat all-reduce. A
        parameter that has no gradient on any rank keeps none (an optimizer then skips it, as on
        one rank); one that has a gradient somewhere gets zeros elsewhere before the sum."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
        dist.all_reduce(has)
        live = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
        if not live:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in live])
        dist.all_reduce(flat)
        offset = 0
        for p in live:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone()
            offset += n


def current() -> Ranks:
    """The ranks of the process group this process is in (started by ``start``), else one rank."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launch_flag(name: str) -> bool:
    """A boolean the launcher set in the environment (accelerate's ``ACCELERATE_USE_*``)."""
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def start() -> Ranks:
    """Join the launcher's process group when there is one (``WORLD_SIZE`` > 1, set with ``RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` by accelerate launch and torchrun); one rank otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return current()
    if launch_flag("ACCELERATE_USE_DEEPSPEED"):
        from thor_cli.errors import UsageError

        raise UsageError("thor rl's ranks are data parallel or FSDP; this launch asks for deepspeed",
                         "launch with --multi_gpu, or --use_fsdp (or fsdp=true) to shard the weights")
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=TIMEOUT)
    return current()


