"""Processed-dataset cache: plain tensors on disk, keyed by the source files' checksum.

A cache entry is written only after a reader has finished without error, to a temporary file that is
then renamed into place, so a failed or interrupted load never leaves a partial entry behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec

FORMAT_VERSION = 2


def cache_dir() -> Path:
    """``$HGNN_CACHE``, else ``~/.cache/hgnn``."""
    env = os.environ.get("HGNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hgnn"


def hetero_to_plain(data: HeteroData, task: TaskSpec) -> dict:
    """A dict of tensors, strings and numbers that ``torch.load(weights_only=True)`` accepts."""
    nodes = {}
    for nt in data.node_types:
        store = data[nt]
        entry = {k: v for k, v in store.items() if isinstance(v, torch.Tensor)}
        entry["num_nodes"] = int(store.num_nodes)
        x = entry.get("x")
        if x is not None and x.dtype == torch.float32 and x.dim() == 2 and x.numel() > 1 << 20:
            nnz = int(torch.count_nonzero(x))
            if nnz < 0.1 * x.numel():
                # Bag-of-words features are mostly zeros: store the nonzeros, densify on load.
                flat = x.view(-1)
                idx = flat.nonzero().view(-1)
                entry.pop("x")
                entry["x_sparse"] = [idx, flat[idx], list(x.shape)]
        nodes[nt] = entry
    edges = {"__".join(et): {k: v for k, v in data[et].items() if isinstance(v, torch.Tensor)}
             for et in data.edge_types}
    meta = {k: v for k, v in data._global_store.items() if isinstance(v, (str, int, float, list, dict))}
    return {"version": FORMAT_VERSION, "nodes": nodes, "edges": edges, "meta": meta,
            "task": task.to_dict()}


def plain_to_hetero(d: dict) -> tuple[HeteroData, TaskSpec]:
    """Inverse of :func:`hetero_to_plain`."""
    data = HeteroData()
    for nt, entry in d["nodes"].items():
        entry = dict(entry)
        sparse = entry.pop("x_sparse", None)
        if sparse is not None:
            idx, val, shape = sparse
            x = torch.zeros(shape[0] * shape[1], dtype=val.dtype)
            x[idx] = val
            entry["x"] = x.view(shape[0], shape[1])
        for k, v in entry.items():
            data[nt][k] = v
    for key, entry in d["edges"].items():
        et = tuple(key.split("__"))
        for k, v in entry.items():
            data[et][k] = v
    for k, v in d["meta"].items():
        data[k] = v
    return data, TaskSpec.from_dict(d["task"])


def load(key: str) -> tuple[HeteroData, TaskSpec] | None:
    """The cached entry for ``key``, or ``None`` when absent or unreadable."""
    path = cache_dir() / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        d = torch.load(path, weights_only=True)
        if d.get("version") != FORMAT_VERSION:
            return None
        return plain_to_hetero(d)
    except Exception:  # a damaged cache entry is rebuilt, never trusted
        return None


def save(key: str, data: HeteroData, task: TaskSpec) -> Path | None:
    """Write atomically; a read-only or full cache folder only costs the speed-up."""
    folder = cache_dir()
    tmp: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            torch.save(hetero_to_plain(data, task), fh)
        final = folder / f"{key}.pt"
        os.replace(tmp, final)
        tmp = None
        return final
    except OSError:
        return None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
