"""MAGNN's SVM protocol (``hgnn evaluate --svm``): the splits it draws, the embeddings it reads."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import sklearn.svm
import torch

from hgnn.errors import HgnnError
from hgnn.train.experiment import run_experiment
from hgnn.train.inference import restore
from hgnn.train.svm_protocol import split_embeddings, svm_evaluate_checkpoint, svm_scores

SMALL = {"scale": 0.25}


def test_svm_scores_fit_magnn_fractions_and_score_separable_embeddings(monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    separable = np.eye(3)[labels] + 0.01 * rng.standard_normal((120, 3))
    fitted = []

    class Recording(sklearn.svm.LinearSVC):
        def fit(self, x, y):
            fitted.append(len(y))
            return super().fit(x, y)

    monkeypatch.setattr(sklearn.svm, "LinearSVC", Recording)
    rows = svm_scores(separable, labels, repeat=3)
    assert [r["train_fraction"] for r in rows] == [0.8, 0.6, 0.4, 0.2]
    assert fitted == [96] * 3 + [72] * 3 + [48] * 3 + [24] * 3
    for r in rows:
        assert r["micro_f1"] == (1.0, 0.0) and r["macro_f1"] == (1.0, 0.0)
    noise = rng.standard_normal((120, 3))
    chance = svm_scores(noise, labels, train_fractions=(0.8,), repeat=10)[0]["micro_f1"][0]
    assert chance < 0.55  # three balanced classes: about 1/3
    assert svm_scores(noise, labels, repeat=2) == svm_scores(noise, labels, repeat=2)


@pytest.mark.parametrize("model", ["rhgnn", "rgcn"])
def test_embeddings_are_the_output_layer_input(tmp_path, model):
    run_experiment(model, "synthetic", [0], overrides=["train.epochs=2"], out_dir=tmp_path,
                   quiet=True, dataset_options=SMALL)
    ckpt = tmp_path / "seed_0" / "best.pt"
    net, regime, data, task, _ = restore(ckpt)
    emb, labels = split_embeddings(net, regime, "test")
    ids = regime.scored_ids["test"]
    net.eval()
    with torch.no_grad():
        if model == "rhgnn":  # its classifier reads the fused representation
            want = net.encode(data.x_dict, data.edge_index_dict)[0][ids]
        else:  # RGCN's last layer emits the logits: they stand in
            want = net(data.x_dict, data.edge_index_dict)[ids]
    torch.testing.assert_close(emb, want)
    torch.testing.assert_close(labels, data[task.target].y[ids])
    rows = svm_evaluate_checkpoint(ckpt, repeat=2)
    assert len(rows) == 4 and all(0.0 <= r["micro_f1"][0] <= 1.0 for r in rows)
    if model == "rgcn":  # the CLI prints one line per SVM training fraction
        proc = subprocess.run([sys.executable, "-m", "hgnn", "evaluate", "--checkpoint", str(ckpt),
                               "--svm"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("svm")] == \
            ["80%", "60%", "40%", "20%"]


def test_multilabel_tasks_are_refused(tmp_path, monkeypatch):
    run_experiment("rgcn", "synthetic", [0], overrides=["train.epochs=1"], out_dir=tmp_path,
                   quiet=True, dataset_options=SMALL)
    import hgnn.train.inference as inference

    real = inference.load_restored

    def multilabel(*args, **kw):
        restored = real(*args, **kw)
        return dataclasses.replace(restored, task=dataclasses.replace(restored.task,
                                                                      multilabel=True))

    monkeypatch.setattr(inference, "load_restored", multilabel)
    with pytest.raises(HgnnError, match="needs a single-label task"):
        svm_evaluate_checkpoint(tmp_path / "seed_0" / "best.pt")


def test_split_embeddings_refuse_a_batched_regime():
    with pytest.raises(ValueError, match="needs a full-batch regime"):
        split_embeddings(torch.nn.Linear(2, 2), object())


def test_evaluate_with_svm_restores_the_checkpoint_once(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    import hgnn.train.inference as inference
    from hgnn.cli.train import cmd_evaluate

    run_experiment("rgcn", "synthetic", [0], overrides=["train.epochs=1"], out_dir=tmp_path,
                   quiet=True, dataset_options=SMALL)
    loads, real = [], inference.load_prepared
    monkeypatch.setattr(inference, "load_prepared", lambda *a, **k: loads.append(a) or real(*a, **k))
    args = argparse.Namespace(checkpoint=str(tmp_path / "seed_0" / "best.pt"), dataset=None,
                              root=None, device="cpu", json=True, svm=True)
    cmd_evaluate(args)
    result = json.loads(capsys.readouterr().out)
    assert len(loads) == 1 and len(result["svm"]) == 4 and "micro_f1" in result["test"]
    restored = inference.load_restored(args.checkpoint)
    assert restored.regime() is restored.regime("full")  # a full-batch model: one regime


def test_svm_refuses_a_precomputed_model_before_evaluating_it(tmp_path, monkeypatch):
    import argparse

    import hgnn.train.inference as inference
    from hgnn.cli.train import cmd_evaluate

    run_experiment("rphgnn", "synthetic", [0], overrides=["train.epochs=1"], out_dir=tmp_path,
                   quiet=True, dataset_options=SMALL)

    def never(*args, **kw):
        raise AssertionError("evaluated before the refusal")

    monkeypatch.setattr(inference, "evaluate_restored", never)
    args = argparse.Namespace(checkpoint=str(tmp_path / "seed_0" / "best.pt"), dataset=None,
                              root=None, device="cpu", json=True, svm=True)
    with pytest.raises(HgnnError, match="best.pt: the SVM protocol reads embeddings of the whole "
                                        "graph, and model 'rphgnn' has no full regime"):
        cmd_evaluate(args)
