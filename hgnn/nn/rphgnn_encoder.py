"""RpHGNN's learnable part: an encoder over pre-computed hop groups (``RpHGNNEncoder``)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgnn.nn.lazy import LAZY, LazyInputModule, as_width, is_lazy, linear, materialize_linear

MERGES = ("concat", "mean")


def _mlp(widths: list[int], dropout: float, last_plain: bool) -> nn.Sequential:
    """``Linear -> PReLU -> Dropout`` per layer; with ``last_plain`` the last layer is a bare
    Linear (the official global MLP ends in an identity activation)."""
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(linear(widths[i], widths[i + 1]))
        if not (last_plain and i == len(widths) - 2):
            layers += [nn.PReLU(num_parameters=1, init=0.25), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class HopConv(nn.Module):
    r"""The official kernel-1 ``Conv1d(hops, filters, 1)`` over ``[N, hops, d]``: the hop axis is
    the channel axis, so each filter is a learned mix of hops applied at every feature position,
    :math:`Z[n, f, :] = \sum_h W[f, h] X[n, h, :] + b[f]`.

    Same parameters and Xavier fans as the Conv1d (``weight`` ``[filters, hops]``, ``bias``
    ``[filters]``), computed as one batched matmul, which on CPU runs several times faster than
    ``nn.Conv1d``'s kernel-1 convolution.
    """

    def __init__(self, hops: int, filters: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(filters, hops))
        self.bias = nn.Parameter(torch.empty(filters))
        nn.init.xavier_normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, hops, d]`` -> ``[N, filters, d]``."""
        return torch.matmul(self.weight, x) + self.bias[:, None]


class RpHGNNEncoder(LazyInputModule):
    r"""Hop-group encoder of RpHGNN (official ``RpHGNNEncoder``).

    Input: ``G`` groups :math:`X_g \in \mathbb{R}^{N \times H_g \times d_g}` (``H_g`` hops of width
    ``d_g``, from :func:`hgnn.nn.rphgnn.rphgnn_precompute`). For each group:

    .. math::
        \tilde X_g &= \mathrm{Dropout}_{p_{in}}(X_g) \\
        Z_g[n, f, :] &= \sum_{h=1}^{H_g} W_g[f, h]\, \tilde X_g[n, h, :] + b_g[f]
            \qquad f < F_g \quad(\text{kernel-1 Conv1d over the hop axis}) \\
        U_g &= \mathrm{MLP}_g(\mathrm{flatten}(Z_g)) \in \mathbb{R}^{N \times \mathrm{hidden}}

    with :math:`F_g` = ``conv_filters`` (1 for single-hop groups) and :math:`\mathrm{MLP}_g` =
    ``group_layers`` times (Linear -> PReLU -> Dropout_p), the last layer included. Then

    .. math::
        U = [U_1 \Vert \dots \Vert U_G] \ (\texttt{concat}) \ \text{or}\
            \tfrac{1}{G}\sum_g U_g \ (\texttt{mean}), \qquad
        \mathrm{logits} = \mathrm{MLP}_{glob}(U) \in \mathbb{R}^{N \times C},

    :math:`\mathrm{MLP}_{glob}` being ``global_layers - 1`` times (Linear -> PReLU -> Dropout_p)
    then a plain Linear to ``C``. PReLU has one slope per layer (init 0.25); weights are
    Xavier-normal, biases zero.

    Args:
        group_shapes: ``(hops, width)`` of each group, in input order; a width of ``-1`` is
            sized from the first forward (PyG's lazy initialisation). ``hops`` sets the hop
            convolution (one filter for one hop), so it is a positive int.
        hidden: width of every hidden layer.
        out_channels: ``C``.
        conv_filters: Conv1d output channels per group (``conv_filters`` = 2 in all scripts).
        group_layers: layers of each group's MLP (``num_layers_list[0]``), >= 1.
        global_layers: layers of the global MLP (``num_layers_list[2]``), >= 1.
        merge: ``"concat"`` or ``"mean"``.
        input_dropout: dropout on every input group.
        dropout: dropout after every hidden layer.
    """

    def __init__(self, group_shapes: Sequence[tuple[int, int]], hidden: int, out_channels: int,
                 conv_filters: int = 2, group_layers: int = 2, global_layers: int = 2,
                 merge: str = "concat", input_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        if group_layers < 1 or global_layers < 1:
            raise ValueError("group_layers and global_layers must be >= 1")
        if not group_shapes or isinstance(group_shapes, dict):
            raise ValueError("RpHGNNEncoder needs group_shapes, one (hops, width) pair per group, "
                             f"got {group_shapes!r}")
        self.group_shapes = [(as_width(h, f"RpHGNNEncoder's hops of group {g}", lazy=False),
                              as_width(d, f"RpHGNNEncoder's width of group {g}"))
                             for g, (h, d) in enumerate(group_shapes)]
        self.merge = merge
        self.input_dropout = input_dropout
        filters = [1 if h == 1 else conv_filters for h, _ in self.group_shapes]
        self.hop_convs = nn.ModuleList([HopConv(h, f) for (h, _), f in
                                        zip(self.group_shapes, filters, strict=True)])
        self.group_mlps = nn.ModuleList([
            _mlp([LAZY if d == LAZY else f * d] + [hidden] * group_layers, dropout, last_plain=False)
            for (_, d), f in zip(self.group_shapes, filters, strict=True)
        ])
        merged = hidden * len(self.group_shapes) if merge == "concat" else hidden
        self.global_mlp = _mlp([merged] + [hidden] * (global_layers - 1) + [out_channels], dropout,
                               last_plain=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | HopConv):
                if not is_lazy(m.weight):  # a lazy one is initialised when the forward sizes it
                    nn.init.xavier_normal_(m.weight)
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.PReLU):
                nn.init.constant_(m.weight, 0.25)

    def sync_widths(self) -> None:
        self.group_shapes = [
            (h, LAZY if is_lazy(mlp[0].weight) else mlp[0].in_features // conv.weight.size(0))
            for (h, _), conv, mlp in zip(self.group_shapes, self.hop_convs, self.group_mlps,
                                         strict=True)]

    def initialize(self, groups: Sequence[Tensor]) -> None:
        """Sizes and initialises the first layer of each lazily sized group's MLP."""
        for x, conv, mlp in zip(groups, self.hop_convs, self.group_mlps, strict=True):
            first = mlp[0]
            if materialize_linear(first, conv.weight.size(0) * x.size(-1)):
                nn.init.xavier_normal_(first.weight)
                nn.init.zeros_(first.bias)
        self.sync_widths()

    def forward(self, groups: Sequence[Tensor]) -> Tensor:
        """``groups[g]``: ``[N, H_g, d_g]`` -> logits ``[N, C]``."""
        if len(groups) != len(self.group_shapes):
            raise ValueError(f"expected {len(self.group_shapes)} groups, got {len(groups)}")
        if self.has_lazy():
            self.initialize(groups)
        outs = []
        for x, conv, mlp in zip(groups, self.hop_convs, self.group_mlps, strict=True):
            x = F.dropout(x, self.input_dropout, self.training)
            outs.append(mlp(conv(x).flatten(1)))
        h = torch.stack(outs).mean(0) if self.merge == "mean" else torch.cat(outs, dim=-1)
        return self.global_mlp(h)

