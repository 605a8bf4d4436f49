"""H2G-former: the layer against a direct loop, the masked label embedding's visibility, the HGT
budget sampler, gradient accumulation, the warm-up schedule, evaluation subsets and training."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from hgnn.data.budget_sampler import BudgetLoader, BudgetSampler
from hgnn.nn.h2gformer_layer import H2GFormerLayer
from hgnn.nn.hetero_label_encoder import MaskedLabelEncoder
from hgnn.train.config import TRAIN_DEFAULTS
from hgnn.train.experiment import run_experiment
from tests.test_relation_index import random_graph

SMALL = {"scale": 0.25}


# ---------------------------------------------------------------------------------------------
# the layer
# ---------------------------------------------------------------------------------------------

def layer_by_loop(layer: H2GFormerLayer, x: dict, edges: dict) -> dict:
    """H2GB's SparseNodeTransformer layer written node by node (float64, eval mode)."""
    H, D = layer.heads, layer.dim // layer.heads
    h = {t: layer.norm1[t](v) for t, v in x.items()}
    q = {t: layer.q_lin[t](v).view(-1, H, D) for t, v in h.items()}
    k = {t: layer.k_lin[t](v).view(-1, H, D) for t, v in h.items()}
    v_ = {t: layer.v_lin[t](v).view(-1, H, D) for t, v in h.items()}
    out = {}
    for t, xt in x.items():
        rows = []
        for i in range(xt.size(0)):
            keys, vals = [], []
            for (s, _, d), ei in edges.items():
                if d != t:
                    continue
                for j in ei[0, ei[1] == i].tolist():  # every in-edge, multi-edges included
                    keys.append(k[s][j])
                    vals.append(v_[s][j])
            if keys:
                kk, vv = torch.stack(keys), torch.stack(vals)  # [n, H, D]
                score = (kk * q[t][i]).sum(-1) / math.sqrt(D)  # [n, H]
                alpha = torch.softmax(score.clamp(-layer.clamp, layer.clamp), dim=0)
                rows.append((alpha.unsqueeze(-1) * vv).sum(0).reshape(-1))
            else:
                rows.append(xt.new_zeros(layer.dim))
        agg = torch.stack(rows)
        u = layer.o_lin[t](agg) + xt  # residual with the un-normalised input
        u = layer.norm2[t](u)
        out[t] = u + layer.ff2[t](layer.act(layer.ff1[t](u)))  # second residual on the LN output
    return out


def test_layer_matches_loop_values_and_gradients():
    torch.manual_seed(0)
    data = random_graph(3)  # multi-edges, an empty relation, nodes without in-edges
    dim = 8
    layer = H2GFormerLayer(dim, data.metadata(), heads=2, dropout=0.3, attn_dropout=0.3,
                           act="gelu", clamp=5.0).double().eval()
    with torch.no_grad():  # large queries: some scores beyond +-5, so the clamp matters
        for lin in layer.q_lin.values():
            lin.weight.mul_(6.0)
    x = {t: torch.randn(data[t].num_nodes, dim, dtype=torch.float64, requires_grad=True)
         for t in data.node_types}
    edges = data.edge_index_dict
    got = layer(x, edges)
    want = layer_by_loop(layer, x, edges)
    for t in data.node_types:
        torch.testing.assert_close(got[t], want[t], atol=1e-10, rtol=1e-10)
    # the clamp was active for some edge
    h = {t: layer.norm1[t](v) for t, v in x.items()}
    ei = edges[("a", "x", "b")]
    raw = (layer.q_lin["b"](h["b"])[ei[1]].view(-1, 2, 4)
           * layer.k_lin["a"](h["a"])[ei[0]].view(-1, 2, 4)).sum(-1) / 2.0
    assert (raw.abs() > 5).any() and (raw.abs() < 5).any()
    weights = [x[t] for t in data.node_types] + [layer.q_lin["a"].weight, layer.k_lin["c"].weight,
                                                 layer.v_lin["b"].bias, layer.norm1["a"].weight]
    g = {t: torch.randn_like(got[t]) for t in got}
    loss_got = sum((got[t] * g[t]).sum() for t in got)
    loss_want = sum((want[t] * g[t]).sum() for t in want)
    for a, b in zip(torch.autograd.grad(loss_got, weights), torch.autograd.grad(loss_want, weights),
                    strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_layer_attention_dropout_only_in_training():
    torch.manual_seed(1)
    data = random_graph(4)
    layer = H2GFormerLayer(8, data.metadata(), heads=2, dropout=0.0, attn_dropout=0.5)
    x = {t: torch.randn(data[t].num_nodes, 8) for t in data.node_types}
    layer.eval()
    a, b = layer(x, data.edge_index_dict), layer(x, data.edge_index_dict)
    assert all(torch.equal(a[t], b[t]) for t in a)
    layer.train()
    c = layer(x, data.edge_index_dict)
    assert any(not torch.allclose(a[t], c[t]) for t in a)


# ---------------------------------------------------------------------------------------------
# the masked label embedding
# ---------------------------------------------------------------------------------------------

def _encoder(mask_seeds: bool = False, n: int = 60, classes: int = 3) -> MaskedLabelEncoder:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=g)
    y[5] = -1  # an unlabelled node is never visible
    split = torch.arange(n) % 3  # 0 train, 1 val, 2 test
    return MaskedLabelEncoder(classes, 4, y, split == 0, split == 1, 0.7, mask_seeds)


def test_label_visibility_per_phase():
    enc = _encoder()
    C = enc.num_classes
    split = torch.arange(60) % 3
    torch.manual_seed(0)
    seen_train = torch.zeros(60)
    for _ in range(200):
        oh = enc.one_hot("train")
        visible = oh[:, C] == 0
        assert not visible[split != 0].any()  # no validation or test label while training
        assert (oh[visible].argmax(1) == enc.labels[visible]).all()
        seen_train += visible.double()
    rate = seen_train[(split == 0) & (enc.labels >= 0)] / 200
    assert rate.mean() == pytest.approx(0.3, abs=0.05)  # 70% of the training labels hidden
    val = enc.one_hot("val")
    assert ((val[:, C] == 0) == ((split == 0) & (enc.labels >= 0))).all()  # training labels only
    test = enc.one_hot("test")
    assert ((test[:, C] == 0) == ((split <= 1) & (enc.labels >= 0))).all()  # train + val
    # node ids select rows of a subgraph, in the subgraph's order
    ids = torch.tensor([4, 1, 7, 3])
    sub = enc.one_hot("test", ids)
    torch.testing.assert_close(sub, test[ids])


def test_mask_seeds_hides_the_seeds_and_multilabel():
    enc = _encoder(mask_seeds=True)
    ids = torch.tensor([0, 3, 6, 1, 9, 12])  # first 3 are seeds, all training nodes
    C = enc.num_classes
    for phase in ("train", "val", "test"):
        for _ in range(20):
            oh = enc.one_hot(phase, ids, num_seeds=3)
            assert (oh[:3, C] == 1).all()
    assert (enc.one_hot("val", ids, 3)[3:, C] == 0).sum() == 2  # 3, 9: training; 1: val
    with pytest.raises(ValueError, match="mask_seeds"):
        enc.one_hot("train")  # full-batch training names no seeds
    y = (torch.rand(10, 3, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    multi = MaskedLabelEncoder(3, 4, y, torch.arange(10) < 5, torch.arange(10) >= 5, 0.0)
    oh = multi.one_hot("val")
    torch.testing.assert_close(oh[:5], torch.cat([y[:5], torch.zeros(5, 1)], 1))
    torch.testing.assert_close(oh[5:], torch.cat([torch.zeros(5, 3), torch.ones(5, 1)], 1))


@pytest.mark.parametrize("regime", ["sampled", "full"])
def test_model_sees_only_allowed_labels(tmp_path, monkeypatch, regime):
    """Every one-hot the encoder gets during a run: no val/test label in training or validation;
    validation labels only when scoring the test split."""
    from hgnn.data import load_dataset

    data, task = load_dataset("synthetic", seed=0, **SMALL)
    split = torch.full((data[task.target].num_nodes,), 3)
    for i, s in enumerate(("train", "val", "test")):
        split[data[task.target][f"{s}_mask"]] = i
    records = []
    original = MaskedLabelEncoder.one_hot

    def spy(self, phase, node_ids=None, num_seeds=None):
        oh = original(self, phase, node_ids, num_seeds)
        ids = torch.arange(oh.size(0)) if node_ids is None else node_ids
        records.append((phase, split[ids.cpu()], oh[:, self.num_classes] == 0))
        return oh

    monkeypatch.setattr(MaskedLabelEncoder, "one_hot", spy)
    run_experiment("h2gformer", "synthetic", [0], dataset_options=SMALL, quiet=True,
                   out_dir=tmp_path, overrides=[
                       f"train.regime={regime}", "train.epochs=2", "train.iters_per_epoch=2",
                       "train.budget=[16, 16]", "train.eval_batch_size=150", "model.dim=16",
                       "model.layers=1"])
    phases = {r[0] for r in records}
    assert phases == {"train", "val", "test"}
    saw_val_label = False
    for phase, s, visible in records:
        assert not visible[s == 2].any()  # test labels: never
        if phase in ("train", "val"):
            assert not visible[s == 1].any()
        else:
            saw_val_label |= bool(visible[s == 1].any())
    assert saw_val_label


# ---------------------------------------------------------------------------------------------
# the budget sampler
# ---------------------------------------------------------------------------------------------

def _graph(seed: int) -> HeteroData:
    data = random_graph(seed)
    for t in data.node_types:
        data[t].x = torch.randn(data[t].num_nodes, 3)
    return data


def _pairs(ei: torch.Tensor) -> list:
    return sorted(zip(ei[0].tolist(), ei[1].tolist(), strict=True))


def test_budget_sampler_layout_budgets_and_induced_edges():
    data = _graph(1)
    budget = {"a": [2, 1], "b": [2, 2], "c": [1, 0]}
    sampler = BudgetSampler(data, budget)
    seeds = torch.tensor([4, 0])
    batch = sampler.sample("a", seeds, torch.Generator().manual_seed(0))
    assert batch["a"].batch_size == 2 and torch.equal(batch["a"].n_id[:2], seeds)
    for t in data.node_types:
        ids = batch[t].n_id
        assert ids.unique().numel() == ids.numel()
        assert ids.numel() <= (2 if t == "a" else 0) + sum(budget[t])
        torch.testing.assert_close(batch[t].x, data[t].x[ids])
    # every drawn node is an in-neighbour of some sampled node (it entered the budget that way)
    for t in data.node_types:
        for v in batch[t].n_id[2 if t == "a" else 0:].tolist():
            assert any(((ei[0] == v) & torch.isin(ei[1], batch[d].n_id)).any()
                       for (s, _, d), ei in data.edge_index_dict.items() if s == t)
    # the induced subgraph: every edge between sampled nodes, multi-edges included (degrees <= 50)
    for et in data.edge_types:
        ei = data[et].edge_index
        src_ids, dst_ids = batch[et[0]].n_id, batch[et[2]].n_id
        keep = torch.isin(ei[0], src_ids) & torch.isin(ei[1], dst_ids)
        want = _pairs(ei[:, keep])
        got = batch[et].edge_index
        assert _pairs(torch.stack([src_ids[got[0]], dst_ids[got[1]]])) == want


def test_budget_sampler_caps_considered_neighbours_and_is_deterministic():
    data = _graph(2)
    seeds = torch.tensor([1, 2, 3])
    capped = BudgetSampler(data, [3, 3], max_neighbors=1)
    batch = capped.sample("a", seeds, torch.Generator().manual_seed(0))
    for et in data.edge_types:
        ei = batch[et].edge_index
        if ei.numel():
            assert torch.bincount(ei[1]).max() <= 1  # at most 1 considered in-edge per node
        full = set(_pairs(data[et].edge_index))
        src, dst = batch[et[0]].n_id[ei[0]], batch[et[2]].n_id[ei[1]]
        assert set(zip(src.tolist(), dst.tolist(), strict=True)) <= full
    sampler = BudgetSampler(data, [3, 3])
    runs = [[(b["a"].n_id, b["b"].n_id, b["a", "self", "a"].edge_index)
             for b in BudgetLoader(data, [3, 3], ("a", torch.arange(7)), batch_size=2,
                                   shuffle=True, generator=torch.Generator().manual_seed(s))]
            for s in (5, 5, 6)]
    assert all(torch.equal(x, y) for p, q in zip(runs[0], runs[1], strict=True)
               for x, y in zip(p, q, strict=True))
    assert any(not torch.equal(p[0], q[0]) for p, q in zip(runs[0], runs[2], strict=True))
    assert sampler.sample("a", seeds).num_nodes == sampler.sample("a", seeds).num_nodes


def test_budget_sampling_probability_is_squared_normalised_degree():
    # Seeds p0, p1. q0 -> p0, q1 -> p0, q0 -> p1: p0 has in-degree 2, p1 in-degree 1, so q0 scores
    # 1/2 + 1 = 1.5 and q1 scores 1/2; with one draw P(q0) = 1.5^2 / (1.5^2 + 0.5^2) = 0.9.
    data = HeteroData()
    data["p"].num_nodes = 2
    data["q"].num_nodes = 2
    data["q", "to", "p"].edge_index = torch.tensor([[0, 1, 0], [0, 0, 1]])
    sampler = BudgetSampler(data, {"q": [1]})
    gen = torch.Generator().manual_seed(0)
    hits = sum(int(sampler.sample("p", torch.tensor([0, 1]), gen)["q"].n_id[0] == 0)
               for _ in range(2000))
    assert hits / 2000 == pytest.approx(0.9, abs=0.025)


# ---------------------------------------------------------------------------------------------
# training machinery: accumulation, warm-up schedule, evaluation subsets, learning
# ---------------------------------------------------------------------------------------------

def _regime(**cfg):
    from hgnn.models.h2gformer import H2GFormer
    from hgnn.train.regimes import make_regime
    from tests.test_train import prepared_synthetic

    data, task = prepared_synthetic()
    model = H2GFormer.build(data, task, {**H2GFormer.default_config(), "dim": 16, "layers": 1})
    train_cfg = {**TRAIN_DEFAULTS["train"], "regime": "sampled", "sampler": "budget",
                 "budget": [16], "batch_size": 16, **cfg}
    return model, make_regime("sampled", data, task, train_cfg, torch.device("cpu"), model)


@pytest.mark.parametrize(("accumulate", "steps"), [(1, 10), (5, 2), (4, 3)])
def test_gradient_accumulation_steps(accumulate, steps):
    model, regime = _regime(iters_per_epoch=10, accumulate=accumulate)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    calls = []
    opt.step = lambda *a, **k: calls.append(1)
    regime.train_epoch(model, opt)
    assert len(calls) == steps and regime.optimizer_steps_per_epoch() == steps


def test_accumulated_gradient_is_the_mean():
    # Same batches, dropout and label masks (same RNG stream): the accumulated gradient (each
    # loss / 3) is the mean of the three single-batch gradients.
    torch.manual_seed(0)
    model, regime = _regime(iters_per_epoch=3, accumulate=3)
    _, regime1 = _regime(iters_per_epoch=3, accumulate=1)
    grads = []
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    opt.step = lambda *a, **k: grads.append(model.head.weight.grad.clone())
    torch.manual_seed(1)
    regime.train_epoch(model, opt)
    torch.manual_seed(1)
    single = []
    opt1 = torch.optim.SGD(model.parameters(), lr=0.0)
    opt1.step = lambda *a, **k: single.append(model.head.weight.grad.clone())
    regime1.train_epoch(model, opt1)
    torch.testing.assert_close(grads[0], torch.stack(single).mean(0), atol=1e-6, rtol=1e-5)


def test_cosine_warmup_schedule():
    from hgnn.models.mlp import MLP
    from hgnn.train.trainer import make_optimizer

    model = MLP("a", 2, 4, 2)
    cfg = {**TRAIN_DEFAULTS["train"], "lr": 1.0, "scheduler": "cosine_warmup", "warmup_epochs": 4,
           "epochs": 12}
    opt, sched = make_optimizer(model, cfg)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-6) and lrs[2] == pytest.approx(0.5)
    assert lrs[4] == pytest.approx(1.0) and lrs[8] == pytest.approx(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_eval_subset_scores_a_seeded_random_subset():
    model, regime = _regime(eval_subset=2, eval_batch_size=16)
    regime.seed, regime.epoch = 3, 0
    out = regime.logits(model, ("val",), subset=True)["val"]
    ids = regime.scored_ids["val"]
    assert out.size(0) == 32 == ids.numel() and regime.scored_labels("val").numel() == 32
    assert torch.isin(ids, regime.split_ids["val"]).all()
    again = regime.eval_ids("val", subset=True)
    regime.epoch = 1
    assert torch.equal(again, ids) and not torch.equal(regime.eval_ids("val", subset=True), ids)
    full = regime.logits(model, ("val",))["val"]
    assert full.size(0) == regime.split_ids["val"].numel()


def test_h2gformer_learns_synthetic_above_mlp(tmp_path):
    common = ["train.patience=0", "train.scheduler=none"]
    mlp = run_experiment("mlp", "synthetic", [0], dataset_options=SMALL, quiet=True,
                         out_dir=tmp_path / "mlp",
                         overrides=["train.epochs=60", "train.lr=0.01", *common])
    h2g = run_experiment("h2gformer", "synthetic", [0], dataset_options=SMALL, quiet=True,
                         out_dir=tmp_path / "h2g", overrides=[
                             "train.epochs=8", "train.lr=0.003", "train.budget=[32, 32]",
                             "train.batch_size=64", "train.eval_batch_size=300",
                             "train.iters_per_epoch=8", "train.accumulate=2", *common])
    acc_mlp = mlp["metrics"]["test"]["accuracy"]["mean"]
    acc = h2g["metrics"]["test"]["accuracy"]["mean"]
    assert acc > acc_mlp + 0.2 and acc > 0.7, (acc, acc_mlp)
    assert h2g["per_seed"][0]["regime"] == "sampled"


def test_layer_handles_graph_without_edges():
    data = random_graph(0)
    layer = H2GFormerLayer(4, data.metadata(), heads=2).eval()
    x = {t: torch.randn(data[t].num_nodes, 4) for t in data.node_types}
    out = layer(x, {})
    want = {t: layer.norm2[t](layer.o_lin[t].bias + x[t]) for t in x}
    for t in x:
        u = want[t]
        torch.testing.assert_close(out[t], u + layer.ff2[t](F.gelu(layer.ff1[t](u))))


def test_mask_seeds_runs_sampled_and_refuses_full_batch(tmp_path):
    from hgnn.errors import HgnnError

    args = dict(dataset_options=SMALL, quiet=True)
    small = ["train.epochs=1", "train.iters_per_epoch=2", "train.budget=[16]",
             "train.eval_batch_size=300", "model.dim=16", "model.layers=1", "model.mask_seeds=true"]
    run_experiment("h2gformer", "synthetic", [0], out_dir=tmp_path / "s", overrides=small, **args)
    with pytest.raises(HgnnError, match="mask_seeds"):
        run_experiment("h2gformer", "synthetic", [0], out_dir=tmp_path / "f",
                       overrides=[*small, "train.regime=full"], **args)


@pytest.mark.parametrize("limit", [1 << 15, 0])  # random keys, and Floyd's algorithm for hubs
def test_capped_neighbour_choice_is_uniform_without_replacement(monkeypatch, limit):
    from hgnn.data import budget_sampler

    monkeypatch.setattr(budget_sampler, "_KEYS_LIMIT", limit)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(12)
    for _ in range(1500):
        pos, owner = budget_sampler._sample_capped(torch.tensor([0, 10]), torch.tensor([10, 2]), 3,
                                                   gen)
        big = pos[owner == 0]
        assert big.unique().numel() == 3 and ((big >= 0) & (big < 10)).all()
        assert sorted(pos[owner == 1].tolist()) == [10, 11]
        counts[big] += 1
    torch.testing.assert_close(counts[:10] / 1500, torch.full((10,), 0.3), atol=0.05, rtol=0)
