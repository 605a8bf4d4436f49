"""Masked label embedding (H2GB's ``Hetero_Label`` encoder, a UniMP-style label trick)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

PHASES = ("train", "val", "test")


class MaskedLabelEncoder(nn.Module):
    r"""Embeds the target type's *visible* labels; hidden or unknown labels share one "unknown" slot.

    Per target node :math:`i` of the (sub)graph, with :math:`C` classes:

    .. math::
        e_i = W\, \mathrm{onehot}_{C+1}(\ell_i) + b, \qquad
        \ell_i = \begin{cases} y_i & \text{if } i \text{ is visible} \\ C & \text{otherwise}
        \end{cases}

    and the model adds :math:`e_i` to the target type's projected features. Visibility follows
    H2GB's ``HeteroLabelNodeEncoder``:

    * phase ``"train"`` and ``"val"``: training labels only; phase ``"test"``: training and
      validation labels (test labels are never visible);
    * phase ``"train"`` additionally resets each target node of the (sub)graph to unknown with
      probability ``mask_rate`` (H2GB: 0.7), drawn from the torch RNG. As in H2GB this covers the
      seeds too, so about ``1 - mask_rate`` of the training seeds see their own label;
    * ``mask_seeds=True`` (leak-free, as UniMP) always hides the seeds' own labels, in every phase.

    Multi-label tasks (``y`` ``[N, C]`` 0/1): a visible row is ``[y_i, 0]`` (multi-hot), a hidden
    one ``[0, ..., 0, 1]``.

    Args:
        num_classes: :math:`C`.
        out_channels: embedding width.
        labels: ``[N]`` long (``-1``: unlabelled, never visible) or ``[N, C]`` 0/1 (multi-label),
            for every node of the target type; kept on CPU, outside the state dict.
        train_mask, val_mask: ``[N]`` bool split masks of the target type.
        mask_rate: probability of hiding a visible label during training.
        mask_seeds: always hide the seeds' labels.

    Call: ``encoder(phase, node_ids=None, num_seeds=None)`` -> ``[n, out_channels]``, where
    ``node_ids`` ``[n]`` are the global ids of the (sub)graph's target rows (``None``: all ``N``
    in order) and the first ``num_seeds`` of them are the seeds (``None``: no seeds known, as in
    full-batch training).
    """

    def __init__(self, num_classes: int, out_channels: int, labels: Tensor, train_mask: Tensor,
                 val_mask: Tensor, mask_rate: float = 0.7, mask_seeds: bool = False) -> None:
        super().__init__()
        if not 0.0 <= mask_rate <= 1.0:
            raise ValueError(f"mask_rate must be in [0, 1], got {mask_rate}")
        self.num_classes, self.mask_rate, self.mask_seeds = num_classes, mask_rate, mask_seeds
        self.multilabel = labels.dim() == 2
        if self.multilabel and labels.size(1) != num_classes:
            raise ValueError(f"multi-label y has {labels.size(1)} columns, expected {num_classes}")
        self.lin = nn.Linear(num_classes + 1, out_channels)
        # Plain CPU tensors, not buffers: they stay out of checkpoints and out of DDP's buffer
        # broadcast, and the random masks come from the CPU generator that checkpoints restore.
        self.labels = labels.detach().cpu().clone()
        self.train_mask = train_mask.detach().cpu().bool().clone()
        self.val_mask = val_mask.detach().cpu().bool().clone()
        if self.multilabel:
            self.labelled = torch.ones(labels.size(0), dtype=torch.bool)
        else:
            self.labelled = (self.labels >= 0) & (self.labels < num_classes)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def visible(self, phase: str, node_ids: Tensor | None = None,
                num_seeds: int | None = None) -> Tensor:
        """``[n]`` bool: which of the rows show their label in this forward (draws the random
        training mask from the torch RNG)."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        allowed = self.train_mask | self.val_mask if phase == "test" else self.train_mask
        allowed = allowed & self.labelled
        vis = allowed if node_ids is None else allowed[node_ids.cpu()]
        if phase == "train" and self.mask_rate > 0:
            vis = vis & (torch.rand(vis.numel()) >= self.mask_rate)
        if self.mask_seeds:
            if num_seeds is None:
                if phase == "train":
                    raise ValueError("mask_seeds needs to know the seeds: every training node is a "
                                     "seed in full-batch training; use the sampled regime")
            else:
                vis = vis.clone()
                vis[:num_seeds] = False
        return vis

    def one_hot(self, phase: str, node_ids: Tensor | None = None,
                num_seeds: int | None = None) -> Tensor:
        """``[n, C + 1]`` on CPU: what the Linear sees (index ``C`` = unknown)."""
        vis = self.visible(phase, node_ids, num_seeds)
        y = self.labels if node_ids is None else self.labels[node_ids.cpu()]
        dtype = self.lin.weight.dtype
        if self.multilabel:
            out = torch.cat([y.to(dtype) * vis.unsqueeze(1).to(dtype),
                             (~vis).unsqueeze(1).to(dtype)], dim=1)
            return out
        idx = torch.where(vis, y, torch.full_like(y, self.num_classes))
        return nn.functional.one_hot(idx, self.num_classes + 1).to(dtype)

    def forward(self, phase: str, node_ids: Tensor | None = None,
                num_seeds: int | None = None) -> Tensor:
        return self.lin(self.one_hot(phase, node_ids, num_seeds).to(self.lin.weight.device))
