"""The six small real datasets (GTN ACM/DBLP/IMDB, MAGNN IMDB, HGSL Yelp, HeCo Freebase), and the
safety of the pickle-based readers.

Expected numbers are those in each dataset's SOURCE.md. Each dataset is loaded once per module
(the GTN ACM features alone are a 137 MB pickle); tests on real data skip when it is absent.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hgnn.data import load_dataset
from hgnn.data.formats.gtn import read_gtn
from hgnn.data.formats.heco import read_heco_freebase
from hgnn.data.formats.hgsl import read_hgsl_yelp
from hgnn.data.formats.magnn import read_magnn_imdb
from hgnn.data.formats.safe_pickle import ARRAYS_ONLY, safe_load
from hgnn.errors import DataFormatError, HgnnError
from tests.conftest import require
from tests.heco_fixture import write_heco

EXPECTED = {
    "gtn-acm": dict(
        rel="GTN_ACM/gtn-acm.zip", reader=read_gtn, target="paper", classes=3, feat=1902,
        nodes={"paper": 3025, "author": 5912, "subject": 57},
        edges={("paper", "to", "author"): 9936, ("author", "to", "paper"): 9936,
               ("paper", "to", "subject"): 3025, ("subject", "to", "paper"): 3025},
        total=25922, split=(600, 300, 2125), labelled=3025,
        per_class={"train_mask": [200] * 3, "val_mask": [100] * 3,
                   "test_mask": [694, 670, 761]}),
    "gtn-dblp": dict(
        rel="GTN_DBLP/gtn-dblp.zip", reader=read_gtn, target="author", classes=4, feat=334,
        nodes={"author": 4057, "paper": 14328, "conference": 20},
        edges={("paper", "to", "author"): 19645, ("author", "to", "paper"): 19645,
               ("paper", "to", "conference"): 14328, ("conference", "to", "paper"): 14328},
        total=67946, split=(800, 400, 2857), labelled=4057,
        per_class={"train_mask": [200] * 4, "val_mask": [100] * 4,
                   "test_mask": [897, 445, 809, 706]}),
    "gtn-imdb": dict(
        rel="GTN_IMDB/gtn-imdb.zip", reader=read_gtn, target="movie", classes=3, feat=1256,
        nodes={"movie": 4661, "director": 2270, "actor": 5841},
        edges={("movie", "to", "director"): 4661, ("director", "to", "movie"): 4661,
               ("movie", "to", "actor"): 13983, ("actor", "to", "movie"): 13983},
        total=37288, split=(300, 300, 2339), labelled=2939,
        per_class={"train_mask": [100] * 3, "val_mask": [100] * 3,
                   "test_mask": [343, 724, 1272]}),
    "magnn-imdb": dict(
        rel="MAGNN_IMDB/IMDB_processed.zip", reader=read_magnn_imdb, target="movie", classes=3,
        feat=3066, metrics=("micro_f1", "macro_f1"),
        nodes={"movie": 4278, "director": 2081, "actor": 5257},
        edges={("movie", "to", "director"): 4278, ("director", "to", "movie"): 4278,
               ("movie", "to", "actor"): 12828, ("actor", "to", "movie"): 12828},
        total=34212, split=(400, 400, 3478), labelled=4278, all_classes=[1135, 1584, 1559]),
    "hgsl-yelp": dict(
        rel="HGSL_Yelp", reader=read_hgsl_yelp, target="business", classes=3, feat=82,
        nodes={"business": 2614, "user": 1286, "service": 4, "level": 9},
        edges={("business", "to", "user"): 30838, ("user", "to", "business"): 30838,
               ("business", "to", "service"): 2614, ("service", "to", "business"): 2614,
               ("business", "to", "level"): 2614, ("level", "to", "business"): 2614},
        total=72132, split=(300, 300, 2014), labelled=2614,
        per_class={"train_mask": [100] * 3, "val_mask": [100] * 3,
                   "test_mask": [270, 882, 862]}),
    "heco-freebase": dict(
        rel="HeCo_Freebase", reader=read_heco_freebase, target="movie", classes=3, feat=None,
        nodes={"movie": 3492, "actor": 33401, "director": 2502, "writer": 4459},
        edges={("movie", "to", "actor"): 65341, ("movie", "to", "director"): 3762,
               ("movie", "to", "writer"): 6414},
        total=75517, split=(60, 1000, 1000), labelled=3492, all_classes=[1327, 618, 1547],
        per_class={"train_mask": [20] * 3}),
}
NAMES = list(EXPECTED)


@pytest.fixture(scope="module")
def loaded(real_root):
    """name -> (data, task) through load_dataset, loaded on first use, once per module."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            require(real_root, EXPECTED[name]["rel"])
            cache[name] = load_dataset(name, root=real_root)
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_counts_match_source_md(loaded, name):
    exp = EXPECTED[name]
    data, task = loaded(name)
    assert {t: data[t].num_nodes for t in data.node_types} == exp["nodes"]
    assert {et: data[et].edge_index.size(1) for et in data.edge_types} == exp["edges"]
    assert sum(data[et].edge_index.size(1) for et in data.edge_types) == exp["total"]
    assert task.target == exp["target"] and task.num_classes == exp["classes"]
    assert task.split == "fixed" and task.multilabel is False
    assert task.metrics == exp.get("metrics", ("macro_f1", "micro_f1"))
    store = data[task.target]
    masks = (store.train_mask, store.val_mask, store.test_mask)
    assert tuple(int(m.sum()) for m in masks) == exp["split"]
    assert not ((masks[0] & masks[1]).any() or (masks[0] & masks[2]).any()
                or (masks[1] & masks[2]).any())
    assert store.y.dtype == torch.long and int((store.y >= 0).sum()) == exp["labelled"]
    assert bool((store.y[masks[0] | masks[1] | masks[2]] >= 0).all())
    for mask_name, counts in exp.get("per_class", {}).items():
        assert torch.bincount(store.y[store[mask_name]]).tolist() == counts
    if "all_classes" in exp:
        assert torch.bincount(store.y).tolist() == exp["all_classes"]


@pytest.mark.parametrize("name", NAMES)
def test_tensors_are_well_formed(loaded, name):
    data, task = loaded(name)
    for t in data.node_types:
        if EXPECTED[name]["feat"] is None:
            assert "x" not in data[t] and t in task.featureless
            continue
        x = data[t].x
        assert x.dtype == torch.float32 and x.shape[1] == EXPECTED[name]["feat"]
        assert bool(torch.isfinite(x).all())
    for src, rel, dst in data.edge_types:
        ei = data[src, rel, dst].edge_index
        assert ei.dtype == torch.long and int(ei.min()) >= 0
        assert int(ei[0].max()) < data[src].num_nodes and int(ei[1].max()) < data[dst].num_nodes
        reverse = (dst, rel, src)
        if reverse in data.edge_types:  # stored transposes must agree edge for edge
            back = data[reverse].edge_index
            n_dst = data[dst].num_nodes
            keys = torch.sort(ei[0] * n_dst + ei[1]).values
            assert torch.equal(keys, torch.sort(back[1] * n_dst + back[0]).values)


@pytest.mark.parametrize("name", NAMES)
def test_direct_reader_matches_registry(loaded, real_root, name):
    exp = EXPECTED[name]
    data, task = exp["reader"](require(real_root, exp["rel"]))
    ref, ref_task = loaded(name)
    assert task == ref_task
    assert set(data.node_types) == set(ref.node_types)
    assert set(data.edge_types) == set(ref.edge_types)
    for t in data.node_types:
        for key in ("x", "y", "train_mask", "val_mask", "test_mask"):
            if key in data[t]:
                assert torch.equal(data[t][key], ref[t][key]), (t, key)
    for et in data.edge_types:
        assert torch.equal(data[et].edge_index, ref[et].edge_index)


def test_gtn_details(loaded):
    acm, _ = loaded("gtn-acm")
    assert set(torch.unique(acm["paper"].x).tolist()) <= {0.0, 1.0}  # binary bag-of-words
    dblp, _ = loaded("gtn-dblp")
    a = dblp["author"]
    assert a.train_mask.nonzero().view(-1).tolist() == list(range(800))
    assert a.val_mask.nonzero().view(-1).tolist() == list(range(800, 1200))
    for data in (acm, dblp):
        assert all("edge_weight" not in data[et] for et in data.edge_types)


def test_hgsl_weights_and_degrees(loaded):
    data, _ = loaded("hgsl-yelp")
    w = data["business", "to", "user"].edge_weight
    assert w.dtype == torch.float32 and float(w.min()) == 1.0 and float(w.max()) == 16.0
    assert "edge_weight" in data["user", "to", "business"]
    assert "edge_weight" not in data["business", "to", "service"]
    for other in ("service", "level"):  # every business has exactly one of each
        deg = torch.bincount(data["business", "to", other].edge_index[0], minlength=2614)
        assert bool((deg == 1).all())


def test_heco_splits_and_coverage(loaded, real_root):
    data, _ = loaded("heco-freebase")
    for other in ("actor", "director", "writer"):
        ei = data["movie", "to", other].edge_index
        assert torch.unique(ei[1]).numel() == data[other].num_nodes  # every id has an edge
        assert torch.unique(ei[0]).numel() == 3492  # every movie has one of each
    path = require(real_root, "HeCo_Freebase")
    for split in (40, 60):
        d, _ = read_heco_freebase(path, split=split)
        m = d["movie"]
        assert torch.bincount(m.y[m.train_mask]).tolist() == [split] * 3
        assert int(m.val_mask.sum()) == int(m.test_mask.sum()) == 1000
    d40, _ = load_dataset("heco-freebase", root=real_root, split=40)
    assert int(d40["movie"].train_mask.sum()) == 120
    with pytest.raises(ValueError, match="20, 40 or 60") as err:
        read_heco_freebase(path, split=30)
    assert isinstance(err.value, HgnnError)


def test_cache_round_trip_keeps_everything(loaded, real_root):
    for name in ("hgsl-yelp", "heco-freebase"):
        ref, ref_task = loaded(name)  # wrote the cache entry
        again, task = load_dataset(name, root=real_root)
        assert task == ref_task
        for t in ref.node_types:
            assert again[t].num_nodes == ref[t].num_nodes
        for et in ref.edge_types:
            for key in ("edge_index", "edge_weight"):
                if key in ref[et]:
                    assert torch.equal(again[et][key], ref[et][key])


# --- safety: hostile and damaged files ---------------------------------------------------------

def _global_call(module: str, name: str, arg: str) -> bytes:
    """A protocol-3 pickle that calls ``module.name(arg)``, written opcode by opcode."""
    raw = arg.encode()
    return (b"\x80\x03c" + f"{module}\n{name}\n".encode()
            + b"X" + len(raw).to_bytes(4, "little") + raw + b"\x85R.")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_safe_load_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(DataFormatError, match="forbidden global os.system") as err:
        safe_load(_global_call("os", "system", f"touch {marker}"), "evil.pkl")
    assert err.value.file == "evil.pkl"
    assert not marker.exists()
    # pickle.dumps only writes bytes; os.system pickles as posix.system (or nt.system).
    with pytest.raises(DataFormatError, match=r"forbidden global \w+\.system"):
        safe_load(pickle.dumps(_Evil(), protocol=3), "evil.pkl")


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("builtins", "exec"), ("subprocess", "Popen"), ("numpy", "load"),
    ("scipy.sparse", "load_npz"), ("numpy.core.multiarray", "_frombuffer_evil"),
])
def test_safe_load_refuses_other_globals(module, name):
    with pytest.raises(DataFormatError, match=f"forbidden global {module}.{name}"):
        safe_load(_global_call(module, name, "1"), "x.pkl")


def test_safe_load_accepts_arrays_and_can_only_narrow():
    obj = [np.arange(3), sp.csr_matrix(np.eye(2)), sp.csc_matrix(np.eye(2)), np.int64(7), {1, 2},
           range(3)]
    out = safe_load(pickle.dumps(obj, protocol=3), "ok.pkl")
    assert np.array_equal(out[0], np.arange(3)) and out[1].format == "csr" and out[4] == {1, 2}
    with pytest.raises(DataFormatError, match="forbidden global builtins.range"):
        safe_load(pickle.dumps(range(3), protocol=3), "r.pkl", ARRAYS_ONLY)
    with pytest.raises(ValueError, match="os.system"):
        safe_load(b".", "x.pkl", frozenset({("os", "system")}))


@pytest.mark.parametrize("cut", [1, 10, -2])
def test_truncated_pickle_is_a_clear_error(cut):
    data = pickle.dumps([np.arange(100), sp.csr_matrix(np.eye(5))], protocol=3)
    with pytest.raises(DataFormatError, match="truncated or corrupt pickle"):
        safe_load(data[:cut], "t.pkl")


def _gtn_zip(path: Path, edges: bytes | None = None, labels: bytes | None = None) -> Path:
    """A tiny GTN-layout zip: 3 + 2 nodes, one relation each way, node 4 isolated."""
    a = sp.csr_matrix(([1, 1, 1], ([0, 1, 2], [3, 3, 3])), shape=(5, 5))
    members = {
        "edges.pkl": edges if edges is not None else pickle.dumps([a, a.T.tocsc()], protocol=3),
        "labels.pkl": labels if labels is not None else pickle.dumps(
            [np.array([[0, 0]]), np.array([[1, 1]]), np.array([[2, 0]])], protocol=3),
        "node_features.pkl": pickle.dumps(np.eye(5, dtype=np.int64), protocol=3),
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_gtn_reader_generic_graph(tmp_path):
    data, task = read_gtn(_gtn_zip(tmp_path / "g.zip"))
    assert data["type0"].num_nodes == 3 and data["type1"].num_nodes == 2  # isolated node kept
    assert data["type0", "to", "type1"].edge_index.tolist() == [[0, 1, 2], [0, 0, 0]]
    assert task.target == "type0" and task.num_classes == 2
    assert data["type0"].y.tolist() == [0, 1, 0] and data["type1"].x.dtype == torch.float32


def test_gtn_zip_with_evil_edges_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = _gtn_zip(tmp_path / "evil.zip", _global_call("os", "system", f"touch {marker}"))
    with pytest.raises(DataFormatError, match="forbidden global os.system") as err:
        read_gtn(path)
    assert "edges.pkl" in err.value.file and "evil.zip" in err.value.file
    assert not marker.exists()
    path = _gtn_zip(tmp_path / "cut.zip", pickle.dumps([sp.eye(5).tocsr()], protocol=3)[:-20])
    with pytest.raises(DataFormatError, match="edges.pkl.*truncated or corrupt"):
        read_gtn(path)


def test_heco_small_folder_reads(tmp_path):
    data, task = read_heco_freebase(write_heco(tmp_path / "ok", "0\t0\n1\t1\n2\t1\n3\t0\n"))
    # The release's counts, not the largest id + 1 (ids 3 and 2 here).
    assert data["actor"].num_nodes == 33401 and data["director"].num_nodes == 2502
    assert data["movie"].num_nodes == 3492 and data["writer"].num_nodes == 4459
    assert task.featureless == ("movie", "actor", "director", "writer")


@pytest.mark.parametrize("md,line", [
    ("0\t0\n1\t1\n2 1\n3\t0\n", 3),  # space instead of tab
    ("0\t0\n1\t1\n\n2\tx\n", 3),  # a blank line inside the file is itself an error
    ("0\t0\n1\t1\n2\tx\n", 3),  # not a number
    ("0\t0\n1\t1\t5\n", 2),  # three fields
    ("0\t0\n1\t-1\n", 2),  # negative id
    ("0\t0\n3492\t1\n", 2),  # movie id beyond HeCo's 3,492 movies
    ("0\t0\n1\t1\n2\t2502\n", 3),  # director id beyond HeCo's 2,502 directors
])
def test_heco_malformed_line_is_named(tmp_path, md, line):
    with pytest.raises(DataFormatError) as err:
        read_heco_freebase(write_heco(tmp_path / "bad", md))
    assert err.value.file.endswith("md.txt") and err.value.line == line
    assert f"md.txt, line {line}:" in str(err.value)


def test_readers_never_use_plain_pickle():
    formats = Path(__file__).resolve().parents[1] / "hgnn" / "data" / "formats"
    for name in ("safe_pickle", "gtn", "magnn", "hgsl", "heco"):
        text = (formats / f"{name}.py").read_text()
        assert "pickle.load" not in text and "allow_pickle=True" not in text, name


def test_labels_given_as_lists_are_accepted(tmp_path):
    # GTN's DBLP and IMDB labels.pkl hold plain Python lists of [node, class], not arrays.
    labels = pickle.dumps([[[0, 0]], [[1, 1]], [[2, 0]]], protocol=3)
    data, _ = read_gtn(_gtn_zip(tmp_path / "lists.zip", labels=labels))
    assert data["type0"].y.tolist() == [0, 1, 0]
