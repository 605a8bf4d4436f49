"""H2G-former's graph-transformer layer (Lin et al., H2GB, KDD'25) on hgnn's fused attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.nn.graph_input import graph_input, warn_unknown_relations
from hgnn.nn.lazy import as_width
from hgnn.ops import segment_attention
from hgnn.ops.typed import destination_segments, index_for, stack, unstack

EdgeType = tuple[str, str, str]

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class H2GFormerLayer(nn.Module):
    r"""One H2G-former layer: H2GB's ``GTLayer`` with ``SparseNodeTransformer`` attention, the
    ``Edge`` attention mask, ``Fixed`` residual, ``Type`` FFN and pre-LayerNorm.

    For a node :math:`i` of type :math:`\tau = \tau(i)` with input :math:`x_i` (``D = dim / heads``,
    head :math:`h`), over the in-edges :math:`j \to i` of **every** relation at once (edge types
    play no part in the attention itself):

    .. math::
        \tilde x_i &= \mathrm{LN}^{(1)}_{\tau}(x_i) \\
        q_i = W^Q_{\tau(i)} \tilde x_i,\quad k_j &= W^K_{\tau(j)} \tilde x_j,\quad
        v_j = W^V_{\tau(j)} \tilde x_j \qquad(\text{Linears with bias}) \\
        s^h_{ij} &= \mathrm{clamp}\big(\langle q^h_i, k^h_j\rangle / \sqrt{D},\, -c,\, c\big) \\
        \alpha^h_{ij} &= \mathrm{Dropout}_{p_{att}}\big(\mathrm{softmax}_{j \in N(i)}\, s^h_{ij}\big)
        \qquad a_i = \Vert_h \textstyle\sum_j \alpha^h_{ij}\, v^h_j \\
        u_i &= \mathrm{Dropout}_p(W^O_\tau a_i + b^O_\tau) + x_i
            \qquad(\text{residual with the un-normalised input}) \\
        \hat u_i &= \mathrm{LN}^{(2)}_\tau(u_i) \\
        y_i &= \hat u_i + \mathrm{Dropout}_p\big(W^{2}_\tau\,
            \mathrm{Dropout}_p(\sigma(W^{1}_\tau \hat u_i))\big)

    The second residual adds the FFN to the *normalised* :math:`\hat u_i`, as H2GB's code does
    (the LayerNorm's output overwrites the running tensor). A node without in-edges gets
    :math:`a_i = 0`, so :math:`u_i = \mathrm{Dropout}(b^O_\tau) + x_i`. The FFN is ``dim -> 2 dim ->
    dim``. Every edge is one attention entry, multi-edges included (the same pair in one relation
    twice, or in two relations), as in the homogeneous graph H2GB builds with ``to_homogeneous``.
    Shapes inside: ``q``, ``k``, ``v`` ``[N, H, D]`` over the stacked node types; attention dropout
    is the only per-edge tensor, ``[E, H]``.

    The attention runs on :func:`hgnn.ops.segment_attention` over destination-major segments of
    all relations (one launch): scores, clamp, softmax and aggregation are fused and no ``[E, F]``
    tensor is built. Attention dropout draws an inverted-dropout mask ``[E, H]`` that the op applies
    to the normalised weights (H2GB's ``nn.Dropout`` on the ``[H, E]`` weights).

    Args:
        dim: width of inputs and outputs (all node types), divisible by ``heads``: a positive int,
            since the residuals join inputs and outputs and the attention compares every type's
            keys (neither PyG's lazy ``-1`` nor a per-type dict; a ``ValueError`` says so).
        metadata: ``(node_types, edge_types)`` as from ``HeteroData.metadata()``.
        heads: attention heads (H2GB: 8).
        dropout: ``gt.dropout``: after the output projection and twice in the FFN.
        attn_dropout: ``gt.attn_dropout`` on the attention weights.
        act: FFN activation, ``"gelu"`` or ``"relu"`` (``gt.act``).
        clamp: bound :math:`c` of the score clamp (H2GB: 5); ``None`` for no clamp.

    Shapes: ``x_dict[t]`` ``[N_t, dim]`` -> ``{t: [N_t, dim]}`` for every type in ``x_dict`` that
    the layer knows; ``edge_index_dict[(s, r, d)]`` ``[2, E_r]`` (row 0 sources, row 1 targets).
    """

    def __init__(self, dim: int, metadata: tuple[list[str], list[EdgeType]], heads: int = 8,
                 dropout: float = 0.2, attn_dropout: float = 0.0, act: str = "gelu",
                 clamp: float | None = 5.0) -> None:
        super().__init__()
        dim = as_width(dim, "H2GFormerLayer's dim (the width of its inputs and of its outputs, "
                            "which the residuals add, shared by every node type)", lazy=False)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
        self.dim, self.heads = dim, heads
        self.dropout, self.attn_dropout, self.clamp = dropout, attn_dropout, clamp
        self.node_types = list(metadata[0])
        self.edge_types = [tuple(et) for et in metadata[1]]

        def per_type(make) -> nn.ModuleDict:
            return nn.ModuleDict({t: make() for t in self.node_types})

        self.norm1 = per_type(lambda: nn.LayerNorm(dim))
        self.q_lin = per_type(lambda: nn.Linear(dim, dim))
        self.k_lin = per_type(lambda: nn.Linear(dim, dim))
        self.v_lin = per_type(lambda: nn.Linear(dim, dim))
        self.o_lin = per_type(lambda: nn.Linear(dim, dim))
        self.norm2 = per_type(lambda: nn.LayerNorm(dim))
        self.ff1 = per_type(lambda: nn.Linear(dim, 2 * dim))
        self.ff2 = per_type(lambda: nn.Linear(2 * dim, dim))
        self.act = ACTIVATIONS[act]()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for group in (self.norm1, self.q_lin, self.k_lin, self.v_lin, self.o_lin, self.norm2,
                      self.ff1, self.ff2):
            for module in group.values():
                module.reset_parameters()

    def attention(self, h: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor]
                  ) -> dict[str, Tensor]:
        """Steps 2-4: ``{t: [N_t, dim]}`` attention outputs (before ``o_lin``) of the normalised
        inputs ``h``; zeros for nodes without in-edges."""
        H, D = self.heads, self.dim // self.heads
        present = {et: ei for et, ei in edge_index_dict.items()
                   if tuple(et) in self.edge_types and et[0] in h and et[2] in h}
        if not present:
            return {t: x.new_zeros(x.size(0), self.dim) for t, x in h.items()}
        # the index (cached while the same edge tensors come back) and its segments live on CPU;
        # segment_attention uses their copy on the features' device, made once
        index = index_for(present, {t: x.size(0) for t, x in h.items()})
        seg, _ = destination_segments(index)
        q = stack({t: self.q_lin[t](x).view(-1, H, D) for t, x in h.items()}, index)
        k = stack({t: self.k_lin[t](x).view(-1, H, D) for t, x in h.items()}, index)
        v = stack({t: self.v_lin[t](x).view(-1, H, D) for t, x in h.items()}, index)
        weight = None
        if self.training and self.attn_dropout > 0:
            keep = torch.rand(seg.num_edges, H, device=q.device) >= self.attn_dropout
            weight = keep.to(q.dtype) / (1.0 - self.attn_dropout)
        clamp = (-self.clamp, self.clamp) if self.clamp is not None else None
        out = segment_attention(q, k, v, seg, scale=1.0 / math.sqrt(D), clamp=clamp, weight=weight)
        agg = unstack(out.reshape(-1, self.dim), index)
        return {t: agg[t] for t in h}

    def forward(self, x_dict: dict[str, Tensor] | HeteroData,
                edge_index_dict: dict[EdgeType, Tensor] | None = None) -> dict[str, Tensor]:
        x_dict, edge_index_dict = graph_input(x_dict, edge_index_dict)
        warn_unknown_relations(self, edge_index_dict, lambda et: tuple(et) in self.edge_types)
        x_dict = {t: x for t, x in x_dict.items() if t in self.norm1}
        h = {t: self.norm1[t](x) for t, x in x_dict.items()}
        agg = self.attention(h, edge_index_dict)
        out = {}
        for t, x in x_dict.items():
            u = F.dropout(self.o_lin[t](agg[t]), self.dropout, self.training) + x
            u = self.norm2[t](u)
            ff = F.dropout(self.act(self.ff1[t](u)), self.dropout, self.training)
            out[t] = u + F.dropout(self.ff2[t](ff), self.dropout, self.training)
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.dim}, heads={self.heads}, "
                f"num_node_types={len(self.node_types)}, clamp={self.clamp})")
