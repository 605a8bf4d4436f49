"""Reader for HGSL's Yelp release (Zhao et al., AAAI'21): four pickles in one folder.

``meta_data.pkl`` gives each node type's global id range (``t_info``); ``edges.pkl`` maps relation
names such as ``"b-u"`` to global-id sparse matrices; features and the fixed split follow the GTN
conventions, so the GTN reader's helpers do the slicing and the split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.gtn import add_block, as_coo, as_feature_matrix, attach_fixed_split
from hgnn.data.formats.safe_pickle import ARRAYS_ONLY, safe_load
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

# HGSL's one-letter type codes; an unknown code keeps its letter as the type name.
TYPE_NAMES = {"b": "business", "u": "user", "s": "service", "l": "level"}


def read_hgsl_yelp(path: str | Path, **options) -> tuple[HeteroData, TaskSpec]:
    """Read HGSL's Yelp: businesses into 3 classes, with users, services and rating levels.

    Each ``edges.pkl`` key ``"x-y"`` becomes ``(type_x, "to", type_y)``, both stored directions
    kept. Business-user entries count interactions (1..16), so they are kept as ``edge_weight``.
    """
    if options:
        raise UnknownNameError(f"the HGSL Yelp reader takes no options (got {', '.join(options)})")
    source = Source(path)
    # meta_data.pkl pickles Python sets and ranges, the only pickle here that needs builtins.
    meta = _load(source, "meta_data.pkl", allowed=None)
    typed = _type_ranges(meta, source.where("meta_data.pkl"))
    n = max(end for _, end in typed.values())

    where_x = source.where("node_features.pkl")
    feats = as_feature_matrix(_load(source, "node_features.pkl"), where_x)
    if feats.shape[0] != n:
        raise DataFormatError(where_x, f"{feats.shape[0]} rows but t_info covers {n} nodes")
    data = HeteroData()
    for name, (start, end) in typed.items():
        data[name].x = torch.from_numpy(feats[start:end].astype(np.float32))

    where_e = source.where("edges.pkl")
    edges = _load(source, "edges.pkl")
    if not isinstance(edges, dict) or not edges:
        raise DataFormatError(where_e, "expected a dict from relation name to sparse matrix")
    for key, m in edges.items():
        key = key.item() if isinstance(key, np.generic) else key  # quoted as Python, not numpy
        parts = str(key).split("-")
        names = [TYPE_NAMES.get(p, p) for p in parts]
        if len(parts) != 2 or not all(nm in typed for nm in names):
            raise DataFormatError(where_e, f"relation {key!r} is not 'x-y' over the types "
                                           f"{sorted(typed)} of meta_data t_info")
        add_block(data, (names[0], "to", names[1]), as_coo(m, n, f"{where_e}, {key!r}"),
                  typed, f"{where_e}, {key!r}")

    n_class = meta.get("n_class")
    where_y = source.where("labels.pkl")
    target, num_classes = attach_fixed_split(
        data, _load(source, "labels.pkl"), typed, where_y,
        num_classes=n_class if isinstance(n_class, int) and n_class > 0 else None)
    task = TaskSpec(target=target, num_classes=num_classes, multilabel=False,
                    metrics=("macro_f1", "micro_f1"), split="fixed")
    return data, task


def _load(source: Source, member: str, allowed: frozenset | None = ARRAYS_ONLY) -> object:
    return safe_load(source.read_bytes(member), source.where(member), allowed)


def _type_ranges(meta: object, where: str) -> dict[str, tuple[int, int]]:
    """``t_info`` as ``{type name: (start, end)}``, checked to tile ``[0, n)`` in order."""
    info = meta.get("t_info") if isinstance(meta, dict) else None
    if not isinstance(info, dict) or not info:
        raise DataFormatError(where, "expected a dict with a 't_info' entry")
    typed: dict[str, tuple[int, int]] = {}
    expected_start = 0
    for code, entry in info.items():
        code = code.item() if isinstance(code, np.generic) else code  # quoted as Python, not numpy
        ind = entry.get("ind") if isinstance(entry, dict) else None
        if not isinstance(ind, range) or ind.step != 1 or ind.start != expected_start \
                or len(ind) == 0:
            raise DataFormatError(where, f"t_info[{code!r}]['ind'] must be a non-empty range "
                                         f"starting at {expected_start}")
        typed[TYPE_NAMES.get(code, str(code))] = (ind.start, ind.stop)
        expected_start = ind.stop
    return typed
