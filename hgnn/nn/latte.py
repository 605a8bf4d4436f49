r"""LATTE's layer stack and its higher-order adjacency: order t+1's meta-relations joined from
order t's attention (:func:`join_adjacency`), one :class:`~hgnn.nn.latte_conv.LATTEConv` per order.

See :mod:`hgnn.nn.latte_conv` for the direction convention (a meta-relation is a chain of edge
types read in the direction messages flow).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.nn.graph_input import graph_input, warn_unknown_relations
from hgnn.nn.latte_conv import (
    PROXIMITY_WEIGHTS,
    EdgeType,
    LATTEConv,
    LATTEDetails,
    MetaPath,
    as_metapath,
    head_type,
    join_metapaths,
    metapath_name,
    tail_type,
)
from hgnn.nn.lazy import as_width


@torch.no_grad()
def join_adjacency(details: LATTEDetails, first: dict[MetaPath, Tensor], metapaths: list[MetaPath],
                   num_nodes: dict[str, int], threshold: float = 0.5,
                   ) -> dict[MetaPath, tuple[Tensor, Tensor]]:
    r"""LATTE's order-(t+1) adjacency from layer t's attention (``join_edge_indexes`` with the
    Adamic-Adar-style normalisation).

    For each wanted chain ``b + a`` (``b`` of order 1 in ``first``, ``a`` of order t in
    ``details``): :math:`A_a[i, k] = \max_h \alpha^a_{ik}` over ``a``'s edges, keeping only edges with
    :math:`A_a \ge` ``threshold`` (the single largest edge if none passes; no filter when
    ``threshold <= 0``), :math:`A_b[k, j] = 1` per edge of ``b``, and

    .. math::
        A_{b+a} = A_a\, D\, A_b, \qquad D = \mathrm{diag}\big(1 / (\mathbf{1}^\top A_a + A_b \mathbf{1})\big)

    over the middle type (torch sparse products). Returns ``{chain: (edge_index [2, E] (tail,
    head) sorted by head, values [E])}``, leaving out chains with no edges. Nothing here is
    differentiated: the values weight the proximity loss's positive edges only with
    ``proximity_weights="given"``.
    """
    out: dict[MetaPath, tuple[Tensor, Tensor]] = {}
    kept: dict[MetaPath, tuple[Tensor, Tensor]] = {}
    for mp in metapaths:
        b, a = mp[:1], mp[1:]
        if a not in details.attention or b not in first or first[b].size(1) == 0:
            continue
        if a not in kept:
            w = details.attention[a].detach().max(dim=1).values
            ei_a = details.edge_index[a]
            if threshold > 0 and w.numel():
                mask = w >= threshold
                if not bool(mask.any()):
                    mask[torch.argmax(w)] = True
                ei_a, w = ei_a[:, mask], w[mask]
            kept[a] = (ei_a, w)
        ei_a, w_a = kept[a]
        if ei_a.size(1) == 0:
            continue
        n_head, n_mid, n_tail = num_nodes[head_type(a)], num_nodes[tail_type(a)], num_nodes[tail_type(b)]
        ei_b = first[b]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's "sparse support is in beta"
            mat_b = torch.sparse_coo_tensor(torch.stack([ei_b[1], ei_b[0]]),
                                            torch.ones(ei_b.size(1), dtype=w_a.dtype, device=w_a.device),
                                            (n_mid, n_tail), check_invariants=False).coalesce()
            col_a = torch.zeros(n_mid, dtype=w_a.dtype, device=w_a.device).index_add_(0, ei_a[0], w_a)
            row_b = torch.zeros(n_mid, dtype=w_a.dtype, device=w_a.device).index_add_(
                0, mat_b.indices()[0], mat_b.values())
            denom = col_a + row_b
            d_inv = torch.where(denom > 0, 1.0 / denom.clamp(min=torch.finfo(denom.dtype).tiny),
                                torch.zeros_like(denom))
            mat_a = torch.sparse_coo_tensor(torch.stack([ei_a[1], ei_a[0]]), w_a * d_inv[ei_a[0]],
                                            (n_head, n_mid), check_invariants=False).coalesce()
            prod = torch.sparse.mm(mat_a, mat_b).coalesce()
        idx, val = prod.indices(), prod.values()
        if val.numel() == 0:
            continue
        out[mp] = (torch.stack([idx[1], idx[0]]), val)
    return out


class LATTE(nn.Module):
    r"""LATTE's stack: layer :math:`t = 1..T` is a :class:`LATTEConv` over the order-t
    meta-relations, and the layer outputs are concatenated (``layer_pooling="concat"``).

    .. math::
        h^{(t)} = \mathrm{dropout}\big(\mathrm{LATTEConv}_t(h^{(t-1)}, \mathcal{A}_t)\big), \qquad
        \mathrm{out} = h^{(1)} \Vert \cdots \Vert h^{(T)}

    :math:`\mathcal{A}_1` are the given relations; :math:`\mathcal{A}_{t+1}` is built from layer
    t's attention by :func:`join_adjacency` (threshold ``edge_threshold``). Layer t uses the
    previous layer's output as both its left and right input, as the official code does.

    :meth:`proximity_loss` (LATTE-2proximity) weights the positive edges of every meta-relation
    by the layer's own attention, max over heads (``proximity_weights="attention"``): the official
    ``conv.py`` (both stored revisions, 60e7b1f5 and 2e286669) swaps the edge values for these
    whenever attention weights are returned, which its ``LATTE.forward`` always asks for.
    ``proximity_weights="given"`` uses the :func:`join_adjacency` values instead (order 1:
    weight 1), which the official code computes but never reaches its loss with.

    Args:
        channels: input and per-layer output width (inputs are already encoded to it); a positive
            int: being an output width too, it cannot be lazy (``-1``) or per type (a
            ``ValueError`` says so; :class:`LATTEConv` takes both).
        node_types: every node type.
        edge_types: the order-1 relations (``src -> dst``; the destination aggregates).
        num_layers: :math:`T` (1 = LATTE-1, 2 = LATTE-2).
        heads, attn_dropout, negative_slope, norm: as :class:`LATTEConv`.
        dropout: dropout on every layer's output.
        edge_threshold: attention threshold of the higher-order adjacency.
        neg_ratio: negatives per positive edge in :meth:`proximity_loss`.
        proximity_weights: ``"attention"`` (official) or ``"given"``, see above.

    Shapes: ``x_dict[t]`` ``[N_t, channels]`` -> ``{t: [N_t, T * channels]}``.
    """

    def __init__(self, channels: int, node_types: list[str], edge_types: list[EdgeType],
                 num_layers: int = 2, heads: int = 2, attn_dropout: float = 0.2,
                 dropout: float = 0.2, edge_threshold: float = 0.5, negative_slope: float = 0.2,
                 norm: str = "none", neg_ratio: float = 2.0,
                 proximity_weights: str = "attention") -> None:
        super().__init__()
        if isinstance(channels, dict) or channels == -1:
            raise ValueError(f"LATTE's channels ({channels!r}) is the input and the output width of "
                             "every layer, so it cannot be lazy (-1) or per type: give one positive "
                             "int and encode the inputs to it (LATTEConv alone takes -1 or a "
                             "{node_type: width} dict)")
        channels = as_width(channels, "LATTE's channels", lazy=False)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if proximity_weights not in PROXIMITY_WEIGHTS:
            raise ValueError(f"proximity_weights must be one of {', '.join(PROXIMITY_WEIGHTS)}, "
                             f"got {proximity_weights!r}")
        self.proximity_weights = proximity_weights
        self.channels, self.dropout = channels, dropout
        self.edge_threshold, self.neg_ratio = edge_threshold, neg_ratio
        self.first: list[MetaPath] = [as_metapath(et) for et in edge_types]
        convs, metapaths = [], list(self.first)
        for _ in range(num_layers):
            convs.append(LATTEConv(channels, channels, node_types, metapaths, heads, attn_dropout,
                                   negative_slope, norm))
            metapaths = join_metapaths(metapaths, self.first)
        self.convs = nn.ModuleList(convs)

    @property
    def out_channels(self) -> int:
        return self.channels * len(self.convs)

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()

    def needed_types(self, output_types: list[str] | set[str] | None) -> list[set[str] | None]:
        """Per layer, the types whose output is needed for ``output_types``' final outputs: the
        last layer's are ``output_types``; a layer's inputs are its outputs plus the tails of the
        meta-relations ending at them. ``None`` (everything) without ``output_types``."""
        if output_types is None:
            return [None] * len(self.convs)
        need: list[set[str] | None] = [None] * len(self.convs)
        cur = set(output_types)
        for t in reversed(range(len(self.convs))):
            need[t] = set(cur)
            cur |= {tail_type(m) for m in self.convs[t].metapaths if head_type(m) in need[t]}
        return need

    def forward(self, x_dict: dict[str, Tensor] | HeteroData, edge_index_dict: dict | None = None,
                return_details: bool = False,
                output_types: list[str] | set[str] | None = None,
                ) -> dict[str, Tensor] | tuple[dict[str, Tensor], list[LATTEDetails]]:
        """``{t: [N_t, T * channels]}``; with ``return_details`` also each layer's
        :class:`LATTEDetails` (needed by :meth:`proximity_loss` and explanations).

        ``output_types`` (e.g. the classification target) skips every meta-relation and adjacency
        product that cannot reach those types' outputs; their outputs are unchanged. Leave it out
        when all meta-relations must be computed (the proximity loss, explanations)."""
        x_dict, edge_index_dict = graph_input(x_dict, edge_index_dict)
        warn_unknown_relations(self, edge_index_dict, lambda k: as_metapath(k) in self.first)
        # A relation whose end type is missing from x_dict is left out, as LATTEConv does.
        first = {mp: ei for key, ei in edge_index_dict.items()
                 if (mp := as_metapath(key)) in self.first
                 and head_type(mp) in x_dict and tail_type(mp) in x_dict}
        num_nodes = {t: x.size(0) for t, x in x_dict.items()}
        need = self.needed_types(output_types)
        adj: dict = first
        weights: dict | None = None
        h, outs, details = x_dict, [], []
        for t, conv in enumerate(self.convs):
            if t > 0:
                wanted = [m for m in conv.metapaths if need[t] is None or head_type(m) in need[t]]
                joined = join_adjacency(details[-1], first, wanted, num_nodes, self.edge_threshold)
                adj = {mp: ei for mp, (ei, _) in joined.items()}
                weights = {mp: w for mp, (_, w) in joined.items()}
            keep = return_details or t + 1 < len(self.convs)
            res = conv(h, adj, weights, return_attention_weights=keep, output_types=need[t])
            h, det = res if keep else (res, None)
            h = {k: F.dropout(v, self.dropout, self.training) for k, v in h.items()}
            outs.append(h)
            details.append(det)
        out = {k: torch.cat([o[k] for o in outs], dim=-1) for k in outs[-1]}
        return (out, details) if return_details else out

    def proximity_loss(self, details: list[LATTEDetails],
                       generator: torch.Generator | None = None) -> Tensor:
        """The sum over layers of :meth:`LATTEConv.proximity_loss` (LATTE-2proximity)."""
        return sum(conv.proximity_loss(d, self.neg_ratio, generator, self.proximity_weights)
                   for conv, d in zip(self.convs, details, strict=True))

    def relation_weights(self, details: list[LATTEDetails]) -> dict[str, dict[str, float]]:
        """Per node type, the mean over its nodes of :math:`\\beta` per slot: meta-relation names
        and ``"self"`` (``"self@t"`` for layer t >= 2, whose meta-relations have order t)."""
        out: dict[str, dict[str, float]] = {}
        for t, (conv, det) in enumerate(zip(self.convs, details, strict=True), start=1):
            for ntype, beta in det.beta.items():
                if beta.size(0) == 0:
                    continue
                names = conv.slots(ntype)
                if t > 1:
                    names[-1] = f"self@{t}"
                means = beta.mean(dim=0).tolist()
                out.setdefault(ntype, {}).update(zip(names, means, strict=True))
        return out

    def relation_coverage(self, details: list[LATTEDetails]) -> dict[str, dict[str, float]]:
        """Per node type, the share of its nodes with at least one edge of each slot's
        meta-relation (1 for the self slots), named as in :meth:`relation_weights`. A node's
        :math:`\beta` comes from its own features, so a slot it has no edges of still takes
        weight, on a zero message; this says how many nodes that is."""
        out: dict[str, dict[str, float]] = {}
        for t, (conv, det) in enumerate(zip(self.convs, details, strict=True), start=1):
            for ntype, beta in det.beta.items():
                n = beta.size(0)
                if n == 0:
                    continue
                rows = {}
                for mp in conv.head_metapaths(ntype):
                    ei = det.edge_index.get(mp)
                    heads = 0 if ei is None or ei.numel() == 0 else int(ei[1].unique().numel())
                    rows[metapath_name(mp)] = heads / n
                rows["self" if t == 1 else f"self@{t}"] = 1.0
                out.setdefault(ntype, {}).update(rows)
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.channels}, num_layers={len(self.convs)}, "
                f"metapaths per layer={[len(c.metapaths) for c in self.convs]})")


__all__ = ["LATTE", "join_adjacency"]
