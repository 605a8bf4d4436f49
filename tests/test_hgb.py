"""HGB reader: a hand-written fixture (exact values), zips, real datasets' published statistics."""
from __future__ import annotations

import pytest
import torch

from hgnn.data import load_dataset
from hgnn.data.formats.hgb import read_hgb
from tests.conftest import require
from tests.hgb_fixture import write_hgb, zip_folder


def test_fixture_values(tmp_path):
    data, task = read_hgb(write_hgb(tmp_path / "g"))
    assert data.node_types == ["author", "paper", "venue"]
    assert data["author"].x.shape == (6, 3) and data["paper"].x.shape == (4, 2)
    assert torch.equal(data["paper"].x[2], torch.tensor([2.0, -2.25]))
    assert "x" not in data["venue"] and data["venue"].num_nodes == 2
    assert ("author", "write", "paper") in data.edge_types
    assert ("paper", "to", "venue") in data.edge_types
    ei = data["author", "write", "paper"].edge_index
    assert ei[:, -1].tolist() == [0, 1]  # global ids 0 -> 7 become local author 0 -> paper 1
    assert task.target == "author" and task.num_classes == 2 and not task.multilabel
    assert task.class_names == ("db", "ml") and task.featureless == ("venue",)
    assert data["author"].y.tolist() == [0, 1, 0, 1, 0, 1]
    assert data["author"].train_mask.sum() == 4 and data["author"].test_mask.sum() == 2


def test_zip_with_and_without_folder_matches_folder(tmp_path):
    folder = write_hgb(tmp_path / "g")
    ref, _ = read_hgb(folder)
    for inner in ("", "MyGraph/"):
        z = zip_folder(folder, tmp_path / f"g{len(inner)}.zip", inner)
        data, _ = read_hgb(z)
        for t in ref.node_types:
            if "x" in ref[t]:
                assert torch.equal(ref[t].x, data[t].x)
        for et in ref.edge_types:
            assert torch.equal(ref[et].edge_index, data[et].edge_index)


def test_multilabel_and_no_info(tmp_path):
    labels = ["0\t\t0\t0,1", "1\t\t0\t1", "2\t\t0\t0", "3\t\t0\t1"]
    data, task = read_hgb(write_hgb(tmp_path / "g", label_dat=labels, info_dat=None))
    assert task.multilabel and task.num_classes == 2
    assert data["type0"].y[0].tolist() == [1.0, 1.0]
    assert ("type0", "link0", "type1") in data.edge_types


def test_custom_path_through_registry_and_holdout(tmp_path):
    folder = write_hgb(tmp_path / "g")
    data, task = load_dataset(str(folder), seed=3)
    store = data["author"]
    assert task.split == "holdout" and task.split_seed == 3
    assert not (store.train_mask & store.val_mask).any()
    assert torch.equal(store.train_mask | store.val_mask, store.train_pool_mask)


def test_holdout_is_stratified_and_seeded(real_root):
    require(real_root, "HGB_DBLP")
    a, _ = load_dataset("hgb-dblp", seed=0)
    b, _ = load_dataset("hgb-dblp", seed=0)
    c, _ = load_dataset("hgb-dblp", seed=1)
    s = a["author"]
    assert torch.equal(s.val_mask, b["author"].val_mask)
    assert not torch.equal(s.val_mask, c["author"].val_mask)
    pool_counts = torch.bincount(s.y[s.train_pool_mask], minlength=4)
    val_counts = torch.bincount(s.y[s.val_mask], minlength=4)
    assert pool_counts.tolist() == [368, 238, 317, 294]  # label.dat, per SOURCE.md
    assert torch.allclose(val_counts.float() / pool_counts, torch.full((4,), 0.2), atol=0.01)


HGB = {
    # name: (file, nodes, links, classes, multilabel, per-type counts, label.dat, label.dat.test)
    "hgb-dblp": ("HGB_DBLP", 26128, 239566, 4, False,
                 {"author": 4057, "paper": 14328, "term": 7723, "venue": 20}, 1217, 2840),
    "hgb-acm": ("HGB_ACM", 10942, 547872, 3, False,
                {"paper": 3025, "author": 5959, "subject": 56, "term": 1902}, 907, 2118),
    "hgb-imdb": ("HGB_IMDB", 21420, 86642, 5, True,
                 {"movie": 4932, "director": 2393, "actor": 6124, "keyword": 7971}, 1371, 3202),
}


@pytest.mark.parametrize("name", sorted(HGB))
def test_real_hgb_statistics(real_root, name):
    folder, n_nodes, n_links, n_cls, multi, per_type, n_pool, n_test = HGB[name]
    require(real_root, folder)
    data, task = load_dataset(name)
    assert sum(data[t].num_nodes for t in data.node_types) == n_nodes
    assert sum(data[et].num_edges for et in data.edge_types) == n_links
    assert {t: data[t].num_nodes for t in data.node_types} == per_type
    assert task.num_classes == n_cls and task.multilabel == multi
    s = data[task.target]
    assert int(s.train_pool_mask.sum()) == n_pool and int(s.test_mask.sum()) == n_test
    assert int(s.train_mask.sum()) + int(s.val_mask.sum()) == n_pool
    assert int(s.val_mask.sum()) == pytest.approx(0.2 * n_pool, abs=3)
    assert not (s.train_pool_mask & s.test_mask).any()


def test_real_feature_shapes(real_root):
    require(real_root, "HGB_DBLP")
    data, task = load_dataset("hgb-dblp")
    assert data["author"].x.shape == (4057, 334)
    assert data["paper"].x.shape == (14328, 4231)
    assert data["term"].x.shape == (7723, 50)
    assert task.featureless == ("venue",)
    assert data["paper"].x.max() == 5  # bag-of-words counts 0..5, per SOURCE.md
    imdb, task = load_dataset("hgb-imdb")
    y = imdb["movie"].y
    assert y[imdb["movie"].test_mask].sum(0).tolist() == [733, 953, 1296, 808, 1747]
    assert int((y[imdb["movie"].train_pool_mask].sum(1) > 1).sum()) == 830
