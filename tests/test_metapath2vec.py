"""metapath2vec input features: the schema tour, metapath checks, learning, caching, graph prep."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

import hgnn.data.metapath2vec as m2v
from hgnn.data.metapath2vec import DEFAULTS, metapath2vec_features, schema_tour
from hgnn.data.registry import load_dataset
from hgnn.data.transforms import add_reverse
from hgnn.errors import HgnnError
from hgnn.train.config import resolve_config
from hgnn.train.graph import prepare_graph

FAST = dict(DEFAULTS, dim=8, walk_length=8, context_size=3, walks_per_node=1,
            num_negative_samples=1, epochs=1, batch_size=512)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HGNN_CACHE", str(tmp_path / "cache"))


def _synthetic():
    data, task = load_dataset("synthetic", scale=0.1)
    add_reverse(data)
    return data, task


def test_schema_tour_is_a_closed_walk_over_every_type():
    data, task = _synthetic()
    tour = schema_tour(list(data.edge_types), task.target)
    assert tour[0][0] == task.target and tour[-1][2] == task.target
    for a, b in zip(tour, tour[1:], strict=False):
        assert a[2] == b[0]
    assert {t for et in tour for t in (et[0], et[2])} == set(data.node_types)
    assert tour.count(("paper", "cites", "paper")) == 1
    assert len(tour) == 7  # three types down and back, plus cites


def test_bad_metapaths_are_named():
    data, task = _synthetic()
    broken = [["paper", "rev_writes", "author"], ["paper", "cites", "paper"]]
    with pytest.raises(HgnnError, match="is followed by"):
        metapath2vec_features(data, task.target, dict(FAST, metapath=broken))
    with pytest.raises(HgnnError, match="not a relation of the graph"):
        metapath2vec_features(data, task.target, dict(FAST, metapath=[["paper", "likes", "paper"]]))
    bare = HeteroData()  # no reverse: nothing leads back to the papers
    bare["author"].num_nodes, bare["paper"].num_nodes = 3, 2
    bare["author", "writes", "paper"].edge_index = torch.tensor([[0, 1, 2], [0, 1, 1]])
    with pytest.raises(HgnnError, match="no metapath"):
        metapath2vec_features(bare, "paper", FAST)
    with pytest.raises(HgnnError, match="context_size"):
        metapath2vec_features(data, task.target, dict(FAST, walk_length=1, context_size=5))


def test_embeddings_separate_planted_communities():
    # 2 communities of 60 authors and 60 papers; every author writes 4 papers of its own community
    gen = torch.Generator().manual_seed(0)
    authors = torch.arange(120).repeat_interleave(4)
    community = authors // 60
    papers = community * 60 + torch.randint(0, 60, (authors.numel(),), generator=gen)
    data = HeteroData()
    data["author"].num_nodes = 120
    data["paper"].num_nodes = 120
    data["author", "writes", "paper"].edge_index = torch.stack([authors, papers])
    add_reverse(data)
    cfg = dict(DEFAULTS, dim=16, walk_length=20, context_size=5, walks_per_node=10,
               num_negative_samples=2, epochs=15, batch_size=32, lr=0.05)
    z = metapath2vec_features(data, "author", cfg)["author"]
    z = torch.nn.functional.normalize(z, dim=1)
    label = torch.arange(120) // 60
    centroids = torch.stack([z[label == c].mean(0) for c in (0, 1)])
    nearest = (z @ centroids.T).argmax(1)
    assert (nearest == label).float().mean() > 0.95


def test_cached_and_deterministic(monkeypatch, tmp_path):
    data, task = _synthetic()
    first = metapath2vec_features(data, task.target, FAST)
    assert len(list((tmp_path / "cache" / "metapath2vec").glob("*.pt"))) == 1
    trainer = m2v.train_metapath2vec
    monkeypatch.setattr(m2v, "train_metapath2vec", lambda *a, **k: pytest.fail("not cached"))
    again = metapath2vec_features(data, task.target, FAST)
    assert all(torch.equal(first[t], again[t]) for t in first)
    monkeypatch.setattr(m2v, "train_metapath2vec", trainer)
    monkeypatch.setenv("HGNN_CACHE", str(tmp_path / "other"))
    fresh = metapath2vec_features(data, task.target, FAST)
    assert all(torch.equal(first[t], fresh[t]) for t in first)
    other_seed = metapath2vec_features(data, task.target, FAST, seed=1)
    assert not torch.equal(first["paper"], other_seed["paper"])


def test_prepare_graph_appends_embeddings():
    data, task = load_dataset("synthetic", scale=0.1)
    widths = {t: data[t].x.shape[1] for t in data.node_types}
    config = resolve_config({}, "rgcn", "synthetic", overrides=[
        "graph.metapath2vec.dim=8", "graph.metapath2vec.walk_length=8",
        "graph.metapath2vec.context_size=3", "graph.metapath2vec.walks_per_node=1",
        "graph.metapath2vec.epochs=1", "graph.features=target"])
    first: dict = {}
    prepare_graph(data, task, config["graph"], seed=0, record=first)
    assert data["paper"].x.shape[1] == widths["paper"] + 8
    for t in ("author", "institution", "field_of_study"):  # features dropped: the embedding alone
        assert data[t].x.dtype == torch.float32 and data[t].x.shape == (data[t].num_nodes, 8)
    assert first["metapath2vec"]["cached"] is False and first["metapath2vec"]["seconds"] > 0
    again: dict = {}  # the run record keeps the one-off time when a later run reads the cache
    prepare_graph(load_dataset("synthetic", scale=0.1)[0], task, config["graph"], 0, again)
    assert again["metapath2vec"] == dict(first["metapath2vec"], cached=True)


def test_sparse_adam_option_and_bad_optimizer():
    data, task = _synthetic()
    dense = metapath2vec_features(data, task.target, FAST)
    sparse = metapath2vec_features(data, task.target, dict(FAST, optimizer="sparse_adam"))
    assert sparse["paper"].shape == dense["paper"].shape
    assert not torch.equal(sparse["paper"], dense["paper"])
    with pytest.raises(HgnnError, match="optimizer"):
        metapath2vec_features(data, task.target, dict(FAST, optimizer="sgd"))


def test_run_record_keeps_the_one_off_time(tmp_path):
    from hgnn.train.experiment import format_table, run_experiment

    tiny = ["graph.metapath2vec.dim=8", "graph.metapath2vec.walk_length=8",
            "graph.metapath2vec.context_size=3", "graph.metapath2vec.walks_per_node=1",
            "graph.metapath2vec.epochs=1", "train.epochs=2"]
    args = dict(dataset_options={"scale": 0.1}, overrides=tiny, quiet=True)
    first = run_experiment("mlp", "synthetic", [0, 1], out_dir=tmp_path / "a", **args)
    record = first["preparation"]["metapath2vec"]
    assert record["cached"] is False and record["seconds"] > 0  # seed 0 trained it, seed 1 read it
    assert "trained and cached" in format_table(first)
    rerun = run_experiment("mlp", "synthetic", [0], out_dir=tmp_path / "b", **args)
    assert rerun["preparation"]["metapath2vec"] == dict(record, cached=True)
    assert f"{record['seconds']:.1f} s once per graph, read from the cache" in format_table(rerun)
