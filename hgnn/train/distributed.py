"""Training across processes on ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m hgnn train ...`` (or ``hgnn train --nproc N``, which execs
torchrun) starts N copies; each reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the environment
and joins one process group: gloo on CPU, NCCL on GPU (one device per local rank). The trainer then

* wraps the model in ``DistributedDataParallel`` (gradients averaged across ranks every step);
* gives each rank an equal shard of the training nodes each epoch (a permutation shared by all ranks,
  padded by wrapping around as ``DistributedSampler`` does, so every rank runs the same number of
  steps and no collective waits forever), with the per-rank batch ``ceil(batch_size / N)`` so the
  global batch and the steps per epoch match a single process;
* shards evaluation nodes in contiguous blocks and all-gathers the logits, so every rank computes the
  same metrics and takes the same early-stopping decision;
* writes checkpoints, results and the run record from rank 0 only (atomically), with every rank's
  RNG state in ``last.pt`` so a resumed run continues each rank's stream.

A rank that dies makes the others fail in their next collective (gloo reports the closed
connection; NCCL and stuck peers hit the process-group timeout, ``HGNN_DIST_TIMEOUT`` seconds,
default 300), and torchrun then stops the job with a non-zero exit naming the failed rank.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from hgnn.errors import HgnnError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard_train(self, ids: Tensor, seed: int, epoch: int) -> Tensor:
        """This rank's training nodes for ``epoch``: a permutation common to all ranks (seeded by
        run seed and epoch), padded to a multiple of the world size, every ``world_size``-th entry.
        A single process gets ``ids`` unchanged."""
        if not self.enabled:
            return ids
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = ids[torch.randperm(ids.numel(), generator=gen)]
        total = math.ceil(perm.numel() / self.world_size) * self.world_size
        if total > perm.numel():
            perm = torch.cat([perm, perm[: total - perm.numel()]])
        return perm[self.rank::self.world_size]

    def shard_eval(self, ids: Tensor) -> Tensor:
        """This rank's contiguous block of evaluation nodes (blocks in rank order cover ``ids``)."""
        if not self.enabled:
            return ids
        return ids.tensor_split(self.world_size)[self.rank]

    def gather_rows(self, part: Tensor) -> Tensor:
        """Concatenate every rank's ``[n_rank, ...]`` block in rank order, on every rank."""
        if not self.enabled:
            return part
        sizes = [torch.zeros(1, dtype=torch.long) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([part.size(0)]))
        longest = int(max(s.item() for s in sizes))
        padded = part.new_zeros((longest, *part.shape[1:]))
        padded[: part.size(0)] = part
        blocks = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(blocks, padded.contiguous())
        return torch.cat([b[: int(s.item())] for b, s in zip(blocks, sizes, strict=True)])

    def mean(self, value: float) -> float:
        """The mean of a per-rank scalar over ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def gather_objects(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


_CONTEXT = DistContext()


def context() -> DistContext:
    """The current process's context (single-process until :func:`init_from_env` joins a group)."""
    return _CONTEXT


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "cpu") -> DistContext:
    """Join the process group torchrun describes in the environment (idempotent). Returns the
    single-process context when not launched by torchrun."""
    global _CONTEXT
    if not launched_by_torchrun():
        return _CONTEXT
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("HGNN_DIST_TIMEOUT", "300")))
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    _CONTEXT = DistContext(dist.get_rank(), dist.get_world_size(),
                           int(os.environ.get("LOCAL_RANK", "0")))
    return _CONTEXT


def parse_device(device: str) -> torch.device:
    """``--device`` as a torch device, refused unless it is the CPU or an available CUDA GPU."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise HgnnError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HgnnError(f"--device {device}: no CUDA device is available")
    return dev


def device_for(device: str, ctx: DistContext) -> torch.device:
    """``cuda`` means this rank's own GPU (``cuda:LOCAL_RANK``) in a multi-process job."""
    if device == "cuda" and ctx.enabled:
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return torch.device(device)


def shutdown(sync: bool = True) -> None:
    """Leave the process group. ``sync`` first waits for every rank, so no rank tears its
    connections down while another is still in a collective (pass ``False`` when unwinding an
    error, where the other ranks may never arrive)."""
    global _CONTEXT
    if dist.is_initialized():
        if sync and _CONTEXT.enabled:
            dist.barrier()
        dist.destroy_process_group()
    _CONTEXT = DistContext()
