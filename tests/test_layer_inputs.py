"""PyG's input-width conventions on hgnn's layers: ``-1`` sizes a width at the first forward, a
``{node_type: width}`` dict sizes each type's projection, and the layers that cannot take one of
them say what they take. Each lazy layer is checked against the same layer built with explicit
widths and given its parameters after the first forward, through ``state_dict`` round trips (into
a sized layer and into a fresh lazy one, before any forward), ``reset_parameters()`` and a second
forward."""
from __future__ import annotations

import io

import pytest
import torch
from torch.nn.parameter import UninitializedParameter
from torch_geometric.nn import HGTConv as PygHGTConv

from hgnn.nn import (
    LATTE,
    GTNConv,
    H2GFormerLayer,
    HGTConv,
    LATTEConv,
    RelationFusing,
    RGCNConv,
    RHGNNConv,
    RpHGNNEncoder,
    TypeEncoder,
)
from tests.test_gtn import SIZES as GTN_SIZES
from tests.test_gtn import tiny_edges as gtn_edges
from tests.test_hgt_conv import copy_pyg_parameters
from tests.test_latte import AR, BW, BX, CE, CY, tiny_edges, tiny_x
from tests.test_latte import SIZES as LATTE_SIZES
from tests.test_relation_index import random_graph
from tests.test_rhgnn import D_REL, F_IN, F_REL, WRITES, D, H, tiny_graph


def tensors(out) -> list[torch.Tensor]:
    """Every tensor of a layer's output (tensor, dict or tuple), in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for k in sorted(out, key=str) for v in tensors(out[k])]
    if isinstance(out, tuple | list):
        return [v for o in out for v in tensors(o)]
    return []


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and torch.allclose(x, y, rtol=0, atol=0)


def check_lazy(make_lazy, make_sized, run):
    """The lazily sized layer (``make_lazy()``) against ``make_sized()`` given its parameters after
    the first ``run(layer)``; the same parameters restored into a fresh lazy layer without a
    forward; ``reset_parameters()`` then a second forward. Returns the lazy layer."""
    torch.manual_seed(0)
    lazy = make_lazy().eval()
    assert lazy.has_lazy()
    before = lazy.state_dict()  # works while unsized, and restores as unsized
    assert any(isinstance(v, UninitializedParameter) for v in before.values())
    still = make_lazy()
    still.load_state_dict(before)
    assert still.has_lazy()

    got = tensors(run(lazy))
    assert not lazy.has_lazy()
    state = lazy.state_dict()
    sized = make_sized().eval()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in sized.state_dict().items()}
    sized.load_state_dict(state)
    assert_same(tensors(run(sized)), got)

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = make_lazy().eval()
    fresh.load_state_dict(torch.load(buffer))  # sized by the checkpoint, no forward needed
    assert not fresh.has_lazy()
    assert_same(tensors(run(fresh)), got)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in state.items()}

    lazy.reset_parameters()
    again = tensors(run(lazy))
    assert [t.shape for t in again] == [t.shape for t in got]
    assert not all(torch.equal(x, y) for x, y in zip(again, got, strict=True))
    return lazy


# --- HGTConv --------------------------------------------------------------------------------------

HGT_WIDTHS = {"a": 5, "b": 8, "c": 3}  # b's width is the output's: the gated skip applies to it


def hgt_inputs(data, widths: dict[str, int]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {t: torch.randn(data[t].num_nodes, widths[t], generator=gen) for t in data.node_types}


@pytest.mark.parametrize("in_channels", [-1, {"a": -1, "b": -1, "c": -1}, {"a": 5, "b": -1, "c": 3}])
def test_hgt_lazy_and_per_type_widths(in_channels):
    data = random_graph(0)
    x = hgt_inputs(data, HGT_WIDTHS)
    lazy = check_lazy(lambda: HGTConv(in_channels, 8, data.metadata(), heads=2),
                      lambda: HGTConv(dict(HGT_WIDTHS), 8, data.metadata(), heads=2),
                      lambda conv: conv(x, data.edge_index_dict))
    assert lazy.in_channels == HGT_WIDTHS


def test_hgt_one_lazy_width_stays_an_int():
    data = random_graph(0)
    x = hgt_inputs(data, {t: 8 for t in data.node_types})
    lazy = check_lazy(lambda: HGTConv(-1, 8, data.metadata(), heads=2),
                      lambda: HGTConv(8, 8, data.metadata(), heads=2),
                      lambda conv: conv(x, data.edge_index_dict))
    assert lazy.in_channels == 8 and "HGTConv(8, 8" in repr(lazy)


@pytest.mark.parametrize("lazy", [False, True])
def test_hgt_per_type_widths_match_pyg(lazy):
    data = random_graph(3)
    x = hgt_inputs(data, HGT_WIDTHS)
    in_channels = {t: -1 for t in HGT_WIDTHS} if lazy else dict(HGT_WIDTHS)
    torch.manual_seed(0)
    pyg = PygHGTConv(in_channels, 8, data.metadata(), heads=2)
    ours = HGTConv(in_channels, 8, data.metadata(), heads=2)
    if lazy:  # both size themselves at their first forward
        pyg(x, data.edge_index_dict)
        ours(x, data.edge_index_dict)
    copy_pyg_parameters(pyg, ours, data)
    want, got = pyg(x, data.edge_index_dict), ours(x, data.edge_index_dict)
    want = {t: v for t, v in want.items() if v is not None}
    assert set(want) == set(got)
    for t in want:
        assert torch.allclose(want[t], got[t], atol=1e-5)


def test_hgt_type_absent_from_the_first_forward_stays_lazy():
    data = random_graph(0)
    x = hgt_inputs(data, HGT_WIDTHS)
    conv = HGTConv(-1, 8, data.metadata(), heads=2)
    conv({t: x[t] for t in ("a", "b")}, data.edge_index_dict)
    assert conv.in_channels == {"a": 5, "b": 8, "c": -1}
    state = conv.state_dict()  # one weight unsized: saved as it is
    assert isinstance(state["kqv.c.weight"], UninitializedParameter)
    restored = HGTConv(-1, 8, data.metadata(), heads=2)
    restored.load_state_dict(state)
    assert restored.in_channels == {"a": 5, "b": 8, "c": -1}
    for layer in (conv, restored):
        out = layer(x, data.edge_index_dict)  # c arrives: sized now
        assert not layer.has_lazy() and layer.in_channels == HGT_WIDTHS
        assert all(v.shape[-1] == 8 for v in out.values())
    with pytest.raises(RuntimeError, match="uninitialized parameter"):
        HGTConv(dict(HGT_WIDTHS), 8, data.metadata(), heads=2).load_state_dict(state)


def test_lazy_layer_inside_a_model_saves_and_restores():
    data = random_graph(0)
    x = hgt_inputs(data, HGT_WIDTHS)

    def model():
        return torch.nn.ModuleDict({"enc": TypeEncoder(-1, 8, node_types=data.node_types),
                                    "conv": HGTConv(-1, 8, data.metadata(), heads=2)}).eval()

    def run(m):
        return m["conv"](m["enc"](x), data.edge_index_dict)

    torch.manual_seed(0)
    first = model()
    unsized = first.state_dict()
    assert isinstance(unsized["enc.proj.a.weight"], UninitializedParameter)
    assert unsized["conv.kqv.a.weight"].__class__ is UninitializedParameter
    got = tensors(run(first))
    restored = model()
    restored.load_state_dict(first.state_dict())
    assert restored["enc"].in_channels == HGT_WIDTHS and restored["conv"].in_channels == 8
    assert_same(tensors(run(restored)), got)


def test_hgt_lazy_follows_dtype_set_before_the_first_forward():
    data = random_graph(0)
    conv = HGTConv(-1, 8, data.metadata(), heads=2).double()
    x = {t: v.double() for t, v in hgt_inputs(data, HGT_WIDTHS).items()}
    out = conv(x, data.edge_index_dict)
    assert conv.kqv["a"].weight.dtype == torch.float64
    assert all(v.dtype == torch.float64 for v in out.values())


def test_hgt_clear_errors():
    meta = (["a", "b"], [("a", "to", "b")])
    with pytest.raises(ValueError, match=r"every node type.*missing \['b'\]"):
        HGTConv({"a": 4}, 8, meta)
    with pytest.raises(ValueError, match=r"unknown \['z'\]"):
        HGTConv({"a": 4, "b": 4, "z": 4}, 8, meta)
    for bad in (0, -2, 2.5, None):
        with pytest.raises(ValueError, match="positive int or -1"):
            HGTConv(bad, 8, meta)
    with pytest.raises(ValueError, match=r"in_channels\['b'\] must be a positive int or -1"):
        HGTConv({"a": 4, "b": 0}, 8, meta)
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        HGTConv(4, -1, meta)


# --- RGCNConv -------------------------------------------------------------------------------------

@pytest.mark.parametrize("root_weight", [True, False])
def test_rgcn_lazy_width(root_weight):
    data = random_graph(1)
    gen = torch.Generator().manual_seed(2)
    x = {t: torch.randn(data[t].num_nodes, 6, generator=gen) for t in data.node_types}

    def make(width):
        conv = RGCNConv(width, 4, data.edge_types, data.node_types, root_weight=root_weight)
        with torch.no_grad():
            for p in conv.bias.values():
                p.normal_()
        return conv

    lazy = check_lazy(lambda: make(-1), lambda: make(6), lambda conv: conv(x, data.edge_index_dict))
    assert lazy.in_channels == 6 and lazy.weight.shape == (len(data.edge_types), 6, 4)


def test_rgcn_clear_errors():
    data = random_graph(1)
    args = (4, data.edge_types, data.node_types)
    for bad in ({"a": 3, "b": 3, "c": 3}, (3, 4)):
        with pytest.raises(ValueError, match="one width shared by every node type"):
            RGCNConv(bad, *args)
    with pytest.raises(ValueError, match="positive int or -1"):
        RGCNConv(0, *args)
    conv = RGCNConv(-1, *args)
    x = {t: torch.randn(data[t].num_nodes, 3 if t == "a" else 5) for t in data.node_types}
    with pytest.raises(ValueError, match="one width shared by every node type; the first forward"):
        conv(x, data.edge_index_dict)


# --- TypeEncoder ----------------------------------------------------------------------------------

def encoder_inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"a": torch.randn(4, 7, generator=gen), "b": torch.randint(0, 5, (6,), generator=gen),
            "c": torch.randn(3, 4, generator=gen)}


@pytest.mark.parametrize("lazy", [
    ({"a": None, "b": -5, "c": 4}, None),
    ({"a": None, "b": -5, "c": None}, None),
    ({"a": None, "b": -5, "c": None}, ["c", "b", "a"]),
])
def test_type_encoder_lazy_widths(lazy):
    in_channels, node_types = lazy
    x = encoder_inputs()
    encoder = check_lazy(
        lambda: TypeEncoder(in_channels, 6, activation="tanh", node_types=node_types),
        lambda: TypeEncoder({"a": 7, "b": -5, "c": 4}, 6, activation="tanh"),
        lambda enc: enc(x))
    assert encoder.in_channels == {"a": 7, "b": -5, "c": 4}


def test_type_encoder_one_int_for_every_type():
    x = {t: v for t, v in encoder_inputs().items() if t != "b"}
    check_lazy(lambda: TypeEncoder(-1, 6, node_types=["a", "c"]),
               lambda: TypeEncoder({"a": 7, "c": 4}, 6), lambda enc: enc(x))
    same = TypeEncoder(4, 6, node_types=["c", "d"])
    assert same.in_channels == {"c": 4, "d": 4} and same(x)["c"].shape == (3, 6)


def test_type_encoder_clear_errors():
    with pytest.raises(ValueError, match="needs node_types"):
        TypeEncoder(-1, 6)
    with pytest.raises(ValueError, match="do not match the keys"):
        TypeEncoder({"a": 3}, 6, node_types=["a", "b"])
    with pytest.raises(ValueError, match="is 0: a feature width of 0, or node ids of a type "
                                         "with no nodes; leave such a type out"):
        TypeEncoder({"a": 0}, 6)
    with pytest.raises(ValueError, match="feature width, -num_nodes for node ids, or None"):
        TypeEncoder({"a": "wide"}, 6)
    with pytest.raises(ValueError, match="give an id input its node count"):
        TypeEncoder({"a": None}, 6)({"a": torch.arange(3)})
    # In TypeEncoder's dict, -N is a type of N nodes given by id, -1 included (not PyG's lazy -1):
    one = TypeEncoder({"a": -1}, 6)
    assert one.proj["a"].num_embeddings == 1
    assert one({"a": torch.zeros(2, dtype=torch.long)})["a"].shape == (2, 6)
    with pytest.raises(ValueError, match="takes node ids.*give None"):
        one({"a": torch.randn(2, 3)})


# --- LATTEConv and LATTE --------------------------------------------------------------------------

LATTE_METAPATHS = [BX, AR, CY, BW, CE]


def latte_inputs(widths: dict[str, int]) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {t: torch.randn(n, widths[t], generator=gen, dtype=torch.float64)
            for t, n in LATTE_SIZES.items()}


@pytest.mark.parametrize("in_channels", [-1, {"a": 5, "b": -1, "c": -1}])
def test_latte_conv_lazy_and_per_type_widths(in_channels):
    widths = {"a": 5, "b": 3, "c": 6} if isinstance(in_channels, dict) else {t: 5 for t in LATTE_SIZES}
    x = latte_inputs(widths)
    sized = widths if isinstance(in_channels, dict) else 5

    def run(conv):
        return conv(x, tiny_edges(), return_attention_weights=True)[0]

    lazy = check_lazy(
        lambda: LATTEConv(in_channels, 4, list(LATTE_SIZES), LATTE_METAPATHS, heads=2).double(),
        lambda: LATTEConv(sized, 4, list(LATTE_SIZES), LATTE_METAPATHS, heads=2).double(), run)
    assert lazy.in_channels == sized
    assert lazy.lin_l["b"].weight.dtype == torch.float64


def test_latte_conv_sized_by_dict_matches_shared_width():
    # A dict of equal widths is the same layer as the one width.
    torch.manual_seed(0)
    one = LATTEConv(5, 4, list(LATTE_SIZES), LATTE_METAPATHS, heads=2).double()
    torch.manual_seed(0)
    per_type = LATTEConv({t: 5 for t in LATTE_SIZES}, 4, list(LATTE_SIZES), LATTE_METAPATHS,
                         heads=2).double()
    x = tiny_x(5)
    assert_same(tensors(one(x, tiny_edges())), tensors(per_type(x, tiny_edges())))


def test_latte_clear_errors():
    with pytest.raises(ValueError, match=r"missing \['c'\]"):
        LATTEConv({"a": 5, "b": 5}, 4, list(LATTE_SIZES), [BX])
    for bad in (-1, {"a": 4, "b": 4, "c": 4}):
        with pytest.raises(ValueError, match="input and the output width of every layer"):
            LATTE(bad, list(LATTE_SIZES), LATTE_METAPATHS)
    with pytest.raises(ValueError, match="channels must be a positive int"):
        LATTE(0, list(LATTE_SIZES), LATTE_METAPATHS)


# --- RHGNNConv and RelationFusing -----------------------------------------------------------------

def rhgnn_run(data, rel_width: int, state_keys: bool):
    gen = torch.Generator().manual_seed(4)
    rel = torch.randn(len(data.edge_types), rel_width, generator=gen, dtype=torch.float64)
    x = data.x_dict
    if state_keys:
        x = RHGNNConv.initial_state(x, data.edge_types)
    return lambda conv: conv(x, data.edge_index_dict, rel)


@pytest.mark.parametrize("in_channels,relation_in_channels", [
    (-1, -1), (-1, F_REL), (F_IN, -1), ({"a": -1, "b": F_IN, "c": -1, "z": -1}, -1),
])
def test_rhgnn_conv_lazy_widths(in_channels, relation_in_channels):
    data = tiny_graph()
    lazy = check_lazy(
        lambda: RHGNNConv(in_channels, D, data.metadata(), heads=H,
                          relation_in_channels=relation_in_channels, relation_channels=D_REL).double(),
        lambda: RHGNNConv(F_IN, D, data.metadata(), heads=H, relation_in_channels=F_REL,
                          relation_channels=D_REL).double(),
        rhgnn_run(data, F_REL, state_keys=False))
    assert lazy.relation_in_channels == F_REL
    assert lazy.in_channels == ({t: F_IN for t in data.node_types} if isinstance(in_channels, dict)
                                else F_IN)


def test_rhgnn_conv_per_type_widths():
    data = tiny_graph()
    widths = {"a": 5, "b": 3, "c": 2, "z": 4}
    gen = torch.Generator().manual_seed(5)
    for t, w in widths.items():
        data[t].x = torch.randn(data[t].num_nodes, w, generator=gen, dtype=torch.float64)
    check_lazy(
        lambda: RHGNNConv({"a": -1, "b": 3, "c": -1, "z": 4}, D, data.metadata(), heads=H,
                          relation_in_channels=F_REL, relation_channels=D_REL).double(),
        lambda: RHGNNConv(widths, D, data.metadata(), heads=H, relation_in_channels=F_REL,
                          relation_channels=D_REL).double(),
        rhgnn_run(data, F_REL, state_keys=True))


def test_rhgnn_conv_type_without_a_state_stays_lazy():
    # z is in no relation: a relation-keyed state never sizes it, and the layer still saves,
    # restores and runs.
    data = tiny_graph()
    run = rhgnn_run(data, F_REL, state_keys=True)
    conv = RHGNNConv(-1, D, data.metadata(), heads=H, relation_in_channels=-1,
                     relation_channels=D_REL).double()
    out = run(conv)
    assert conv.has_lazy() and conv.in_channels == {"a": F_IN, "b": F_IN, "c": F_IN, "z": -1}
    state = conv.state_dict()
    assert isinstance(state["weight.z"], UninitializedParameter)
    restored = RHGNNConv(-1, D, data.metadata(), heads=H, relation_in_channels=-1,
                         relation_channels=D_REL).double()
    restored.load_state_dict(state)
    assert restored.in_channels == conv.in_channels and restored.relation_in_channels == F_REL
    assert_same(tensors(run(restored)), tensors(out))


def test_rhgnn_clear_errors():
    data = tiny_graph()
    with pytest.raises(ValueError, match="one relation embedding matrix"):
        RHGNNConv(F_IN, D, data.metadata(), heads=H, relation_in_channels={"a": 3})
    with pytest.raises(ValueError, match=r"missing \['z'\]"):
        RHGNNConv({"a": 5, "b": 5, "c": 5}, D, data.metadata(), heads=H)
    conv = RHGNNConv(-1, D, data.metadata(), heads=H, relation_in_channels=F_REL).double()
    state = RHGNNConv.initial_state(data.x_dict, data.edge_types)
    state[WRITES] = torch.randn(state[WRITES].size(0), F_IN + 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="differ in width"):
        conv(state, data.edge_index_dict, torch.randn(len(data.edge_types), F_REL, dtype=torch.float64))


def test_relation_fusing_lazy_relation_width():
    data = tiny_graph()
    rels = [et for et in data.edge_types if et[2] == "b"]
    gen = torch.Generator().manual_seed(6)
    state = {et: torch.randn(3, H * D, generator=gen, dtype=torch.float64) for et in rels}
    emb = torch.randn(len(rels), H * D_REL, generator=gen, dtype=torch.float64)
    lazy = check_lazy(lambda: RelationFusing(rels, H, D, -1).double(),
                      lambda: RelationFusing(rels, H, D, D_REL).double(),
                      lambda fusing: fusing(state, emb))
    assert lazy.relation_channels == D_REL
    with pytest.raises(ValueError, match="channels .*must be a positive int"):
        RelationFusing(rels, H, -1, D_REL)
    with pytest.raises(ValueError, match="not divisible by heads"):
        RelationFusing(rels, H, D, -1)(state, emb[:, :-1])


# --- H2GFormerLayer -------------------------------------------------------------------------------

def test_h2gformer_width_is_not_lazy_or_per_type():
    meta = (["a", "b"], [("a", "to", "b")])
    for bad in (-1, {"a": 8, "b": 8}):
        with pytest.raises(ValueError, match="H2GFormerLayer's dim .*must be a positive int"):
            H2GFormerLayer(bad, meta, heads=2)


# --- GTNConv --------------------------------------------------------------------------------------

@pytest.mark.parametrize("normalization", ["row", "column"])
def test_gtn_conv_lazy_width(normalization):
    edges = gtn_edges()
    gen = torch.Generator().manual_seed(7)
    x = {t: torch.randn(n, 4, generator=gen) for t, n in GTN_SIZES.items()}

    def make(width):
        conv = GTNConv(width, 3, len(edges) + 1, channels=2, layers=2, normalization=normalization)
        with torch.no_grad():
            conv.selection.normal_()
        return conv

    lazy = check_lazy(lambda: make(-1), lambda: make(4), lambda conv: conv(x, edges))
    assert lazy.in_channels == 4 and lazy.weight.shape == (4, 3)


def test_gtn_conv_clear_errors():
    with pytest.raises(ValueError, match="one width for every node.*pass None"):
        GTNConv({"a": 4, "b": 4}, 3, 6)
    with pytest.raises(ValueError, match="positive int or -1"):
        GTNConv(0, 3, 6)
    assert GTNConv(None, 3, 6).weight is None  # no weight: inputs already projected
    x = {t: torch.randn(n, 4 if t == "a" else 2) for t, n in GTN_SIZES.items()}
    with pytest.raises(ValueError, match="one width for every node type"):
        GTNConv(-1, 3, len(gtn_edges()) + 1)(x, gtn_edges())


# --- RpHGNNEncoder --------------------------------------------------------------------------------

def test_rphgnn_encoder_lazy_group_widths():
    gen = torch.Generator().manual_seed(8)
    groups = [torch.randn(5, 3, 4, generator=gen), torch.randn(5, 1, 6, generator=gen)]
    lazy = check_lazy(lambda: RpHGNNEncoder([(3, -1), (1, -1)], hidden=8, out_channels=2),
                      lambda: RpHGNNEncoder([(3, 4), (1, 6)], hidden=8, out_channels=2),
                      lambda enc: enc(groups))
    assert lazy.group_shapes == [(3, 4), (1, 6)]
    partly = RpHGNNEncoder([(3, 4), (1, -1)], hidden=8, out_channels=2)
    assert partly(groups).shape == (5, 2) and partly.group_shapes == [(3, 4), (1, 6)]
    with pytest.raises(ValueError, match="hops of group 0 must be a positive int"):
        RpHGNNEncoder([(-1, 4)], hidden=8, out_channels=2)
    with pytest.raises(ValueError, match="one \\(hops, width\\) pair per group"):
        RpHGNNEncoder({"a": (3, 4)}, hidden=8, out_channels=2)
