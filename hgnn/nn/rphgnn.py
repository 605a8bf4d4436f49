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

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import EdgeType, RelationIndex, relation_index
from hgnn.data.transforms import REV
from hgnn.ops.typed import per_relation_aggregate

SQUASH_STRATEGIES = ("project_norm_sum", "norm_sum")


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


def _squash(h_list: list[Tensor], d_out: int, strategy: str, s: float,
            generator: torch.Generator | None) -> Tensor:
    """One type's update: the sum of its groups, each (projected to ``d_out`` and) L2-normalised."""
    new = None
    for h in h_list:
        if strategy == "project_norm_sum":
            h = h @ sparse_random_projection(h.size(1), d_out, s, generator, h.dtype)
        elif h.size(1) != d_out:
            raise ValueError(f"squash '{strategy}' needs groups of the type's width {d_out}, got "
                             f"{h.size(1)}")
        h = F.normalize(h, dim=-1)
        new = h if new is None else new.add_(h)
    return new


@torch.no_grad()
def rphgnn_precompute(data: HeteroData, target: str, num_hops: int, use_input: bool = False,
                      generator: torch.Generator | None = None, s: float = 3.0,
                      squash: str = "project_norm_sum", dtype: torch.dtype = torch.float16,
                      backend: str | None = None) -> dict[str, Tensor]:
    r"""RpHGNN's propagate-then-update pre-computation (see the module docstring).

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

    Returns ``{group key: [N_target, hops, d_g]}`` in :func:`group_layout` order; odd groups hold
    hops 1, 3, ..., 2K-1, even groups (hop 0 with ``use_input``,) 2, 4, ..., 2K.
    """
    if num_hops < 1:
        raise ValueError(f"num_hops must be >= 1, got {num_hops}")
    if squash not in SQUASH_STRATEGIES:
        raise ValueError(f"squash must be one of {SQUASH_STRATEGIES}, got {squash!r}")
    index = relation_index(data)
    check_reverses(index)
    x = node_features(data)
    if target not in x:
        raise ValueError(f"unknown target type '{target}'")
    in_dims = {t: v.size(1) for t, v in x.items()}
    edge_types = index.edge_types
    reverse = [edge_types[int(q)] for q in index.reverse]
    by_type = groups_by_type(index)
    layout = group_layout(index, in_dims, target, num_hops, use_input)
    collected: dict[str, list[Tensor]] = {g.key: [] for g in layout}
    if use_input:
        for g in layout:
            if g.parity == "even":
                collected[g.key].append(x[target].to(dtype))

    for k in range(num_hops):
        # Odd: one hop along every relation. Even: each odd result goes back along its reverse.
        odd = per_relation_aggregate(x, index, "mean", backend)
        back = per_relation_aggregate({rev: odd[et] for et, rev in zip(edge_types, reverse,
                                                                       strict=True)},
                                      index, "mean", backend, edge_types=reverse)
        even = {et: back[rev] for et, rev in zip(edge_types, reverse, strict=True)}
        results = {"odd": odd, "even": even}
        for g in layout:
            collected[g.key].append(results[g.parity][g.edge_type].to(dtype))
        if k == num_hops - 1:
            break  # the last update would only feed an iteration that does not happen
        new_x = {}
        for t in index.node_types:
            h_list = [results[parity][edge_types[r]] for parity, r in by_type[t]]
            # A type in no relation keeps its features (they can never reach the target).
            new_x[t] = _squash(h_list, in_dims[t], squash, s, generator) if h_list else x[t]
        x = new_x
    return {key: torch.stack(hs, dim=1) for key, hs in collected.items()}
