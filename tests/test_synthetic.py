"""The seeded synthetic generator: determinism, exact homophily, reader contract, graph signal."""
from __future__ import annotations

import pytest
import torch

from hgnn.data import load_dataset
from hgnn.data.synthetic import (
    default_preset,
    edge_homophily,
    mag_preset,
    read_synthetic,
)
from hgnn.errors import HgnnError, UnknownNameError


def _tensors(data) -> dict:
    out = {}
    for store in data.node_stores + data.edge_stores:
        key = store._key
        out.update({(key, k): v for k, v in store.items() if isinstance(v, torch.Tensor)})
    return out


def test_same_seed_is_bit_identical_and_seeds_differ():
    a, b, c = (read_synthetic(seed=s, scale=0.2)[0] for s in (7, 7, 8))
    ta, tb, tc = _tensors(a), _tensors(b), _tensors(c)
    assert ta.keys() == tb.keys() == tc.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(ta[("paper", "x")], tc[("paper", "x")])
    for et in a.edge_types:
        assert not torch.equal(a[et].edge_index, c[et].edge_index)


@pytest.mark.parametrize("h", [0.1, 0.3, 0.5, 0.8])
def test_measured_homophily_matches_request(h):
    data, task = read_synthetic(seed=1, scale=0.2, homophily=h)
    measured = edge_homophily(data)
    for et, value in measured.items():
        want = 1 / task.num_classes if et[1] == "has_topic" else h  # has_topic: the random control
        assert abs(value - want) <= 1 / data[et].num_edges + 1e-9, (et, value, want)
    assert abs(measured["paper", "cites", "paper"] - h) < 0.02


def test_relation_override_and_single_edge_type():
    data, _ = read_synthetic(scale=0.2, relation_homophily={"has_topic": 0.9, "cites": 0.0})
    topic = edge_homophily(data, ("paper", "has_topic", "field_of_study"))
    assert topic == pytest.approx(0.9, abs=1e-3)
    assert edge_homophily(data, ("paper", "cites", "paper")) == 0.0


def test_changing_one_relation_leaves_the_rest_identical():
    a, _ = read_synthetic(seed=3, scale=0.2)
    b, _ = read_synthetic(seed=3, scale=0.2, relation_homophily={"cites": 0.1})
    assert torch.equal(a["paper"].x, b["paper"].x)
    assert torch.equal(a["author", "writes", "paper"].edge_index,
                       b["author", "writes", "paper"].edge_index)
    assert not torch.equal(a["paper", "cites", "paper"].edge_index,
                           b["paper", "cites", "paper"].edge_index)


def test_default_preset_follows_reader_contract():
    data, task = read_synthetic()
    config = default_preset()
    assert (task.target, task.num_classes, task.split) == ("paper", 5, "fixed")
    assert task.metrics == ("accuracy", "micro_f1", "macro_f1") and task.featureless == ()
    assert 10_000 <= sum(t.num_nodes for t in config.node_types) <= 20_000
    for spec in config.node_types:
        store = data[spec.name]
        assert store.num_nodes == spec.num_nodes
        assert store.x.dtype == torch.float32 and store.x.shape == (spec.num_nodes, spec.feat_dim)
        cls = store.y if spec.name == "paper" else store.latent_y
        assert cls.dtype == torch.int64 and int(cls.min()) == 0 and int(cls.max()) == 4
    assert "latent_y" not in data["paper"] and "y" not in data["author"]
    num_edges = 0
    for src, rel, dst in data.edge_types:
        ei = data[src, rel, dst].edge_index
        assert ei.dtype == torch.int64 and ei.dim() == 2 and ei.size(0) == 2
        assert int(ei.min()) >= 0
        assert int(ei[0].max()) < data[src].num_nodes and int(ei[1].max()) < data[dst].num_nodes
        num_edges += ei.size(1)
    assert 90_000 <= num_edges <= 120_000
    cites = data["paper", "cites", "paper"].edge_index
    assert not bool((cites[0] == cites[1]).any())
    p = data["paper"]
    masks = torch.stack([p.train_mask, p.val_mask, p.test_mask])
    assert masks.dtype == torch.bool and int(masks.sum(0).max()) == 1
    assert masks.sum(1).tolist() == [3600, 1200, 1200]


def test_degrees_are_skewed_and_duplicates_rare():
    data, _ = read_synthetic()
    ei = data["author", "writes", "paper"].edge_index
    deg = torch.bincount(ei[1], minlength=data["paper"].num_nodes).double()
    assert deg.max() > 10 * deg.mean()
    pairs = ei[0] * data["paper"].num_nodes + ei[1]
    assert pairs.unique().numel() > 0.98 * pairs.numel()


def test_mag_preset_shape_and_featureless_types():
    config = mag_preset()
    assert {t.name: t.num_nodes for t in config.node_types} == {
        "paper": 736_389, "author": 1_134_649, "institution": 8_740, "field_of_study": 59_965}
    assert sum(r.num_edges for r in config.relations) == 21_111_007
    data, task = load_dataset("synthetic-mag", scale=0.005)
    assert task.num_classes == 349
    assert set(task.featureless) == {"author", "institution", "field_of_study"}
    for t in task.featureless:
        assert "x" not in data[t] and data[t].num_nodes >= 349
    assert data["paper"].x.shape == (round(736_389 * 0.005), 128)


def test_permutation_mixing_sends_cross_class_edges_to_one_shifted_class():
    uniform, task = read_synthetic(seed=2, scale=0.2, homophily=0.2)
    data, _ = read_synthetic(seed=2, scale=0.2, homophily=0.2, mixing="permutation")
    C = task.num_classes
    assert torch.equal(uniform["paper"].x, data["paper"].x)  # only the edges change
    for et in data.edge_types:
        src, rel, dst = et
        cls_src = data[src].get("y", data[src].get("latent_y"))
        cls_dst = data[dst].get("y", data[dst].get("latent_y"))
        ei = data[et].edge_index
        a, b = cls_src[ei[0]], cls_dst[ei[1]]
        counts = torch.zeros(C, C).index_put_((a, b), torch.ones(a.numel()), accumulate=True)
        if rel == "has_topic":  # the random control stays uniform: every cell is occupied
            assert bool((counts > 0).all())
            continue
        assert edge_homophily(data, et) == pytest.approx(0.2, abs=1 / ei.size(1) + 1e-9)
        off_diagonal = counts.clone().fill_diagonal_(0)
        # One target class per source class, and one shift for the whole relation.
        assert bool(((off_diagonal > 0).sum(1) == 1).all())
        shifts = {(int(b_) - c) % C for c, b_ in enumerate(off_diagonal.argmax(1))}
        assert len(shifts) == 1 and 0 not in shifts
    with pytest.raises(HgnnError, match="mixing"):
        read_synthetic(mixing="sorted")


def test_registry_passes_seed_and_options():
    a, _ = load_dataset("synthetic", seed=5, scale=0.1, num_classes=3)
    b, task = read_synthetic(seed=5, scale=0.1, num_classes=3)
    assert task.num_classes == 3 and int(b["paper"].y.max()) == 2
    assert torch.equal(a["paper"].x, b["paper"].x)


def test_bad_options_are_user_errors():
    with pytest.raises(UnknownNameError, match="preset"):
        read_synthetic(preset="huge")
    with pytest.raises(UnknownNameError, match="homophilly"):
        read_synthetic(homophilly=0.5)
    with pytest.raises(UnknownNameError, match="no_such_rel"):
        read_synthetic(relation_homophily={"no_such_rel": 0.5})
    with pytest.raises(HgnnError, match="homophily"):
        read_synthetic(homophily=1.5)


def _fit_accuracy(x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, test: torch.Tensor,
                  num_classes: int) -> float:
    """Logistic regression, full batch, fixed seed."""
    torch.manual_seed(0)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mean) / std
    xt, yt = x[train].contiguous(), y[train]
    lin = torch.nn.Linear(x.size(1), num_classes)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05, weight_decay=1e-4)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xt), yt).backward()
        opt.step()
    with torch.no_grad():
        return float((lin(x[test]).argmax(1) == y[test]).float().mean())


def _mean_into(index: torch.Tensor, x_src: torch.Tensor, num: int) -> torch.Tensor:
    """Mean of ``x_src[index[0]]`` into ``index[1]`` (zeros where nothing arrives)."""
    out = torch.zeros(num, x_src.size(1)).index_add_(0, index[1], x_src[index[0]])
    count = torch.bincount(index[1], minlength=num).clamp(min=1).unsqueeze(1)
    return out / count


def test_graph_carries_signal_beyond_target_features():
    data, task = read_synthetic(seed=0)
    p = data["paper"]
    n = p.num_nodes
    topic = data["paper", "has_topic", "field_of_study"].edge_index
    per_relation = torch.cat([
        p.x,
        _mean_into(data["author", "writes", "paper"].edge_index, data["author"].x, n),
        _mean_into(data["paper", "cites", "paper"].edge_index, p.x, n),
        _mean_into(topic.flip(0), data["field_of_study"].x, n),
    ], dim=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention
    try:
        alone = _fit_accuracy(p.x, p.y, p.train_mask, p.test_mask, task.num_classes)
        with_graph = _fit_accuracy(per_relation, p.y, p.train_mask, p.test_mask, task.num_classes)
    finally:
        torch.set_num_threads(threads)
    assert alone < 0.6, alone
    assert with_graph > alone + 0.2, (alone, with_graph)
