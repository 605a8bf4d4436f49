"""Graph transforms on PyG ``HeteroData``: reverse relations, symmetrisation, features for
featureless types, and removal of relation types that merely repeat another one reversed."""
from __future__ import annotations

import math
import zlib

import torch
from torch_geometric.data import HeteroData

EdgeType = tuple[str, str, str]
REV = "rev_"


def reverse_edge_type(edge_type: EdgeType) -> EdgeType:
    """PyG's naming: ``(a, r, b) -> (b, rev_r, a)`` and back."""
    src, rel, dst = edge_type
    rel = rel[len(REV):] if rel.startswith(REV) else REV + rel
    return (dst, rel, src)


def _edge_keys(edge_index: torch.Tensor, num_dst: int) -> torch.Tensor:
    return torch.unique(edge_index[0] * num_dst + edge_index[1])


def find_duplicate_reverses(data: HeteroData) -> dict[EdgeType, EdgeType]:
    """Relations whose edges are exactly another relation's edges reversed.

    Returns ``{dropped: kept}``, keeping the earlier relation of each pair. HGB stores both
    directions of every link as separate link types; RpHGNN drops one of each pair before adding its
    own reverses so that no relation is counted twice. Same-type relations count too (ACM's ``ref``
    is ``cite`` transposed).
    """
    out: dict[EdgeType, EdgeType] = {}
    types = list(data.edge_types)
    for i, a in enumerate(types):
        if a in out:
            continue
        for b in types[i + 1:]:
            if b in out or (b[0], b[2]) != (a[2], a[0]):
                continue
            ea, eb = data[a].edge_index, data[b].edge_index
            if ea.size(1) != eb.size(1):
                continue
            n_dst = data[a[2]].num_nodes
            if torch.equal(_edge_keys(ea, n_dst), _edge_keys(eb.flip(0), n_dst)):
                out[b] = a
                break
    return out


def drop_duplicate_reverses(data: HeteroData) -> HeteroData:
    """Delete the relations found by :func:`find_duplicate_reverses` (in place; returns ``data``)."""
    for et in find_duplicate_reverses(data):
        del data[et]
    return data


def has_reverse(data: HeteroData, edge_type: EdgeType) -> bool:
    """Whether a relation's reverse is already present, by PyG naming or by content."""
    if reverse_edge_type(edge_type) in data.edge_types:
        return True
    src, _, dst = edge_type
    ei = data[edge_type].edge_index
    n_dst = data[dst].num_nodes
    for other in data.edge_types:
        if other != edge_type and (other[0], other[2]) == (dst, src) and \
                data[other].num_edges == ei.size(1) and torch.equal(
                    _edge_keys(ei, n_dst), _edge_keys(data[other].edge_index.flip(0), n_dst)):
            return True
    return False


def add_reverse(data: HeteroData, symmetrise_same_type: bool = True,
                only_missing: bool = False) -> HeteroData:
    """Add ``(dst, rev_rel, src)`` for every relation (in place; returns ``data``).

    Same-type relations (``paper-cites-paper``) are made symmetric instead when
    ``symmetrise_same_type`` is set, as PyG's ``ToUndirected`` and RpHGNN's preprocessing do.
    With ``only_missing``, relations whose reverse is already stored (HGB keeps both directions as
    separate link types) are left alone, so no relation is counted twice. Edge weights travel with
    their edges.
    """
    for et in list(data.edge_types):
        store = data[et]
        src, _, dst = et
        if only_missing and has_reverse(data, et):
            continue
        if src == dst and symmetrise_same_type:
            symmetrise(data, et)
            continue
        rev = reverse_edge_type(et)
        if rev in data.edge_types:
            continue
        data[rev].edge_index = store.edge_index.flip(0)
        if "edge_weight" in store:
            data[rev].edge_weight = store.edge_weight
    return data


def symmetrise(data: HeteroData, edge_type: EdgeType) -> HeteroData:
    """Make a same-type relation symmetric: union with its transpose, duplicates removed."""
    store = data[edge_type]
    n = data[edge_type[0]].num_nodes
    ei = torch.cat([store.edge_index, store.edge_index.flip(0)], dim=1)
    keys = ei[0] * n + ei[1]
    if "edge_weight" in store:
        w = torch.cat([store.edge_weight, store.edge_weight])
        keys, order = torch.sort(keys, stable=True)
        first = torch.ones_like(keys, dtype=torch.bool)
        first[1:] = keys[1:] != keys[:-1]
        store.edge_weight = w[order][first]
        keys = keys[first]
    else:
        keys = torch.unique(keys)
    store.edge_index = torch.stack([keys // n, keys % n])
    return data


def drop_empty_node_types(data: HeteroData, keep: set[str] | None = None) -> list[str]:
    """Remove the node types with no nodes (except those in ``keep``), and their relations, which
    can have no edges (in place). A type with no nodes adds nothing to any model here, but would
    give its encoder an input of width 0 (node ids of no nodes). Returns the removed types."""
    keep = keep or set()
    empty = [t for t in data.node_types if data[t].num_nodes == 0 and t not in keep]
    for et in list(data.edge_types):
        if et[0] in empty or et[2] in empty:
            del data[et]
    for t in empty:
        del data[t]
    return empty


def neighbour_mean_features(data: HeteroData, node_types: list[str] | None = None) -> list[str]:
    """Give featureless types the mean of their featured in-neighbours' features (in place), as
    H2GB's mag-year does for ogbn-mag (authors and fields: their papers' mean; institutions: their
    authors' mean, once authors have features). Rounds repeat while a type gains features: in a
    round a featureless type averages every neighbour, over every relation into it, from types
    that have float features of one width. A node without such neighbours gets zeros. Returns the
    types still without features."""
    todo = [t for t in (node_types if node_types is not None else data.node_types)
            if "x" not in data[t]]
    while todo:
        featured = {t: data[t].x for t in data.node_types
                    if "x" in data[t] and data[t].x.is_floating_point()}
        done = []
        for t in todo:
            rels = [et for et in data.edge_types if et[2] == t and et[0] in featured]
            widths = {featured[et[0]].size(-1) for et in rels}
            if not rels or len(widths) != 1:
                continue
            n, width = data[t].num_nodes, widths.pop()
            total = torch.zeros(n, width, dtype=featured[rels[0][0]].dtype)
            count = torch.zeros(n, 1, dtype=total.dtype)
            for et in rels:
                src, dst = data[et].edge_index
                total.index_add_(0, dst, featured[et[0]][src])
                count.index_add_(0, dst, torch.ones(dst.numel(), 1, dtype=total.dtype))
            done.append((t, total / count.clamp(min=1)))
        if not done:
            break
        for t, x in done:
            data[t].x = x
        todo = [t for t in todo if t not in dict(done)]
    return todo


def random_features(data: HeteroData, dim: int, seed: int = 0,
                    node_types: list[str] | None = None) -> HeteroData:
    """Give featureless node types seeded Gaussian features scaled by ``1/sqrt(dim)``.

    RpHGNN's choice for featureless types (``add_random_feats``). Each type draws from its own
    generator, seeded from ``seed`` and the type's name, so adding a type does not change the others.
    """
    types = node_types if node_types is not None else [
        t for t in data.node_types if "x" not in data[t]
    ]
    for t in types:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(t.encode()))
        n = data[t].num_nodes
        data[t].x = torch.randn(n, dim, generator=gen) / math.sqrt(dim)
    return data
