"""Typed (relation-aware) aggregation on top of the segment ops.

All node types' rows are stacked into one source table (``offset[t]`` = first row of type ``t``),
so every relation's edges become one segmented edge list and one kernel launch covers all
relations. Two segment layouts are built from a :class:`RelationIndex` and cached on it:

* relation-major: one segment per (relation, destination) (``index.col_ptr``), for per-relation
  results (R-HGNN, RpHGNN);
* destination-major: one segment per destination node with the in-edges of all its relations, for
  results summed across relations (RGCN, HGT).

When node types have different widths nothing can be stacked; :func:`per_relation_aggregate` then
runs one fused op per relation over that relation's own CSC (:func:`relation_csc`), as RpHGNN needs.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from hgnn.data.relation_index import EdgeType, RelationIndex
from hgnn.ops import segment_matmul, segment_spmm
from hgnn.ops.segments import Segments


def node_offsets(index: RelationIndex) -> Tensor:
    """``[T + 1]``: first row of each node type in the stacked table."""
    return torch.cat([torch.zeros(1, dtype=torch.long), index.num_nodes.cumsum(0)])


def _edge_relation(index: RelationIndex) -> Tensor:
    return torch.repeat_interleave(torch.arange(index.num_relations), index.rel_ptr.diff())


def relation_segments(index: RelationIndex, source: str = "type") -> Segments:
    """Relation-major segments. ``source="type"``: rows of the stacked node table;
    ``source="relation"``: rows of a per-relation source table (``src_seg_offset[r] + src``)."""
    key = f"_rel_segments_{source}"
    cached = index.__dict__.get(key)
    if cached is None:
        rel = _edge_relation(index)
        if source == "type":
            src = node_offsets(index)[index.src_type[rel]] + index.src
            num_src = int(index.num_nodes.sum())
        else:
            src = index.src_seg_offset[rel] + index.src
            num_src = int(index.src_seg_offset[-1])
        cached = Segments(index.col_ptr, src, num_src)
        index.__dict__[key] = cached
    return cached


def destination_segments(index: RelationIndex, source: str = "type") -> tuple[Segments, Tensor]:
    """Destination-major segments over all node types (one per node of the stacked table) and the
    permutation from their edge order to the RelationIndex's (to carry edge weights along)."""
    key = f"_dst_segments_{source}"
    cached = index.__dict__.get(key)
    if cached is None:
        rel = _edge_relation(index)
        offsets = node_offsets(index)
        dst = offsets[index.dst_type[rel]] + index.dst
        order = torch.sort(dst * max(index.num_relations, 1) + rel, stable=True).indices
        n = int(index.num_nodes.sum())
        ptr = torch.zeros(n + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(dst, minlength=n), 0, out=ptr[1:])
        base = relation_segments(index, source)
        cached = (Segments(ptr, base.index[order], base.num_src), order)
        index.__dict__[key] = cached
    return cached


def stack(x_dict: dict[str, Tensor], index: RelationIndex) -> Tensor:
    """One table of all node types' rows, in ``index.node_types`` order."""
    width = {x.shape[1:] for x in x_dict.values()}
    if len(width) != 1:
        raise ValueError(f"all node types need the same feature shape to be stacked, got {width}")
    shape = width.pop()
    ref = next(iter(x_dict.values()))
    return torch.cat([x_dict[t] if t in x_dict else ref.new_zeros((int(n),) + tuple(shape))
                      for t, n in zip(index.node_types, index.num_nodes.tolist(), strict=True)])


def unstack(table: Tensor, index: RelationIndex) -> dict[str, Tensor]:
    return dict(zip(index.node_types, torch.split(table, index.num_nodes.tolist()), strict=True))


def _mean_weights(index: RelationIndex, edge_weight: Tensor | None) -> Tensor:
    """Per-edge 1/deg_r(dst) (times the edge weight): a mean within each relation."""
    deg = index.col_ptr.diff().clamp(min=1)
    rel = _edge_relation(index)
    w = 1.0 / deg[index.seg_offset[rel] + index.dst].double()
    return w if edge_weight is None else w.to(edge_weight.device) * edge_weight.double()


def _destination_weights(index: RelationIndex, reduce: str, edge_weight: Tensor | None,
                         order: Tensor, like: Tensor) -> Tensor | None:
    """Per-edge weights of the destination-major segments whose edge order is ``order``: 1/deg_r
    for a mean within each relation, times ``edge_weight``; on ``like``'s device and dtype. Without
    edge weights they depend on the graph alone and are cached on the index: a full-batch model
    asks for the same ones in every forward, and each recomputation costs a CPU pass over the edges
    plus, on a GPU, a host-to-device copy."""
    if reduce != "mean":
        return None if edge_weight is None else edge_weight.double()[order].to(like.device, like.dtype)
    if edge_weight is not None:
        return _mean_weights(index, edge_weight)[order].to(like.device, like.dtype)
    cache = index.__dict__.setdefault("_destination_weights", {})
    key = (id(order), like.device, like.dtype)  # ``order`` is cached on the index too
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = _mean_weights(index, None)[order].to(like.device, like.dtype)
    return hit


def typed_aggregate(x_dict: dict[str, Tensor], index: RelationIndex, reduce: str = "mean",
                    per_relation: bool = True, edge_weight: Tensor | None = None,
                    backend: str | None = None) -> dict:
    """Aggregate source features into destinations, relation by relation.

    Returns ``{edge_type: [N_dst, F]}`` (``per_relation``: one result per relation, as R-HGNN and
    RpHGNN need) or ``{node_type: [N, F]}`` with the per-relation results summed across each
    type's incoming relations (``reduce`` ``"sum"``/``"mean"`` only). ``edge_weight`` is ``[E]`` in
    the RelationIndex's (CSC) edge order.
    """
    table = stack(x_dict, index)
    if per_relation:
        out = segment_spmm(table, relation_segments(index), edge_weight, reduce, backend)
        parts = torch.split(out, index.seg_offset.diff().tolist())
        return dict(zip(index.edge_types, parts, strict=True))
    if reduce == "max":
        raise ValueError("reduce='max' is per relation only; use per_relation=True")
    seg, order = destination_segments(index)
    w = _destination_weights(index, reduce, edge_weight, order, table)
    return unstack(segment_spmm(table, seg, w, "sum", backend), index)


def typed_linear_aggregate(x_dict: dict[str, Tensor], index: RelationIndex, weight: Tensor,
                           reduce: str = "mean", edge_weight: Tensor | None = None,
                           order: str = "auto", backend: str | None = None) -> dict[str, Tensor]:
    r"""RGCN's message passing: :math:`h_v = \sum_r \mathrm{reduce}_{u \in N_r(v)} x_u W_r`.

    ``weight`` is ``[R, F_in, F_out]`` in ``index.edge_types`` order; ``reduce`` is ``"mean"``
    (within each relation) or ``"sum"``. No per-edge transformed tensor is built. ``order``:

    * ``"transform_first"``: ``Y_r = X_{src(r)} W_r`` for every relation, then one fused
      aggregation of the ``Y`` rows (cost ``sum_r N_src(r) F_in F_out + E F_out``);
    * ``"aggregate_first"``: aggregate ``X`` per relation, then one matmul per relation on its
      destination slots (cost ``E F_in + sum_r N_dst(r) F_in F_out``);
    * ``"auto"``: whichever of the two costs less.

    Returns ``{node_type: [N, F_out]}`` for every node type (zeros where nothing arrives).
    """
    f_in, f_out = weight.shape[1], weight.shape[2]
    n_src = index.num_nodes[index.src_type].double()
    n_dst = index.num_nodes[index.dst_type].double()
    e = float(index.num_edges)
    if order == "auto":
        first = float((n_src * f_in * f_out).sum()) + e * f_out
        later = e * f_in + float((n_dst * f_in * f_out).sum())
        order = "transform_first" if first <= later else "aggregate_first"
    ref = next(iter(x_dict.values()))
    if order == "transform_first":
        table = torch.cat([x_dict[t] @ weight[r] for r, (t, _, _) in enumerate(index.edge_types)]) \
            if index.num_relations else ref.new_zeros(0, f_out)
        seg, perm = destination_segments(index, source="relation")
        w = _destination_weights(index, reduce, edge_weight, perm, table)
        return unstack(segment_spmm(table, seg, w, "sum", backend), index)
    agg = segment_spmm(stack(x_dict, index), relation_segments(index), edge_weight, reduce,
                       backend)
    slots = segment_matmul(agg, index.seg_offset, weight)
    out = {t: ref.new_zeros(int(n), f_out)
           for t, n in zip(index.node_types, index.num_nodes.tolist(), strict=True)}
    for r, (_, _, d) in enumerate(index.edge_types):
        out[d] = out[d] + slots[int(index.seg_offset[r]):int(index.seg_offset[r + 1])]
    return out


_INDEX_CACHE: OrderedDict = OrderedDict()
T = TypeVar("T")


def edges_key(edge_index_dict: dict[EdgeType, Tensor], num_nodes: dict[str, int]) -> tuple | None:
    """A cache key for a graph given as edge tensors: each tensor's identity, version and shape.
    A cache using it must hold the tensors while the entry lives, so that their ids are not reused.
    None when a tensor has no version counter (made under ``torch.inference_mode``): an in-place
    edit could not be told apart, so such a graph is not cached."""
    if any(ei.is_inference() for ei in edge_index_dict.values()):
        return None
    return tuple((et, id(ei), ei._version, tuple(ei.shape)) for et, ei in edge_index_dict.items()) \
        + tuple(sorted(num_nodes.items()))


def cached_by_edges(cache: OrderedDict, edge_index_dict: dict[EdgeType, Tensor],
                    num_nodes: dict[str, int], build: Callable[[], T], extra: tuple = (),
                    size: int = 4) -> T:
    """``build()``, memoised in the LRU ``cache`` (``size`` entries) under :func:`edges_key` plus
    ``extra``. Each entry holds the edge tensors, so their ids cannot be reused while it lives."""
    key = edges_key(edge_index_dict, num_nodes)
    if key is None:
        return build()
    key = key + extra
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
        return hit[0]
    value = build()
    cache[key] = (value, list(edge_index_dict.values()))
    while len(cache) > size:
        cache.popitem(last=False)
    return value


def index_for(edge_index_dict: dict[EdgeType, Tensor],
              num_nodes: dict[str, int]) -> RelationIndex:
    """A RelationIndex for PyG-style inputs, cached while the same edge tensors come back (a
    full-batch model sees one graph every epoch). Holds the last 4 graphs."""
    return cached_by_edges(_INDEX_CACHE, edge_index_dict, num_nodes,
                           lambda: RelationIndex.from_edge_index_dict(edge_index_dict, num_nodes))


def relation_csc(index: RelationIndex, r: int) -> Segments:
    """Relation ``r``'s own CSC as :class:`Segments`: one segment per node of ``dst_type[r]`` over
    the rows of ``src_type[r]``'s table (not the stacked one), cached on the index."""
    cache = index.__dict__.setdefault("_relation_csc", {})
    seg = cache.get(r)
    if seg is None:
        a, b = int(index.rel_ptr[r]), int(index.rel_ptr[r + 1])
        lo, hi = int(index.seg_offset[r]), int(index.seg_offset[r + 1])
        seg = Segments(index.col_ptr[lo:hi + 1] - a, index.src[a:b],
                       int(index.num_nodes[index.src_type[r]]))
        cache[r] = seg
    return seg


def per_relation_aggregate(x_dict: dict, index: RelationIndex, reduce: str = "mean",
                           backend: str | None = None, edge_types: list[EdgeType] | None = None,
                           edge_weight: Tensor | None = None) -> dict[EdgeType, Tensor]:
    r"""Aggregate along each relation separately, for node types of different feature widths.

    .. math::
        h_r[v] = \mathrm{reduce}_{u \in N_r(v)}\; x_{\mathrm{src}(r)}[u]
        \qquad(\texttt{mean}: h_r = D_r^{-1} A_r^\top x_{\mathrm{src}(r)})

    Unlike :func:`typed_aggregate`, nothing is stacked across types: each relation runs one fused
    :func:`~hgnn.ops.segment_spmm` over its own CSC (:func:`relation_csc`), so every type keeps its
    own width.

    Args:
        x_dict: source tables. A node-type key ``t`` gives ``[N_t, F_t]`` to every relation leaving
            ``t``; an edge-type key ``r`` gives relation ``r`` its own ``[N_src(r), F]`` table
            (taking precedence), e.g. a per-relation result to be sent back along a reverse.
        index: the graph's :class:`RelationIndex`.
        reduce: ``"sum"``, ``"mean"`` (within the relation) or ``"max"``.
        edge_types: the relations to compute (default: every relation with a source table in
            ``x_dict``).
        edge_weight: optional ``[E]`` per-edge weights in the index's (CSC) edge order.

    Returns ``{edge_type: [N_dst(r), F]}``; destinations without in-edges get zeros.
    """
    if edge_types is None:
        edge_types = [et for et in index.edge_types if et in x_dict or et[0] in x_dict]
    out: dict[EdgeType, Tensor] = {}
    for et in edge_types:
        et = tuple(et)
        r = index.relation(et)
        x = x_dict[et] if et in x_dict else x_dict[et[0]]
        w = None
        if edge_weight is not None:
            w = edge_weight[int(index.rel_ptr[r]):int(index.rel_ptr[r + 1])].to(x.device, x.dtype)
        out[et] = segment_spmm(x, relation_csc(index, r), w, reduce, backend)
    return out
