"""Reader for OGB's ogbn-mag in its raw download layout (``ogb`` itself is not needed).

The folder (``<root>/ogbn_mag``, as ``ogb`` leaves it; or ``mag.zip`` itself) holds::

    raw/num-node-dict.csv.gz               header row of node types, then one row of counts
    raw/triplet-type-list.csv.gz           no header; one "src,rel,dst" per relation
    raw/relations/<src>___<rel>___<dst>/edge.csv.gz           no header; "src_id,dst_id"
    raw/relations/<src>___<rel>___<dst>/num-edge-list.csv.gz  no header; edge count (one graph)
    raw/node-feat/<type>/node-feat.csv.gz  no header; one row of floats per node (paper: 128)
    raw/node-feat/paper/node_year.csv.gz   no header; publication year per paper
    raw/node-label/paper/node-label.csv.gz no header; class in [0, 349) per paper
    split/time/paper/{train,valid,test}.csv.gz  no header; paper ids

(facts from ``ogb/io/read_graph_raw.py``: ``read_csv_heterograph_raw``, ``read_node_label_hetero``,
``read_nodesplitidx_split_hetero``). ``edge_reltype.csv.gz`` and ``nodetype-has-*.csv.gz`` carry
nothing a model uses and are not read.
"""
from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

TARGET = "paper"
NUM_CLASSES = 349
PAPER_FEATURE_DIM = 128
# Decompressed text handed to one np.loadtxt call; bounds the transient copy of the feature file.
_BLOCK = 1 << 26


def read_ogbn_mag(path: str | Path, **options) -> tuple[HeteroData, TaskSpec]:
    """Read ogbn-mag with its official time split.

    Returns edges per ``(src, rel, dst)`` as stored (no reverse edges), ``x`` for types that ship
    features (paper, float32 ``[N, 128]``), ``num_nodes`` for all, ``data["paper"].year``, ``y`` and
    ``train_mask`` / ``val_mask`` / ``test_mask``. Raises :class:`DataFormatError` naming the file
    and line on anything missing, malformed or out of range.
    """
    if options:
        raise UnknownNameError(f"ogbn-mag takes no options (got {sorted(options)})")
    src = Source(path)
    num_nodes = _read_num_nodes(src)
    if TARGET not in num_nodes:
        raise DataFormatError(src.where("raw/num-node-dict.csv.gz"), f"no '{TARGET}' column")
    data = HeteroData()
    featureless = []
    for node_type, n in num_nodes.items():
        data[node_type].num_nodes = n
        member = f"raw/node-feat/{node_type}/node-feat.csv.gz"
        if not src.exists(member) and node_type != TARGET:
            featureless.append(node_type)
            continue
        width = PAPER_FEATURE_DIM if node_type == TARGET else None
        x = _read_csv(src, member, width, np.float32, rows=n)
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            raise DataFormatError(src.where(member), "feature is NaN or infinite", int(bad[0]) + 1)
        data[node_type].x = torch.from_numpy(x)

    for triplet in _read_triplets(src, num_nodes):
        data[triplet].edge_index = _read_edges(src, triplet, num_nodes)

    n = num_nodes[TARGET]
    paper = data[TARGET]
    paper.year = torch.from_numpy(_read_csv(src, "raw/node-feat/paper/node_year.csv.gz", 1,
                                            np.int64, rows=n)[:, 0])
    member = "raw/node-label/paper/node-label.csv.gz"
    y = _read_csv(src, member, 1, np.int64, rows=n)[:, 0]
    _check_range(src, member, y, 0, NUM_CLASSES, "label")
    paper.y = torch.from_numpy(y)
    taken = np.zeros(n, dtype=bool)
    for file, mask_name in (("train", "train_mask"), ("valid", "val_mask"), ("test", "test_mask")):
        member = f"split/time/paper/{file}.csv.gz"
        idx = _read_csv(src, member, 1, np.int64)[:, 0]
        _check_range(src, member, idx, 0, n, "paper id")
        overlap = np.flatnonzero(taken[idx])
        if overlap.size:
            raise DataFormatError(src.where(member), f"paper {idx[overlap[0]]} is already in an "
                                  "earlier split", int(overlap[0]) + 1)
        taken[idx] = True
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.from_numpy(idx)] = True
        paper[mask_name] = mask

    task = TaskSpec(target=TARGET, num_classes=NUM_CLASSES, metrics=("accuracy",), split="fixed",
                    featureless=tuple(featureless))
    return data, task


def _text(src: Source, member: str) -> str:
    """A small gzip'd member as text (for the header-bearing and string-valued files)."""
    try:
        return _gunzip(src, member).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(src.where(member), f"not UTF-8 text ({exc.reason})") from None


def _gunzip(src: Source, member: str) -> bytes:
    try:
        return gzip.decompress(src.read_bytes(member))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(src.where(member), f"not a valid gzip file ({exc})") from None


def _read_num_nodes(src: Source) -> dict[str, int]:
    member = "raw/num-node-dict.csv.gz"
    lines = [ln.strip() for ln in _text(src, member).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) != 2:
        raise DataFormatError(src.where(member), f"expected a header and one row of counts (one "
                              f"graph), got {len(lines)} lines")
    names, values = lines[0].split(","), lines[1].split(",")
    if len(values) != len(names) or len(set(names)) != len(names) or not all(names):
        raise DataFormatError(src.where(member), f"{len(values)} counts for the {len(names)} "
                              "distinct node types of the header", 2)
    counts = {}
    for name, value in zip(names, values, strict=True):
        if not value.isdigit():
            raise DataFormatError(src.where(member), f"count of '{name}' is not a non-negative "
                                  f"integer: {value!r}", 2)
        counts[name] = int(value)
    return counts


def _read_triplets(src: Source, num_nodes: dict[str, int]) -> list[tuple[str, str, str]]:
    member = "raw/triplet-type-list.csv.gz"
    triplets = []
    for line_no, line in enumerate(_text(src, member).splitlines(), start=1):
        if not line.strip():
            continue
        fields = tuple(f.strip() for f in line.split(","))
        if len(fields) != 3 or not all(fields):
            raise DataFormatError(src.where(member), "expected 'src,rel,dst'", line_no)
        unknown = [t for t in (fields[0], fields[2]) if t not in num_nodes]
        if unknown:
            raise DataFormatError(src.where(member), f"node type '{unknown[0]}' is not in "
                                  "raw/num-node-dict.csv.gz", line_no)
        triplets.append(fields)
    if not triplets:
        raise DataFormatError(src.where(member), "no relations listed")
    return triplets


def _read_edges(src: Source, triplet: tuple[str, str, str], num_nodes: dict[str, int]
                ) -> torch.Tensor:
    folder = "raw/relations/" + "___".join(triplet)
    member = f"{folder}/edge.csv.gz"
    edges = _read_csv(src, member, 2, np.int64)
    for col, node_type in ((0, triplet[0]), (1, triplet[2])):
        _check_range(src, member, edges[:, col], 0, num_nodes[node_type], f"{node_type} id")
    counts = _read_csv(src, f"{folder}/num-edge-list.csv.gz", 1, np.int64)
    if counts.shape[0] != 1 or counts[0, 0] != edges.shape[0]:
        raise DataFormatError(src.where(f"{folder}/num-edge-list.csv.gz"), f"says "
                              f"{counts[:, 0].tolist()} edges, edge.csv.gz has {edges.shape[0]}")
    return torch.from_numpy(np.ascontiguousarray(edges.T))


def _check_range(src: Source, member: str, values: np.ndarray, lo: int, hi: int, what: str) -> None:
    bad = np.flatnonzero((values < lo) | (values >= hi))
    if bad.size:
        raise DataFormatError(src.where(member), f"{what} {values[bad[0]]} is out of range "
                              f"[{lo}, {hi})", int(bad[0]) + 1)


def _read_csv(src: Source, member: str, width: int | None, dtype: type,
              rows: int | None = None) -> np.ndarray:
    """A headerless numeric csv.gz as a ``[rows, width]`` array (``width=None``: from line 1).

    np.loadtxt (C-parsed in numpy 2) does the work block by block. It gives no reliable line
    numbers and skips blank lines, so on any failure, or when rows and lines disagree, the block is
    rescanned in Python to name the offending line.
    """
    where = src.where(member)
    parts, first_line = [], 1
    for block in _line_blocks(src, member):
        n_lines = block.count(b"\n")
        if width is None:
            width = block[: block.find(b"\n")].count(b",") + 1
        try:
            part = np.loadtxt(io.BytesIO(block), delimiter=",", dtype=dtype, comments=None, ndmin=2)
        except (ValueError, UnicodeDecodeError):
            part = None
        if part is None or part.shape != (n_lines, width):
            _raise_bad_line(block, where, first_line, width, dtype)
        parts.append(part)
        first_line += n_lines
    if not parts:
        raise DataFormatError(where, "file is empty")
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if rows is not None and out.shape[0] != rows:
        raise DataFormatError(where, f"{out.shape[0]} rows, expected {rows} (one per node)")
    return out


def _line_blocks(src: Source, member: str) -> Iterator[bytes]:
    """Decompressed text in blocks of whole lines, each ending in a newline."""
    stream = gzip.GzipFile(fileobj=io.BytesIO(src.read_bytes(member)))
    carry = b""
    try:
        while chunk := stream.read(_BLOCK):
            chunk = carry + chunk
            cut = chunk.rfind(b"\n") + 1
            carry = chunk[cut:]
            if cut:
                yield chunk[:cut]
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(src.where(member), f"not a valid gzip file ({exc})") from None
    if carry.strip():
        yield carry + b"\n"


def _raise_bad_line(block: bytes, where: str, first_line: int, width: int, dtype: type
                    ) -> NoReturn:
    convert, kind = (int, "an integer") if np.issubdtype(dtype, np.integer) else (float, "a number")
    for offset, line in enumerate(block.split(b"\n")[:-1]):
        fields = line.split(b",")
        if len(fields) != width:
            raise DataFormatError(where, f"expected {width} comma-separated values, got "
                                  f"{len(fields)}", first_line + offset)
        for field in fields:
            try:
                value = convert(field)
            except ValueError:
                value = None
            if value is None or (convert is int and not -(2**63) <= value < 2**63):
                text = field.decode("utf-8", "replace")
                raise DataFormatError(where, f"{text!r} is not {kind}", first_line + offset)
    raise DataFormatError(where, "could not be parsed as comma-separated numbers")
