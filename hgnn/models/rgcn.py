"""RGCN node classifier (Schlichtkrull et al., ESWC'18), as HGB's baseline runs it."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.models.base import HeteroModel
from hgnn.nn.rgcn_conv import RGCNConv
from hgnn.nn.type_encoder import TypeEncoder, input_channels


class RGCN(HeteroModel):
    """Per-type input projection, then ``layers`` basis-free :class:`RGCNConv` layers (ReLU and
    dropout between them); the last layer outputs class logits for the target type."""

    name = "rgcn"
    regimes = ("full", "sampled")

    def __init__(self, in_channels: dict[str, int], metadata, target: str, hidden: int,
                 out_channels: int, layers: int = 2, dropout: float = 0.0,
                 root_weight: bool = False) -> None:
        super().__init__()
        node_types, edge_types = metadata
        self.target = target
        self.encoder = TypeEncoder(in_channels, hidden)
        self.convs = nn.ModuleList([
            RGCNConv(hidden, out_channels if i == layers - 1 else hidden, edge_types, node_types,
                     root_weight=root_weight)
            for i in range(layers)
        ])
        self.dropout = dropout

    @classmethod
    def default_config(cls) -> dict:
        return {"hidden": 64, "layers": 2, "dropout": 0.2, "root_weight": True}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> RGCN:
        return cls(input_channels(data.x_dict), data.metadata(), task.target, config["hidden"],
                   task.num_classes, config["layers"], config["dropout"], config["root_weight"])

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict) -> Tensor:
        h = self.encoder(x_dict)
        for i, conv in enumerate(self.convs):
            if i > 0:
                h = {t: F.dropout(F.relu(v), self.dropout, self.training) for t, v in h.items()}
            h = conv(h, edge_index_dict)
        return h[self.target]
