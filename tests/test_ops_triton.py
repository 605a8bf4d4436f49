"""Triton backend of :mod:`hgnn.ops` against the reference, on CPU through the Triton interpreter.

``TRITON_INTERPRET=1`` must be set before ``triton.jit`` decorates the kernels (the choice between
compiled and interpreted kernels is made at decoration time), so it is set first thing here and
``hgnn.ops.triton_ops`` is imported right after. Shapes are tiny: the interpreter runs every
program of the grid in Python.
"""
from __future__ import annotations

import os

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"

import importlib  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402


def _restore_interpret_env() -> None:
    if _PREVIOUS_INTERPRET is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET


try:
    import triton
except ImportError:
    triton = None
if triton is None or tuple(int(p) for p in triton.__version__.split(".")[:2]) < (3, 9):
    _restore_interpret_env()  # a skipped module must not leave the interpreter on for the others
    pytest.skip("the interpreter tests need Triton >= 3.9 (3.6's interpreter fails on them); found "
                f"{getattr(triton, '__version__', 'none')}; tests/test_cuda.py checks the compiled "
                "kernels on a GPU", allow_module_level=True)

from hgnn import ops  # noqa: E402
from hgnn.ops import reference, triton_ops  # noqa: E402
from hgnn.ops.segments import Segments  # noqa: E402
from tests.segment_cases import make_segments  # noqa: E402


def _interpreted() -> bool:
    return type(triton_ops._spmm_fwd_kernel).__name__ == "InterpretedFunction"


# Other test modules run between collection and these tests (on a GPU machine they may use the
# compiled kernels): the interpreter is switched on only while this module's tests run.
_restore_interpret_env()


@pytest.fixture(autouse=True, scope="module")
def _interpreter():
    os.environ["TRITON_INTERPRET"] = "1"
    if not _interpreted():  # triton_ops was imported (by another module) before the env was set
        importlib.reload(triton_ops)
    yield
    _restore_interpret_env()
    if _PREVIOUS_INTERPRET != "1":
        importlib.reload(triton_ops)  # back to compiled kernels for whatever runs next


TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}


def _grads(out: torch.Tensor, inputs: tuple[torch.Tensor, ...], grad_out: torch.Tensor):
    return torch.autograd.grad(out, inputs, grad_out)


def test_available_under_interpreter():
    assert triton_ops.available()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_spmm_matches_reference(reduce: str, weighted: bool, dtype: torch.dtype):
    seg = make_segments(seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(seg.num_src, 6, generator=gen, dtype=dtype).requires_grad_()
    w = (torch.rand(seg.num_edges, generator=gen, dtype=dtype) + 0.5).requires_grad_() \
        if weighted else None
    inputs = (x, w) if weighted else (x,)
    out = ops.segment_spmm(x, seg, w, reduce, backend="triton")
    ref = reference.segment_spmm(x, seg.ptr, seg.index, w, reduce)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    assert out[0].abs().sum() == 0 and out[-1].abs().sum() == 0  # empty segments
    g = torch.randn(out.shape, generator=gen, dtype=dtype)
    for got, want in zip(_grads(out, inputs, g), _grads(ref, inputs, g), strict=True):
        torch.testing.assert_close(got, want, **TOL[dtype])


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_spmm_extra_dims_and_wide_features(reduce: str):
    # [N, H, F] is flattened to [N, H * F]; 2 * 70 = 140 columns span two column blocks.
    seg = make_segments(seed=3, num_segments=4, num_src=6, big=20)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(seg.num_src, 2, 70, generator=gen).requires_grad_()
    w = torch.randn(seg.num_edges, generator=gen).requires_grad_()
    out = ops.segment_spmm(x, seg, w, reduce, backend="triton")
    # The reference scales [E, F] messages only, so it gets the flattened table.
    ref = reference.segment_spmm(x.flatten(1), seg.ptr, seg.index, w, reduce).view(out.shape)
    assert out.shape == (seg.num_segments, 2, 70)
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    g = torch.randn(out.shape, generator=gen)
    for got, want in zip(_grads(out, (x, w), g), _grads(ref, (x, w), g), strict=True):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_spmm_gradcheck(reduce: str):
    seg = make_segments(seed=5, num_segments=4, num_src=5, big=18)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(seg.num_src, 3, generator=gen, dtype=torch.float64).requires_grad_()
    w = (torch.rand(seg.num_edges, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: ops.segment_spmm(a, seg, b, reduce, backend="triton"), (x, w))


def test_spmm_max_ties_go_to_first_edge():
    # Rows 0 and 1 are equal, so both edges of segment 0 attain the max in every column. The
    # fused backends send the whole gradient to the first edge (torch's scatter_reduce "amax",
    # used by the reference, would split it evenly between the tied edges instead).
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 5.0]], requires_grad=True)
    seg = Segments(torch.tensor([0, 2, 4]), torch.tensor([1, 0, 2, 0]), 3)
    w = torch.ones(4, requires_grad=True)
    out = ops.segment_spmm(x, seg, w, "max", backend="triton")
    torch.testing.assert_close(out, torch.tensor([[1.0, 2.0], [1.0, 5.0]]))
    gx, gw = torch.autograd.grad(out.sum(), (x, w))
    torch.testing.assert_close(gx, torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(gw, torch.tensor([3.0, 0.0, 5.0, 1.0]))


def test_spmm_grad_of_one_input_only():
    seg = make_segments(seed=7)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(seg.num_src, 4, generator=gen)
    w = torch.rand(seg.num_edges, generator=gen, requires_grad=True)
    (gw,) = torch.autograd.grad(ops.segment_spmm(x, seg, w, "mean", backend="triton").sum(), (w,))
    (rw,) = torch.autograd.grad(reference.segment_spmm(x, seg.ptr, seg.index, w, "mean").sum(),
                                (w,))
    torch.testing.assert_close(gw, rw)
    x.requires_grad_()
    (gx,) = torch.autograd.grad(ops.segment_spmm(x, seg, w.detach(), "sum", backend="triton")
                                .sum(), (x,))
    assert gx[0].abs().sum() == 0 and gx[-1].abs().sum() == 0  # isolated rows get zeros


def test_no_edges():
    seg = Segments(torch.zeros(4, dtype=torch.long), torch.zeros(0, dtype=torch.long), 5)
    x = torch.randn(5, 3, requires_grad=True)
    for reduce in ("sum", "mean", "max"):
        out = ops.segment_spmm(x, seg, None, reduce, backend="triton")
        assert out.shape == (3, 3) and out.abs().sum() == 0
        (gx,) = torch.autograd.grad(out.sum(), (x,))
        assert gx.abs().sum() == 0
    q = torch.randn(3, 2, 4, requires_grad=True)
    k = torch.randn(5, 2, 4, requires_grad=True)
    v = torch.randn(5, 2, 3, requires_grad=True)
    out = ops.segment_attention(q, k, v, seg, backend="triton")
    assert out.shape == (3, 2, 3) and out.abs().sum() == 0
    for g in torch.autograd.grad(out.sum(), (q, k, v)):
        assert g.abs().sum() == 0
    a_dst = torch.randn(3, 2, requires_grad=True)
    a_src = torch.randn(5, 2, requires_grad=True)
    out = ops.segment_additive_attention(a_dst, a_src, v, seg, backend="triton")
    assert out.shape == (3, 2, 3) and out.abs().sum() == 0
    for g in torch.autograd.grad(out.sum(), (a_dst, a_src, v)):
        assert g.abs().sum() == 0


def _qkv(seg: Segments, heads: int, d: int, dv: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(seg.num_segments, heads, d, generator=gen, dtype=dtype).requires_grad_()
    k = torch.randn(seg.num_src, heads, d, generator=gen, dtype=dtype).requires_grad_()
    v = torch.randn(seg.num_src, heads, dv, generator=gen, dtype=dtype).requires_grad_()
    return q, k, v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("heads", "d", "dv", "scale"), [(2, 3, 5, None), (1, 16, 16, 0.7),
                                                         (3, 20, 1, 2.5)])
def test_attention_matches_reference(heads: int, d: int, dv: int, scale: float | None,
                                     dtype: torch.dtype):
    seg = make_segments(seed=9)
    q, k, v = _qkv(seg, heads, d, dv, dtype, seed=10)
    out = ops.segment_attention(q, k, v, seg, scale, backend="triton")
    ref_scale = d ** -0.5 if scale is None else scale
    ref = reference.segment_attention(q, k, v, seg.ptr, seg.index, ref_scale)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    assert out[0].abs().sum() == 0 and out[-1].abs().sum() == 0  # empty segments
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(11), dtype=dtype)
    grads = _grads(out, (q, k, v), g)
    for got, want in zip(grads, _grads(ref, (q, k, v), g), strict=True):
        torch.testing.assert_close(got, want, **TOL[dtype])
    assert grads[1][0].abs().sum() == 0 and grads[2][-1].abs().sum() == 0  # isolated rows


def test_attention_large_scores_are_stable():
    # Scores around +-1e3 overflow a naive exp; the online softmax must match the reference.
    seg = make_segments(seed=12, num_segments=4, num_src=6, big=24)
    q, k, v = _qkv(seg, 2, 4, 3, torch.float64, seed=13)
    out = ops.segment_attention(q, k, v, seg, 300.0, backend="triton")
    ref = reference.segment_attention(q, k, v, seg.ptr, seg.index, 300.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, **TOL[torch.float64])


def test_attention_gradcheck():
    seg = make_segments(seed=14, num_segments=4, num_src=5, big=18)
    q, k, v = _qkv(seg, 1, 3, 2, torch.float64, seed=15)
    assert torch.autograd.gradcheck(
        lambda a, b, c: ops.segment_attention(a, b, c, seg, backend="triton"), (q, k, v))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_clamp_and_weight_match_reference(dtype: torch.dtype):
    seg = make_segments(seed=24)
    q, k, v = _qkv(seg, 2, 5, 3, dtype, seed=25)
    q = (q * 3).detach().requires_grad_()  # scores beyond the clamp for some edges only
    gen = torch.Generator().manual_seed(26)
    w = ((torch.rand(seg.num_edges, 2, generator=gen) > 0.3).to(dtype) / 0.7)
    g = torch.randn(seg.num_segments, 2, 3, generator=gen, dtype=dtype)
    for clamp, weight in (((-1.0, 1.0), None), (None, w), ((-0.5, 2.0), w)):
        out = ops.segment_attention(q, k, v, seg, backend="triton", clamp=clamp, weight=weight)
        ref = reference.segment_attention(q, k, v, seg.ptr, seg.index, 5 ** -0.5, clamp, weight)
        torch.testing.assert_close(out, ref, **TOL[dtype])
        for got, want in zip(_grads(out, (q, k, v), g), _grads(ref, (q, k, v), g), strict=True):
            torch.testing.assert_close(got, want, **TOL[dtype])


def test_attention_clamp_and_weight_gradcheck():
    seg = make_segments(seed=27, num_segments=4, num_src=5, big=18)
    q, k, v = _qkv(seg, 1, 3, 2, torch.float64, seed=28)
    w = (torch.rand(seg.num_edges, 1, generator=torch.Generator().manual_seed(29),
                    dtype=torch.float64) > 0.3).double() / 0.7
    assert torch.autograd.gradcheck(
        lambda a, b, c: ops.segment_attention(a, b, c, seg, backend="triton", clamp=(-0.6, 0.8),
                                              weight=w), (q, k, v))


def _additive_inputs(seg: Segments, heads: int, dv: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    a_dst = torch.randn(seg.num_segments, heads, generator=gen, dtype=dtype).requires_grad_()
    a_src = torch.randn(seg.num_src, heads, generator=gen, dtype=dtype).requires_grad_()
    v = torch.randn(seg.num_src, heads, dv, generator=gen, dtype=dtype).requires_grad_()
    return a_dst, a_src, v


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("heads", "dv", "slope"), [(2, 5, 0.2), (1, 16, 0.01), (3, 20, 0.0),
                                                    (2, 1, 1.7)])
def test_additive_attention_matches_reference(heads: int, dv: int, slope: float,
                                              dtype: torch.dtype):
    seg = make_segments(seed=17)
    inputs = _additive_inputs(seg, heads, dv, dtype, seed=18)
    out = ops.segment_additive_attention(*inputs, seg, slope, backend="triton")
    ref = reference.segment_additive_attention(*inputs, seg.ptr, seg.index, slope)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    assert out[0].abs().sum() == 0 and out[-1].abs().sum() == 0  # empty segments
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(19), dtype=dtype)
    grads = _grads(out, inputs, g)
    for got, want in zip(grads, _grads(ref, inputs, g), strict=True):
        torch.testing.assert_close(got, want, **TOL[dtype])
    assert grads[0][0].abs().sum() == 0 and grads[0][-1].abs().sum() == 0  # empty segments
    for isolated in (0, -1):  # source rows no edge reads
        assert grads[1][isolated].abs().sum() == 0 and grads[2][isolated].abs().sum() == 0


def test_additive_attention_large_scores_are_stable():
    # Terms around +-1e3 overflow a naive exp; the online softmax must match the reference.
    seg = make_segments(seed=20, num_segments=4, num_src=6, big=24)
    a_dst, a_src, v = _additive_inputs(seg, 2, 3, torch.float64, seed=21)
    a_dst, a_src = (a_dst * 300).detach(), (a_src * 300).detach()
    out = ops.segment_additive_attention(a_dst, a_src, v, seg, 0.2, backend="triton")
    ref = reference.segment_additive_attention(a_dst, a_src, v, seg.ptr, seg.index, 0.2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, **TOL[torch.float64])


def test_additive_attention_gradcheck():
    seg = make_segments(seed=22, num_segments=4, num_src=5, big=18)
    inputs = _additive_inputs(seg, 1, 2, torch.float64, seed=23)
    assert torch.autograd.gradcheck(
        lambda a, b, c: ops.segment_additive_attention(a, b, c, seg, 0.2, backend="triton"),
        inputs)


def test_deterministic():
    # No atomics: two runs agree bit for bit.
    seg = make_segments(seed=16)
    x = torch.randn(seg.num_src, 5, requires_grad=True)
    w = torch.rand(seg.num_edges, requires_grad=True)
    runs = []
    for _ in range(2):
        out = ops.segment_spmm(x, seg, w, "mean", backend="triton")
        runs.append((out, *torch.autograd.grad(out.sum(), (x, w))))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
