"""Train / validation holdout drawn from a dataset's training pool."""
from __future__ import annotations

import dataclasses

import torch
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec


def holdout_split(data: HeteroData, task: TaskSpec, seed: int) -> tuple[HeteroData, TaskSpec]:
    """Move ``task.val_fraction`` of the training pool (``train_mask``) into ``val_mask``.

    Stratified: within each class (each distinct label set for multi-label tasks) the same fraction
    is held out, rounded to nearest, so class proportions match between train and validation as in
    the HGB and RpHGNN scripts. The pool itself (``train_pool_mask``) is kept so a different seed can
    redraw the split. Deterministic for a given seed.
    """
    store = data[task.target]
    pool = store.get("train_pool_mask")
    if pool is None:
        pool = store.train_mask.clone()
        store.train_pool_mask = pool
    idx = pool.nonzero().view(-1)
    y = store.y[idx]
    if task.multilabel:
        # Group by label set: encode each row of the 0/1 matrix as an integer key.
        weights = 2 ** torch.arange(y.size(1), dtype=torch.long)
        keys = (y.long() * weights).sum(1)
    else:
        keys = y.long()
    gen = torch.Generator().manual_seed(int(seed))
    val_parts = []
    for key in torch.unique(keys):
        members = idx[keys == key]
        members = members[torch.randperm(members.numel(), generator=gen)]
        n_val = int(round(task.val_fraction * members.numel()))
        val_parts.append(members[:n_val])
    val_idx = torch.cat(val_parts) if val_parts else idx[:0]
    val_mask = torch.zeros_like(pool)
    val_mask[val_idx] = True
    store.val_mask = val_mask
    store.train_mask = pool & ~val_mask
    return data, dataclasses.replace(task, split_seed=int(seed))
