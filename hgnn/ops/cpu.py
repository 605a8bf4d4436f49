"""Compiled CPU backend: a C++/OpenMP extension built on first use with
``torch.utils.cpp_extension.load`` and cached in torch's extension folder.

Building at first use rather than at install time keeps ``pip install`` a pure-Python step (a
build-time extension would make pip fetch torch into an isolated build environment). A missing
compiler makes :func:`available` return ``False`` and the dispatch fall back to the reference.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor

from hgnn.ops.segments import Segments

_SOURCE = Path(__file__).resolve().parent / "csrc" / "segment_ops.cpp"
_REDUCE = {"sum": 0, "mean": 1, "max": 2}
_NAME = "hgnn_segment_ops"
STALE_LOCK_S = 600.0  # a build here takes about a minute


def wait_for_build_lock(build_dir: str | Path, stale_after_s: float = STALE_LOCK_S,
                        poll_s: float = 0.5) -> bool:
    """Wait while another process holds torch's build lock in ``build_dir``; remove the lock
    once it is older than ``stale_after_s`` and say so. Returns whether a stale lock was removed.

    torch releases the lock in a ``finally`` block, which a process killed by a signal (``kill``,
    ``timeout``, the OOM killer) never runs; every later ``load`` would then wait on it forever.
    """
    lock = Path(build_dir) / "lock"
    told = False
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        if not told and age <= stale_after_s:  # a silent wait of minutes looks like a hang
            print(f"hgnn: waiting for {lock}: another process is building the CPU kernels (a lock "
                  f"left by a killed process is removed in {stale_after_s - age:.0f} s; delete it "
                  "to go on now)", file=sys.stderr)
            told = True
        if age > stale_after_s:
            warnings.warn(f"removing the build lock {lock}, left {age:.0f} s ago by a process that "
                          "was killed while loading the hgnn CPU extension", stacklevel=2)
            lock.unlink(missing_ok=True)
            return True
        time.sleep(poll_s)


@functools.lru_cache(maxsize=1)
def _extension():
    from torch.utils import cpp_extension

    build_dir = getattr(cpp_extension, "_get_build_directory", None)  # private: may go away
    if build_dir is not None:
        wait_for_build_lock(build_dir(_NAME, verbose=False))
    flags = ["-O3", "-fopenmp", "-march=native"] if os.environ.get("HGNN_NATIVE", "1") == "1" \
        else ["-O3", "-fopenmp"]
    return cpp_extension.load(name=_NAME, sources=[str(_SOURCE)], extra_cflags=flags,
                              extra_ldflags=["-fopenmp"], verbose=False)


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the extension builds (or is cached) on this machine."""
    try:
        _extension()
        return True
    except Exception:  # no compiler, no ninja, a failed build: the reference still works
        return False


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, seg: Segments, reduce: str) -> Tensor:
        x = x.contiguous()
        w = weight.contiguous() if weight is not None else x.new_empty(0)
        flat = x.reshape(x.size(0), math.prod(x.shape[1:]))  # -1 cannot size an empty table
        out, arg = _extension().spmm_forward(flat, seg.ptr, seg.index, w, _REDUCE[reduce])
        ctx.save_for_backward(flat, w, arg)
        ctx.seg, ctx.reduce, ctx.shape = seg, reduce, x.shape
        return out.view((seg.num_segments,) + tuple(x.shape[1:]))

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        flat, w, arg = ctx.saved_tensors
        seg = ctx.seg
        tptr, tedge, tseg = seg.transpose()
        need_w = w.numel() > 0 and ctx.needs_input_grad[1]
        gx, gw = _extension().spmm_backward(
            grad_out.contiguous().view(seg.num_segments, flat.size(1)), flat, seg.ptr, seg.index, w, tptr,
            tedge, tseg, arg, _REDUCE[ctx.reduce], need_w)
        return gx.view(ctx.shape), (gw if need_w else None), None, None


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, seg: Segments, scale: float,
                clamp: tuple[float, float], weight: Tensor) -> Tensor:
        q, k, v, weight = q.contiguous(), k.contiguous(), v.contiguous(), weight.contiguous()
        out, lse = _extension().attention_forward(q, k, v, seg.ptr, seg.index, scale, clamp[0],
                                                  clamp[1], weight)
        ctx.save_for_backward(q, k, v, out, lse, weight)
        ctx.seg, ctx.scale, ctx.clamp = seg, scale, clamp
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, weight = ctx.saved_tensors
        seg = ctx.seg
        tptr, tedge, tseg = seg.transpose()
        gq, gk, gv = _extension().attention_backward(grad_out.contiguous(), q, k, v, out, lse,
                                                     seg.ptr, seg.index, tptr, tedge, tseg,
                                                     ctx.scale, ctx.clamp[0], ctx.clamp[1], weight)
        return gq, gk, gv, None, None, None, None


class _Additive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a_dst: Tensor, a_src: Tensor, v: Tensor, seg: Segments, slope: float):
        a_dst, a_src, v = a_dst.contiguous(), a_src.contiguous(), v.contiguous()
        out, lse = _extension().additive_forward(a_dst, a_src, v, seg.ptr, seg.index, slope)
        ctx.save_for_backward(a_dst, a_src, v, out, lse)
        ctx.seg, ctx.slope = seg, slope
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        a_dst, a_src, v, out, lse = ctx.saved_tensors
        seg = ctx.seg
        tptr, tedge, tseg = seg.transpose()
        gd, gs, gv = _extension().additive_backward(grad_out.contiguous(), a_dst, a_src, v, out,
                                                    lse, seg.ptr, seg.index, tptr, tedge, tseg,
                                                    ctx.slope)
        return gd, gs, gv, None, None


def segment_additive_attention(a_dst: Tensor, a_src: Tensor, v: Tensor, seg: Segments,
                               slope: float) -> Tensor:
    return _Additive.apply(a_dst, a_src, v, seg, slope)


def segment_spmm(x: Tensor, seg: Segments, weight: Tensor | None, reduce: str) -> Tensor:
    return _SpMM.apply(x, weight, seg, reduce)


def segment_attention(q: Tensor, k: Tensor, v: Tensor, seg: Segments, scale: float,
                      clamp: tuple[float, float] | None = None,
                      weight: Tensor | None = None) -> Tensor:
    bounds = clamp if clamp is not None else (-math.inf, math.inf)
    w = weight if weight is not None else q.new_empty(0)
    return _Attention.apply(q, k, v, seg, scale, bounds, w)
