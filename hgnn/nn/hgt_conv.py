"""Heterogeneous graph transformer convolution (Hu et al., WWW'20) on hgnn's fused attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

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
from hgnn.ops import segment_attention
from hgnn.ops.typed import destination_segments, index_for, relation_segments, stack, unstack

EdgeType = tuple[str, str, str]


class HGTConv(LazyInputModule):
    r"""HGT layer with the same parameters and semantics as PyG's ``HGTConv``, fused.

    For a destination :math:`v` of type :math:`\tau(v)` and its in-edges :math:`(u, r, v)` of every
    relation, per head :math:`h` (``D = out_channels / heads``):

    .. math::
        k_u, q_v, m_u &= \mathrm{split}(W^{kqv}_{\tau} x) \\
        \alpha_{uv}^h &= \mathrm{softmax}_{(u, r) \in N(v)}\Big(
            \frac{\mu_r^h}{\sqrt{D}}\, q_v^h \cdot (k_u^h W^{att}_{r,h})\Big) \\
        \tilde h_v &= \Vert_h \sum_{(u, r)} \alpha_{uv}^h\, m_u^h W^{msg}_{r,h} \\
        h'_v &= \sigma(s_\tau)\, W^{out}_\tau \mathrm{GELU}(\tilde h_v) + (1 - \sigma(s_\tau))\, x_v

    (the gated skip only when input and output widths agree). With ``softmax="all"`` the softmax
    runs over all relations at once, as in PyG. With ``softmax="relation"`` it runs over each
    relation's in-edges separately and :math:`\tilde h_v` is the mean over the relations into
    :math:`\tau(v)` of their attention-weighted sums (zero where :math:`v` has no in-edge of that
    relation), as in HGB's and DGL's HGT (``edge_softmax`` per relation, ``cross_reducer="mean"``).
    Keys and messages are transformed once per (relation, source node), never
    per edge, and :func:`hgnn.ops.segment_attention` does the scoring, softmax and aggregation in
    one pass without ``[E, H]`` or ``[E, H, D]`` tensors.

    Args:
        in_channels: input width: one for every node type, or ``{node_type: width}`` (every type
            of ``metadata``, as PyG's ``HGTConv``); a width of ``-1`` is sized from the first
            forward that brings the type (PyG's lazy initialisation).
        out_channels: output width, divisible by ``heads``.
        metadata: ``(node_types, edge_types)`` as from ``HeteroData.metadata()``.
        heads: attention heads.
        softmax: ``"all"`` (PyG) or ``"relation"`` (HGB / DGL), see above.

    Shapes: ``x_dict[t]`` ``[N_t, in_channels[t]]`` -> ``{t: [N_t, out_channels]}`` for every
    type that is the destination of some relation (others are absent, as in PyG). Types of
    ``x_dict`` outside ``metadata`` are ignored, as PyG's ``HGTConv`` ignores them.
    """

    def __init__(self, in_channels: int | dict[str, int], out_channels: int,
                 metadata: tuple[list[str], list[EdgeType]], heads: int = 1,
                 softmax: str = "all") -> None:
        super().__init__()
        out_channels = as_width(out_channels, "HGTConv's out_channels", lazy=False)
        if out_channels % heads:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by heads ({heads})")
        if softmax not in ("all", "relation"):
            raise ValueError(f"softmax must be 'all' or 'relation', got {softmax!r}")
        self.softmax = softmax
        self.node_types = list(metadata[0])
        self.edge_types = [tuple(et) for et in metadata[1]]
        widths = per_type_widths(in_channels, self.node_types, "HGTConv's in_channels")
        self.in_channels = dict(widths) if isinstance(in_channels, dict) else int(in_channels)
        self.out_channels, self.heads = out_channels, heads
        dim = out_channels // heads
        self.kqv = nn.ModuleDict({t: linear(widths[t], 3 * out_channels) for t in self.node_types})
        self.out_lin = nn.ModuleDict({t: nn.Linear(out_channels, out_channels)
                                      for t in self.node_types})
        self.k_rel = nn.Parameter(torch.empty(len(self.edge_types), heads, dim, dim))
        self.v_rel = nn.Parameter(torch.empty(len(self.edge_types), heads, dim, dim))
        self.p_rel = nn.Parameter(torch.empty(len(self.edge_types), heads))
        self.skip = nn.Parameter(torch.empty(len(self.node_types)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in list(self.kqv.values()) + list(self.out_lin.values()):
            if not is_lazy(lin.weight):  # a lazy one is initialised when it is sized
                lin.reset_parameters()
        bound = 1.0 / math.sqrt(self.k_rel.size(-1))
        nn.init.uniform_(self.k_rel, -bound, bound)
        nn.init.uniform_(self.v_rel, -bound, bound)
        nn.init.ones_(self.p_rel)
        nn.init.ones_(self.skip)

    def sync_widths(self) -> None:
        self.in_channels = recorded_widths(
            self.in_channels, {t: lin.in_features for t, lin in self.kqv.items()})

    def initialize(self, x_dict: dict[str, Tensor]) -> None:
        """Sizes and initialises the lazy input projections of the types in ``x_dict``."""
        sized = False
        for t, x in x_dict.items():
            if t in self.kqv and materialize_linear(self.kqv[t], x.size(-1)):
                self.kqv[t].reset_parameters()
                sized = True
        if sized:
            self.sync_widths()

    def forward(self, x_dict: dict[str, Tensor] | HeteroData,
                edge_index_dict: dict[EdgeType, Tensor] | None = None) -> dict[str, Tensor]:
        x_dict, edge_index_dict = graph_input(x_dict, edge_index_dict)
        warn_unknown_relations(self, edge_index_dict, lambda et: tuple(et) in self.edge_types)
        x_dict = {t: x for t, x in x_dict.items() if t in self.kqv}  # others ignored, as PyG does
        if self.has_lazy():
            self.initialize(x_dict)
        H, D = self.heads, self.out_channels // self.heads
        k, q, m = {}, {}, {}
        for t, x in x_dict.items():
            k[t], q[t], m[t] = (z.reshape(-1, H, D) for z in self.kqv[t](x).chunk(3, dim=-1))
        present = {et: edge_index_dict[et] for et in self.edge_types
                   if et in edge_index_dict and et[0] in x_dict and et[2] in x_dict}
        if not present:
            return {}
        index = index_for(present, {t: x.size(0) for t, x in x_dict.items()})
        rel = [self.edge_types.index(et) for et in index.edge_types]
        # One key / message row per (relation, source node): compact, never per edge.
        scale = (self.p_rel[rel] / math.sqrt(D)).unsqueeze(-1)  # [R, H, 1]
        keys = torch.cat([torch.einsum("nhd,hde->nhe", k[et[0]], self.k_rel[r]) * scale[i]
                          for i, (r, et) in enumerate(zip(rel, index.edge_types, strict=True))])
        msgs = torch.cat([torch.einsum("nhd,hde->nhe", m[et[0]], self.v_rel[r])
                          for r, et in zip(rel, index.edge_types, strict=True)])
        if self.softmax == "all":
            seg, _ = destination_segments(index, source="relation")
            agg = unstack(segment_attention(stack(q, index), keys, msgs, seg, scale=1.0), index)
        else:
            agg = self._per_relation_mean(q, keys, msgs, index)
        out = {}
        for t in {et[2] for et in index.edge_types}:
            h = self.out_lin[t](F.gelu(agg[t].reshape(-1, self.out_channels)))
            if h.size(-1) == x_dict[t].size(-1):
                gate = torch.sigmoid(self.skip[self.node_types.index(t)])
                h = gate * h + (1 - gate) * x_dict[t]
            out[t] = h
        return out

    @staticmethod
    def _per_relation_mean(q: dict[str, Tensor], keys: Tensor, msgs: Tensor, index) -> dict:
        # One segment per (relation, destination): relation r's rows are its destination type's
        # nodes, seg_offset[r]:seg_offset[r + 1] of the output.
        seg = relation_segments(index, source="relation")
        queries = torch.cat([q[et[2]] for et in index.edge_types])
        per_rel = segment_attention(queries, keys, msgs, seg, scale=1.0)
        total: dict[str, Tensor] = {}
        count: dict[str, int] = {}
        for r, et in enumerate(index.edge_types):
            part = per_rel[int(index.seg_offset[r]):int(index.seg_offset[r + 1])]
            total[et[2]] = total[et[2]] + part if et[2] in total else part
            count[et[2]] = count.get(et[2], 0) + 1
        return {t: v / count[t] for t, v in total.items()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads}, num_relations={len(self.edge_types)}, "
                f"softmax={self.softmax!r})")
