"""metapath2vec node embeddings as extra input features (R-HGNN's and H2GB's positional encoding).

R-HGNN's ogbn-mag run concatenates a 128-d metapath2vec embedding to the paper features and uses it
alone for the featureless types; H2GB's ``Hetero_Metapath`` encoder adds the same kind of embedding
for ogbn-mag, mag-year, the OAG sets and H-Pokec. Training is unsupervised (random walks along a
closed metapath, skip-gram with negative sampling; PyG's ``MetaPath2Vec`` does the walks and the
loss), so it sees no labels. It runs once per graph and setting, with a fixed seed, and is cached on
disk (``$HGNN_CACHE/metapath2vec``), because on an ogbn-mag-sized graph it takes far longer than a
training epoch.
"""
from __future__ import annotations

import hashlib
import json
import time

import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import MetaPath2Vec

from hgnn.data.cache import cache_dir
from hgnn.errors import HgnnError
from hgnn.train.checkpoint import load_checkpoint, save_checkpoint

EdgeType = tuple[str, str, str]

# R-HGNN's preprocess_ogbn_mag.py settings (H2GB: 30 walks and 8 negatives per node, sparse
# embedding gradients with SparseAdam, the same otherwise).
DEFAULTS: dict = {
    "dim": 0,                    # 0 = off; else the embedding width concatenated to every type
    "metapath": [],              # [[src, rel, dst], ...], a closed walk; [] = schema_tour()
    "walk_length": 64,
    "context_size": 7,
    "walks_per_node": 5,
    "num_negative_samples": 5,
    "epochs": 5,
    "lr": 0.01,
    "batch_size": 128,
    "optimizer": "adam",         # adam (dense gradients) | sparse_adam
}


def schema_tour(edge_types: list[EdgeType], start: str) -> list[EdgeType]:
    """A closed metapath from ``start`` that reaches every node type it can.

    A depth-first walk over the schema: down each relation to a type not yet visited and back
    along that relation's reverse (any stored relation from the child back to the parent), with each
    same-type relation (paper-cites-paper) taken once where its type is visited. Types reachable
    only through relations without a reverse are left out.
    """
    by_src: dict[str, list[EdgeType]] = {}
    for et in edge_types:
        by_src.setdefault(et[0], []).append(et)
    visited = {start}
    tour: list[EdgeType] = []

    def visit(node_type: str) -> None:
        for et in by_src.get(node_type, []):
            child = et[2]
            if child == node_type:  # a same-type relation is a closed step of its own
                tour.append(et)
                continue
            back = next((b for b in by_src.get(child, []) if b[2] == node_type), None)
            if child in visited or back is None:
                continue
            visited.add(child)
            tour.append(et)
            visit(child)
            tour.append(back)

    visit(start)
    return tour


def _check_metapath(metapath: list[EdgeType], edge_types: list[EdgeType]) -> None:
    if not metapath:
        raise HgnnError("graph.metapath2vec: no metapath (the target type has no relation with a "
                        "reverse; set graph.metapath2vec.metapath)")
    for et in metapath:
        if et not in edge_types:
            raise HgnnError(f"graph.metapath2vec.metapath: {list(et)} is not a relation of the graph "
                            f"(relations: {[list(e) for e in edge_types]})")
    for a, b in zip(metapath, metapath[1:] + metapath[:1], strict=True):
        if a[2] != b[0]:
            raise HgnnError(f"graph.metapath2vec.metapath: {list(a)} is followed by {list(b)}; "
                            "each relation must start where the previous one ends, and the last "
                            "must end where the first starts")


def _cache_key(data: HeteroData, metapath: list[EdgeType], settings: dict, seed: int) -> str:
    h = hashlib.sha256(json.dumps({"metapath": metapath, "seed": seed, **settings},
                                  sort_keys=True).encode())
    for et in sorted(set(metapath)):
        h.update(repr((et, data[et[0]].num_nodes, data[et[2]].num_nodes)).encode())
        h.update(data[et].edge_index.contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def train_metapath2vec(data: HeteroData, metapath: list[EdgeType], settings: dict,
                       seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor]:
    """Embeddings ``{node_type: [N_t, dim]}`` for every type on ``metapath`` (no caching);
    ``progress`` reports each epoch's mean loss on stderr (a bar on a terminal)."""
    from hgnn.train.progress import EpochProgress

    if settings["optimizer"] not in ("adam", "sparse_adam"):
        raise HgnnError("graph.metapath2vec.optimizer: must be 'adam' or 'sparse_adam', got "
                        f"{settings['optimizer']!r}")
    sparse = settings["optimizer"] == "sparse_adam"
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = MetaPath2Vec(
            {et: data[et].edge_index for et in set(metapath)}, embedding_dim=settings["dim"],
            metapath=metapath, walk_length=settings["walk_length"],
            context_size=settings["context_size"], walks_per_node=settings["walks_per_node"],
            num_negative_samples=settings["num_negative_samples"],
            num_nodes_dict={t: data[t].num_nodes for t in data.node_types}, sparse=sparse)
        loader = model.loader(batch_size=settings["batch_size"], shuffle=True, num_workers=0)
        optimizer = (torch.optim.SparseAdam if sparse else torch.optim.Adam)(
            list(model.parameters()), lr=settings["lr"])
        model.train()
        bar = EpochProgress("metapath2vec", settings["epochs"], disable=not progress)
        for _ in range(settings["epochs"]):
            total, steps = 0.0, 0
            for pos_rw, neg_rw in loader:
                optimizer.zero_grad()
                loss = model.loss(pos_rw, neg_rw)
                loss.backward()
                optimizer.step()
                total, steps = total + float(loss.detach()), steps + 1
            bar.update(loss=f"{total / max(steps, 1):.4f}")
        bar.close()
        model.eval()
        with torch.no_grad():
            types = {t for et in metapath for t in (et[0], et[2])}
            return {t: model(t).detach().clone() for t in sorted(types)}
    finally:
        torch.set_rng_state(gen_state)


def metapath2vec_features(data: HeteroData, target: str, config: dict, seed: int = 0,
                          record: dict | None = None, progress: bool = True,
                          ) -> dict[str, torch.Tensor]:
    """The cached embeddings for ``config`` (``graph.metapath2vec``), computing them when absent.

    Under ``torch.distributed`` rank 0 computes and writes while the other ranks wait, then read.
    ``progress`` reports the training epochs on stderr (it takes minutes on larger graphs).
    ``record``, when given, receives ``seconds`` (the one-off training time, stored with the cache;
    None for caches written before it was) and ``cached`` (whether this call found the cache).
    """
    settings = {k: config[k] for k in DEFAULTS if k != "metapath"}
    if config["walk_length"] + 1 < config["context_size"]:
        raise HgnnError("graph.metapath2vec: walk_length + 1 must be at least context_size")
    metapath = ([tuple(et) for et in config["metapath"]] if config["metapath"]
                else schema_tour(list(data.edge_types), target))
    _check_metapath(metapath, list(data.edge_types))
    path = cache_dir() / "metapath2vec" / f"{_cache_key(data, metapath, settings, seed)}.pt"
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    cached = path.is_file()
    if rank == 0 and not cached:
        start = time.perf_counter()
        embeddings = train_metapath2vec(data, metapath, settings, seed, progress=progress)
        save_checkpoint({"embeddings": embeddings, "seconds": time.perf_counter() - start}, path)
    if dist:
        torch.distributed.barrier()
    stored = load_checkpoint(path)
    if record is not None:
        record.update(seconds=stored.get("seconds"), cached=cached)
    return stored["embeddings"]
