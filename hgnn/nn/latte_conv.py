r"""LATTE (Tran & Gao, arXiv 2009.08072): layer-stacked attention over meta-relations of growing order.

Direction convention. LATTE writes a meta-relation as a type sequence from its *head* (the node
that aggregates) to its *tail* (the nodes aggregated); its ``PA`` lets a paper aggregate from its
authors. hgnn's graphs (PyG's convention) send messages ``src -> dst`` along an edge type, so
LATTE's ``PA`` is the edge type ``(author, to, paper)``: the head is the destination, the tail the
source. A meta-relation here is a **chain of edge types** ``(e_1, ..., e_t)`` with
``dst(e_k) = src(e_{k+1})``, read in the direction messages flow: its tail is ``src(e_1)``, its
head ``dst(e_t)``, and its adjacency is :math:`A_m[\text{head}, \text{tail}]`. Its edge lists are
PyG-style ``[2, E]`` tensors (row 0 the tail/source, row 1 the head/destination). LATTE's join
``PA ∘ AP = PAP`` is ``((paper, to, author), (author, to, paper))`` here: the first hop first.
A type receives only along meta-relations that end at it, so a graph must list both directions
(``graph.add_reverse``), as LATTE's loaders do.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import check_edge_index
from hgnn.nn.graph_input import graph_input, warn_unknown_relations
from hgnn.nn.lazy import (
    LazyInputModule,
    as_width,
    is_lazy,
    linear,
    materialize_linear,
    per_type_widths,
    recorded_widths,
)
from hgnn.ops import segment_additive_attention, segment_softmax, segment_spmm
from hgnn.ops.segments import Segments
from hgnn.ops.typed import index_for, relation_csc

EdgeType = tuple[str, str, str]
MetaPath = tuple[EdgeType, ...]
NORMS = ("none", "layer", "batch")
PROXIMITY_WEIGHTS = ("attention", "given")


def as_metapath(key: EdgeType | MetaPath) -> MetaPath:
    """An edge type ``(src, rel, dst)`` as the order-1 meta-relation ``((src, rel, dst),)``; a
    chain of edge types is returned as a tuple of tuples."""
    if len(key) == 3 and all(isinstance(k, str) for k in key):
        return (tuple(key),)
    return tuple(tuple(e) for e in key)


def head_type(mp: MetaPath) -> str:
    """The aggregating type: the destination of the last edge type."""
    return mp[-1][2]


def tail_type(mp: MetaPath) -> str:
    """The aggregated type: the source of the first edge type."""
    return mp[0][0]


def metapath_name(mp: MetaPath) -> str:
    """``src__rel__dst`` for one edge type (hgnn's relation names), ``s1__r1__s2__r2__d2`` for a
    chain, in the direction messages flow."""
    parts = [mp[0][0]]
    for _src, rel, dst in mp:
        parts += [rel, dst]
    return "__".join(parts)


def join_metapaths(higher: list[MetaPath], first: list[MetaPath]) -> list[MetaPath]:
    """LATTE's ``join_metapaths``: every order-(t-1) meta-relation ``a`` extended at its tail by an
    order-1 relation ``b`` whose head is ``a``'s tail, i.e. the chain ``b + a`` (``a`` major, ``b``
    minor, as the official code orders them)."""
    return [b + a for a in higher for b in first if head_type(b) == tail_type(a)]


@dataclass
class LATTEDetails:
    """What one :class:`LATTEConv` forward computed besides its output, for the next layer's
    adjacency, the proximity loss and explanations. Per present meta-relation ``m``:

    * ``edge_index[m]`` ``[2, E]`` (tail, head), sorted by head then tail (the order used);
    * ``perm[m]`` ``[E]``: columns of the given ``edge_index`` in that order;
    * ``attention[m]`` ``[E, H]``: softmax attention before attention dropout;
    * ``score_l[m]`` ``[N_head, H]`` and ``score_r[m]`` ``[N_tail, H]``: :math:`\\alpha_l`, :math:`\\alpha_r`;
    * ``edge_weight[m]`` ``[E]`` (sorted order) when weights were given;

    and ``beta[t]`` ``[N_t, R_t + 1]`` per node type (slots in ``LATTEConv.slots(t)`` order).
    """

    edge_index: dict[MetaPath, Tensor] = field(default_factory=dict)
    perm: dict[MetaPath, Tensor] = field(default_factory=dict)
    attention: dict[MetaPath, Tensor] = field(default_factory=dict)
    score_l: dict[MetaPath, Tensor] = field(default_factory=dict)
    score_r: dict[MetaPath, Tensor] = field(default_factory=dict)
    edge_weight: dict[MetaPath, Tensor] = field(default_factory=dict)
    beta: dict[str, Tensor] = field(default_factory=dict)
    num_nodes: dict[str, int] = field(default_factory=dict)


def _lookup(d: dict, mp: MetaPath):
    """``d[mp]``, or ``d[edge_type]`` for an order-1 ``mp`` keyed by its edge type."""
    if mp in d:
        return d[mp]
    return d.get(mp[0]) if len(mp) == 1 else None


def _relation_edges(index, r: int, device: torch.device) -> tuple[Segments, Tensor, Tensor]:
    """Relation ``r``'s head segments, sorted ``[2, E]`` edges and their original columns, on
    ``device``; cached on the (cached) RelationIndex so the segments keep their transposes."""
    cache = index.__dict__.setdefault("_latte_edges", {})
    key = (r, str(device))
    hit = cache.get(key)
    if hit is None:
        seg = relation_csc(index, r)
        a, b = int(index.rel_ptr[r]), int(index.rel_ptr[r + 1])
        ei = torch.stack([index.src[a:b], index.dst[a:b]]).to(device)
        if seg.ptr.device != ei.device:
            seg = seg.to(ei.device)
        hit = cache[key] = (seg, ei, index.edge_id[a:b].to(device))
    return hit


def _head_segments(edge_index: Tensor, num_tail: int, num_head: int) -> tuple[Segments, Tensor]:
    """Segments with one segment per head node over the tail table, and the edge permutation."""
    key = edge_index[1] * max(num_tail, 1) + edge_index[0]
    if key.numel() > 1 and bool((key[1:] < key[:-1]).any()):
        perm = torch.sort(key, stable=True).indices
    else:
        perm = torch.arange(key.numel(), device=key.device)
    head = edge_index[1, perm]
    ptr = torch.zeros(num_head + 1, dtype=torch.long, device=edge_index.device)
    torch.cumsum(torch.bincount(head, minlength=num_head), 0, out=ptr[1:])
    return Segments(ptr, edge_index[0, perm], num_tail), perm


class LATTEConv(LazyInputModule):
    r"""One LATTE layer over the meta-relations of one order.

    For node type :math:`\tau` with input :math:`h_i` (``in_channels``), per head :math:`k`
    (``D = out_channels / heads``) and every meta-relation :math:`m` whose head type is
    :math:`\tau` and tail type :math:`\tau'`:

    .. math::
        l_i &= W^l_{\tau} h_i + b^l_\tau, \qquad r_j = W^r_{\tau'} h_j + b^r_{\tau'}
            \quad(\text{split into } H \text{ heads of } D) \\
        \alpha^l_{m}[i] &= \langle l_i, a^l_m\rangle, \qquad \alpha^r_m[j] = \langle r_j, a^r_m\rangle \\
        e^m_{ij} &= \kappa_m\, \mathrm{LeakyReLU}_{0.2}\big(\alpha^l_m[i] + \alpha^r_m[j]\big) \\
        \alpha^m_{ij} &= \mathrm{softmax}_{j \in N_m(i)}\big(e^m_{ij}\big), \qquad
        z^m_i = \big\Vert_k \sum_{j \in N_m(i)} \mathrm{dropout}(\alpha^m_{ij})\, r^k_j \\
        \beta_i &= \mathrm{softmax}\big(W^\beta_\tau h_i + b^\beta_\tau\big) \in \mathbb{R}^{R_\tau + 1} \\
        h'_i &= \mathrm{ReLU}\Big(\mathrm{norm}\Big(\sum_{m \to \tau} \beta_{i,m}\, z^m_i
            + \beta_{i,\mathrm{self}}\, l_i\Big)\Big)

    :math:`\kappa_m` is LATTE's learnable "sharpening" scalar (initialised to 1, unconstrained);
    :math:`W^\beta_\tau` is the official kernel-1 ``Conv1d`` written as a ``Linear`` (the same
    map). The self slot (last) stands in for self-loops; a meta-relation absent from the input, or a
    node without neighbours in it, contributes a zero slot that still takes its share of
    :math:`\beta`, as in the official code. A type that heads no meta-relation gets
    :math:`\mathrm{ReLU}(l_i)`.

    Aggregation runs on :mod:`hgnn.ops`, never building ``[E, F]`` message tensors: with attention
    weights needed (training with attention dropout, a following layer, the proximity loss,
    explanations) the ``[E, H]`` scores are softmaxed with :func:`~hgnn.ops.segment_softmax` and
    each head is reduced by a weighted :func:`~hgnn.ops.segment_spmm`; otherwise, when
    :math:`\kappa_m > 0`, :func:`~hgnn.ops.segment_additive_attention` fuses everything using
    :math:`\kappa\,\mathrm{LeakyReLU}(z) = \mathrm{LeakyReLU}(\kappa z)`.

    Args:
        in_channels: input width: one for every node type, or ``{node_type: width}`` (every type
            of ``node_types``); a width of ``-1`` is sized from the first forward that brings the
            type (PyG's lazy initialisation).
        out_channels: output width, divisible by ``heads``.
        node_types: every node type.
        metapaths: the meta-relations (edge types for order 1, chains of edge types above).
        heads: attention heads :math:`H`.
        attn_dropout: dropout on the attention weights :math:`\alpha`.
        negative_slope: LeakyReLU slope of the scores.
        norm: ``"none"``, ``"layer"`` or ``"batch"``, per node type, before the ReLU.

    Shapes: ``x_dict[t]`` ``[N_t, in_channels[t]]``; ``edge_index_dict[m]`` ``[2, E_m]`` (row 0 the
    tail/source, row 1 the head/destination), keyed by edge type or chain; output
    ``{t: [N_t, out_channels]}`` for every known type in ``x_dict``.
    """

    def __init__(self, in_channels: int | dict[str, int], out_channels: int, node_types: list[str],
                 metapaths: list[EdgeType | MetaPath], heads: int = 1, attn_dropout: float = 0.0,
                 negative_slope: float = 0.2, norm: str = "none") -> None:
        super().__init__()
        out_channels = as_width(out_channels, "LATTEConv's out_channels", lazy=False)
        widths = per_type_widths(in_channels, node_types, "LATTEConv's in_channels")
        if out_channels % heads:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by heads ({heads})")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.in_channels = dict(widths) if isinstance(in_channels, dict) else int(in_channels)
        self.out_channels, self.heads = out_channels, heads
        self.attn_dropout, self.negative_slope, self.norm_kind = attn_dropout, negative_slope, norm
        self.node_types = list(node_types)
        self.metapaths: list[MetaPath] = [as_metapath(m) for m in metapaths]
        self._position = {m: i for i, m in enumerate(self.metapaths)}
        unknown = {t for m in self.metapaths for t in (head_type(m), tail_type(m))} - set(node_types)
        if unknown:
            raise ValueError(f"meta-relations use node types not in node_types: {sorted(unknown)}")
        dim = out_channels // heads
        self.lin_l = nn.ModuleDict({t: linear(widths[t], out_channels) for t in node_types})
        self.lin_r = nn.ModuleDict({t: linear(widths[t], out_channels) for t in node_types})
        self.beta = nn.ModuleDict({t: linear(widths[t], len(self.head_metapaths(t)) + 1)
                                   for t in node_types})
        self.attn_l = nn.Parameter(torch.empty(len(self.metapaths), heads, dim))
        self.attn_r = nn.Parameter(torch.empty(len(self.metapaths), heads, dim))
        self.sharpening = nn.Parameter(torch.empty(len(self.metapaths)))
        if norm == "layer":
            self.norm = nn.ModuleDict({t: nn.LayerNorm(out_channels) for t in node_types})
        elif norm == "batch":
            self.norm = nn.ModuleDict({t: nn.BatchNorm1d(out_channels) for t in node_types})
        else:
            self.norm = None
        self.reset_parameters()

    def head_metapaths(self, node_type: str) -> list[MetaPath]:
        """The meta-relations that ``node_type`` aggregates along, in slot order."""
        return [m for m in self.metapaths if head_type(m) == node_type]

    def slots(self, node_type: str) -> list[str]:
        """Names of ``node_type``'s :math:`\\beta` slots: its meta-relations, then ``"self"``."""
        return [metapath_name(m) for m in self.head_metapaths(node_type)] + ["self"]

    def reset_parameters(self) -> None:
        """The official initialisation: Xavier-normal weights (ReLU gain for the transforms,
        LeakyReLU(0.2) gain for the attention vectors, gain 1 for :math:`W^\\beta`), PyTorch's
        default biases, sharpening 1. Lazily sized transforms are initialised when sized."""
        self._reset_transforms(list(self.node_types))
        leaky = nn.init.calculate_gain("leaky_relu", 0.2)
        with torch.no_grad():
            for i in range(len(self.metapaths)):
                nn.init.xavier_normal_(self.attn_l[i], gain=leaky)
                nn.init.xavier_normal_(self.attn_r[i], gain=leaky)
        nn.init.ones_(self.sharpening)
        if self.norm is not None:
            for m in self.norm.values():
                m.reset_parameters()

    def _reset_transforms(self, types: list[str]) -> None:
        relu = nn.init.calculate_gain("relu")
        for lin in [self.lin_l[t] for t in types] + [self.lin_r[t] for t in types]:
            if not is_lazy(lin.weight):
                lin.reset_parameters()
                nn.init.xavier_normal_(lin.weight, gain=relu)
        for lin in [self.beta[t] for t in types]:
            if not is_lazy(lin.weight):
                lin.reset_parameters()
                nn.init.xavier_normal_(lin.weight, gain=1.0)

    def sync_widths(self) -> None:
        self.in_channels = recorded_widths(
            self.in_channels, {t: lin.in_features for t, lin in self.lin_l.items()})

    def initialize(self, x_dict: dict[str, Tensor]) -> None:
        """Sizes and initialises the lazy transforms of the types in ``x_dict``."""
        sized = []
        for t, x in x_dict.items():
            if t in self.lin_l and is_lazy(self.lin_l[t].weight):
                for lins in (self.lin_l, self.lin_r, self.beta):
                    materialize_linear(lins[t], x.size(-1))
                sized.append(t)
        if sized:
            self._reset_transforms(sized)
            self.sync_widths()

    def _present(self, x_dict: dict[str, Tensor], edge_index_dict: dict,
                 heads: set[str]) -> dict[MetaPath, tuple[Segments, Tensor, Tensor]]:
        """Segments (one per head node), sorted edge_index and permutation of each present
        meta-relation. Order-1 relations use the cached CSC of :func:`hgnn.ops.typed.index_for`."""
        num_nodes = {t: x.size(0) for t, x in x_dict.items()}
        given = {}
        for key, ei in edge_index_dict.items():
            mp = as_metapath(key)
            if mp in self._position and head_type(mp) in heads and tail_type(mp) in x_dict:
                given[mp] = ei
        out: dict[MetaPath, tuple[Segments, Tensor, Tensor]] = {}
        first = {mp[0]: ei for mp, ei in given.items() if len(mp) == 1}
        if first:
            index = index_for(first, num_nodes)
            for r, et in enumerate(index.edge_types):
                out[(et,)] = _relation_edges(index, r, first[et].device)
        for mp, ei in given.items():
            if len(mp) > 1:
                n_tail, n_head = num_nodes[tail_type(mp)], num_nodes[head_type(mp)]
                # The kernels index without bounds checks: a bad chain id must stop here.
                check_edge_index(metapath_name(mp), ei, n_tail, n_head)
                seg, perm = _head_segments(ei, n_tail, n_head)
                out[mp] = (seg, ei[:, perm], perm)
        return {mp: out[mp] for mp in self.metapaths if mp in out}

    def forward(self, x_dict: dict[str, Tensor] | HeteroData, edge_index_dict: dict | None = None,
                edge_weight_dict: dict | None = None, return_attention_weights: bool = False,
                output_types: set[str] | None = None,
                ) -> dict[str, Tensor] | tuple[dict[str, Tensor], LATTEDetails]:
        """Returns ``{t: [N_t, out_channels]}``, and with ``return_attention_weights`` also the
        :class:`LATTEDetails`. ``edge_weight_dict`` (``[E_m]`` per meta-relation, in the given
        column order) does not enter the forward pass; it weights the positive edges of
        :meth:`proximity_loss` with ``weights="given"`` (:class:`LATTE` passes the joined adjacency
        values of order >= 2 meta-relations).
        ``output_types`` restricts the outputs (and the meta-relations computed) to those types."""
        x_dict, edge_index_dict = graph_input(x_dict, edge_index_dict)
        warn_unknown_relations(self, edge_index_dict, lambda k: as_metapath(k) in self._position)
        if self.has_lazy():
            self.initialize(x_dict)
        H, D = self.heads, self.out_channels // self.heads
        types = [t for t in x_dict if t in self.lin_l and (output_types is None or t in output_types)]
        present = self._present(x_dict, edge_index_dict, set(types))
        left = {t: self.lin_l[t](x_dict[t]).view(-1, H, D) for t in types}
        right = {t: self.lin_r[t](x_dict[t]).view(-1, H, D) for t in {tail_type(m) for m in present}}
        beta = {t: torch.softmax(self.beta[t](x_dict[t]), dim=-1) for t in types}
        details = LATTEDetails(beta=beta, num_nodes={t: x_dict[t].size(0) for t in types})
        dropping = self.training and self.attn_dropout > 0
        z: dict[MetaPath, Tensor] = {}
        for mp, (seg, ei, perm) in present.items():
            i = self._position[mp]
            head, tail = head_type(mp), tail_type(mp)
            a_l = (left[head] * self.attn_l[i]).sum(-1)  # [N_head, H]
            a_r = (right[tail] * self.attn_r[i]).sum(-1)  # [N_tail, H]
            kappa = self.sharpening[i]
            if return_attention_weights or dropping or not bool(kappa > 0):
                heads_of_edges = ei[1]
                scores = kappa * F.leaky_relu(a_l[heads_of_edges] + a_r[ei[0]], self.negative_slope)
                alpha = segment_softmax(scores, seg)  # [E, H]
                weights = F.dropout(alpha, self.attn_dropout, self.training)
                z[mp] = torch.stack([segment_spmm(right[tail][:, k], seg, weights[:, k].contiguous())
                                     for k in range(H)], dim=1)
                if return_attention_weights:
                    details.attention[mp] = alpha
            else:
                z[mp] = segment_additive_attention(kappa * a_l, kappa * a_r, right[tail], seg,
                                                   self.negative_slope)
            if return_attention_weights:
                details.edge_index[mp], details.perm[mp] = ei, perm
                details.score_l[mp], details.score_r[mp] = a_l, a_r
                w = _lookup(edge_weight_dict, mp) if edge_weight_dict is not None else None
                if w is not None:
                    details.edge_weight[mp] = w[perm]
        out: dict[str, Tensor] = {}
        for t in types:
            b = beta[t]
            h = b[:, -1:] * left[t].reshape(-1, self.out_channels)
            for k, mp in enumerate(self.head_metapaths(t)):
                if mp in z:
                    h = h + b[:, k:k + 1] * z[mp].reshape(-1, self.out_channels)
            if self.norm is not None:
                h = self.norm[t](h)
            out[t] = F.relu(h)
        return (out, details) if return_attention_weights else out

    def edge_logits(self, details: LATTEDetails, mp: MetaPath, tail: Tensor, head: Tensor) -> Tensor:
        r"""LATTE's link score of (head, tail) pairs along ``mp``:
        :math:`\kappa_m\,\mathrm{LeakyReLU}(\max_k(\alpha^l_m[i] + \alpha^r_m[j]))`, ``[P]``."""
        s = (details.score_l[mp][head] + details.score_r[mp][tail]).max(dim=1).values
        return self.sharpening[self._position[mp]] * F.leaky_relu(s, self.negative_slope)

    def proximity_loss(self, details: LATTEDetails, neg_ratio: float = 2.0,
                       generator: torch.Generator | None = None,
                       weights: str = "attention") -> Tensor:
        r"""LATTE's first-order proximity loss over the meta-relations of one forward:

        .. math::
            \mathcal{L} = \frac{1}{2 |M|} \sum_{m \in M} \Big(
                -\frac{1}{|E_m|}\sum_{(i,j) \in E_m} w_{ij} \log\sigma(s_{ij})
                -\frac{1}{|\bar E_m|}\sum_{(i,j) \in \bar E_m} \log\sigma(-s_{ij}) \Big)

        with :math:`s` from :meth:`edge_logits` and :math:`\bar E_m` ``int(neg_ratio * |E_m|)``
        head/tail pairs drawn uniformly (vectorised, with replacement) and redrawn while they hit an
        edge of :math:`E_m`. The positive weights :math:`w` are, with ``weights="attention"``, the
        edge's attention :math:`\max_k \alpha^m_{ij}` before dropout, not detached: the official
        ``LATTEConv.forward`` swaps its edge values for these whenever it returns attention
        weights, which ``LATTE.forward`` always asks for; with ``weights="given"``, the forward's
        ``edge_weight_dict`` values (1 without). Meta-relations with no edges are skipped; the
        negative term is skipped when fewer than 2 pairs can be drawn, as in the official code.
        Needs ``return_attention_weights=True`` details.
        """
        if weights not in PROXIMITY_WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(PROXIMITY_WEIGHTS)}, got {weights!r}")
        ref = self.sharpening
        loss = ref.new_zeros(())
        count = 0
        for mp, ei in details.edge_index.items():
            if ei.size(1) == 0:
                continue
            count += 1
            pos = self.edge_logits(details, mp, ei[0], ei[1])
            w = (details.attention[mp].max(dim=1).values if weights == "attention"
                 else details.edge_weight.get(mp))
            pos_term = F.logsigmoid(pos) if w is None else w.to(pos.dtype) * F.logsigmoid(pos)
            loss = loss - pos_term.mean()
            n_head, n_tail = details.score_l[mp].size(0), details.score_r[mp].size(0)
            tail, head = negative_pairs(ei, n_tail, n_head, neg_ratio, generator)
            if head.numel() > 1:
                loss = loss - F.logsigmoid(-self.edge_logits(details, mp, tail, head)).mean()
        return loss / max(2 * count, 1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, heads={self.heads}, "
                f"num_metapaths={len(self.metapaths)})")


_LOOKUP_TABLE_MAX = 1 << 28  # head x tail grids up to this size use a boolean table (256 MiB)


def negative_pairs(edge_index: Tensor, num_tail: int, num_head: int, ratio: float,
                   generator: torch.Generator | None = None, rounds: int = 20) -> tuple[Tensor, Tensor]:
    """``min(int(ratio * E), N_head * N_tail - E)`` uniform (tail, head) pairs that are not edges
    of ``edge_index`` ``[2, E]`` (tail, head). Vectorised rejection sampling: pairs that hit an
    edge are redrawn, up to ``rounds`` times, then dropped."""
    device = edge_index.device
    total = num_head * num_tail
    n = int(min(int(edge_index.size(1) * ratio), total - edge_index.size(1)))
    if n <= 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    keys = edge_index[1] * num_tail + edge_index[0]
    if _LOOKUP_TABLE_MAX >= total:
        table = torch.zeros(total, dtype=torch.bool, device=device)
        table[keys] = True

        def is_edge(k: Tensor) -> Tensor:
            return table[k]
    else:
        keys = torch.sort(keys).values

        def is_edge(k: Tensor) -> Tensor:
            pos = torch.searchsorted(keys, k).clamp(max=keys.numel() - 1)
            return keys[pos] == k
    draw = torch.randint(0, total, (n,), generator=generator, device=device)
    redo = is_edge(draw).nonzero().view(-1)
    for _ in range(rounds):
        if redo.numel() == 0:
            break
        fresh = torch.randint(0, total, (redo.numel(),), generator=generator, device=device)
        draw[redo] = fresh
        redo = redo[is_edge(fresh)]
    if redo.numel():
        keep = torch.ones(n, dtype=torch.bool, device=device)
        keep[redo] = False
        draw = draw[keep]
    return draw % num_tail, draw // num_tail


__all__ = ["LATTEConv", "LATTEDetails", "PROXIMITY_WEIGHTS", "as_metapath", "join_metapaths",
           "metapath_name", "negative_pairs"]
