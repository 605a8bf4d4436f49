"""The benchmark harness: aggregation into the table, references, missing runs, resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hgnn.bench.harness import DatasetSpec, Suite, aggregate, load_suite, markdown, run_suite
from hgnn.errors import UnknownNameError


def fake_result(tmp_path, model, dataset, seed, micro, macro, train_s=1.0):
    folder = tmp_path / "runs" / f"{model}-{dataset}" / f"seed_{seed}"
    folder.mkdir(parents=True)
    metrics = {"accuracy": micro, "micro_f1": micro, "macro_f1": macro}
    (folder / "result.json").write_text(json.dumps({
        "seed": seed, "test": metrics, "val": metrics, "peak_memory_mb": 100.0 + seed,
        "timings": {"precompute_s": 0.0, "train_s": train_s, "eval_s": 0.1}}))


def suite() -> Suite:
    return Suite(name="t", kind="train", models=["rgcn", "hgt"],
                 datasets=[DatasetSpec("hgb-dblp", "hgb-dblp"), DatasetSpec("hgb-acm", "hgb-acm")],
                 seeds=[0, 1, 2], metric="micro_f1",
                 references=[{"model": "rgcn", "dataset": "hgb-dblp", "metric": "micro_f1",
                              "value": 92.0, "std": 0.5, "source": "paper X"}])


def test_aggregate_mean_std_reference_and_missing(tmp_path):
    for seed, (mi, ma) in enumerate([(0.90, 0.80), (0.92, 0.82), (0.94, 0.84)]):
        fake_result(tmp_path, "rgcn", "hgb-dblp", seed, mi, ma)
    fake_result(tmp_path, "hgt", "hgb-dblp", 1, 0.5, 0.4)  # only one of three seeds
    table = aggregate(suite(), tmp_path)
    rows = {(r["model"], r["dataset"]): r for r in table["rows"]}
    full = rows["rgcn", "hgb-dblp"]
    assert full["test"]["micro_f1"]["mean"] == pytest.approx(0.92)
    assert full["test"]["micro_f1"]["std"] == pytest.approx(0.02)  # sample std of .90 .92 .94
    assert full["seeds_missing"] == [] and full["peak_memory_mb"] == 102.0
    partial = rows["hgt", "hgb-dblp"]
    assert partial["seeds_done"] == [1] and partial["seeds_missing"] == [0, 2]
    assert "test" not in rows["rgcn", "hgb-acm"]
    text = markdown(table)
    line = next(ln for ln in text.splitlines() if ln.startswith("| rgcn | hgb-dblp"))
    assert "92.00 ± 2.00" in line and "92.00 (micro_f1)" in line and "+0.00" in line
    missing = next(ln for ln in text.splitlines() if ln.startswith("| rgcn | hgb-acm"))
    assert "missing" in missing and "0.00 ±" not in missing  # missing is not zero
    assert "| 1/3 |" in next(ln for ln in text.splitlines() if ln.startswith("| hgt | hgb-dblp"))
    assert "paper X" in text
    assert "| machine |" not in text  # one machine: no column


def test_rows_from_different_machines_are_marked(tmp_path):
    """Timings measured on different machines must not sit unmarked in one table."""
    machines = {"rgcn": {"cpu": "CPU A", "cpu_count": 2, "torch_threads": 1, "gpu": None},
                "hgt": {"cpu": "CPU B", "cpu_count": 16, "torch_threads": 16, "gpu": "H100"}}
    for model, hw in machines.items():
        fake_result(tmp_path, model, "hgb-dblp", 0, 0.9, 0.8)
        (tmp_path / "runs" / f"{model}-hgb-dblp" / "summary.json").write_text(
            json.dumps({"hardware": hw}))
    text = markdown(aggregate(suite(), tmp_path))
    assert "(a) CPU A, 2 cores, torch threads 1, GPU: none" in text
    assert "(b) CPU B, 16 cores, torch threads 16, GPU: H100" in text
    lines = text.splitlines()
    assert next(ln for ln in lines if ln.startswith("| rgcn | hgb-dblp")).endswith("| a |")
    assert next(ln for ln in lines if ln.startswith("| hgt | hgb-dblp")).endswith("| b |")
    assert next(ln for ln in lines if ln.startswith("| rgcn | hgb-acm")).endswith("| - |")


def test_resume_skips_finished_runs(tmp_path, monkeypatch):
    small = Suite(name="tiny", kind="train", models=["mlp"],
                  datasets=[DatasetSpec("synthetic", "syn", {"scale": 0.1})], seeds=[0, 1],
                  metric="accuracy", overrides=["train.epochs=2"])
    table = run_suite(small, tmp_path, log=lambda _: None)
    assert table["rows"][0]["seeds_done"] == [0, 1]
    assert (tmp_path / "tiny.md").is_file() and (tmp_path / "tiny.json").is_file()

    import hgnn.train.experiment as experiment

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiment, "train_seed", refuse)
    again = run_suite(small, tmp_path, log=lambda _: None)
    assert again["rows"][0]["test"] == table["rows"][0]["test"]


def test_suites_load_and_unknown_suite_is_an_error():
    hgb = load_suite("hgb")
    assert hgb.models and hgb.seeds == [0, 1, 2, 3, 4]
    assert hgb.reference("rgcn", "hgb-dblp")["value"] == 92.07
    assert load_suite("heterophily").datasets[0].options == {"homophily": 0.1}
    with pytest.raises(UnknownNameError, match="unknown benchmark suite"):
        load_suite("nope")


@pytest.mark.parametrize("root", [None, "some/data/root"])
def test_script_suite_gets_the_data_root(tmp_path, monkeypatch, root):
    monkeypatch.setenv("HGNN_DATA", "from/the/environment")
    script = tmp_path / "probe.py"
    seen = tmp_path / "seen.txt"
    script.write_text(f"import os, sys; open({str(seen)!r}, 'w').write(os.environ['HGNN_DATA'] "
                      "+ ' ' + ' '.join(sys.argv[1:]))\n")
    run_suite(Suite(name="s", kind="script", script=str(script)), tmp_path / "out", root=root)
    # and writes where --results points, not into the committed results
    assert seen.read_text() == f"{root or 'from/the/environment'} --out {tmp_path / 'out'}"


def test_table_only_refuses_a_script_suite(capsys):
    from hgnn.cli.main import main

    assert main(["bench", "kernels", "--table-only", "--results", "/nonexistent"]) == 2
    assert "suite 'kernels' is a script (benchmarks/kernels/bench.py)" in capsys.readouterr().err


def test_paired_seeds_pairs_runs_by_seed(tmp_path, monkeypatch):
    """benchmarks/paired_seeds.py: only seeds both runs hold are paired, A - B per seed in points,
    the sample std of the differences, and a paired t-test's p-value."""
    import importlib.util
    from pathlib import Path

    from scipy import stats

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "paired_seeds.py"
    spec = importlib.util.spec_from_file_location("paired_seeds", path)
    paired = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paired)
    a = {0: 0.90, 1: 0.80, 2: 0.85, 3: 0.70}
    b = {0: 0.88, 1: 0.81, 2: 0.80, 4: 0.99}  # seed 3 only in A, seed 4 only in B
    for run, values in (("m-d", a), ("n-d", b)):
        for seed, value in values.items():
            folder = tmp_path / run / f"seed_{seed}"
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps({"seed": seed,
                                                            "test": {"micro_f1": value}}))
    monkeypatch.setattr(paired, "RUNS", tmp_path)
    row = paired.compare("m-d", "n-d", "micro_f1")
    assert row["seeds"] == [0, 1, 2]
    assert row["diffs"] == pytest.approx([2.0, -1.0, 5.0])
    assert row["mean"] == pytest.approx(2.0) and row["std"] == pytest.approx(3.0)
    assert row["p"] == pytest.approx(stats.ttest_rel([90, 80, 85], [88, 81, 80]).pvalue)
    assert "| m-d | n-d | micro_f1 | +2.00 | 3.00 | +2.00 -1.00 +5.00 |" in paired.markdown([row])
    assert paired.compare("m-d", "missing", "micro_f1") is None


def test_table_only_refuses_a_results_folder_without_runs(tmp_path, capsys):
    from hgnn.cli.main import main

    assert main(["bench", "hgb", "--table-only", "--results", str(tmp_path / "r")]) == 2
    assert "no run folder of suite 'hgb' under" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # no table of 'missing' rows written


def test_the_rerun_hint_names_what_hgnn_bench_was_given(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nmodels: [mlp]\ndatasets: [synthetic]\n")
    custom = markdown(aggregate(load_suite(str(path)), tmp_path / "r"))
    assert f"Rerun or continue: `hgnn bench {path} --results {tmp_path / 'r'}`" in custom
    built_in = markdown(aggregate(load_suite("hgb"), Path("benchmarks/results")))
    assert "Rerun or continue: `hgnn bench hgb` (finished" in built_in
