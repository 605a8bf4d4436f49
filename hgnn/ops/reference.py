"""Reference implementations: plain torch, autograd by composition. The ground truth that the
compiled CPU and Triton backends are tested against. They materialise per-edge tensors, which the
fused backends exist to avoid.

Conventions shared by every backend (see :mod:`hgnn.ops`):

* a *segmented* edge list is ``ptr`` ``[S + 1]`` (monotone, ``ptr[0] = 0``, ``ptr[-1] = E``) and
  ``index`` ``[E]`` (the source row of each edge); segment ``s`` owns edges ``ptr[s]:ptr[s+1]``;
* empty segments produce zeros; ``mean`` divides by the number of edges (not the weight sum);
* ``max`` sends the gradient to the first maximal edge of each segment and column.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _segment_ids(ptr: Tensor) -> Tensor:
    counts = ptr[1:] - ptr[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=ptr.device), counts,
                                   output_size=int(ptr[-1]))


def segment_spmm(x: Tensor, ptr: Tensor, index: Tensor, weight: Tensor | None = None,
                 reduce: str = "sum") -> Tensor:
    """``out[s] = reduce_{e in seg(s)} weight[e] * x[index[e]]``; ``[S, F]``."""
    seg = _segment_ids(ptr)
    msg = x.index_select(0, index)
    if weight is not None:
        msg = msg * weight.view(-1, *([1] * (x.dim() - 1)))
    num_segments = ptr.numel() - 1
    out = x.new_zeros((num_segments,) + tuple(x.shape[1:]))
    if reduce in ("sum", "mean"):
        out = out.index_add(0, seg, msg)
        if reduce == "mean":
            count = (ptr[1:] - ptr[:-1]).clamp(min=1).to(x.dtype)
            out = out / count.view(-1, *([1] * (x.dim() - 1)))
        return out
    if reduce == "max":
        idx = seg.view(-1, *([1] * (x.dim() - 1))).expand_as(msg)
        out = out.scatter_reduce(0, idx, msg, reduce="amax", include_self=False)
        return out
    raise ValueError(f"reduce must be 'sum', 'mean' or 'max', got {reduce!r}")


def segment_softmax(scores: Tensor, ptr: Tensor) -> Tensor:
    """Softmax of ``scores`` ``[E, ...]`` within each segment."""
    seg = _segment_ids(ptr)
    num_segments = ptr.numel() - 1
    idx = seg.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    smax = scores.new_full((num_segments,) + tuple(scores.shape[1:]), float("-inf"))
    smax = smax.scatter_reduce(0, idx, scores, reduce="amax", include_self=True)
    ex = torch.exp(scores - smax.index_select(0, seg))
    denom = scores.new_zeros(smax.shape).index_add(0, seg, ex)
    return ex / denom.index_select(0, seg)


def segment_attention(q: Tensor, k: Tensor, v: Tensor, ptr: Tensor, index: Tensor,
                      scale: float = 1.0, clamp: tuple[float, float] | None = None,
                      weight: Tensor | None = None) -> Tensor:
    """Dot-product attention over each segment's edges, per head.

    ``q`` ``[S, H, D]`` (one query per segment), ``k`` ``[N, H, D]``, ``v`` ``[N, H, Dv]`` (rows
    addressed by ``index``). ``alpha_e = softmax_{e in seg(s)}(clip(scale * <q[s], k[index[e]]>))``
    and ``out[s] = sum_e alpha_e * w[e] * v[index[e]]``; ``[S, H, Dv]``. ``clip`` clamps the score
    to ``clamp = (lo, hi)`` (no clamp when ``None``); ``weight`` ``[E, H]`` multiplies the
    normalised weights after the softmax (e.g. an inverted-dropout mask), ``w = 1`` when ``None``.
    """
    seg = _segment_ids(ptr)
    scores = (q.index_select(0, seg) * k.index_select(0, index)).sum(-1) * scale  # [E, H]
    if clamp is not None:
        scores = scores.clamp(clamp[0], clamp[1])
    alpha = segment_softmax(scores, ptr)
    if weight is not None:
        alpha = alpha * weight
    msg = v.index_select(0, index) * alpha.unsqueeze(-1)
    return q.new_zeros((ptr.numel() - 1,) + tuple(v.shape[1:])).index_add(0, seg, msg)


def segment_additive_attention(a_dst: Tensor, a_src: Tensor, v: Tensor, ptr: Tensor,
                               index: Tensor, negative_slope: float = 0.2) -> Tensor:
    """GAT-style attention from per-node terms, per head.

    ``a_dst`` ``[S, H]``, ``a_src`` ``[N, H]``, ``v`` ``[N, H, Dv]``:
    ``alpha_e = softmax_{e in seg(s)}(leaky_relu(a_dst[s] + a_src[index[e]]))``,
    ``out[s] = sum_e alpha_e * v[index[e]]``; ``[S, H, Dv]``.
    """
    seg = _segment_ids(ptr)
    scores = torch.nn.functional.leaky_relu(a_dst.index_select(0, seg) + a_src.index_select(0, index),
                                            negative_slope)
    alpha = segment_softmax(scores, ptr)
    msg = v.index_select(0, index) * alpha.unsqueeze(-1)
    return v.new_zeros((ptr.numel() - 1,) + tuple(v.shape[1:])).index_add(0, seg, msg)


def segment_matmul(x: Tensor, ptr: Tensor, weight: Tensor) -> Tensor:
    """Rows ``ptr[t]:ptr[t+1]`` of ``x`` ``[N, K]`` times ``weight[t]`` ``[T, K, M]``; ``[N, M]``."""
    parts = [x[int(ptr[t]):int(ptr[t + 1])] @ weight[t] for t in range(weight.size(0))]
    return torch.cat(parts) if parts else x.new_zeros(0, weight.size(-1))
