"""R-HGNN: the layer and the fusing readout against loop-based dense computations of their
equations (values and gradients, float64), empty relations and neighbourhoods, the reverse-relation
lookup, a plain PyG loop on HeteroData, explain(), and a short training run against the MLP."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from hgnn.models.rhgnn import RHGNN, relation_label
from hgnn.nn.relation_fusing import RelationFusing
from hgnn.nn.rhgnn_conv import RHGNNConv, reverse_map
from hgnn.train.experiment import run_experiment
from tests.conftest import summary_accuracy, train_small_synthetic

H, D, F_IN, F_REL, D_REL = 2, 3, 5, 4, 2

WRITES, REV_WRITES = ("a", "writes", "b"), ("b", "rev_writes", "a")
REVIEWS, REV_REVIEWS = ("a", "reviews", "b"), ("b", "rev_reviews", "a")
CITES = ("b", "cites", "b")
IN, REV_IN = ("b", "in", "c"), ("c", "rev_in", "b")
# Written by hand, not derived: the reference must not share the layer's lookup.
REVERSE = {WRITES: REV_WRITES, REV_WRITES: WRITES, REVIEWS: REV_REVIEWS, REV_REVIEWS: REVIEWS,
           CITES: CITES, IN: REV_IN, REV_IN: IN}




def tiny_graph() -> HeteroData:
    """a (4) and b (3) joined by two relations (writes, reviews) and their reverses, b-cites-b
    (symmetric, its own reverse), b-in-c (2) and its reverse, and z (2) with no relation at all.
    a3 writes nothing, b2 has no reviewer, c1 nothing in it: empty neighbourhoods."""
    gen = torch.Generator().manual_seed(3)
    data = HeteroData()
    for t, n in (("a", 4), ("b", 3), ("c", 2), ("z", 2)):
        data[t].x = torch.randn(n, F_IN, generator=gen, dtype=torch.float64)
    edges = {WRITES: [[0, 0, 1, 2, 2], [0, 1, 1, 2, 0]], REVIEWS: [[1, 3, 3], [0, 0, 1]],
             CITES: [[0, 1, 1, 2], [1, 0, 2, 1]], IN: [[0, 1, 2], [0, 0, 0]]}
    for et, ei in edges.items():
        data[et].edge_index = torch.tensor(ei)
        if et != CITES:
            data[REVERSE[et]].edge_index = torch.tensor(ei).flip(0)
    return data


def make_conv(data: HeteroData, seed: int = 0, **kw) -> RHGNNConv:
    torch.manual_seed(seed)
    conv = RHGNNConv(F_IN, D, data.metadata(), heads=H, relation_in_channels=F_REL,
                     relation_channels=D_REL, **kw).double()
    with torch.no_grad():  # away from the symmetric init, so a swapped reverse would show
        conv.att_weight.mul_(3.0)
        conv.cross_weight.mul_(2.0)
    return conv


def leaky(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, 0.2 * x)


def dense_layer(conv: RHGNNConv, state: dict, edge_index_dict: dict, rel_emb: torch.Tensor):
    """The layer's equations with Python loops over nodes, edges, heads and relations."""
    conv_out = {}
    for r, et in enumerate(conv.edge_types):
        s, _, d = et
        h_dst, h_src = state[et], state[REVERSE[et]]
        att = (rel_emb[r] @ conv.att_weight[r]).view(H, 2 * D)
        ei = edge_index_dict.get(et, torch.zeros(2, 0, dtype=torch.long))
        rows = []
        for i in range(h_dst.size(0)):
            nbrs = [int(ei[0, e]) for e in range(ei.size(1)) if int(ei[1, e]) == i]
            zi = h_dst[i] @ conv.weight[d]
            heads = []
            for k in range(H):
                sl = slice(k * D, (k + 1) * D)
                zs = [(h_src[j] @ conv.weight[s])[sl] for j in nbrs]
                scores = [leaky(att[k, :D] @ zi[sl] + att[k, D:] @ zj) for zj in zs]
                if not zs:
                    heads.append(h_dst.new_zeros(D))
                    continue
                m = max(float(x.detach()) for x in scores)
                w = [torch.exp(x - m) for x in scores]
                heads.append(sum(wj / sum(w) * zj for wj, zj in zip(w, zs, strict=True)))
            rows.append(torch.relu(torch.cat(heads)))
        out = torch.stack(rows)
        gate = torch.sigmoid(conv.res_weight[conv.node_types.index(d)])
        conv_out[et] = gate * out + (1 - gate) * (h_dst @ conv.res_lin[d].weight.T + conv.res_lin[d].bias)
    new = {}
    for r, et in enumerate(conv.edge_types):
        group = [e for e in conv.edge_types if e[2] == et[2]]
        if len(group) == 1:
            new[et] = conv_out[et]
            continue
        rows = []
        for i in range(conv_out[et].size(0)):
            heads = []
            for k in range(H):
                sl = slice(k * D, (k + 1) * D)
                scores = torch.stack([leaky(conv_out[g][i, sl] @ conv.cross_weight[r, k]) for g in group])
                w = torch.softmax(scores, 0)
                heads.append(sum(w[n] * conv_out[g][i, sl] for n, g in enumerate(group)))
            rows.append(torch.cat(heads))
        new[et] = torch.stack(rows)
    if conv.norm is not None:  # LayerNorm per destination type, row by row
        for et, h in new.items():
            ln = conv.norm[et[2]]
            rows = []
            for row in h:
                mu = row.sum() / row.numel()
                var = ((row - mu) ** 2).sum() / row.numel()
                rows.append((row - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias)
            new[et] = torch.stack(rows)
    rel = torch.stack([rel_emb[r] @ conv.rel_weight[r] + conv.rel_bias[r]
                       for r in range(len(conv.edge_types))])
    return new, rel


def inputs(data: HeteroData, conv: RHGNNConv, seed: int = 1):
    """Distinct (not shared) per-relation states, leaves for gradients."""
    gen = torch.Generator().manual_seed(seed)
    state = {et: torch.randn(data[et[2]].num_nodes, F_IN, generator=gen, dtype=torch.float64,
                             requires_grad=True) for et in conv.edge_types}
    rel = torch.randn(len(conv.edge_types), F_REL, generator=gen, dtype=torch.float64,
                      requires_grad=True)
    return state, rel


def objective(state: dict, rel: torch.Tensor, seed: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return sum((v * torch.randn(v.shape, generator=gen, dtype=torch.float64)).sum()
               for _, v in sorted(state.items())) + (rel ** 2).sum()


def assert_layer_matches_dense(conv, data, edge_index_dict):
    state, rel = inputs(data, conv)
    got, got_rel = conv(state, edge_index_dict, rel)
    want, want_rel = dense_layer(conv, state, edge_index_dict, rel)
    assert set(got) == set(want) == set(conv.edge_types)
    for et in want:
        torch.testing.assert_close(got[et], want[et], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_rel, want_rel)
    leaves = list(state.values()) + [rel] + list(conv.parameters())
    g = torch.autograd.grad(objective(got, got_rel), leaves, allow_unused=True)
    w = torch.autograd.grad(objective(want, want_rel), leaves, allow_unused=True)
    for a, b in zip(g, w, strict=True):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    return got


# --- the layer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_layer_matches_dense_loops(backend, norm, monkeypatch):
    monkeypatch.setenv("HGNN_OPS_BACKEND", backend)
    data = tiny_graph()
    conv = make_conv(data, norm=norm).eval()
    if norm:  # away from LayerNorm's identity affine, so a missing or misplaced norm would show
        with torch.no_grad():
            for ln in conv.norm.values():
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.5, 0.5)
    got = assert_layer_matches_dense(conv, data, data.edge_index_dict)
    assert "z" not in {et[2] for et in got}  # a type with no incoming relation gets no state


def test_zero_edge_relation_keeps_residual_state():
    """A relation with no edges (as in a sampled batch) is neither skipped nor a crash: its state is
    the residual path, and it still takes part in the crossing. A missing key means the same."""
    data = tiny_graph()
    conv = make_conv(data).eval()
    edges = dict(data.edge_index_dict)
    edges[REVIEWS] = torch.zeros(2, 0, dtype=torch.long)
    edges[IN] = torch.zeros(2, 0, dtype=torch.long)
    assert_layer_matches_dense(conv, data, edges)
    state, rel = inputs(data, conv)
    with torch.no_grad():
        empty, _ = conv(state, edges, rel)
        del edges[REVIEWS], edges[IN]
        missing, _ = conv(state, edges, rel)
        # 'in' is the only relation into c: no crossing, so its state is the bare residual path
        # (reviews, into b, is mixed with b's other relations by the crossing).
        gate = torch.sigmoid(conv.res_weight[conv.node_types.index("c")])
        torch.testing.assert_close(missing[IN], (1 - gate) * conv.res_lin["c"](state[IN]))
    assert set(empty) == set(missing) == set(conv.edge_types)
    for et in empty:
        torch.testing.assert_close(empty[et], missing[et])


def test_relation_fusing_matches_dense_loops():
    torch.manual_seed(0)
    rels = [WRITES, REVIEWS, CITES]
    fusing = RelationFusing(rels, H, D, D_REL).double()
    gen = torch.Generator().manual_seed(5)
    state = {et: torch.randn(3, H * D, generator=gen, dtype=torch.float64, requires_grad=True)
             for et in rels}
    emb = torch.randn(3, H * D_REL, generator=gen, dtype=torch.float64, requires_grad=True)
    z, beta = fusing(state, emb)
    rows, betas = [], []
    for i in range(3):
        heads, bh = [], []
        for k in range(H):
            sl = slice(k * D, (k + 1) * D)
            hh = [state[et][i, sl] @ fusing.node_weight[n, k] for n, et in enumerate(rels)]
            ee = [emb[n].view(H, D_REL)[k] @ fusing.rel_weight[n, k] for n in range(3)]
            w = torch.softmax(torch.stack([leaky(hh[n] @ ee[n]) for n in range(3)]), 0)
            heads.append(sum(w[n] * hh[n] for n in range(3)))
            bh.append(w)
        rows.append(torch.cat(heads))
        betas.append(torch.stack(bh))
    want = torch.stack(rows)
    torch.testing.assert_close(z, want)
    torch.testing.assert_close(beta, torch.stack(betas))
    leaves = list(state.values()) + [emb] + list(fusing.parameters())
    for a, b in zip(torch.autograd.grad(z.pow(2).sum(), leaves),
                    torch.autograd.grad(want.pow(2).sum(), leaves), strict=True):
        torch.testing.assert_close(a, b)
    one = RelationFusing([WRITES], H, D, D_REL).double()
    z1, b1 = one({WRITES: state[WRITES]}, emb[:1])
    assert z1 is state[WRITES] and torch.equal(b1, torch.ones(3, H, 1, dtype=torch.float64))


def test_relation_fusing_leaves_out_a_relation_without_state():
    """A relation whose source type is absent from the input is left out of the softmax, as the
    official code leaves out a relation without edges (the model used to fall back to the raw
    projection of the target instead)."""
    torch.manual_seed(0)
    rels = [WRITES, REVIEWS, CITES]
    fusing = RelationFusing(rels, H, D, D_REL).double()
    kept = RelationFusing([WRITES, CITES], H, D, D_REL).double()
    with torch.no_grad():
        kept.node_weight.copy_(fusing.node_weight[[0, 2]])
        kept.rel_weight.copy_(fusing.rel_weight[[0, 2]])
    gen = torch.Generator().manual_seed(5)
    state = {et: torch.randn(3, H * D, generator=gen, dtype=torch.float64) for et in rels}
    emb = torch.randn(3, H * D_REL, generator=gen, dtype=torch.float64)
    partial = {WRITES: state[WRITES], CITES: state[CITES]}
    z, beta = fusing(partial, emb)
    want_z, want_beta = kept(partial, emb[[0, 2]])
    torch.testing.assert_close(z, want_z)
    torch.testing.assert_close(beta[:, :, [0, 2]], want_beta)
    assert torch.equal(beta[:, :, 1], torch.zeros(3, H, dtype=torch.float64))
    z1, b1 = fusing({CITES: state[CITES]}, emb)
    assert z1 is state[CITES] and b1[:, :, 2].eq(1).all() and b1[:, :, :2].eq(0).all()
    with pytest.raises(ValueError, match="none of the fused relations"):
        fusing({}, emb)


def test_dropout_only_in_training():
    data = tiny_graph()
    conv = make_conv(data, dropout=0.5)
    state, rel = inputs(data, conv)
    torch.manual_seed(0)
    a, _ = conv(state, data.edge_index_dict, rel)
    b, _ = conv(state, data.edge_index_dict, rel)
    assert any(not torch.equal(a[et], b[et]) for et in a)
    conv.eval()
    c, _ = conv(state, data.edge_index_dict, rel)
    d, _ = conv(state, data.edge_index_dict, rel)
    assert all(torch.equal(c[et], d[et]) for et in c)
    assert all(torch.isfinite(v).all() for v in a.values())


def test_dst_types_restricts_the_computation():
    data = tiny_graph()
    conv = make_conv(data).eval()
    state, rel = inputs(data, conv)
    full, _ = conv(state, data.edge_index_dict, rel)
    part, _ = conv(state, data.edge_index_dict, rel, dst_types=["c"])
    assert set(part) == {IN}
    torch.testing.assert_close(part[IN], full[IN])
    with pytest.raises(ValueError, match="reverse"):
        conv({IN: state[IN]}, data.edge_index_dict, rel)


# --- reverse lookup -----------------------------------------------------------------------------

def test_reverse_lookup_two_relations_same_type_pair():
    data = tiny_graph()
    conv = make_conv(data)
    assert conv.reverse[WRITES] == REV_WRITES and conv.reverse[REVIEWS] == REV_REVIEWS
    assert conv.reverse[REV_REVIEWS] == REVIEWS and conv.reverse[CITES] == CITES
    # HGB style: reverses stored under other names, in an order where "first relation running the
    # other way" (the official lookup) pairs them wrongly; matched by content here.
    x, y = ("a", "x", "b"), ("a", "y", "b")
    p, q = ("b", "p", "a"), ("b", "q", "a")
    ex, ey = torch.tensor([[0, 1, 2], [0, 0, 1]]), torch.tensor([[3, 3], [1, 2]])
    edges = {x: ex, y: ey, q: ey.flip(0), p: ex.flip(0)}
    rev = reverse_map(list(edges), edge_index_dict=edges, num_nodes_dict={"a": 4, "b": 3})
    assert rev == {x: p, p: x, y: q, q: y}
    # An explicit map wins, and is checked.
    assert reverse_map([x, p], reverse={x: p, p: x}) == {x: p, p: x}
    with pytest.raises(ValueError, match="cannot be the reverse"):
        reverse_map([x, y], reverse={x: y})
    with pytest.raises(ValueError, match=r"none found for \[\('a', 'x', 'b'\)"):
        reverse_map([x, p])
    with pytest.raises(ValueError, match="reverse of every relation"):
        RHGNNConv(F_IN, D, (["a", "b"], [x]), heads=H)


# --- PyG usage and the model ----------------------------------------------------------------------

def test_plain_pyg_loop_on_heterodata(one_thread):
    """Two layers in an ordinary loop on a HeteroData made undirected with PyG's own transform."""
    torch.manual_seed(0)
    data = HeteroData()
    data["user"].x = torch.randn(6, 8)
    data["item"].x = torch.randn(5, 8)
    data["user", "buys", "item"].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 5], [0, 1, 2, 3, 4, 0, 1]])
    data["user", "rates", "item"].edge_index = torch.tensor([[0, 2, 4], [1, 3, 0]])
    data = T.ToUndirected()(data)  # adds ('item', 'rev_buys', 'user'), ('item', 'rev_rates', 'user')
    metadata = data.metadata()
    convs = torch.nn.ModuleList([RHGNNConv(8 if i == 0 else 2 * 4, 4, metadata, heads=2,
                                           relation_in_channels=3 if i == 0 else 2 * 2,
                                           relation_channels=2) for i in range(2)])
    rel0 = torch.nn.Parameter(torch.randn(len(metadata[1]), 3))
    fusing = RelationFusing([et for et in metadata[1] if et[2] == "item"], 2, 4, 2)
    head = torch.nn.Linear(8, 2)
    y = torch.tensor([0, 1, 0, 1, 1])
    params = list(convs.parameters()) + [rel0] + list(fusing.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=0.02)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        h, rel = data.x_dict, rel0
        for conv in convs:
            h, rel = conv(h, data.edge_index_dict, rel)
        z, _ = fusing(h, rel[[metadata[1].index(et) for et in fusing.edge_types]])
        loss = F.cross_entropy(head(z), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert set(h) == set(metadata[1]) and h["item", "rev_buys", "user"].shape == (6, 8)
    assert losses[-1] < 0.5 * losses[0]


def model_graph():
    data = tiny_graph()
    data["c"].x = torch.arange(2)  # a featureless type: node ids, an embedding row each
    for t in data.node_types:
        if data[t].x.is_floating_point():
            data[t].x = data[t].x.float()
    return data


class _Task:
    target, num_classes = "b", 3


def test_model_forward_prunes_and_explains(one_thread):
    data = model_graph()
    config = RHGNN.default_config() | {"hidden": 4, "heads": 2}
    torch.manual_seed(0)
    model = RHGNN.build(data, _Task(), config)
    assert model.needed_types == [{"a", "b", "c"}, {"b"}]
    logits = model(data.x_dict, data.edge_index_dict)
    assert logits.shape == (3, 3)
    assert model.last_beta.shape == (3, 2, 4)
    # Pruning leaves the logits unchanged: run every relation in every layer instead.
    model.eval()
    with torch.no_grad():
        pruned = model(data.x_dict, data.edge_index_dict)
        model.needed_types = [{"a", "b", "c"}, {"a", "b", "c"}]
        every = model(data.x_dict, data.edge_index_dict)
    torch.testing.assert_close(pruned, every)
    model.train()
    weights = model.explain(data.x_dict, data.edge_index_dict)
    assert model.training  # restored
    assert set(weights) == {"b"}
    assert set(weights["b"]) == {"a-writes->b", "a-reviews->b", "b->b", "c->b"}
    assert abs(sum(weights["b"].values()) - 1) < 1e-6
    # An empty relation in a "sampled batch" runs, as does a batch without it.
    edges = dict(data.edge_index_dict)
    edges[REVIEWS] = torch.zeros(2, 0, dtype=torch.long)
    assert torch.isfinite(model(data.x_dict, edges)).all()
    del edges[REVIEWS]
    assert torch.isfinite(model(data.x_dict, edges)).all()


def test_model_takes_one_edge_set_per_layer(one_thread):
    data = model_graph()
    torch.manual_seed(0)
    model = RHGNN.build(data, _Task(), RHGNN.default_config() | {"hidden": 4, "heads": 2}).eval()
    edges = data.edge_index_dict
    with torch.no_grad():
        torch.testing.assert_close(model(data.x_dict, [edges, edges]), model(data.x_dict, edges))
        # the last layer's edges decide which neighbours the target aggregates at the top
        no_c = {et: ei[:, :0] if et[0] == "c" else ei for et, ei in edges.items()}
        mixed = model(data.x_dict, [edges, no_c])
        assert not torch.allclose(mixed, model(data.x_dict, edges), atol=1e-4)
        assert not torch.allclose(mixed, model(data.x_dict, no_c), atol=1e-4)
    with pytest.raises(ValueError, match="1 per-layer edge sets for 2 layers"):
        model(data.x_dict, [edges])


def test_relation_labels():
    among = [WRITES, REVIEWS, CITES]
    assert relation_label(CITES, among) == "b->b"
    assert relation_label(WRITES, among) == "a-writes->b"


def test_rhgnn_beats_mlp_on_synthetic(tmp_path, one_thread, mlp_synthetic_accuracy):
    rh = train_small_synthetic("rhgnn", tmp_path, "train.epochs=30", "model.hidden=16",
                               "model.heads=4", "model.dropout=0.2", "train.lr=0.01")
    assert summary_accuracy(rh) > mlp_synthetic_accuracy + 0.3, \
        (summary_accuracy(rh), mlp_synthetic_accuracy)
    assert rh["per_seed"][0]["regime"] == "full"


def test_rhgnn_sampled_regime_runs(tmp_path, one_thread):
    """Neighbour-sampled batches (relations may be empty in a batch) train end to end."""
    out = run_experiment("rhgnn", "synthetic", [0],
                         overrides=["train.regime=sampled", "train.epochs=2", "train.batch_size=64",
                                    "train.num_neighbors=[2, 2]", "model.hidden=8", "model.heads=2"],
                         out_dir=tmp_path, quiet=True, dataset_options={"scale": 0.1})
    assert out["per_seed"][0]["regime"] == "sampled"
    assert 0.0 <= out["metrics"]["test"]["accuracy"]["mean"] <= 1.0
