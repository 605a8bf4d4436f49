"""Segment graphs with every awkward case the fused kernels must handle, shared by the kernel tests
(Triton under the interpreter, and compiled on a GPU)."""
from __future__ import annotations

import torch

from hgnn.ops.segments import Segments


def make_segments(seed: int = 0, num_segments: int = 7, num_src: int = 9,
                  big: int = 40) -> Segments:
    """A small segment graph with every awkward case the kernels must handle.

    Segment 0 is empty and so is the last one; segment 2 holds ``big`` edges (more than the
    kernels' edge chunk, most of the graph), half of them from source row 1 (a hub row whose
    transpose list also spans several chunks); segment 3 has a triple multi-edge; rows 0 and
    ``num_src - 1`` are never read (zero-degree rows in the transpose).
    """
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 4, (num_segments,), generator=gen)
    counts[0] = 0
    counts[-1] = 0
    counts[2] = big
    counts[3] = 3
    used = torch.arange(1, num_src - 1)  # rows 0 and num_src - 1 stay isolated
    parts = []
    for s, c in enumerate(counts.tolist()):
        idx = used[torch.randint(0, used.numel(), (c,), generator=gen)]
        if s == 2:
            idx[::2] = 1
        if s == 3:
            idx = torch.full((3,), 2)
        parts.append(idx)
    ptr = torch.zeros(num_segments + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(counts, 0)
    return Segments(ptr, torch.cat(parts), num_src)
