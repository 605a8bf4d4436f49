"""LATTE node classifier (Tran & Gao, arXiv 2009.08072) as the official code runs it
(JonnyTran/LATTE ``models.py: LATTENodeClf``, ``conv.py: LATTE``), on :mod:`hgnn.nn.latte_conv`
and :mod:`hgnn.nn.latte`."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError
from hgnn.models.base import HeteroModel
from hgnn.nn.latte import LATTE as LATTEStack
from hgnn.nn.latte_conv import NORMS, PROXIMITY_WEIGHTS
from hgnn.nn.type_encoder import SparseInputLinear, input_channels

COVERAGE = "share of nodes with edges"


class LATTE(HeteroModel):
    """Input encoding, :class:`~hgnn.nn.latte.LATTE` (``layers`` LATTEConv layers over
    meta-relations of order 1..T, outputs concatenated) and ``Dropout -> Linear`` on the target type.

    * Attributed types: ``Dropout(ReLU(Linear_tau(x)))``; featureless types (``x`` = node ids): a
      learned ``nn.Embedding`` row per node, used as is (no activation, no dropout), as the
      official ``LATTE.forward``.
    * ``proximity`` turns on the LATTE-2proximity variant: the proximity loss of each training
      forward is exposed by :meth:`auxiliary_loss` and added to the task loss by the trainer;
      ``proximity_weights`` weights its positive edges by the layer's attention (``attention``,
      the official code's) or by the joined adjacency values (``given``).
    * :meth:`no_weight_decay` lists biases, sharpening scalars and embeddings, the official
      ``no_decay = ['bias', 'alpha_activation', 'embedding']`` groups.
    * :meth:`explain` returns the mean relation-level weight :math:`\\beta` of each slot per type.
    """

    name = "latte"
    regimes = ("full", "sampled")

    def __init__(self, in_channels: dict[str, int], metadata, target: str, out_channels: int,
                 hidden: int = 128, layers: int = 2, heads: int = 2, attn_dropout: float = 0.2,
                 dropout: float = 0.2, classifier_dropout: float = 0.4, edge_threshold: float = 0.5,
                 neg_ratio: float = 2.0, proximity: bool = False, norm: str = "none",
                 proximity_weights: str = "attention") -> None:
        super().__init__()
        node_types, edge_types = metadata
        self.target, self.proximity, self.dropout = target, proximity, dropout
        self.inputs = nn.ModuleDict({
            t: nn.Embedding(-c, hidden) if c < 0 else SparseInputLinear(c, hidden)
            for t, c in in_channels.items()
        })
        self.encoder = LATTEStack(hidden, list(node_types), [tuple(et) for et in edge_types], layers,
                                  heads, attn_dropout, dropout, edge_threshold, norm=norm,
                                  neg_ratio=neg_ratio, proximity_weights=proximity_weights)
        self.classifier = nn.Sequential(nn.Dropout(classifier_dropout),
                                        nn.Linear(self.encoder.out_channels, out_channels))
        self._aux: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        relu = nn.init.calculate_gain("relu")
        for m in self.inputs.values():
            m.reset_parameters()
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight, gain=relu)
        self.encoder.reset_parameters()
        self.classifier[1].reset_parameters()
        # models.py DenseClassification.reset_parameters: glorot on the weight, default bias
        nn.init.xavier_uniform_(self.classifier[1].weight)

    @classmethod
    def default_config(cls) -> dict:
        return {"hidden": 128, "layers": 2, "heads": 2, "attn_dropout": 0.2, "dropout": 0.2,
                "classifier_dropout": 0.4, "edge_threshold": 0.5, "neg_ratio": 2.0,
                "proximity": False, "proximity_weights": "attention", "norm": "none"}

    @classmethod
    def config_choices(cls) -> dict[str, tuple]:
        return {"norm": NORMS, "proximity_weights": PROXIMITY_WEIGHTS}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> LATTE:
        if config["layers"] < 1:
            raise HgnnError(f"model.layers must be >= 1, got {config['layers']}")
        if config["heads"] < 1 or config["hidden"] % config["heads"]:
            raise HgnnError(f"model.hidden ({config['hidden']}) must be a multiple of model.heads "
                            f"({config['heads']})")
        if not any(et[2] == task.target for et in data.edge_types):
            raise HgnnError(f"LATTE: no relation ends at the target type '{task.target}' (add "
                            "reverse relations with graph.add_reverse)")
        return cls(input_channels(data.x_dict), data.metadata(), task.target, task.num_classes,
                   config["hidden"], config["layers"], config["heads"], config["attn_dropout"],
                   config["dropout"], config["classifier_dropout"], config["edge_threshold"],
                   config["neg_ratio"], config["proximity"], config["norm"],
                   config["proximity_weights"])

    def encode(self, x_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """The layer-0 representations ``{t: [N_t, hidden]}``."""
        out = {}
        for t, x in x_dict.items():
            if t not in self.inputs:
                continue
            if isinstance(self.inputs[t], nn.Embedding):
                out[t] = self.inputs[t](x)
            else:
                out[t] = F.dropout(F.relu(self.inputs[t](x)), self.dropout, self.training)
        return out

    def output_layer(self) -> nn.Module:
        return self.classifier[1]

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict) -> Tensor:
        h = self.encode(x_dict)
        if self.proximity and self.training:
            out, details = self.encoder(h, edge_index_dict, return_details=True)
            self._aux = self.encoder.proximity_loss(details)
        else:
            out = self.encoder(h, edge_index_dict, output_types=[self.target])
            self._aux = None
        return self.classifier(out[self.target])

    def auxiliary_loss(self) -> Tensor | None:
        """The proximity loss of the last training forward (``None`` without ``proximity``)."""
        return self._aux

    def no_weight_decay(self) -> set[str]:
        """Biases, the sharpening scalars and the node embeddings."""
        embeddings = {f"inputs.{t}.weight" for t, m in self.inputs.items()
                      if isinstance(m, nn.Embedding)}
        return {n for n, _ in self.named_parameters()
                if n.endswith("bias") or n.endswith("sharpening") or n in embeddings}

    @torch.no_grad()
    def explain(self, x_dict: dict[str, Tensor], edge_index_dict: dict) -> dict[str, dict[str, float]]:
        """Per node type, the mean over its nodes of the relation-level weight :math:`\\beta` of each
        slot: the meta-relation names (``src__rel__dst``, chains for order >= 2) and ``"self"``
        (``"self@t"`` for layer t >= 2); then, under ``"<type>: share of nodes with edges"``, the
        share of the type's nodes that have an edge of each slot (a slot without edges still takes
        weight, on a zero message). Computed in eval mode; the training mode is restored."""
        was_training = self.training
        self.eval()
        try:
            _, details = self.encoder(self.encode(x_dict), edge_index_dict, return_details=True)
            out = self.encoder.relation_weights(details)
            for t, rows in self.encoder.relation_coverage(details).items():
                out[f"{t}: {COVERAGE}"] = rows
            return out
        finally:
            self.train(was_training)
