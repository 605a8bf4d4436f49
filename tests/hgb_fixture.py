"""A tiny, valid HGB-format dataset written by the tests (then damaged on purpose)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

# 6 authors (type 0, 3-d features), 4 papers (type 1, 2-d), 2 venues (type 2, featureless).
NODES = [f"{i}\tauthor{i}\t0\t{i % 2},{(i + 1) % 2},0.5" for i in range(6)] + \
    [f"{6 + i}\tpaper{i}\t1\t{i}.0,-{i}.25" for i in range(4)] + \
    [f"{10 + i}\tvenue{i}\t2" for i in range(2)]
AP = [(0, 6), (1, 6), (2, 7), (3, 8), (4, 9), (5, 9), (0, 7)]
PV = [(6, 10), (7, 10), (8, 11), (9, 11)]
LINKS = [f"{a}\t{p}\t0\t1.0" for a, p in AP] + [f"{p}\t{a}\t1\t1.0" for a, p in AP] + \
    [f"{p}\t{v}\t2\t1.0" for p, v in PV] + [f"{v}\t{p}\t3\t1.0" for p, v in PV]
LABELS = ["0\tauthor0\t0\t0", "1\tauthor1\t0\t1", "2\tauthor2\t0\t0", "3\tauthor3\t0\t1"]
TEST_LABELS = ["4\tauthor4\t0\t0", "5\tauthor5\t0\t1"]
INFO = {
    "node.dat": {"node type": {"0": "author", "1": "paper", "2": "venue"}},
    "link.dat": {"link type": {
        "0": {"start": 0, "end": 1, "meaning": "author-write-paper"},
        "1": {"start": 1, "end": 0, "meaning": "paper-written_by-author"},
        "2": {"start": 1, "end": 2, "meaning": "paper-venue"},
        "3": {"start": 2, "end": 1, "meaning": "venue-paper"},
    }},
    "label.dat": {"node type": {"0": {"0": "db", "1": "ml"}}},
}


def write_hgb(folder: Path, **overrides: list[str] | str | None) -> Path:
    """Write the dataset; ``overrides`` replace a file's lines (``node_dat=[...]``), give its raw
    text (a ``str``), or drop it (``None``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"node.dat": NODES, "link.dat": LINKS, "label.dat": LABELS,
             "label.dat.test": TEST_LABELS, "info.dat": json.dumps(INFO)}
    for key, value in overrides.items():
        files[key.replace("_", ".")] = value
    for name, content in files.items():
        if content is None:
            continue
        text = content if isinstance(content, str) else "\n".join(content) + "\n"
        (folder / name).write_text(text)
    return folder


def zip_folder(folder: Path, target: Path, inner: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{inner}{f.name}")
    return target
