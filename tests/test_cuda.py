"""The compiled Triton kernels and every model on a real GPU (skipped where there is none).

CI has no GPU: these run on a lent one (``pytest tests/test_cuda.py``; the log of the last such
run is committed as ``benchmarks/results/test_cuda.log``). The interpreter tests (``test_ops_triton.py``)
check the same kernels' logic on CPU; these check what only the hardware shows: compiled code,
half precisions, graphs with enough edges to fill the chip, hub rows and segments much longer than
one edge chunk, outputs that start as uninitialised memory, and the models' device handling.

Each op is compared with the float64 reference on CPU, fed the same (rounded) inputs, by the
relative error ``||out - ref|| / ||ref||`` of the output and of every input gradient.
"""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

triton = pytest.importorskip("triton")
if not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("needs a CUDA GPU and compiled (not interpreted) Triton kernels",
                allow_module_level=True)

from hgnn import ops  # noqa: E402
from hgnn.ops import reference, triton_ops  # noqa: E402
from hgnn.ops.segments import Segments  # noqa: E402
from tests.segment_cases import make_segments  # noqa: E402

CUDA = torch.device("cuda")
# Relative-error bounds: float32 accumulation over segments of up to ~50k edges; float16 and
# bfloat16 round every input and output (2^-11 and 2^-8), accumulating in float32.
REL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def _compiled_kernels():
    if type(triton_ops._spmm_fwd_kernel).__name__ == "InterpretedFunction":
        pytest.skip("triton_ops was loaded under the interpreter")


def poison_allocator() -> None:
    """Fill the caching allocator's free blocks with NaN, so that an output element a kernel never
    writes (outputs start as ``torch.empty``) shows up as NaN instead of a stale plausible value."""
    torch.cuda.synchronize()
    free = torch.cuda.mem_get_info()[0]
    nbytes = min(free // 4, 4 << 30)
    block = torch.empty(nbytes // 4, dtype=torch.float32, device=CUDA).fill_(float("nan"))
    del block


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    assert torch.isfinite(got).all(), "non-finite values (an unwritten element or overflow)"
    denom = want.norm().item()
    return (got - want).norm().item() / (denom if denom > 0 else 1.0)


def big_segments(num_segments: int = 20_000, num_src: int = 15_000, hub: int = 30_000,
                 seed: int = 0) -> Segments:
    """Random segments (0..20 edges each, some empty) plus one segment of ``hub`` edges, a tenth
    of them from source row 3, so that one program loops over thousands of edge chunks and one
    source row's transpose list spans hundreds (float16 sums stay below its 65504 limit)."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 21, (num_segments,), generator=gen)
    counts[7] = hub
    ptr = torch.zeros(num_segments + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(counts, 0)
    index = torch.randint(0, num_src, (int(ptr[-1]),), generator=gen)
    index[int(ptr[7]):int(ptr[8]):10] = 3
    return Segments(ptr, index, num_src)


def check(fn_gpu, fn_ref, inputs: list[torch.Tensor], dtype: torch.dtype, seed: int) -> None:
    """Run ``fn_gpu`` on ``inputs`` (rounded to ``dtype``, on the GPU) and ``fn_ref`` on the same
    values in float64 on CPU; compare outputs and the gradients of every input."""
    rounded = [t.to(dtype) for t in inputs]
    gpu_in = [t.to(CUDA).requires_grad_() for t in rounded]
    ref_in = [t.double().requires_grad_() for t in rounded]
    poison_allocator()
    out = fn_gpu(*gpu_in)
    ref = fn_ref(*ref_in)
    assert out.dtype == dtype and out.device.type == "cuda"
    assert rel_err(out, ref) < REL[dtype], ("forward", rel_err(out, ref))
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g = g.to(dtype)
    poison_allocator()
    grads = torch.autograd.grad(out, gpu_in, g.to(CUDA))
    want = torch.autograd.grad(ref, ref_in, g.double())
    for i, (got_g, want_g) in enumerate(zip(grads, want, strict=True)):
        assert got_g.dtype == dtype
        assert rel_err(got_g, want_g) < REL[dtype], (f"grad of input {i}", rel_err(got_g, want_g))


def test_dispatch_picks_triton_on_cuda():
    assert ops.backend_for(torch.zeros(1, device=CUDA)) == "triton"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("width", [7, 64, 200])
def test_spmm_on_gpu(reduce: str, weighted: bool, dtype: torch.dtype, width: int):
    seg = big_segments(seed=width)
    gseg = seg.to(CUDA)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(seg.num_src, width, generator=gen)
    inputs = [x] + ([torch.rand(seg.num_edges, generator=gen) + 0.5] if weighted else [])

    def gpu(a, *w):
        return ops.segment_spmm(a, gseg, w[0] if w else None, reduce, backend="triton")

    def ref(a, *w):
        return reference.segment_spmm(a, seg.ptr, seg.index, w[0] if w else None, reduce)

    if reduce == "max" and dtype in (torch.float16, torch.bfloat16):
        # Rounded inputs tie often; the reference splits a tie's gradient, the kernels send it to
        # the first edge (documented), so only the forward is compared here.
        rounded = [t.to(dtype) for t in inputs]
        out = gpu(*[t.to(CUDA) for t in rounded])
        assert rel_err(out, ref(*[t.double() for t in rounded])) < REL[dtype]
        return
    check(gpu, ref, inputs, dtype, seed=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("heads", "d", "dv"), [(4, 16, 16), (8, 64, 64), (2, 5, 3)])
def test_attention_on_gpu(heads: int, d: int, dv: int, dtype: torch.dtype):
    seg = big_segments(seed=heads)
    gseg = seg.to(CUDA)
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(seg.num_segments, heads, d, generator=gen)
    k = torch.randn(seg.num_src, heads, d, generator=gen)
    v = torch.randn(seg.num_src, heads, dv, generator=gen)
    check(lambda a, b, c: ops.segment_attention(a, b, c, gseg, backend="triton"),
          lambda a, b, c: reference.segment_attention(a, b, c, seg.ptr, seg.index, d ** -0.5),
          [q, k, v], dtype, seed=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_clamp_and_weight_on_gpu(dtype: torch.dtype):
    seg = big_segments(seed=5)
    gseg = seg.to(CUDA)
    gen = torch.Generator().manual_seed(6)
    q = 3 * torch.randn(seg.num_segments, 2, 8, generator=gen)  # some scores beyond the clamp
    k = torch.randn(seg.num_src, 2, 8, generator=gen)
    v = torch.randn(seg.num_src, 2, 8, generator=gen)
    w = (torch.rand(seg.num_edges, 2, generator=gen) > 0.3).float() / 0.7
    wd = w.to(dtype)
    check(lambda a, b, c: ops.segment_attention(a, b, c, gseg, backend="triton", clamp=(-2.0, 2.0),
                                                weight=wd.to(CUDA)),
          lambda a, b, c: reference.segment_attention(a, b, c, seg.ptr, seg.index, 8 ** -0.5,
                                                      (-2.0, 2.0), wd.double()),
          [q, k, v], dtype, seed=7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("heads", "dv"), [(1, 64), (4, 16), (3, 5)])
def test_additive_attention_on_gpu(heads: int, dv: int, dtype: torch.dtype):
    seg = big_segments(seed=10 + heads)
    gseg = seg.to(CUDA)
    gen = torch.Generator().manual_seed(8)
    a_dst = torch.randn(seg.num_segments, heads, generator=gen)
    a_src = torch.randn(seg.num_src, heads, generator=gen)
    v = torch.randn(seg.num_src, heads, dv, generator=gen)
    check(lambda a, b, c: ops.segment_additive_attention(a, b, c, gseg, 0.2, backend="triton"),
          lambda a, b, c: reference.segment_additive_attention(a, b, c, seg.ptr, seg.index, 0.2),
          [a_dst, a_src, v], dtype, seed=9)


def test_gradcheck_on_gpu():
    seg = make_segments(seed=5, num_segments=4, num_src=5, big=18).to(CUDA)
    gen = torch.Generator().manual_seed(6)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(CUDA).requires_grad_()

    x, w = rand(seg.num_src, 3), (rand(seg.num_edges).detach().abs() + 0.5).requires_grad_()
    for reduce in ("sum", "mean", "max"):
        assert torch.autograd.gradcheck(
            lambda a, b, r=reduce: ops.segment_spmm(a, seg, b, r, backend="triton"), (x, w))
    q, k, v = rand(4, 2, 3), rand(5, 2, 3), rand(5, 2, 2)
    assert torch.autograd.gradcheck(
        lambda a, b, c: ops.segment_attention(a, b, c, seg, backend="triton", clamp=(-0.6, 0.8)),
        (q, k, v))
    assert torch.autograd.gradcheck(
        lambda a, b, c: ops.segment_additive_attention(a, b, c, seg, 0.2, backend="triton"),
        (rand(4, 2), rand(5, 2), v))


def test_awkward_cases_match_cpu_kernels():
    # Empty segments, isolated rows, multi-edges: the GPU kernels agree with the CPU backend.
    seg = make_segments(seed=1)
    gseg = seg.to(CUDA)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(seg.num_src, 6, generator=gen)
    for reduce in ("sum", "mean", "max"):
        got = ops.segment_spmm(x.to(CUDA), gseg, None, reduce, backend="triton").cpu()
        torch.testing.assert_close(got, reference.segment_spmm(x, seg.ptr, seg.index, None, reduce))
        assert got[0].abs().sum() == 0 and got[-1].abs().sum() == 0


def test_deterministic_on_gpu():
    # No atomics: two runs agree bit for bit, forward and backward.
    seg = big_segments(seed=3)
    gseg = seg.to(CUDA)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(seg.num_src, 32, generator=gen).to(CUDA).requires_grad_()
    w = torch.rand(seg.num_edges, generator=gen).to(CUDA).requires_grad_()
    q = torch.randn(seg.num_segments, 2, 16, generator=gen).to(CUDA).requires_grad_()
    kv = torch.randn(seg.num_src, 2, 16, generator=gen).to(CUDA).requires_grad_()
    runs = []
    for _ in range(2):
        a = ops.segment_spmm(x, gseg, w, "mean", backend="triton")
        b = ops.segment_attention(q, kv, kv, gseg, backend="triton")
        runs.append((a, b, *torch.autograd.grad(a.sum() + b.square().sum(), (x, w, q, kv))))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_cpu_segments_serve_gpu_features():
    # A graph index lives on CPU; the ops use its segments' GPU copy, made once and kept.
    seg = make_segments(seed=1)
    x = torch.randn(seg.num_src, 3)
    got = ops.segment_spmm(x.to(CUDA), seg, None, "mean")
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), reference.segment_spmm(x, seg.ptr, seg.index, None, "mean"))
    assert seg.on(CUDA) is seg.on(CUDA) and seg.on(CUDA).ptr.is_cuda
    with pytest.raises(ValueError, match="weight is on cpu"):
        ops.segment_spmm(x.to(CUDA), seg, torch.ones(seg.num_edges), "sum")


MODELS = ["mlp", "rgcn", "hgt", "rhgnn", "latte", "h2gformer", "rphgnn"]


@pytest.mark.parametrize("model", MODELS)
def test_model_trains_on_gpu_and_matches_cpu(tmp_path, model):
    """Each model trains on the GPU (its training loss falls), and a checkpoint gives the same
    logits on GPU and CPU."""
    from hgnn.train.experiment import run_experiment
    from hgnn.train.inference import restore

    summary = run_experiment(model, "synthetic", [0], overrides=["train.epochs=5", "train.patience=0"],
                             out_dir=tmp_path / model, quiet=True, device="cuda",
                             dataset_options={"scale": 0.25})
    history = json.loads((tmp_path / model / "seed_0" / "result.json").read_text())["history"]
    assert all(math.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"], history  # it learns (5 epochs: not far)
    assert summary["metrics"]["test"]["accuracy"]["mean"] > 0
    ckpt = tmp_path / model / "seed_0" / "best.pt"
    logits = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)  # the same random projections (RpHGNN) and draws on both devices
        net, regime, *_ = restore(ckpt, device=device)
        net.eval()
        with torch.no_grad():
            logits[device] = regime.logits(net, ("test",))["test"].float().cpu()
    assert logits["cuda"].shape == logits["cpu"].shape
    assert rel_err(logits["cuda"], logits["cpu"]) < 1e-4
