"""hgnn.ops: the compiled CPU backend against the reference, gradients, typed ops, validation."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import scatter

from hgnn.data.relation_index import RelationIndex
from hgnn.nn.rgcn_conv import RGCNConv
from hgnn.ops import Segments, cpu, segment_attention, segment_matmul, segment_spmm
from hgnn.ops.typed import typed_aggregate, typed_linear_aggregate
from tests.test_relation_index import random_graph

BACKENDS = ["reference"] + (["cpu"] if cpu.available() else [])


def random_segments(seed: int, num_src: int = 30, num_seg: int = 25, num_edges: int = 200,
                    hub: bool = True) -> Segments:
    """Random segments with empty segments, untouched source rows, multi-edges and one hub."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, num_src - 3, (num_edges,), generator=g)  # last 3 rows: no edges
    owner = torch.randint(0, num_seg, (num_edges,), generator=g)
    owner[owner % 7 == 3] = 0  # segments 3, 10, 17, 24 stay empty
    if hub:
        owner[: num_edges // 2] = 1  # one segment with half of all edges
    owner = torch.sort(owner).values
    ptr = torch.zeros(num_seg + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(owner, minlength=num_seg), 0)
    return Segments(ptr, index, num_src)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("weighted", [False, True])
def test_spmm_matches_reference(backend, reduce, weighted):
    seg = random_segments(0)
    x = torch.randn(seg.num_src, 7, requires_grad=True)
    w = torch.rand(seg.num_edges, requires_grad=True) if weighted else None
    out = segment_spmm(x, seg, w, reduce, backend=backend)
    ref_x = x.detach().clone().requires_grad_()
    ref_w = w.detach().clone().requires_grad_() if weighted else None
    ref = segment_spmm(ref_x, seg, ref_w, reduce, backend="reference")
    assert torch.allclose(out, ref, atol=1e-5)
    assert (out[3] == 0).all()  # empty segment
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-5)
    assert (x.grad[-3:] == 0).all()  # rows no edge reads
    if weighted:
        assert torch.allclose(w.grad, ref_w.grad, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_spmm_gradcheck_float64(backend, reduce):
    seg = random_segments(1, num_src=8, num_seg=6, num_edges=30)
    x = torch.randn(seg.num_src, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(seg.num_edges, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: segment_spmm(x, seg, w, reduce, backend=backend), (x, w))


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_matches_reference_and_gradcheck(backend):
    seg = random_segments(2)
    q = torch.randn(seg.num_segments, 2, 4, requires_grad=True)
    k = torch.randn(seg.num_src, 2, 4, requires_grad=True)
    v = torch.randn(seg.num_src, 2, 3, requires_grad=True)
    out = segment_attention(q, k, v, seg, backend=backend)
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    ref = segment_attention(*leaves, seg, backend="reference")
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    for a, b in zip((q, k, v), leaves, strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)
    small = random_segments(3, num_src=7, num_seg=5, num_edges=20)
    args = (torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True),
            torch.randn(7, 2, 3, dtype=torch.float64, requires_grad=True),
            torch.randn(7, 2, 2, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(
        lambda q, k, v: segment_attention(q, k, v, small, backend=backend), args)


def test_triton_backend_on_cpu_without_the_interpreter_is_refused(monkeypatch):
    from hgnn.errors import HgnnError

    seg = random_segments(0)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="the triton backend runs on CUDA tensors"):
        segment_spmm(torch.ones(seg.num_src, 2), seg, backend="triton")
    monkeypatch.setenv("HGNN_OPS_BACKEND", "triton")
    with pytest.raises(HgnnError, match="HGNN_OPS_BACKEND=triton: the triton backend runs on"):
        segment_spmm(torch.ones(seg.num_src, 2), seg)


def test_cpu_backend_is_deterministic():
    if "cpu" not in BACKENDS:
        pytest.skip("compiled CPU backend unavailable")
    seg = random_segments(4, num_src=300, num_seg=200, num_edges=5000)
    x = torch.randn(seg.num_src, 32, requires_grad=True)
    grads = []
    for _ in range(2):
        x.grad = None
        segment_spmm(x, seg, None, "mean", backend="cpu").pow(2).sum().backward()
        grads.append(x.grad.clone())
    assert torch.equal(grads[0], grads[1])


def test_segment_matmul():
    x = torch.randn(10, 4)
    ptr = torch.tensor([0, 3, 3, 10])  # an empty type in the middle
    w = torch.randn(3, 4, 5)
    out = segment_matmul(x, ptr, w)
    assert torch.allclose(out[:3], x[:3] @ w[0]) and torch.allclose(out[3:], x[3:] @ w[2])


def test_validation_errors():
    seg = random_segments(0)
    with pytest.raises(TypeError, match="float32 or float64"):
        segment_spmm(torch.ones(seg.num_src, 2, dtype=torch.long), seg)
    with pytest.raises(ValueError, match="rows but the segments address"):
        segment_spmm(torch.ones(seg.num_src + 1, 2), seg)
    with pytest.raises(ValueError, match="weight must have shape"):
        segment_spmm(torch.ones(seg.num_src, 2), seg, torch.ones(3))
    with pytest.raises(ValueError, match="reduce must be one of"):
        segment_spmm(torch.ones(seg.num_src, 2), seg, reduce="median")
    bad = Segments(torch.tensor([0, 5]), torch.zeros(3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="ptr must start at 0 and end"):
        segment_spmm(torch.ones(4, 2), bad)
    with pytest.raises(ValueError, match="unknown ops backend"):
        segment_spmm(torch.ones(seg.num_src, 2), seg, backend="cuda-magic")


@pytest.mark.parametrize("backend", BACKENDS)
def test_typed_ops_against_loops(backend):
    data = random_graph(0)
    x = {t: torch.randn(data[t].num_nodes, 5, dtype=torch.float64) for t in data.node_types}
    index = RelationIndex.from_data(data)
    per_rel = typed_aggregate(x, index, "mean", per_relation=True, backend=backend)
    summed = typed_aggregate(x, index, "mean", per_relation=False, backend=backend)
    weight = torch.randn(index.num_relations, 5, 3, dtype=torch.float64)
    linear = {o: typed_linear_aggregate(x, index, weight, order=o, backend=backend)
              for o in ("transform_first", "aggregate_first")}
    for t in data.node_types:
        want_sum = torch.zeros(data[t].num_nodes, 5, dtype=torch.float64)
        want_lin = torch.zeros(data[t].num_nodes, 3, dtype=torch.float64)
        for r, et in enumerate(index.edge_types):
            if et[2] != t:
                continue
            ei = data[et].edge_index
            mean = scatter(x[et[0]][ei[0]], ei[1], 0, dim_size=data[t].num_nodes, reduce="mean")
            assert torch.allclose(per_rel[et], mean)
            want_sum += mean
            want_lin += scatter(x[et[0]][ei[0]] @ weight[r], ei[1], 0,
                                dim_size=data[t].num_nodes, reduce="mean")
        assert torch.allclose(summed[t], want_sum)
        for o in linear:
            assert torch.allclose(linear[o][t], want_lin)


def test_rgcn_conv_against_direct_loop():
    data = random_graph(5)
    torch.manual_seed(0)
    x = {t: torch.randn(data[t].num_nodes, 4, dtype=torch.float64, requires_grad=True)
         for t in data.node_types}
    conv = RGCNConv(4, 3, data.edge_types, data.node_types).double()
    out = conv(x, data.edge_index_dict)
    for t in data.node_types:
        want = x[t] @ conv.root[t] + conv.bias[t]
        for r, et in enumerate(conv.edge_types):
            if et[2] != t:
                continue
            ei = data[et].edge_index
            for v in range(data[t].num_nodes):
                nbrs = ei[0, ei[1] == v]
                if nbrs.numel():
                    want = want.index_add(0, torch.tensor([v]),
                                          (x[et[0]][nbrs] @ conv.weight[r]).mean(0, keepdim=True))
        assert torch.allclose(out[t], want)
    assert torch.autograd.gradcheck(
        lambda a: conv({**x, "a": a}, data.edge_index_dict)["b"].sum(), (x["a"],))


@pytest.mark.parametrize("backend", BACKENDS)
def test_additive_attention_matches_reference_and_gradcheck(backend):
    from hgnn.ops import segment_additive_attention

    seg = random_segments(6)
    a_dst = torch.randn(seg.num_segments, 3, requires_grad=True)
    a_src = torch.randn(seg.num_src, 3, requires_grad=True)
    v = torch.randn(seg.num_src, 3, 5, requires_grad=True)
    out = segment_additive_attention(a_dst, a_src, v, seg, 0.2, backend=backend)
    leaves = [t.detach().clone().requires_grad_() for t in (a_dst, a_src, v)]
    ref = segment_additive_attention(*leaves, seg, 0.2, backend="reference")
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    for a, b in zip((a_dst, a_src, v), leaves, strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)
    small = random_segments(7, num_src=7, num_seg=5, num_edges=20)
    args = (torch.randn(5, 2, dtype=torch.float64, requires_grad=True),
            torch.randn(7, 2, dtype=torch.float64, requires_grad=True),
            torch.randn(7, 2, 3, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(
        lambda a, b, c: segment_additive_attention(a, b, c, small, 0.2, backend=backend), args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention_clamp_and_weight_match_reference_and_gradcheck(backend):
    # Scores spread well beyond +-1 so the clamp cuts some edges and not others; weights [E, H]
    # play an inverted-dropout mask (zeros and 1 / (1 - p)).
    seg = random_segments(8)
    gen = torch.Generator().manual_seed(9)
    q = (3 * torch.randn(seg.num_segments, 2, 4, generator=gen)).requires_grad_()
    k = torch.randn(seg.num_src, 2, 4, generator=gen, requires_grad=True)
    v = torch.randn(seg.num_src, 2, 3, generator=gen, requires_grad=True)
    w = (torch.rand(seg.num_edges, 2, generator=gen) > 0.3).float() / 0.7
    for clamp, weight in (((-1.0, 1.0), None), (None, w), ((-0.5, 2.0), w)):
        out = segment_attention(q, k, v, seg, backend=backend, clamp=clamp, weight=weight)
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        ref = segment_attention(*leaves, seg, backend="reference", clamp=clamp, weight=weight)
        assert torch.allclose(out, ref, atol=1e-5)
        g = torch.randn_like(out)
        got = torch.autograd.grad(out, (q, k, v), g)
        want = torch.autograd.grad(ref, leaves, g)
        for a, b in zip(got, want, strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    clamped = segment_attention(q, k, v, seg, backend=backend, clamp=(-1.0, 1.0))
    assert not torch.allclose(clamped, segment_attention(q, k, v, seg, backend=backend), atol=1e-3)
    small = random_segments(3, num_src=7, num_seg=5, num_edges=20)
    gen = torch.Generator().manual_seed(10)
    args = (2 * torch.randn(5, 2, 3, dtype=torch.float64, generator=gen),
            torch.randn(7, 2, 3, dtype=torch.float64, generator=gen),
            torch.randn(7, 2, 2, dtype=torch.float64, generator=gen))
    args = tuple(a.requires_grad_() for a in args)
    w64 = (torch.rand(small.num_edges, 2, dtype=torch.float64, generator=gen) > 0.3).double() / 0.7
    assert torch.autograd.gradcheck(
        lambda q, k, v: segment_attention(q, k, v, small, backend=backend, clamp=(-0.7, 0.9),
                                          weight=w64), args)


def test_attention_clamp_and_weight_validation():
    seg = random_segments(0)
    q, k, v = torch.randn(seg.num_segments, 2, 4), torch.randn(seg.num_src, 2, 4), \
        torch.randn(seg.num_src, 2, 3)
    with pytest.raises(ValueError, match="weight must have shape"):
        segment_attention(q, k, v, seg, weight=torch.ones(seg.num_edges))
    with pytest.raises(ValueError, match="lo <= hi"):
        segment_attention(q, k, v, seg, clamp=(1.0, -1.0))


def test_a_build_lock_left_by_a_killed_process_is_removed_with_a_warning(tmp_path, capsys):
    import os
    import time

    from hgnn.ops.cpu import wait_for_build_lock

    assert wait_for_build_lock(tmp_path) is False  # no lock: nothing to wait for
    lock = tmp_path / "lock"
    lock.touch()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with pytest.warns(UserWarning, match="removing the build lock"):
        assert wait_for_build_lock(tmp_path, stale_after_s=600) is True
    assert not lock.exists()
    lock.touch()  # a fresh lock is waited on until it ages past the limit, and the wait is told
    start = time.monotonic()
    with pytest.warns(UserWarning, match="removing the build lock"):
        assert wait_for_build_lock(tmp_path, stale_after_s=0.3, poll_s=0.05) is True
    assert time.monotonic() - start >= 0.2 and not lock.exists()
    assert capsys.readouterr().err.count(f"hgnn: waiting for {lock}: another process") == 1
