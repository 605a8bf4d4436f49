"""hgnn's fused HGTConv against PyG's HGTConv with the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import HGTConv as PygHGTConv

from hgnn.nn.hgt_conv import HGTConv
from tests.test_relation_index import random_graph


def paired_convs(data, channels: int = 8, heads: int = 2):
    metadata = (data.node_types, data.edge_types)
    torch.manual_seed(0)
    pyg, ours = PygHGTConv(channels, channels, metadata, heads=heads), HGTConv(
        channels, channels, metadata, heads=heads)
    copy_pyg_parameters(pyg, ours, data)
    return pyg, ours


def copy_pyg_parameters(pyg, ours, data) -> None:
    """PyG's parameters into ours (both sized), with skips and priors away from their start."""
    heads, num_rel = ours.heads, len(data.edge_types)
    dim = ours.out_channels // heads
    with torch.no_grad():
        for t in data.node_types:
            ours.kqv[t].weight.copy_(pyg.kqv_lin.lins[t].weight)
            ours.kqv[t].bias.copy_(pyg.kqv_lin.lins[t].bias)
            ours.out_lin[t].weight.copy_(pyg.out_lin.lins[t].weight)
            ours.out_lin[t].bias.copy_(pyg.out_lin.lins[t].bias)
            ours.skip[ours.node_types.index(t)] = pyg.skip[t] * 0.3
            pyg.skip[t].mul_(0.3)
        # PyG orders its (head, relation) weights as type = head * R + relation.
        ours.k_rel.copy_(pyg.k_rel.weight.view(heads, num_rel, dim, dim).transpose(0, 1))
        ours.v_rel.copy_(pyg.v_rel.weight.view(heads, num_rel, dim, dim).transpose(0, 1))
        for r, et in enumerate(data.edge_types):
            prior = torch.linspace(0.5, 1.5, heads) * (r + 1) / num_rel
            ours.p_rel[r] = prior
            pyg.p_rel["__".join(et)].copy_(prior.unsqueeze(0))


@pytest.mark.parametrize("seed", [0, 3])
def test_matches_pyg_hgtconv(seed):
    data = random_graph(seed)
    pyg, ours = paired_convs(data)
    x = {t: torch.randn(data[t].num_nodes, 8, requires_grad=True) for t in data.node_types}
    want, got = pyg(x, data.edge_index_dict), ours(x, data.edge_index_dict)
    want = {t: v for t, v in want.items() if v is not None}
    assert set(want) == set(got)
    for t in want:
        assert torch.allclose(want[t], got[t], atol=1e-5)
    g = torch.autograd.grad(sum(v.sum() for v in got.values()), x["a"], retain_graph=True)[0]
    w = torch.autograd.grad(sum(v.sum() for v in want.values()), x["a"])[0]
    assert torch.allclose(g, w, atol=1e-5)


def test_types_outside_the_metadata_are_ignored_as_pyg_does():
    data = random_graph(0)
    pyg, ours = paired_convs(data)
    x = {t: torch.randn(data[t].num_nodes, 8) for t in data.node_types}
    extra = {**x, "stranger": torch.randn(5, 8)}
    want = {t: v for t, v in pyg(extra, data.edge_index_dict).items() if v is not None}
    got, plain = ours(extra, data.edge_index_dict), ours(x, data.edge_index_dict)
    assert set(got) == set(want) == set(plain) and "stranger" not in got
    for t in want:
        assert torch.equal(got[t], plain[t]) and torch.allclose(got[t], want[t], atol=1e-5)


def test_backends_agree_in_float64():
    data = random_graph(1)
    _, conv = paired_convs(data)
    conv = conv.double()
    x = {t: torch.randn(data[t].num_nodes, 8, dtype=torch.float64) for t in data.node_types}
    import os

    old = os.environ.get("HGNN_OPS_BACKEND")
    try:
        os.environ["HGNN_OPS_BACKEND"] = "reference"
        ref = conv(x, data.edge_index_dict)
    finally:
        if old is None:
            os.environ.pop("HGNN_OPS_BACKEND")
        else:
            os.environ["HGNN_OPS_BACKEND"] = old
    got = conv(x, data.edge_index_dict)
    for t in ref:
        assert torch.allclose(ref[t], got[t], atol=1e-10)


def test_sparse_input_linear_matches_dense():
    from hgnn.nn.type_encoder import SPARSE_MIN_ELEMENTS, SparseInputLinear

    gen = torch.Generator().manual_seed(0)
    rows = SPARSE_MIN_ELEMENTS // 200 + 1
    x = (torch.rand(rows, 200, generator=gen) < 0.01).double()
    sparse = SparseInputLinear(200, 16).double()
    dense = torch.nn.Linear(200, 16).double()
    dense.load_state_dict(sparse.state_dict())
    for _ in range(2):  # the second call uses the cached CSR
        sparse.zero_grad()
        dense.zero_grad()
        a, b = sparse(x), dense(x)
        assert torch.allclose(a, b)
        a.square().sum().backward()
        b.square().sum().backward()
        assert torch.allclose(sparse.weight.grad, dense.weight.grad)
        assert torch.allclose(sparse.bias.grad, dense.bias.grad)
    assert sparse._sparse(x) is not None  # it took the sparse path


def test_sparse_input_linear_cache_never_serves_another_tensor_at_the_same_address():
    # A sampled batch's features can be allocated where the previous batch's were freed, with the
    # same shape: an address-keyed cache then multiplied the old batch's rows.
    import copy
    import pickle

    from hgnn.nn.type_encoder import SPARSE_MIN_ELEMENTS, SparseInputLinear

    rng = np.random.default_rng(0)
    rows = SPARSE_MIN_ELEMENTS // 200 + 1
    buf = (rng.random((rows, 200)) < 0.01).astype(np.float64)
    lin = SparseInputLinear(200, 16).double()
    first = torch.from_numpy(buf)
    before = lin(first)
    assert lin._sparse(first) is not None
    buf[:] = (rng.random((rows, 200)) < 0.01)  # new rows in the same memory, no torch version bump
    second = torch.from_numpy(buf)  # another tensor: same address, shape and version
    assert second.data_ptr() == first.data_ptr() and second._version == first._version
    got = lin(second)
    assert not torch.allclose(got, before)
    assert torch.allclose(got, torch.nn.functional.linear(second, lin.weight, lin.bias))
    clone = pickle.loads(pickle.dumps(copy.deepcopy(lin)))  # the cache does not travel
    assert clone._cache is None and torch.allclose(clone(second), got)


def test_per_relation_softmax_matches_a_loop():
    # HGB / DGL: softmax within each relation, then the mean over the relations into a type
    data = random_graph(2)
    _, conv = paired_convs(data)
    conv.softmax = "relation"
    x = {t: torch.randn(data[t].num_nodes, 8, dtype=torch.float64, requires_grad=True)
         for t in data.node_types}
    conv = conv.double()
    got = conv(x, data.edge_index_dict)
    H, D = conv.heads, conv.out_channels // conv.heads
    k, q, m = {}, {}, {}
    for t in data.node_types:
        k[t], q[t], m[t] = (z.reshape(-1, H, D) for z in conv.kqv[t](x[t]).chunk(3, dim=-1))
    sums: dict = {}
    into: dict = {}
    for r, et in enumerate(conv.edge_types):
        src, _, dst = et
        into[dst] = into.get(dst, 0) + 1
        agg = torch.zeros(data[dst].num_nodes, H, D, dtype=torch.float64)
        ei = data[et].edge_index
        for v in range(data[dst].num_nodes):
            us = ei[0][ei[1] == v]
            if us.numel() == 0:
                continue
            for h in range(H):
                keys = k[src][us, h] @ conv.k_rel[r, h]
                score = (keys @ q[dst][v, h]) * conv.p_rel[r, h] / D ** 0.5
                agg[v, h] = torch.softmax(score, 0) @ (m[src][us, h] @ conv.v_rel[r, h])
        sums[dst] = sums.get(dst, 0) + agg
    for t, total in sums.items():
        h = conv.out_lin[t](torch.nn.functional.gelu((total / into[t]).reshape(-1, H * D)))
        gate = torch.sigmoid(conv.skip[conv.node_types.index(t)])
        want = gate * h + (1 - gate) * x[t]
        assert torch.allclose(got[t], want, atol=1e-9)
        g = torch.autograd.grad(got[t].sum(), x[t], retain_graph=True)[0]
        w = torch.autograd.grad(want.sum(), x[t], retain_graph=True)[0]
        assert torch.allclose(g, w, atol=1e-9)
