"""Fused typed message-passing ops with one dispatch over three backends.

* ``reference``: plain torch (:mod:`hgnn.ops.reference`), the ground truth; materialises per-edge
  tensors.
* ``cpu``: a C++/OpenMP extension compiled on first use (:mod:`hgnn.ops.cpu`); segment-parallel,
  no atomics, deterministic; no ``[E, F]`` tensor in forward or backward.
* ``triton``: GPU kernels (:mod:`hgnn.ops.triton_ops`), checked on CPU under ``TRITON_INTERPRET=1``.

``backend=None`` picks ``$HGNN_OPS_BACKEND`` if set, else the fused backend for the tensor's device
when it is available, else ``reference``. Every op has a backward on every backend.

The ops work on :class:`Segments` (CSR rows over a source table). :mod:`hgnn.ops.typed` builds
them from a graph's :class:`~hgnn.data.relation_index.RelationIndex`: one segment per (relation,
destination) for per-relation results, or per destination across relations. The index and its
segments live on CPU; an op on GPU features uses the segments' copy on that device
(:meth:`Segments.on`, made once and kept).
"""
from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from hgnn.ops import reference
from hgnn.ops.segments import Segments

__all__ = ["Segments", "backend_for", "segment_additive_attention", "segment_attention",
           "segment_matmul", "segment_softmax", "segment_spmm"]

BACKENDS = ("reference", "cpu", "triton")
_REDUCES = ("sum", "mean", "max")


def backend_for(t: Tensor, backend: str | None = None) -> str:
    """The backend an op will use for tensor ``t``."""
    choice = backend or os.environ.get("HGNN_OPS_BACKEND") or "auto"
    if choice not in BACKENDS + ("auto",):
        if backend is None:  # a user's setting, not a caller's argument
            from hgnn.errors import HgnnError

            raise HgnnError(f"HGNN_OPS_BACKEND={choice!r}: choose from auto, {', '.join(BACKENDS)}")
        raise ValueError(f"unknown ops backend {choice!r} (choose from {', '.join(BACKENDS)})")
    if choice == "triton" and not t.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        message = ("the triton backend runs on CUDA tensors (and on CPU under TRITON_INTERPRET=1, "
                   "as the tests do); this tensor is on the CPU")
        if backend is None:
            from hgnn.errors import HgnnError

            raise HgnnError(f"HGNN_OPS_BACKEND=triton: {message}")
        raise ValueError(message)
    if choice != "auto":
        return choice
    if t.is_cuda:
        from hgnn.ops import triton_ops

        return "triton" if triton_ops.available() else "reference"
    if t.dtype in (torch.float32, torch.float64):
        from hgnn.ops import cpu

        return "cpu" if cpu.available() else "reference"
    return "reference"


def _check_float(name: str, t: Tensor) -> None:
    allowed = (torch.float32, torch.float64) + ((torch.float16, torch.bfloat16) if t.is_cuda else ())
    if t.dtype not in allowed:
        raise TypeError(f"{name} must be float32 or float64 (float16/bfloat16 on GPU), got {t.dtype}")


def segment_spmm(x: Tensor, seg: Segments, weight: Tensor | None = None, reduce: str = "sum",
                 backend: str | None = None) -> Tensor:
    """Reduce weighted source rows into segments: ``out[s] = reduce_e weight[e] * x[index[e]]``.

    Args:
        x: source table ``[N, F]`` (or ``[N, H, F]``).
        seg: the segments over ``x``'s rows.
        weight: optional per-edge weights ``[E]``.
        reduce: ``"sum"``, ``"mean"`` (divides by the edge count) or ``"max"``.

    Returns ``[S, ...]``; empty segments give zeros.
    """
    if reduce not in _REDUCES:
        raise ValueError(f"reduce must be one of {', '.join(_REDUCES)}, got {reduce!r}")
    _check_float("x", x)
    seg.validate(x.size(0))
    if weight is not None and (weight.dim() != 1 or weight.numel() != seg.num_edges):
        raise ValueError(f"weight must have shape [{seg.num_edges}], got {list(weight.shape)}")
    if weight is not None and weight.dtype != x.dtype:
        raise TypeError(f"weight dtype {weight.dtype} differs from x dtype {x.dtype}")
    if weight is not None and weight.device != x.device:
        raise ValueError(f"weight is on {weight.device} but x is on {x.device}")
    seg = seg.on(x.device)
    name = backend_for(x, backend)
    if name == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.is_cuda:
        from hgnn.ops import cpu

        return cpu.segment_spmm(x, seg, weight, reduce)
    if name == "triton":
        from hgnn.ops import triton_ops

        return triton_ops.segment_spmm(x, seg, weight, reduce)
    return reference.segment_spmm(x, seg.ptr, seg.index, weight, reduce)


def segment_attention(q: Tensor, k: Tensor, v: Tensor, seg: Segments, scale: float | None = None,
                      backend: str | None = None, *, clamp: tuple[float, float] | None = None,
                      weight: Tensor | None = None) -> Tensor:
    """Fused softmax attention over each segment's edges, per head.

    ``q`` ``[S, H, D]``, ``k`` ``[N, H, D]``, ``v`` ``[N, H, Dv]``;
    ``out[s] = sum_e softmax_e(clip(scale * <q[s], k[index[e]]>)) * w[e] * v[index[e]]``,
    ``[S, H, Dv]``. ``scale`` defaults to ``1 / sqrt(D)``. The fused backends never build the
    ``[E, H]`` scores or ``[E, H, Dv]`` messages; their backward recomputes scores from the saved
    log-sum-exp.

    Args:
        clamp: ``(lo, hi)``: the scaled score is clamped to ``[lo, hi]`` before the softmax (as
            H2G-former's ``clamp(score, -5, 5)``); the gradient passes where ``lo <= score <= hi``,
            as ``torch.clamp``'s does. ``None``: no clamp.
        weight: optional ``[E, H]`` multipliers of the normalised attention weights, applied after
            the softmax without renormalising (an inverted-dropout mask on the attention weights);
            treated as a constant (no gradient flows to it).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_float(name, t)
        if t.dim() != 3:
            raise ValueError(f"{name} must be [rows, heads, dim], got {list(t.shape)}")
    if q.size(0) != seg.num_segments:
        raise ValueError(f"q has {q.size(0)} rows but there are {seg.num_segments} segments")
    if k.shape[:2] != v.shape[:2] or q.shape[1:] != k.shape[1:]:
        raise ValueError(f"shapes do not agree: q {list(q.shape)}, k {list(k.shape)}, "
                         f"v {list(v.shape)}")
    seg.validate(k.size(0), "k")
    if clamp is not None:
        clamp = (float(clamp[0]), float(clamp[1]))
        if not clamp[0] <= clamp[1]:
            raise ValueError(f"clamp must be (lo, hi) with lo <= hi, got {clamp}")
    if weight is not None:
        if tuple(weight.shape) != (seg.num_edges, q.size(1)):
            raise ValueError(f"weight must have shape [{seg.num_edges}, {q.size(1)}], got "
                             f"{list(weight.shape)}")
        if weight.dtype != q.dtype:
            raise TypeError(f"weight dtype {weight.dtype} differs from q dtype {q.dtype}")
        if weight.device != q.device:
            raise ValueError(f"weight is on {weight.device} but q is on {q.device}")
        weight = weight.detach()
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    seg = seg.on(q.device)
    name = backend_for(q, backend)
    if name == "cpu" and not q.is_cuda:
        from hgnn.ops import cpu

        return cpu.segment_attention(q, k, v, seg, scale, clamp, weight)
    if name == "triton":
        from hgnn.ops import triton_ops

        return triton_ops.segment_attention(q, k, v, seg, scale, clamp, weight)
    return reference.segment_attention(q, k, v, seg.ptr, seg.index, scale, clamp, weight)


def segment_additive_attention(a_dst: Tensor, a_src: Tensor, v: Tensor, seg: Segments,
                               negative_slope: float = 0.2, backend: str | None = None) -> Tensor:
    """Fused GAT-style attention from per-node score terms, per head.

    ``a_dst`` ``[S, H]`` (one term per segment), ``a_src`` ``[N, H]``, ``v`` ``[N, H, Dv]``;
    ``out[s] = sum_e softmax_e(leaky_relu(a_dst[s] + a_src[index[e]])) * v[index[e]]``,
    ``[S, H, Dv]``. R-HGNN's and LATTE's relation attentions have this form. Fused backends never
    build per-edge tensors; backward recomputes the scores.
    """
    for name, t in (("a_dst", a_dst), ("a_src", a_src), ("v", v)):
        _check_float(name, t)
    if a_dst.dim() != 2 or a_src.dim() != 2 or v.dim() != 3:
        raise ValueError(f"expected a_dst [S, H], a_src [N, H], v [N, H, Dv]; got "
                         f"{list(a_dst.shape)}, {list(a_src.shape)}, {list(v.shape)}")
    if a_dst.size(0) != seg.num_segments or a_src.shape != v.shape[:2] or \
            a_dst.size(1) != a_src.size(1):
        raise ValueError(f"shapes do not agree: a_dst {list(a_dst.shape)}, a_src "
                         f"{list(a_src.shape)}, v {list(v.shape)}, {seg.num_segments} segments")
    seg.validate(v.size(0), "v")
    seg = seg.on(v.device)
    name = backend_for(v, backend)
    if name == "cpu" and not v.is_cuda:
        from hgnn.ops import cpu

        return cpu.segment_additive_attention(a_dst, a_src, v, seg, float(negative_slope))
    if name == "triton":
        from hgnn.ops import triton_ops

        return triton_ops.segment_additive_attention(a_dst, a_src, v, seg, float(negative_slope))
    return reference.segment_additive_attention(a_dst, a_src, v, seg.ptr, seg.index,
                                                float(negative_slope))


def segment_softmax(scores: Tensor, seg: Segments) -> Tensor:
    """Softmax of per-edge ``scores`` ``[E, ...]`` within each segment (reference backend)."""
    return reference.segment_softmax(scores, seg.ptr)


def segment_matmul(x: Tensor, ptr: Tensor, weight: Tensor) -> Tensor:
    """Rows sorted by type times one weight per type: ``x[ptr[t]:ptr[t+1]] @ weight[t]``.

    ``x`` ``[N, K]``, ``ptr`` ``[T + 1]``, ``weight`` ``[T, K, M]`` -> ``[N, M]``. On CPU this is a
    GEMM per type (BLAS is already optimal for the dense blocks); autograd comes from torch.
    """
    _check_float("x", x)
    if weight.dim() != 3 or weight.size(1) != x.size(-1) or ptr.numel() != weight.size(0) + 1:
        raise ValueError(f"weight must be [T, {x.size(-1)}, M] with T = len(ptr) - 1, got "
                         f"{list(weight.shape)} and ptr of length {ptr.numel()}")
    if int(ptr[-1]) != x.size(0):
        raise ValueError(f"ptr must end at the number of rows ({x.size(0)}), got {int(ptr[-1])}")
    return reference.segment_matmul(x, ptr, weight)
