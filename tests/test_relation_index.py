"""RelationIndex against a direct construction, exact round trips, and the graph transforms."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import RelationIndex, relation_index
from hgnn.data.transforms import (
    add_reverse,
    drop_duplicate_reverses,
    find_duplicate_reverses,
    random_features,
)


def random_graph(seed: int = 0) -> HeteroData:
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    sizes = {"a": 7, "b": 5, "c": 3}
    for t, n in sizes.items():
        data[t].num_nodes = n
    rels = [("a", "x", "b", 20), ("b", "y", "a", 15), ("a", "self", "a", 12), ("b", "e", "c", 0),
            ("c", "z", "a", 9)]
    for s, r, d, e in rels:
        ei = torch.stack([torch.randint(0, sizes[s], (e,), generator=g),
                          torch.randint(0, sizes[d], (e,), generator=g)])
        data[s, r, d].edge_index = ei  # multi-edges likely, one empty relation
    return data


def test_round_trip_and_layout():
    data = random_graph()
    ri = RelationIndex.from_data(data)
    back = ri.to_edge_index_dict()
    for et in data.edge_types:
        assert torch.equal(back[et], data[et].edge_index)
    assert ri.num_edges == sum(data[et].num_edges for et in data.edge_types)
    assert int(ri.col_ptr[-1]) == ri.num_edges and int(ri.row_ptr[-1]) == ri.num_edges
    for r, (s, _, d) in enumerate(ri.edge_types):
        a, b = int(ri.rel_ptr[r]), int(ri.rel_ptr[r + 1])
        ei = data[ri.edge_types[r]].edge_index
        # Degrees against a direct count.
        assert torch.equal(ri.in_degree(r), torch.bincount(ei[1], minlength=data[d].num_nodes))
        assert torch.equal(ri.out_degree(r), torch.bincount(ei[0], minlength=data[s].num_nodes))
        # CSC: sorted by (dst, src); each segment lists exactly the in-edges of its node.
        key = ri.dst[a:b] * data[s].num_nodes + ri.src[a:b]
        assert torch.equal(key, torch.sort(key).values)
        for v in range(data[d].num_nodes):
            seg = int(ri.seg_offset[r]) + v
            lo, hi = int(ri.col_ptr[seg]), int(ri.col_ptr[seg + 1])
            assert sorted(ri.src[lo:hi].tolist()) == sorted(ei[0, ei[1] == v].tolist())
    # CSR positions are a permutation of CSC edges, grouped by (relation, source).
    assert torch.equal(torch.sort(ri.csr_perm).values, torch.arange(ri.num_edges))
    rel_of_edge = torch.repeat_interleave(torch.arange(ri.num_relations), ri.rel_ptr.diff())
    seg = ri.src_seg_offset[rel_of_edge] + ri.src
    assert torch.equal(seg[ri.csr_perm], torch.sort(seg).values)


def test_reverse_map_by_name_and_by_content():
    data = random_graph()
    ei = data["a", "x", "b"].edge_index
    data["b", "back", "a"].edge_index = ei.flip(0)[:, torch.randperm(ei.size(1))]
    ri = RelationIndex.from_data(data)
    assert ri.reverse[ri.relation(("a", "x", "b"))] == ri.relation(("b", "back", "a"))
    assert ri.reverse[ri.relation(("b", "y", "a"))] == -1
    del data["b", "back", "a"]
    add_reverse(data, symmetrise_same_type=False)
    ri = RelationIndex.from_data(data)
    rel = ri.relation
    assert ri.reverse[rel(("a", "x", "b"))] == rel(("b", "rev_x", "a"))
    assert ri.reverse[rel(("c", "z", "a"))] == rel(("a", "rev_z", "c"))
    assert ri.reverse[rel(("a", "rev_z", "c"))] == rel(("c", "z", "a"))
    assert ri.reverse[rel(("a", "self", "a"))] == rel(("a", "rev_self", "a"))


def test_cache_is_reused_until_edges_change():
    data = random_graph()
    ri = relation_index(data)
    assert relation_index(data) is ri
    data["a", "x", "b"].edge_index = data["a", "x", "b"].edge_index[:, :5]
    assert relation_index(data) is not ri


def test_cache_misses_for_a_replaced_edge_tensor_of_the_same_shape():
    # Freed first, the old tensor's id goes to the replacement (same shape, version 0): the cache
    # holds the old tensor so that this cannot happen.
    data = random_graph()
    et = ("a", "x", "b")
    ri = relation_index(data)
    flipped = data[et].edge_index.flip(1).clone()
    del data[et].edge_index
    data[et].edge_index = flipped.clone()
    assert relation_index(data) is not ri


def test_edge_weights_follow_csc_order():
    data = random_graph()
    w = torch.rand(data["a", "x", "b"].num_edges)
    data["a", "x", "b"].edge_weight = w
    ri = RelationIndex.from_data(data)
    r = ri.relation(("a", "x", "b"))
    a, b = int(ri.rel_ptr[r]), int(ri.rel_ptr[r + 1])
    assert torch.equal(ri.edge_weight[a:b], w[ri.edge_id[a:b]])
    assert torch.all(ri.edge_weight[: int(ri.rel_ptr[r])] == 1)


def test_transforms():
    data = random_graph()
    ei = data["a", "x", "b"].edge_index
    data["b", "dup", "a"].edge_index = ei.flip(0)
    assert find_duplicate_reverses(data) == {("b", "dup", "a"): ("a", "x", "b")}
    drop_duplicate_reverses(data)
    assert ("b", "dup", "a") not in data.edge_types
    add_reverse(data)
    assert torch.equal(data["b", "rev_x", "a"].edge_index, ei.flip(0))
    sym = data["a", "self", "a"].edge_index
    pairs = set(map(tuple, sym.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs) and len(pairs) == sym.size(1)
    random_features(data, 16, seed=1)
    x1 = data["c"].x.clone()
    assert data["c"].x.shape == (3, 16)
    del data["c"].x
    random_features(data, 16, seed=1)
    assert torch.equal(x1, data["c"].x)
    assert abs(float(data["a"].x.pow(2).sum(1).mean()) - 1.0) < 0.6  # N(0, 1/d): unit norm


def test_add_reverse_only_missing():
    data = random_graph()
    ei = data["a", "x", "b"].edge_index
    data["b", "back", "a"].edge_index = ei.flip(0)
    add_reverse(data, symmetrise_same_type=False, only_missing=True)
    assert ("b", "rev_x", "a") not in data.edge_types  # "back" already reverses it
    assert ("a", "rev_back", "b") not in data.edge_types
    assert ("a", "rev_y", "b") in data.edge_types and ("a", "rev_z", "c") in data.edge_types
