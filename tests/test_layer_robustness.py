"""The layers in the cases a PyG user meets: a sampled batch in which a node type has no nodes,
batches built under ``torch.inference_mode``, a ``HeteroData`` in place of the two dicts, and
malformed edge indices, which must be refused with a message instead of computing on garbage (or
reading outside a kernel's tables). Also the graph preparation those inputs go through: empty
node types dropped, NormalizeFeatures, neighbour-mean inputs for featureless types."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.data import HeteroData

from hgnn.nn import (
    LATTE,
    GTNConv,
    H2GFormerLayer,
    HGTConv,
    LATTEConv,
    RelationFusing,
    RGCNConv,
    RHGNNConv,
)
from hgnn.ops import Segments, cpu, segment_spmm
from hgnn.train.graph import prepare_graph

BACKENDS = ["reference"] + (["cpu"] if cpu.available() else [])
WRITES, REV_WRITES = ("author", "writes", "paper"), ("paper", "rev_writes", "author")
CITES, IN, HAS = ("paper", "cites", "paper"), ("paper", "in", "venue"), ("venue", "has", "paper")
WIDTH = 8


def graph(num_venues: int = 3) -> HeteroData:
    """6 authors, 5 papers and ``num_venues`` venues, every relation with its reverse."""
    gen = torch.Generator().manual_seed(0)
    data = HeteroData()
    for t, n in (("author", 6), ("paper", 5), ("venue", num_venues)):
        data[t].x = torch.randn(n, WIDTH, generator=gen)
    writes = torch.tensor([[0, 1, 2, 3, 4, 5, 0], [0, 0, 1, 2, 3, 4, 4]])
    data[WRITES].edge_index = writes
    data[REV_WRITES].edge_index = writes.flip(0)
    data[CITES].edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    published = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]]) if num_venues else \
        torch.zeros(2, 0, dtype=torch.long)
    data[IN].edge_index = published
    data[HAS].edge_index = published.flip(0)
    return data


def layers(data: HeteroData) -> dict[str, tuple[torch.nn.Module, callable]]:
    """Each layer with the call that runs it on ``(x_dict, edge_index_dict)``."""
    torch.manual_seed(0)
    meta = data.metadata()
    rel = torch.randn(len(meta[1]), 4)
    rh = RHGNNConv(WIDTH, 4, meta, heads=2, relation_in_channels=4, reverse={IN: HAS, HAS: IN})
    return {
        "RGCNConv": (RGCNConv(WIDTH, WIDTH, meta[1], meta[0]), None),
        "HGTConv": (HGTConv(WIDTH, WIDTH, meta, heads=2), None),
        "H2GFormerLayer": (H2GFormerLayer(WIDTH, meta, heads=2), None),
        "LATTEConv": (LATTEConv(WIDTH, WIDTH, meta[0], meta[1], heads=2, attn_dropout=0.5), None),
        "LATTE": (LATTE(WIDTH, meta[0], meta[1], num_layers=2, heads=2, attn_dropout=0.5), None),
        "RHGNNConv": (rh, lambda m, x, e: m(x, e, rel)[0]),
    }


def run(layer, call, x, e):
    return call(layer, x, e) if call is not None else layer(x, e)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spmm_over_an_empty_table(backend):
    """A type with no nodes in a batch: its table is [0, F] and every segment is empty. The
    compiled backend sized its flat view with -1, which an empty tensor cannot infer."""
    seg = Segments(torch.zeros(4, dtype=torch.long), torch.zeros(0, dtype=torch.long), 0)
    for shape in ((0, 5), (0, 2, 3)):
        x = torch.zeros(shape, requires_grad=True)
        out = segment_spmm(x, seg, None, "sum", backend=backend)
        assert out.shape == (3,) + shape[1:] and not out.any()
        out.sum().backward()
        assert x.grad.shape == shape


@pytest.mark.parametrize("name", ["RGCNConv", "HGTConv", "H2GFormerLayer", "LATTEConv", "LATTE",
                                  "RHGNNConv"])
def test_a_type_without_nodes_trains(name):
    """The venues of a sampled batch can be none; LATTE's attention path (attention dropout in
    training, every layer before the last) crashed on their empty table."""
    data = graph(num_venues=0)
    layer, call = layers(graph())[name]
    layer.train()
    out = run(layer, call, data.x_dict, data.edge_index_dict)
    tensors = list(out.values())
    sum(t.sum() for t in tensors).backward()
    assert all(torch.isfinite(t).all() for t in tensors)
    assert any(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("name", ["RGCNConv", "HGTConv", "H2GFormerLayer", "LATTEConv", "LATTE",
                                  "RHGNNConv"])
def test_batches_built_under_inference_mode(name):
    """``@torch.inference_mode()`` evaluation loops build their batches inside it; the graph
    caches read the edge tensors' version counters, which inference tensors do not have. The
    result equals the no_grad one, and an inference batch is not cached."""
    data = graph()
    layer, call = layers(data)[name]
    layer.eval()
    with torch.no_grad():
        expected = run(layer, call, data.x_dict, data.edge_index_dict)
    with torch.inference_mode():
        batch = data.subgraph({t: torch.arange(data[t].num_nodes) for t in data.node_types})
        got = run(layer, call, batch.x_dict, batch.edge_index_dict)
    assert expected.keys() == got.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["RGCNConv", "HGTConv", "H2GFormerLayer", "LATTEConv", "LATTE",
                                  "GTNConv"])
def test_a_heterodata_stands_for_both_dicts(name):
    data = graph()
    if name == "GTNConv":
        layer = GTNConv(WIDTH, 4, len(data.edge_types) + 1, channels=2, layers=1)  # + identity
    else:
        layer = layers(data)[name][0]
    layer.eval()
    expected = layer(data.x_dict, data.edge_index_dict)
    got = layer(data)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="either a HeteroData or x_dict and edge_index_dict"):
        layer(data, data.edge_index_dict)
    with pytest.raises(ValueError, match="edge_index_dict is missing"):
        layer(data.x_dict)
    del data["venue"].x  # a type without features is left out, as from data.x_dict by hand
    data["venue"].num_nodes = 3
    if name == "GTNConv":  # selects relations by position: it cannot leave one out
        with pytest.raises(ValueError, match="joins a node type missing from x_dict"):
            layer(data)
        return
    expected = layer(data.x_dict, data.edge_index_dict)
    got = layer(data)
    assert got.keys() == expected.keys() and "venue" not in data.x_dict
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)


def test_rhgnn_conv_takes_a_heterodata_and_the_relation_embedding():
    data = graph()
    torch.manual_seed(0)
    conv = RHGNNConv(WIDTH, 4, data.metadata(), heads=2, relation_in_channels=4,
                     reverse={IN: HAS, HAS: IN}).eval()
    rel = torch.randn(len(data.edge_types), 4)
    expected, _ = conv(data.x_dict, data.edge_index_dict, rel)
    for got, _ in (conv(data, rel), conv(data, relation_embedding=rel)):
        for k in expected:
            torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="RHGNNConv needs relation_embedding"):
        conv(data)


BAD_EDGES = {
    "transposed": (torch.tensor([[0, 0], [1, 0], [2, 1]]), r"shape \[2, num_edges\].*transposed"),
    "float": (torch.tensor([[0.0, 1.0], [0.0, 0.0]]), "integer dtype"),
    "one-dimensional": (torch.tensor([0, 1, 2]), r"shape \[2, num_edges\], got \[3\]"),
    "out of range": (torch.tensor([[0, 99], [0, 0]]), "ids outside"),
    "negative": (torch.tensor([[0, -1], [0, 0]]), "ids outside"),
}


@pytest.mark.parametrize("case", list(BAD_EDGES))
@pytest.mark.parametrize("name", ["RGCNConv", "HGTConv", "H2GFormerLayer", "LATTEConv", "LATTE",
                                  "RHGNNConv"])
def test_malformed_edge_index_is_refused(name, case):
    """A transposed [E, 2] or float edge_index was read as other edges, silently."""
    data = graph()
    layer, call = layers(data)[name]
    edges = dict(data.edge_index_dict)
    edges[WRITES], pattern = BAD_EDGES[case]
    with pytest.raises(ValueError, match=pattern):
        run(layer, call, data.x_dict, edges)


def test_a_chain_with_ids_out_of_range_is_refused():
    """LATTE's order-2 meta-relations are given as chains; the kernels index their ids without
    bounds checks, so an id past the table read outside it (a segfault for a large one)."""
    data = graph()
    chain = (REV_WRITES, WRITES)  # paper <- author <- paper
    conv = LATTEConv(WIDTH, WIDTH, data.node_types, [chain], heads=2)
    ok = {chain: torch.tensor([[0, 1], [1, 2]])}
    assert conv(data.x_dict, ok)["paper"].shape == (5, WIDTH)
    for bad in (torch.tensor([[0, 10 ** 9], [1, 2]]), torch.tensor([[0, 1], [-3, 2]])):
        with pytest.raises(ValueError, match="paper__rev_writes__author__writes__paper has ids outside"):
            conv(data.x_dict, {chain: bad})


def test_latte_leaves_out_relations_of_a_type_missing_from_x_dict():
    """As LATTEConv (and every other layer here) does, instead of a KeyError on the type."""
    data = graph()
    latte = LATTE(WIDTH, data.node_types, data.edge_types, num_layers=2, heads=2).eval()
    x = {t: v for t, v in data.x_dict.items() if t != "venue"}
    out = latte(x, data.edge_index_dict)
    assert set(out) == {"author", "paper"}
    without = {et: ei for et, ei in data.edge_index_dict.items() if "venue" not in (et[0], et[2])}
    torch.testing.assert_close(out["paper"], latte(x, without)["paper"], rtol=0, atol=0)


def test_relation_fusing_checks_its_inputs():
    types = [WRITES, CITES, HAS]
    fusing = RelationFusing(types, heads=2, channels=4, relation_channels=3)
    state = {et: torch.randn(5, 8) for et in types}
    rel = torch.randn(3, 6)
    z, beta = fusing(state, rel)
    assert z.shape == (5, 8) and beta.shape == (5, 2, 3)
    with pytest.raises(ValueError, match=r"state of .* must be \[5, 8\].*got \[5, 16\]"):
        fusing({**state, CITES: torch.randn(5, 16)}, rel)
    with pytest.raises(ValueError, match=r"state of .* must be \[5, 8\].*got \[4, 8\]"):
        fusing({**state, HAS: torch.randn(4, 8)}, rel)
    with pytest.raises(ValueError, match=r"relation_embedding must be \[3, 6\].*got \[7, 6\]"):
        fusing(state, torch.randn(7, 6))  # every relation's embedding, not the fused ones'


def test_empty_node_types_are_dropped_before_a_model_sees_them():
    """A node type with no nodes at all (an H2GB fixture's empty value columns) gave its id input
    a width of -0; it is dropped with its (edgeless) relations, the target never."""
    from hgnn.data.task import TaskSpec
    from hgnn.train.config import TRAIN_DEFAULTS

    data = graph(num_venues=0)
    data["venue"].x = torch.arange(0)
    del data["author"].x
    data["author"].num_nodes = 6
    record: dict = {}
    prepare_graph(data, TaskSpec("paper", 2), dict(TRAIN_DEFAULTS["graph"]), seed=0,
                  record=record)
    assert record["dropped_empty_node_types"] == ["venue"]
    assert data.node_types == ["author", "paper"]
    assert all("venue" not in (et[0], et[2]) for et in data.edge_types)
    target_empty = graph(num_venues=0)
    prepare_graph(target_empty, TaskSpec("venue", 2), dict(TRAIN_DEFAULTS["graph"]), seed=0)
    assert "venue" in target_empty.node_types


def test_normalize_features_is_pygs_normalize_features():
    """graph.normalize_features (H2GB's NormalizeFeatures on IEEE-CIS-G), on the kept float
    features only: node-id inputs made afterwards for featureless types are left alone."""
    import torch_geometric.transforms as T

    from hgnn.data.task import TaskSpec
    from hgnn.train.config import TRAIN_DEFAULTS

    data = graph()
    data["paper"].x = data["paper"].x.abs() * 3  # rows summing above 1
    del data["venue"].x
    data["venue"].num_nodes = 3
    want = graph()
    want["paper"].x = want["paper"].x.abs() * 3
    want = T.NormalizeFeatures()(want)
    config = {**TRAIN_DEFAULTS["graph"], "normalize_features": True}
    prepare_graph(data, TaskSpec("paper", 2), config, seed=0)
    for t in ("author", "paper"):
        torch.testing.assert_close(data[t].x, want[t].x)
    assert torch.equal(data["venue"].x, torch.arange(3))


def test_featureless_mean_averages_featured_neighbours_round_by_round():
    """graph.featureless: mean (H2GB's mag-year): authors get their papers' mean, then venues,
    whose only in-neighbours are authors here, their authors' mean; a node with no such neighbour
    gets zeros, and a type no featured type reaches keeps random inputs."""
    from hgnn.data.task import TaskSpec
    from hgnn.train.config import TRAIN_DEFAULTS

    data = HeteroData()
    data["paper"].x = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    data["author"].num_nodes = 3
    data["venue"].num_nodes = 2
    data["island"].num_nodes = 2
    data["paper", "rev_writes", "author"].edge_index = torch.tensor([[0, 1, 2], [0, 0, 1]])
    data["author", "in", "venue"].edge_index = torch.tensor([[0, 1], [0, 0]])
    data["island", "near", "island"].edge_index = torch.tensor([[0], [1]])
    config = {**TRAIN_DEFAULTS["graph"], "featureless": "mean", "add_reverse": "none",
              "random_dim": 4}
    prepare_graph(data, TaskSpec("paper", 2), config, seed=0)
    torch.testing.assert_close(data["author"].x, torch.tensor([[2.0, 1.0], [5.0, 4.0], [0.0, 0.0]]))
    torch.testing.assert_close(data["venue"].x, torch.tensor([[3.5, 2.5], [0.0, 0.0]]))
    assert data["island"].x.shape == (2, 4) and data["island"].x.is_floating_point()


@pytest.mark.parametrize("name", ["RGCNConv", "HGTConv", "H2GFormerLayer", "LATTEConv", "LATTE",
                                  "RHGNNConv"])
def test_relations_a_layer_was_not_built_for_are_left_out_with_one_warning(name):
    """A layer built from the metadata before ToUndirected added reverse relations ignored them
    without a word (PyG's HeteroConv does too; its HGTConv raises)."""
    from hgnn.nn.graph_input import UnknownRelationWarning

    data = graph()
    layer, call = layers(data)[name]
    layer.eval()
    extra = dict(data.edge_index_dict)
    extra[("author", "knows", "author")] = torch.tensor([[0, 1], [1, 0]])
    expected = run(layer, call, data.x_dict, data.edge_index_dict)
    with pytest.warns(UnknownRelationWarning, match=r"leaves out relations it was not built for: "
                                                    r"\[\('author', 'knows', 'author'\)\]"):
        got = run(layer, call, data.x_dict, extra)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownRelationWarning)
        run(layer, call, data.x_dict, extra)  # once per layer
