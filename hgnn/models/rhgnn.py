"""R-HGNN node classifier (Yu et al., TKDE'22) as the official code runs it (``yule-BUAA/R-HGNN``
``model/R_HGNN.py`` and ``train/train_R_HGNN_ogbn_mag_node_classification.py``), on
:class:`~hgnn.nn.rhgnn_conv.RHGNNConv`."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.models.base import HeteroModel
from hgnn.nn.relation_fusing import RelationFusing
from hgnn.nn.rhgnn_conv import EdgeType, RHGNNConv, reverse_map
from hgnn.nn.type_encoder import TypeEncoder, input_channels

_GAIN = math.sqrt(2.0)


def relation_label(edge_type: EdgeType, among: list[EdgeType]) -> str:
    """``"src->dst"``, or ``"src-rel->dst"`` when another relation of ``among`` joins the same pair."""
    s, r, d = edge_type
    unique = sum((e[0], e[2]) == (s, d) for e in among) == 1
    return f"{s}->{d}" if unique else f"{s}-{r}->{d}"


class RHGNN(HeteroModel):
    """A linear projection per node type to ``H * D`` (featureless types: one embedding row per
    node, i.e. one-hot inputs times a weight matrix), copied to every relation into the type as its
    initial relation-aware state; ``layers`` :class:`RHGNNConv` layers carrying the learnable
    relation embeddings (``relation_input`` wide at first, ``H * relation_hidden`` after each
    layer); :class:`RelationFusing` over the relations into the target type (dropout included); one
    linear classifier. ``norm`` adds :class:`RHGNNConv`'s per-type LayerNorm to every layer: the
    official node-classification script leaves ``R_HGNN``'s ``norm`` at its default, which is on;
    it is off by default here so that checkpoints written before the option existed still load,
    and the configs that follow the official script turn it on.

    Every relation needs a reverse (``graph.add_reverse``); :meth:`build` finds them by name or by
    content on the full graph, so the map holds in sampled batches. A target type without incoming
    relations is classified from its projected input. Only what the target needs is computed: the
    last layer runs the relations into the target, each earlier layer additionally those into the
    types the next one reads (the logits equal those of running every relation in every layer).
    The fusing weights are kept for the target's relations only (the official code allocates them
    for every relation but reads only the target's). ``forward`` takes one edge set for every
    layer, or a list of them, one per layer (``train.sampler: neighbor_blocks``).
    """

    name = "rhgnn"
    regimes = ("full", "sampled")
    layerwise_edges = True  # the official code runs on DGL blocks, one edge set per layer

    def __init__(self, in_channels: dict[str, int], metadata, target: str, hidden: int,
                 out_channels: int, layers: int = 2, heads: int = 8, relation_hidden: int = 8,
                 relation_input: int = 8, dropout: float = 0.5, negative_slope: float = 0.2,
                 residual: bool = True, reverse: dict[EdgeType, EdgeType] | None = None,
                 norm: bool = False) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"R-HGNN needs at least one layer, got {layers}")
        node_types, edge_types = list(metadata[0]), [tuple(et) for et in metadata[1]]
        self.target, self.heads, self.hidden = target, heads, hidden
        self.edge_types = edge_types
        rev = reverse_map(edge_types, reverse)
        self.encoder = TypeEncoder(in_channels, heads * hidden)
        self.relation_embedding = nn.Parameter(torch.empty(len(edge_types), relation_input))
        self.convs = nn.ModuleList([
            RHGNNConv(heads * hidden, hidden, (node_types, edge_types), heads,
                      relation_input if i == 0 else heads * relation_hidden, relation_hidden,
                      dropout, negative_slope, residual, rev, norm)
            for i in range(layers)
        ])
        self.fused = [et for et in edge_types if et[2] == target]
        self.fuse_index = [edge_types.index(et) for et in self.fused]
        self.fusing = RelationFusing(self.fused, heads, hidden, relation_hidden, dropout,
                                     negative_slope) if self.fused else None
        self.classifier = nn.Linear(heads * hidden, out_channels)
        # Node types each layer must produce: the target last, then whatever the next layer reads.
        need = [{target}]
        for _ in range(layers - 1):
            nxt = need[0]
            need.insert(0, nxt | {s for s, _, d in edge_types if d in nxt})
        self.needed_types = need
        self.last_beta: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation (Xavier-normal, ReLU gain) of the projection and the
        relation embeddings; embedding rows as a Linear on one-hot inputs would be."""
        with torch.no_grad():
            for m in self.encoder.proj.values():
                m.reset_parameters()
                nn.init.xavier_normal_(m.weight, gain=_GAIN)
            for r in range(self.relation_embedding.size(0)):  # official: [relation_input, 1] each
                nn.init.xavier_normal_(self.relation_embedding[r].unsqueeze(-1), gain=_GAIN)
        for conv in self.convs:
            conv.reset_parameters()
        if self.fusing is not None:
            self.fusing.reset_parameters()
        self.classifier.reset_parameters()

    @classmethod
    def default_config(cls) -> dict:
        return {"hidden": 64, "heads": 8, "layers": 2, "relation_hidden": 8, "relation_input": 8,
                "dropout": 0.5, "negative_slope": 0.2, "residual": True, "norm": False}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> RHGNN:
        reverse = reverse_map(data.edge_types, edge_index_dict=data.edge_index_dict,
                              num_nodes_dict={t: data[t].num_nodes for t in data.node_types})
        return cls(input_channels(data.x_dict), data.metadata(), task.target, config["hidden"],
                   task.num_classes, config["layers"], config["heads"], config["relation_hidden"],
                   config["relation_input"], config["dropout"], config["negative_slope"],
                   config["residual"], reverse, config["norm"])

    def encode(self, x_dict: dict[str, Tensor], edge_index_dict: dict | list[dict]
               ) -> tuple[Tensor, Tensor | None]:
        """The target's fused representation ``[N_target, H * D]`` and its fusing weights
        ``[N_target, H, R_target]`` (``None`` without incoming relations). ``edge_index_dict``
        may be a list with one dict per layer, input layer first (DGL-style blocks)."""
        per_layer = edge_index_dict if isinstance(edge_index_dict, (list, tuple)) \
            else [edge_index_dict] * len(self.convs)
        if len(per_layer) != len(self.convs):
            raise ValueError(f"{len(per_layer)} per-layer edge sets for {len(self.convs)} layers")
        h = self.encoder(x_dict)
        state = RHGNNConv.initial_state(h, self.edge_types)
        rel = self.relation_embedding
        for conv, types, edges in zip(self.convs, self.needed_types, per_layer, strict=True):
            state, rel = conv(state, edges, rel, dst_types=types)
        if self.fusing is None or not any(et in state for et in self.fused):
            return h[self.target], None
        return self.fusing(state, rel[self.fuse_index])

    @property
    def num_layers(self) -> int:
        return len(self.convs)

    def output_layer(self) -> nn.Module:
        return self.classifier

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict | list[dict]) -> Tensor:
        z, beta = self.encode(x_dict, edge_index_dict)
        self.last_beta = beta.detach() if beta is not None else None
        return self.classifier(z)

    def explain(self, x_dict: dict[str, Tensor],
                edge_index_dict: dict) -> dict[str, dict[str, float]]:
        """The target type's relation-fusing weights :math:`\\beta_r`, averaged over its nodes and
        the heads, in eval mode: ``{target: {relation: weight}}`` (weights sum to 1). Only the
        target is reported: the model fuses (and trains fusing weights for) the target alone."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                _, beta = self.encode(x_dict, edge_index_dict)
        finally:
            self.train(was_training)
        if beta is None:
            return {self.target: {}}
        mean = beta.double().mean(dim=(0, 1)).tolist()
        return {self.target: {relation_label(et, self.fused): float(w)
                              for et, w in zip(self.fused, mean, strict=True)}}
