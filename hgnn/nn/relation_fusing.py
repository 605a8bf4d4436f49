r"""R-HGNN's semantic fusing readout: a node's per-relation states fused into one vector by
attention over the relations that end at its type (the official ``RelationFusing.py``).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgnn.nn.lazy import (
    LAZY,
    LazyInputModule,
    as_width,
    is_lazy,
    materialize,
    parameter,
)
from hgnn.nn.rhgnn_conv import EdgeType, leading_xavier_


class RelationFusing(LazyInputModule):
    r"""R-HGNN's semantic fusing readout for one node type (``RelationFusing`` of the official code).

    For the relations :math:`r \to d` and per head ``k``:

    .. math::
        \hat h^k_r = h^k_r\, W^{node,k}_r, \qquad \hat e^k_r = e^k_r\, W^{rel,k}_r, \qquad
        \beta^k_r = \mathrm{softmax}_{r}\, \mathrm{LeakyReLU}_{0.2}(\hat h^k_r \cdot \hat e^k_r),
        \qquad z = \mathrm{drop}\Big(\Big\Vert_k \sum_r \beta^k_r\, \hat h^k_r\Big)

    (the transformed :math:`\hat h_r` are summed). With a single relation :math:`z = h_r`
    unchanged and :math:`\beta = 1`, as in the official code. A relation missing from ``state``
    is left out of the softmax (its :math:`\beta` is 0).

    Args:
        edge_types: the relations fused (all ending at the same type), in the order of the states
            and embeddings given to :meth:`forward`.
        heads: ``H``.
        channels: ``D``, node width per head, of the states and of the output (with one relation
            the state is returned as it is), so a positive int: not lazy, not per type.
        relation_channels: relation width per head, or ``-1`` to size it from the first forward's
            embeddings (``[k, H * relation_channels]``).
        dropout: dropout on the fused output (only when several relations are fused).
        negative_slope: LeakyReLU slope.

    Shapes: ``state[r]`` ``[N, H * D]``; ``relation_embedding`` ``[k, H * relation_channels]`` in
    ``edge_types`` order. Returns ``z`` ``[N, H * D]`` and ``beta`` ``[N, H, k]``.
    """

    def __init__(self, edge_types: list[EdgeType], heads: int, channels: int,
                 relation_channels: int, dropout: float = 0.0, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.edge_types = [tuple(et) for et in edge_types]
        if len({et[2] for et in self.edge_types}) > 1:
            raise ValueError(f"RelationFusing fuses relations into one node type, got {self.edge_types}")
        channels = as_width(channels, "RelationFusing's channels (the width per head of the states "
                                      "and of the output)", lazy=False)
        relation_channels = as_width(relation_channels, "RelationFusing's relation_channels")
        self.heads, self.channels, self.relation_channels = heads, channels, relation_channels
        self.dropout, self.negative_slope = dropout, negative_slope
        k = len(self.edge_types)
        self.node_weight = nn.Parameter(torch.empty(k, heads, channels, channels))
        self.rel_weight = parameter(k, heads, relation_channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        leading_xavier_(self.node_weight)  # per relation on [H, D, D], as the official code
        if not is_lazy(self.rel_weight):  # initialised when the first forward sizes it
            leading_xavier_(self.rel_weight)

    def sync_widths(self) -> None:
        self.relation_channels = LAZY if is_lazy(self.rel_weight) else self.rel_weight.size(2)

    def initialize(self, relation_embedding: Tensor) -> None:
        """Sizes and initialises the relation weights from the embeddings' width."""
        width = relation_embedding.size(-1)
        if width % self.heads:
            raise ValueError(f"RelationFusing sizes relation_channels from the embeddings' width "
                             f"{width}, which is not divisible by heads ({self.heads})")
        materialize(self.rel_weight, (len(self.edge_types), self.heads, width // self.heads,
                                      self.channels))
        leading_xavier_(self.rel_weight)
        self.sync_widths()

    def forward(self, state: Mapping[EdgeType, Tensor],
                relation_embedding: Tensor) -> tuple[Tensor, Tensor]:
        H, D = self.heads, self.channels
        # A relation without a state (its source type absent from the input) is left out, as the
        # official HeteroConv leaves out a relation without edges; its beta is 0.
        present = [i for i, et in enumerate(self.edge_types) if et in state]
        if not present:
            raise ValueError(f"RelationFusing: none of the fused relations {self.edge_types} has a "
                             f"state (are their source types missing from x_dict?)")
        hs = [state[self.edge_types[i]] for i in present]
        for i, h in zip(present, hs, strict=True):
            if h.dim() != 2 or h.size(1) != H * D or h.size(0) != hs[0].size(0):
                raise ValueError(f"RelationFusing: the state of {self.edge_types[i]} must be "
                                 f"[{hs[0].size(0)}, {H * D}] (heads x channels), got {list(h.shape)}")
        width = "H * relation_channels" if is_lazy(self.rel_weight) else H * self.relation_channels
        if relation_embedding.dim() != 2 or relation_embedding.size(0) != len(self.edge_types) \
                or (not is_lazy(self.rel_weight) and relation_embedding.size(1) != width):
            raise ValueError(f"RelationFusing: relation_embedding must be [{len(self.edge_types)}, "
                             f"{width}], one row per fused relation in edge_types order, got "
                             f"{list(relation_embedding.shape)}")
        if is_lazy(self.rel_weight):
            self.initialize(relation_embedding)
        if len(hs) == 1:
            beta = hs[0].new_zeros(hs[0].size(0), H, len(self.edge_types))
            beta[:, :, present[0]] = 1.0
            return hs[0], beta
        index = torch.tensor(present, device=hs[0].device)
        h = torch.stack(hs).view(len(hs), -1, H, D)                                   # [k, N, H, D]
        h = torch.einsum("knhd,khde->knhe", h, self.node_weight[index])
        e = torch.einsum("khc,khcd->khd", relation_embedding[index].view(len(hs), H, -1),
                         self.rel_weight[index])
        scores = F.leaky_relu((h * e.unsqueeze(1)).sum(-1), self.negative_slope)       # [k, N, H]
        beta = torch.softmax(scores, dim=0)
        z = (h * beta.unsqueeze(-1)).sum(0)
        z = F.dropout(z, self.dropout, self.training).reshape(-1, H * D)
        if len(present) < len(self.edge_types):
            beta = beta.new_zeros(len(self.edge_types), *beta.shape[1:]).index_copy(0, index, beta)
        return z, beta.permute(1, 2, 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(heads={self.heads}, channels={self.channels}, " \
               f"num_relations={len(self.edge_types)})"
