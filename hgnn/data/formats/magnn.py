"""Reader for MAGNN's preprocessed IMDB (``IMDB_processed.zip``, Fu et al., WWW'20).

Only the base files are read: ``node_types.npy``, ``adjM.npz``, ``features_{0,1,2}.npz``,
``labels.npy`` and ``train_val_test_idx.npz``. The metapath-instance folders ``0/``, ``1/``, ``2/``
are MAGNN-specific derivations of ``adjM`` and are ignored. Every array is loaded with
``allow_pickle=False``, so no file can run code.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

TYPE_NAMES = ("movie", "director", "actor")  # node_types.npy codes 0, 1, 2


def read_magnn_imdb(path: str | Path, **options) -> tuple[HeteroData, TaskSpec]:
    """Read MAGNN's IMDB: movies / directors / actors, movies into 3 genres, fixed split.

    Relations are the nonzero type blocks of the symmetric ``adjM`` (movie <-> director and
    movie <-> actor, both directions as stored); features are the per-type CSR matrices made dense.
    """
    if options:
        raise UnknownNameError(f"the MAGNN IMDB reader takes no options (got {', '.join(options)})")
    source = Source(path)
    node_types = _array(source, "node_types.npy", ndim=1)
    if node_types.min() < 0 or node_types.max() >= len(TYPE_NAMES):
        raise DataFormatError(source.where("node_types.npy"),
                              f"type codes must lie in [0, {len(TYPE_NAMES)})")
    n = len(node_types)
    counts = np.bincount(node_types, minlength=len(TYPE_NAMES))
    # Local id of each global id: its rank among the nodes of its own type.
    local = np.empty(n, dtype=np.int64)
    for t in range(len(TYPE_NAMES)):
        local[node_types == t] = np.arange(counts[t])

    data = HeteroData()
    for t, name in enumerate(TYPE_NAMES):
        member = f"features_{t}.npz"
        x = _load_csr(source, member)
        if x.shape[0] != counts[t]:
            raise DataFormatError(source.where(member), f"{x.shape[0]} rows but node_types.npy "
                                                        f"has {counts[t]} {name} nodes")
        data[name].x = torch.from_numpy(x.toarray().astype(np.float32))

    adj = _load_csr(source, "adjM.npz")
    if adj.shape != (n, n):
        raise DataFormatError(source.where("adjM.npz"),
                              f"shape {adj.shape} does not match the {n} nodes of node_types.npy")
    coo = adj.tocoo()
    src_t, dst_t = node_types[coo.row], node_types[coo.col]
    for s, src in enumerate(TYPE_NAMES):
        for d, dst in enumerate(TYPE_NAMES):
            keep = (src_t == s) & (dst_t == d)
            if not keep.any():
                continue
            rel = data[src, "to", dst]
            rel.edge_index = torch.from_numpy(
                np.stack([local[coo.row[keep]], local[coo.col[keep]]]))
            weight = coo.data[keep]
            if not np.all(weight == 1):
                rel.edge_weight = torch.from_numpy(weight.astype(np.float32))

    _attach_split(data, source, int(counts[0]))
    task = TaskSpec(target="movie", num_classes=3, multilabel=False,
                    metrics=("micro_f1", "macro_f1"), split="fixed")
    return data, task


def _attach_split(data: HeteroData, source: Source, n_movies: int) -> None:
    labels = _array(source, "labels.npy", ndim=1)
    where = source.where("labels.npy")
    if len(labels) != n_movies:
        raise DataFormatError(where, f"{len(labels)} labels for {n_movies} movies")
    if labels.min() < 0 or labels.max() >= 3:
        raise DataFormatError(where, "class labels must lie in [0, 3)")
    store = data["movie"]
    store.y = torch.from_numpy(labels.astype(np.int64))
    where = source.where("train_val_test_idx.npz")
    idx = _npz(source, "train_val_test_idx.npz")
    seen = np.zeros(n_movies, dtype=bool)
    for key, mask_name in (("train_idx", "train_mask"), ("val_idx", "val_mask"),
                           ("test_idx", "test_mask")):
        if key not in idx or idx[key].ndim != 1 or idx[key].dtype.kind not in "iu":
            raise DataFormatError(where, f"missing or malformed integer array {key!r}")
        ids = idx[key].astype(np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n_movies):
            raise DataFormatError(where, f"{key} holds ids outside the {n_movies} movies")
        if seen[ids].any() or len(np.unique(ids)) != len(ids):
            raise DataFormatError(where, f"{key} repeats ids or overlaps another split")
        seen[ids] = True
        mask = torch.zeros(n_movies, dtype=torch.bool)
        mask[torch.from_numpy(ids)] = True
        store[mask_name] = mask


def _npz(source: Source, member: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(source.read_bytes(member)), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFormatError(source.where(member), f"not a readable .npz archive ({exc})") \
            from None


def _array(source: Source, member: str, ndim: int) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(source.read_bytes(member)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(source.where(member), f"not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != ndim or arr.dtype.kind not in "iu" \
            or not arr.size:
        raise DataFormatError(source.where(member), f"expected a non-empty {ndim}-D integer array")
    return arr


def _load_csr(source: Source, member: str) -> sp.csr_matrix:
    """A CSR matrix saved by ``scipy.sparse.save_npz``, checked before scipy sees it."""
    z, where = _npz(source, member), source.where(member)
    missing = {"data", "indices", "indptr", "shape"} - set(z)
    fmt = z.get("format", np.array(b"csr")).item()
    if missing or fmt not in (b"csr", "csr"):
        raise DataFormatError(where, "expected a CSR matrix saved by scipy.sparse.save_npz")
    data, indices, indptr, shape = z["data"], z["indices"], z["indptr"], z["shape"]
    if shape.shape != (2,) or indptr.ndim != 1 or len(indptr) != int(shape[0]) + 1:
        raise DataFormatError(where, "indptr does not match the stored shape")
    if (np.diff(indptr) < 0).any() or indptr[0] != 0 or indptr[-1] != len(indices) \
            or len(indices) != len(data):
        raise DataFormatError(where, "inconsistent CSR arrays (indptr / indices / data)")
    if len(indices) and (indices.min() < 0 or indices.max() >= int(shape[1])):
        raise DataFormatError(where, f"column ids must lie in [0, {int(shape[1])})")
    if data.dtype.kind not in "biuf" or not np.isfinite(data).all():
        raise DataFormatError(where, "values must be finite numbers")
    return sp.csr_matrix((data, indices, indptr), shape=(int(shape[0]), int(shape[1])))
