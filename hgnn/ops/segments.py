"""A segmented edge list and its transpose, the structure every fused op walks."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Segments:
    """Edges grouped into segments (CSR/CSC rows): segment ``s`` owns edges ``ptr[s]:ptr[s+1]``
    and edge ``e`` reads source row ``index[e]`` of a table with ``num_src`` rows.

    The transpose (``tptr``, ``tedge``, ``tseg``: for each source row, its edges and their
    segments, in edge order) is built on first use and kept, so backward passes write each gradient
    row from one thread without atomics. Copies on other devices (:meth:`on`) are kept too: a graph
    index built on CPU serves GPU features with one host-to-device copy, not one per call.
    """

    ptr: Tensor
    index: Tensor
    num_src: int
    _transpose: tuple[Tensor, Tensor, Tensor] | None = None
    _copies: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ptr = self.ptr.long().contiguous()
        self.index = self.index.long().contiguous()

    @property
    def num_segments(self) -> int:
        return self.ptr.numel() - 1

    @property
    def num_edges(self) -> int:
        return self.index.numel()

    def segment_ids(self) -> Tensor:
        counts = self.ptr[1:] - self.ptr[:-1]
        return torch.repeat_interleave(torch.arange(counts.numel(), device=self.ptr.device),
                                       counts, output_size=self.num_edges)

    def transpose(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._transpose is None:
            perm = torch.sort(self.index, stable=True).indices
            tptr = torch.zeros(self.num_src + 1, dtype=torch.long, device=self.ptr.device)
            torch.cumsum(torch.bincount(self.index, minlength=self.num_src), 0, out=tptr[1:])
            self._transpose = (tptr, perm, self.segment_ids()[perm])
        return self._transpose

    def to(self, device) -> Segments:
        return Segments(self.ptr.to(device), self.index.to(device), self.num_src)

    def on(self, device: torch.device) -> Segments:
        """These segments on ``device``: ``self`` when already there, else a copy made on first
        request and kept (with its own transpose, built there)."""
        device = torch.device(device)
        if self.ptr.device == device:
            return self
        copy = self._copies.get(device)
        if copy is None:
            copy = self._copies[device] = self.to(device)
        return copy

    def validate(self, num_rows: int, what: str = "x") -> None:
        """Shape checks with messages that say what is wrong (cheap: no pass over the edges)."""
        if self.ptr.dim() != 1 or self.ptr.numel() < 1:
            raise ValueError("ptr must be a 1-D tensor with at least one entry")
        if self.index.dim() != 1:
            raise ValueError("index must be a 1-D tensor")
        if int(self.ptr[0]) != 0 or int(self.ptr[-1]) != self.index.numel():
            raise ValueError(f"ptr must start at 0 and end at the number of edges "
                             f"({self.index.numel()}), got {int(self.ptr[0])}..{int(self.ptr[-1])}")
        if num_rows != self.num_src:
            raise ValueError(f"{what} has {num_rows} rows but the segments address {self.num_src}")
