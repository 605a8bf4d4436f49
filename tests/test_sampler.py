"""The neighbour sampler against direct checks on small graphs."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from hgnn.data.sampler import NeighborLoader, NeighborSampler, _sample_segments, layer_edges
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


def two_relation_star(num_b: int = 9) -> HeteroData:
    """Target node 0 of type t with one in-edge from relation a and ``num_b`` from relation b."""
    data = HeteroData()
    data["t"].num_nodes, data["s"].num_nodes = 1, 1 + num_b
    data["s", "a", "t"].edge_index = torch.tensor([[0], [0]])
    data["s", "b", "t"].edge_index = torch.stack([torch.arange(1, 1 + num_b),
                                                  torch.zeros(num_b, dtype=torch.long)])
    return data


def test_joint_sampling_draws_k_over_all_relations_together():
    data = two_relation_star()
    joint, per_relation = NeighborSampler(data, [1], joint=True), NeighborSampler(data, [1])
    gen = torch.Generator().manual_seed(0)
    from_a = 0
    for _ in range(2000):
        batch = joint.sample("t", torch.tensor([0]), gen)
        n_a, n_b = batch["s", "a", "t"].num_edges, batch["s", "b", "t"].num_edges
        assert n_a + n_b == 1
        from_a += n_a
    assert abs(from_a / 2000 - 0.1) < 0.03  # 1 of the node's 10 in-edges
    batch = per_relation.sample("t", torch.tensor([0]), gen)
    assert batch["s", "a", "t"].num_edges == 1 and batch["s", "b", "t"].num_edges == 1


def test_joint_sampling_redraws_earlier_nodes_at_every_hop():
    data = two_relation_star()
    joint = NeighborSampler(data, [1, 1], joint=True)
    gen = torch.Generator().manual_seed(0)
    sizes = set()
    for _ in range(200):
        batch = joint.sample("t", torch.tensor([0]), gen)
        edges = [(int(s), int(d)) for et in batch.edge_types
                 for s, d in batch[et].edge_index.t()]
        assert len(edges) == len(set(edges))  # a repeated draw is merged, not duplicated
        sizes.add(len(edges))
    assert sizes == {1, 2}  # the seed's second draw is a new neighbour or the first one again
    batch = NeighborSampler(data, [1, 1]).sample("t", torch.tensor([0]), gen)
    assert batch["s", "b", "t"].num_edges == 1  # per relation: only hop 1 samples into the seed


def global_pairs(batch, et) -> set:
    ei = batch[et].edge_index
    return set(zip(batch[et[0]].n_id[ei[0]].tolist(), batch[et[2]].n_id[ei[1]].tolist(),
                   strict=True))


def test_joint_sampling_with_every_neighbour_matches_per_relation():
    data = random_graph(1)
    seeds = torch.tensor([0, 3, 5])
    joint = NeighborSampler(data, [-1, -1], joint=True).sample("a", seeds)
    per_relation = NeighborSampler(data, [-1, -1]).sample("a", seeds)
    for t in data.node_types:
        assert set(joint[t].n_id.tolist()) == set(per_relation[t].n_id.tolist())
    for et in data.edge_types:
        assert global_pairs(joint, et) == global_pairs(per_relation, et)
    with pytest.raises(ValueError, match="joint"):
        NeighborSampler(data, {et: [1] for et in data.edge_types}, joint=True)


@pytest.mark.parametrize("joint", [False, True])
def test_blocked_nodes_stay_out_of_the_batch(joint):
    data = random_graph(3)
    blocked = torch.zeros(data["a"].num_nodes, dtype=torch.bool)
    blocked[[1, 2, 4]] = True
    seeds = torch.tensor([0, 2])  # a blocked seed is still scored
    sampler = NeighborSampler(data, [-1, -1], joint=joint, blocked=blocked)
    batch = sampler.sample("a", seeds)
    kept = batch["a"].n_id
    assert torch.equal(kept[:2], seeds)
    assert not blocked[kept[2:]].any()
    full = NeighborSampler(data, [-1, -1], joint=joint).sample("a", seeds)
    assert blocked[full["a"].n_id[2:]].any()  # the graph does reach them


def test_blocks_redraw_every_reached_node_and_give_each_layer_its_hop():
    data = random_graph(1)
    seeds = torch.tensor([0, 3, 5])
    k0, k1 = 2, 1
    batch = NeighborSampler(data, [k0, k1], blocks=True).sample(
        "a", seeds, torch.Generator().manual_seed(0))
    first, last = layer_edges(batch, 2)
    after_hop0 = {t: set() for t in data.node_types}
    after_hop0["a"] = set(seeds.tolist())
    for et in data.edge_types:
        full = set(full_multi(data, et))
        ei = batch[et].edge_index
        assert ei.size(1) == last[et].size(1) + first[et].size(1)
        for layer, k in ((last, k0), (first, k1)):
            src = batch[et[0]].n_id[layer[et][0]].tolist()
            dst = batch[et[2]].n_id[layer[et][1]].tolist()
            assert all(p in full for p in zip(src, dst, strict=True))
            for v in set(dst):  # each destination keeps at most k of this relation's in-edges
                assert dst.count(v) <= k
        # the last layer reads the seeds' own draws only
        assert set(batch[et[2]].n_id[last[et][1]].tolist()) <= \
            (set(seeds.tolist()) if et[2] == "a" else set())
        after_hop0[et[0]] |= set(batch[et[0]].n_id[last[et][0]].tolist())
    # the first layer's destinations are every node reached by hop 0, seeds included
    for et in data.edge_types:
        dst = set(batch[et[2]].n_id[first[et][1]].tolist())
        assert dst <= after_hop0[et[2]]
        if et[2] == "a":  # the seeds are drawn again for their first-layer states
            with_in_edges = {d for _, d in full_multi(data, et)} & set(seeds.tolist())
            assert with_in_edges <= dst
    with pytest.raises(ValueError, match="joint and blocks"):
        NeighborSampler(data, [1, 1], joint=True, blocks=True)


def test_blocks_with_every_neighbour_give_each_layer_all_in_edges():
    data = random_graph(1)
    seeds = torch.tensor([0, 3])
    batch = NeighborSampler(data, [-1, -1], blocks=True).sample("a", seeds)
    first, last = layer_edges(batch, 2)
    for et in data.edge_types:
        full = full_multi(data, et)
        if et[2] == "a":  # the seeds read all their in-edges at both layers
            want = sorted((s, d) for s, d in full if d in (0, 3))
            for layer in (first, last):
                got = [(s, d) for s, d in zip(batch[et[0]].n_id[layer[et][0]].tolist(),
                                              batch[et[2]].n_id[layer[et][1]].tolist(),
                                              strict=True) if d in (0, 3)]
                assert sorted(got) == want
