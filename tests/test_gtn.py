"""GTN: the layer against GTN's dense formulas, the closed-walk diagonals, the model and its
learning-rate rule."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hgnn.errors import HgnnError
from hgnn.models.gtn import GTN, select_lr
from hgnn.nn.gtn_conv import GTNConv, closed_walks, metapath_operands
from tests.conftest import summary_accuracy, train_small_synthetic

SIZES = {"a": 3, "b": 2, "c": 2}  # c's second node has no edge at all


def tiny_edges() -> dict:
    def e(src, dst):
        return torch.tensor([src, dst])
    return {("a", "to", "b"): e([0, 1, 2], [0, 0, 1]),
            ("b", "to", "a"): e([0, 0, 1], [0, 1, 2]),
            ("b", "to", "c"): e([1], [0]),
            ("c", "to", "b"): e([0], [1]),
            ("a", "cites", "a"): e([0, 1, 2], [0, 2, 1])}  # node 0 cites itself


def dense_relations(edges: dict) -> list[torch.Tensor]:
    offsets = dict(zip(SIZES, np.cumsum([0, *SIZES.values()])[:-1], strict=True))
    n = sum(SIZES.values())
    mats = []
    for (src, _, dst), ei in edges.items():
        m = torch.zeros(n, n, dtype=torch.float64)
        m[ei[0] + int(offsets[src]), ei[1] + int(offsets[dst])] = 1.0
        mats.append(m)
    return mats + [torch.eye(n, dtype=torch.float64)]


def reference(conv: GTNConv, x: torch.Tensor, edges: dict) -> torch.Tensor:
    """GTN's main.py (row) / main_sparse.py (column) on dense matrices, channel by channel."""
    mats = dense_relations(edges)
    n = mats[0].size(0)
    eye = torch.eye(n, dtype=torch.float64)
    w = torch.softmax(conv.selection.double(), -1)
    y = x.double() @ conv.weight.double() if conv.weight is not None else x.double()
    out = []
    for c in range(conv.channels):
        q = [sum(w[m, c, k] * a for k, a in enumerate(mats)) for m in range(conv.layers + 1)]
        h = q[0] @ q[1]
        for m in range(2, conv.layers + 1):
            h = h * (1 - eye)
            if conv.normalization == "row":
                deg = h.sum(1)
                inv = torch.where(deg > 0, 1 / torch.where(deg > 0, deg, 1), 0)
                h = inv[:, None] * h
            else:
                deg = h.sum(0).detach()
                h = h / torch.where(deg > 0, deg, 1)[None, :]
            h = h @ q[m]
        h = h * (1 - eye) + eye
        if conv.normalization == "row":
            out.append((h / h.sum(1, keepdim=True)) @ y)
        else:
            out.append((h / h.sum(0, keepdim=True)).t() @ y + conv.bias.double())
    return torch.cat(out, 1)


def make(layers: int, normalization: str, in_channels: int | None = 4, seed: int = 0) -> GTNConv:
    torch.manual_seed(seed)
    conv = GTNConv(in_channels, 3, len(tiny_edges()) + 1, channels=2, layers=layers,
                   normalization=normalization)
    with torch.no_grad():  # away from the uniform start, so every relation weighs differently
        conv.selection.normal_()
        if conv.bias is not None:
            conv.bias.normal_()
    return conv


@pytest.mark.parametrize("normalization", ["row", "column"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_layer_matches_gtn_dense_formulas(layers, normalization):
    conv, edges = make(layers, normalization), tiny_edges()
    x = torch.randn(sum(SIZES.values()), 4, requires_grad=True)
    x_dict = dict(zip(SIZES, x.split(list(SIZES.values())), strict=True))
    out, ref = torch.cat(list(conv(x_dict, edges).values())), reference(conv, x, edges)
    assert out.shape == (7, 6)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
    probe = torch.randn_like(ref)
    inputs = [conv.selection, conv.weight, x] + ([conv.bias] if conv.bias is not None else [])
    got = torch.autograd.grad((out * probe.float()).sum(), inputs)
    want = torch.autograd.grad((ref * probe).sum(), inputs)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), r.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("normalization", ["row", "column"])
def test_float64_inputs_and_gradcheck(normalization):
    # the graph's operands are built in float32; a float64 layer computes in float64 throughout
    conv, edges = make(2, normalization).double(), tiny_edges()
    x = torch.randn(sum(SIZES.values()), 4, dtype=torch.float64, requires_grad=True)

    def run(x: torch.Tensor) -> torch.Tensor:
        x_dict = dict(zip(SIZES, x.split(list(SIZES.values())), strict=True))
        return torch.cat(list(conv(x_dict, edges).values()))

    assert run(x).dtype == torch.float64
    torch.testing.assert_close(run(x), reference(conv, x, edges), rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(run, (x,))


def test_row_without_paths_gets_weight_zero_before_the_last_layer():
    # c's node 1 has no edge: only its identity path, whose diagonal GTN's norm removes.
    conv, edges = make(2, "row"), tiny_edges()
    x = torch.randn(7, 4)
    out = conv.propagate(x, metapath_operands(edges, SIZES, 3, "row"))
    y = x @ conv.weight
    torch.testing.assert_close(out[6], torch.cat([y[6], y[6]]))  # only the added identity left


def test_closed_walks_match_matrix_products():
    rng = np.random.default_rng(0)
    mats = [sp.csr_matrix(rng.random((5, 5)) < 0.3, dtype=np.float64) for _ in range(2)]
    mats.append(sp.identity(5, format="csr"))
    walks = closed_walks(mats, 3)
    dense = [m.toarray() for m in mats]
    for r in (1, 2, 3):
        assert walks[r].shape == (3,) * r + (5,)
        for key in itertools.product(range(3), repeat=r):
            prod = np.linalg.multi_dot([dense[k] for k in key]) if r > 1 else dense[key[0]]
            np.testing.assert_allclose(walks[r][key], np.diag(prod), rtol=1e-6)


def test_operands_follow_the_type_order():
    edges = tiny_edges()
    first = metapath_operands(edges, SIZES, 2, "column")
    flipped = metapath_operands(edges, dict(reversed(SIZES.items())), 2, "column")
    assert first is not flipped
    assert first.entries[:, 0].tolist() == [0, 3, 0]  # a0 -> b0, the first a -> b edge
    assert flipped.entries[:, 0].tolist() == [0, 3, 3]  # c0 -> b1 (relation 3) now leads


def test_products_past_the_limits_are_refused(monkeypatch):
    import hgnn.nn.gtn_conv as gtn_conv

    edges = {et: tiny_edges()[et] for et in [("a", "to", "b"), ("b", "to", "a")]}  # uncached
    monkeypatch.setattr(gtn_conv, "MAX_PRODUCT_TERMS", 5)
    with pytest.raises(gtn_conv.MetaPathTooLarge, match="terms \\(limit 5\\).*normalization row"):
        metapath_operands(edges, SIZES, 2, "column")
    monkeypatch.setattr(gtn_conv, "MAX_PRODUCT_FLOPS", 0)
    with pytest.raises(gtn_conv.MetaPathTooLarge, match="multiply-adds \\(limit 0\\)"):
        metapath_operands(edges, SIZES, 3, "row")


def test_projected_input_and_bad_arguments():
    conv = make(2, "row", in_channels=None)
    assert conv.weight is None
    x = torch.randn(7, 3)
    torch.testing.assert_close(conv.propagate(x, metapath_operands(tiny_edges(), SIZES, 3, "row"))
                               .double(),
                               reference(conv, x, tiny_edges()), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="normalization"):
        GTNConv(4, 3, 6, normalization="sym")
    edges = dict(list(tiny_edges().items())[:3])
    with pytest.raises(ValueError, match="selects among 6 relations.*graph has 4"):
        make(2, "row").propagate(torch.randn(7, 4), metapath_operands(edges, SIZES, 3, "row"))


def test_select_lr_follows_gtn_main():
    at = select_lr(0.5, 0.9, 0.005)
    assert at(0) == pytest.approx(0.45)  # decayed before the first step
    assert at(9) == pytest.approx(0.5 * 0.9 ** 10)
    assert at(43) == pytest.approx(0.5 * 0.9 ** 44) and at(43) < 0.005 < at(42)
    assert at(100) == at(43)


def tiny_graph():
    from torch_geometric.data import HeteroData

    from hgnn.data.task import TaskSpec

    data = HeteroData()
    for t, n in SIZES.items():
        data[t].x = torch.randn(n, 4)
    data["c"].x = torch.arange(2)  # featureless: an embedding row per node
    for et, ei in tiny_edges().items():
        data[et].edge_index = ei
    return data, TaskSpec(target="b", num_classes=2, multilabel=False,
                          metrics=("macro_f1",), split="fixed")


def test_model_outputs_the_target_rows_and_hooks():
    data, task = tiny_graph()
    model = GTN.build(data, task, {**GTN.default_config(), "select_lr": 0.5})
    assert model.encoder is not None and model.conv.weight is None  # widths differ
    logits = model(data.x_dict, data.edge_index_dict)
    assert logits.shape == (2, 2)
    (names, at), = model.lr_groups(0.005)
    assert names == ["conv.selection"] and at(0) == pytest.approx(0.45)
    table = model.explain(data.x_dict, data.edge_index_dict)
    assert len(table) == 3 * 2 + 2 and sum(table["selection 0, channel 0"].values()) == \
        pytest.approx(1.0)
    assert list(table["selection 1, channel 1"])[-1] == "identity"
    with torch.no_grad():  # channel 0 selects b -> a, then a -> b, then the identity
        for m, k in enumerate([1, 0, 5]):
            model.conv.selection[m, 0] = -20.0
            model.conv.selection[m, 0, k] = 20.0
    paths = model.explain(data.x_dict, data.edge_index_dict)["meta-paths, channel 0"]
    assert list(paths)[0] == "b -[to]-> a -[to]-> b" and paths["b -[to]-> a -[to]-> b"] > 0.99
    assert list(paths.values()) == sorted(paths.values(), reverse=True)
    assert all(v < 0.01 for v in list(paths.values())[1:])
    assert all(p.startswith("b ") for p in paths)  # the target type b reads along each path
    shared = GTN.build(_one_width(data), task, GTN.default_config())
    assert shared.encoder is None and shared.conv.weight.shape == (4, 64)


def _one_width(data):
    data = data.clone()
    data["c"].x = torch.randn(2, 4)
    return data


def test_trainer_sets_the_selection_rate_each_epoch(tmp_path, one_thread):
    from hgnn.train.checkpoint import load_checkpoint
    from hgnn.train.experiment import run_experiment
    from hgnn.train.inference import explain_checkpoint

    run_experiment("gtn", "synthetic", [0],
                   overrides=["train.epochs=3", "model.select_lr=0.5", "model.hidden=8",
                              "train.lr=0.005"],
                   out_dir=tmp_path / "gtn", quiet=True, dataset_options={"scale": 0.1})
    groups = load_checkpoint(tmp_path / "gtn" / "seed_0" / "last.pt")["optimizer_state"][
        "param_groups"]
    assert groups[-1]["lr"] == pytest.approx(0.5 * 0.9 ** 3) and groups[0]["lr"] == 0.005
    table = explain_checkpoint(tmp_path / "gtn" / "seed_0" / "best.pt")  # hgnn predict --explain
    assert set(table) == {f"selection {m}, channel {c}" for m in range(3) for c in range(2)} | \
        {"meta-paths, channel 0", "meta-paths, channel 1"}
    assert all(sum(row.values()) == pytest.approx(1.0) for name, row in table.items()
               if name.startswith("selection"))
    with pytest.raises(HgnnError, match="trains conv.selection at a rate of its own, which "
                                        "train.scheduler 'cosine' would override"):
        run_experiment("gtn", "synthetic", [0],
                       overrides=["train.epochs=1", "model.select_lr=0.5",
                                  "train.scheduler=cosine"],
                       out_dir=tmp_path / "bad", quiet=True, dataset_options={"scale": 0.1})


def test_gtn_beats_mlp_on_synthetic(tmp_path, one_thread, mlp_synthetic_accuracy):
    gtn = train_small_synthetic("gtn", tmp_path, "train.epochs=40", "train.lr=0.01",
                                "train.patience=0")
    assert summary_accuracy(gtn) > mlp_synthetic_accuracy + 0.2, \
        (summary_accuracy(gtn), mlp_synthetic_accuracy)
