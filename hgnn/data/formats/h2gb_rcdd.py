"""Reader for RCDD, Alibaba's risk-commodity detection graph, as H2GB reads it
(``H2GB/datasets/rcdd_dataset.py``).

The files are those of ``AliRCD_ICDM.zip`` (the OpenHGNN release that PyG's ``RCDD`` downloads),
which H2GB unpacks into ``<root>/RCDD/raw/``. None has a header:

    AliRCD_ICDM_nodes.csv         node_id,node_type,f1:f2:...:fd    (global ids, features ':'-joined)
    AliRCD_ICDM_edges.csv         src_id,dst_id,src_type,dst_type,edge_type
    AliRCD_ICDM_train_labels.csv  node_id,label                     (comma-separated)
    AliRCD_ICDM_test_labels.csv   node_id<TAB>label                 (tab-separated)

Each type's nodes are numbered in file order (the numbering H2GB fixed in PyG, issue #9212, and that
PyG now uses too); an edge type is keyed ``(src_type, edge_type, dst_type)``. Labels (0/1, 1 = risky)
are on ``item`` nodes. H2GB holds out a random 20 % of the labelled training items for validation; here
that is a ``"holdout"`` split with ``val_fraction=0.2`` drawn by the run's seed (stratified by class,
as for every holdout task in hgnn; H2GB's ``train_test_split`` is not stratified).
"""
from __future__ import annotations

import io
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.h2gb import find_member, iter_blocks, iter_lines, parse_int
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

TARGET = "item"
VAL_FRACTION = 0.2
PREFIX = "AliRCD_ICDM_"
_EDGE_DTYPE = [("src", "<i8"), ("dst", "<i8"), ("src_type", "S64"), ("dst_type", "S64"),
               ("edge_type", "S64")]


def read_h2gb_rcdd(path: str | Path, **options) -> tuple[HeteroData, TaskSpec]:
    """Read RCDD: ``item`` nodes labelled risky (1) or not (0), 7 node types, 7 edge types."""
    if options:
        raise UnknownNameError(f"RCDD takes no options (got {sorted(options)})")
    src = Source(path)
    type_names, type_of, local, xs = _read_nodes(src, find_member(src, PREFIX + "nodes.csv"))
    data = HeteroData()
    for code, name in enumerate(type_names):
        data[name].x = torch.from_numpy(xs[code])
        data[name].num_nodes = xs[code].shape[0]
    for key, edge_index in _read_edges(src, find_member(src, PREFIX + "edges.csv"), type_names,
                                       type_of, local).items():
        data[key].edge_index = edge_index
    if TARGET not in type_names:
        raise DataFormatError(src.where(find_member(src, PREFIX + "nodes.csv")),
                              f"no '{TARGET}' nodes")
    target_code = type_names.index(TARGET)
    n = data[TARGET].num_nodes
    global_ids = np.flatnonzero(type_of == target_code)  # the files' ids, for prediction files
    source_id = np.empty(n, dtype=np.int64)
    source_id[local[global_ids]] = global_ids
    data[TARGET].source_id = torch.from_numpy(source_id)
    y = np.full(n, -1, dtype=np.int64)
    masks = {}
    labelled: dict[int, tuple[str, int, int]] = {}  # node -> (label file, line, label), both files
    for part, delimiter in (("train", ","), ("test", "\t")):
        member = find_member(src, f"{PREFIX}{part}_labels.csv")
        idx, labels = _read_labels(src, member, delimiter, type_of, local, target_code, labelled)
        y[idx] = labels
        masks[part] = idx
    item = data[TARGET]
    item.y = torch.from_numpy(y)
    for name, idx in (("train_mask", masks["train"]), ("val_mask", masks["train"][:0]),
                      ("test_mask", masks["test"])):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.from_numpy(idx)] = True
        item[name] = mask
    item.train_pool_mask = item.train_mask.clone()
    task = TaskSpec(target=TARGET, num_classes=2, metrics=("f1_positive", "accuracy"),
                    split="holdout", val_fraction=VAL_FRACTION, class_names=("normal", "risky"))
    return data, task


def _read_nodes(src: Source, member: str):
    """Node types (first-seen order), per global id its type code and local id, and ``x`` per type."""
    where = src.where(member)
    type_codes: dict[bytes, int] = {}
    ids: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    feats: dict[int, list[np.ndarray]] = {}
    widths: dict[int, int] = {}
    for first_line, block in iter_blocks(src, member):
        block_ids, block_codes, block_feats, block_lines = [], [], {}, {}
        for offset, line in enumerate(block.split(b"\n")[:-1]):
            line_no = first_line + offset
            parts = line.rstrip(b"\r").split(b",", 2)
            if len(parts) != 3 or not parts[1]:
                raise DataFormatError(where, "expected 'node_id,node_type,f1:f2:...'", line_no)
            try:
                node_id = int(parts[0])
            except ValueError:
                raise DataFormatError(where, f"node id {parts[0].decode(errors='replace')!r} is not "
                                      "an integer", line_no) from None
            code = type_codes.setdefault(parts[1], len(type_codes))
            block_ids.append(node_id)
            block_codes.append(code)
            block_feats.setdefault(code, []).append(parts[2])
            block_lines.setdefault(code, []).append(line_no)
        ids.append(np.asarray(block_ids, dtype=np.int64))
        codes.append(np.asarray(block_codes, dtype=np.int64))
        for code, rows in block_feats.items():
            x = _parse_features(rows, block_lines[code], widths.get(code), where)
            widths.setdefault(code, x.shape[1])
            feats.setdefault(code, []).append(x)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    n = len(all_ids)
    if n == 0:
        raise DataFormatError(where, "no nodes")
    bad = np.flatnonzero((all_ids < 0) | (all_ids >= n))
    if bad.size:
        raise DataFormatError(where, f"node id {all_ids[bad[0]]} is out of range [0, {n}) (ids are "
                              "global, one per line)", int(bad[0]) + 1)
    order = np.argsort(all_ids, kind="stable")
    dup = np.flatnonzero(all_ids[order][1:] == all_ids[order][:-1])
    if dup.size:
        raise DataFormatError(where, f"node id {all_ids[order][dup[0]]} appears twice",
                              int(order[dup[0] + 1]) + 1)
    type_of = np.empty(n, dtype=np.int64)
    local = np.empty(n, dtype=np.int64)
    type_of[all_ids] = all_codes
    for code in range(len(type_codes)):
        members = all_codes == code
        local[all_ids[members]] = np.arange(int(members.sum()))
    names = [t.decode("utf-8", "replace") for t in type_codes]
    xs = [np.concatenate(feats[code]) for code in range(len(type_codes))]
    return names, type_of, local, xs


def _parse_features(rows: list[bytes], lines: list[int], width: int | None, where: str) -> np.ndarray:
    text = b"\n".join(r.rstrip(b"\r") for r in rows)
    if b"," in text:  # the ':'s become ','s below, so a stray ',' would pass as one more value
        row = next(i for i, r in enumerate(rows) if b"," in r)
        raise DataFormatError(where, "a ',' among the features, which are ':'-separated (expected "
                              "'node_id,node_type,f1:f2:...')", lines[row])
    text = text.replace(b":", b",") + b"\n"
    expect = width if width is not None else rows[0].count(b":") + 1
    try:
        x = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float32, comments=None, ndmin=2)
    except ValueError:
        x = None
    if x is None or x.shape != (len(rows), expect):
        for row, line_no in zip(rows, lines, strict=True):
            values = row.rstrip(b"\r").split(b":")
            if len(values) != expect:
                raise DataFormatError(where, f"expected {expect} ':'-separated feature values "
                                      f"(as on the first node of this type), got {len(values)}",
                                      line_no)
            for value in values:
                try:
                    float(value)
                except ValueError:
                    raise DataFormatError(where, f"feature {value.decode(errors='replace')!r} is "
                                          "not a number", line_no) from None
        raise DataFormatError(where, "features could not be parsed", lines[0])
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise DataFormatError(where, "feature is NaN or infinite", lines[int(bad[0])])
    return x


def _read_edges(src: Source, member: str, type_names: list[str], type_of: np.ndarray,
                local: np.ndarray) -> dict[tuple[str, str, str], torch.Tensor]:
    where = src.where(member)
    n = len(type_of)
    codes = {name.encode(): i for i, name in enumerate(type_names)}
    ends: dict[bytes, tuple[int, int]] = {}  # edge_type -> (src code, dst code) of its first edge
    parts: dict[bytes, list[tuple[np.ndarray, np.ndarray]]] = {}
    for first_line, block in iter_blocks(src, member):
        n_lines = block.count(b"\n")
        try:
            rows = np.loadtxt(io.BytesIO(block), delimiter=",", dtype=_EDGE_DTYPE, comments=None,
                              ndmin=1)
        except ValueError:
            rows = None
        if rows is None or rows.shape[0] != n_lines:
            _raise_bad_edge_line(block, where, first_line)
        for col, other in (("src", "src_type"), ("dst", "dst_type")):
            bad = np.flatnonzero((rows[col] < 0) | (rows[col] >= n))
            if bad.size:
                raise DataFormatError(where, f"{col} id {rows[col][bad[0]]} is out of range [0, {n})",
                                      first_line + int(bad[0]))
            for name in np.unique(rows[other]):
                if name not in codes:
                    line = first_line + int(np.flatnonzero(rows[other] == name)[0])
                    raise DataFormatError(where, f"node type {name.decode(errors='replace')!r} has "
                                          "no nodes", line)
        for edge_type in np.unique(rows["edge_type"]):
            sel = np.flatnonzero(rows["edge_type"] == edge_type)
            if edge_type not in ends:
                first = rows[sel[0]]
                ends[edge_type] = (codes[first["src_type"]], codes[first["dst_type"]])
            s_code, d_code = ends[edge_type]
            s, d = rows["src"][sel], rows["dst"][sel]
            for ids, code, what in ((s, s_code, "src"), (d, d_code, "dst")):
                wrong = np.flatnonzero(type_of[ids] != code)
                if wrong.size:
                    raise DataFormatError(where, f"{what} node {ids[wrong[0]]} is a "
                                          f"'{type_names[type_of[ids[wrong[0]]]]}', but edge type "
                                          f"{edge_type.decode(errors='replace')!r} joins "
                                          f"'{type_names[s_code]}' to '{type_names[d_code]}'",
                                          first_line + int(sel[wrong[0]]))
            parts.setdefault(edge_type, []).append((local[s], local[d]))
    if not parts:
        raise DataFormatError(where, "no edges")
    out = {}
    for edge_type, chunks in parts.items():
        s_code, d_code = ends[edge_type]
        key = (type_names[s_code], edge_type.decode("utf-8", "replace"), type_names[d_code])
        out[key] = torch.from_numpy(np.stack([np.concatenate([c[0] for c in chunks]),
                                              np.concatenate([c[1] for c in chunks])]))
    return out


def _raise_bad_edge_line(block: bytes, where: str, first_line: int):
    for offset, line in enumerate(block.split(b"\n")[:-1]):
        fields = line.rstrip(b"\r").split(b",")
        if len(fields) != 5:
            raise DataFormatError(where, "expected 5 comma-separated fields "
                                  f"'src_id,dst_id,src_type,dst_type,edge_type', got {len(fields)}",
                                  first_line + offset)
        for value in fields[:2]:
            try:
                int(value)
            except ValueError:
                raise DataFormatError(where, f"node id {value.decode(errors='replace')!r} is not an "
                                      "integer", first_line + offset) from None
        if not all(fields[2:]):
            raise DataFormatError(where, "empty type name", first_line + offset)
    raise DataFormatError(where, "could not be parsed as 'src_id,dst_id,src_type,dst_type,edge_type'",
                          first_line)


def _read_labels(src: Source, member: str, delimiter: str, type_of: np.ndarray, local: np.ndarray,
                 target_code: int, labelled: dict[int, tuple[str, int, int]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Local item ids and labels of one label file. ``labelled`` (node id -> file, line and label,
    shared by the train and test files and updated here) refuses a node given two labels, or in
    both files: H2GB's loader keeps whichever label comes last and, across the files, trains on
    test items. A line repeated as it was is skipped."""
    where = src.where(member)
    name = PurePosixPath(member).name
    idx, labels = [], []
    sep = "a tab" if delimiter == "\t" else "a comma"
    for line_no, line in iter_lines(src, member):
        if not line.strip():
            continue
        fields = line.split(delimiter)
        if len(fields) != 2:
            raise DataFormatError(where, f"expected 'node_id{delimiter}label' separated by {sep}",
                                  line_no)
        node = parse_int(fields[0], where, line_no, "node id")
        label = parse_int(fields[1], where, line_no, "label")
        if not 0 <= node < len(type_of):
            raise DataFormatError(where, f"node id {node} is out of range [0, {len(type_of)})",
                                  line_no)
        if type_of[node] != target_code:
            raise DataFormatError(where, f"node {node} is not an '{TARGET}' node", line_no)
        if label not in (0, 1):
            raise DataFormatError(where, f"label {label} is not 0 or 1", line_no)
        if node in labelled:
            other, first, before = labelled[node]
            if other == name and before == label:
                continue  # a repeated line says nothing new
            raise DataFormatError(where, f"node {node} is labelled {before} on line {first} and "
                                  f"{label} here" if other == name else f"node {node} is also in "
                                  f"{other} (line {first}): an item may not be both a training "
                                  "and a test item", line_no)
        labelled[node] = (name, line_no, label)
        idx.append(local[node])
        labels.append(label)
    return np.asarray(idx, dtype=np.int64), np.asarray(labels, dtype=np.int64)
