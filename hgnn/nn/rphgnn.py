r"""RpHGNN's pre-computation (Hu, Hooi, He, TKDE 2024, arXiv 2310.14481), as a plain function.

RpHGNN propagates once, without gradients, and trains an MLP-like encoder
(:class:`~hgnn.nn.rphgnn_encoder.RpHGNNEncoder`) on the stored result. The propagation is
*propagate-then-update*, repeated ``K`` times (``num_hops``; ``squash_k`` in the official code).
Iteration ``k`` starts from per-type features :math:`x^{(k)}_\tau` (:math:`x^{(0)}` = the input
features) and computes, for every relation :math:`r: s \to d` of the graph (reverses included):

.. math::
    h^{\mathrm{odd}}_r &= D_r^{-1} A_r^\top\, x^{(k)}_s
        &&\in \mathbb{R}^{N_d \times d_s}\ \text{(1 hop, stored on } d)\\
    h^{\mathrm{even}}_r &= D_{r^{-1}}^{-1} A_{r^{-1}}^\top\, h^{\mathrm{odd}}_r
        &&\in \mathbb{R}^{N_s \times d_s}\ \text{(2 hops } s \to d \to s\text{, stored on } s)

(means within the relation, :math:`A_r` the ``[N_s, N_d]`` adjacency; this is the *even-odd
propagation scheme*). A node type's **groups** are the odd results of the relations entering it and
the even results of the relations leaving it, keyed ``(odd|even, relation)`` and sorted by (raw
relation, hop), where the raw relation of ``rev_r`` is ``r``.

*Collection*: the target type appends each group's tensor to that group's list, so after ``K``
iterations odd groups hold hops 1, 3, 5, ... and even groups hops 2, 4, 6, ...; with ``use_input`` the
raw target features are prepended to every even group (hop 0).

*Update* (Random Projection Squashing, ``squash_strategy="project_norm_sum"``): every type gets

.. math::
    x^{(k+1)}_\tau = \sum_{g \in \mathrm{groups}(\tau)}
        \frac{h_g P_g}{\lVert h_g P_g \rVert_2}, \qquad P_g \in \mathbb{R}^{d_g \times d_\tau},

with a freshly drawn sparse random matrix :math:`P_g` per group, type and iteration (see
:func:`sparse_random_projection`), row-wise L2 normalisation, and :math:`d_\tau` the type's *input*
width, so widths never grow with ``K``. The node's own features are not added (``squash_self=False``);
they come back through even groups only.

Expected graph preparation (what the official loader does, here ``hgnn.train.graph.prepare_graph``
with ``graph.drop_duplicate_reverses: true``, ``graph.add_reverse: all``,
``graph.featureless: random``):

* HGB stores each link in both directions as separate types: drop one of each pair first
  (:func:`hgnn.data.transforms.drop_duplicate_reverses`), or relations are counted twice;
* then add ``rev_<r>`` for every cross-type relation and make same-type relations symmetric
  (:func:`hgnn.data.transforms.add_reverse`); a same-type relation is its own reverse. Every
  relation must have a reverse in the graph (:attr:`RelationIndex.reverse`), else this raises;
* every node type needs float features ``x``; featureless types get random
  :math:`N(0, 1)/\sqrt{d}` features (:func:`hgnn.data.transforms.random_features`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import EdgeType, RelationIndex, relation_index
from hgnn.data.transforms import REV
from hgnn.nn.rphgnn_store import ColumnShards, HopStore
from hgnn.ops import segment_spmm
from hgnn.ops.segments import Segments
from hgnn.ops.typed import relation_csc

SQUASH_STRATEGIES = ("project_norm_sum", "norm_sum")
ROW_BLOCK = 16384  # rows per projection block: bounds the update's temporaries
EVEN_BLOCK = 4 * ROW_BLOCK  # rows of an even (2-hop) result alive at once


@dataclass(frozen=True)
class Group:
    """One group of the target type: ``hops`` stacked tensors of width ``width``.

    ``parity`` is ``"odd"`` (1-hop results of ``edge_type``, which enters the type) or ``"even"``
    (2-hop results of ``edge_type``, which leaves it).
    """

    key: str
    parity: str
    edge_type: EdgeType
    hops: int
    width: int


def group_key(parity: str, edge_type: EdgeType) -> str:
    """The string key of a group, e.g. ``"even:author__to__paper"``."""
    return f"{parity}:{'__'.join(edge_type)}"


def sparse_random_projection(d_in: int, d_out: int, s: float = 3.0,
                             generator: torch.Generator | None = None,
                             dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Achlioptas' sparse random projection matrix ``[d_in, d_out]``.

    Entries are :math:`+\sqrt{s}` and :math:`-\sqrt{s}` with probability :math:`1/(2s)` each and 0
    otherwise (``s = 3``: two thirds zeros), so :math:`E[P_{ij}] = 0`, :math:`E[P_{ij}^2] = 1` and
    :math:`E\lVert xP \rVert^2 = d_{out} \lVert x \rVert^2`. Drawn from ``generator`` (the global
    RNG when ``None``) as the official ``sp_3.0`` kernel: one uniform per entry, ``u < 1/(2s)`` gives
    the negative value and ``u >= 1 - 1/(2s)`` the positive one.
    """
    if s < 1.0:
        raise ValueError(f"sparsity s must be >= 1, got {s}")
    u = torch.rand(d_in, d_out, generator=generator)
    value = math.sqrt(s)
    p = torch.zeros(d_in, d_out, dtype=dtype)
    p.masked_fill_(u < 0.5 / s, -value)
    p.masked_fill_(u >= 1.0 - 0.5 / s, value)
    return p


def _raw_relation(index: RelationIndex, r: int) -> EdgeType:
    """The relation a reverse was made from (``rev_x`` -> ``x``); itself for an original relation.

    Unnamed pairs (matched by content) are represented by their earlier member.
    """
    et = index.edge_types[r]
    q = int(index.reverse[r])
    if q < 0 or q == r:
        return et
    other = index.edge_types[q]
    if et[1].startswith(REV) != other[1].startswith(REV):
        return other if et[1].startswith(REV) else et
    return index.edge_types[min(r, q)]


def check_reverses(index: RelationIndex) -> None:
    """Every relation needs its reverse in the graph for the even (2-hop) step."""
    missing = [index.edge_types[r] for r in range(index.num_relations) if int(index.reverse[r]) < 0]
    if missing:
        raise ValueError(
            f"RpHGNN needs the reverse of every relation; missing for {missing}. Prepare the graph "
            "with drop_duplicate_reverses and add_reverse (graph.add_reverse: all).")


def groups_by_type(index: RelationIndex) -> dict[str, list[tuple[str, int]]]:
    """Per node type, its groups as ``(parity, relation id)``, sorted by (raw relation, hop).

    Odd groups: relations entering the type; even groups: relations leaving it. The sort mirrors
    the official code's ``sorted(keys, key=(raw etype, k))``.
    """
    out: dict[str, list[tuple[str, int]]] = {t: [] for t in index.node_types}
    for r, (src, _, dst) in enumerate(index.edge_types):
        out[dst].append(("odd", r))
        out[src].append(("even", r))
    for items in out.values():
        items.sort(key=lambda item: (_raw_relation(index, item[1]), 1 if item[0] == "odd" else 2,
                                     index.edge_types[item[1]]))
    return out


def group_layout(index: RelationIndex, in_dims: dict[str, int], target: str, num_hops: int,
                 use_input: bool) -> list[Group]:
    """The target's groups, in order, with their hop counts and widths (metadata only).

    Both parities of relation ``r: s -> d`` carry ``s``'s width: odd results average ``s`` rows,
    even results average odd results back. Even groups hold ``num_hops + 1`` tensors with
    ``use_input``.
    """
    out = []
    for parity, r in groups_by_type(index)[target]:
        et = index.edge_types[r]
        hops = num_hops + (1 if use_input and parity == "even" else 0)
        out.append(Group(group_key(parity, et), parity, et, hops, int(in_dims[et[0]])))
    return out


def node_features(data: HeteroData) -> dict[str, Tensor]:
    """Each type's float features ``[N_t, d_t]``; raises if a type has none (RpHGNN propagates
    every type's features, so featureless types need e.g. ``graph.featureless: random``)."""
    out = {}
    for t in data.node_types:
        x = data[t].get("x")
        if x is None or not torch.is_floating_point(x) or x.dim() != 2:
            raise ValueError(
                f"RpHGNN needs float features [N, d] on every node type; '{t}' has "
                f"{'none' if x is None else f'{x.dtype} {list(x.shape)}'} (give featureless types "
                "random features: graph.featureless=random)")
        out[t] = x.float()
    return out


def _draw_projections(by_type: dict[str, list[tuple[str, int]]], index: RelationIndex,
                      in_dims: dict[str, int], s: float, generator: torch.Generator | None
                      ) -> dict[tuple[str, str, int], Tensor]:
    """One iteration's projections ``P[(type, parity, relation)]: [d_src(r), d_type]``, drawn in a
    fixed order (types, then their groups) so a seeded generator gives the same matrices however
    the propagation is scheduled."""
    out = {}
    for t in index.node_types:
        for parity, r in by_type[t]:
            width = in_dims[index.edge_types[r][0]]
            out[(t, parity, r)] = sparse_random_projection(width, in_dims[t], s, generator)
    return out


@torch.no_grad()
def rphgnn_precompute(data: HeteroData, target: str, num_hops: int, use_input: bool = False,
                      generator: torch.Generator | None = None, s: float = 3.0,
                      squash: str = "project_norm_sum", dtype: torch.dtype = torch.float16,
                      backend: str | None = None, store: str | Path | None = None
                      ) -> dict[str, Tensor]:
    r"""RpHGNN's propagate-then-update pre-computation (see the module docstring).

    The work is streamed relation by relation: for relation :math:`r` the odd result is computed,
    sent back along the reverse (even result), both are collected if they belong to the target and
    folded into the next features of their types (projection, L2 norm, running sum), and freed.
    Besides the output, memory holds two feature tables per type plus one relation's two results.

    Args:
        data: the prepared graph: every relation with its reverse, float ``x`` on every type.
        target: the node type to collect for.
        num_hops: ``K``, the number of propagate-then-update iterations (``squash_k``).
        use_input: prepend the raw target features to every even group (hop 0).
        generator: source of the random projections (the global RNG when ``None``); a seeded
            generator makes the result deterministic.
        s: sparsity of the projections (``--rps sp_3.0``).
        squash: ``"project_norm_sum"`` (RpHGNN) or ``"norm_sum"`` (no projection; only for graphs
            whose groups already have their type's width, e.g. for testing).
        dtype: storage type of the result (the official code stores float16).
        backend: :mod:`hgnn.ops` backend for the aggregations.
        store: a directory: write the groups there as float16 ``.npy`` files and return read-only
            memory maps of them (for graphs whose result does not fit in RAM, e.g. ogbn-mag).

    Returns ``{group key: [N_target, hops, d_g]}`` in :func:`group_layout` order; odd groups hold
    hops 1, 3, ..., 2K-1, even groups (hop 0 with ``use_input``,) 2, 4, ..., 2K.
    """
    if num_hops < 1:
        raise ValueError(f"num_hops must be >= 1, got {num_hops}")
    if squash not in SQUASH_STRATEGIES:
        raise ValueError(f"squash must be one of {SQUASH_STRATEGIES}, got {squash!r}")
    index = relation_index(data)
    check_reverses(index)
    x_full = node_features(data)
    if target not in x_full:
        raise ValueError(f"unknown target type '{target}'")
    in_dims = {t: v.size(1) for t, v in x_full.items()}
    if squash == "norm_sum":
        for src, _, dst in index.edge_types:
            if in_dims[src] != in_dims[dst]:
                raise ValueError(f"squash 'norm_sum' needs equal widths along every relation; "
                                 f"'{src}' has {in_dims[src]}, '{dst}' {in_dims[dst]}")
    shards = ColumnShards.from_process_group(in_dims)
    # This rank's columns of every type (all of them in a single process).
    x = {t: v[:, slice(*shards.columns(t))].contiguous() for t, v in x_full.items()}
    del x_full
    by_type = groups_by_type(index)
    layout = group_layout(index, in_dims, target, num_hops, use_input)
    sink = HopStore(layout, x[target].size(0), dtype, store, shards)
    if use_input:
        for g in layout:
            if g.parity == "even":
                sink.add(g.key, x[target].to(dtype), *shards.columns(target))

    for k in range(num_hops):
        update = k < num_hops - 1  # the last update would feed an iteration that does not happen
        proj = _draw_projections(by_type, index, in_dims, s, generator) \
            if update and squash == "project_norm_sum" else {}
        new_x = {t: torch.zeros_like(v) for t, v in x.items()} if update else {}
        touched: set[str] = set()
        for r, et in enumerate(index.edge_types):
            src, _, dst = et
            # Odd: one hop along r. Even: the odd result goes back along r's reverse. Only this
            # rank's columns of src are aggregated: mean aggregation keeps columns apart.
            odd = _aggregate(x[src], relation_csc(index, r), backend)
            back = relation_csc(index, int(index.reverse[r]))
            # The even result is made, used and dropped in row blocks: odd plus one block of it.
            blocks = [(None, 0, odd.size(0))] + [
                (back, a, min(a + EVEN_BLOCK, back.num_segments))
                for a in range(0, back.num_segments, EVEN_BLOCK)]
            for seg, a, b in blocks:
                parity, t = ("odd", dst) if seg is None else ("even", src)
                h = odd if seg is None else _aggregate(odd, _segment_rows(seg, a, b), backend)
                if t == target:
                    sink.add(group_key(parity, et), h.to(dtype), *shards.columns(src), row0=a,
                             last=b == (odd.size(0) if seg is None else seg.num_segments))
                if update:
                    _fold_in(new_x[t], h, proj.get((t, parity, r)), shards, src, t, row0=a)
                    touched.add(t)
                del h
            del odd
        if update:
            # A type in no relation keeps its features (they can never reach the target).
            x = {t: new_x[t] if t in touched else x[t] for t in index.node_types}
    return sink.result()


def _aggregate(x: Tensor, seg, backend: str | None) -> Tensor:
    if x.size(1) == 0:  # a rank may own no column of a narrow type
        return x.new_zeros(seg.num_segments, 0)
    return segment_spmm(x, seg, None, "mean", backend)


def _segment_rows(seg: Segments, a: int, b: int) -> Segments:
    """Segments ``a .. b`` of ``seg`` alone (same source table)."""
    lo, hi = int(seg.ptr[a]), int(seg.ptr[b])
    return Segments(seg.ptr[a:b + 1] - lo, seg.index[lo:hi], seg.num_src)


def _fold_in(acc: Tensor, h: Tensor, proj: Tensor | None, shards: ColumnShards, src: str,
             t: str, row0: int = 0) -> None:
    """``acc[row0:] += normalize(h @ proj)`` on this rank's columns of ``t``, one block of rows at a
    time.

    ``h`` holds this rank's columns of ``src``; each row block is completed across ranks, projected
    chunk by chunk (64 output columns per GEMM) and L2-normalised with the squared norms of all
    chunks summed in chunk order, so the arithmetic never depends on the number of ranks.
    ``proj=None`` is the identity (``squash="norm_sum"``).
    """
    chunks = shards.chunks(t)
    lo = shards.columns(t)[0]
    for start in range(0, h.size(0), ROW_BLOCK):
        rows = slice(start, min(start + ROW_BLOCK, h.size(0)))
        block = shards.gather_columns(h[rows], src)
        ys = [block @ proj[:, a:b].contiguous() if proj is not None
              else block[:, a:b].contiguous() for a, b in chunks]
        sq = torch.stack([(y * y).sum(1) for y in ys], 1) if ys else block.new_zeros(block.size(0), 0)
        sq = shards.gather_chunks(sq, t)
        total = sq[:, 0].clone()
        for c in range(1, sq.size(1)):
            total += sq[:, c]
        scale = 1.0 / total.sqrt_().clamp_min_(1e-12)
        out_rows = slice(row0 + rows.start, row0 + rows.stop)
        for (a, b), y in zip(chunks, ys, strict=True):
            acc[out_rows, a - lo:b - lo] += y * scale[:, None]
