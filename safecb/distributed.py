"""Scale a Safe-CB round out over processes and GPUs with torch.distributed, set up by accelerate.

    accelerate launch --num_processes 2 --cpu -m safecb run --out runs/NAME ...   # gloo on CPU
    accelerate launch --num_processes 8 -m safecb run --out runs/NAME ...         # NCCL, one GPU each

The work is split, never the arithmetic: every process runs whole units of work exactly as one
process would run them, and the pieces come back in the original order, so a run on W processes
gives bit for bit what it gives on one. Launched without a launcher, `DistributedContext()` is a
single process and every collective below returns its input.

Pickled objects (work results, orders, metrics) travel over gloo, also next to NCCL, so they
never pass through GPU memory; tensors (codebooks) travel over the default group, NCCL on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


def launched_distributed() -> bool:
    """True in a process started by `accelerate launch` or `torchrun` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def shard_items(items: list, rank: int, world_size: int) -> list:
    """Process `rank`'s share of `items`: strided, items rank, rank + W, rank + 2W, ...

    Strided rather than contiguous because neighbouring items tend to cost alike (the engine lists
    harmful, rewrite and benign work in that order, and only benign work is captioned), so every
    process gets a similar mix. Shares differ by at most one item."""
    return list(items[rank::world_size])


def merge_shards(pieces: list[list]) -> list:
    """Inverse of `shard_items`: pieces[r] is process r's share; returns the items in their original order."""
    world_size = len(pieces)
    total = sum(len(piece) for piece in pieces)
    return [pieces[i % world_size][i // world_size] for i in range(total)]


@dataclass
class RemoteFailure:
    """What a process sends in place of its results when its work failed."""

    rank: int
    message: str


@dataclass
class DistributedContext:
    rank: int = 0  # this process's index; 0 is the main process
    world_size: int = 1  # number of processes
    device: torch.device | None = None  # this process's device (None: a single process chooses its own)
    object_group: Any = None  # the gloo group pickled objects travel over (None: the default group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls) -> "DistributedContext":
        """The context of this process: from accelerate's `PartialState` when started by
        `accelerate launch` or `torchrun` with several processes, else a single process.

        CPU when `accelerate launch --cpu` (ACCELERATE_USE_CPU) or when there is no GPU: gloo;
        otherwise NCCL with one GPU per process (`LOCAL_RANK`), as accelerate sets it up."""
        if not launched_distributed():
            return cls()
        from accelerate import PartialState

        cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
        state = PartialState(cpu=cpu, backend="gloo" if cpu else None)
        object_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        return cls(state.process_index, state.num_processes, state.device, object_group)

    def close(self) -> None:
        """Leave the process group (at the end of a launched run).

        Every process waits for the others first: a process that tears its gloo connections down
        while a peer is still finishing its last collective makes that peer abort."""
        if self.distributed and dist.is_initialized():
            dist.barrier(group=self.object_group)
            dist.destroy_process_group()

    # ---------------------------------------------------------------- work
    def shard(self, items: list) -> list:
        """This process's share of `items` (see `shard_items`)."""
        return shard_items(items, self.rank, self.world_size)

    def gather_in_order(self, local_results: list, failure: Exception | None = None) -> list | None:
        """Every process's results for its `shard`, merged back into the order of the items, on
        the main process; None elsewhere. Identical to what one process computes for all items.

        A process whose work failed passes its exception as `failure`: it still takes part, so no
        process is left waiting, and then the main process raises its own failure, else the first
        other process's as a RuntimeError; other processes re-raise their own."""
        if not self.distributed:
            if failure is not None:
                raise failure
            return local_results
        sent = RemoteFailure(self.rank, f"{type(failure).__name__}: {failure}") if failure is not None else local_results
        pieces = [None] * self.world_size if self.is_main else None
        dist.gather_object(sent, pieces, dst=0, group=self.object_group)
        if failure is not None:
            raise failure
        if not self.is_main:
            return None
        for piece in pieces:
            if isinstance(piece, RemoteFailure):
                raise RuntimeError(f"process {piece.rank} failed: {piece.message}")
        return merge_shards(pieces)

    # ---------------------------------------------------------------- from the main process
    def broadcast_object(self, obj: Any = None) -> Any:
        """The main process's `obj` (any picklable value), on every process."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.object_group)
        return box[0]

    def broadcast_tensors(self, tensors: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The main process's named tensors on every process, bit for bit (CPU tensors elsewhere;
        the main process gets its own dict back). Other processes pass nothing."""
        if not self.distributed:
            return tensors
        layout = self.broadcast_object(
            {name: (tuple(t.shape), t.dtype) for name, t in tensors.items()} if self.is_main else None
        )
        device = self.device or torch.device("cpu")
        received = {}
        for name, (shape, dtype) in layout.items():
            if self.is_main:
                buffer = tensors[name].detach().to(device).contiguous()
            else:
                buffer = torch.empty(shape, dtype=dtype, device=device)
            dist.broadcast(buffer, src=0)
            received[name] = buffer.cpu()
        return tensors if self.is_main else received
