"""Reader for HeCo's movie-centred Freebase (Wang et al., KDD'21); not HGB's Freebase.

Three edge lists (``ma.txt``, ``md.txt``, ``mw.txt``: ``movie \\t other`` in per-type local ids),
``labels.npy`` over movies and the shipped ``{train,val,test}_{20,40,60}.npy`` splits. No features
are shipped, so every type is featureless.

The node counts are those of the release (:data:`NUM_NODES`), not the largest id seen: an id outside
them is a damaged file, refused with the file and line.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.text import as_ids, parse_number_table
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, HgnnError, UnknownNameError

SPLITS = (20, 40, 60)  # labelled training movies per class, as shipped
EDGE_FILES = {"actor": "ma.txt", "director": "md.txt", "writer": "mw.txt"}
# Nodes per type, from HeCo's paper and HeCo_Freebase/SOURCE.md (every id in each range has an edge).
NUM_NODES = {"movie": 3492, "actor": 33401, "director": 2502, "writer": 4459}


class SplitOptionError(HgnnError, ValueError):
    """An unsupported ``split`` option: a user error for the CLI, a ValueError for callers."""


def read_heco_freebase(path: str | Path, split: int = 20,
                       **options) -> tuple[HeteroData, TaskSpec]:
    """Read HeCo's Freebase: movies into 3 classes with actors, directors and writers.

    Args:
        path: the folder (or zip) holding the files.
        split: which shipped split to use: 20, 40 or 60 training movies per class (validation and
            test are 1,000 movies each in all three).

    Edges are emitted one way, movie -> other, as the files store them.
    """
    if options:
        raise UnknownNameError(f"the HeCo Freebase reader takes only 'split' (got "
                               f"{', '.join(options)})")
    if split not in SPLITS:
        raise SplitOptionError(f"heco-freebase: split must be 20, 40 or 60 (training movies per "
                               f"class), got {split!r}")
    source = Source(path)
    labels = _npy(source, "labels.npy")
    if labels.min() < 0 or labels.max() >= 3:
        raise DataFormatError(source.where("labels.npy"), "class labels must lie in [0, 3)")
    n_movies = NUM_NODES["movie"]
    if len(labels) != n_movies:
        raise DataFormatError(source.where("labels.npy"), f"{len(labels)} labels, but HeCo's "
                              f"Freebase has {n_movies} movies")

    data = HeteroData()
    data["movie"].num_nodes = n_movies
    for other, member in EDGE_FILES.items():
        pairs = read_pairs(source, member)
        bad = np.flatnonzero((pairs >= [n_movies, NUM_NODES[other]]).any(1))
        if len(bad):
            row = int(bad[0])
            col = 0 if pairs[row, 0] >= n_movies else 1
            node_type = ("movie", other)[col]
            n = NUM_NODES[node_type]
            raise DataFormatError(source.where(member), f"{node_type} id {pairs[row, col]} is out "
                                  f"of range: HeCo's Freebase has {n} {node_type}s (ids 0..{n - 1})",
                                  line=row + 1)
        data[other].num_nodes = NUM_NODES[other]
        data["movie", "to", other].edge_index = torch.from_numpy(np.ascontiguousarray(pairs.T))

    store = data["movie"]
    store.y = torch.from_numpy(labels.astype(np.int64))
    seen = np.zeros(n_movies, dtype=bool)
    for part, mask_name in (("train", "train_mask"), ("val", "val_mask"), ("test", "test_mask")):
        member = f"{part}_{split}.npy"
        ids = _npy(source, member).astype(np.int64)
        if ids.min() < 0 or ids.max() >= n_movies or len(np.unique(ids)) != len(ids) \
                or seen[ids].any():
            raise DataFormatError(source.where(member), f"ids must be distinct movie ids in "
                                  f"[0, {n_movies}), not shared with another part of the split")
        seen[ids] = True
        mask = torch.zeros(n_movies, dtype=torch.bool)
        mask[torch.from_numpy(ids)] = True
        store[mask_name] = mask

    task = TaskSpec(target="movie", num_classes=3, multilabel=False,
                    metrics=("macro_f1", "micro_f1"), split="fixed",
                    featureless=("movie", *EDGE_FILES))
    return data, task


def read_pairs(source: Source, member: str) -> np.ndarray:
    """A ``[E, 2]`` int64 array from ``a \t b`` lines; a bad line is reported by its number."""
    where = source.where(member)
    table = parse_number_table(source.read_bytes(member), where, columns=2)
    other = next((t for t, m in EDGE_FILES.items() if m == member), "other")
    movies = as_ids(table[:, 0], where, "movie id")
    return np.stack([movies, as_ids(table[:, 1], where, f"{other} id")], 1)


def _npy(source: Source, member: str) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(source.read_bytes(member)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(source.where(member), f"not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu" \
            or not arr.size:
        raise DataFormatError(source.where(member), "expected a non-empty 1-D integer array")
    return arr
