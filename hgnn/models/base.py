"""What every model in the zoo declares so one trainer can run it."""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec


class HeteroModel(nn.Module):
    """Base class of the zoo's node-classification models.

    A model declares the regimes it supports (``"full"``, ``"sampled"``, ``"precomputed"``); the
    trainer picks one from the config and never looks at the model's name.

    * full / sampled: ``forward(x_dict, edge_index_dict)`` returns logits ``[N_target, C]`` for every
      node of the target type in the (sub)graph it was given;
    * precomputed: ``precompute(data)`` turns the whole graph into per-target-node tensors once
      (a tensor ``[N_target, ...]`` or a dict of them); ``forward(batch)`` maps rows of it to logits.
    """

    name: ClassVar[str] = ""
    regimes: ClassVar[tuple[str, ...]] = ("full", "sampled")
    #: The model reads the target type's labels as input (a label trick, e.g. H2G-former's masked
    #: label embedding). The full and sampled regimes then call :meth:`set_label_context` before
    #: every forward, and the full regime runs one forward per evaluated split (each split sees
    #: different labels).
    uses_labels: ClassVar[bool] = False
    #: ``forward`` also takes a list of edge-index dicts, one per layer, input layer first (the
    #: ``neighbor_blocks`` sampler's batches, DGL's blocks).
    layerwise_edges: ClassVar[bool] = False

    @property
    def num_layers(self) -> int:
        """Message-passing layers (with ``layerwise_edges``: edge sets ``forward`` takes)."""
        raise NotImplementedError

    @classmethod
    def default_config(cls) -> dict:
        """The model section of the config: every key the model accepts, with its default."""
        return {}

    @classmethod
    def config_choices(cls) -> dict[str, tuple]:
        """The values each string option of the model section may take, checked where the config
        is resolved (an error names the file or ``--set`` that gave another)."""
        return {}

    @classmethod
    def build(cls, data: HeteroData, task: TaskSpec, config: dict) -> HeteroModel:
        """Instantiate for a (prepared) graph and task from the resolved ``config["model"]``."""
        raise NotImplementedError

    def set_label_context(self, phase: str, node_ids: torch.Tensor | None = None,
                          num_seeds: int | None = None) -> None:
        """What the next forward of a ``uses_labels`` model may see; set by the regimes.

        Args:
            phase: ``"train"`` (a training step), ``"val"`` or ``"test"`` (scoring that split).
                Training and validation see training labels only; test sees training and
                validation labels.
            node_ids: global ids ``[n]`` of the target-type rows of the next forward's ``x_dict``
                (a sampled batch's ``n_id``); ``None``: every target node, in order (full graph).
            num_seeds: the first ``num_seeds`` rows are the batch's seeds, whose predictions are
                used; ``None`` when not a seed batch (full graph).

        Stored as ``label_phase``, ``label_node_ids`` and ``label_num_seeds`` for ``forward``.
        """
        self.label_phase, self.label_node_ids, self.label_num_seeds = phase, node_ids, num_seeds

    def precompute(self, data: HeteroData) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no precomputed regime")

    def auxiliary_loss(self) -> torch.Tensor | None:
        """A loss term of the last training forward that the trainer adds to the task loss
        (LATTE's proximity loss); ``None`` when the model has none."""
        return None

    def output_layer(self) -> nn.Module | None:
        """The module that maps the target's final representation to logits. Its input is the
        node embedding that embedding-based protocols (MAGNN's SVM test) score; ``None`` when
        the last graph layer emits the logits itself (RGCN, MLP), whose output then stands in."""
        return None

    def lr_groups(self, lr: float) -> list[tuple[list[str], Callable[[int], float]]]:
        """Parameters trained at a rate of their own: ``(names, rate at epoch e)`` per group (GTN's
        relation selections). ``lr`` is the configured base rate. The trainer sets the rate before
        every epoch, so a resumed run needs no schedule state."""
        return []

    def no_weight_decay(self) -> set[str]:
        """Names of parameters (as in ``named_parameters``) the optimiser must not decay."""
        return set()

    def explain(self, x_dict: dict[str, torch.Tensor],
                edge_index_dict: dict) -> dict[str, dict[str, float]]:
        """Per node type, the model's average weight of each relation (``hgnn predict --explain``).
        Models without relation-level weights raise ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} has no relation weights to explain")
