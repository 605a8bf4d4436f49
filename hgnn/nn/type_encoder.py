"""Per-node-type input projection to a shared width."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class TypeEncoder(nn.Module):
    r"""Projects each node type's input to ``out_channels``.

    .. math::
        h_v = \sigma(W_{\tau(v)} x_v + b_{\tau(v)}) \quad\text{or}\quad h_v = \sigma(E_{\tau(v)}[x_v])

    A type whose ``x`` holds float features gets a ``Linear``; a type whose ``x`` holds long node ids
    (featureless types, see :func:`hgnn.train.graph.prepare_graph`) gets an ``Embedding`` row per
    node, which equals a one-hot input times a weight matrix, as HGB's baselines use.

    Args:
        in_channels: ``{node_type: feature width}``, or ``{node_type: -num_nodes}`` for id inputs.
        out_channels: output width.
        activation: ``"none"``, ``"relu"`` or ``"tanh"`` (HGB's HGT applies tanh).

    Shapes: ``x_dict[t]`` is ``[N_t, F_t]`` float or ``[N_t]`` long; output ``[N_t, out_channels]``.
    """

    def __init__(self, in_channels: dict[str, int], out_channels: int,
                 activation: str = "none") -> None:
        super().__init__()
        self.proj = nn.ModuleDict({
            t: nn.Embedding(-c, out_channels) if c < 0 else nn.Linear(c, out_channels)
            for t, c in in_channels.items()
        })
        self.activation = {"none": nn.Identity(), "relu": nn.ReLU(), "tanh": nn.Tanh()}[activation]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.proj.values():
            m.reset_parameters()

    def forward(self, x_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        return {t: self.activation(self.proj[t](x)) for t, x in x_dict.items() if t in self.proj}


def input_channels(x_dict: dict[str, Tensor]) -> dict[str, int]:
    """The ``in_channels`` argument of :class:`TypeEncoder` for a graph's ``x_dict``."""
    return {t: -x.size(0) if x.dtype == torch.long else x.size(-1) for t, x in x_dict.items()}
