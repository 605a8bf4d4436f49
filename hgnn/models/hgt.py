"""HGT node classifier (Hu et al., WWW'20), as HGB's baseline configures it, on hgnn's fused
:class:`~hgnn.nn.hgt_conv.HGTConv` (PyG ``HGTConv``'s parameters and semantics)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.models.base import HeteroModel
from hgnn.nn.hgt_conv import HGTConv
from hgnn.nn.type_encoder import TypeEncoder, input_channels


class HGT(HeteroModel):
    """``tanh`` per-type input projection, ``layers`` ``HGTConv`` layers (each followed by an
    optional per-type LayerNorm and dropout), and a linear classifier on the target type.

    ``HGTConv`` (like PyG's) softmaxes attention over all incoming edges of a node across relations
    and adds a gated residual per type; HGB's DGL HGT softmaxes per relation and averages relations
    (``model.softmax: relation``).
    A node type with no incoming relation gets no output from the conv; it keeps its state here.
    """

    name = "hgt"
    regimes = ("full", "sampled")

    def __init__(self, in_channels: dict[str, int], metadata, target: str, hidden: int,
                 out_channels: int, layers: int = 2, heads: int = 8, dropout: float = 0.2,
                 use_norm: bool = False, softmax: str = "all") -> None:
        super().__init__()
        node_types, _ = metadata
        self.target = target
        self.encoder = TypeEncoder(in_channels, hidden, activation="tanh")
        self.convs = nn.ModuleList([HGTConv(hidden, hidden, metadata, heads=heads, softmax=softmax)
                                    for _ in range(layers)])
        self.norms = nn.ModuleList([
            nn.ModuleDict({t: nn.LayerNorm(hidden) for t in node_types}) if use_norm else
            nn.ModuleDict() for _ in range(layers)
        ])
        self.dropout = dropout
        self.classifier = nn.Linear(hidden, out_channels)

    @classmethod
    def default_config(cls) -> dict:
        return {"hidden": 64, "layers": 2, "heads": 8, "dropout": 0.2, "use_norm": False,
                "softmax": "all"}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> HGT:
        return cls(input_channels(data.x_dict), data.metadata(), task.target, config["hidden"],
                   task.num_classes, config["layers"], config["heads"], config["dropout"],
                   config["use_norm"], config["softmax"])

    def output_layer(self) -> nn.Module:
        return self.classifier

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict) -> Tensor:
        h = self.encoder(x_dict)
        for conv, norms in zip(self.convs, self.norms, strict=True):
            out = conv(h, edge_index_dict)
            out = {t: out[t] if out.get(t) is not None else h[t] for t in h}
            out = {t: norms[t](v) if t in norms else v for t, v in out.items()}
            h = {t: F.dropout(v, self.dropout, self.training) for t, v in out.items()}
        return self.classifier(h[self.target])
