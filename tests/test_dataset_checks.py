"""Readers refuse ids outside a release's known node counts, error messages show plain values, and
``--data`` reader options are checked by name and type for every dataset (``hgnn train`` and
``hgnn datasets info``)."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from hgnn.cli.main import main
from hgnn.data.formats.gtn import read_gtn
from hgnn.data.formats.heco import NUM_NODES, read_heco_freebase
from hgnn.data.formats.text import plain
from hgnn.data.registry import DATASETS, check_options, load_dataset
from hgnn.errors import DataFormatError, HgnnError, UnknownNameError
from tests.conftest import require
from tests.heco_fixture import write_heco
from tests.hgb_fixture import LINKS, NODES, write_hgb


def run_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HGNN_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "hgnn", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hgnn: error:"), proc.stderr
    for word in words:
        assert word in err, err
    return err


# --- HeCo Freebase: the release's node counts -------------------------------------------------

def test_heco_counts_are_the_releases():
    assert NUM_NODES == {"movie": 3492, "actor": 33401, "director": 2502, "writer": 4459}


@pytest.mark.parametrize("member,other", [("ma.txt", "actor"), ("md.txt", "director"),
                                          ("mw.txt", "writer")])
def test_heco_id_beyond_known_count_is_refused(tmp_path, member, other):
    root = write_heco(tmp_path / "h")
    n = NUM_NODES[other]
    (root / member).write_text(f"0\t0\n1\t{n - 1}\n2\t{n}\n3\t0\n")
    with pytest.raises(DataFormatError) as err:
        read_heco_freebase(root)
    assert err.value.file.endswith(member) and err.value.line == 3
    assert f"{other} id {n} is out of range" in str(err.value) and f"{n} {other}s" in str(err.value)


def test_heco_labels_of_another_length_are_refused(tmp_path):
    with pytest.raises(DataFormatError, match="4 labels, but HeCo's Freebase has 3492 movies"):
        read_heco_freebase(write_heco(tmp_path / "h", labels=4))


def test_heco_failed_read_writes_no_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HGNN_CACHE", str(cache))
    write_heco(tmp_path / "root" / "HeCo_Freebase", md="0\t0\n1\t99999999\n")
    with pytest.raises(DataFormatError, match=r"md.txt, line 2: director id 99999999"):
        load_dataset("heco-freebase", root=tmp_path / "root")
    assert not cache.exists() or not any(cache.iterdir())


def test_heco_corrupted_copy_of_the_release_via_cli(tmp_path, real_root):
    """The audit's case: line 100 of a copy of md.txt set to ``12\\t99999999``."""
    src = require(real_root, "HeCo_Freebase")
    copy = tmp_path / "root" / "HeCo_Freebase"
    copy.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix in (".npy", ".txt"):
            shutil.copyfile(f, copy / f.name)
    lines = (copy / "md.txt").read_text().split("\n")
    lines[99] = "12\t99999999"
    (copy / "md.txt").write_text("\n".join(lines))
    cache = tmp_path / "cache"
    proc = run_cli("datasets", "info", "heco-freebase", "--root", str(tmp_path / "root"),
                   cache=cache)
    assert_one_line_error(proc, "md.txt, line 100:", "director id 99999999 is out of range")
    assert "100,000,000" not in proc.stdout
    assert not cache.exists() or not any(cache.iterdir())


# --- HGB: node ids are 0..N-1 for the N lines of node.dat --------------------------------------

@pytest.mark.parametrize("gid", [12, 99999999999999])
def test_hgb_node_id_beyond_node_count_is_refused(tmp_path, gid):
    # Ids once sized two arrays (max id + 1): a huge one ended in a MemoryError traceback.
    folder = write_hgb(tmp_path / "g", node_dat=NODES[:-1] + [f"{gid}\tvenue1\t2"])
    with pytest.raises(DataFormatError) as err:
        load_dataset(str(folder), use_cache=False)
    assert err.value.file.endswith("node.dat") and err.value.line == len(NODES)
    assert f"node id {gid} is out of range: node.dat has 12 nodes" in str(err.value)


# --- GTN: the releases' class counts and type sizes -------------------------------------------

def _gtn_acm_shaped(path: Path, extra_edge: tuple[int, int] | None = None,
                    label: int = 2) -> Path:
    """8,994 nodes that split into GTN ACM's types (3025 papers, 5912 authors, 57 subjects)."""
    n = 8994
    rows, cols = [0, 1], [3025, 8936]
    if extra_edge is not None:
        rows.append(extra_edge[0])
        cols.append(extra_edge[1])
    pa = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    ps = sp.csr_matrix(([1.0], ([0], [8937])), shape=(n, n))
    members = {
        "edges.pkl": pickle.dumps([pa, pa.T.tocsc(), ps, ps.T.tocsc()], protocol=3),
        "labels.pkl": pickle.dumps([np.array([[0, 0]]), np.array([[1, 1]]),
                                    np.array([[2, label]])], protocol=3),
        "node_features.pkl": pickle.dumps(np.zeros((n, 2), dtype=np.int64), protocol=3),
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_gtn_known_release_reads_with_its_class_count(tmp_path):
    data, task = read_gtn(_gtn_acm_shaped(tmp_path / "ok.zip", label=0))
    assert data["paper"].num_nodes == 3025 and data["subject"].num_nodes == 57
    assert task.num_classes == 3  # GTN ACM's, though only classes 0 and 1 appear here


def test_gtn_label_beyond_known_classes_is_refused(tmp_path):
    with pytest.raises(DataFormatError, match=r"labels.pkl.*\[0, 3\), node 2 has 7"):
        read_gtn(_gtn_acm_shaped(tmp_path / "bad.zip", label=7))


def test_gtn_edge_moving_type_boundaries_is_refused(tmp_path):
    # A paper -> "author" edge that lands on paper 3000 shifts the inferred author range.
    with pytest.raises(DataFormatError, match=r"edges.pkl.*\[3000, 5937, 57\].*\[3025, 5912, 57\]"):
        read_gtn(_gtn_acm_shaped(tmp_path / "bad.zip", extra_edge=(2, 3000)))


# --- plain values in error messages -----------------------------------------------------------

def test_plain_values():
    assert plain(np.float64(-3.0)) == "-3.0" and plain(np.int64(7)) == "7"
    assert plain(b"abc") == "abc" and plain(b"x" * 50) == "x" * 40 + "..."
    assert plain(b"") == "''" and plain(" a") == "' a'"


@pytest.mark.parametrize("md,words", [
    ("0\t0\n1\t-3\n", "director id is not a non-negative integer: -3.0"),
    ("0\t0\n-2\t1\n", "movie id is not a non-negative integer: -2.0"),
    ("0\t0\n1\t1.5\n", "director id is not a non-negative integer: 1.5"),
    ("0\t0\n1\tabc\n", "not a finite number: abc"),
])
def test_heco_messages_show_plain_values(tmp_path, md, words):
    with pytest.raises(DataFormatError) as err:
        read_heco_freebase(write_heco(tmp_path / "h", md=md))
    msg = str(err.value)
    assert msg.endswith(words) and "np." not in msg and "b'" not in msg, msg


@pytest.mark.parametrize("overrides,words", [
    ({"node_dat": ["x1\tauthor0\t0\t1,0,0.5"] + NODES[1:]}, "node id is not an integer: x1"),
    ({"node_dat": NODES[:1] + ["1\tauthor1\t0\t1,abc,0"] + NODES[2:]},
     "feature value is not a number: abc"),
    ({"link_dat": LINKS + ["0\tabc\t0\t1.0"]}, "not a finite number: abc"),
    ({"link_dat": LINKS + ["-3\t6\t0\t1.0"]}, "source id is not a non-negative integer: -3.0"),
])
def test_hgb_messages_show_plain_values(tmp_path, overrides, words):
    with pytest.raises(DataFormatError) as err:
        load_dataset(str(write_hgb(tmp_path / "g", **overrides)))
    msg = str(err.value)
    assert msg.endswith(words) and "np." not in msg and "b'" not in msg, msg


# --- reader options: names and types, for every dataset ---------------------------------------

@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_refuses_unknown_options(tmp_path, name):
    known = list(DATASETS[name].option_types())
    with pytest.raises(UnknownNameError) as err:  # before any file is looked for
        load_dataset(name, root=tmp_path, bogus=1)
    msg = str(err.value)
    assert msg.startswith(f"{name}: unknown option(s) ['bogus'] (known: ")
    assert msg.endswith(f"(known: {', '.join(known) or 'none'})"), msg


@pytest.mark.parametrize("name,option", [(name, option) for name in sorted(DATASETS)
                                         for option in DATASETS[name].option_types()])
def test_every_option_refuses_a_wrong_type(tmp_path, name, option):
    with pytest.raises(HgnnError) as err:
        load_dataset(name, root=tmp_path, **{option: [1, 2]})
    assert str(err.value).startswith(f"{name}: option '{option}' expects "), str(err.value)
    assert str(err.value).endswith("got [1, 2]")


def test_option_types_and_conversions():
    assert check_options("synthetic", {"homophily": 1, "num_classes": 4}) == \
        {"homophily": 1.0, "num_classes": 4}
    assert check_options("synthetic", {"relation_homophily": {"cites": 0}}) == \
        {"relation_homophily": {"cites": 0.0}}
    assert check_options("h2gb-pdns", {"domain_file": 2}) == {"domain_file": "2"}
    with pytest.raises(HgnnError, match="option 'homophily' expects a number"):
        check_options("synthetic", {"homophily": "abc"})
    with pytest.raises(HgnnError, match="option 'split' expects an integer, got True"):
        check_options("heco-freebase", {"split": True})
    with pytest.raises(HgnnError, match=r"option 'relation_homophily' expects a mapping"):
        check_options("synthetic", {"relation_homophily": {"cites": "high"}})
    with pytest.raises(UnknownNameError, match=r"synthetic: unknown option\(s\) \['seed'\]"):
        check_options("synthetic", {"seed": 3})  # load_dataset's own argument, not an option


def test_custom_hgb_path_takes_no_options(tmp_path):
    folder = write_hgb(tmp_path / "g")
    with pytest.raises(UnknownNameError, match=r"unknown option\(s\) \['split'\] \(known: none\)"):
        load_dataset(str(folder), split=40)


@pytest.mark.parametrize("args,words", [
    (["datasets", "info", "synthetic", "--data", "homophily=abc"],
     ["synthetic: option 'homophily' expects a number", "'abc'"]),
    (["datasets", "info", "hgb-dblp", "--data", "homophily=0.2"],
     ["hgb-dblp: unknown option(s) ['homophily'] (known: none)"]),
    (["datasets", "info", "heco-freebase", "--data", "split=forty"],
     ["heco-freebase: option 'split' expects an integer"]),
    (["datasets", "info", "synthetic", "--data", "seed=3"],
     ["synthetic: unknown option(s) ['seed']", "known: preset, homophily"]),
    (["datasets", "info", "synthetic", "--data", "homophily"], ["--data expects KEY=VALUE"]),
    (["train", "--quiet", "--data", "homophily=abc"],
     ["synthetic: option 'homophily' expects a number"]),
    (["train", "--quiet", "--dataset", "hgb-dblp", "--data", "homophily=0.2"],
     ["hgb-dblp: unknown option(s) ['homophily'] (known: none)"]),
])
def test_cli_refuses_bad_options_in_one_line(tmp_path, args, words):
    if args[0] == "train":
        args = [*args, "--root", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                "--epochs", "1"]
    else:
        args = [*args, "--root", str(tmp_path / "data")]
    assert_one_line_error(run_cli(*args, cache=tmp_path / "cache"), *words)


# --- hgnn datasets info --data ----------------------------------------------------------------

def test_info_takes_reader_options(capsys):
    assert main(["datasets", "info", "synthetic", "--json", "--data", "scale=0.1",
                 "--data", "num_classes=4"]) == 0
    small = json.loads(capsys.readouterr().out)
    assert main(["datasets", "info", "synthetic", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert small["num_classes"] == 4 and full["num_classes"] != 4
    assert small["num_nodes"] < full["num_nodes"] / 5


def test_info_heco_split_40(real_root, capsys):
    require(real_root, "HeCo_Freebase")
    for split, train in ((20, 60), (40, 120), (60, 180)):
        assert main(["datasets", "info", "heco-freebase", "--root", str(real_root), "--json",
                     "--data", f"split={split}"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["split"]["train"] == train and info["split"]["test"] == 1000


def test_oag_messages_show_python_values_not_numpy(tmp_path):
    from hgnn.data.formats.h2gb_oag import read_h2gb_oag
    from tests.test_h2gb import _oag_graph, _write_oag

    graph = _oag_graph()
    pairs = graph["edge_list"]["paper"]["author"]["AP_write_first"]
    pairs[np.int64(99)] = 5  # a target row whose sources are not a dict
    with pytest.raises(DataFormatError) as err:
        read_h2gb_oag(_write_oag(tmp_path / "a" / "graph_CS_20190919.pt", graph))
    assert "[99] is not a dict" in str(err.value) and "np." not in str(err.value), str(err.value)

    graph = _oag_graph()
    graph["node_feature"]["author"]["id"] = [np.int64(5)] * 4
    with pytest.raises(DataFormatError) as err:
        read_h2gb_oag(_write_oag(tmp_path / "b" / "graph_CS_20190919.pt", graph))
    assert "row 0 has id 5," in str(err.value) and "np." not in str(err.value), str(err.value)
