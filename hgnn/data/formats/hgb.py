"""Reader for the HGB format (Lv et al., KDD'21): ``node.dat``, ``link.dat``, ``label.dat``,
``label.dat.test`` and, optionally, ``info.dat``; from a folder or a zip archive, read in place.

Any graph written in this format loads as a custom dataset (``hgnn datasets info PATH``).

Layout (tab-separated, one record per line):

* ``node.dat``: ``id  name  type  [f1,f2,...]``; types without features have three fields;
* ``link.dat``: ``src  dst  link_type  weight``;
* ``label.dat`` / ``label.dat.test``: ``id  name  type  label[,label...]`` (several labels make the
  task multi-label); ``label.dat`` is the training pool, ``label.dat.test`` the test set;
* ``info.dat``: JSON naming node types, link types (``start``, ``end``, ``meaning``) and classes.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.text import (
    as_ids,
    parse_float_rows,
    parse_int,
    parse_number_table,
    split_lines,
)
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError

VAL_FRACTION = 0.2  # HGB's scripts hold out 20% of label.dat for validation


def read_hgb(path: str | Path) -> tuple[HeteroData, TaskSpec]:
    """Read an HGB-format dataset. See the module docstring for the layout.

    Returns a ``HeteroData`` whose node types and relations are named from ``info.dat`` (``type0``,
    ``link0`` when it is absent) and a holdout :class:`TaskSpec`: ``train_mask`` holds all of
    ``label.dat`` until :func:`hgnn.data.splits.holdout_split` moves 20% into ``val_mask``.
    """
    source = Source(path)
    info = _read_info(source)
    type_names = _node_type_names(info)
    nodes = _read_nodes(source, type_names)
    data = HeteroData()
    for t, node_type in nodes.items():
        name = type_names.get(t, f"type{t}")
        if node_type["x"] is not None:
            data[name].x = torch.from_numpy(node_type["x"])
        data[name].num_nodes = node_type["count"]
        data[name].hgb_id = torch.from_numpy(node_type["gids"])  # for HGB submission files
    data["hgb_node_types"] = {type_names.get(t, f"type{t}"): t for t in nodes}
    _read_links(source, info, nodes, type_names, data)
    task = _read_labels(source, info, nodes, type_names, data)
    return data, task


def _read_info(source: Source) -> dict:
    if not source.exists("info.dat"):
        return {}
    raw = source.read_bytes("info.dat")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise DataFormatError(source.where("info.dat"), f"not valid JSON ({exc})") from None


def _node_type_names(info: dict) -> dict[int, str]:
    names = info.get("node.dat", {}).get("node type", {})
    out = {int(k): str(v).strip().replace(" ", "_") for k, v in names.items()}
    if len(set(out.values())) != len(out):
        raise DataFormatError("info.dat", "node type names are not unique")
    return out


def _read_nodes(source: Source, type_names: dict[int, str]) -> dict[int, dict]:
    """Per node type: global ids (sorted), count, features. Builds the global->local maps."""
    where = source.where("node.dat")
    lines = split_lines(source.read_bytes("node.dat"), where)
    per_type: dict[int, dict] = {}
    n_nodes = len(lines)  # one node per line, with global ids 0..n_nodes-1 as HGB numbers them
    for i, line in enumerate(lines, start=1):
        fields = line.split(b"\t")
        if len(fields) not in (3, 4):
            raise DataFormatError(where, "expected 3 or 4 tab-separated fields (id, name, type, "
                                  f"features), got {len(fields)}", i)
        gid = parse_int(fields[0], where, i, "node id")
        if not 0 <= gid < n_nodes:  # checked here, before arrays are sized by the ids
            raise DataFormatError(where, f"node id {gid} is out of range: node.dat has {n_nodes} "
                                  f"nodes, so ids run 0..{n_nodes - 1}", i)
        t = parse_int(fields[2], where, i, "node type")
        if type_names and t not in type_names:
            raise DataFormatError(where, f"unknown node type {t} (info.dat declares "
                                  f"{sorted(type_names)})", i)
        entry = per_type.setdefault(t, {"ids": [], "rows": [], "lines": [], "featured": None})
        featured = len(fields) == 4
        if entry["featured"] is None:
            entry["featured"] = featured
        elif entry["featured"] != featured:
            raise DataFormatError(where, f"node type {t} has features on some lines and none on "
                                  "others", i)
        entry["ids"].append(gid)
        if featured:
            entry["rows"].append(fields[3])
            entry["lines"].append(i)
    if not per_type:
        raise DataFormatError(where, "no nodes")
    type_of = np.full(n_nodes, -1, dtype=np.int64)
    local_of = np.full(n_nodes, -1, dtype=np.int64)
    for t, e in per_type.items():
        ids = np.asarray(e["ids"], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        taken = type_of[ids] != -1
        dup = np.flatnonzero(taken | np.concatenate(([False], ids[1:] == ids[:-1])))
        if dup.size:
            raise DataFormatError(where, f"node id {int(ids[dup[0]])} appears more than once")
        type_of[ids] = t
        local_of[ids] = np.arange(ids.size)
        x = None
        if e["featured"]:
            x = parse_float_rows([e["rows"][j] for j in order],
                                 [e["lines"][j] for j in order], where)
        e.update(gids=ids, count=int(ids.size), x=x)
        del e["rows"], e["lines"], e["ids"]
    for e in per_type.values():
        e["type_of"], e["local_of"] = type_of, local_of
    return dict(sorted(per_type.items()))


def _relation_names(info: dict, type_names: dict[int, str]) -> dict[int, tuple[int, int, str]]:
    """link type -> (start type, end type, relation name) as declared in info.dat."""
    out = {}
    for key, spec in info.get("link.dat", {}).get("link type", {}).items():
        try:
            start, end = int(spec["start"]), int(spec["end"])
        except (KeyError, TypeError, ValueError):
            raise DataFormatError("info.dat", f"link type {key} lacks integer start/end") from None
        meaning = str(spec.get("meaning", ""))
        parts = [p for p in re.split(r"->|-|>", meaning) if p]
        rel = parts[1] if len(parts) == 3 else "to"
        out[int(key)] = (start, end, rel.strip().replace(" ", "_"))
    return out


def _read_links(source: Source, info: dict, nodes: dict[int, dict], type_names: dict[int, str],
                data: HeteroData) -> None:
    where = source.where("link.dat")
    raw = source.read_bytes("link.dat")
    first = raw.split(b"\n", 1)[0].rstrip(b"\r")
    columns = 4 if first.count(b"\t") >= 3 else 3
    table = parse_number_table(raw, where, columns)
    src = as_ids(table[:, 0], where, "source id")
    dst = as_ids(table[:, 1], where, "target id")
    ltype = as_ids(table[:, 2], where, "link type")
    weight = table[:, 3] if columns == 4 else None
    any_node = next(iter(nodes.values()))
    type_of, local_of = any_node["type_of"], any_node["local_of"]
    for ids, what in ((src, "source"), (dst, "target")):
        bad = np.flatnonzero((ids >= type_of.size) | (type_of[np.minimum(ids, type_of.size - 1)] < 0))
        if bad.size:
            raise DataFormatError(where, f"{what} id {int(ids[bad[0]])} is not in node.dat",
                                  int(bad[0]) + 1)
    declared = _relation_names(info, type_names)
    for lt in np.unique(ltype).tolist():
        if declared and lt not in declared:
            raise DataFormatError(where, f"unknown link type {lt} (info.dat declares "
                                  f"{sorted(declared)})", int(np.flatnonzero(ltype == lt)[0]) + 1)
    used: dict[tuple[str, str, str], int] = {}
    for lt in sorted(set(np.unique(ltype).tolist()) | set(declared)):
        sel = np.flatnonzero(ltype == lt)
        s_types, d_types = type_of[src[sel]], type_of[dst[sel]]
        if lt in declared:
            s_t, d_t, rel = declared[lt]
        elif sel.size:
            s_t, d_t, rel = int(s_types[0]), int(d_types[0]), f"link{lt}"
        else:
            continue
        wrong = np.flatnonzero((s_types != s_t) | (d_types != d_t))
        if wrong.size:
            k = sel[wrong[0]]
            raise DataFormatError(where, f"link type {lt} should join node types {s_t}->{d_t} but "
                                  f"joins {int(type_of[src[k]])}->{int(type_of[dst[k]])}", int(k) + 1)
        et = (type_names.get(s_t, f"type{s_t}"), rel, type_names.get(d_t, f"type{d_t}"))
        if et in used:  # two link types with the same endpoints and no distinct name
            et = (et[0], f"{et[1]}_link{lt}", et[2])
        used[et] = lt
        edge_index = np.stack([local_of[src[sel]], local_of[dst[sel]]])
        data[et].edge_index = torch.from_numpy(np.ascontiguousarray(edge_index))
        if weight is not None and not np.all(weight[sel] == 1.0):
            data[et].edge_weight = torch.from_numpy(weight[sel].astype(np.float32))
    data["hgb_link_types"] = {"__".join(et): lt for et, lt in used.items()}


def _parse_label_file(source: Source, member: str, nodes: dict[int, dict]):
    where = source.where(member)
    lines = split_lines(source.read_bytes(member), where)
    any_node = next(iter(nodes.values()))
    type_of, local_of = any_node["type_of"], any_node["local_of"]
    out = []  # (local id, type, [labels], line)
    for i, line in enumerate(lines, start=1):
        fields = line.split(b"\t")
        if len(fields) != 4:
            raise DataFormatError(where, "expected 4 tab-separated fields (id, name, type, "
                                  f"labels), got {len(fields)}", i)
        gid = parse_int(fields[0], where, i, "node id")
        t = parse_int(fields[2], where, i, "node type")
        if gid >= type_of.size or type_of[gid] < 0:
            raise DataFormatError(where, f"node id {gid} is not in node.dat", i)
        if type_of[gid] != t:
            raise DataFormatError(where, f"node {gid} has type {int(type_of[gid])} in node.dat, "
                                  f"{t} here", i)
        labels = [parse_int(v, where, i, "label") for v in fields[3].split(b",") if v.strip()]
        if not labels:
            raise DataFormatError(where, "no label", i)
        out.append((int(local_of[gid]), t, labels, i))
    return where, out


def _read_labels(source: Source, info: dict, nodes: dict[int, dict], type_names: dict[int, str],
                 data: HeteroData) -> TaskSpec:
    pool_where, pool = _parse_label_file(source, "label.dat", nodes)
    test_where, test = _parse_label_file(source, "label.dat.test", nodes)
    target_t = pool[0][1]
    for where, rows in ((pool_where, pool), (test_where, test)):
        for _, t, _, line in rows:
            if t != target_t:
                raise DataFormatError(where, f"labelled node of type {t}, but the first labelled "
                                      f"node has type {target_t}; one target type is supported",
                                      line)
    target = type_names.get(target_t, f"type{target_t}")
    class_info = info.get("label.dat", {}).get("node type", {}).get(str(target_t))
    max_label = max(max(lbls) for _, _, lbls, _ in pool + test)
    num_classes = len(class_info) if class_info else max_label + 1
    class_names = tuple(class_info[str(c)] for c in range(num_classes)) if class_info and all(
        str(c) in class_info for c in range(num_classes)) else None
    multilabel = any(len(lbls) > 1 for _, _, lbls, _ in pool + test)
    n = nodes[target_t]["count"]
    y = torch.zeros(n, num_classes) if multilabel else torch.full((n,), -1, dtype=torch.long)
    masks = {}
    for name, (where, rows) in (("train", (pool_where, pool)), ("test", (test_where, test))):
        mask = torch.zeros(n, dtype=torch.bool)
        for local, _, lbls, line in rows:
            if any(lbl < 0 or lbl >= num_classes for lbl in lbls):
                raise DataFormatError(where, f"label out of range 0..{num_classes - 1}", line)
            if mask[local] or (name == "test" and masks["train"][local]):
                raise DataFormatError(where, "node labelled twice (or in both label.dat and "
                                      "label.dat.test)", line)
            mask[local] = True
            if multilabel:
                y[local, lbls] = 1.0
            else:
                y[local] = lbls[0]
        masks[name] = mask
    store = data[target]
    store.y = y
    store.train_mask = masks["train"]
    store.train_pool_mask = masks["train"].clone()
    store.val_mask = torch.zeros(n, dtype=torch.bool)
    store.test_mask = masks["test"]
    featureless = tuple(type_names.get(t, f"type{t}") for t, e in nodes.items() if e["x"] is None)
    return TaskSpec(target=target, num_classes=num_classes, multilabel=multilabel,
                    metrics=("micro_f1", "macro_f1"), split="holdout", val_fraction=VAL_FRACTION,
                    class_names=class_names, featureless=featureless)
