"""GTN node classifier (Yun et al., NeurIPS'19), as its official ``main.py`` / ``main_sparse.py``
run it: the baseline of LATTE's tables on GTN's ACM / DBLP / IMDB."""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError
from hgnn.models.base import HeteroModel
from hgnn.nn.gtn_conv import NORMALIZATIONS, GTNConv, MetaPathTooLarge
from hgnn.nn.type_encoder import TypeEncoder, input_channels

TOP_METAPATHS = 5


def select_lr(start: float, decay: float, floor: float) -> Callable[[int], float]:
    """GTN's "adaptive" learning rate of the relation selections at epoch ``e`` (0-based): before
    every epoch's step, a rate above ``floor`` (the base rate) is multiplied by ``decay``."""
    def at(epoch: int) -> float:
        lr = start
        for _ in range(epoch + 1):
            if lr > floor:
                lr *= decay
        return lr
    return at


class GTN(HeteroModel):
    """Every node in one id space (node types in graph order, GTN's layout), the relations and
    the identity as :class:`GTNConv`'s candidates, then ReLU per channel, ``Linear(C * hidden,
    hidden)``, ReLU and ``Linear(hidden, classes)`` on the target type's rows. No dropout.

    GTN multiplies every node's features by one weight (its datasets give every type one width).
    Where the widths differ, or a type has no features, each type gets its own projection
    (:class:`TypeEncoder`: a linear map, or an embedding row per node) instead."""

    name = "gtn"
    regimes = ("full",)

    def __init__(self, node_types: list[str], num_relations: int, target: str,
                 in_channels: dict[str, int], hidden: int, out_channels: int, channels: int = 2,
                 layers: int = 2, normalization: str = "row", select_lr: float = 0.0,
                 select_lr_decay: float = 0.9) -> None:
        super().__init__()
        self.node_types, self.target = list(node_types), target
        widths = set(in_channels.values())
        shared = len(widths) == 1 and min(widths) > 0
        self.encoder = None if shared else TypeEncoder(in_channels, hidden)
        self.conv = GTNConv(min(widths) if shared else None, hidden, num_relations + 1, channels,
                            layers, normalization)
        self.linear1 = nn.Linear(channels * hidden, hidden)
        self.linear2 = nn.Linear(hidden, out_channels)
        self.select_lr, self.select_lr_decay = select_lr, select_lr_decay

    @property
    def num_layers(self) -> int:
        return self.conv.layers

    @classmethod
    def default_config(cls) -> dict:
        return {"hidden": 64, "channels": 2, "layers": 2, "normalization": "row",
                "select_lr": 0.0, "select_lr_decay": 0.9}

    @classmethod
    def config_choices(cls) -> dict[str, tuple]:
        return {"normalization": NORMALIZATIONS}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> GTN:
        return cls(data.node_types, len(data.edge_types), task.target, input_channels(data.x_dict),
                   config["hidden"], task.num_classes, config["channels"], config["layers"],
                   config["normalization"], config["select_lr"], config["select_lr_decay"])

    def lr_groups(self, lr: float) -> list[tuple[list[str], Callable[[int], float]]]:
        if not self.select_lr:  # 0: the selections train at the base rate
            return []
        return [(["conv.selection"], select_lr(self.select_lr, self.select_lr_decay, lr))]

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict) -> Tensor:
        x_dict = {t: x_dict[t] for t in self.node_types}  # GTN's id order: the graph's types
        if self.encoder is not None:
            x_dict = self.encoder(x_dict)
        try:
            h = self.conv(x_dict, edge_index_dict)[self.target]
        except MetaPathTooLarge as exc:
            raise HgnnError(str(exc)) from None
        return self.linear2(F.relu(self.linear1(F.relu(h))))

    def output_layer(self) -> nn.Module:
        return self.linear2

    def explain(self, x_dict: dict[str, Tensor], edge_index_dict: dict) -> dict[str, dict[str, float]]:
        """Per selection (``layer m, channel c``), GTN's softmax weight of each relation; then per
        channel the ``TOP_METAPATHS`` strongest meta-paths through the target type, scored as
        GTN's paper ranks them: the product of the weights that select each step, summed over the
        selections that give the same path (the identity drops out of a path). Row
        normalisation aggregates along the path, so the paths start at the target type, which
        reads their end; column normalisation aggregates against it, so they end there."""
        edge_types = [tuple(et) for et in edge_index_dict]
        names = ["__".join(et) for et in edge_types] + ["identity"]
        w = self.conv.selections().detach()
        out = {f"selection {m}, channel {c}": dict(zip(names, map(float, w[m, c]), strict=True))
               for m in range(w.size(0)) for c in range(w.size(1))}
        row = self.conv.normalization == "row"
        for c in range(w.size(1)):
            scores: dict[str, float] = {}
            for path in itertools.product(range(len(names)), repeat=w.size(0)):
                steps = [edge_types[k] for k in path if k < len(edge_types)]
                if not steps or (steps[0][0] if row else steps[-1][2]) != self.target:
                    continue
                if all(a[2] == b[0] for a, b in zip(steps, steps[1:], strict=False)):
                    label = steps[0][0] + "".join(f" -[{r}]-> {d}" for _, r, d in steps)
                    score = math.prod(float(w[m, c, k]) for m, k in enumerate(path))
                    scores[label] = scores.get(label, 0.0) + score
            top = sorted(scores.items(), key=lambda kv: -kv[1])[:TOP_METAPATHS]
            out[f"meta-paths, channel {c}"] = dict(top)
        return out
