"""LATTE: the layer against a loop-based dense computation of its equations (values and gradients,
float64), the order-2 adjacency (threshold, D normalisation) against dense products, the proximity
loss, the model's hooks, a short training run against the MLP, and a plain PyG-style loop."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.models.latte import LATTE as LATTEModel
from hgnn.nn.latte import LATTE, join_adjacency
from hgnn.nn.latte_conv import (
    LATTEConv,
    LATTEDetails,
    as_metapath,
    head_type,
    join_metapaths,
    metapath_name,
    negative_pairs,
    tail_type,
)
from tests.conftest import summary_accuracy, train_small_synthetic

BX, AR, CY, BW, CE = ("b", "x", "a"), ("a", "rx", "b"), ("c", "y", "a"), ("b", "w", "b"), ("c", "e", "b")
SIZES = {"a": 4, "b": 3, "c": 2}




def tiny_edges() -> dict:
    """b -x-> a (a2 has no x-neighbour), a -rx-> b, c -y-> a, b -w-> b, and c -e-> b with no edges.
    Type c is the destination of no relation. Columns deliberately unsorted."""
    return {
        BX: torch.tensor([[2, 0, 1, 1, 2], [3, 0, 0, 1, 0]]),
        AR: torch.tensor([[0, 0, 0, 1, 3], [2, 0, 1, 1, 2]]),
        CY: torch.tensor([[1, 0, 1], [1, 1, 2]]),
        BW: torch.tensor([[0, 1, 2], [1, 0, 2]]),
        CE: torch.zeros(2, 0, dtype=torch.long),
    }


def tiny_x(width: int = 5, requires_grad: bool = False) -> dict:
    gen = torch.Generator().manual_seed(3)
    return {t: torch.randn(n, width, generator=gen, dtype=torch.float64).requires_grad_(requires_grad)
            for t, n in SIZES.items()}


def make_conv(metapaths, kappa=None, seed: int = 0, **kw) -> LATTEConv:
    torch.manual_seed(seed)
    conv = LATTEConv(5, 4, list(SIZES), metapaths, heads=2, **kw).double()
    with torch.no_grad():  # non-trivial biases and sharpening
        for p in conv.parameters():
            if p.dim() == 1 and p is not conv.sharpening:
                p.normal_(0, 0.3)
        if kappa is not None:
            conv.sharpening.copy_(torch.tensor(kappa, dtype=torch.float64))
    return conv


def dense_conv(conv: LATTEConv, x: dict, edges: dict) -> tuple[dict, dict]:
    """LATTEConv's equations with python loops over nodes and edges. ``edges[m]`` is a [2, E]
    (tail, head) list. Returns the outputs and the per-edge attention {m: {(tail, head): [H]}}."""
    H, D = conv.heads, conv.out_channels // conv.heads
    lin = {t: x[t] @ conv.lin_l[t].weight.T + conv.lin_l[t].bias for t in x}
    rin = {t: x[t] @ conv.lin_r[t].weight.T + conv.lin_r[t].bias for t in x}
    out, attention = {}, {}
    for t in x:
        slots = []
        for mp in conv.head_metapaths(t):
            k, tail = conv.metapaths.index(mp), tail_type(mp)
            ei = edges.get(mp)
            rows = []
            for i in range(x[t].size(0)):
                nbrs = [] if ei is None else [int(ei[0, e]) for e in range(ei.size(1)) if int(ei[1, e]) == i]
                per_head = []
                for h in range(H):
                    if not nbrs:
                        per_head.append(x[t].new_zeros(D))
                        continue
                    li = lin[t][i, h * D:(h + 1) * D]
                    s = torch.stack([conv.sharpening[k] * F.leaky_relu(
                        li @ conv.attn_l[k, h] + rin[tail][j, h * D:(h + 1) * D] @ conv.attn_r[k, h], 0.2)
                        for j in nbrs])
                    a = torch.softmax(s, 0)
                    for j, aj in zip(nbrs, a, strict=True):
                        attention.setdefault(mp, {}).setdefault((j, i), [None] * H)[h] = aj
                    per_head.append(sum(aj * rin[tail][j, h * D:(h + 1) * D]
                                        for j, aj in zip(nbrs, a, strict=True)))
                rows.append(torch.cat(per_head))
            slots.append(torch.stack(rows))
        slots.append(lin[t])
        beta = torch.softmax(x[t] @ conv.beta[t].weight.T + conv.beta[t].bias, dim=-1)
        out[t] = torch.relu(sum(beta[:, k:k + 1] * s for k, s in enumerate(slots)))
    return out, attention


def grads(out: dict, inputs: list) -> list:
    gen = torch.Generator().manual_seed(11)
    loss = sum((v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum() for v in out.values())
    return torch.autograd.grad(loss, inputs, allow_unused=True)


# --- order 1 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("attention", [False, True])
def test_order1_matches_dense_loops(attention, backend, monkeypatch):
    """Values and gradients on both CPU backends of hgnn.ops; one relation has a negative
    sharpening (no fused path possible), ``attention=False`` runs the others on the fused
    additive-attention op."""
    monkeypatch.setenv("HGNN_OPS_BACKEND", backend)
    mps = [BX, AR, CY, BW, CE]
    conv = make_conv(mps, kappa=[1.0, 0.7, -0.5, 1.3, 1.0])
    conv.eval()
    x = tiny_x(requires_grad=True)
    res = conv(x, tiny_edges(), return_attention_weights=attention)
    got, det = res if attention else (res, None)
    want, want_att = dense_conv(conv, x, {as_metapath(k): v for k, v in tiny_edges().items()})
    assert set(got) == set(SIZES)
    for t in SIZES:
        torch.testing.assert_close(got[t], want[t], rtol=1e-10, atol=1e-12)
    params = [x[t] for t in SIZES] + list(conv.parameters())
    for g, w in zip(grads(got, params), grads(want, params), strict=True):
        if w is None:
            assert g is None or torch.all(g == 0)
        else:
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)
    if attention:
        # c heads nothing: its output is ReLU(l) (beta has the single self slot).
        assert det.beta["c"].shape == (2, 1)
        for mp, ei in det.edge_index.items():
            assert ei.shape[1] == tiny_edges()[mp[0]].shape[1]
            for e in range(ei.size(1)):
                torch.testing.assert_close(det.attention[mp][e],
                                           torch.stack(want_att[mp][(int(ei[0, e]), int(ei[1, e]))]))
            # perm maps the sorted edges back to the given columns
            assert torch.equal(tiny_edges()[mp[0]][:, det.perm[mp]], ei)
        assert det.edge_index[as_metapath(CE)].shape == (2, 0)


def test_zero_edge_relation_and_missing_relation_give_zero_slots():
    conv = make_conv([BX, AR, CY, BW, CE]).eval()
    x = tiny_x()
    edges = tiny_edges()
    full = conv(x, edges)
    # Dropping the empty relation, or giving it no edges, is the same thing.
    del edges[CE]
    torch.testing.assert_close(conv(x, edges), full)
    # A relation of unknown types or an extra key is left out, with a warning.
    edges[("a", "unknown", "c")] = torch.tensor([[0], [0]])
    with pytest.warns(UserWarning, match="leaves out relations it was not built for"):
        torch.testing.assert_close(conv(x, edges), full)


def test_attention_dropout_only_in_training():
    conv = make_conv([BX, AR, CY, BW], attn_dropout=0.5)
    x = tiny_x()
    conv.eval()
    a, b = conv(x, tiny_edges()), conv(x, tiny_edges(), return_attention_weights=True)[0]
    torch.testing.assert_close(a, b)
    conv.train()
    torch.manual_seed(0)
    c = conv(x, tiny_edges())
    assert not torch.allclose(c["a"], a["a"])


# --- order 2 adjacency -----------------------------------------------------------------------

def dense_join(det: LATTEDetails, first: dict, mp, threshold: float) -> torch.Tensor:
    b, a = mp[:1], mp[1:]
    n_head, n_mid, n_tail = SIZES[head_type(a)], SIZES[tail_type(a)], SIZES[tail_type(b)]
    ei_a, w = det.edge_index[a], det.attention[a].max(1).values.detach()
    keep = w >= threshold if threshold > 0 else torch.ones_like(w, dtype=torch.bool)
    if threshold > 0 and not keep.any():
        keep[torch.argmax(w)] = True
    A = torch.zeros(n_head, n_mid, dtype=torch.float64)
    for e in range(ei_a.size(1)):
        if keep[e]:
            A[ei_a[1, e], ei_a[0, e]] += w[e]
    B = torch.zeros(n_mid, n_tail, dtype=torch.float64)
    ei_b = first[b]
    for e in range(ei_b.size(1)):
        B[ei_b[1, e], ei_b[0, e]] += 1.0
    denom = A.sum(0) + B.sum(1)
    Dinv = torch.diag(torch.where(denom > 0, 1 / denom, torch.zeros_like(denom)))
    return A @ Dinv @ B


@pytest.mark.parametrize("threshold", [0.0, 0.5, 2.0])
def test_order2_adjacency_matches_dense(threshold):
    first = [as_metapath(k) for k in (BX, AR, CY, BW, CE)]
    order2 = join_metapaths(first, first)
    # chains b + a with head(b) == tail(a); the official order: a major, b minor
    assert order2[0] == (AR, BX) and (CE, BW) in order2 and (BX, AR) in order2
    assert all(m[0][2] == m[1][0] for m in order2)
    conv = make_conv(first).eval()
    _, det = conv(tiny_x(), tiny_edges(), return_attention_weights=True)
    edges = {as_metapath(k): v for k, v in tiny_edges().items()}
    joined = join_adjacency(det, edges, order2, SIZES, threshold)
    assert set(joined) <= set(order2)
    for mp in order2:
        want = dense_join(det, edges, mp, threshold)
        got = torch.zeros_like(want)
        if mp in joined:
            ei, val = joined[mp]
            got[ei[1], ei[0]] = val
            assert torch.all(val > 0)
            heads = ei[1] * SIZES[tail_type(mp)] + ei[0]
            assert torch.all(heads[1:] > heads[:-1])  # sorted by head, then tail
        else:
            assert torch.all(want == 0)  # left out exactly when empty (e.g. through relation e)
        torch.testing.assert_close(got, want)
    if threshold == 2.0:  # nothing passes: each order-1 relation keeps its single largest edge
        for mp, (ei, _) in joined.items():
            assert ei.size(1) == int((dense_join(det, edges, mp, 2.0) > 0).sum())


def test_two_layer_stack_matches_dense_layers():
    torch.manual_seed(1)
    stack = LATTE(4, list(SIZES), [BX, AR, CY, BW, CE], num_layers=2, heads=2, attn_dropout=0.0,
                  dropout=0.0, edge_threshold=0.5).double().eval()
    assert [len(c.metapaths) for c in stack.convs] == [5, len(join_metapaths(stack.first, stack.first))]
    x = tiny_x(4, requires_grad=True)
    out, det = stack(x, tiny_edges(), return_details=True)
    edges1 = {as_metapath(k): v for k, v in tiny_edges().items()}
    h1, _ = dense_conv(stack.convs[0], x, edges1)
    joined = join_adjacency(det[0], edges1, stack.convs[1].metapaths, SIZES, 0.5)
    assert set(det[1].edge_index) == set(joined)
    h2, _ = dense_conv(stack.convs[1], h1, {m: ei for m, (ei, _) in joined.items()})
    for t in SIZES:
        assert out[t].shape == (SIZES[t], 8)
        torch.testing.assert_close(out[t], torch.cat([h1[t], h2[t]], -1), rtol=1e-10, atol=1e-12)
    # the order-2 edge values travel to the proximity loss as positive-edge weights
    for m, (_, val) in joined.items():
        torch.testing.assert_close(det[1].edge_weight[m], val)
    # Restricting the outputs to one type prunes meta-relations without changing its output.
    assert stack.needed_types(["c"]) == [{"c"}, {"c"}]
    assert stack.needed_types(["a"])[1] == {"a"} and stack.needed_types(["a"])[0] == {"a", "b", "c"}
    only = stack(x, tiny_edges(), output_types=["a"])
    assert set(only) == {"a"}
    torch.testing.assert_close(only["a"], out["a"])
    g_only = torch.autograd.grad(only["a"].sum(), x["b"])[0]
    torch.testing.assert_close(g_only, torch.autograd.grad(out["a"].sum(), x["b"], retain_graph=True)[0])
    params = [x[t] for t in SIZES] + list(stack.parameters())
    want = {t: torch.cat([h1[t], h2[t]], -1) for t in SIZES}
    for g, w in zip(grads(out, params), grads(want, params), strict=True):
        if w is not None:
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


# --- proximity loss --------------------------------------------------------------------------

def test_negative_pairs_avoid_edges():
    ei = torch.tensor([[0, 1, 2, 0], [0, 0, 1, 2]])  # (tail, head) over 3 tails x 3 heads
    tail, head = negative_pairs(ei, 3, 3, 1.0, torch.Generator().manual_seed(0))
    assert tail.numel() == 4
    edges = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    assert not edges & set(zip(tail.tolist(), head.tolist(), strict=True))
    # a full grid leaves nothing to draw; a nearly full one at most the free pairs
    full = torch.cartesian_prod(torch.arange(2), torch.arange(2)).T
    assert negative_pairs(full, 2, 2, 2.0)[0].numel() == 0
    tail, head = negative_pairs(full[:, :3], 2, 2, 2.0, torch.Generator().manual_seed(0))
    assert tail.numel() == 1 and (int(tail), int(head)) == tuple(full[:, 3].tolist())


@pytest.mark.parametrize("weights", ["attention", "given"])
def test_proximity_loss_matches_direct_computation(weights):
    """Values and gradients. ``attention`` (the official weighting) recomputes each positive
    edge's weight here as the max over heads of a per-head softmax over the head's edges, so the
    gradient through the weights is checked too."""
    torch.manual_seed(1)
    stack = LATTE(4, list(SIZES), [BX, AR, CY, BW, CE], num_layers=2, heads=2, attn_dropout=0.0,
                  dropout=0.0, proximity_weights=weights).double()
    with torch.no_grad():
        stack.convs[0].sharpening.copy_(torch.tensor([1.0, 0.5, -0.7, 1.2, 1.0]))
    x = tiny_x(4)
    _, det = stack(x, tiny_edges(), return_details=True)
    loss = stack.proximity_loss(det, torch.Generator().manual_seed(5))
    assert loss.dim() == 0 and torch.isfinite(loss)
    gen = torch.Generator().manual_seed(5)
    want = 0.0
    for conv, d in zip(stack.convs, det, strict=True):
        terms, count = 0.0, 0
        for mp, ei in d.edge_index.items():
            if ei.size(1) == 0:
                continue
            count += 1
            k = conv.sharpening[conv.metapaths.index(mp)]
            sl, sr = d.score_l[mp], d.score_r[mp]

            def logit(j, i, k=k, sl=sl, sr=sr):
                return k * F.leaky_relu((sl[i] + sr[j]).max(), 0.2)

            if weights == "attention":
                def score(j, i, k=k, sl=sl, sr=sr):
                    return k * F.leaky_relu(sl[i] + sr[j], 0.2)  # [H]

                w = []
                for e in range(ei.size(1)):
                    rivals = [score(ei[0, f], ei[1, f]) for f in range(ei.size(1))
                              if ei[1, f] == ei[1, e]]
                    w.append((score(ei[0, e], ei[1, e]).exp()
                              / torch.stack(rivals).exp().sum(0)).max())
            else:
                w = d.edge_weight.get(mp, torch.ones(ei.size(1), dtype=torch.float64))
            terms = terms - sum(w[e] * F.logsigmoid(logit(ei[0, e], ei[1, e]))
                                for e in range(ei.size(1))) / ei.size(1)
            tail, head = negative_pairs(ei, sr.size(0), sl.size(0), 2.0, gen)
            if head.numel() > 1:
                terms = terms - sum(F.logsigmoid(-logit(j, i)) for j, i in
                                    zip(tail, head, strict=True)) / head.numel()
        want = want + terms / max(2 * count, 1)
    torch.testing.assert_close(loss, want)
    params = list(stack.parameters())
    got = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    for g, w in zip(got, torch.autograd.grad(want, params, retain_graph=True,
                                                           allow_unused=True), strict=True):
        if w is not None:
            torch.testing.assert_close(g, w)
    loss.backward()
    for conv in stack.convs:
        assert conv.sharpening.grad is not None and torch.isfinite(conv.sharpening.grad).all()
        assert conv.attn_l.grad.abs().sum() > 0 and conv.attn_r.grad.abs().sum() > 0


# --- model ------------------------------------------------------------------------------------

def tiny_data(featureless_c: bool = True) -> HeteroData:
    data = HeteroData()
    x = tiny_x()
    for t, n in SIZES.items():
        data[t].x = torch.arange(n) if (t == "c" and featureless_c) else x[t].float()
    for et, ei in tiny_edges().items():
        data[et].edge_index = ei
    data["a"].y = torch.tensor([0, 1, 0, 1])
    return data


def test_model_hooks():
    data = tiny_data()
    task = TaskSpec("a", 2)
    config = {**LATTEModel.default_config(), "hidden": 8, "proximity": True}
    torch.manual_seed(0)
    model = LATTEModel.build(data, task, config)
    model.train()
    logits = model(data.x_dict, data.edge_index_dict)
    assert logits.shape == (4, 2)
    aux = model.auxiliary_loss()
    assert aux is not None and aux.requires_grad and torch.isfinite(aux)
    (F.cross_entropy(logits, data["a"].y) + aux).backward()
    model.eval()
    model(data.x_dict, data.edge_index_dict)
    assert model.auxiliary_loss() is None
    names = dict(model.named_parameters())
    skip = model.no_weight_decay()
    assert skip <= set(names)
    assert "inputs.c.weight" in skip and "encoder.convs.0.sharpening" in skip
    assert all(n in skip for n in names if n.endswith(".bias"))
    assert "encoder.convs.0.attn_l" not in skip and "inputs.a.weight" not in skip
    model.train()
    weights = model.explain(data.x_dict, data.edge_index_dict)
    assert model.training  # restored
    coverage = {t: weights.pop(f"{t}: share of nodes with edges") for t in SIZES}
    assert set(weights) == set(SIZES)
    # the share of each type's nodes with an edge of the slot, counted from the graph
    for (s, r, d), ei in tiny_edges().items():
        assert coverage[d][f"{s}__{r}__{d}"] == pytest.approx(ei[1].unique().numel() / SIZES[d])
    assert all(rows["self"] == 1.0 for rows in coverage.values())
    assert set(weights["a"]) >= {metapath_name((BX,)), metapath_name((CY,)), "self", "self@2"}
    assert weights["c"]["self"] == pytest.approx(1.0)
    assert sum(v for k, v in weights["a"].items() if k in ("self", "b__x__a", "c__y__a")) == \
        pytest.approx(1.0)
    off = LATTEModel.build(data, task, {**config, "proximity": False, "layers": 1})
    off.train()
    off(data.x_dict, data.edge_index_dict)
    assert off.auxiliary_loss() is None


def test_pyg_style_training_loop(one_thread):
    """A plain HeteroData and a hand-written loop: LATTE learns a relational signal."""
    gen = torch.Generator().manual_seed(0)
    data = HeteroData()
    n_p, n_a = 60, 40
    y = torch.randint(0, 2, (n_p,), generator=gen)
    author_class = torch.randint(0, 2, (n_a,), generator=gen)
    data["paper"].x = torch.randn(n_p, 6, generator=gen)  # no signal in the paper features
    data["author"].x = torch.randn(n_a, 6, generator=gen) + 2.0 * author_class[:, None].float()
    src = torch.randint(0, n_a, (300,), generator=gen)
    same = (author_class[src] == y.repeat(5)).nonzero().view(-1)
    dst = torch.arange(n_p).repeat(5)
    data["author", "writes", "paper"].edge_index = torch.stack([src[same], dst[same]])
    data["paper", "rev_writes", "author"].edge_index = torch.stack([dst[same], src[same]])
    torch.manual_seed(0)
    stack = LATTE(16, data.node_types, data.edge_types, num_layers=2, heads=2, attn_dropout=0.0,
                  dropout=0.0)
    lin = torch.nn.ModuleDict({t: torch.nn.Linear(6, 16) for t in data.node_types})
    head = torch.nn.Linear(stack.out_channels, 2)
    params = list(stack.parameters()) + list(lin.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=0.01)
    for _ in range(60):
        h = {t: torch.relu(lin[t](x)) for t, x in data.x_dict.items()}
        out, det = stack(h, data.edge_index_dict, return_details=True)
        loss = F.cross_entropy(head(out["paper"]), y) + stack.proximity_loss(det)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        h = {t: torch.relu(lin[t](x)) for t, x in data.x_dict.items()}
        acc = (head(stack(h, data.edge_index_dict)["paper"]).argmax(-1) == y).float().mean()
    assert acc > 0.9


def test_model_on_a_sampled_batch():
    from hgnn.data.sampler import NeighborLoader

    data = tiny_data()
    torch.manual_seed(0)
    model = LATTEModel.build(data, TaskSpec("a", 2), {**LATTEModel.default_config(), "hidden": 8,
                                                      "proximity": True})
    loader = NeighborLoader(data, [1, 1], ("a", torch.tensor([2, 3])), batch_size=2, shuffle=False,
                            generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    model.train()
    logits = model(batch.x_dict, batch.edge_index_dict)
    assert logits.shape[0] == batch["a"].num_nodes and torch.isfinite(logits).all()
    (logits.sum() + model.auxiliary_loss()).backward()


def test_latte_beats_mlp_on_synthetic(tmp_path, one_thread, mlp_synthetic_accuracy):
    from hgnn.models import registry

    registry.MODELS.setdefault("latte", "hgnn.models.latte:LATTE")
    latte = train_small_synthetic("latte", tmp_path, "train.epochs=20", "train.lr=0.01",
                                  "train.patience=0", "model.layers=1", "model.hidden=32")
    assert summary_accuracy(latte) > mlp_synthetic_accuracy + 0.3, \
        (summary_accuracy(latte), mlp_synthetic_accuracy)


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_norm_options(norm):
    conv = make_conv([BX, AR, CY, BW, CE], norm=norm).train()
    out = conv(tiny_x(), tiny_edges())
    assert all(v.shape == (SIZES[t], 4) and torch.all(v >= 0) for t, v in out.items())
    sum(v.sum() for v in out.values()).backward()
    assert all(p.grad is not None for p in conv.norm.parameters())
    with pytest.raises(ValueError, match="norm"):
        LATTEConv(5, 4, list(SIZES), [BX], norm="group")


def test_classifier_weight_is_glorot_initialised():
    # models.py DenseClassification.reset_parameters: glorot, not nn.Linear's kaiming-uniform
    model = LATTEModel.build(tiny_data(), TaskSpec("a", 3), LATTEModel.default_config())
    weight = model.classifier[1].weight
    fan_out, fan_in = weight.shape
    assert weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
    assert weight.abs().max() > 1.5 / fan_in ** 0.5  # beyond nn.Linear's bound 1 / sqrt(fan_in)
