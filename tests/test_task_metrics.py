"""Metrics a dataset's task declares beyond accuracy / micro-F1 / macro-F1 (``f1_positive`` on
H2GB's RCDD, IEEE-CIS-G and PDNS): reported in the run summary, the printed table and the bench
tables, selectable as ``train.monitor``; and runs that could not train meaningfully (an empty
training or validation split) refused before anything is written."""
from __future__ import annotations

import json

import pytest
import torch

from hgnn.bench.harness import DatasetSpec, Suite, aggregate, markdown
from hgnn.cli.main import main
from hgnn.errors import HgnnError
from hgnn.train.experiment import format_table, run_experiment
from tests.test_h2gb import _oag_graph, _pdns_files, _rcdd_files, _write_files, _write_oag

PLAIN_HEADER = f"{'split':<6}" + "".join(f"{m:>20}" for m in ("accuracy", "micro_f1", "macro_f1"))
SYNTHETIC = {"scale": 0.1}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _rcdd_root(tmp_path):
    files, _ = _rcdd_files()
    _write_files(tmp_path / "data" / "RCDD" / "raw", files)
    return str(tmp_path / "data")


def _oag_root(tmp_path, years: dict[int, int]):
    """The OAG-CS fixture with some papers moved to other years (train <= 2016, val 2017), in a
    data root of its own."""
    graph = _oag_graph()
    for paper, year in years.items():
        graph["node_feature"]["paper"]["time"][paper] = year
    root = tmp_path / ("data-" + "-".join(f"{p}_{y}" for p, y in sorted(years.items())))
    _write_oag(root / "OAG" / "cs" / "raw" / "graph_CS_20190919.pt", graph)
    return str(root)


def _train_cli(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["train", "--model", "mlp", "--quiet", *args])
    return rc, capsys.readouterr().err.strip()


def test_summary_and_table_report_the_declared_positive_class_f1(tmp_path):
    summary = run_experiment("mlp", "h2gb-rcdd", [0, 1], root=_rcdd_root(tmp_path),
                             overrides=["train.epochs=3"], out_dir=tmp_path / "run", quiet=True)
    assert summary["task"]["metrics"][0] == "f1_positive"
    for split in ("val", "test"):
        assert list(summary["metrics"][split]) == ["accuracy", "micro_f1", "macro_f1",
                                                   "f1_positive"]
        values = [r[split]["f1_positive"] for r in summary["per_seed"]]
        stat = summary["metrics"][split]["f1_positive"]
        assert stat["mean"] == pytest.approx(sum(values) / 2)
        assert stat["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["metrics"] == summary["metrics"]
    lines = format_table(summary).splitlines()
    assert lines[1] == PLAIN_HEADER + f"{'f1_positive':>20}"
    test = summary["metrics"]["test"]["f1_positive"]
    assert lines[3].endswith(f"{100 * test['mean']:>13.2f} ± {100 * test['std']:<4.2f}")


def test_tasks_declaring_no_other_metric_keep_their_columns(tmp_path):
    summary = run_experiment("mlp", "synthetic", [0], overrides=["train.epochs=1"],
                             out_dir=tmp_path / "run", quiet=True, dataset_options=SYNTHETIC)
    assert list(summary["metrics"]["test"]) == ["accuracy", "micro_f1", "macro_f1"]
    assert format_table(summary).splitlines()[1] == PLAIN_HEADER


def test_monitor_f1_positive_picks_the_checkpoint(tmp_path):
    _write_files(tmp_path / "data" / "PDNS" / "raw", _pdns_files())
    summary = run_experiment("mlp", "h2gb-pdns", [2], root=str(tmp_path / "data"),
                             overrides=["train.epochs=8", "train.lr=0.01",
                                        "train.monitor=f1_positive"],
                             out_dir=tmp_path / "run", quiet=True)
    result = json.loads((tmp_path / "run" / "seed_2" / "result.json").read_text())
    scores = [h["val_f1_positive"] for h in result["history"]]
    micro = [h["val_micro_f1"] for h in result["history"]]
    assert len(scores) == 8 and max(scores) > 0
    assert result["best_epoch"] == scores.index(max(scores))
    # on this run the two monitors keep different epochs (micro-F1 = accuracy on a binary task)
    assert micro.index(max(micro)) != result["best_epoch"]
    assert summary["config"]["train"]["monitor"] == "f1_positive"
    assert result["val"]["f1_positive"] == pytest.approx(max(scores))


def test_h2gb_binary_datasets_select_by_positive_class_f1_for_every_model(tmp_path):
    """H2GB's configs for RCDD, IEEE-CIS-G and PDNS set metric_best: f1; the dataset protocol
    YAML carries it to every model, below a model x dataset YAML and --set."""
    from hgnn.models import MODELS, get_model_class
    from hgnn.train.config import PROTOCOL_DIR, config_sources, resolve_config

    protocols = sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml"))
    assert protocols == ["h2gb-ieee-cis", "h2gb-pdns", "h2gb-rcdd"]
    for dataset in protocols:
        for model in sorted(MODELS):
            cls = get_model_class(model)
            config = resolve_config(cls.default_config(), model, dataset,
                                    model_choices=cls.config_choices())
            assert config["train"]["monitor"] == "f1_positive", (model, dataset)
            assert str(PROTOCOL_DIR / f"{dataset}.yaml") in config_sources(model, dataset, None)
            given = resolve_config(cls.default_config(), model, dataset,
                                   overrides=["train.monitor=accuracy"],
                                   model_choices=cls.config_choices())
            assert given["train"]["monitor"] == "accuracy"
    mag = get_model_class("h2gformer")
    assert resolve_config(mag.default_config(), "h2gformer", "h2gb-mag-year",
                          model_choices=mag.config_choices())["train"]["monitor"] == "accuracy"
    _write_files(tmp_path / "data" / "PDNS" / "raw", _pdns_files())
    summary = run_experiment("mlp", "h2gb-pdns", [2], root=str(tmp_path / "data"),
                             overrides=["train.epochs=8", "train.lr=0.01"],
                             out_dir=tmp_path / "run", quiet=True)
    result = json.loads((tmp_path / "run" / "seed_2" / "result.json").read_text())
    scores = [h["val_f1_positive"] for h in result["history"]]
    assert result["best_epoch"] == scores.index(max(scores))
    assert summary["config"]["train"]["monitor"] == "f1_positive"


def test_monitor_f1_positive_is_refused_without_a_positive_class(tmp_path, capsys):
    out = tmp_path / "run"
    run_experiment("mlp", "synthetic", [0], overrides=["train.epochs=1"], out_dir=out, quiet=True,
                   dataset_options=SYNTHETIC)
    rc, err = _train_cli(capsys, "--dataset", "synthetic", "--data", "scale=0.1", "--epochs", "1",
                         "--out", str(out), "--set", "train.monitor=accuracy+f1_positive")
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "'f1_positive'" in err and "dataset 'synthetic'" in err
    assert "accuracy, micro_f1, macro_f1" in err
    assert (out / "seed_0" / "result.json").is_file()  # the earlier run is left as it was
    with pytest.raises(HgnnError, match="positive class"):
        run_experiment("mlp", "synthetic", [0], overrides=["train.monitor=f1_positive"],
                       out_dir=tmp_path / "fresh", quiet=True, dataset_options=SYNTHETIC)
    assert not (tmp_path / "fresh").exists()


def test_an_empty_training_split_is_refused_before_training(tmp_path, capsys):
    root = _oag_root(tmp_path, {0: 2017, 1: 2017})  # both training papers move to validation
    out = tmp_path / "run"
    run_experiment("mlp", "synthetic", [0], overrides=["train.epochs=1"], out_dir=out, quiet=True,
                   dataset_options=SYNTHETIC)
    rc, err = _train_cli(capsys, "--dataset", "h2gb-oag-cs", "--root", root, "--epochs", "1",
                         "--out", str(out))
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "h2gb-oag-cs" in err and "training split is empty" in err
    assert "train 0, val 3, test 1" in err
    assert (out / "seed_0" / "result.json").is_file()
    rc, err = _train_cli(capsys, "--dataset", "h2gb-oag-cs", "--root", root, "--epochs", "1",
                         "--out", str(tmp_path / "fresh"))
    assert rc == 2 and not (tmp_path / "fresh").exists()


def test_an_empty_validation_split_is_refused_under_a_loss_monitor(tmp_path, capsys):
    root = _oag_root(tmp_path, {2: 2016})  # the validation paper moves to training
    rc, err = _train_cli(capsys, "--dataset", "h2gb-oag-cs", "--root", root, "--epochs", "1",
                         "--out", str(tmp_path / "run"), "--set", "train.monitor=loss")
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "h2gb-oag-cs" in err and "validation split is empty" in err
    assert "train 3, val 0, test 1" in err and "train.monitor 'loss'" in err
    assert not (tmp_path / "run").exists()
    # under a metric monitor it trains (tiny fixtures do), with a warning that epoch 0 is kept
    rc, err = _train_cli(capsys, "--dataset", "h2gb-oag-cs", "--root", root, "--epochs", "2",
                         "--out", str(tmp_path / "warned"))
    assert rc == 0 and "hgnn: warning:" in err and "validation split is empty" in err, err
    result = json.loads((tmp_path / "warned" / "seed_0" / "result.json").read_text())
    assert result["best_epoch"] == 0
    # an empty test split trains, with a warning that its scores will read 0
    rc, err = _train_cli(capsys, "--dataset", "h2gb-oag-cs", "--root", _oag_root(tmp_path, {4: 2017}),
                         "--epochs", "1", "--out", str(tmp_path / "no-test"))
    assert rc == 0 and "hgnn: warning:" in err and "test split is empty" in err, err
    assert "train 2, val 2, test 0" in err
    # the fixture as written (2, 1, 1 papers) trains without a warning
    rc, err = _train_cli(capsys, "--dataset", "h2gb-oag-cs", "--root", _oag_root(tmp_path, {}),
                         "--epochs", "1", "--out", str(tmp_path / "ok"))
    assert rc == 0 and "warning" not in err, err


def _fake_result(tmp_path, model, dataset, seed, value, declared=None):
    folder = tmp_path / "runs" / f"{model}-{dataset}" / f"seed_{seed}"
    folder.mkdir(parents=True)
    metrics = {"accuracy": value, "micro_f1": value, "macro_f1": value, "f1_positive": value / 2}
    record = {"seed": seed, "test": metrics, "val": metrics, "peak_memory_mb": 100.0,
              "timings": {"precompute_s": 0.0, "train_s": 1.0, "eval_s": 0.1}}
    if declared is not None:
        record["task"] = {"metrics": declared}
    (folder / "result.json").write_text(json.dumps(record))


def test_bench_tables_show_declared_metrics_only_where_declared(tmp_path):
    suite = Suite(name="t", kind="train", models=["mlp"], seeds=[0, 1],
                  datasets=[DatasetSpec("h2gb-rcdd", "h2gb-rcdd"),
                            DatasetSpec("h2gb-pokec", "h2gb-pokec")])
    for seed, value in enumerate([0.6, 0.8]):
        _fake_result(tmp_path, "mlp", "h2gb-rcdd", seed, value, ["f1_positive", "accuracy"])
        _fake_result(tmp_path, "mlp", "h2gb-pokec", seed, value, ["accuracy"])
    rows = {r["dataset"]: r for r in aggregate(suite, tmp_path)["rows"]}
    assert rows["h2gb-rcdd"]["test"]["f1_positive"]["mean"] == pytest.approx(0.35)
    assert list(rows["h2gb-pokec"]["test"]) == ["accuracy", "micro_f1", "macro_f1"]
    lines = markdown(aggregate(suite, tmp_path)).splitlines()
    header = next(ln for ln in lines if ln.startswith("| model |"))
    assert "| accuracy | F1 (positive) | reference (metric) |" in header
    rcdd = next(ln for ln in lines if ln.startswith("| mlp | h2gb-rcdd"))
    pokec = next(ln for ln in lines if ln.startswith("| mlp | h2gb-pokec"))
    assert "| 35.00 ± 7.07 |" in rcdd and "| 70.00 ± 14.14 | - |" in pokec
    assert len({ln.count("|") for ln in lines if ln.startswith("| ")} |
               {lines[lines.index(header) + 1].count("|")}) == 1


def test_bench_tables_without_declared_metrics_are_unchanged(tmp_path):
    suite = Suite(name="t", kind="train", models=["mlp"], seeds=[0],
                  datasets=[DatasetSpec("hgb-dblp", "hgb-dblp")])
    _fake_result(tmp_path, "mlp", "hgb-dblp", 0, 0.9, ["micro_f1", "macro_f1"])
    _fake_result(tmp_path, "mlp", "old-run", 0, 0.9)  # result.json without a task
    table = aggregate(suite, tmp_path)
    assert list(table["rows"][0]["test"]) == ["accuracy", "micro_f1", "macro_f1"]
    header = next(ln for ln in markdown(table).splitlines() if ln.startswith("| model |"))
    assert header == ("| model | dataset | micro-F1 | macro-F1 | accuracy | reference (metric) | "
                      "ours - reference | precompute s | train s | s / epoch | eval s | "
                      "peak MiB | seeds |")
    old = Suite(name="o", kind="train", models=["mlp"], seeds=[0],
                datasets=[DatasetSpec("old-run", "old-run")])
    assert list(aggregate(old, tmp_path)["rows"][0]["test"]) == ["accuracy", "micro_f1",
                                                                 "macro_f1"]


def test_class_weights_weigh_the_cross_entropy_and_must_fit_the_classes(tmp_path, capsys):
    """H2GB's weighted_cross_entropy (IEEE-CIS-G's H2G-former weighs fraud 5): the loss against
    its definition, sum_i w[y_i] * nll_i / sum_i w[y_i]; weights that do not fit the task are
    refused before training."""
    from hgnn.data.task import TaskSpec
    from hgnn.train.config import resolve_config
    from hgnn.train.regimes import loss_fn

    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(7, 2, generator=gen), torch.tensor([0, 1, 1, 0, 0, 0, 1])
    task = TaskSpec("t", 2)
    nll = -torch.log_softmax(logits, 1)[torch.arange(7), y]
    w = torch.tensor([1.0, 5.0])[y]
    torch.testing.assert_close(loss_fn(logits, y, task, [1.0, 5.0]), (w * nll).sum() / w.sum())
    torch.testing.assert_close(loss_fn(logits, y, task), nll.mean())
    config = resolve_config({}, "nomodel", "synthetic", overrides=["train.class_weights=[1, 5]"])
    assert config["train"]["class_weights"] == [1.0, 5.0]
    for bad, words in (("[1, -2]", "takes weights > 0"), ("[1, x]", "must be a list of float")):
        with pytest.raises(HgnnError, match=words):
            resolve_config({}, "nomodel", "synthetic", overrides=[f"train.class_weights={bad}"])
    rc, err = _train_cli(capsys, "--dataset", "synthetic", "--data", "scale=0.1", "--epochs", "1",
                         "--set", "train.class_weights=[1, 5]", "--out", str(tmp_path / "run"))
    assert rc == 2 and "train.class_weights [1.0, 5.0]: dataset 'synthetic' has 5 classes; give 5 " \
                       "weights" in err
    assert not (tmp_path / "run").exists()


def test_predictions_carry_the_files_own_ids(tmp_path, capsys):
    """RCDD's items are numbered per type in hgnn; the prediction file also gives each test
    item's global id from the files, so predictions can be matched to AliRCD_ICDM_test_labels."""
    files, truth = _rcdd_files()
    root = _rcdd_root(tmp_path)
    run_experiment("mlp", "h2gb-rcdd", [0], root=root, overrides=["train.epochs=2"],
                   out_dir=tmp_path / "run", quiet=True)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "seed_0" / "best.pt"),
                 "--root", root, "--out", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "node,source_id,label"
    loc = truth["local"]
    got = {int(sid): int(node) for node, sid, _ in (r.split(",") for r in rows[1:])}
    assert set(got) == {gid for gid, _ in truth["test"]}
    assert all(loc[gid][1] == node for gid, node in got.items())


@pytest.mark.parametrize("override", ["train.regime=full", "train.inductive=true"])
def test_a_refused_regime_leaves_an_earlier_run_as_it_was(tmp_path, override):
    out = tmp_path / "run"
    run_experiment("rphgnn", "synthetic", [0], overrides=["train.epochs=1"], out_dir=out,
                   quiet=True, dataset_options=SYNTHETIC)
    before = sorted(p.name for p in (out / "seed_0").iterdir())
    with pytest.raises(HgnnError, match="regime"):
        run_experiment("rphgnn", "synthetic", [0], overrides=["train.epochs=1", override],
                       out_dir=out, quiet=True, dataset_options=SYNTHETIC)
    assert sorted(p.name for p in (out / "seed_0").iterdir()) == before
    assert "result.json" in before
