"""Metrics against scikit-learn on random inputs."""
from __future__ import annotations

import pytest
import torch

from hgnn.data.task import TaskSpec
from hgnn.train.metrics import compute_metrics, ogb_accuracy

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(6))
def test_single_label_matches_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    n, c = 50 + seed * 37, 2 + seed
    logits = torch.randn(n, c, generator=g)
    y = torch.randint(0, c - (seed % 2), (n,), generator=g)  # odd seeds: one class never true
    m = compute_metrics(logits, y, TaskSpec(target="t", num_classes=c))
    pred = logits.argmax(1).numpy()
    assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    assert m["micro_f1"] == pytest.approx(sklearn_metrics.f1_score(y, pred, average="micro"))
    assert m["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y, pred, average="macro"))


@pytest.mark.parametrize("seed", range(6))
def test_multilabel_matches_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    n, c = 40 + seed * 23, 3 + seed
    logits = torch.randn(n, c, generator=g) - 0.3
    y = (torch.rand(n, c, generator=g) < 0.35).float()
    if seed % 2:
        y[:, 0] = 0  # a class with no positives
        logits[:, 0] = -1  # ... and never predicted
    m = compute_metrics(logits, y, TaskSpec(target="t", num_classes=c, multilabel=True))
    pred = (torch.sigmoid(logits) > 0.5).long().numpy()
    yt = y.long().numpy()
    kw = {"zero_division": 0}
    assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(yt, pred))
    assert m["micro_f1"] == pytest.approx(sklearn_metrics.f1_score(yt, pred, average="micro", **kw))
    assert m["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(yt, pred, average="macro", **kw))


def test_ogb_accuracy():
    y = torch.tensor([[1], [2], [3], [4]])
    assert ogb_accuracy(y, torch.tensor([1, 2, 0, 4])) == pytest.approx(0.75)
