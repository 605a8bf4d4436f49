"""RelationIndex: every relation of a heterogeneous graph in one relation-sorted CSC and CSR.

The fused kernels in :mod:`hgnn.ops` consume this instead of a dict of edge indices. Edges are
numbered relation by relation (``rel_ptr``); inside a relation they are sorted by destination, then
source (CSC). One global pointer array covers all relations::

    segment (r, v) = seg_offset[r] + v          v: local id of a node of dst_type[r]
    edges of (r, v) = col_ptr[segment] : col_ptr[segment + 1]

so a kernel walks all relations' destination segments in a single loop. The CSR side is the same
with sources, plus ``csr_perm`` mapping CSR positions to CSC edge ids (the transpose used by
backward passes). ``edge_id`` maps CSC positions back to each relation's original ``edge_index``
columns, which makes :meth:`RelationIndex.to_edge_index_dict` an exact round trip.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch_geometric.data import HeteroData

from hgnn.data.transforms import reverse_edge_type

EdgeType = tuple[str, str, str]


def _sort_by(major: torch.Tensor, minor: torch.Tensor, n_minor: int) -> torch.Tensor:
    return torch.sort(major * max(n_minor, 1) + minor, stable=True).indices


def _cat(xs: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long)


def _same_edges(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two edge lists hold the same (src, dst) pairs, ignoring order."""
    n = int(max(a.max(), b.max())) + 1 if a.numel() else 1
    return torch.equal(torch.sort(a[0] * n + a[1]).values, torch.sort(b[0] * n + b[1]).values)


def _ptr(ids: torch.Tensor, size: int) -> torch.Tensor:
    ptr = torch.zeros(size + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(ids, minlength=size), 0, out=ptr[1:])
    return ptr


@dataclass
class RelationIndex:
    """Relation-sorted CSC/CSR of all relations of a graph (see the module docstring).

    Shapes: ``R`` relations, ``E`` edges in all, ``S = sum_r N[dst_type[r]]``,
    ``T = sum_r N[src_type[r]]``.
    """

    node_types: list[str]
    edge_types: list[EdgeType]
    num_nodes: torch.Tensor      # [num node types]
    src_type: torch.Tensor       # [R] index into node_types
    dst_type: torch.Tensor       # [R]
    reverse: torch.Tensor        # [R] index of the reverse relation, -1 if none
    rel_ptr: torch.Tensor        # [R + 1] edge offsets per relation
    seg_offset: torch.Tensor     # [R + 1] offsets of each relation's destination segments
    col_ptr: torch.Tensor        # [S + 1] CSC pointer over all (relation, destination) segments
    src: torch.Tensor            # [E] CSC order: local source id
    dst: torch.Tensor            # [E] CSC order: local destination id
    edge_id: torch.Tensor        # [E] CSC position -> column in the relation's original edge_index
    src_seg_offset: torch.Tensor  # [R + 1]
    row_ptr: torch.Tensor        # [T + 1] CSR pointer over all (relation, source) segments
    csr_perm: torch.Tensor       # [E] CSR position -> CSC edge id
    edge_weight: torch.Tensor | None = None  # [E] CSC order, when the graph has weights

    @property
    def num_relations(self) -> int:
        return len(self.edge_types)

    @property
    def num_edges(self) -> int:
        return int(self.rel_ptr[-1])

    def relation(self, edge_type: EdgeType) -> int:
        return self.edge_types.index(tuple(edge_type))

    def in_degree(self, r: int) -> torch.Tensor:
        """In-degree of every node of ``dst_type[r]`` under relation ``r``."""
        return self.col_ptr[self.seg_offset[r] + 1 : self.seg_offset[r + 1] + 1] - \
            self.col_ptr[self.seg_offset[r] : self.seg_offset[r + 1]]

    def out_degree(self, r: int) -> torch.Tensor:
        """Out-degree of every node of ``src_type[r]`` under relation ``r``."""
        a, b = int(self.src_seg_offset[r]), int(self.src_seg_offset[r + 1])
        return self.row_ptr[a + 1 : b + 1] - self.row_ptr[a:b]

    def to_edge_index_dict(self) -> dict[EdgeType, torch.Tensor]:
        """Each relation's ``edge_index`` exactly as given to :meth:`from_data` (same order)."""
        out = {}
        for r, et in enumerate(self.edge_types):
            a, b = int(self.rel_ptr[r]), int(self.rel_ptr[r + 1])
            ei = torch.empty(2, b - a, dtype=torch.long)
            ei[:, self.edge_id[a:b]] = torch.stack([self.src[a:b], self.dst[a:b]])
            out[et] = ei
        return out

    def to(self, device: torch.device | str) -> RelationIndex:
        """A copy with every tensor on ``device``."""
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in kw.items():
            if isinstance(v, torch.Tensor):
                kw[k] = v.to(device)
        return RelationIndex(**kw)

    @classmethod
    def from_edge_index_dict(
        cls,
        edge_index_dict: dict[EdgeType, torch.Tensor],
        num_nodes_dict: dict[str, int],
        edge_weight_dict: dict[EdgeType, torch.Tensor] | None = None,
    ) -> RelationIndex:
        """Build from PyG-style dicts. Relation order is the dict's order.

        The index is built and kept on CPU whatever device the edges are on (a GPU's edges are
        copied once); the ops move the segments they need to the features' device
        (:meth:`hgnn.ops.Segments.on`)."""
        edge_index_dict = {et: check_edge_index(et, ei).cpu() for et, ei in edge_index_dict.items()}
        if edge_weight_dict:
            edge_weight_dict = {et: None if w is None else w.cpu()
                                for et, w in edge_weight_dict.items()}
        node_types = list(num_nodes_dict)
        type_id = {t: i for i, t in enumerate(node_types)}
        edge_types = [tuple(et) for et in edge_index_dict]
        num_nodes = torch.tensor([int(num_nodes_dict[t]) for t in node_types], dtype=torch.long)
        src_type = torch.tensor([type_id[et[0]] for et in edge_types], dtype=torch.long)
        dst_type = torch.tensor([type_id[et[2]] for et in edge_types], dtype=torch.long)
        n_dst = num_nodes[dst_type] if edge_types else torch.zeros(0, dtype=torch.long)
        n_src = num_nodes[src_type] if edge_types else torch.zeros(0, dtype=torch.long)
        seg_offset = torch.cat([torch.zeros(1, dtype=torch.long), n_dst.cumsum(0)])
        src_seg_offset = torch.cat([torch.zeros(1, dtype=torch.long), n_src.cumsum(0)])
        srcs, dsts, eids, segs, src_segs, weights = [], [], [], [], [], []
        has_weight = bool(edge_weight_dict) and any(w is not None for w in edge_weight_dict.values())
        sizes = []
        for r, et in enumerate(edge_types):
            ei = edge_index_dict[et].long()
            nd, ns = int(n_dst[r]), int(n_src[r])
            if ei.numel() and (ei[0].max() >= ns or ei[1].max() >= nd or ei.min() < 0):
                raise ValueError(f"edge_index of {et} has ids outside [0, {ns}) x [0, {nd})")
            order = _sort_by(ei[1], ei[0], ns)
            s, d = ei[0, order], ei[1, order]
            srcs.append(s)
            dsts.append(d)
            eids.append(order)
            segs.append(d + seg_offset[r])
            src_segs.append(s + src_seg_offset[r])
            sizes.append(ei.size(1))
            if has_weight:
                w = edge_weight_dict.get(et)
                weights.append(torch.ones(ei.size(1)) if w is None else w[order].float())
        seg_ids, src_seg_ids = _cat(segs), _cat(src_segs)
        rel_ptr = torch.zeros(len(edge_types) + 1, dtype=torch.long)
        rel_ptr[1:] = torch.tensor(sizes, dtype=torch.long).cumsum(0) if sizes else rel_ptr[1:]
        # CSR: sort CSC edge ids by (source segment, destination); stable keeps it deterministic.
        csr_perm = torch.sort(src_seg_ids, stable=True).indices
        reverse = torch.full((len(edge_types),), -1, dtype=torch.long)
        for r, et in enumerate(edge_types):
            rev = reverse_edge_type(et)
            if rev in edge_types:
                reverse[r] = edge_types.index(rev)
        for r, et in enumerate(edge_types):
            if reverse[r] >= 0:
                continue
            # Unnamed reverses (HGB stores each direction as its own link type): match by content.
            for q, other in enumerate(edge_types):
                if q != r and (other[0], other[2]) == (et[2], et[0]) and sizes[q] == sizes[r] and \
                        _same_edges(edge_index_dict[et], edge_index_dict[other].flip(0)):
                    reverse[r], reverse[q] = q, r
                    break
            else:
                if et[0] == et[2]:
                    reverse[r] = r  # a same-type relation serves as its own reverse
        return cls(
            node_types=node_types, edge_types=edge_types, num_nodes=num_nodes,
            src_type=src_type, dst_type=dst_type, reverse=reverse, rel_ptr=rel_ptr,
            seg_offset=seg_offset, col_ptr=_ptr(seg_ids, int(seg_offset[-1])),
            src=_cat(srcs), dst=_cat(dsts), edge_id=_cat(eids), src_seg_offset=src_seg_offset,
            row_ptr=_ptr(src_seg_ids, int(src_seg_offset[-1])), csr_perm=csr_perm,
            edge_weight=torch.cat(weights) if has_weight else None,
        )

    @classmethod
    def from_data(cls, data: HeteroData) -> RelationIndex:
        """Build from a ``HeteroData`` (its ``edge_index`` and optional ``edge_weight``)."""
        weights = {et: data[et].get("edge_weight") for et in data.edge_types}
        return cls.from_edge_index_dict(
            {et: data[et].edge_index for et in data.edge_types},
            {t: data[t].num_nodes for t in data.node_types},
            weights if any(w is not None for w in weights.values()) else None,
        )


def check_edge_index(name: object, edge_index: torch.Tensor, num_src: int | None = None,
                     num_dst: int | None = None) -> torch.Tensor:
    """``edge_index`` itself if it is an integer ``[2, E]`` tensor with sources in
    ``[0, num_src)`` and destinations in ``[0, num_dst)`` (bounds checked where given); otherwise
    a ValueError naming ``name`` (a transposed ``[E, 2]`` or float tensor would be read as other
    edges, and an id out of range would index outside a kernel's tables)."""
    if not isinstance(edge_index, torch.Tensor):
        raise ValueError(f"edge_index of {name} must be a tensor, got {type(edge_index).__name__}")
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise ValueError(f"edge_index of {name} must have an integer dtype, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index of {name} must have shape [2, num_edges], got "
                         f"{list(edge_index.shape)}"
                         + (" (transposed? use edge_index.t())" if edge_index.dim() == 2
                            and edge_index.size(1) == 2 else ""))
    if edge_index.numel() and (num_src is not None or num_dst is not None):
        low, src_max, dst_max = int(edge_index.min()), int(edge_index[0].max()), \
            int(edge_index[1].max())
        if low < 0 or (num_src is not None and src_max >= num_src) \
                or (num_dst is not None and dst_max >= num_dst):
            raise ValueError(f"edge_index of {name} has ids outside [0, {num_src}) x "
                             f"[0, {num_dst})")
    return edge_index


def _fingerprint(data: HeteroData) -> tuple[tuple | None, list[torch.Tensor]]:
    """A key of the graph's edge tensors (identity, version, shape) and those tensors; the key is
    None when one was made under ``torch.inference_mode`` (no version counter to guard it)."""
    parts, tensors = [], []
    for et in data.edge_types:
        ei = data[et].edge_index
        w = data[et].get("edge_weight")
        if ei.is_inference() or (w is not None and w.is_inference()):
            return None, []
        parts.append((et, id(ei), ei._version, tuple(ei.shape),
                      None if w is None else (id(w), w._version)))
        tensors += [ei] if w is None else [ei, w]
    parts.append(tuple((t, data[t].num_nodes) for t in data.node_types))
    return tuple(parts), tensors


def relation_index(data: HeteroData) -> RelationIndex:
    """The graph's :class:`RelationIndex`, built on first use and cached until its edges change."""
    key, held = _fingerprint(data)
    # Kept in the instance's __dict__ (not a store attribute) so it never travels into PyG's
    # batching or serialisation; the fingerprint guards against edges edited in place.
    hit = data.__dict__.get("_hgnn_relation_index")
    if key is not None and hit is not None and hit[0] == key:
        return hit[1]
    index = RelationIndex.from_data(data)
    if key is None:
        return index
    # The fingerprinted tensors stay referenced, so a replaced edge_index cannot be freed and its
    # id handed to the replacement (the same key for other edges).
    data.__dict__["_hgnn_relation_index"] = (key, index, held)
    return index
