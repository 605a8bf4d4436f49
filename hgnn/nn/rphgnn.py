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
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import EdgeType, RelationIndex, relation_index
from hgnn.data.transforms import REV
from hgnn.ops import segment_spmm
from hgnn.ops.typed import relation_csc

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


class _HopStore:
    """Where the target's groups go: preallocated ``[N, hops, d]`` tensors in memory, or one
    ``<key>.npy`` float16 file per group laid out ``[hops, N, d]``, appended hop by hop with plain
    file writes (so the result never has to fit in RAM and the page cache, not the process, holds
    it) and reopened as read-only memory maps viewed as ``[N, hops, d]``."""

    def __init__(self, layout: list[Group], num_rows: int, dtype: torch.dtype,
                 path: str | Path | None) -> None:
        self.layout, self.dtype, self.filled = layout, dtype, {g.key: 0 for g in layout}
        self.path = Path(path) if path is not None else None
        self.files, self.tensors = {}, {}
        if self.path is None:
            self.tensors = {g.key: torch.empty(num_rows, g.hops, g.width, dtype=dtype)
                            for g in layout}
            return
        if dtype != torch.float16:
            raise ValueError(f"an on-disk store holds float16, not {dtype}")
        self.path.mkdir(parents=True, exist_ok=True)
        for g in layout:
            f = open(self._partial(g.key), "wb")  # noqa: SIM115 - closed in result()
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f2", "fortran_order": False, "shape": (g.hops, num_rows, g.width)})
            self.files[g.key] = f

    def _file(self, key: str) -> Path:
        return self.path / (key.replace(":", "-") + ".npy")

    def _partial(self, key: str) -> Path:
        # Written aside and renamed when complete: an interrupted run leaves no truncated group,
        # and maps of an earlier result keep their (replaced) file.
        return self._file(key).with_suffix(".npy.partial")

    def add(self, key: str, h: Tensor) -> None:
        hop = self.filled[key]
        if self.path is None:
            self.tensors[key][:, hop] = h
        else:
            self.files[key].write(h.to(torch.float16).contiguous().numpy().tobytes())
        self.filled[key] = hop + 1

    def result(self) -> dict[str, Tensor]:
        if self.path is None:
            return self.tensors
        out = {}
        for g in self.layout:
            self.files[g.key].close()
            os.replace(self._partial(g.key), self._file(g.key))
            array = np.load(self._file(g.key), mmap_mode="r")
            with warnings.catch_warnings():  # read-only map: the trainer only reads rows
                warnings.simplefilter("ignore", UserWarning)
                out[g.key] = torch.from_numpy(array).permute(1, 0, 2)
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
    x = node_features(data)
    if target not in x:
        raise ValueError(f"unknown target type '{target}'")
    in_dims = {t: v.size(1) for t, v in x.items()}
    by_type = groups_by_type(index)
    layout = group_layout(index, in_dims, target, num_hops, use_input)
    sink = _HopStore(layout, x[target].size(0), dtype, store)
    if use_input:
        for g in layout:
            if g.parity == "even":
                sink.add(g.key, x[target].to(dtype))

    for k in range(num_hops):
        update = k < num_hops - 1  # the last update would feed an iteration that does not happen
        proj = _draw_projections(by_type, index, in_dims, s, generator) \
            if update and squash == "project_norm_sum" else {}
        new_x: dict[str, Tensor] = {}
        for r, et in enumerate(index.edge_types):
            src, _, dst = et
            # Odd: one hop along r. Even: the odd result goes back along r's reverse.
            odd = segment_spmm(x[src], relation_csc(index, r), None, "mean", backend)
            even = segment_spmm(odd, relation_csc(index, int(index.reverse[r])), None, "mean",
                                backend)
            for parity, h, t in (("odd", odd, dst), ("even", even, src)):
                if t == target:
                    sink.add(group_key(parity, et), h.to(dtype))
                if not update:
                    continue
                if squash == "project_norm_sum":
                    h = h @ proj[(t, parity, r)]
                elif h.size(1) != in_dims[t]:
                    raise ValueError(f"squash '{squash}' needs groups of the type's width "
                                     f"{in_dims[t]}, got {h.size(1)}")
                h = F.normalize(h, dim=-1)
                if t in new_x:
                    new_x[t].add_(h)
                else:
                    new_x[t] = h  # F.normalize returned a fresh tensor: safe to add into
            del odd, even
        if update:
            # A type in no relation keeps its features (they can never reach the target).
            x = {t: new_x.get(t, x[t]) for t in index.node_types}
    return sink.result()
