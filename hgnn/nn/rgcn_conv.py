"""Relational graph convolution (Schlichtkrull et al., 2018) over typed node sets."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.nn.graph_input import graph_input, warn_unknown_relations
from hgnn.nn.lazy import LAZY, LazyInputModule, as_width, is_lazy, materialize, parameter
from hgnn.ops.typed import index_for, typed_linear_aggregate

EdgeType = tuple[str, str, str]


class RGCNConv(LazyInputModule):
    r"""Basis-free RGCN layer on ``x_dict`` / ``edge_index_dict``.

    .. math::
        h'_v = W_0^{\tau(v)} h_v + \sum_{r \in \mathcal{R}(\tau(v))} \frac{1}{|N_r(v)|}
               \sum_{u \in N_r(v)} W_r h_u + b^{\tau(v)}

    with one weight matrix per relation (no basis decomposition), a mean within each relation and a
    sum across relations (HGB's RGCN normalisation); the root term :math:`W_0` is optional
    (``root_weight``; HGB's runs leave it off). The relational term runs on
    :func:`hgnn.ops.typed.typed_linear_aggregate`: one fused aggregation for all relations, in
    whichever order (transform sources first, or aggregate first) moves fewer bytes, and no
    per-edge ``[E, F]`` message tensor.

    Args:
        in_channels: input width, shared by all types (the relation weights are stacked); ``-1``
            sizes it from the first forward (PyG's lazy initialisation), whose inputs must then
            share one width. A per-type dict or PyG's ``(source, destination)`` pair raises a
            ``ValueError``: project the types to one width first (:class:`~hgnn.nn.TypeEncoder`).
        out_channels: output width.
        edge_types: the relations ``(src, rel, dst)``; messages flow src -> dst.
        node_types: every node type (a type without incoming relations keeps only its root term,
            or zeros plus bias without one).
        root_weight: add the per-type self term :math:`W_0`.
        bias: add a per-type bias.

    Shapes: ``x_dict[t]`` ``[N_t, in_channels]``; ``edge_index_dict[r]`` ``[2, E_r]``;
    output ``{t: [N_t, out_channels]}``.
    """

    def __init__(self, in_channels: int, out_channels: int, edge_types: list[EdgeType],
                 node_types: list[str], root_weight: bool = True, bias: bool = True) -> None:
        super().__init__()
        if isinstance(in_channels, dict | tuple | list):
            raise ValueError(
                "RGCNConv's in_channels must be one width shared by every node type (its relation "
                "weights are stacked), or -1 to size it at the first forward; got "
                f"{in_channels!r}. Project the types to one width first (hgnn.nn.TypeEncoder)")
        in_channels = as_width(in_channels, "RGCNConv's in_channels")
        out_channels = as_width(out_channels, "RGCNConv's out_channels", lazy=False)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.edge_types = [tuple(et) for et in edge_types]
        self.node_types = list(node_types)
        self.weight = parameter(len(self.edge_types), in_channels, out_channels)
        self.root = nn.ParameterDict({
            t: parameter(in_channels, out_channels) for t in self.node_types
        }) if root_weight else None
        self.bias = nn.ParameterDict({
            t: nn.Parameter(torch.empty(out_channels)) for t in self.node_types
        }) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset_weights()
        if self.bias is not None:
            for p in self.bias.values():
                nn.init.zeros_(p)

    def _reset_weights(self) -> None:
        if is_lazy(self.weight):  # initialised when the first forward sizes them
            return
        bound = math.sqrt(6.0 / (self.in_channels + self.out_channels))  # Glorot, as PyG's RGCNConv
        nn.init.uniform_(self.weight, -bound, bound)
        if self.root is not None:
            for p in self.root.values():
                nn.init.uniform_(p, -bound, bound)

    def sync_widths(self) -> None:
        self.in_channels = LAZY if is_lazy(self.weight) else self.weight.size(1)

    def initialize(self, x_dict: dict[str, Tensor]) -> None:
        """Sizes and initialises the lazy weights from ``x_dict``'s one width."""
        widths = {t: x.size(-1) for t, x in x_dict.items()}
        if len(set(widths.values())) != 1:
            raise ValueError("RGCNConv built with in_channels=-1 sizes its weights from one width "
                             f"shared by every node type; the first forward gave {widths}")
        width = next(iter(widths.values()))
        materialize(self.weight, (len(self.edge_types), width, self.out_channels))
        for p in (self.root.values() if self.root is not None else ()):
            materialize(p, (width, self.out_channels))
        self.sync_widths()
        self._reset_weights()

    def forward(self, x_dict: dict[str, Tensor] | HeteroData,
                edge_index_dict: dict[EdgeType, Tensor] | None = None) -> dict[str, Tensor]:
        x_dict, edge_index_dict = graph_input(x_dict, edge_index_dict)
        warn_unknown_relations(self, edge_index_dict, lambda et: tuple(et) in self.edge_types)
        if self.has_lazy():
            self.initialize(x_dict)
        out: dict[str, Tensor] = {}
        for t, x in x_dict.items():
            if self.root is not None and t in self.root:
                out[t] = x @ self.root[t]
            else:
                out[t] = x.new_zeros(x.size(0), self.out_channels)
        present = {et: edge_index_dict[et] for et in self.edge_types
                   if et in edge_index_dict and et[0] in x_dict and et[2] in x_dict}
        if present:
            index = index_for(present, {t: x.size(0) for t, x in x_dict.items()})
            weight = self.weight[[self.edge_types.index(et) for et in index.edge_types]]
            msgs = typed_linear_aggregate(x_dict, index, weight, reduce="mean")
            out = {t: out[t] + msgs[t] for t in out}
        if self.bias is not None:
            out = {t: h + self.bias[t] if t in self.bias else h for t, h in out.items()}
        return out

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"num_relations={len(self.edge_types)}, root_weight={self.root is not None})")
