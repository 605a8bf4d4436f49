"""H2G-former node classifier (Lin et al., "When Heterophily Meets Heterogeneity", H2GB, KDD'25):
H2GB's ``GTModel`` with ``SparseNodeTransformer`` layers, ``Type`` FFN and the masked label
embedding, as the ``configs/*/*-H2Gformer.yaml`` files of ``junhongmit/H2GB`` configure it."""
from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError
from hgnn.models.base import HeteroModel
from hgnn.nn.h2gformer_layer import ACTIVATIONS, H2GFormerLayer
from hgnn.nn.hetero_label_encoder import MaskedLabelEncoder
from hgnn.nn.type_encoder import TypeEncoder, input_channels


class H2GFormer(HeteroModel):
    r"""Encoders, a pre-transformer layer, ``layers`` :class:`~hgnn.nn.h2gformer_layer.H2GFormerLayer`
    and a linear head on the target type:

    .. math::
        h^{(0)}_v &= W^{raw}_{\tau(v)} x_v + b \;\; (\text{or } E_{\tau(v)}[v] \text{ for
            featureless types}) \;+\; [\tau(v) = \text{target}]\; \mathrm{LabelEmb}(v) \\
        h^{(1)}_v &= \mathrm{ReLU}(\mathrm{Dropout}_{p_{pre}}(W^{pre}_{\tau(v)}
            \mathrm{Dropout}_{p_{in}}(h^{(0)}_v) + b)) \\
        h^{(l+1)} &= \mathrm{H2GFormerLayer}_l(h^{(l)}) \\
        \hat y_v &= W^{out} h^{(L+1)}_v + b \qquad (v \text{ of the target type})

    ``Hetero_Raw`` is the per-type Linear (no activation), ``Hetero_Label`` the
    :class:`~hgnn.nn.hetero_label_encoder.MaskedLabelEncoder` added to the target rows, the pre-GT
    layer GraphGym's ``GeneralLayer`` (Linear, Dropout(``gnn.dropout``), ReLU; no LayerNorm, since
    ``gnn.layer_norm`` defaults to False) and the head ``HeteroGNNNodeHead`` with one layer.
    H2GB's metapath2vec positional encoding (ogbn-mag, mag-year) is not included.

    Config (``model.*``): ``dim`` (``gt.dim_hidden``), ``layers`` (``gt.layers``), ``heads``,
    ``dropout`` (``gt.dropout``), ``attn_dropout`` (``gt.attn_dropout``), ``pre_dropout``
    (``gnn.dropout``, the pre-GT layer), ``input_dropout`` (``gt.input_dropout``), ``act``
    (``gt.act``, the FFN's: gelu or relu), ``score_clamp`` (5; 0 = none), ``label_embedding``,
    ``label_mask_rate`` (0.7), ``mask_seeds`` (false = H2GB's leaky masking; true hides the seeds'
    own labels, sampled regime only). Binary tasks keep two logits and cross-entropy (H2GB: one
    logit and BCE); the label embedding has C + 1 = 3 inputs either way.

    The model reads the target labels (``uses_labels``): the regimes call
    :meth:`~hgnn.models.base.HeteroModel.set_label_context` with the phase, the global ids of the
    batch's target rows and the number of seeds before each forward. Logits come for every target
    row of the (sub)graph; the sampled regime keeps the seeds (the first rows).
    """

    name = "h2gformer"
    regimes = ("sampled", "full")
    uses_labels: ClassVar[bool] = True

    def __init__(self, in_channels: dict[str, int], metadata, target: str, num_classes: int,
                 labels: Tensor, train_mask: Tensor, val_mask: Tensor, dim: int = 64,
                 layers: int = 3, heads: int = 8, dropout: float = 0.2, attn_dropout: float = 0.0,
                 pre_dropout: float = 0.2, input_dropout: float = 0.0, act: str = "gelu",
                 score_clamp: float = 5.0, label_embedding: bool = True,
                 label_mask_rate: float = 0.7, mask_seeds: bool = False) -> None:
        super().__init__()
        node_types, _ = metadata
        self.target = target
        self.input_dropout, self.pre_dropout = input_dropout, pre_dropout
        self.raw = TypeEncoder(in_channels, dim)
        self.label_encoder = MaskedLabelEncoder(num_classes, dim, labels, train_mask, val_mask,
                                                label_mask_rate, mask_seeds) \
            if label_embedding else None
        self.pre = nn.ModuleDict({t: nn.Linear(dim, dim) for t in node_types})
        clamp = score_clamp if score_clamp > 0 else None
        self.layers = nn.ModuleList([
            H2GFormerLayer(dim, metadata, heads, dropout, attn_dropout, act, clamp)
            for _ in range(layers)])
        self.head = nn.Linear(dim, num_classes)
        HeteroModel.set_label_context(self, "train")

    @classmethod
    def default_config(cls) -> dict:
        return {"dim": 64, "layers": 3, "heads": 8, "dropout": 0.2, "attn_dropout": 0.0,
                "pre_dropout": 0.2, "input_dropout": 0.0, "act": "gelu", "score_clamp": 5.0,
                "label_embedding": True, "label_mask_rate": 0.7, "mask_seeds": False}

    @classmethod
    def config_choices(cls) -> dict[str, tuple]:
        return {"act": tuple(ACTIVATIONS)}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> H2GFormer:
        store = data[task.target]
        return cls(input_channels(data.x_dict), data.metadata(), task.target, task.num_classes,
                   store.y, store.train_mask, store.val_mask, config["dim"], config["layers"],
                   config["heads"], config["dropout"], config["attn_dropout"],
                   config["pre_dropout"], config["input_dropout"], config["act"],
                   config["score_clamp"], config["label_embedding"], config["label_mask_rate"],
                   config["mask_seeds"])

    def set_label_context(self, phase: str, node_ids: Tensor | None = None,
                          num_seeds: int | None = None) -> None:
        enc = self.label_encoder
        if enc is not None and enc.mask_seeds and phase == "train" and num_seeds is None:
            raise HgnnError("model.mask_seeds needs seed batches (train.regime=sampled): in "
                            "full-batch training every training node is a seed")
        super().set_label_context(phase, node_ids, num_seeds)

    def output_layer(self) -> nn.Module:
        return self.head

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict) -> Tensor:
        h = self.raw(x_dict)
        if self.label_encoder is not None:
            ids = self.label_node_ids
            n = h[self.target].size(0)
            expected = self.label_encoder.labels.size(0) if ids is None else ids.numel()
            if n != expected:
                raise ValueError(f"{n} '{self.target}' rows but the label context names "
                                 f"{expected}; call set_label_context with the batch's n_id")
            h[self.target] = h[self.target] + self.label_encoder(self.label_phase, ids,
                                                                 self.label_num_seeds)
        h = {t: F.relu(F.dropout(self.pre[t](F.dropout(x, self.input_dropout, self.training)),
                                 self.pre_dropout, self.training))
             for t, x in h.items()}
        for layer in self.layers:
            h = layer(h, edge_index_dict)
        return self.head(h[self.target])
