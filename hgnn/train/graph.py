"""Turn a loaded graph into model input as a config's ``graph`` section asks."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from hgnn.data.metapath2vec import metapath2vec_features
from hgnn.data.task import TaskSpec
from hgnn.data.transforms import (
    add_reverse,
    drop_duplicate_reverses,
    drop_empty_node_types,
    neighbour_mean_features,
    random_features,
)


def prepare_graph(data: HeteroData, task: TaskSpec, graph_config: dict, seed: int,
                  record: dict | None = None) -> HeteroData:
    """Drop node types without nodes (not the target), then apply reverse-relation handling and
    input-feature choices (in place; returns ``data``).

    ``features`` decides which types keep their shipped features (``all``, ``target`` only, or
    ``none``, HGB's one-hot ``feats_type=3``), and ``normalize_features`` scales them as PyG's
    ``NormalizeFeatures`` does; every type then without features gets node-id inputs
    (``x`` = ``arange(N)`` as long, embedded by the model: a learned row per node), seeded random
    Gaussian features of width ``random_dim``, or (``mean``, before metapath2vec) the mean of its
    featured in-neighbours' features (:func:`~hgnn.data.transforms.neighbour_mean_features`).
    With ``metapath2vec.dim`` > 0, the types on the metapath first get metapath2vec embeddings
    appended to their features (or as their features when they have none;
    :mod:`hgnn.data.metapath2vec`); ``record``, when given, gets
    ``metapath2vec`` = ``{"seconds", "cached"}`` for the run record.
    """
    empty = drop_empty_node_types(data, keep={task.target})
    if empty and record is not None:
        record["dropped_empty_node_types"] = empty
    if graph_config["drop_duplicate_reverses"]:
        drop_duplicate_reverses(data)
    if graph_config["add_reverse"] != "none":
        add_reverse(data, symmetrise_same_type=graph_config.get("symmetrise_same_type", True),
                    only_missing=graph_config["add_reverse"] == "missing")
    keep = graph_config["features"]
    for t in data.node_types:
        if keep == "none" or (keep == "target" and t != task.target):
            if "x" in data[t]:
                n = data[t].num_nodes
                del data[t].x
                data[t].num_nodes = n
    if graph_config.get("normalize_features"):
        for t in data.node_types:
            if "x" in data[t] and data[t].x.is_floating_point() and data[t].x.numel():
                x = data[t].x - data[t].x.min()
                data[t].x = x / x.sum(dim=-1, keepdim=True).clamp(min=1.0)
    if graph_config["featureless"] == "mean":  # before metapath2vec, as H2GB's mag-year
        neighbour_mean_features(data)
    m2v = graph_config["metapath2vec"]
    if m2v["dim"] > 0:
        m2v_record: dict = {}
        for t, emb in metapath2vec_features(data, task.target, m2v, record=m2v_record).items():
            data[t].x = torch.cat([data[t].x.float(), emb], 1) if "x" in data[t] else emb
        if record is not None:
            record["metapath2vec"] = m2v_record
    featureless = [t for t in data.node_types if "x" not in data[t]]
    if graph_config["featureless"] in ("random", "mean"):  # mean: those no featured type reaches
        random_features(data, graph_config["random_dim"], seed=seed, node_types=featureless)
    else:
        for t in featureless:
            data[t].x = torch.arange(data[t].num_nodes)
    return data
