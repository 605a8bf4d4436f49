"""Triton backend: fused segment SpMM, segment attention and additive (GAT-style) attention
kernels, forward and backward.

The kernels run on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (how the tests
check them on machines without a GPU). They mirror the CPU backend (:mod:`hgnn.ops.cpu`): the
same algorithms, the same semantics as :mod:`hgnn.ops.reference` (empty segments give zeros,
``mean`` divides by the edge count, ``max`` sends the gradient to the first maximal edge).

Layout (see :class:`~hgnn.ops.segments.Segments`): segment ``s`` owns edges ``ptr[s]:ptr[s+1]``
and edge ``e`` reads source row ``index[e]``; the transpose ``(tptr, tedge, tseg)`` lists, for
each source row, its edges and their segments.

Kernel design. Every program owns the output rows it writes, so no kernel needs atomics: results
are deterministic and every output can start as ``torch.empty``.

* ``segment_spmm`` forward: grid ``(S, cdiv(F, BLOCK_F))``; a program walks its segment's edges
  in chunks of ``BLOCK_E`` (a ``[BLOCK_E, BLOCK_F]`` tile of gathered source rows per step) and
  keeps a running sum, or a running max and the edge that attains it per column (``arg``, saved
  for the backward; ties keep the earliest edge).
* ``segment_spmm`` backward: ``grad_x`` with grid ``(N, cdiv(F, BLOCK_F))``; a program walks its
  source row's edges through the transpose and gathers ``w_e * grad_out[seg(e)]`` (only in the
  columns where ``arg == e`` for max). ``grad_weight`` with grid ``(cdiv(E, BLOCK_E),)`` over the
  transpose order: each program computes ``<x[index[e]], grad_out[seg(e)]>`` for a block of
  edges, looping over the columns.
* ``segment_attention`` forward: grid ``(S, H)``; an online softmax over the segment's edges in
  chunks (running max, running denominator, rescaled accumulator), writing ``out [S, H, Dv]``
  and the log-sum-exp ``lse [S, H]``.
* ``segment_attention`` backward recomputes the scores from ``lse`` (FlashAttention style):
  pass 1, grid ``(S, H)``: ``delta = <dO, O>`` and ``dq = scale * sum_e dscore_e k_e``; pass 2,
  grid ``(N, H)`` through the transpose: ``dk = scale * sum_e dscore_e q_seg(e)`` and
  ``dv = sum_e alpha_e dO_seg(e)``, with ``dscore_e = alpha_e (<dO, v_e> - delta)``. The
  optional score clamp ``[lo, hi]`` zeroes ``dscore`` outside the bounds; optional post-softmax
  weights ``c [E, H]`` scale the numerator only (``dv`` gets ``alpha_e c_e``, ``<dO, v_e>`` is
  multiplied by ``c_e``; ``delta = <dO, O>`` still holds), and pass 2 reads them through ``tedge``.
* ``segment_additive_attention`` has the same structure with the score
  ``leaky_relu(a_dst[s] + a_src[index[e]])`` (one scalar load per edge instead of a dot product):
  forward grid ``(S, H)`` (online softmax, ``out`` and ``lse``); backward pass 1, grid ``(S, H)``:
  ``delta`` and ``d a_dst = sum_e dscore_e``; pass 2, grid ``(N, H)`` through the transpose:
  ``d a_src = sum_e dscore_e`` and ``dv = sum_e alpha_e dO_seg(e)``, with
  ``dscore_e = alpha_e (<dO, v_e> - delta) * (1 if raw_e > 0 else negative_slope)``.

No kernel materialises an ``[E, F]``, ``[E, H]`` or ``[E, H, D]`` tensor (the optional attention
weights ``[E, H]`` are an input); the largest temporaries
are ``arg [S, F]`` (max only), ``lse`` and ``delta`` ``[S, H]``. Loops over edges run in chunks
with runtime bounds, so one huge segment or one hub source row costs a longer loop, not a larger
compiled kernel. Feature dims are padded to powers of two with masks. float16/bfloat16 inputs
(GPU) accumulate in float32; float64 accumulates in float64. Tile sizes are fixed, not autotuned.
The backward passes are first-order only (``once_differentiable``).
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from hgnn.ops.segments import Segments

try:  # triton is optional: without it the dispatch never reaches this backend
    import triton
    import triton.language as tl
except Exception:  # ImportError, or a broken install that fails while importing its driver
    triton = None
    tl = None

_REDUCE = {"sum": 0, "mean": 1, "max": 2}
_BLOCK_E = 16  # edges per chunk: a [BLOCK_E, BLOCK_F] tile per loop step
_MAX_BLOCK_F = 128  # columns per spmm program; wider features use more programs on grid axis 1


def available() -> bool:
    """Whether the kernels can run: triton imports and there is a GPU, or the interpreter is on."""
    if triton is None:
        return False
    try:
        return os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available()
    except Exception:  # a broken CUDA driver must not break the dispatch
        return False


def _jit(fn: Callable) -> Callable:
    # Without triton the kernels stay plain functions that are never called; the annotations
    # (``tl.constexpr``) are strings thanks to ``from __future__ import annotations``.
    return triton.jit(fn) if triton is not None else fn


# Reductions through ``tl.reduce`` with the standard library's own combine functions: the same
# code as ``tl.sum``/``tl.max``/``tl.min`` for our float32/float64/int64 operands, but usable under
# the interpreter even when ``triton.language`` was imported before ``TRITON_INTERPRET=1`` was set
# (torch and torch_geometric import triton early; ``tl.sum`` is then a compiled-only JITFunction
# that the interpreter cannot call, while ``tl.reduce`` is a builtin the interpreter patches, and
# it recognises these combine functions and reduces with numpy).
@_jit
def _sum(x, axis: tl.constexpr):
    return tl.reduce(x, axis, tl.standard._sum_combine)


@_jit
def _max(x, axis: tl.constexpr):
    return tl.reduce(x, axis, tl.standard._elementwise_max)


@_jit
def _min(x, axis: tl.constexpr):
    return tl.reduce(x, axis, tl.standard._elementwise_min)


# --------------------------------------------------------------------------------------------
# segment_spmm kernels
# --------------------------------------------------------------------------------------------

@_jit
def _spmm_fwd_kernel(x_ptr, w_ptr, ptr_ptr, index_ptr, out_ptr, arg_ptr, F,
                     REDUCE: tl.constexpr, WEIGHTED: tl.constexpr, ACC: tl.constexpr,
                     BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    s = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_F + tl.arange(0, BLOCK_F)
    cmask = cols < F
    lo = tl.load(ptr_ptr + s)
    hi = tl.load(ptr_ptr + s + 1)
    offs_e = tl.arange(0, BLOCK_E)
    acc = tl.full([BLOCK_F], 0.0, ACC)
    best = tl.full([BLOCK_F], float("-inf"), ACC)
    arg = tl.full([BLOCK_F], -1, tl.int64)
    for start in range(lo, hi, BLOCK_E):
        e = start + offs_e
        emask = e < hi
        n = tl.load(index_ptr + e, mask=emask, other=0)
        m2 = emask[:, None] & cmask[None, :]
        val = tl.load(x_ptr + n[:, None] * F + cols[None, :], mask=m2, other=0.0).to(ACC)
        if WEIGHTED:
            w = tl.load(w_ptr + e, mask=emask, other=0.0).to(ACC)
            val = val * w[:, None]
        if REDUCE == 2:
            val = tl.where(m2, val, float("-inf"))
            cmax = _max(val, 0)
            # First edge of the chunk attaining the chunk max (explicit, not tl.argmax, so the
            # tie rule does not depend on the triton version).
            first = _min(tl.where(val == cmax[None, :], e[:, None], hi), 0)
            # Strictly greater: on a tie across chunks the earlier chunk's edge is kept.
            better = cmax > best
            arg = tl.where(better, first, arg)
            best = tl.where(better, cmax, best)
        else:
            acc += _sum(val, 0)
    out_row = out_ptr + s * F + cols
    if REDUCE == 2:
        # Empty segments give zeros (best is still -inf there).
        res = tl.where(hi > lo, best, 0.0)
        tl.store(arg_ptr + s * F + cols, arg, mask=cmask)
    elif REDUCE == 1:
        res = acc / tl.maximum(hi - lo, 1).to(ACC)
    else:
        res = acc
    tl.store(out_row, res.to(out_ptr.dtype.element_ty), mask=cmask)


@_jit
def _spmm_grad_x_kernel(g_ptr, w_ptr, ptr_ptr, tptr_ptr, tedge_ptr, tseg_ptr, arg_ptr, gx_ptr, F,
                        REDUCE: tl.constexpr, WEIGHTED: tl.constexpr, ACC: tl.constexpr,
                        BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_F + tl.arange(0, BLOCK_F)
    cmask = cols < F
    lo = tl.load(tptr_ptr + n)
    hi = tl.load(tptr_ptr + n + 1)
    offs = tl.arange(0, BLOCK_E)
    acc = tl.full([BLOCK_F], 0.0, ACC)
    # Source row n gathers from the segments of its own edges: this program is the only writer
    # of grad_x[n, cols], hence no atomics.
    for start in range(lo, hi, BLOCK_E):
        j = start + offs
        jmask = j < hi
        e = tl.load(tedge_ptr + j, mask=jmask, other=0)
        s = tl.load(tseg_ptr + j, mask=jmask, other=0)
        m2 = jmask[:, None] & cmask[None, :]
        g = tl.load(g_ptr + s[:, None] * F + cols[None, :], mask=m2, other=0.0).to(ACC)
        if WEIGHTED:
            coef = tl.load(w_ptr + e, mask=jmask, other=0.0).to(ACC)
        else:
            coef = tl.where(jmask, 1.0, 0.0).to(ACC)
        if REDUCE == 1:
            cnt = tl.load(ptr_ptr + s + 1, mask=jmask, other=1) - tl.load(ptr_ptr + s, mask=jmask,
                                                                           other=0)
            coef = coef / tl.maximum(cnt, 1).to(ACC)
        if REDUCE == 2:
            a = tl.load(arg_ptr + s[:, None] * F + cols[None, :], mask=m2, other=-1)
            g = tl.where(a == e[:, None], g, 0.0)
        acc += _sum(g * coef[:, None], 0)
    tl.store(gx_ptr + n * F + cols, acc.to(gx_ptr.dtype.element_ty), mask=cmask)


@_jit
def _spmm_grad_w_kernel(x_ptr, g_ptr, ptr_ptr, index_ptr, tedge_ptr, tseg_ptr, arg_ptr, gw_ptr,
                        E, F, REDUCE: tl.constexpr, ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                        BLOCK_F: tl.constexpr):
    # Edges in transpose order: neighbouring edges of a block mostly share a source row.
    j = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    jmask = j < E
    e = tl.load(tedge_ptr + j, mask=jmask, other=0)
    s = tl.load(tseg_ptr + j, mask=jmask, other=0)
    n = tl.load(index_ptr + e, mask=jmask, other=0)
    acc = tl.full([BLOCK_E], 0.0, ACC)
    for f0 in range(0, F, BLOCK_F):
        cols = f0 + tl.arange(0, BLOCK_F)
        m2 = jmask[:, None] & (cols < F)[None, :]
        xv = tl.load(x_ptr + n[:, None] * F + cols[None, :], mask=m2, other=0.0).to(ACC)
        g = tl.load(g_ptr + s[:, None] * F + cols[None, :], mask=m2, other=0.0).to(ACC)
        prod = xv * g
        if REDUCE == 2:
            a = tl.load(arg_ptr + s[:, None] * F + cols[None, :], mask=m2, other=-1)
            prod = tl.where(a == e[:, None], prod, 0.0)
        acc += _sum(prod, 1)
    if REDUCE == 1:
        cnt = tl.load(ptr_ptr + s + 1, mask=jmask, other=1) - tl.load(ptr_ptr + s, mask=jmask,
                                                                       other=0)
        acc = acc / tl.maximum(cnt, 1).to(ACC)
    tl.store(gw_ptr + e, acc.to(gw_ptr.dtype.element_ty), mask=jmask)


# --------------------------------------------------------------------------------------------
# segment_attention kernels
# --------------------------------------------------------------------------------------------

@_jit
def _attn_fwd_kernel(q_ptr, k_ptr, v_ptr, ptr_ptr, index_ptr, w_ptr, out_ptr, lse_ptr, H, D, DV,
                     param_ptr, WEIGHTED: tl.constexpr, ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                     BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    s = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    sh = s * H + h
    # scale and clamp bounds are read from a tensor: float arguments would be float32, too coarse
    # for float64
    scale = tl.load(param_ptr)
    lo_c = tl.load(param_ptr + 1)
    hi_c = tl.load(param_ptr + 2)
    offs_d = tl.arange(0, BLOCK_D)
    offs_v = tl.arange(0, BLOCK_DV)
    dmask = offs_d < D
    vmask = offs_v < DV
    offs_e = tl.arange(0, BLOCK_E)
    lo = tl.load(ptr_ptr + s)
    hi = tl.load(ptr_ptr + s + 1)
    qv = tl.load(q_ptr + sh * D + offs_d, mask=dmask, other=0.0).to(ACC)
    m = tl.full([], float("-inf"), ACC)  # running max of the scores
    den = tl.full([], 0.0, ACC)  # running softmax denominator, relative to m
    acc = tl.full([BLOCK_DV], 0.0, ACC)  # running numerator, relative to m
    for start in range(lo, hi, BLOCK_E):
        e = start + offs_e
        emask = e < hi
        nh = tl.load(index_ptr + e, mask=emask, other=0) * H + h
        kt = tl.load(k_ptr + nh[:, None] * D + offs_d[None, :],
                     mask=emask[:, None] & dmask[None, :], other=0.0).to(ACC)
        score = _sum(kt * qv[None, :], 1) * scale
        score = tl.minimum(tl.maximum(score, lo_c), hi_c)
        score = tl.where(emask, score, float("-inf"))
        m_new = tl.maximum(m, _max(score, 0))
        decay = tl.exp(m - m_new)  # exp(-inf) = 0 on the first chunk
        p = tl.exp(score - m_new)  # masked edges: exp(-inf) = 0
        pw = p
        if WEIGHTED:  # post-softmax multipliers scale the numerator only
            pw = p * tl.load(w_ptr + e * H + h, mask=emask, other=0.0).to(ACC)
        vt = tl.load(v_ptr + nh[:, None] * DV + offs_v[None, :],
                     mask=emask[:, None] & vmask[None, :], other=0.0).to(ACC)
        acc = acc * decay + _sum(pw[:, None] * vt, 0)
        den = den * decay + _sum(p, 0)
        m = m_new
    nonempty = hi > lo
    # Empty segments: zeros out and lse = -inf (the backward then gives zero gradients).
    o = tl.where(nonempty, acc / tl.where(nonempty, den, 1.0), 0.0)
    lse = tl.where(nonempty, m + tl.log(tl.where(nonempty, den, 1.0)), float("-inf"))
    tl.store(out_ptr + sh * DV + offs_v, o.to(out_ptr.dtype.element_ty), mask=vmask)
    tl.store(lse_ptr + sh, lse)


@_jit
def _attn_bwd_seg_kernel(go_ptr, q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, ptr_ptr, index_ptr,
                         w_ptr, delta_ptr, gq_ptr, H, D, DV, param_ptr, WEIGHTED: tl.constexpr,
                         ACC: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr,
                         BLOCK_DV: tl.constexpr):
    s = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    sh = s * H + h
    scale = tl.load(param_ptr)
    lo_c = tl.load(param_ptr + 1)
    hi_c = tl.load(param_ptr + 2)
    offs_d = tl.arange(0, BLOCK_D)
    offs_v = tl.arange(0, BLOCK_DV)
    dmask = offs_d < D
    vmask = offs_v < DV
    offs_e = tl.arange(0, BLOCK_E)
    lo = tl.load(ptr_ptr + s)
    hi = tl.load(ptr_ptr + s + 1)
    go = tl.load(go_ptr + sh * DV + offs_v, mask=vmask, other=0.0).to(ACC)
    ov = tl.load(out_ptr + sh * DV + offs_v, mask=vmask, other=0.0).to(ACC)
    # d softmax: dscore_e = alpha_e * (c_e <dO, v_e> - sum_e' alpha_e' c_e' <dO, v_e'>), and the
    # sum is <dO, O>, so one dot product replaces a pass over the edges (c: the weights, or 1).
    delta = _sum(go * ov, 0)
    tl.store(delta_ptr + sh, delta)
    qv = tl.load(q_ptr + sh * D + offs_d, mask=dmask, other=0.0).to(ACC)
    lse = tl.load(lse_ptr + sh)
    dq = tl.full([BLOCK_D], 0.0, ACC)
    for start in range(lo, hi, BLOCK_E):
        e = start + offs_e
        emask = e < hi
        nh = tl.load(index_ptr + e, mask=emask, other=0) * H + h
        kt = tl.load(k_ptr + nh[:, None] * D + offs_d[None, :],
                     mask=emask[:, None] & dmask[None, :], other=0.0).to(ACC)
        vt = tl.load(v_ptr + nh[:, None] * DV + offs_v[None, :],
                     mask=emask[:, None] & vmask[None, :], other=0.0).to(ACC)
        raw = _sum(kt * qv[None, :], 1) * scale
        inside = (raw >= lo_c) & (raw <= hi_c)  # the clamp passes gradient only inside
        score = tl.minimum(tl.maximum(raw, lo_c), hi_c)
        alpha = tl.where(emask, tl.exp(score - lse), 0.0)
        dalpha = _sum(vt * go[None, :], 1)
        if WEIGHTED:
            dalpha = dalpha * tl.load(w_ptr + e * H + h, mask=emask, other=0.0).to(ACC)
        ds = tl.where(inside, alpha * (dalpha - delta) * scale, 0.0)
        dq += _sum(ds[:, None] * kt, 0)
    tl.store(gq_ptr + sh * D + offs_d, dq.to(gq_ptr.dtype.element_ty), mask=dmask)


@_jit
def _attn_bwd_src_kernel(go_ptr, q_ptr, k_ptr, v_ptr, lse_ptr, delta_ptr, tptr_ptr, tedge_ptr,
                         tseg_ptr, w_ptr, gk_ptr, gv_ptr, H, D, DV, param_ptr,
                         WEIGHTED: tl.constexpr, ACC: tl.constexpr, BLOCK_E: tl.constexpr,
                         BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    nh = n * H + h
    scale = tl.load(param_ptr)
    lo_c = tl.load(param_ptr + 1)
    hi_c = tl.load(param_ptr + 2)
    offs_d = tl.arange(0, BLOCK_D)
    offs_v = tl.arange(0, BLOCK_DV)
    dmask = offs_d < D
    vmask = offs_v < DV
    offs = tl.arange(0, BLOCK_E)
    lo = tl.load(tptr_ptr + n)
    hi = tl.load(tptr_ptr + n + 1)
    kv = tl.load(k_ptr + nh * D + offs_d, mask=dmask, other=0.0).to(ACC)
    vv = tl.load(v_ptr + nh * DV + offs_v, mask=vmask, other=0.0).to(ACC)
    dk = tl.full([BLOCK_D], 0.0, ACC)
    dv = tl.full([BLOCK_DV], 0.0, ACC)
    # One program per (source row, head) over that row's edges (multi-edges count once each):
    # the only writer of dk[n, h] and dv[n, h], hence no atomics.
    for start in range(lo, hi, BLOCK_E):
        j = start + offs
        jmask = j < hi
        sh = tl.load(tseg_ptr + j, mask=jmask, other=0) * H + h
        qt = tl.load(q_ptr + sh[:, None] * D + offs_d[None, :],
                     mask=jmask[:, None] & dmask[None, :], other=0.0).to(ACC)
        got = tl.load(go_ptr + sh[:, None] * DV + offs_v[None, :],
                      mask=jmask[:, None] & vmask[None, :], other=0.0).to(ACC)
        lse = tl.load(lse_ptr + sh, mask=jmask, other=0.0)
        delta = tl.load(delta_ptr + sh, mask=jmask, other=0.0)
        raw = _sum(qt * kv[None, :], 1) * scale
        inside = (raw >= lo_c) & (raw <= hi_c)
        score = tl.minimum(tl.maximum(raw, lo_c), hi_c)
        alpha = tl.where(jmask, tl.exp(score - lse), 0.0)
        dalpha = _sum(got * vv[None, :], 1)
        ac = alpha
        if WEIGHTED:
            c = tl.load(w_ptr + tl.load(tedge_ptr + j, mask=jmask, other=0) * H + h, mask=jmask,
                        other=0.0).to(ACC)
            dalpha = dalpha * c
            ac = alpha * c
        ds = tl.where(inside, alpha * (dalpha - delta) * scale, 0.0)
        dk += _sum(ds[:, None] * qt, 0)
        dv += _sum(ac[:, None] * got, 0)
    tl.store(gk_ptr + nh * D + offs_d, dk.to(gk_ptr.dtype.element_ty), mask=dmask)
    tl.store(gv_ptr + nh * DV + offs_v, dv.to(gv_ptr.dtype.element_ty), mask=vmask)


# --------------------------------------------------------------------------------------------
# segment_additive_attention kernels
# --------------------------------------------------------------------------------------------

@_jit
def _add_fwd_kernel(ad_ptr, as_ptr, v_ptr, ptr_ptr, index_ptr, out_ptr, lse_ptr, H, DV,
                    slope_ptr, ACC: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_DV: tl.constexpr):
    s = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    sh = s * H + h
    # the slope is read from a tensor, like the attention scale (float64 precision)
    slope = tl.load(slope_ptr)
    offs_v = tl.arange(0, BLOCK_DV)
    vmask = offs_v < DV
    offs_e = tl.arange(0, BLOCK_E)
    lo = tl.load(ptr_ptr + s)
    hi = tl.load(ptr_ptr + s + 1)
    ad = tl.load(ad_ptr + sh).to(ACC)
    m = tl.full([], float("-inf"), ACC)  # running max of the scores
    den = tl.full([], 0.0, ACC)  # running softmax denominator, relative to m
    acc = tl.full([BLOCK_DV], 0.0, ACC)  # running numerator, relative to m
    for start in range(lo, hi, BLOCK_E):
        e = start + offs_e
        emask = e < hi
        nh = tl.load(index_ptr + e, mask=emask, other=0) * H + h
        raw = ad + tl.load(as_ptr + nh, mask=emask, other=0.0).to(ACC)
        score = tl.where(raw > 0, raw, raw * slope)
        score = tl.where(emask, score, float("-inf"))
        m_new = tl.maximum(m, _max(score, 0))
        decay = tl.exp(m - m_new)  # exp(-inf) = 0 on the first chunk
        p = tl.exp(score - m_new)  # masked edges: exp(-inf) = 0
        vt = tl.load(v_ptr + nh[:, None] * DV + offs_v[None, :],
                     mask=emask[:, None] & vmask[None, :], other=0.0).to(ACC)
        acc = acc * decay + _sum(p[:, None] * vt, 0)
        den = den * decay + _sum(p, 0)
        m = m_new
    nonempty = hi > lo
    # Empty segments: zeros out and lse = -inf (the backward then gives zero gradients).
    o = tl.where(nonempty, acc / tl.where(nonempty, den, 1.0), 0.0)
    lse = tl.where(nonempty, m + tl.log(tl.where(nonempty, den, 1.0)), float("-inf"))
    tl.store(out_ptr + sh * DV + offs_v, o.to(out_ptr.dtype.element_ty), mask=vmask)
    tl.store(lse_ptr + sh, lse)


@_jit
def _add_bwd_seg_kernel(go_ptr, ad_ptr, as_ptr, v_ptr, out_ptr, lse_ptr, ptr_ptr, index_ptr,
                        delta_ptr, gd_ptr, H, DV, slope_ptr, ACC: tl.constexpr,
                        BLOCK_E: tl.constexpr, BLOCK_DV: tl.constexpr):
    s = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    sh = s * H + h
    slope = tl.load(slope_ptr)
    offs_v = tl.arange(0, BLOCK_DV)
    vmask = offs_v < DV
    offs_e = tl.arange(0, BLOCK_E)
    lo = tl.load(ptr_ptr + s)
    hi = tl.load(ptr_ptr + s + 1)
    go = tl.load(go_ptr + sh * DV + offs_v, mask=vmask, other=0.0).to(ACC)
    ov = tl.load(out_ptr + sh * DV + offs_v, mask=vmask, other=0.0).to(ACC)
    delta = _sum(go * ov, 0)  # sum_e alpha_e <dO, v_e>, as in the dot-product attention
    tl.store(delta_ptr + sh, delta)
    ad = tl.load(ad_ptr + sh).to(ACC)
    lse = tl.load(lse_ptr + sh)
    gd = tl.full([], 0.0, ACC)
    for start in range(lo, hi, BLOCK_E):
        e = start + offs_e
        emask = e < hi
        nh = tl.load(index_ptr + e, mask=emask, other=0) * H + h
        vt = tl.load(v_ptr + nh[:, None] * DV + offs_v[None, :],
                     mask=emask[:, None] & vmask[None, :], other=0.0).to(ACC)
        raw = ad + tl.load(as_ptr + nh, mask=emask, other=0.0).to(ACC)
        pos = raw > 0
        score = tl.where(pos, raw, raw * slope)
        alpha = tl.where(emask, tl.exp(score - lse), 0.0)
        dalpha = _sum(vt * go[None, :], 1)
        ds = alpha * (dalpha - delta) * tl.where(pos, 1.0, slope)
        gd += _sum(ds, 0)
    tl.store(gd_ptr + sh, gd.to(gd_ptr.dtype.element_ty))


@_jit
def _add_bwd_src_kernel(go_ptr, ad_ptr, as_ptr, v_ptr, lse_ptr, delta_ptr, tptr_ptr, tseg_ptr,
                        gs_ptr, gv_ptr, H, DV, slope_ptr, ACC: tl.constexpr,
                        BLOCK_E: tl.constexpr, BLOCK_DV: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    nh = n * H + h
    slope = tl.load(slope_ptr)
    offs_v = tl.arange(0, BLOCK_DV)
    vmask = offs_v < DV
    offs = tl.arange(0, BLOCK_E)
    lo = tl.load(tptr_ptr + n)
    hi = tl.load(tptr_ptr + n + 1)
    asv = tl.load(as_ptr + nh).to(ACC)
    vv = tl.load(v_ptr + nh * DV + offs_v, mask=vmask, other=0.0).to(ACC)
    gs = tl.full([], 0.0, ACC)
    dv = tl.full([BLOCK_DV], 0.0, ACC)
    # One program per (source row, head) over that row's edges (multi-edges count once each):
    # the only writer of d a_src[n, h] and dv[n, h], hence no atomics.
    for start in range(lo, hi, BLOCK_E):
        j = start + offs
        jmask = j < hi
        sh = tl.load(tseg_ptr + j, mask=jmask, other=0) * H + h
        got = tl.load(go_ptr + sh[:, None] * DV + offs_v[None, :],
                      mask=jmask[:, None] & vmask[None, :], other=0.0).to(ACC)
        lse = tl.load(lse_ptr + sh, mask=jmask, other=0.0)
        delta = tl.load(delta_ptr + sh, mask=jmask, other=0.0)
        raw = tl.load(ad_ptr + sh, mask=jmask, other=0.0).to(ACC) + asv
        pos = raw > 0
        score = tl.where(pos, raw, raw * slope)
        alpha = tl.where(jmask, tl.exp(score - lse), 0.0)
        dalpha = _sum(got * vv[None, :], 1)
        ds = alpha * (dalpha - delta) * tl.where(pos, 1.0, slope)
        gs += _sum(ds, 0)
        dv += _sum(alpha[:, None] * got, 0)
    tl.store(gs_ptr + nh, gs.to(gs_ptr.dtype.element_ty))
    tl.store(gv_ptr + nh * DV + offs_v, dv.to(gv_ptr.dtype.element_ty), mask=vmask)


# --------------------------------------------------------------------------------------------
# autograd wrappers
# --------------------------------------------------------------------------------------------

def _acc_dtype(dtype: torch.dtype) -> tl.dtype:
    # Half precisions accumulate in float32; float64 keeps float64 (gradcheck needs it).
    return tl.float64 if dtype == torch.float64 else tl.float32


def _pow2(n: int, lo: int = 1) -> int:
    return max(lo, triton.next_power_of_2(max(n, 1)))


def _check_device(t: Tensor, seg: Segments) -> None:
    if seg.ptr.device != t.device or seg.index.device != t.device:
        raise ValueError(f"segments are on {seg.ptr.device} but the features are on {t.device}; "
                         "move them with seg.to(device) once and reuse the result")


def _device_ctx(t: Tensor) -> contextlib.AbstractContextManager:
    # Triton launches on the current CUDA device; make it the tensor's device.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, seg: Segments, reduce: str) -> Tensor:
        _check_device(x, seg)
        flat = x.contiguous().reshape(x.size(0), math.prod(x.shape[1:]))  # [N, H, F] -> [N, H * F]
        w = weight.contiguous() if weight is not None else None
        S, F = seg.num_segments, flat.size(1)
        red = _REDUCE[reduce]
        out = torch.empty(S, F, dtype=x.dtype, device=x.device)
        # arg only matters for max; a 1-element dummy keeps the kernel signature fixed.
        arg = torch.empty(S, F, dtype=torch.long, device=x.device) if red == 2 else \
            torch.empty(1, dtype=torch.long, device=x.device)
        if S > 0 and F > 0:
            block_f = min(_pow2(F, 16), _MAX_BLOCK_F)
            with _device_ctx(x):
                _spmm_fwd_kernel[(S, triton.cdiv(F, block_f))](
                    flat, w if w is not None else flat, seg.ptr, seg.index, out, arg, F,
                    REDUCE=red, WEIGHTED=w is not None, ACC=_acc_dtype(x.dtype),
                    BLOCK_E=_BLOCK_E, BLOCK_F=block_f)
        ctx.save_for_backward(flat, w, arg)
        ctx.seg, ctx.red, ctx.shape = seg, red, x.shape
        return out.view((S,) + tuple(x.shape[1:]))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        flat, w, arg = ctx.saved_tensors
        seg, red = ctx.seg, ctx.red
        need_x = ctx.needs_input_grad[0]
        need_w = w is not None and ctx.needs_input_grad[1]
        if not (need_x or need_w):
            return None, None, None, None
        N, F = flat.shape
        E = seg.num_edges
        g = grad_out.contiguous().view(seg.num_segments, F)
        tptr, tedge, tseg = seg.transpose()
        acc = _acc_dtype(flat.dtype)
        grad_x = grad_w = None
        with _device_ctx(flat):
            if need_x:
                grad_x = torch.empty_like(flat)
                if N > 0 and F > 0:
                    block_f = min(_pow2(F, 16), _MAX_BLOCK_F)
                    _spmm_grad_x_kernel[(N, triton.cdiv(F, block_f))](
                        g, w if w is not None else flat, seg.ptr, tptr, tedge, tseg, arg, grad_x,
                        F, REDUCE=red, WEIGHTED=w is not None, ACC=acc, BLOCK_E=_BLOCK_E,
                        BLOCK_F=block_f)
                grad_x = grad_x.view(ctx.shape)
            if need_w:
                grad_w = torch.zeros_like(w)  # zeros: F == 0 gives zero weight gradients
                if E > 0 and F > 0:
                    block_e = 32
                    _spmm_grad_w_kernel[(triton.cdiv(E, block_e),)](
                        flat, g, seg.ptr, seg.index, tedge, tseg, arg, grad_w, E, F, REDUCE=red,
                        ACC=acc, BLOCK_E=block_e, BLOCK_F=min(_pow2(F, 16), 64))
        return grad_x, grad_w, None, None


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, seg: Segments, scale: float,
                clamp: tuple[float, float], weight: Tensor | None) -> Tensor:
        _check_device(q, seg)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        w = weight.contiguous() if weight is not None else None
        S, H, D = q.shape
        Dv = v.size(2)
        acc = _acc_dtype(q.dtype)
        out = torch.empty(S, H, Dv, dtype=q.dtype, device=q.device)
        # lse in the accumulation dtype: float16 would lose the softmax normaliser's precision.
        acc_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        lse = torch.empty(S, H, dtype=acc_dtype, device=q.device)
        params = torch.tensor([scale, clamp[0], clamp[1]], dtype=acc_dtype, device=q.device)
        if S > 0 and H > 0:
            with _device_ctx(q):
                _attn_fwd_kernel[(S, H)](
                    q, k, v, seg.ptr, seg.index, w if w is not None else q, out, lse, H, D, Dv,
                    params, WEIGHTED=w is not None, ACC=acc, BLOCK_E=_BLOCK_E,
                    BLOCK_D=_pow2(D, 16), BLOCK_DV=_pow2(Dv, 16))
        ctx.save_for_backward(q, k, v, out, lse, params, w)
        ctx.seg = seg
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, params, w = ctx.saved_tensors
        seg = ctx.seg
        S, H, D = q.shape
        N, Dv = k.size(0), v.size(2)
        go = grad_out.contiguous()
        tptr, tedge, tseg = seg.transpose()
        acc = _acc_dtype(q.dtype)
        gq, gk, gv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        delta = torch.empty_like(lse)
        blocks = dict(WEIGHTED=w is not None, ACC=acc, BLOCK_E=_BLOCK_E, BLOCK_D=_pow2(D, 16),
                      BLOCK_DV=_pow2(Dv, 16))
        wt = w if w is not None else q
        with _device_ctx(q):
            if S > 0 and H > 0:
                _attn_bwd_seg_kernel[(S, H)](
                    go, q, k, v, out, lse, seg.ptr, seg.index, wt, delta, gq, H, D, Dv, params,
                    **blocks)
            if N > 0 and H > 0:
                _attn_bwd_src_kernel[(N, H)](
                    go, q, k, v, lse, delta, tptr, tedge, tseg, wt, gk, gv, H, D, Dv, params,
                    **blocks)
        return gq, gk, gv, None, None, None, None


class _Additive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a_dst: Tensor, a_src: Tensor, v: Tensor, seg: Segments,
                slope: float) -> Tensor:
        _check_device(v, seg)
        a_dst, a_src, v = a_dst.contiguous(), a_src.contiguous(), v.contiguous()
        S, H = a_dst.shape
        Dv = v.size(2)
        acc = _acc_dtype(v.dtype)
        out = torch.empty(S, H, Dv, dtype=v.dtype, device=v.device)
        # lse and the slope in the accumulation dtype (float64 stays exact, as for attention).
        acc_dtype = torch.float64 if v.dtype == torch.float64 else torch.float32
        lse = torch.empty(S, H, dtype=acc_dtype, device=v.device)
        slope_t = torch.full((1,), slope, dtype=acc_dtype, device=v.device)
        if S > 0 and H > 0:
            with _device_ctx(v):
                _add_fwd_kernel[(S, H)](
                    a_dst, a_src, v, seg.ptr, seg.index, out, lse, H, Dv, slope_t, ACC=acc,
                    BLOCK_E=_BLOCK_E, BLOCK_DV=_pow2(Dv, 16))
        ctx.save_for_backward(a_dst, a_src, v, out, lse, slope_t)
        ctx.seg = seg
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        a_dst, a_src, v, out, lse, slope_t = ctx.saved_tensors
        seg = ctx.seg
        S, H = a_dst.shape
        N, Dv = v.size(0), v.size(2)
        go = grad_out.contiguous()
        tptr, _, tseg = seg.transpose()
        acc = _acc_dtype(v.dtype)
        gd, gs, gv = torch.empty_like(a_dst), torch.empty_like(a_src), torch.empty_like(v)
        delta = torch.empty_like(lse)
        blocks = dict(BLOCK_E=_BLOCK_E, BLOCK_DV=_pow2(Dv, 16))
        with _device_ctx(v):
            if S > 0 and H > 0:
                _add_bwd_seg_kernel[(S, H)](
                    go, a_dst, a_src, v, out, lse, seg.ptr, seg.index, delta, gd, H, Dv, slope_t,
                    ACC=acc, **blocks)
            if N > 0 and H > 0:
                _add_bwd_src_kernel[(N, H)](
                    go, a_dst, a_src, v, lse, delta, tptr, tseg, gs, gv, H, Dv, slope_t, ACC=acc,
                    **blocks)
        return gd, gs, gv, None, None


def segment_spmm(x: Tensor, seg: Segments, weight: Tensor | None, reduce: str) -> Tensor:
    """Fused :func:`hgnn.ops.segment_spmm` (arguments checked by the dispatch)."""
    return _SpMM.apply(x, weight, seg, reduce)


def segment_attention(q: Tensor, k: Tensor, v: Tensor, seg: Segments, scale: float,
                      clamp: tuple[float, float] | None = None,
                      weight: Tensor | None = None) -> Tensor:
    """Fused :func:`hgnn.ops.segment_attention` (arguments checked by the dispatch)."""
    bounds = clamp if clamp is not None else (float("-inf"), float("inf"))
    return _Attention.apply(q, k, v, seg, float(scale), bounds, weight)


def segment_additive_attention(a_dst: Tensor, a_src: Tensor, v: Tensor, seg: Segments,
                               negative_slope: float) -> Tensor:
    """Fused :func:`hgnn.ops.segment_additive_attention` (arguments checked by the dispatch)."""
    return _Additive.apply(a_dst, a_src, v, seg, float(negative_slope))
