"""ogbn-mag reader on a tiny fixture written in OGB's raw layout (gzip'd CSVs, same paths)."""
from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hgnn.data import load_dataset
from hgnn.data.formats.ogb_mag import read_ogbn_mag
from hgnn.errors import DataFormatError

NUM = {"author": 40, "field_of_study": 12, "institution": 5, "paper": 30}
TRIPLETS = [("author", "affiliated_with", "institution"), ("author", "writes", "paper"),
            ("paper", "cites", "paper"), ("paper", "has_topic", "field_of_study")]
NUM_EDGES = {"affiliated_with": 35, "writes": 70, "cites": 50, "has_topic": 60}
SPLIT = {"train": range(0, 20), "valid": range(20, 25), "test": range(25, 30)}


def _rows(array: np.ndarray) -> str:
    return "".join(",".join(str(v) for v in row) + "\n" for row in array.tolist())


def mag_files(seed: int = 0) -> tuple[dict[str, str], dict]:
    """Member -> text of a small ogbn-mag, and the arrays it was written from."""
    rng = np.random.default_rng(seed)
    truth = {
        "x": rng.standard_normal((NUM["paper"], 128)).astype(np.float32),
        "year": rng.integers(2010, 2020, NUM["paper"]),
        "y": rng.integers(0, 349, NUM["paper"]),
        "edges": {},
    }
    types = sorted(NUM)
    files = {
        "raw/num-node-dict.csv.gz": ",".join(types) + "\n" + ",".join(str(NUM[t]) for t in types)
        + "\n",
        "raw/triplet-type-list.csv.gz": "".join(",".join(t) + "\n" for t in TRIPLETS),
        "raw/nodetype-has-label.csv.gz": ",".join(types) + "\n"
        + ",".join(str(t == "paper") for t in types) + "\n",
        # Features as OGB writes them: plain decimal floats, no header.
        "raw/node-feat/paper/node-feat.csv.gz": _rows(truth["x"]),
        "raw/node-feat/paper/node_year.csv.gz": _rows(truth["year"][:, None]),
        "raw/node-label/paper/node-label.csv.gz": _rows(truth["y"][:, None]),
    }
    for src, rel, dst in TRIPLETS:
        e = np.stack([rng.integers(0, NUM[src], NUM_EDGES[rel]),
                      rng.integers(0, NUM[dst], NUM_EDGES[rel])], axis=1)
        truth["edges"][(src, rel, dst)] = e
        folder = f"raw/relations/{src}___{rel}___{dst}"
        files[f"{folder}/edge.csv.gz"] = _rows(e)
        files[f"{folder}/num-edge-list.csv.gz"] = f"{len(e)}\n"
        files[f"{folder}/edge_reltype.csv.gz"] = _rows(np.full((len(e), 1), TRIPLETS.index(
            (src, rel, dst))))
    for name, ids in SPLIT.items():
        files[f"split/time/paper/{name}.csv.gz"] = "".join(f"{i}\n" for i in ids)
    files["split/time/nodetype-has-split.csv.gz"] = files["raw/nodetype-has-label.csv.gz"]
    return files, truth


def write_mag(folder: Path, files: dict[str, str | None]) -> Path:
    """Write the members (``None`` = leave that file out) gzip'd below ``folder``."""
    for member, text in files.items():
        if text is None:
            continue
        path = folder / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    (folder / "RELEASE_v2.txt").write_text("ogbn-mag\n")
    return folder


def _mag(tmp_path: Path, changes: dict[str, str | None] | None = None) -> Path:
    files, _ = mag_files()
    files.update(changes or {})
    return write_mag(tmp_path / "ogbn_mag", files)


def test_reads_counts_features_labels_split(tmp_path):
    files, truth = mag_files()
    data, task = read_ogbn_mag(write_mag(tmp_path / "ogbn_mag", files))
    assert {t: data[t].num_nodes for t in data.node_types} == NUM
    assert set(data.edge_types) == set(TRIPLETS)
    for et, e in truth["edges"].items():
        ei = data[et].edge_index
        assert ei.dtype == torch.int64 and ei.shape == (2, len(e))
        assert torch.equal(ei, torch.from_numpy(e.T.copy()))
    paper = data["paper"]
    assert paper.x.dtype == torch.float32 and paper.x.shape == (30, 128)
    assert torch.allclose(paper.x, torch.from_numpy(truth["x"]), atol=1e-6)
    assert torch.equal(paper.year, torch.from_numpy(truth["year"]))
    assert paper.y.dtype == torch.int64 and torch.equal(paper.y, torch.from_numpy(truth["y"]))
    assert [int(paper[m].sum()) for m in ("train_mask", "val_mask", "test_mask")] == [20, 5, 5]
    assert bool(paper.val_mask[20:25].all()) and not bool(paper.val_mask[:20].any())
    assert set(task.featureless) == {"author", "field_of_study", "institution"}
    assert all("x" not in data[t] for t in task.featureless)
    assert (task.target, task.num_classes, task.metrics, task.split) == (
        "paper", 349, ("accuracy",), "fixed")


def test_load_dataset_finds_ogbn_mag_below_root(tmp_path):
    files, truth = mag_files()
    write_mag(tmp_path / "ogbn_mag", files)
    for _ in range(2):  # the second load comes from the cache
        data, task = load_dataset("ogbn-mag", root=tmp_path)
        assert data["paper"].x.shape == (30, 128) and task.num_classes == 349
        assert torch.equal(data["paper"].year, torch.from_numpy(truth["year"]))
        assert data["author", "writes", "paper"].edge_index.shape == (2, 70)


def test_reads_mag_zip_in_place(tmp_path):
    folder = _mag(tmp_path)
    archive = tmp_path / "mag.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*"):
            if path.is_file():
                zf.write(path, "mag/" + path.relative_to(folder).as_posix())
    data, _ = read_ogbn_mag(archive)
    assert data["paper", "cites", "paper"].edge_index.shape == (2, 50)


WRITES = "raw/relations/author___writes___paper/edge.csv.gz"
FEAT = "raw/node-feat/paper/node-feat.csv.gz"


def _replace_line(member: str, line: int, text: str) -> str:
    lines = mag_files()[0][member].splitlines(keepends=True)
    lines[line - 1] = text + "\n"
    return "".join(lines)


@pytest.mark.parametrize("changes, file, line, words", [
    ({WRITES: _replace_line(WRITES, 3, "4,x")}, "edge.csv.gz", 3, "'x' is not an integer"),
    ({WRITES: _replace_line(WRITES, 5, "4,2,1")}, "edge.csv.gz", 5, "expected 2"),
    ({WRITES: _replace_line(WRITES, 6, "")}, "edge.csv.gz", 6, "expected 2"),
    ({WRITES: _replace_line(WRITES, 7, "40,1")}, "edge.csv.gz", 7, "author id 40 is out of range"),
    ({WRITES: _replace_line(WRITES, 8, "3,30")}, "edge.csv.gz", 8, "paper id 30 is out of range"),
    ({FEAT: _replace_line(FEAT, 5, ",".join(["0.5"] * 127))}, "node-feat.csv.gz", 5,
     "expected 128"),
    ({FEAT: "".join(",".join(["0.5"] * 64) + "\n" for _ in range(30))}, "node-feat.csv.gz", 1,
     "expected 128"),
    ({FEAT: _replace_line(FEAT, 7, ",".join(["nan"] + ["0.5"] * 127))}, "node-feat.csv.gz", 7,
     "NaN or infinite"),
    ({"split/time/paper/test.csv.gz": None}, "test.csv.gz", None, "missing file"),
    ({"split/time/paper/valid.csv.gz": "20\n30\n"}, "valid.csv.gz", 2, "out of range"),
    ({"split/time/paper/test.csv.gz": "25\n3\n"}, "test.csv.gz", 2, "earlier split"),
    ({"raw/node-label/paper/node-label.csv.gz": "1\n" * 29 + "349\n"}, "node-label.csv.gz", 30,
     "label 349 is out of range"),
    ({"raw/node-feat/paper/node_year.csv.gz": "2015\n" * 29}, "node_year.csv.gz", None,
     "29 rows, expected 30"),
    ({"raw/relations/paper___cites___paper/num-edge-list.csv.gz": "49\n"},
     "num-edge-list.csv.gz", None, "edge.csv.gz has 50"),
    ({"raw/triplet-type-list.csv.gz": "author,writes,paper\nauthor,writes,venue\n"},
     "triplet-type-list.csv.gz", 2, "'venue'"),
    ({"raw/num-node-dict.csv.gz": "author,paper\n40\n"}, "num-node-dict.csv.gz", 2, "counts"),
])
def test_errors_name_file_and_line(tmp_path, changes, file, line, words):
    with pytest.raises(DataFormatError) as info:
        read_ogbn_mag(_mag(tmp_path, changes))
    err = info.value
    assert Path(err.file).name == file
    assert err.line == line
    assert words in str(err)


def test_corrupt_gzip_is_a_format_error(tmp_path):
    folder = _mag(tmp_path)
    (folder / "raw/node-label/paper/node-label.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match="node-label.csv.gz: not a valid gzip file"):
        read_ogbn_mag(folder)


def test_h2gformer_ogbn_mag_config_builds_its_features(tmp_path, monkeypatch):
    # H2GB's ogbn-mag metapath in hgnn/configs/h2gformer/ogbn-mag.yaml names real relations here
    from hgnn.models.registry import get_model_class
    from hgnn.train.config import resolve_config
    from hgnn.train.graph import prepare_graph

    monkeypatch.setenv("HGNN_CACHE", str(tmp_path / "cache"))
    data, task = read_ogbn_mag(_mag(tmp_path))
    config = resolve_config(get_model_class("h2gformer").default_config(), "h2gformer",
                            "ogbn-mag", overrides=["graph.metapath2vec.walks_per_node=1",
                                                   "graph.metapath2vec.epochs=1"])
    assert config["graph"]["metapath2vec"]["dim"] == 128
    prepare_graph(data, task, config["graph"], seed=0)
    assert data["paper"].x.shape == (30, 128 + 128)
    for t in task.featureless:  # the encoding alone is their input
        assert data[t].x.shape == (data[t].num_nodes, 128)


def test_rhgnn_ogbn_mag_config_builds_its_features(tmp_path, monkeypatch):
    # R-HGNN's preprocessing: papers keep their 128 features plus the encoding, others the encoding
    from hgnn.models.registry import get_model_class
    from hgnn.train.config import resolve_config
    from hgnn.train.graph import prepare_graph

    monkeypatch.setenv("HGNN_CACHE", str(tmp_path / "cache"))
    data, task = read_ogbn_mag(_mag(tmp_path))
    config = resolve_config(get_model_class("rhgnn").default_config(), "rhgnn", "ogbn-mag",
                            overrides=["graph.metapath2vec.epochs=1"])
    prepare_graph(data, task, config["graph"], seed=0)
    assert data["paper"].x.shape == (30, 256)
    assert all(data[t].x.shape == (data[t].num_nodes, 128) for t in task.featureless)
    # preprocess_ogbn_mag.py: every relation gets its own reverse, cites included
    assert len(data.edge_types) == 8 and ("paper", "rev_cites", "paper") in data.edge_types
    # The official README's model has 5,638,053 parameters. Its R_HGNN also keeps fusing weights
    # for the four relations that do not end at papers, which the classifier never reads (here:
    # not built). The count matches without the LayerNorm (with it, 8,192 more).
    from hgnn.data.task import TaskSpec
    model = get_model_class("rhgnn").build(data, TaskSpec("paper", 349), config["model"])
    heads, dim, rel = 8, 64, 8
    unused = sum(et[2] != "paper" for et in data.edge_types) * heads * (dim * dim + rel * dim)
    assert sum(p.numel() for p in model.parameters()) + unused == 5_638_053
