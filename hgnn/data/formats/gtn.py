"""Reader for the GTN release format (Yun et al., NeurIPS'19): ``edges.pkl``, ``labels.pkl``,
``node_features.pkl`` in one global node-id space.

The files do not say which ids belong to which node type, so the type ranges are worked out from the
edge matrices: every matrix links one contiguous id range to another, and the row / column
supports of all matrices tile the id space. Also home to the helpers that the HGSL reader shares
(global matrices sliced into typed blocks, ``[train, valid, test]`` lists of ``[node, class]``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.safe_pickle import ARRAYS_ONLY, safe_load
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

# Type sizes (in id order) of the three GTN releases, from their SOURCE.md; anything else gets
# generic names.
KNOWN_TYPES: dict[tuple[int, ...], tuple[str, ...]] = {
    (3025, 5912, 57): ("paper", "author", "subject"),  # ACM
    (4057, 14328, 20): ("author", "paper", "conference"),  # DBLP
    (4661, 2270, 5841): ("movie", "director", "actor"),  # IMDB
}
# Classes of the same releases (SOURCE.md): their labels are checked against these rather than
# counted as the largest label + 1.
KNOWN_CLASSES: dict[tuple[int, ...], int] = {
    (3025, 5912, 57): 3, (4057, 14328, 20): 4, (4661, 2270, 5841): 3,
}

Range = tuple[int, int]  # [start, end) in the global id space


def read_gtn(path: str | Path, **options) -> tuple[HeteroData, TaskSpec]:
    """Read a GTN-format folder or zip (``gtn-acm``, ``gtn-dblp``, ``gtn-imdb`` or alike).

    Node types are the id ranges inferred from the edge matrices, named after the known release
    when the range sizes match one (else ``type0``, ``type1``, ...). Each matrix becomes one
    relation ``(src, "to", dst)`` in local ids; the target type is the one holding the labelled
    nodes, with GTN's fixed train / valid / test split.
    """
    if options:
        raise UnknownNameError(f"the GTN reader takes no options (got {', '.join(options)})")
    source = Source(path)
    where_e, where_x = source.where("edges.pkl"), source.where("node_features.pkl")
    # The small edge file first: a bad archive fails before the large feature pickle is read.
    edges = safe_load(source.read_bytes("edges.pkl"), where_e, ARRAYS_ONLY)
    if not isinstance(edges, (list, tuple)) or not edges:
        raise DataFormatError(where_e, f"expected a non-empty list of sparse matrices, got "
                                       f"{type(edges).__name__}")
    feats = as_feature_matrix(safe_load(source.read_bytes("node_features.pkl"), where_x,
                                        ARRAYS_ONLY), where_x)
    n = feats.shape[0]
    mats = [as_coo(m, n, f"{where_e}, matrix {k}") for k, m in enumerate(edges)]
    empty = [k for k, m in enumerate(mats) if not m.nnz]
    if empty:
        raise DataFormatError(where_e, f"matrix {empty[0]} has no edges, so its node types "
                                       "cannot be told")
    ranges = infer_type_ranges(mats, n, where_e)
    sizes = tuple(end - start for start, end in ranges)
    release = next((known for known in KNOWN_TYPES if sum(known) == n), None)
    if release is not None and sizes != release:
        # The node count is a known release's, so a damaged edge moved the type boundaries.
        raise DataFormatError(where_e, f"the edges split the {n} nodes into types of sizes "
                                       f"{list(sizes)}, not the release's {list(release)} "
                                       f"({', '.join(KNOWN_TYPES[release])}): an edge joins the "
                                       "wrong id ranges")
    names = KNOWN_TYPES.get(sizes, tuple(f"type{i}" for i in range(len(ranges))))
    typed = dict(zip(names, ranges, strict=True))

    data = HeteroData()
    for name, (start, end) in typed.items():
        data[name].x = torch.from_numpy(feats[start:end].astype(np.float32))
    for k, m in enumerate(mats):
        src = _type_of(int(m.row.min()), typed)
        dst = _type_of(int(m.col.min()), typed)
        rel = "to" if (src, "to", dst) not in data.edge_types else f"to_{k}"
        add_block(data, (src, rel, dst), m, typed, f"{where_e}, matrix {k}")

    where_y = source.where("labels.pkl")
    labels = safe_load(source.read_bytes("labels.pkl"), where_y, ARRAYS_ONLY)
    target, num_classes = attach_fixed_split(data, labels, typed, where_y,
                                             num_classes=KNOWN_CLASSES.get(sizes))
    task = TaskSpec(target=target, num_classes=num_classes, multilabel=False,
                    metrics=("macro_f1", "micro_f1"), split="fixed")
    return data, task


def as_feature_matrix(obj: object, where: str) -> np.ndarray:
    """A 2-D finite numeric array (dense or scipy sparse) as a dense numpy array."""
    if sp.issparse(obj):
        obj = obj.toarray()
    if not isinstance(obj, np.ndarray) or obj.ndim != 2 or obj.dtype.kind not in "biuf":
        raise DataFormatError(where, "expected a 2-D numeric feature matrix")
    if obj.dtype.kind == "f" and not np.isfinite(obj).all():
        raise DataFormatError(where, "features contain NaN or infinite values")
    return obj


def as_coo(m: object, n: int, where: str) -> sp.coo_matrix:
    """A sparse ``n x n`` matrix in row-major order, checked for shape and finite values."""
    if not sp.issparse(m):
        raise DataFormatError(where, f"expected a scipy sparse matrix, got {type(m).__name__}")
    if m.shape != (n, n):
        raise DataFormatError(where, f"shape {m.shape} does not match the {n} nodes of "
                                     "node_features")
    # Row-major order makes the edge order deterministic whatever format was pickled.
    coo = sp.csr_matrix(m).tocoo()
    if coo.data.dtype.kind not in "biuf" or not np.isfinite(coo.data).all():
        raise DataFormatError(where, "edge values must be finite numbers")
    return coo


def infer_type_ranges(mats: list[sp.coo_matrix], n: int, where: str) -> list[Range]:
    """Split ``[0, n)`` into node-type ranges from the row / column supports of the matrices.

    Overlapping supports are merged into one type. Ids that no edge touches (isolated nodes) are
    given to the range before them, as GTN orders ids type by type.
    """
    spans = sorted((int(ids.min()), int(ids.max()))
                   for m in mats if m.nnz for ids in (m.row, m.col))
    if not spans:
        raise DataFormatError(where, "no edges in any matrix")
    merged = [list(spans[0])]
    for lo, hi in spans[1:]:
        if lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    starts = [0] + [lo for lo, _ in merged[1:]]
    return list(zip(starts, starts[1:] + [n], strict=True))


def _type_of(node: int, typed: dict[str, Range]) -> str:
    return next(name for name, (start, end) in typed.items() if start <= node < end)


def add_block(data: HeteroData, edge_type: tuple[str, str, str], m: sp.coo_matrix,
              typed: dict[str, Range], where: str) -> None:
    """Store a global-id matrix as ``edge_index`` in local ids (``edge_weight`` unless all ones)."""
    src, _, dst = edge_type
    (s0, s1), (d0, d1) = typed[src], typed[dst]
    if m.nnz and not (s0 <= m.row.min() and m.row.max() < s1
                      and d0 <= m.col.min() and m.col.max() < d1):
        raise DataFormatError(where, f"edges leave the id ranges of {src} [{s0}, {s1}) and "
                                     f"{dst} [{d0}, {d1})")
    data[edge_type].edge_index = torch.from_numpy(
        np.stack([m.row.astype(np.int64) - s0, m.col.astype(np.int64) - d0]))
    if not np.all(m.data == 1):
        data[edge_type].edge_weight = torch.from_numpy(m.data.astype(np.float32))


def attach_fixed_split(data: HeteroData, labels: object, typed: dict[str, Range], where: str,
                       num_classes: int | None = None) -> tuple[str, int]:
    """Set ``y`` and the masks on the labelled type from ``[train, valid, test]`` row lists.

    Each list holds ``[global_node_id, class]`` rows (numpy arrays or plain lists). Returns the
    target type and the number of classes (``num_classes`` if given, checked, else max + 1).
    """
    if not isinstance(labels, (list, tuple)) or len(labels) != 3:
        raise DataFormatError(where, "expected a list [train, valid, test] of [node, class] rows")
    parts = []
    for name, part in zip(("train", "valid", "test"), labels, strict=True):
        try:
            arr = np.asarray(part)
        except ValueError:
            arr = np.empty((0, 0))
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "iu" or not len(arr):
            raise DataFormatError(where, f"{name} part must be a non-empty list of integer "
                                         "[node, class] rows")
        parts.append(arr.astype(np.int64))
    nodes = np.concatenate([p[:, 0] for p in parts])
    classes = np.concatenate([p[:, 1] for p in parts])
    n = max(end for _, end in typed.values())
    if nodes.min() < 0 or nodes.max() >= n:
        raise DataFormatError(where, f"labelled node ids must lie in [0, {n})")
    if len(np.unique(nodes)) != len(nodes):
        raise DataFormatError(where, "a node is labelled more than once (splits overlap)")
    target = _type_of(int(nodes.min()), typed)
    start, end = typed[target]
    if nodes.max() >= end:
        raise DataFormatError(where, f"labelled nodes span several node types ({target} is "
                                     f"[{start}, {end}))")
    top = int(classes.max()) + 1 if num_classes is None else num_classes
    bad = np.flatnonzero((classes < 0) | (classes >= top))
    if bad.size:
        raise DataFormatError(where, f"class labels must lie in [0, {top}), node {nodes[bad[0]]} "
                                     f"has {classes[bad[0]]}")
    store = data[target]
    y = torch.full((end - start,), -1, dtype=torch.long)
    y[torch.from_numpy(nodes - start)] = torch.from_numpy(classes)
    store.y = y
    for mask_name, part in zip(("train_mask", "val_mask", "test_mask"), parts, strict=True):
        mask = torch.zeros(end - start, dtype=torch.bool)
        mask[torch.from_numpy(part[:, 0] - start)] = True
        store[mask_name] = mask
    return target, top
