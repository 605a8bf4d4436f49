"""The training engine: baselines learn, early stopping, determinism, kill-and-resume, the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hgnn.errors import HgnnError
from hgnn.train.checkpoint import load_checkpoint, save_checkpoint
from hgnn.train.experiment import run_experiment
from hgnn.train.inference import evaluate_checkpoint, predict_checkpoint
from hgnn.train.record import git_commit
from hgnn.train.trainer import improves
from tests.hgb_fixture import write_hgb

SMALL = {"scale": 0.25}  # 1,500 target nodes: seconds per run


def train(model: str, tmp_path: Path, *overrides: str, seeds=(0,), **kw) -> dict:
    return run_experiment(model, "synthetic", list(seeds), overrides=list(overrides),
                          out_dir=tmp_path / model, quiet=True, dataset_options=SMALL, **kw)


@pytest.mark.parametrize("model,epochs,floor", [("mlp", 60, 0.3), ("rgcn", 30, 0.8),
                                                ("hgt", 15, 0.7)])
def test_baselines_learn_synthetic(tmp_path, model, epochs, floor):
    summary = train(model, tmp_path, f"train.epochs={epochs}", "train.patience=0",
                    "train.lr=0.01")
    acc = summary["metrics"]["test"]["accuracy"]["mean"]
    assert acc > floor, (model, acc)  # chance is 0.2 (5 classes)
    record = json.loads((tmp_path / model / "summary.json").read_text())
    for key in ("model", "dataset", "seeds", "config", "metrics", "per_seed", "timings",
                "peak_memory_mb", "versions", "hardware"):
        assert key in record
    assert set(record["metrics"]["test"]) == {"accuracy", "micro_f1", "macro_f1"}
    assert 0 <= record["metrics"]["test"]["micro_f1"]["mean"] <= 1


def test_graph_beats_mlp(tmp_path):
    mlp = train("mlp", tmp_path, "train.epochs=60", "train.lr=0.01")
    rgcn = train("rgcn", tmp_path, "train.epochs=30")
    assert rgcn["metrics"]["test"]["accuracy"]["mean"] > \
        mlp["metrics"]["test"]["accuracy"]["mean"] + 0.2


def test_early_stopping_picks_best_epoch(tmp_path):
    summary = train("rgcn", tmp_path, "train.epochs=60", "train.patience=5", "train.lr=0.05")
    result = json.loads((tmp_path / "rgcn" / "seed_0" / "result.json").read_text())
    scores = [h["val_micro_f1"] for h in result["history"]]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    assert result["best_epoch"] == best
    assert result["epochs_run"] == best + 6 or result["epochs_run"] == 60
    assert result["val"]["micro_f1"] == pytest.approx(scores[best])
    ckpt = tmp_path / "rgcn" / "seed_0" / "best.pt"
    assert load_checkpoint(ckpt)["epoch"] == best
    again = evaluate_checkpoint(ckpt)
    assert again["test"] == pytest.approx(summary["per_seed"][0]["test"])


def test_joint_monitor_saves_only_when_every_metric_improves(tmp_path):
    train("rgcn", tmp_path, "train.epochs=25", "train.patience=0", "train.lr=0.05",
          "train.monitor=micro_f1+loss")
    result = json.loads((tmp_path / "rgcn" / "seed_0" / "result.json").read_text())
    history = result["history"]
    saved, best = [], (-1.0, float("inf"))  # R-HGNN's EarlyStopping, replayed from the history
    for h in history:
        if h["val_micro_f1"] > best[0] and h["val_loss"] < best[1]:
            saved.append(h["epoch"])
            best = (h["val_micro_f1"], h["val_loss"])
    assert result["best_epoch"] == saved[-1]
    # on this run the joint rule picks an epoch that neither metric alone would
    by_f1 = max(history, key=lambda h: (h["val_micro_f1"], -h["epoch"]))["epoch"]
    by_loss = min(history, key=lambda h: (h["val_loss"], h["epoch"]))["epoch"]
    assert saved[-1] not in (by_f1, by_loss)
    assert result["val"]["micro_f1"] == pytest.approx(best[0])


def test_improves_compares_each_part_with_the_saved_epoch():
    best: dict[str, float] = {}
    assert improves({"micro_f1": 0.5, "macro_f1": 0.4}, 1.0, "micro_f1+macro_f1", best)
    assert not improves({"micro_f1": 0.6, "macro_f1": 0.3}, 1.0, "micro_f1+macro_f1", best)
    assert best == {"micro_f1": 0.5, "macro_f1": 0.4}  # a half-better epoch moves nothing
    assert improves({"micro_f1": 0.55, "macro_f1": 0.45}, 1.0, "micro_f1+macro_f1", best)
    assert not improves({"micro_f1": 0.9}, 0.7, "loss", {"loss": -0.5})
    assert improves({"micro_f1": 0.9}, 0.3, "loss", {"loss": -0.5})


def test_checkpoint_from_before_a_config_key_existed_still_evaluates(tmp_path):
    from hgnn.train.checkpoint import save_checkpoint
    summary = train("rgcn", tmp_path, "train.epochs=3")
    ckpt = load_checkpoint(tmp_path / "rgcn" / "seed_0" / "best.pt")
    del ckpt["config"]["graph"]["metapath2vec"]        # keys added after older runs were saved
    del ckpt["config"]["train"]["eval_num_neighbors"]
    del ckpt["config"]["model"]["root_weight"]
    old = tmp_path / "old.pt"
    save_checkpoint(ckpt, old)
    assert evaluate_checkpoint(old)["test"] == pytest.approx(summary["per_seed"][0]["test"])


def test_min_epochs_holds_off_early_stopping(tmp_path):
    # lr 0: the validation score never improves after epoch 0, so patience 3 alone stops at 4
    train("rgcn", tmp_path / "a", "train.epochs=30", "train.patience=3", "train.lr=0.0")
    train("rgcn", tmp_path / "b", "train.epochs=30", "train.patience=3", "train.lr=0.0",
          "train.min_epochs=12")
    runs = [json.loads((tmp_path / d / "rgcn" / "seed_0" / "result.json").read_text())
            for d in ("a", "b")]
    assert [r["epochs_run"] for r in runs] == [4, 12]
    assert runs[1]["best_epoch"] == 0


def test_same_seed_same_metrics(tmp_path):
    a = train("rgcn", tmp_path / "a", "train.epochs=8", seeds=(3,))
    b = train("rgcn", tmp_path / "b", "train.epochs=8", seeds=(3,))
    assert a["per_seed"][0]["test"] == b["per_seed"][0]["test"]
    c = train("rgcn", tmp_path / "c", "train.epochs=8", seeds=(4,))
    assert c["per_seed"][0]["test"] != a["per_seed"][0]["test"]


def test_git_commit_marks_uncommitted_code(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                        *args], check=True, capture_output=True)

    assert git_commit(tmp_path) is None  # not a checkout
    git("init", "-q")
    (tmp_path / "site-packages" / "hgnn").mkdir(parents=True)
    assert git_commit(tmp_path / "site-packages") is None  # installed inside another repository
    (tmp_path / "hgnn").mkdir()
    (tmp_path / "hgnn" / "layer.py").write_text("x = 1\n")
    (tmp_path / "README.md").write_text("readme\n")
    git("add", "hgnn", "README.md")
    git("commit", "-qm", "first")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], text=True,
                          capture_output=True).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "README.md").write_text("results and docs do not count\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "hgnn" / "layer.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{head}-dirty"
    git("checkout", "--", "hgnn")
    (tmp_path / "hgnn" / "new_layer.py").write_text("y = 1\n")  # a new module counts too
    assert git_commit(tmp_path) == f"{head}-dirty"


def test_resume_with_nothing_to_train_keeps_the_run_record(tmp_path):
    first = train("mlp", tmp_path, "train.epochs=2")
    assert first["per_seed"][0]["git_commit"] == first["versions"]["git_commit"]
    path = tmp_path / "mlp" / "summary.json"
    record = json.loads(path.read_text())
    record["versions"]["git_commit"] = "trained-elsewhere"
    path.write_text(json.dumps(record))
    again = train("mlp", tmp_path, "train.epochs=2", resume=True)  # every seed is finished
    assert again["versions"]["git_commit"] == "trained-elsewhere"
    assert json.loads(path.read_text()) == record
    more = train("mlp", tmp_path, "train.epochs=2", seeds=(0, 1), resume=True)  # seed 1 trains
    assert more["seeds"] == [0, 1] and more["versions"]["git_commit"] != "trained-elsewhere"
    assert more["per_seed"][0] == first["per_seed"][0]


def test_resume_refuses_a_finished_seed_of_another_config(tmp_path):
    train("mlp", tmp_path, "train.epochs=2", "train.lr=0.01")
    result_path = tmp_path / "mlp" / "seed_0" / "result.json"
    result = json.loads(result_path.read_text())
    assert result["config"]["train"]["lr"] == 0.01 and result["dataset_options"] == SMALL
    with pytest.raises(HgnnError, match=r"seed_0/result.json: cannot resume.*train.lr: 0.01 -> 0.02"):
        train("mlp", tmp_path, "train.epochs=2", "train.lr=0.02", seeds=(1, 0), resume=True)
    assert not (tmp_path / "mlp" / "seed_1").exists()  # refused before training anything
    with pytest.raises(HgnnError, match="dataset options"):
        run_experiment("mlp", "synthetic", [0], overrides=["train.epochs=2", "train.lr=0.01"],
                       out_dir=tmp_path / "mlp", quiet=True, resume=True,
                       dataset_options={"scale": 0.5})
    # a result from before seeds recorded their config is checked against the run's summary
    del result["config"], result["dataset_options"]
    result_path.write_text(json.dumps(result))
    with pytest.raises(HgnnError, match="train.lr: 0.01 -> 0.02"):
        train("mlp", tmp_path, "train.epochs=2", "train.lr=0.02", resume=True)
    same = train("mlp", tmp_path, "train.epochs=2", "train.lr=0.01", resume=True)
    assert same["per_seed"][0]["test"] == result["test"]
    # a key the recorded config lacks (a default added later) is no conflict
    summary_path = tmp_path / "mlp" / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["config"]["train"]["min_epochs"]
    summary_path.write_text(json.dumps(summary))
    assert train("mlp", tmp_path, "train.epochs=2", "train.lr=0.01", "train.min_epochs=1",
                 resume=True)["per_seed"][0]["test"] == result["test"]


def test_resume_refuses_a_finished_seed_of_another_model_or_dataset(tmp_path):
    train("mlp", tmp_path, "train.epochs=2", "train.lr=0.01")
    out = tmp_path / "mlp"
    with pytest.raises(HgnnError, match=r"seed_0/result.json: cannot resume: this seed trained "
                                        r"model 'mlp', not 'rgcn'"):
        run_experiment("rgcn", "synthetic", [0], overrides=["train.epochs=2", "train.lr=0.01"],
                       out_dir=out, quiet=True, resume=True, dataset_options=SMALL)
    write_hgb(tmp_path / "DBLP")
    with pytest.raises(HgnnError, match=r"trained dataset 'synthetic', not '.*DBLP'"):
        run_experiment("mlp", str(tmp_path / "DBLP"), [0], out_dir=out, quiet=True, resume=True)
    # a result from before seeds recorded the model is checked against the run's summary
    result_path = out / "seed_0" / "result.json"
    result = json.loads(result_path.read_text())
    del result["model"], result["dataset"]
    result_path.write_text(json.dumps(result))
    with pytest.raises(HgnnError, match="trained model 'mlp', not 'rgcn'"):
        run_experiment("rgcn", "synthetic", [0], overrides=["train.epochs=2", "train.lr=0.01"],
                       out_dir=out, quiet=True, resume=True, dataset_options=SMALL)


def test_a_dataset_path_is_recorded_absolute_and_trains_on_model_defaults(tmp_path, monkeypatch,
                                                                           capsys):
    write_hgb(tmp_path / "DBLP")
    monkeypatch.chdir(tmp_path)
    summary = run_experiment("mlp", "DBLP", [0], overrides=["train.epochs=2"],
                             out_dir=tmp_path / "run")
    assert summary["dataset"] == str(tmp_path / "DBLP")
    assert all(Path(f).name == "default.yaml" for f in summary["config_files"])
    assert "is read as a path" in capsys.readouterr().err
    monkeypatch.chdir("/")  # evaluate finds the data from anywhere
    best = tmp_path / "run" / "seed_0" / "best.pt"
    assert evaluate_checkpoint(best)["test"] == summary["per_seed"][0]["test"]


def test_a_failed_start_leaves_no_empty_run_folder(tmp_path):
    with pytest.raises(HgnnError):
        run_experiment("mlp", str(tmp_path / "missing"), [0], out_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(HgnnError):
        run_experiment("mlp", str(tmp_path / "missing"), [0], out_dir=tmp_path / "kept",
                       quiet=True)
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


@pytest.mark.parametrize("args,words", [
    (["train", "--seeds", "0", "0"], "--seeds 0 0: a seed is given twice"),
    (["train", "--epochs", "0"], "'train.epochs' must be >= 1, got 0"),
    (["train", "--set", "train.lr=-1"], "'train.lr' must be >= 0, got -1"),
    (["train", "--set", "model.hidden=-4"], "'model.hidden' must be >= 1, got -4"),
    (["train", "--set", "model.dropout=1.5"], "'model.dropout' must be in [0, 1], got 1.5"),
    (["train", "--set", "train.num_neighbors=[10, x]"],
     "'train.num_neighbors' must be a list of int, got [10, 'x']"),
    (["train", "--set", "train.num_neighbors=[10, 0]"], "counts >= 1 or -1"),
    (["train", "--device", "tpu"], "--device 'tpu': expected cpu, cuda or cuda:N"),
    (["train", "--data", "seed=1"], "synthetic: unknown option(s) ['seed']"),
])
def test_cli_refuses_bad_values_before_loading(args, words, capsys, tmp_path):
    from hgnn.cli.main import main

    assert main([*args, "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_refuses_a_bad_ops_backend_and_device_at_evaluate(tmp_path, monkeypatch, capsys):
    from hgnn.cli.main import main

    train("rgcn", tmp_path, "train.epochs=2", "train.lr=0.01")  # rgcn aggregates on hgnn.ops
    best = str(tmp_path / "rgcn" / "seed_0" / "best.pt")
    assert main(["evaluate", "--checkpoint", best, "--device", "nope"]) == 2
    assert "--device 'nope'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["evaluate", "--checkpoint", best, "--device", "cuda"]) == 2
        assert "--device cuda: no CUDA device is available" in capsys.readouterr().err
    monkeypatch.setenv("HGNN_OPS_BACKEND", "bogus")
    assert main(["evaluate", "--checkpoint", best]) == 2
    assert "HGNN_OPS_BACKEND='bogus': choose from auto, reference" in capsys.readouterr().err


def test_predict_refuses_a_folder_or_unwritable_out_and_leaves_nothing(tmp_path, capsys):
    from hgnn.cli.main import main

    train("mlp", tmp_path, "train.epochs=2", "train.lr=0.01")
    best = str(tmp_path / "mlp" / "seed_0" / "best.pt")
    (tmp_path / "folder").mkdir()
    assert main(["predict", "--checkpoint", best, "--out", str(tmp_path / "folder")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "folder.tmp").exists()
    (tmp_path / "file").write_text("")
    assert main(["predict", "--checkpoint", best, "--out", str(tmp_path / "file" / "p.csv")]) == 2
    assert "cannot create its folder" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", best, "--out", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().startswith("node,label\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder", "mlp", "p.csv"]


def test_sampled_regime_runs_and_is_deterministic(tmp_path):
    args = ("train.regime=sampled", "train.epochs=4", "train.batch_size=256",
            "train.num_neighbors=[5, 5]")
    a = train("rgcn", tmp_path / "a", *args)
    b = train("rgcn", tmp_path / "b", *args)
    assert a["per_seed"][0]["test"] == b["per_seed"][0]["test"]
    assert a["metrics"]["test"]["accuracy"]["mean"] > 0.5


def prepared_synthetic():
    """The small synthetic graph and task, prepared with the default graph options."""
    from hgnn.data import load_dataset
    from hgnn.train.config import TRAIN_DEFAULTS
    from hgnn.train.graph import prepare_graph

    data, task = load_dataset("synthetic", seed=0, **SMALL)
    prepare_graph(data, task, TRAIN_DEFAULTS["graph"], 0)
    return data, task


def _regimes(model_name: str, **train_cfg):
    from hgnn.models.registry import get_model_class
    from hgnn.train.config import TRAIN_DEFAULTS
    from hgnn.train.regimes import make_regime

    data, task = prepared_synthetic()
    cls = get_model_class(model_name)
    torch.manual_seed(0)
    model = cls.build(data, task, {**cls.default_config(), "hidden": 8})
    cfg = {**TRAIN_DEFAULTS["train"], **train_cfg}
    cpu = torch.device("cpu")
    # the full-batch regime scores every node of the graph: no sampled-batch node choices
    full_cfg = {**cfg, "loss_nodes": "seeds", "monitor_nodes": "seeds"}
    return model, make_regime("sampled", data, task, cfg, cpu, model), \
        make_regime("full", data, task, full_cfg, cpu, model)


@pytest.mark.parametrize("model_name", ["rgcn", "rhgnn"])
def test_eval_with_all_neighbours_equals_full_graph(model_name):
    model, sampled, full = _regimes(model_name, num_neighbors=[2, 2], eval_num_neighbors=[-1, -1],
                                    eval_batch_size=100)
    got = sampled.logits(model, ("val", "test"))
    want = full.logits(model, ("val", "test"))
    for split in ("val", "test"):
        torch.testing.assert_close(got[split], want[split], rtol=1e-4, atol=1e-5)
    # and the training fan-out of 2 does not reproduce the full graph
    model, narrow, full = _regimes(model_name, num_neighbors=[2, 2], eval_batch_size=100)
    assert not torch.allclose(narrow.logits(model, ("val",))["val"],
                              full.logits(model, ("val",))["val"], atol=1e-3)


def test_blocks_with_all_neighbours_equal_full_graph():
    model, blocks, full = _regimes("rhgnn", sampler="neighbor_blocks", num_neighbors=[2, 2],
                                   eval_num_neighbors=[-1, -1], eval_batch_size=100)
    got, want = blocks.logits(model, ("val",))["val"], full.logits(model, ("val",))["val"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # with the training fan-outs, each layer reads its own draw: neither the full graph nor the
    # merged sampler's single draw
    model, narrow, _ = _regimes("rhgnn", sampler="neighbor_blocks", num_neighbors=[2, 2],
                                eval_batch_size=100)
    _, merged, _ = _regimes("rhgnn", num_neighbors=[2, 2], eval_batch_size=100)
    got = narrow.logits(model, ("val",))["val"]
    assert not torch.allclose(got, want, atol=1e-3)
    assert not torch.allclose(got, merged.logits(model, ("val",))["val"], atol=1e-3)


def test_training_on_blocks(tmp_path):
    summary = train("rhgnn", tmp_path, "train.regime=sampled", "train.sampler=neighbor_blocks",
                    "train.epochs=2", "train.num_neighbors=[2,2]",
                    "train.eval_num_neighbors=[-1,-1]", "train.monitor_num_neighbors=[2,2]")
    best = tmp_path / "rhgnn" / "seed_0" / "best.pt"
    assert evaluate_checkpoint(best)["test"] == pytest.approx(summary["per_seed"][0]["test"])


@pytest.mark.parametrize("model_name, extra, message", [
    ("rgcn", {}, "neighbor_blocks gives each layer its own edges; model 'rgcn'"),
    ("rhgnn", {"loss_nodes": "sampled"}, "loss_nodes=sampled scores non-seed nodes"),
    ("rhgnn", {"num_neighbors": [2, 2, 2]}, r"one hop per layer: .*\[2, 2, 2\] for 2 layers"),
])
def test_neighbor_blocks_is_refused_where_it_cannot_work(model_name, extra, message):
    with pytest.raises(HgnnError, match=message):
        _regimes(model_name, sampler="neighbor_blocks", **{"num_neighbors": [2, 2], **extra})


def test_eval_num_neighbors_needs_one_entry_per_hop():
    from hgnn.errors import HgnnError
    with pytest.raises(HgnnError, match="eval_num_neighbors.*one entry per hop"):
        _regimes("rgcn", num_neighbors=[2, 2], eval_num_neighbors=[-1])


def test_monitoring_samples_validation_with_its_own_fanouts_redrawn_per_epoch():
    model, sampled, full = _regimes("rhgnn", num_neighbors=[2, 2], eval_num_neighbors=[-1, -1],
                                    monitor_num_neighbors=[2, 2], eval_batch_size=100)
    want = full.logits(model, ("val",))["val"]
    # the final scoring (no monitoring) keeps every neighbour
    torch.testing.assert_close(sampled.logits(model, ("val",))["val"], want, rtol=1e-4, atol=1e-5)
    sampled.epoch = 0
    first = sampled.logits(model, ("val",), monitoring=True)["val"]
    assert not torch.allclose(first, want, atol=1e-3)
    torch.testing.assert_close(sampled.logits(model, ("val",), monitoring=True)["val"], first)
    sampled.epoch = 1
    assert not torch.allclose(sampled.logits(model, ("val",), monitoring=True)["val"], first,
                              atol=1e-3)
    # without monitor_num_neighbors the per-epoch validation scores as the final pass does
    model, plain, _ = _regimes("rhgnn", num_neighbors=[2, 2], eval_num_neighbors=[-1, -1],
                               eval_batch_size=100)
    torch.testing.assert_close(plain.logits(model, ("val",), monitoring=True)["val"], want,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    ({"monitor_num_neighbors": [2]}, "monitor_num_neighbors.*one entry per hop"),
    ({"monitor_num_neighbors": [2, 2], "sampler": "budget"}, "monitor_num_neighbors needs a "
                                                              "neighbour sampler"),
])
def test_monitor_num_neighbors_is_checked(bad, message):
    with pytest.raises(HgnnError, match=message):
        _regimes("rgcn", num_neighbors=[2, 2], **bad)


def test_training_with_sampled_monitoring_scores_the_kept_epoch_with_every_neighbour(tmp_path):
    summary = train("rhgnn", tmp_path, "train.regime=sampled", "train.epochs=3",
                    "train.num_neighbors=[2,2]", "train.eval_num_neighbors=[-1,-1]",
                    "train.monitor_num_neighbors=[2,2]")
    from hgnn.train.inference import restore
    from hgnn.train.metrics import compute_metrics

    best = tmp_path / "rhgnn" / "seed_0" / "best.pt"
    assert evaluate_checkpoint(best)["val"] == pytest.approx(summary["per_seed"][0]["val"])
    # early stopping read the kept epoch's validation as sampled at that epoch
    model, regime, _, task, _ = restore(best)
    result = json.loads((tmp_path / "rhgnn" / "seed_0" / "result.json").read_text())
    regime.seed, regime.epoch = 0, result["best_epoch"]
    logits = regime.logits(model, ("val",), subset=True, monitoring=True)["val"]
    sampled = compute_metrics(logits, regime.scored_labels("val"), task)
    assert result["history"][result["best_epoch"]]["val_micro_f1"] == \
        pytest.approx(sampled["micro_f1"])


def test_loss_on_every_sampled_training_node():
    from hgnn.models.registry import get_model_class

    model, seeds, _ = _regimes("rgcn", num_neighbors=[3, 3], batch_size=16)
    _, every, _ = _regimes("rgcn", num_neighbors=[3, 3], batch_size=16, loss_nodes="sampled")
    model.eval()  # no dropout: the two regimes' forwards must agree on the seeds
    torch.manual_seed(0)
    batch = next(iter(every._loader(every.train_ids(), True, 16, None)))
    torch.manual_seed(0)
    logits, y = next(every._train_batches(model))
    torch.manual_seed(0)
    seed_logits, seed_y = next(seeds._train_batches(model))
    n_id = batch[every.task.target].n_id
    is_train = torch.isin(n_id, every.split_ids["train"])
    assert is_train[:16].all() and len(y) == int(is_train.sum()) > 16
    assert torch.equal(y, every.labels[n_id[is_train]])  # no validation or test label
    torch.testing.assert_close(logits[:16], seed_logits)
    assert torch.equal(y[:16], seed_y)
    # a model that reads labels would see the non-seed training nodes' own labels
    cls = get_model_class("h2gformer")
    reader = cls.build(every.data, every.task, cls.default_config())
    with pytest.raises(HgnnError, match="loss_nodes=sampled"):
        next(every._train_batches(reader))


def test_monitoring_on_every_labelled_node_the_validation_batches_reach():
    """train.monitor_nodes=sampled: LATTE's official validation scores the validation seeds and
    every other labelled validation or training node its batches reach, never a test node; the
    final (non-monitoring) scoring stays on the seeds."""
    from hgnn.models.registry import get_model_class
    from hgnn.train.metrics import compute_metrics

    model, seeds, _ = _regimes("rgcn", num_neighbors=[3, 3], eval_batch_size=16)
    _, every, _ = _regimes("rgcn", num_neighbors=[3, 3], eval_batch_size=16,
                           monitor_nodes="sampled")
    want = seeds.logits(model, ("val",), monitoring=True)["val"]
    got = every.logits(model, ("val",), monitoring=True)["val"]
    scored = every.scored_ids["val"]
    assert got.shape[0] == scored.numel() > want.shape[0]
    split = every.split_ids
    assert torch.isin(scored, torch.cat([split["train"], split["val"]])).all()
    assert torch.isin(scored, split["train"]).any()
    assert not torch.isin(scored, split["test"]).any()
    # each batch's seeds come first, with the logits the seeds-only pass gives them
    labelled = torch.cat([split["train"], split["val"]])
    is_seed = torch.zeros(len(scored), dtype=torch.bool)
    start = 0
    for batch in every._loader(split["val"], False, 16, torch.Generator().manual_seed(12345),
                               phase="val"):
        store = batch[every.task.target]
        assert torch.equal(scored[start:start + store.batch_size], store.n_id[:store.batch_size])
        is_seed[start:start + store.batch_size] = True
        start += int(torch.isin(store.n_id, labelled).sum())
    assert start == len(scored)
    torch.testing.assert_close(got[is_seed], want, rtol=1e-4, atol=1e-5)
    assert torch.equal(every.scored_labels("val"), every.labels[scored])
    compute_metrics(got, every.scored_labels("val"), every.task)  # the trainer's use
    # the final pass scores the seeds only
    torch.testing.assert_close(every.logits(model, ("val",))["val"], seeds.logits(model, ("val",))["val"])
    assert torch.equal(every.scored_ids["val"], split["val"])
    from hgnn.train.regimes import make_regime
    cls = get_model_class("h2gformer")
    reader = cls.build(every.data, every.task, cls.default_config())
    cfg, cpu = every.cfg, torch.device("cpu")
    with pytest.raises(HgnnError, match="monitor_nodes=sampled scores training nodes"):
        make_regime("sampled", every.data, every.task, cfg, cpu, reader)
    with pytest.raises(HgnnError, match="monitor_nodes=sampled scores.*regime=sampled"):
        make_regime("full", every.data, every.task, cfg, cpu, model)


def cli(*args: str, env_extra: dict | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "hgnn", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


@pytest.mark.parametrize("old_format", [False, True])
def test_kill_and_resume_equals_uninterrupted(tmp_path, old_format):
    args = ["train", "--model", "rgcn", "--epochs", "40", "--quiet", "--set", "train.patience=0"]
    ref = cli(*args, "--out", str(tmp_path / "ref"))
    ref.communicate(timeout=300)
    assert ref.returncode == 0
    run = cli(*args, "--out", str(tmp_path / "run"))
    last = tmp_path / "run" / "seed_0" / "last.pt"
    deadline = time.time() + 240
    killed_at = None
    while time.time() < deadline and run.poll() is None:
        if last.is_file():
            try:
                epoch = load_checkpoint(last)["epoch"]
            except Exception:  # mid-rename: try again
                epoch = -1
            if epoch >= 3:
                run.send_signal(signal.SIGKILL)
                killed_at = epoch
                break
        time.sleep(0.02)
    run.communicate(timeout=60)
    assert killed_at is not None and killed_at < 39, "the run was not killed mid-training"
    assert not (tmp_path / "run" / "summary.json").exists()
    if old_format:  # as written before joined monitors: one best_score instead of best_scores
        ckpt = load_checkpoint(last)
        (score,) = ckpt["state"].pop("best_scores").values()
        ckpt["state"]["best_score"] = score
        save_checkpoint(ckpt, last)
    resumed = cli(*args, "--out", str(tmp_path / "run"), "--resume")
    resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    want = json.loads((tmp_path / "ref" / "summary.json").read_text())
    got = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert got["per_seed"][0]["test"] == want["per_seed"][0]["test"]
    assert got["per_seed"][0]["val"] == want["per_seed"][0]["val"]
    assert got["per_seed"][0]["best_epoch"] == want["per_seed"][0]["best_epoch"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hgnn", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args,words", [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "--set", "train.nope=1"], "unknown config key 'train.nope'"),
    (["train", "--set", "train.epochs=abc"], "'train.epochs' must be int"),
    (["train", "--set", "train.monitor=f2"], "joined with '+' (accuracy+macro_f1), got 'f2'"),
    (["train", "--set", "train.monitor=micro_f1+mean_f1"], "'mean_f1' cannot be joined"),
    (["train", "--model", "gtn", "--set", "model.normalization=sym"],
     "'model.normalization' must be one of 'row', 'column', got 'sym'"),
    (["train", "--set", "lr"], "expected key=value"),
    (["train", "--data", "homophily"], "--data expects KEY=VALUE"),
    (["train", "--data", "mixing=sorted"], "mixing must be one of"),
    (["train", "--config", "/nonexistent.yaml"], "cannot read config"),
    (["evaluate", "--checkpoint", "/nonexistent.pt"], "no such checkpoint"),
])
def test_cli_errors(args, words):
    proc = run_cli(*args, "--quiet") if args[0] == "train" else run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    proc = run_cli("evaluate", "--checkpoint", str(bad))
    assert proc.returncode == 2 and "not a readable checkpoint" in proc.stderr
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    proc = run_cli("evaluate", "--checkpoint", str(tmp_path / "other.pt"))
    assert proc.returncode == 2 and "not an hgnn checkpoint" in proc.stderr
    train("rgcn", tmp_path, "train.epochs=2")
    folder = write_hgb(tmp_path / "hgb")
    proc = run_cli("evaluate", "--checkpoint", str(tmp_path / "rgcn" / "seed_0" / "best.pt"),
                   "--dataset", str(folder))
    assert proc.returncode == 2 and "does not match" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_predict_writes_hgb_submission_format(tmp_path):
    folder = write_hgb(tmp_path / "hgb")
    run_experiment("rgcn", str(folder), [0], overrides=["train.epochs=3"], out_dir=tmp_path / "r",
                   quiet=True)
    out = predict_checkpoint(tmp_path / "r" / "seed_0" / "best.pt", tmp_path / "pred.txt")
    lines = out.read_text().splitlines()
    assert len(lines) == 2  # two test nodes in label.dat.test
    for line in lines:
        node, name, ntype, label = line.split("\t")
        assert node in ("4", "5") and name == "" and ntype == "0" and label in ("0", "1")


def test_precomputed_regime(tmp_path):
    from torch import nn
    from torch_geometric.utils import scatter

    from hgnn.models.base import HeteroModel
    from hgnn.train.config import resolve_config
    from hgnn.train.experiment import load_prepared
    from hgnn.train.trainer import SeedRun, train_seed

    class PrecomputedMLP(HeteroModel):
        regimes = ("precomputed",)

        def __init__(self, target, width, classes):
            super().__init__()
            self.target = target
            self.net = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, classes))
            self.calls = 0

        @classmethod
        def default_config(cls):
            return {}

        @classmethod
        def build(cls, data, task, config):
            width = data[task.target].x.size(1) * (1 + sum(
                1 for et in data.edge_types if et[2] == task.target))
            return cls(task.target, width, task.num_classes)

        def precompute(self, data):
            self.calls += 1
            parts = [data[self.target].x]
            for (s, _, d), ei in data.edge_index_dict.items():
                if d == self.target:
                    parts.append(scatter(data[s].x[ei[0]][:, : data[d].x.size(1)], ei[1], 0,
                                         dim_size=data[d].num_nodes, reduce="mean"))
            return torch.cat(parts, 1).half()  # stored compactly, as RpHGNN does

        def forward(self, rows):
            return self.net(rows)

    config = resolve_config({}, "precomputed-mlp", "synthetic",
                            overrides=["train.epochs=40", "train.batch_size=256", "train.lr=0.01"])
    data, task = load_prepared("synthetic", None, 0, config, SMALL)
    # Every type has >= 64 feature columns only on paper; pad the others so slicing works.
    for t in data.node_types:
        if data[t].x.size(1) < data[task.target].x.size(1):
            pad = data[task.target].x.size(1) - data[t].x.size(1)
            data[t].x = torch.cat([data[t].x, torch.zeros(data[t].num_nodes, pad)], 1)
    run = SeedRun("precomputed-mlp", "synthetic", 0, config, task, tmp_path, quiet=True)
    result = train_seed(run, PrecomputedMLP, data)
    assert result["regime"] == "precomputed"
    assert result["timings"]["precompute_s"] > 0
    assert result["test"]["accuracy"] > 0.6  # well above chance (0.2) and the MLP alone (~0.45)


class _TwoParams(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def no_weight_decay(self):
        return {"lin.bias"}

    def lr_groups(self, lr):
        return []


def _opt_cfg(**kw):
    from hgnn.train.config import TRAIN_DEFAULTS

    return {**TRAIN_DEFAULTS["train"], "lr": 0.1, "weight_decay": 0.01, "epochs": 5, **kw}


def test_no_weight_decay_group():
    from hgnn.train.trainer import make_optimizer

    model = _TwoParams()
    opt, _ = make_optimizer(model, _opt_cfg())
    decays = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays[id(model.lin.weight)] == 0.01 and decays[id(model.lin.bias)] == 0.0


def test_cosine_scheduler_is_per_step_down_to_lr_over_100():
    from hgnn.train.trainer import make_optimizer

    opt, sched = make_optimizer(_TwoParams(), _opt_cfg(scheduler="cosine"), steps_per_epoch=4)
    for _ in range(5 * 4):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_plateau_scheduler_cuts_lr_after_patience():
    from hgnn.train.trainer import make_optimizer

    opt, sched = make_optimizer(_TwoParams(), _opt_cfg(scheduler="plateau", plateau_patience=2))
    for loss in (1.0, 0.9, 0.95, 0.95, 0.95):
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_iters_per_epoch_caps_the_batches(tmp_path, monkeypatch):
    from hgnn.train.regimes import Regime

    steps = []
    original = Regime._step
    monkeypatch.setattr(Regime, "_step", lambda self, *a: steps.append(1) or original(self, *a))
    train("rgcn", tmp_path, "train.epochs=2", "train.regime=sampled", "train.batch_size=64",
          "train.iters_per_epoch=3")
    assert len(steps) == 6  # 2 epochs x 3 batches, of the ~15 a full pass would take


def test_cli_data_options_reach_the_reader(tmp_path):
    from hgnn.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--quiet", "--out", str(out),
                 "--data", "scale=0.1", "--data", "mixing=permutation"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset_options"] == {"scale": 0.1, "mixing": "permutation"}
    ckpt = torch.load(out / "seed_0" / "best.pt", weights_only=False)
    assert ckpt["dataset_options"] == {"scale": 0.1, "mixing": "permutation"}


def test_predict_explain_writes_relation_weights(tmp_path):
    from hgnn.cli.main import main

    train("rgcn", tmp_path, "train.epochs=2")
    ckpt = tmp_path / "rgcn" / "seed_0" / "best.pt"
    out = tmp_path / "pred.csv"
    # RGCN has no relation weights: a one-line error, exit 2, and no prediction file written
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(out), "--explain"]) == 2
    assert not out.exists()


@pytest.mark.parametrize("model", ["latte", "rhgnn"])
def test_predict_explain_tables(tmp_path, model, capsys):
    from hgnn.cli.main import main

    train(model, tmp_path, "train.epochs=2", "train.regime=full")
    out = tmp_path / "pred.csv"
    ckpt = tmp_path / model / "seed_0" / "best.pt"
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(out), "--explain"]) == 0
    weights = json.loads((tmp_path / "pred.csv.explain.json").read_text())
    target = "paper"  # the synthetic graph's target type
    assert target in weights and weights[target]
    assert all(0.0 <= w <= 1.0 for w in weights[target].values())
    assert target in capsys.readouterr().out


def test_inductive_batches_hold_no_later_split_nodes():
    from hgnn.models.registry import get_model_class
    from hgnn.train.config import TRAIN_DEFAULTS
    from hgnn.train.regimes import make_regime

    data, task = prepared_synthetic()
    cls = get_model_class("rgcn")
    model = cls.build(data, task, {**cls.default_config(), "hidden": 8})
    cpu = torch.device("cpu")
    for sampler in ("neighbor", "neighbor_joint"):
        cfg = {**TRAIN_DEFAULTS["train"], "num_neighbors": [-1, -1], "batch_size": 64,
               "inductive": True, "sampler": sampler}
        regime = make_regime("sampled", data, task, cfg, cpu, model)
        split = regime.split_ids
        seen = {}
        for phase, ids in (("train", split["train"]), ("val", split["val"]),
                           ("test", split["test"])):
            loader = regime._loader(ids, False, 64, None, phase=phase)
            seen[phase] = torch.cat([b[task.target].n_id for b in loader])
        assert not torch.isin(seen["train"], torch.cat([split["val"], split["test"]])).any()
        assert not torch.isin(seen["val"], split["test"]).any()
        assert torch.isin(seen["val"], split["train"]).any()
        assert torch.isin(seen["test"], split["val"]).any()  # test batches are not restricted
    with pytest.raises(HgnnError, match="inductive needs a neighbour sampler"):
        make_regime("sampled", data, task, {**cfg, "sampler": "budget"}, cpu, model)
    with pytest.raises(HgnnError, match="inductive.*regime=sampled"):
        make_regime("full", data, task, cfg, cpu, model)


def test_shuffled_eval_order_scores_the_same_nodes():
    model, sampled, full = _regimes("rgcn", eval_order="shuffled")
    _, _, in_order = _regimes("rgcn")
    ids = full.eval_ids("val")
    assert not torch.equal(ids, in_order.eval_ids("val"))
    assert torch.equal(ids.sort().values, in_order.eval_ids("val"))
    assert torch.equal(ids, full.eval_ids("val"))  # fixed for the run: epochs compare
    got = full.logits(model, ("val",))["val"]
    want = in_order.logits(model, ("val",))["val"]
    pos = torch.searchsorted(in_order.eval_ids("val"), ids)
    torch.testing.assert_close(got, want[pos])
    assert torch.equal(full.scored_labels("val"), in_order.labels[ids])


def _config_files():
    from hgnn.models import MODELS
    from hgnn.train.config import CONFIG_DIR

    return [(model, path.stem) for model in sorted(MODELS)
            for path in sorted((CONFIG_DIR / model).glob("*.yaml")) if path.stem != "default"]


@pytest.mark.parametrize("model,dataset", _config_files())
def test_every_committed_config_resolves(model, dataset):
    from hgnn.models import get_model_class
    from hgnn.train.config import resolve_config

    cls = get_model_class(model)
    config = resolve_config(cls.default_config(), model, dataset,
                            model_choices=cls.config_choices())
    assert set(config["model"]) == set(cls.default_config())


def test_model_options_outside_their_choices_are_refused_where_given():
    from hgnn.models import MODELS, get_model_class
    from hgnn.train.config import resolve_config

    checked = 0
    for model in sorted(MODELS):
        cls = get_model_class(model)
        for key, allowed in cls.config_choices().items():
            assert cls.default_config()[key] in allowed
            for value in allowed:  # every listed value is accepted
                config = resolve_config(cls.default_config(), model, "synthetic",
                                        overrides=[f"model.{key}={value}"],
                                        model_choices=cls.config_choices())
                assert config["model"][key] == value
            with pytest.raises(HgnnError, match=f"--set model.{key}: 'model.{key}' must be one of "
                                                f"{', '.join(map(repr, allowed))}, got 'nope'"):
                resolve_config(cls.default_config(), model, "synthetic",
                               overrides=[f"model.{key}=nope"], model_choices=cls.config_choices())
            checked += 1
    assert checked >= 5  # gtn normalization, rphgnn merge, h2gformer act, latte norm and weights
