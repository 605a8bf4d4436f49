"""MLP on the target type's own features: the graph-free baseline."""
from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.models.base import HeteroModel
from hgnn.nn.type_encoder import TypeEncoder, input_channels


class MLP(HeteroModel):
    """``layers`` linear layers with ReLU and dropout on the target type's ``x``; edges unused."""

    name = "mlp"
    regimes = ("full", "sampled")

    def __init__(self, target: str, in_channels: int, hidden: int, out_channels: int,
                 layers: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.target = target
        self.encoder = TypeEncoder({target: in_channels}, hidden if layers > 1 else out_channels)
        blocks: list[nn.Module] = []
        for i in range(1, layers):
            blocks += [nn.ReLU(), nn.Dropout(dropout),
                       nn.Linear(hidden, out_channels if i == layers - 1 else hidden)]
        self.head = nn.Sequential(nn.Dropout(dropout), *blocks) if layers > 1 else nn.Identity()

    @classmethod
    def default_config(cls) -> dict:
        return {"hidden": 256, "layers": 2, "dropout": 0.5}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> MLP:
        channels = input_channels(data.x_dict)[task.target]
        return cls(task.target, channels, config["hidden"], task.num_classes, config["layers"],
                   config["dropout"])

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict | None = None) -> Tensor:
        return self.head(self.encoder({self.target: x_dict[self.target]})[self.target])
