"""Classification metrics, single- and multi-label, computed in torch.

Conventions follow scikit-learn's ``f1_score(average="micro" | "macro")`` and ``accuracy_score``
(subset accuracy for multi-label), which the tests check against. Multi-label predictions are
``sigmoid(logit) > 0.5``, i.e. ``logit > 0``, as in HGB's evaluation. All values are fractions in
[0, 1].
"""
from __future__ import annotations

import torch

from hgnn.data.task import TaskSpec

METRICS = ("accuracy", "micro_f1", "macro_f1")
# Computed only for some tasks (see :func:`metric_names`); reported where a task declares them.
POSITIVE_METRICS = ("f1_positive",)


def predict(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Class indices ``[N]`` (single-label) or 0/1 indicators ``[N, C]`` (multi-label)."""
    return (logits > 0).long() if multilabel else logits.argmax(-1)


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), num_classes).long()


def f1_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """(micro-F1, macro-F1). ``pred``/``target``: ``[N]`` class ids or ``[N, C]`` 0/1 indicators.

    Macro-F1 follows scikit-learn's defaults: for class ids it averages over the classes that occur
    in ``target`` or ``pred``; for indicator matrices over all columns, a column with no true and no
    predicted member scoring 0.
    """
    single_label = pred.dim() == 1
    if single_label:
        pred, target = _one_hot(pred, num_classes), _one_hot(target, num_classes)
    pred, target = pred.long(), target.long()
    tp = (pred & target).sum(0).double()
    fp = (pred & (1 - target)).sum(0).double()
    fn = ((1 - pred) & target).sum(0).double()
    denom = 2 * tp + fp + fn
    per_class = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(denom))
    micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
    micro = float(2 * tp.sum() / micro_denom) if micro_denom > 0 else 0.0
    if single_label:
        per_class = per_class[denom > 0]
    return micro, float(per_class.mean()) if per_class.numel() else 0.0


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of nodes predicted exactly (all labels right, for multi-label)."""
    if pred.numel() == 0:
        return 0.0
    hit = pred == target if pred.dim() == 1 else (pred == target.long()).all(-1)
    return float(hit.double().mean())


def f1_positive(pred: torch.Tensor, target: torch.Tensor, positive: int = 1) -> float:
    """F1 of the positive class of a binary task, as scikit-learn's ``f1_score(average="binary")``:
    ``2 TP / (2 TP + FP + FN)``, 0 when no row is positive in ``pred`` or ``target``."""
    pred, target = pred.view(-1) == positive, target.view(-1) == positive
    tp = int((pred & target).sum())
    denom = 2 * tp + int((pred & ~target).sum()) + int((~pred & target).sum())
    return 2 * tp / denom if denom else 0.0


def has_positive_class(task: TaskSpec) -> bool:
    """Binary single-label tasks: class 1 is the positive class that ``f1_positive`` scores."""
    return task.num_classes == 2 and not task.multilabel


def metric_names(task: TaskSpec) -> tuple[str, ...]:
    """The names :func:`compute_metrics` gives for ``task``, in its order."""
    return METRICS + (POSITIVE_METRICS if has_positive_class(task) else ())


def reported_metrics(declared, *scores: dict) -> tuple[str, ...]:
    """The metrics a results table shows: :data:`METRICS`, then each other metric the task
    declares (``declared``: its ``metrics``, e.g. ``("f1_positive", "accuracy")`` for H2GB's RCDD)
    that every one of ``scores`` (metric -> value dicts) holds. Tasks that declare nothing beyond
    :data:`METRICS` keep exactly those columns."""
    return METRICS + tuple(dict.fromkeys(
        m for m in declared or () if m not in METRICS and all(m in s for s in scores)))


def compute_metrics(logits: torch.Tensor, target: torch.Tensor, task: TaskSpec) -> dict[str, float]:
    """All of :data:`METRICS` for the given rows, plus ``f1_positive`` (class 1) for binary
    single-label tasks."""
    pred = predict(logits, task.multilabel)
    micro, macro = f1_scores(pred, target, task.num_classes)
    out = {"accuracy": accuracy(pred, target), "micro_f1": micro, "macro_f1": macro}
    if has_positive_class(task):
        out["f1_positive"] = f1_positive(pred, target)
    return out


def ogb_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """OGB's node-property accuracy (``ogb.nodeproppred.Evaluator("ogbn-mag")``).

    Uses the official evaluator when ``ogb`` is installed; otherwise the same formula (fraction of
    rows where ``y_pred == y_true``, both ``[N, 1]``), which the tests compare with ogb's when present.
    """
    y_true, y_pred = y_true.view(-1, 1), y_pred.view(-1, 1)
    try:
        from ogb.nodeproppred import Evaluator
    except ImportError:
        return float((y_true == y_pred).double().mean())
    return float(Evaluator("ogbn-mag").eval({"y_true": y_true, "y_pred": y_pred})["acc"])
