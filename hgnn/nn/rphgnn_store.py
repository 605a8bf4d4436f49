"""Column shards and the hop-group store of RpHGNN's pre-computation.

The pre-computation splits every node type's feature columns into 64-wide chunks. In a
``torch.distributed`` job each rank owns a contiguous run of chunks of every type
(:class:`ColumnShards`); the graph structure is replicated. Mean aggregation acts on each column
alone, so a rank propagates only its own columns, with no communication. The update (random
projection, then row-wise L2 norm) mixes columns: per block of rows, the ranks all-gather the
block's columns and the per-chunk squared norms (:meth:`ColumnShards.gather_columns`,
:meth:`ColumnShards.gather_chunks`). Every arithmetic step is the same call on the same operands
whatever the number of ranks, so a sharded run equals a single-process run bit for bit.

:class:`HopStore` receives the target's groups: in memory, or as float16 ``.npy`` files (one per
group, laid out ``[hops, N, d]``) that training reads through memory maps.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

CHUNK = 64


class ColumnShards:
    """Which feature columns of each type this rank owns, and the collectives that reassemble
    rows across ranks. With one process every method is the identity."""

    def __init__(self, widths: dict[str, int], rank: int = 0, world_size: int = 1) -> None:
        self.rank, self.world_size = rank, world_size
        self.widths = dict(widths)
        self.chunk_ranges: dict[str, list[tuple[int, int]]] = {}
        for t, d in widths.items():
            chunks = torch.arange((d + CHUNK - 1) // CHUNK).tensor_split(world_size)
            self.chunk_ranges[t] = [(int(c[0]), int(c[-1]) + 1) if c.numel() else (0, 0)
                                    for c in chunks]

    @classmethod
    def from_process_group(cls, widths: dict[str, int]) -> ColumnShards:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(widths, dist.get_rank(), dist.get_world_size())
        return cls(widths)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def columns(self, t: str, rank: int | None = None) -> tuple[int, int]:
        """``[lo, hi)``: the columns of type ``t`` owned by ``rank`` (this rank by default)."""
        a, b = self.chunk_ranges[t][self.rank if rank is None else rank]
        d = self.widths[t]
        return (min(a * CHUNK, d), min(b * CHUNK, d)) if b > a else (0, 0)

    def chunks(self, t: str) -> list[tuple[int, int]]:
        """This rank's chunks of type ``t`` as column ranges."""
        a, b = self.chunk_ranges[t][self.rank]
        d = self.widths[t]
        return [(c * CHUNK, min((c + 1) * CHUNK, d)) for c in range(a, b)]

    def _all_gather_padded(self, part: Tensor, sizes: list[int]) -> list[Tensor]:
        longest = max(sizes)
        padded = part.new_zeros(part.size(0), longest)
        padded[:, : part.size(1)] = part
        blocks = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(blocks, padded)
        return [b[:, :n] for b, n in zip(blocks, sizes, strict=True)]

    def gather_columns(self, part: Tensor, t: str) -> Tensor:
        """Rows with all of type ``t``'s columns, from every rank's ``[n, own columns]`` part."""
        if not self.enabled:
            return part
        sizes = [hi - lo for lo, hi in (self.columns(t, r) for r in range(self.world_size))]
        return torch.cat(self._all_gather_padded(part.contiguous(), sizes), dim=1)

    def gather_chunks(self, part: Tensor, t: str) -> Tensor:
        """``[n, chunks of t]`` in chunk order, from every rank's ``[n, own chunks]`` part."""
        if not self.enabled:
            return part
        sizes = [b - a for a, b in self.chunk_ranges[t]]
        return torch.cat(self._all_gather_padded(part.contiguous(), sizes), dim=1)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


class HopStore:
    """Receives hop ``k`` of each group, this rank's columns ``[lo, hi)`` of it.

    * one process, no ``path``: preallocated ``[N, hops, d]`` tensors;
    * one process, ``path``: each group's hops are appended to ``<key>.npy.partial`` with plain
      file writes (the page cache, not the process, holds them), renamed to ``<key>.npy`` when
      complete and returned as read-only memory maps viewed ``[N, hops, d]``;
    * several ranks: rank 0 sizes the files, every rank writes its columns through a memory map,
      and all ranks map the renamed files. Without ``path`` the files go to a temporary directory,
      are read back into memory and removed.
    """

    def __init__(self, layout, num_rows: int, dtype: torch.dtype, path: str | Path | None,
                 shards: ColumnShards) -> None:
        self.layout, self.dtype, self.shards = layout, dtype, shards
        self.filled = {g.key: 0 for g in layout}
        self.temporary = shards.enabled and path is None
        if self.temporary:
            path = shards.broadcast(tempfile.mkdtemp(prefix="hgnn-rphgnn-")
                                    if shards.rank == 0 else None)
        self.path = Path(path) if path is not None else None
        self.files, self.maps, self.tensors = {}, {}, {}
        if self.path is None:
            self.tensors = {g.key: torch.empty(num_rows, g.hops, g.width, dtype=dtype)
                            for g in layout}
            return
        if dtype != torch.float16:
            raise ValueError(f"an on-disk store holds float16, not {dtype}")
        if shards.rank == 0:
            self.path.mkdir(parents=True, exist_ok=True)
        for g in layout:
            shape = (g.hops, num_rows, g.width)
            if shards.rank == 0:
                f = open(self._partial(g.key), "wb")  # noqa: SIM115 - closed in result()
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f2", "fortran_order": False, "shape": shape})
                self.files[g.key] = f
                if shards.enabled:
                    f.truncate(f.tell() + 2 * int(np.prod(shape)))
                    f.flush()
        shards.barrier()
        if shards.enabled:
            for g in layout:
                self.maps[g.key] = np.lib.format.open_memmap(self._partial(g.key), mode="r+")

    def _file(self, key: str) -> Path:
        return self.path / (key.replace(":", "-") + ".npy")

    def _partial(self, key: str) -> Path:
        # Written aside and renamed when complete: an interrupted run leaves no truncated group,
        # and maps of an earlier result keep their (replaced) file.
        return self._file(key).with_suffix(".npy.partial")

    def add(self, key: str, h: Tensor, lo: int, hi: int, row0: int = 0, last: bool = True) -> None:
        """Rows ``row0 .. row0 + len(h)`` of the group's next hop, columns ``[lo, hi)``; ``last``
        marks the hop complete (row blocks must arrive in order)."""
        hop, rows = self.filled[key], slice(row0, row0 + h.size(0))
        if self.path is None:
            self.tensors[key][rows, hop, lo:hi] = h
        elif self.shards.enabled:
            if hi > lo:
                self.maps[key][hop, rows, lo:hi] = h.to(torch.float16).numpy()
        else:
            self.files[key].write(h.to(torch.float16).contiguous().numpy().tobytes())
        if last:
            self.filled[key] = hop + 1

    def result(self) -> dict[str, Tensor]:
        if self.path is None:
            return self.tensors
        for m in self.maps.values():
            m.flush()
        self.maps.clear()
        self.shards.barrier()
        if self.shards.rank == 0:
            for g in self.layout:
                self.files[g.key].close()
                os.replace(self._partial(g.key), self._file(g.key))
        self.shards.barrier()
        out = {}
        for g in self.layout:
            array = np.load(self._file(g.key), mmap_mode="r")
            if self.temporary:
                out[g.key] = torch.from_numpy(np.ascontiguousarray(array.transpose(1, 0, 2)))
                continue
            with warnings.catch_warnings():  # read-only map: the trainer only reads rows
                warnings.simplefilter("ignore", UserWarning)
                out[g.key] = torch.from_numpy(array).permute(1, 0, 2)
        if self.temporary:
            self.shards.barrier()
            if self.shards.rank == 0:
                shutil.rmtree(self.path, ignore_errors=True)
        return out
