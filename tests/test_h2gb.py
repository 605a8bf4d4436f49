"""H2GB readers on tiny fixtures that the tests write in each dataset's on-disk layout.

Layouts (file names, columns, separators, folders below the data root) are those H2GB's own loaders
read; the dataset cards in ``datasets/h2gb-*.md`` say where each fact comes from.
"""
from __future__ import annotations

import csv
import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from hgnn.data import load_dataset
from hgnn.data.formats.h2gb import even_quantile_labels, read_h2gb_mag_year
from hgnn.data.formats.h2gb_ieee import CATEGORICAL_COLUMNS, NODE_COLUMNS, read_h2gb_ieee_cis
from hgnn.data.formats.h2gb_oag import read_h2gb_oag
from hgnn.data.formats.h2gb_pdns import read_h2gb_pdns
from hgnn.data.formats.h2gb_pokec import HOBBY_FIELDS, PROFILE_FIELDS, read_h2gb_pokec
from hgnn.data.formats.h2gb_rcdd import read_h2gb_rcdd
from hgnn.data.registry import DATASETS
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError
from hgnn.train.metrics import compute_metrics, f1_positive
from tests.test_ogb_mag import mag_files, write_mag

NAMES = ("h2gb-mag-year", "h2gb-oag-cs", "h2gb-oag-eng", "h2gb-oag-chem", "h2gb-rcdd",
         "h2gb-ieee-cis", "h2gb-pokec", "h2gb-pdns")


def _counts(store) -> list[int]:
    return [int(store[m].sum()) for m in ("train_mask", "val_mask", "test_mask")]


def _disjoint(store) -> bool:
    total = store.train_mask.long() + store.val_mask.long() + store.test_mask.long()
    return bool((total <= 1).all())


def _raises(fn, file: str, line: int | None = None, words: str = "") -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        fn()
    err = info.value
    assert Path(err.file.split(" (in ")[0]).name == file, str(err)
    if line is not None:
        assert err.line == line, str(err)
    assert words in str(err), str(err)
    return err


def test_registry_rows():
    for name in NAMES:
        entry = DATASETS[name]
        assert entry.resolve_reader() is not None and entry.paths


# ---------------------------------------------------------------------------------------------
# metric
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_f1_positive_matches_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(seed)
    n = 40 + 17 * seed
    logits = torch.randn(n, 2, generator=g) + torch.tensor([0.8, 0.0])  # positives are rarer
    y = (torch.rand(n, generator=g) < 0.25).long()
    m = compute_metrics(logits, y, TaskSpec(target="t", num_classes=2))
    pred = logits.argmax(1)
    assert m["f1_positive"] == pytest.approx(sk.f1_score(y, pred, average="binary"))
    assert f1_positive(torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long)) == 0.0
    assert "f1_positive" not in compute_metrics(torch.randn(6, 3), torch.arange(6) % 3,
                                                TaskSpec(target="t", num_classes=3))


# ---------------------------------------------------------------------------------------------
# mag-year (ogbn-mag's raw layout below <root>/mag/ogbn_mag)
# ---------------------------------------------------------------------------------------------

def test_even_quantile_labels_cut_points():
    labels, bounds = even_quantile_labels(np.arange(1, 11, dtype=float), 5)
    assert bounds == pytest.approx([2.8, 4.6, 6.4, 8.2])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_mag_year(tmp_path):
    files, truth = mag_files()
    write_mag(tmp_path / "mag" / "ogbn_mag", files)
    data, task = load_dataset("h2gb-mag-year", root=tmp_path)
    paper = data["paper"]
    expected, _ = even_quantile_labels(truth["year"].astype(float), 5)
    assert torch.equal(paper.y, torch.from_numpy(expected))
    assert torch.equal(paper.venue, torch.from_numpy(truth["y"]))
    assert paper.x.shape == (30, 128) and data["author", "writes", "paper"].edge_index.shape == (2, 70)
    assert _counts(paper) == [15, 7, 8] and _disjoint(paper)
    assert (task.num_classes, task.metrics, task.split, task.split_seed) == (5, ("accuracy",),
                                                                            "random", 0)
    assert len(task.class_names) == 5 and task.class_names[0].startswith("year <")
    again, _ = read_h2gb_mag_year(tmp_path / "mag" / "ogbn_mag")
    other, _ = read_h2gb_mag_year(tmp_path / "mag" / "ogbn_mag", split_seed=1)
    assert torch.equal(again["paper"].train_mask, paper.train_mask)
    assert not torch.equal(other["paper"].train_mask, paper.train_mask)


def test_mag_year_bad_year_file(tmp_path):
    files, _ = mag_files()
    files["raw/node-feat/paper/node_year.csv.gz"] = "2015\n" * 10 + "soon\n" + "2016\n" * 19
    folder = write_mag(tmp_path / "ogbn_mag", files)
    _raises(lambda: read_h2gb_mag_year(folder), "node_year.csv.gz", 11, "'soon' is not an integer")


# ---------------------------------------------------------------------------------------------
# OAG: one torch.save'd dict (node_forward / node_feature / edge_list), GPT-GNN style
# ---------------------------------------------------------------------------------------------

OAG_N = {"paper": 6, "author": 4, "field": 3, "affiliation": 2, "venue": 3}
OAG_YEARS = [2015, 2016, 2017, 2018, 2019, 2016]


def _oag_graph(table=dict) -> dict:
    rng = np.random.default_rng(0)
    forward, feature = {}, {}
    for t, n in OAG_N.items():
        ids = [f"{t[0]}{1000 + 7 * i}" for i in range(n)]
        forward[t] = {node_id: row for row, node_id in enumerate(ids)}
        cols = {"id": ids, "emb": [rng.standard_normal(8).astype(np.float32) for _ in ids]}
        if t == "paper":
            cols["time"] = list(OAG_YEARS)
        feature[t] = table(cols)
    edge_list: dict = {}

    def add(src_type, src, tar_type, tar, rel):  # GPT-GNN's add_edge: both directions
        edge_list.setdefault(tar_type, {}).setdefault(src_type, {}).setdefault(rel, {}) \
            .setdefault(tar, {})[src] = 2018
        edge_list.setdefault(src_type, {}).setdefault(tar_type, {}).setdefault("rev_" + rel, {}) \
            .setdefault(src, {})[tar] = 2018

    for a, p in [(0, 0), (1, 0), (1, 2), (3, 5), (2, 4)]:
        add("author", a, "paper", p, "AP_write_first")
    for p, q in [(1, 0), (2, 1), (5, 3)]:
        add("paper", p, "paper", q, "PP_cite")
    for p, f in [(0, 2), (3, 1), (4, 0)]:
        add("paper", p, "field", f, "PF_in_L1")
    for a, i in [(0, 1), (2, 0)]:
        add("author", a, "affiliation", i, "in")
    for p, v in [(0, 0), (1, 0), (2, 2), (4, 2)]:
        add("paper", p, "venue", v, "PV_Journal")
    add("paper", 3, "venue", 1, "PV_Conference")
    return {"node_forward": forward, "node_feature": feature, "edge_list": edge_list}


def _write_oag(path: Path, graph: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(graph, path)
    return path


def _check_oag(data, task, graph):
    assert {t: data[t].num_nodes for t in data.node_types} == {
        t: n for t, n in OAG_N.items() if t != "venue"}
    emb = graph["node_feature"]["author"]["emb"]
    assert torch.allclose(data["author"].x, torch.from_numpy(np.stack(list(emb))))
    assert data["paper"].x.shape == (6, 8)
    assert set(data.edge_types) == {("author", "AP_write_first", "paper"),
                                    ("paper", "PP_cite", "paper"), ("paper", "PF_in_L1", "field"),
                                    ("author", "in", "affiliation")}
    assert data["author", "AP_write_first", "paper"].edge_index.tolist() == [[0, 1, 1, 3, 2],
                                                                             [0, 0, 2, 5, 4]]
    assert data["paper", "PF_in_L1", "field"].edge_index.tolist() == [[0, 3, 4], [2, 1, 0]]
    assert data["paper"].y.tolist() == [0, 0, 1, -1, 1, -1]
    assert data["paper"].year.tolist() == OAG_YEARS
    assert _counts(data["paper"]) == [2, 1, 1]
    assert (task.num_classes, task.metrics, task.split) == (2, ("accuracy",), "fixed")


def test_oag_drive_layout_via_registry(tmp_path):
    graph = _oag_graph()
    _write_oag(tmp_path / "OAG" / "cs" / "raw" / "graph_CS_20190919.pt", graph)
    data, task = load_dataset("h2gb-oag-cs", root=tmp_path)
    _check_oag(data, task, graph)


def test_oag_hugging_face_name_and_folder(tmp_path):
    graph = _oag_graph()
    _write_oag(tmp_path / "OAG" / "raw" / "OAG_Chemistry.pt", graph)
    data, task = load_dataset("h2gb-oag-chem", root=tmp_path)
    _check_oag(data, task, graph)
    data, task = read_h2gb_oag(tmp_path / "OAG", domain="chemistry")
    _check_oag(data, task, graph)
    _raises(lambda: read_h2gb_oag(tmp_path / "OAG", domain="engineering"), "OAG_Engineering.pt",
            None, "missing file")


def test_oag_defaultdicts_numpy_ids_and_legacy_format(tmp_path):
    from collections import defaultdict

    def nest(d, depth):
        if depth == 0 or not isinstance(d, dict):
            return d
        out = defaultdict(dict)
        out.update({k: nest(v, depth - 1) for k, v in d.items()})
        return out

    graph = _oag_graph()
    pairs = graph["edge_list"]["paper"]["author"]["AP_write_first"]
    graph["edge_list"]["paper"]["author"]["AP_write_first"] = {
        np.int64(t): {np.int64(s): y for s, y in src.items()} for t, src in pairs.items()}
    graph["edge_list"] = nest(graph["edge_list"], 3)
    path = tmp_path / "graph_CS_20190919.pt"
    torch.save(graph, path, _use_new_zipfile_serialization=False)
    data, task = read_h2gb_oag(path)
    _check_oag(data, task, graph)


def test_oag_pandas_tables(tmp_path):
    pd = pytest.importorskip("pandas")
    graph = _oag_graph(table=pd.DataFrame)
    path = _write_oag(tmp_path / "graph_Engineering.pt", graph)
    data, task = read_h2gb_oag(path, domain="engineering")
    _check_oag(data, task, graph)


def test_oag_errors(tmp_path):
    graph = _oag_graph()
    graph["node_feature"]["author"]["id"] = ["a1000", "a1014", "a1007", "a1021"]
    path = _write_oag(tmp_path / "a" / "graph_CS_20190919.pt", graph)
    _raises(lambda: read_h2gb_oag(path), "graph_CS_20190919.pt", None, "row 1 has id 'a1014'")

    graph = _oag_graph()
    graph["edge_list"]["paper"]["author"]["AP_write_first"][5][9] = 2018
    path = _write_oag(tmp_path / "b" / "graph_CS_20190919.pt", graph)
    _raises(lambda: read_h2gb_oag(path), "graph_CS_20190919.pt", None, "author row 9 is out of range")

    graph = _oag_graph()
    graph["extra"] = io.StringIO("not data")  # a global the safe unpickler refuses
    path = _write_oag(tmp_path / "c" / "graph_CS_20190919.pt", graph)
    _raises(lambda: read_h2gb_oag(path), "graph_CS_20190919.pt", None, "cannot be unpickled safely")

    path = tmp_path / "d" / "graph_CS_20190919.pt"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({"node_forward": {}}, protocol=2)[:10])
    _raises(lambda: read_h2gb_oag(path), "graph_CS_20190919.pt")



def test_oag_plain_and_legacy_files_via_registry_cache(tmp_path):
    # A pre-1.6 torch.save file or a plain pickle is one file, not a zip: the cache key checksums
    # the file itself instead of refusing it as "not a readable zip archive".
    graph = _oag_graph()
    path = tmp_path / "OAG" / "cs" / "raw" / "graph_CS_20190919.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(graph))
    for _ in range(2):  # the second load comes from the cache
        data, task = load_dataset("h2gb-oag-cs", root=tmp_path)
        _check_oag(data, task, graph)
    torch.save(graph, path, _use_new_zipfile_serialization=False)
    data, task = load_dataset("h2gb-oag-cs", root=tmp_path)
    _check_oag(data, task, graph)
    changed = _oag_graph()
    changed["node_feature"]["paper"]["time"] = [2015] * 6  # new bytes, new cache key
    path.write_bytes(pickle.dumps(changed))
    data, _ = load_dataset("h2gb-oag-cs", root=tmp_path)
    assert _counts(data["paper"]) == [4, 0, 0]

    for k, damaged in enumerate([pickle.dumps(graph)[:40], b"garbage", _oag_bytes(graph)[:700]]):
        root = tmp_path / f"bad{k}"
        _write_oag(root / "OAG" / "cs" / "raw" / "graph_CS_20190919.pt", {})
        (root / "OAG" / "cs" / "raw" / "graph_CS_20190919.pt").write_bytes(damaged)
        err = _raises(lambda root=root: load_dataset("h2gb-oag-cs", root=root),
                      "graph_CS_20190919.pt", None, "not a readable torch.save or pickle file")
        assert "zip archive" not in str(err)


def _oag_bytes(graph: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(graph, buffer)
    return buffer.getvalue()

# ---------------------------------------------------------------------------------------------
# RCDD: AliRCD_ICDM_*.csv, no headers, in <root>/RCDD/raw
# ---------------------------------------------------------------------------------------------

RCDD_TYPES = ["item"] * 14 + ["a"] * 3 + ["b"] * 2
RCDD_DIM = {"item": 4, "a": 3, "b": 2}


def _rcdd_files() -> tuple[dict[str, str], dict]:
    rng = np.random.default_rng(1)
    order = rng.permutation(len(RCDD_TYPES))  # global id of each line, types interleaved
    lines, local, feats = [], {}, {t: [] for t in RCDD_DIM}
    types = [RCDD_TYPES[i] for i in rng.permutation(len(RCDD_TYPES))]
    for gid, t in zip(order, types, strict=True):
        vec = rng.standard_normal(RCDD_DIM[t]).round(4)
        local[int(gid)] = (t, len(feats[t]))
        feats[t].append(vec)
        lines.append(f"{gid},{t}," + ":".join(str(v) for v in vec))
    by_type = {t: [g for g, (tt, _) in sorted(local.items(), key=lambda kv: kv[1][1]) if tt == t]
               for t in RCDD_DIM}
    edges = []
    for k in range(12):
        edges.append((by_type["item"][k], by_type["a"][k % 3], "item", "a", "A_1"))
    for k in range(5):
        edges.append((by_type["b"][k % 2], by_type["item"][k + 3], "b", "item", "B_1"))
    items = by_type["item"]
    train = [(items[k], k % 2) for k in range(10)]
    test = [(items[k], (k + 1) % 2) for k in range(10, 14)]
    files = {
        "AliRCD_ICDM_nodes.csv": "\n".join(lines) + "\n",
        "AliRCD_ICDM_edges.csv": "".join(f"{s},{d},{st},{dt},{et}\n" for s, d, st, dt, et in edges),
        "AliRCD_ICDM_train_labels.csv": "".join(f"{i},{y}\n" for i, y in train),
        "AliRCD_ICDM_test_labels.csv": "".join(f"{i}\t{y}\n" for i, y in test),
    }
    return files, {"local": local, "feats": feats, "edges": edges, "train": train, "test": test}


def _write_files(folder: Path, files: dict[str, str | bytes | None]) -> Path:
    for name, text in files.items():
        if text is None:
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def test_rcdd(tmp_path):
    files, truth = _rcdd_files()
    _write_files(tmp_path / "RCDD" / "raw", files)
    data, task = load_dataset("h2gb-rcdd", root=tmp_path, seed=3)
    assert {t: data[t].num_nodes for t in data.node_types} == {"item": 14, "a": 3, "b": 2}
    for t, dim in RCDD_DIM.items():
        assert data[t].x.shape == (RCDD_TYPES.count(t), dim)
        assert np.allclose(data[t].x.numpy(), np.stack(truth["feats"][t]), atol=1e-6)
    loc = truth["local"]
    ei = data["item", "A_1", "a"].edge_index
    assert ei.tolist() == [[loc[s][1] for s, *_ in truth["edges"][:12]],
                           [loc[d][1] for _, d, *_ in truth["edges"][:12]]]
    assert data["b", "B_1", "item"].edge_index.shape == (2, 5)
    item = data["item"]
    for gid, y in truth["train"] + truth["test"]:
        assert int(item.y[loc[gid][1]]) == y
    # the files' global id of every item, for prediction files
    assert item.source_id.tolist() == sorted((g for g, (t, _) in loc.items() if t == "item"),
                                             key=lambda g: loc[g][1])
    assert _counts(item) == [8, 2, 4] and _disjoint(item)  # 20 % of the 5 + 5 training items
    assert int(item.train_pool_mask.sum()) == 10
    assert (task.num_classes, task.metrics[0], task.split, task.val_fraction) == (
        2, "f1_positive", "holdout", 0.2)


def test_rcdd_zip_in_place(tmp_path):
    import zipfile

    files, _ = _rcdd_files()
    archive = tmp_path / "AliRCD_ICDM.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    data, _ = read_h2gb_rcdd(archive)
    assert data["item"].x.shape == (14, 4) and int(data["item"].test_mask.sum()) == 4


def _edit_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[line - 1] = new + "\n"
    return "".join(lines)


def test_rcdd_errors(tmp_path):
    files, truth = _rcdd_files()
    nodes = files["AliRCD_ICDM_nodes.csv"]
    item_lines = [i + 1 for i, ln in enumerate(nodes.splitlines()) if ",item," in ln]
    a_gid = next(g for g, (t, _) in truth["local"].items() if t == "a")
    cases = [
        ({"AliRCD_ICDM_nodes.csv": _edit_line(nodes, item_lines[2], "99,item,1:2:3:4")},
         "AliRCD_ICDM_nodes.csv", item_lines[2], "out of range"),
        ({"AliRCD_ICDM_nodes.csv": _edit_line(
            nodes, item_lines[3], nodes.splitlines()[item_lines[3] - 1].rsplit(":", 1)[0])},
         "AliRCD_ICDM_nodes.csv", item_lines[3], "expected 4 ':'-separated"),
        ({"AliRCD_ICDM_edges.csv": _edit_line(files["AliRCD_ICDM_edges.csv"], 3,
                                              f"{a_gid},{a_gid},item,a,A_1")},
         "AliRCD_ICDM_edges.csv", 3, "is a 'a'"),
        ({"AliRCD_ICDM_edges.csv": _edit_line(files["AliRCD_ICDM_edges.csv"], 4, "1,2,item")},
         "AliRCD_ICDM_edges.csv", 4, "expected 5"),
        ({"AliRCD_ICDM_test_labels.csv": files["AliRCD_ICDM_test_labels.csv"].replace("\t", ",")},
         "AliRCD_ICDM_test_labels.csv", 1, "separated by a tab"),
        ({"AliRCD_ICDM_train_labels.csv": f"{a_gid},1\n"}, "AliRCD_ICDM_train_labels.csv", 1,
         "not an 'item' node"),
        ({"AliRCD_ICDM_edges.csv": None}, "AliRCD_ICDM_edges.csv", None, "missing file"),
    ]
    for k, (changes, file, line, words) in enumerate(cases):
        folder = _write_files(tmp_path / f"c{k}", {**files, **changes})
        _raises(lambda folder=folder: read_h2gb_rcdd(folder), file, line, words)



def test_rcdd_refuses_leaky_or_ambiguous_labels_and_comma_features(tmp_path):
    files, truth = _rcdd_files()
    train, test = files["AliRCD_ICDM_train_labels.csv"], files["AliRCD_ICDM_test_labels.csv"]
    (gid, y), (test_gid, test_y) = truth["train"][0], truth["test"][0]
    nodes = files["AliRCD_ICDM_nodes.csv"]
    item_line = next(i + 1 for i, ln in enumerate(nodes.splitlines()) if ",item," in ln)
    cases = [  # H2GB's loader would keep the test label and put the item in both splits
        ({"AliRCD_ICDM_test_labels.csv": test + f"{gid}\t{y}\n"}, "AliRCD_ICDM_test_labels.csv",
         5, f"node {gid} is also in AliRCD_ICDM_train_labels.csv (line 1)"),
        ({"AliRCD_ICDM_train_labels.csv": train + f"{gid},{1 - y}\n"},
         "AliRCD_ICDM_train_labels.csv", 11, f"node {gid} is labelled {y} on line 1 and {1 - y}"),
        ({"AliRCD_ICDM_test_labels.csv": test + f"{test_gid}\t{1 - test_y}\n"},
         "AliRCD_ICDM_test_labels.csv", 5, f"labelled {test_y} on line 1 and {1 - test_y} here"),
        ({"AliRCD_ICDM_nodes.csv": _edit_line(  # read as 4 values, one of them -0.5, before
            nodes, item_line, nodes.splitlines()[item_line - 1].replace(":", ",", 1))},
         "AliRCD_ICDM_nodes.csv", item_line, "','"),
    ]
    for k, (changes, file, line, words) in enumerate(cases):
        root = _write_files(tmp_path / f"c{k}" / "RCDD" / "raw", {**files, **changes})
        _raises(lambda root=root: read_h2gb_rcdd(root), file, line, words)
        _raises(lambda k=k: load_dataset("h2gb-rcdd", root=tmp_path / f"c{k}"), file, line, words)
    # a line repeated as it was says nothing new: the same graph and split
    root = _write_files(tmp_path / "same" / "RCDD" / "raw",
                        {**files, "AliRCD_ICDM_train_labels.csv": train + f"{gid},{y}\n"})
    again, _ = read_h2gb_rcdd(root)
    plain, _ = read_h2gb_rcdd(_write_files(tmp_path / "plain" / "RCDD" / "raw", files))
    for key in ("y", "train_mask", "test_mask"):
        assert torch.equal(again["item"][key], plain["item"][key])

# ---------------------------------------------------------------------------------------------
# IEEE-CIS: Kaggle's train_transaction.csv / train_identity.csv in <root>/IEEE-CIS/raw
# ---------------------------------------------------------------------------------------------

TX_COLUMNS = (["TransactionID", "isFraud", "TransactionDT", "TransactionAmt", "ProductCD"]
              + [f"card{i}" for i in range(1, 7)] + ["addr1", "addr2", "dist1", "P_emaildomain",
                                                     "R_emaildomain", "C1", "D1"]
              + [f"M{i}" for i in range(1, 10)] + ["V1"])
ID_COLUMNS = (["TransactionID", "id_01", "id_02"] + [f"id_{i}" for i in range(12, 39)]
              + ["DeviceType", "DeviceInfo"])
# per transaction: id, fraud, time, amount, card1, P_emaildomain, M1, has identity, id_13,
# DeviceInfo, id_01
TX = [
    (3001, 0, 86400, "68.5", "13926", "gmail.com", "T", True, "49", "Windows", "-5"),
    (3002, 0, 86401, "29", "2755", "", "F", True, "49.0", "iOS", "0"),
    (3003, 1, 86469, "59", "13926", "outlook.com", "", True, "", "Windows", ""),
    (3004, 0, 86499, "50", "18132", "yahoo.com", "T", False, "", "", ""),
    (3005, 0, 86506, "50", "4497", "gmail.com", "T", True, "52", "iOS", "-10"),
    (3006, 0, 86400, "49", "5937", "gmail.com", "F", True, "49", "Windows", "-5"),  # earlier DT
    (3007, 1, 86522, "159", "12308", "", "", True, "", "", "-5"),
    (3008, 0, 86529, "422.5", "12695", "anonymous.com", "T", True, "49", "Windows", "0"),
    (3009, 0, 86535, "15", "2803", "hotmail.com", "T", False, "", "", ""),
    (3010, 1, 86536, "117", "17399", "gmail.com", "F", True, "", "iOS", "-20"),
    (3011, 0, 86549, "75.887", "16496", "", "T", True, "49", "Windows", "0"),
    (3012, 0, 86555, "16.495", "4461", "gmail.com", "", True, "", "Windows", "-5"),
]


def _ieee_files() -> dict[str, str]:
    tx, ident = io.StringIO(), io.StringIO()
    tw, iw = csv.writer(tx, lineterminator="\n"), csv.writer(ident, lineterminator="\n")
    tw.writerow(TX_COLUMNS)
    iw.writerow(ID_COLUMNS)
    for tid, fraud, dt, amt, card1, email, m1, has_id, id13, dev, id01 in TX:
        row = {c: "" for c in TX_COLUMNS}
        row.update(TransactionID=tid, isFraud=fraud, TransactionDT=dt, TransactionAmt=amt,
                   ProductCD="W", card1=card1, card4="visa", card6="debit", addr1="315",
                   P_emaildomain=email, C1="1.0", D1=str(tid % 7), M1=m1, V1="1.0")
        tw.writerow([row[c] for c in TX_COLUMNS])
        if has_id:
            irow = {c: "x" for c in ID_COLUMNS}
            irow.update(TransactionID=tid, id_01=id01, id_02=str(tid * 3), id_13=id13,
                        DeviceInfo=dev, DeviceType="desktop")
            iw.writerow([irow[c] for c in ID_COLUMNS])
    return {"train_transaction.csv": tx.getvalue(), "train_identity.csv": ident.getvalue()}


def test_ieee_cis(tmp_path):
    _write_files(tmp_path / "IEEE-CIS" / "raw", _ieee_files())
    data, task = load_dataset("h2gb-ieee-cis", root=tmp_path)
    kept = sorted([t for t in TX if t[7]], key=lambda t: t[2])  # stable: 3006 moves to second
    n = len(kept)
    tr = data["transaction"]
    assert tr.num_nodes == n == 10
    assert tr.y.tolist() == [t[1] for t in kept]
    assert tr.time.tolist() == [t[2] for t in kept]
    assert tr.source_id.tolist() == [t[0] for t in kept]  # TransactionID, in time order
    # one-hot: M1 {0, F, T}, id_13 {0, 49, 52} ("49" and "49.0" are one value), DeviceInfo
    # {0, Windows, iOS}, DeviceType and the other 26 identity columns constant, M2..M9 all missing
    # ({0}); numeric: TransactionAmt, dist1, C1, D1, V1, id_01, id_02 (card*, addr*, e-mails are
    # node columns, not features).
    assert tr.x.shape == (n, 3 + 3 + 3 + 1 + 26 + 8 + 7)
    m1 = [t[6] for t in kept]
    assert tr.x[:, :3].tolist() == [[float(v == ""), float(v == "F"), float(v == "T")] for v in m1]
    amount = np.log10(np.abs([float(t[3]) for t in kept]) + 1e-9)
    z = (amount - amount.mean()) / (amount.std() + 1e-9)
    assert np.allclose(tr.x[:, 44].numpy(), z, atol=1e-5)
    assert _counts(tr) == [8, 1, 1] and tr.train_mask[:8].all() and tr.test_mask[9]
    ei = data["transaction", "to", "card1"].edge_index
    assert ei.shape == (2, n) and data["card1"].num_nodes == len({t[4] for t in kept})
    same = [i for i, t in enumerate(kept) if t[4] == "13926"]
    assert len(same) == 2 and int(ei[1, same[0]]) == int(ei[1, same[1]]) == 0  # first seen -> 0
    emails = [t[5] for t in kept]
    ei = data["transaction", "to", "P_emaildomain"].edge_index
    assert ei[0].tolist() == [i for i, e in enumerate(emails) if e]
    assert data["P_emaildomain"].num_nodes == len({e for e in emails if e})
    assert data["card2"].num_nodes == 0 and set(task.featureless) == set(NODE_COLUMNS)
    assert (task.num_classes, task.metrics[0], task.split) == (2, "f1_positive", "fixed")
    assert len(CATEGORICAL_COLUMNS) == 38


def test_ieee_cis_errors(tmp_path):
    files = _ieee_files()
    tx, ident = files["train_transaction.csv"], files["train_identity.csv"]
    cases = [
        ({"train_identity.csv": ident.replace(",-10,", ",ten,")}, "train_identity.csv", 5,
         "id_01: 'ten' is not a number"),
        ({"train_transaction.csv": tx.replace("3010,1,", "3010,2,")}, "train_transaction.csv", 11,
         "isFraud '2' is not 0 or 1"),
        ({"train_transaction.csv": tx.replace(",M5,", ",M5x,")}, "train_transaction.csv", 1,
         "no column 'M5'"),
        ({"train_identity.csv": _edit_line(ident, 3, "3002,0")}, "train_identity.csv", 3,
         "expected 32 fields"),
        ({"train_identity.csv": None}, "train_identity.csv", None, "missing file"),
    ]
    for k, (changes, file, line, words) in enumerate(cases):
        folder = _write_files(tmp_path / f"c{k}", {**files, **changes})
        _raises(lambda folder=folder: read_h2gb_ieee_cis(folder), file, line, words)



def test_ieee_cis_duplicate_transaction_id(tmp_path):
    files = _ieee_files()
    tx = files["train_transaction.csv"]
    rows = tx.splitlines(keepends=True)
    for k, row in enumerate((rows[1], rows[4])):  # 3001 has an identity row, 3004 has none
        folder = _write_files(tmp_path / f"c{k}", {**files, "train_transaction.csv": tx + row})
        tid = row.split(",")[0]
        _raises(lambda folder=folder: read_h2gb_ieee_cis(folder), "train_transaction.csv",
                len(rows) + 1, f"TransactionID {tid} appears twice (first on line")

# ---------------------------------------------------------------------------------------------
# H-Pokec: SNAP's soc-pokec-*.txt.gz in <root>/Pokec/raw
# ---------------------------------------------------------------------------------------------

POKEC_USERS = {  # user_id: gender, region, AGE, body, music, sport
    1: ("1", "zilinsky kraj, zilina", "26", "null", '<a href="/klub/rock">rock</a>', "null"),
    2: ("0", "bratislavsky kraj, bratislava - ruzinov", "0", "180 cm",
        '<a href="/klub/jazz">jazz</a>, <a href="/klub/rock">rock</a>', "null"),
    3: ("null", "null", "null", "null", "null", '<a href="/klub/futbal">futbal</a>'),
    4: ("1", "zilinsky kraj, martin", "31", "null", "metal", "null"),
    5: ("0", "zahranicie, zahranicie - gb", "44", "null", "null", "null"),
    6: ("1", "zilinsky kraj, zilina", "19", "slim", '<a href="/klub/rock">x</a>', "null"),
    7: ("0", "null", "0", "null", "null", '<a href="/klub/tenis">t</a><a href="/klub/futbal">f</a>'),
    8: ("null", "bratislavsky kraj, bratislava - ruzinov", "22", "null", "null", "null"),
}
FRIENDS = [(1, 2), (2, 1), (3, 8), (7, 4), (5, 6)]


def _pokec_line(uid: int) -> str:
    gender, region, age, body, music, sport = POKEC_USERS[uid]
    fields = dict.fromkeys(PROFILE_FIELDS, "null")
    fields.update(public=str(uid % 2), completion_percentage=str(10 * uid), gender=gender,
                  region=region, AGE=age, body=body, music=music, sport=sport,
                  last_login="2012-05-25 11:20:00.0")
    return "\t".join([str(uid)] + [fields[f] for f in PROFILE_FIELDS]) + "\t\n"  # SNAP's tab


def _pokec_files(order=(3, 1, 8, 2, 7, 5, 4, 6), friends=FRIENDS) -> dict[str, bytes]:
    profiles = "".join(_pokec_line(u) for u in order)
    rel = "".join(f"{a}\t{b}\n" for a, b in friends)
    return {"soc-pokec-profiles.txt.gz": gzip.compress(profiles.encode(), mtime=0),
            "soc-pokec-relationships.txt.gz": gzip.compress(rel.encode(), mtime=0)}


def test_pokec(tmp_path):
    _write_files(tmp_path / "Pokec" / "raw", _pokec_files())
    data, task = load_dataset("h2gb-pokec", root=tmp_path)
    user = data["user"]
    assert user.num_nodes == 8
    assert user.y.tolist() == [1, 0, -1, 1, 0, 1, 0, -1]
    areas = ["bratislavsky kraj", "nan", "zahranicie", "zilinsky kraj"]  # sorted categories
    assert user.x.shape == (8, 3 + len(areas) + 51)
    area_of = {1: 3, 2: 0, 3: 1, 4: 3, 5: 2, 6: 3, 7: 1, 8: 0}
    assert user.x[:, 3:7].argmax(1).tolist() == [area_of[u] for u in range(1, 9)]
    ages = np.array([26, 23, 0, 31, 44, 19, 23, 22], dtype=float)  # 0 -> 23, missing -> 0
    assert np.allclose(user.x[:, 2].numpy(), (ages - ages.mean()) / (ages.std() + 1e-9), atol=1e-5)
    body = 7 + PROFILE_FIELDS.index("body") - PROFILE_FIELDS.index("body")
    assert user.x[:, body].tolist() == [0, 1, 0, 0, 0, 1, 0, 0]
    music = 7 + PROFILE_FIELDS.index("music") - PROFILE_FIELDS.index("body")
    assert user.x[:, music].tolist() == [1, 1, 0, 1, 0, 1, 0, 0]  # "metal" is filled, no club
    assert data["music"].num_nodes == 2 and data["sport"].num_nodes == 2
    assert data["user", "lists", "music"].edge_index.tolist() == [[0, 1, 1, 5], [1, 0, 1, 1]]
    assert data["user", "lists", "sport"].edge_index.tolist() == [[2, 6, 6], [0, 1, 0]]
    assert data["cars"].num_nodes == 0 and len(HOBBY_FIELDS) == 15
    assert data["user", "has_friend", "user"].edge_index.tolist() == [[0, 1, 2, 6, 4],
                                                                      [1, 0, 7, 3, 5]]
    assert _counts(user) == [3, 1, 2] and _disjoint(user)
    assert not (user.train_mask | user.val_mask | user.test_mask)[[2, 7]].any()
    assert (task.num_classes, task.metrics, task.split) == (2, ("accuracy",), "random")


def test_pokec_errors(tmp_path):
    files = _pokec_files()
    profiles = gzip.decompress(files["soc-pokec-profiles.txt.gz"]).decode()
    bad_gender = profiles.replace("\t1\tzilinsky kraj, martin", "\t2\tzilinsky kraj, martin")
    cases = [
        (_pokec_files(friends=FRIENDS + [(9, 1)]), "soc-pokec-relationships.txt.gz", 6,
         "out of range [1, 8]"),
        ({"soc-pokec-profiles.txt.gz": gzip.compress(_edit_line(profiles, 4, "2\t1\t14").encode())},
         "soc-pokec-profiles.txt.gz", 4, "expected user_id and 58"),
        ({"soc-pokec-profiles.txt.gz": gzip.compress(bad_gender.encode())},
         "soc-pokec-profiles.txt.gz", 7, "gender '2'"),
        ({"soc-pokec-profiles.txt.gz": gzip.compress(profiles.replace("\n6\t", "\n9\t").encode())},
         "soc-pokec-profiles.txt.gz", 8, "user_id 9 is out of range [1, 9)"),
        ({"soc-pokec-profiles.txt.gz": gzip.compress(profiles.replace("\n6\t", "\n5\t").encode())},
         "soc-pokec-profiles.txt.gz", 8, "user_id 5 appears twice"),
        ({"soc-pokec-relationships.txt.gz": b"not gzip"}, "soc-pokec-relationships.txt.gz", None,
         "cannot be read"),
    ]
    for k, (changes, file, line, words) in enumerate(cases):
        folder = _write_files(tmp_path / f"c{k}", {**files, **changes})
        _raises(lambda folder=folder: read_h2gb_pokec(folder), file, line, words)


# ---------------------------------------------------------------------------------------------
# PDNS: PDNS-Net's CSVs in <root>/PDNS/raw
# ---------------------------------------------------------------------------------------------

N_DOMAINS, N_IPS = 20, 4
DOMAIN_FEATURES = ["suspicious_tld", "length", "entropy", "fake_tld", "brand", "pop_keywords",
                   "similar", "is_idn", "minus", "num_subdomains"]
SNAPSHOTS = {  # k: [(source, target, type)]
    0: [(0, 1, "apex"), (2, 0, "resolves"), (3, 1, "resolves"), (4, 5, "similar")],
    1: [(0, 1, "apex"), (6, 2, "resolves"), (7, 3, "resolves"), (8, 9, "apex")],
    2: [(10, 11, "similar"), (12, 0, "resolves"), (13, 14, "apex"), (15, 3, "resolves")],
    10: [(16, 17, "similar")],
}


def _pdns_files(snapshots=SNAPSHOTS) -> dict[str, str]:
    kinds = ["malicious" if d % 3 == 0 else "benign" for d in range(N_DOMAINS)]
    kinds[5] = "n/a"
    order = list(range(N_DOMAINS))[::-1]  # rows need not be in id order
    files = {
        "domains2.csv": "domain_node,domain,type\n" + "".join(
            f"{d},d{d}.example,{kinds[d]}\n" for d in order),
        "domain_features.csv": "domain_node," + ",".join(DOMAIN_FEATURES) + "\n" + "".join(
            f"{d}," + ",".join(str(d * 10 + j) for j in range(10)) + "\n" for d in order),
        "ip_features.csv": "ip_node,subnet,asn\n" + "".join(f"{i},{i + 100},{i * 7}\n"
                                                            for i in range(N_IPS)),
    }
    for k, edges in snapshots.items():
        files[f"timestamp_{k}_edges.csv"] = "source,target,type\n" + "".join(
            f"{s},{t},{r}\n" for s, t, r in edges)
    return files


def test_pdns(tmp_path):
    _write_files(tmp_path / "PDNS" / "raw", _pdns_files())
    data, task = load_dataset("h2gb-pdns", root=tmp_path)
    dom = data["domain_node"]
    assert dom.x.shape == (N_DOMAINS, 10) and data["ip_node"].x.shape == (N_IPS, 2)
    assert dom.x[7].tolist() == [70.0 + j for j in range(10)]
    # snapshots 0, 1, 2 and 10 are all inside [0, 60): domains 0-4, 6-17 are endpoints, 5 is n/a
    in_edges = {0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}
    expected = [(1 if d % 3 == 0 else 0) if d in in_edges else -1 for d in range(N_DOMAINS)]
    assert dom.y.tolist() == expected
    assert data["domain_node", "apex", "domain_node"].edge_index.tolist() == [[0, 0, 8, 13],
                                                                            [1, 1, 9, 14]]
    assert data["domain_node", "resolves", "ip_node"].edge_index.shape == (2, 6)
    labelled = sum(v != -1 for v in expected)
    assert labelled == 17 and _counts(dom) == [12, 4, 1] and _disjoint(dom)
    assert (task.num_classes, task.metrics[0], task.split) == (2, "f1_positive", "random")


def test_pdns_snapshot_window(tmp_path):
    folder = _write_files(tmp_path / "raw", _pdns_files())
    data, _ = read_h2gb_pdns(tmp_path, end=2)  # sorted by number: 0, 1 | 2, 10 left out
    y = data["domain_node"].y
    assert y[[10, 12, 16]].tolist() == [-1, -1, -1] and int(y[6]) == 1
    assert ("domain_node", "similar", "domain_node") in data.edge_types
    data, _ = read_h2gb_pdns(folder, start=3)
    assert data.edge_types == [("domain_node", "similar", "domain_node")]


def test_pdns_errors(tmp_path):
    files = _pdns_files()
    cases = [
        ({"timestamp_1_edges.csv": files["timestamp_1_edges.csv"] + "3,4,cname\n"},
         "timestamp_1_edges.csv", 6, "'cname'"),
        ({"timestamp_2_edges.csv": files["timestamp_2_edges.csv"].replace("12,0,", "12,4,")},
         "timestamp_2_edges.csv", 3, "ip_node id 4 is out of range"),
        ({"domain_features.csv": files["domain_features.csv"].replace("\n7,", "\n70,")},
         "domain_features.csv", 14, "domain_node 70 is out of range [0, 20)"),
        ({"domain_features.csv": files["domain_features.csv"].replace(",72,", ",,")},
         "domain_features.csv", 14, "entropy is missing"),
        ({"domains2.csv": files["domains2.csv"].replace("domain_node,domain,type",
                                                        "domain_node,domain,kind")},
         "domains2.csv", 1, "no column 'type'"),
        ({"ip_features.csv": None}, "ip_features.csv", None, "missing file"),
    ]
    for k, (changes, file, line, words) in enumerate(cases):
        folder = _write_files(tmp_path / f"c{k}", {**files, **changes})
        _raises(lambda folder=folder: read_h2gb_pdns(folder), file, line, words)



@pytest.mark.parametrize("name, folder, missing", [
    ("h2gb-rcdd", "RCDD", "AliRCD_ICDM_test_labels.csv"),
    ("h2gb-ieee-cis", "IEEE-CIS", "train_identity.csv"),
    ("h2gb-pokec", "Pokec", "soc-pokec-relationships.txt.gz"),
    ("h2gb-pdns", "PDNS", "ip_features.csv"),
])
def test_missing_file_names_the_path_looked_for(tmp_path, name, folder, missing):
    files = {"h2gb-rcdd": lambda: _rcdd_files()[0], "h2gb-ieee-cis": _ieee_files,
             "h2gb-pokec": _pokec_files, "h2gb-pdns": _pdns_files}[name]()
    _write_files(tmp_path / folder / "raw", {**files, missing: None})
    err = _raises(lambda: load_dataset(name, root=tmp_path), missing, None, "missing file")
    # the file belongs beside the others in <root>/<folder>/raw, not in a raw/raw/ nobody made
    assert Path(err.file) == tmp_path / folder / "raw" / missing, str(err)
    assert "raw/raw" not in str(err) and "also looked for it in raw/" in str(err)
