"""RpHGNN (Hu, Hooi, He, TKDE 2024): random-projection pre-computation plus a hop-group encoder."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import relation_index
from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError
from hgnn.models.base import HeteroModel
from hgnn.nn.rphgnn import check_reverses, group_layout, node_features, rphgnn_precompute
from hgnn.nn.rphgnn_encoder import MERGES, RpHGNNEncoder


class RpHGNN(HeteroModel):
    """Pre-computed model: :func:`~hgnn.nn.rphgnn.rphgnn_precompute` turns the graph into hop
    groups ``{key: [N_target, K(+1), d_g]}`` (float16) once; :class:`RpHGNNEncoder` maps a batch of
    their rows to logits.

    The random projections are drawn from a generator seeded by ``proj_seed``, a buffer drawn from
    the global torch RNG when the model is built (the trainer seeds that RNG per run). Being a
    buffer, it is saved with the weights, so a checkpoint re-opened by ``hgnn evaluate`` recomputes
    exactly the groups it was trained on.

    ``precompute_dir`` (config ``model.precompute_dir``), when set, makes the pre-computation write
    the groups there as float16 files and train from memory maps of them, for graphs whose groups
    do not fit in RAM (ogbn-mag: about 12 GB).
    """

    name = "rphgnn"
    regimes = ("precomputed",)

    def __init__(self, target: str, group_keys: list[str], group_shapes: list[tuple[int, int]],
                 out_channels: int, hidden: int = 512, num_hops: int = 5, use_input: bool = False,
                 input_dropout: float = 0.0, dropout: float = 0.5, merge: str = "concat",
                 group_layers: int = 2, global_layers: int = 2, conv_filters: int = 2,
                 sparsity: float = 3.0, precompute_dir: str = "") -> None:
        super().__init__()
        self.precompute_dir = precompute_dir
        self.target = target
        self.group_keys = list(group_keys)
        self.num_hops, self.use_input, self.sparsity = num_hops, use_input, sparsity
        self.encoder = RpHGNNEncoder(group_shapes, hidden, out_channels, conv_filters, group_layers,
                                     global_layers, merge, input_dropout, dropout)
        self.register_buffer("proj_seed", torch.randint(0, 2**62, ()), persistent=True)

    @classmethod
    def default_config(cls) -> dict:
        return {"hidden": 512, "num_hops": 5, "use_input": False, "input_dropout": 0.8,
                "dropout": 0.8, "merge": "concat", "group_layers": 2, "global_layers": 2,
                "conv_filters": 2, "sparsity": 3.0, "precompute_dir": ""}

    @classmethod
    def config_choices(cls) -> dict[str, tuple]:
        return {"merge": tuple(MERGES)}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> RpHGNN:
        if config["num_hops"] < 1:
            raise HgnnError(f"model.num_hops must be >= 1, got {config['num_hops']}")
        try:
            index = relation_index(data)
            check_reverses(index)
            in_dims = {t: x.size(1) for t, x in node_features(data).items()}
        except ValueError as exc:
            raise HgnnError(str(exc)) from None
        layout = group_layout(index, in_dims, task.target, config["num_hops"], config["use_input"])
        if not layout:
            raise HgnnError(f"RpHGNN: target type '{task.target}' is in no relation")
        return cls(task.target, [g.key for g in layout], [(g.hops, g.width) for g in layout],
                   task.num_classes, config["hidden"], config["num_hops"], config["use_input"],
                   config["input_dropout"], config["dropout"], config["merge"],
                   config["group_layers"], config["global_layers"], config["conv_filters"],
                   config["sparsity"], config["precompute_dir"])

    def precompute(self, data: HeteroData) -> dict[str, Tensor]:
        gen = torch.Generator().manual_seed(int(self.proj_seed))
        feats = rphgnn_precompute(data, self.target, self.num_hops, self.use_input, gen,
                                  s=self.sparsity, store=self.precompute_dir or None)
        if list(feats) != self.group_keys:
            raise HgnnError(f"RpHGNN: the graph's groups {list(feats)} differ from the model's "
                            f"{self.group_keys}")
        return feats

    def forward(self, rows: dict[str, Tensor]) -> Tensor:
        """``rows[key]``: ``[B, hops, d_g]`` per group -> logits ``[B, C]``."""
        return self.encoder([rows[k] for k in self.group_keys])
