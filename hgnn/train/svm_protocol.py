"""MAGNN's embedding protocol (``hgnn evaluate --svm``): a linear SVM on a trained model's node
embeddings of the test split.

MAGNN (``cynricfu/MAGNN`` ``utils/tools.py`` ``svm_test``), and papers that reuse its IMDB and
DBLP splits, score node classification this way: the semi-supervised model is trained and early
stopped as usual, then the test nodes' embeddings are split again, at random, into an SVM
training part of 80 / 60 / 40 / 20% and the rest; ``LinearSVC(dual=False)`` is fitted on the
first and scored on the second, ten times per fraction (``train_test_split`` with
``random_state`` 182318 + i), and the mean and standard deviation over the ten are reported.
The SVM sees labels of the test split itself, so these numbers are not comparable with a
model's own test predictions (``hgnn evaluate``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from hgnn.errors import HgnnError

if TYPE_CHECKING:
    from hgnn.models.base import HeteroModel
    from hgnn.train.inference import Restored
    from hgnn.train.regimes import Regime

#: SVM training fractions of the test split, in MAGNN's order.
TRAIN_FRACTIONS = (0.8, 0.6, 0.4, 0.2)
#: MAGNN's ``random_states = [182318 + i for i in range(repeat)]``.
FIRST_RANDOM_STATE = 182318


def svm_scores(embeddings: np.ndarray, labels: np.ndarray,
               train_fractions: tuple[float, ...] = TRAIN_FRACTIONS, repeat: int = 10
               ) -> list[dict]:
    """Per training fraction: ``{"train_fraction", "micro_f1": (mean, std), "macro_f1": (mean,
    std)}`` over ``repeat`` random splits of ``embeddings`` ``[N, F]`` with ``labels`` ``[N]``."""
    try:
        from sklearn.metrics import f1_score
        from sklearn.model_selection import train_test_split
        from sklearn.svm import LinearSVC
    except ImportError:
        raise HgnnError("the SVM protocol needs scikit-learn: pip install scikit-learn") from None
    out = []
    for frac in train_fractions:
        micro, macro = [], []
        for i in range(repeat):
            x_tr, x_te, y_tr, y_te = train_test_split(
                embeddings, labels, test_size=round(1.0 - frac, 10), shuffle=True,
                random_state=FIRST_RANDOM_STATE + i)
            pred = LinearSVC(dual=False).fit(x_tr, y_tr).predict(x_te)
            micro.append(f1_score(y_te, pred, average="micro"))
            macro.append(f1_score(y_te, pred, average="macro"))
        out.append({"train_fraction": frac,
                    "micro_f1": (float(np.mean(micro)), float(np.std(micro))),
                    "macro_f1": (float(np.mean(macro)), float(np.std(macro)))})
    return out


def split_embeddings(model: HeteroModel, regime: Regime, split: str = "test"
                     ) -> tuple[Tensor, Tensor]:
    """The ``split`` nodes' embeddings ``[n, F]`` (the input of ``model.output_layer()``, or the
    logits when it has none) and labels ``[n]``, from one forward of a full-batch ``regime``."""
    from hgnn.train.regimes import FullBatch

    if not isinstance(regime, FullBatch):
        raise ValueError("split_embeddings needs a full-batch regime: a sampled one would "
                         "capture only its last batch")
    layer = model.output_layer()
    captured: list[Tensor] = []
    hook = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach())) \
        if layer is not None else None
    try:
        with torch.no_grad():
            logits = regime.logits(model, (split,))[split]
    finally:
        if hook is not None:
            hook.remove()
    ids = regime.scored_ids[split]
    emb = captured[-1].cpu()[ids] if layer is not None else logits
    return emb, regime.labels[ids]


def check_svm(restored: Restored) -> None:
    """Refuse what the protocol cannot score (a multi-label task, a model without a full-batch
    regime) before anything is computed."""
    if restored.task.multilabel:
        raise HgnnError(f"{restored.checkpoint}: the SVM protocol needs a single-label task")
    restored.require("full", "the SVM protocol reads embeddings of the whole graph, and ")


def svm_evaluate(restored: Restored, repeat: int = 10) -> list[dict]:
    """:func:`svm_scores` of a restored checkpoint's test embeddings, computed on the full graph
    (the full-batch regime, which a full-batch model shares with its own evaluation)."""
    check_svm(restored)
    emb, labels = split_embeddings(restored.model, restored.regime("full"), "test")
    return svm_scores(emb.double().numpy(), labels.numpy(), repeat=repeat)


def svm_evaluate_checkpoint(checkpoint: str | Path, dataset: str | None = None,
                            root: str | None = None, device: str = "cpu",
                            repeat: int = 10) -> list[dict]:
    """:func:`svm_evaluate` of a checkpoint."""
    from hgnn.train.inference import load_restored

    return svm_evaluate(load_restored(checkpoint, dataset, root, device), repeat)
