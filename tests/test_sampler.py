"""The neighbour sampler against direct checks on small graphs."""
from __future__ import annotations

import torch

from hgnn.data.sampler import NeighborLoader, NeighborSampler, _sample_segments
from tests.test_relation_index import random_graph


def edge_set(data, et):
    ei = data[et].edge_index
    return set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))


def test_sampled_edges_exist_and_fanout_is_respected():
    data = random_graph(1)
    for t in data.node_types:
        data[t].x = torch.randn(data[t].num_nodes, 4)
    k = 2
    sampler = NeighborSampler(data, [k, k])
    seeds = torch.tensor([0, 3, 5])
    batch = sampler.sample("a", seeds, torch.Generator().manual_seed(0))
    assert batch["a"].batch_size == 3 and torch.equal(batch["a"].n_id[:3], seeds)
    for t in data.node_types:
        assert torch.equal(batch[t].x, data[t].x[batch[t].n_id])
        assert batch[t].n_id.unique().numel() == batch[t].n_id.numel()
    for et in data.edge_types:
        ei = batch[et].edge_index
        src, dst = batch[et[0]].n_id[ei[0]], batch[et[2]].n_id[ei[1]]
        full = edge_set(data, et)
        pairs = list(zip(src.tolist(), dst.tolist(), strict=True))
        assert all(p in full for p in pairs)
        # Only hop 1 samples into the seeds: each keeps exactly min(k, in-degree) in-edges.
        if et[2] == "a":
            for v in seeds.tolist():
                deg = sum(1 for _, d in full_multi(data, et) if d == v)
                got = sum(1 for _, d in pairs if d == v)
                assert got == min(k, deg)


def full_multi(data, et):
    ei = data[et].edge_index
    return list(zip(ei[0].tolist(), ei[1].tolist(), strict=True))


def test_segment_sampling_is_uniform_without_replacement():
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(12)
    for _ in range(3000):
        pos, owner = _sample_segments(torch.tensor([0, 10]), torch.tensor([10, 2]), 3, gen)
        big = pos[owner == 0]
        assert big.unique().numel() == 3 and ((big >= 0) & (big < 10)).all()
        assert sorted(pos[owner == 1].tolist()) == [10, 11]  # small segment: all edges
        counts[big] += 1
    freq = counts[:10] / 3000
    assert torch.allclose(freq, torch.full((10,), 0.3), atol=0.04)


def test_loader_is_deterministic_and_covers_seeds():
    data = random_graph(2)
    ids = torch.arange(7)
    a = [b["a"].n_id[: b["a"].batch_size] for b in NeighborLoader(
        data, [3], ("a", ids), batch_size=3, shuffle=True,
        generator=torch.Generator().manual_seed(5))]
    b = [b["a"].n_id[: b["a"].batch_size] for b in NeighborLoader(
        data, [3], ("a", ids), batch_size=3, shuffle=True,
        generator=torch.Generator().manual_seed(5))]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert sorted(torch.cat(a).tolist()) == list(range(7))
