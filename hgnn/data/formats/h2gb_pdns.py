"""Reader for PDNS, the passive-DNS graph of PDNS-Net (Kumarasinghe et al., 2022) as H2GB reads it
(``H2GB/datasets/pdns_dataset.py``, called from ``H2GB/loader/master_loader.py: preformat_PDNS`` with
``start=0, end=60, domain_file="domains2.csv"``).

Files, CSV with a header, in ``<root>/PDNS/raw/`` (H2GB's ``PDNS.zip`` unpacks there):

    domains2.csv               columns include domain_node, type ('malicious', 'benign', or other)
    domain_features.csv        domain_node, then the 10 domain features
    ip_features.csv            ip_node, then the 2 IP features
    timestamp_<k>_edges.csv    columns include source, target, type ('apex', 'similar': domain ->
                               domain; 'resolves': domain -> ip); one file per snapshot k = 0, 1, ...

(``domains.csv``, ``ips.csv`` and the ``*_features_map.txt`` files are not needed.)

As H2GB builds it: domains and IPs in id order (ids must run 0..N-1), features as stored; the
snapshots ``start`` .. ``end - 1`` (by ``k``, as positions in the sorted list) concatenated, edges
grouped by type in file order (repeats kept); a domain is labelled (1 = malicious, 0 = benign) only if
it is an endpoint of some edge of those snapshots. The labelled domains are permuted (seeded) and the
first 10 % go to test, the next 20 % to validation, the rest to train.

H2GB's docstring says the test set "is obtained over time" (PDNS-Net's official temporal split), but
the graph its loader returns carries the random 70/20/10 split above: the temporal test graphs it
builds (``test_list``) are discarded. This reader reproduces what the code does.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.h2gb import (
    check_ids,
    csv_with_header,
    find_member,
    members_matching,
    parse_float,
    parse_int,
    set_masks,
)
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

TARGET, IP = "domain_node", "ip_node"
EDGE_ENDS = {"apex": (TARGET, TARGET), "similar": (TARGET, TARGET), "resolves": (TARGET, IP)}
TEST_FRACTION, VAL_FRACTION = 0.1, 0.2
_SNAPSHOT = re.compile(r"timestamp_(\d+)_edges\.csv")


def read_h2gb_pdns(path: str | Path, start: int = 0, end: int = 60, split_seed: int = 0,
                   domain_file: str = "domains2.csv", **options) -> tuple[HeteroData, TaskSpec]:
    """Read PDNS: domains, malicious or benign, resolving to IPs and linked to similar domains.

    Args:
        path: the folder (or zip) holding the CSV files, directly or in ``raw/``.
        start, end: the snapshots used, as a slice of the snapshot files sorted by number
            (H2GB: 0 and 60).
        split_seed: seed of the random test/validation/train split of the labelled domains.
        domain_file: the labels file (H2GB uses ``domains2.csv``; PDNS-Net ships ``domains.csv``).
    """
    if options:
        raise UnknownNameError("PDNS takes only 'start', 'end', 'split_seed' and 'domain_file' "
                               f"(got {sorted(options)})")
    src = Source(path)
    labels = _read_labels(src, find_member(src, domain_file))
    x_domain = _read_features(src, find_member(src, "domain_features.csv"), TARGET)
    x_ip = _read_features(src, find_member(src, "ip_features.csv"), IP)
    if len(labels) != len(x_domain):
        raise DataFormatError(src.where(find_member(src, "domain_features.csv")),
                              f"{len(x_domain)} domains, but {domain_file} lists {len(labels)}")
    sizes = {TARGET: len(x_domain), IP: len(x_ip)}

    snapshots = sorted(members_matching(src, _SNAPSHOT), key=lambda m: int(m[1].group(1)))
    if not snapshots:
        raise DataFormatError(src.where("raw/timestamp_0_edges.csv"), "missing file (no "
                              "timestamp_<k>_edges.csv snapshot)")
    used = snapshots[start:end]
    if not used:
        raise DataFormatError(src.where(snapshots[0][0]), f"no snapshot in positions [{start}, "
                              f"{end}) of the {len(snapshots)} snapshot files")
    edges: dict[str, list[np.ndarray]] = {}
    for member, _ in used:
        for rel, pairs in _read_snapshot(src, member, sizes).items():
            edges.setdefault(rel, []).append(pairs)

    data = HeteroData()
    data[TARGET].x = torch.from_numpy(x_domain)
    data[TARGET].num_nodes = len(x_domain)
    data[IP].x = torch.from_numpy(x_ip)
    data[IP].num_nodes = len(x_ip)
    seen = np.zeros(len(x_domain), dtype=bool)
    for rel in sorted(edges):  # pandas groupby order
        pairs = np.concatenate(edges[rel], axis=1)
        src_type, dst_type = EDGE_ENDS[rel]
        data[src_type, rel, dst_type].edge_index = torch.from_numpy(pairs)
        seen[pairs[0]] = True
        if dst_type == TARGET:
            seen[pairs[1]] = True
    y = np.where(seen, labels, -1)
    data[TARGET].y = torch.from_numpy(y)

    labelled = np.flatnonzero(y != -1)
    n = len(labelled)
    perm = labelled[torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed))
                                   ).numpy()]
    n_test = int(n * TEST_FRACTION)
    n_test_val = int(n * (VAL_FRACTION + TEST_FRACTION))
    set_masks(data[TARGET], len(x_domain), perm[n_test_val:], perm[n_test:n_test_val],
              perm[:n_test])
    task = TaskSpec(target=TARGET, num_classes=2, metrics=("f1_positive", "accuracy"),
                    split="random", split_seed=int(split_seed), class_names=("benign", "malicious"))
    return data, task


def _read_labels(src: Source, member: str) -> np.ndarray:
    where = src.where(member)
    header, rows = csv_with_header(src, member, (TARGET, "type"))
    id_col, type_col = header.index(TARGET), header.index("type")
    ids, labels, lines = [], [], []
    for line_no, fields in rows:
        ids.append(parse_int(fields[id_col], where, line_no, TARGET))
        kind = fields[type_col].strip()
        labels.append(1 if kind == "malicious" else 0 if kind == "benign" else -1)
        lines.append(line_no)
    order = check_ids(ids, lines, 0, where, TARGET)
    return np.asarray(labels, dtype=np.int64)[order]


def _read_features(src: Source, member: str, id_column: str) -> np.ndarray:
    where = src.where(member)
    header, rows = csv_with_header(src, member, (id_column,))
    id_col = header.index(id_column)
    cols = [i for i in range(len(header)) if i != id_col]
    ids, feats, lines = [], [], []
    for line_no, fields in rows:
        ids.append(parse_int(fields[id_col], where, line_no, id_column))
        values = [parse_float(fields[i], where, line_no, header[i]) for i in cols]
        if any(np.isnan(v) for v in values):
            col = header[cols[[np.isnan(v) for v in values].index(True)]]
            raise DataFormatError(where, f"{col} is missing", line_no)
        feats.append(values)
        lines.append(line_no)
    order = check_ids(ids, lines, 0, where, id_column)
    return np.asarray(feats, dtype=np.float32).reshape(len(ids), len(cols))[order]


def _read_snapshot(src: Source, member: str, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    where = src.where(member)
    header, rows = csv_with_header(src, member, ("source", "target", "type"))
    s_col, t_col, k_col = header.index("source"), header.index("target"), header.index("type")
    out: dict[str, tuple[list[int], list[int]]] = {}
    for line_no, fields in rows:
        rel = fields[k_col].strip()
        if rel not in EDGE_ENDS:
            raise DataFormatError(where, f"edge type {rel!r} is not one of {sorted(EDGE_ENDS)}",
                                  line_no)
        s = parse_int(fields[s_col], where, line_no, "source")
        t = parse_int(fields[t_col], where, line_no, "target")
        for value, node_type in ((s, EDGE_ENDS[rel][0]), (t, EDGE_ENDS[rel][1])):
            if not 0 <= value < sizes[node_type]:
                raise DataFormatError(where, f"{node_type} id {value} is out of range "
                                      f"[0, {sizes[node_type]})", line_no)
        pair = out.setdefault(rel, ([], []))
        pair[0].append(s)
        pair[1].append(t)
    return {rel: np.asarray(pair, dtype=np.int64).reshape(2, -1) for rel, pair in out.items()}
