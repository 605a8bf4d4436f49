"""``hgnn bench SUITE``: run a suite's matrix (resumable) and tabulate it beside the papers.

A suite is a YAML file (``hgnn/bench/suites/<name>.yaml`` or any path):

* ``kind: train``: ``models`` x ``datasets`` x ``seeds``, optional ``overrides`` (``key=value``),
  ``metric`` (the headline column) and ``references`` (published numbers with their source);
* ``kind: script``: a benchmark script under ``benchmarks/`` that writes its own results.

Each (model, dataset) trains into ``<results>/runs/<model>-<dataset label>/`` with the run record of
:func:`hgnn.train.experiment.run_experiment`; seeds whose ``result.json`` exists are skipped, so an
interrupted suite continues where it stopped. The aggregate goes to ``<results>/<suite>.json`` and
``.md`` plus PNG plots; a run that has not produced results is shown as missing, never as zero.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hgnn.errors import HgnnError, UnknownNameError

SUITE_DIR = Path(__file__).resolve().parent / "suites"
METRICS = ("accuracy", "micro_f1", "macro_f1")
# columns of the Markdown table for metrics beyond METRICS that a task declares (shown only in
# suites with such a dataset)
EXTRA_LABELS = {"f1_positive": "F1 (positive)"}


DEFAULT_RESULTS = Path("benchmarks/results")  # `hgnn bench --results`, relative to the cwd

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str
    options: dict = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    kind: str
    models: list[str] = field(default_factory=list)
    datasets: list[DatasetSpec] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    metric: str = "micro_f1"
    overrides: list[str] = field(default_factory=list)
    references: list[dict] = field(default_factory=list)
    script: str | None = None
    given_as: str = ""  # what `hgnn bench` was given: a built-in suite's name or a YAML's path

    def reference(self, model: str, dataset: str) -> dict | None:
        return next((r for r in self.references
                     if r["model"] == model and r["dataset"] == dataset), None)


def known_suites() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name: str) -> Suite:
    """A suite by name (``hgb``, ``kernels``, ...) or by path to a YAML file."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UnknownNameError(f"unknown benchmark suite '{name}' (known: "
                               f"{', '.join(known_suites())}; or a path to a suite YAML)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise HgnnError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    unknown = set(raw) - {"name", "kind", "models", "datasets", "seeds", "metric", "overrides",
                          "references", "script"}
    if unknown:
        raise HgnnError(f"{path}: unknown suite keys {sorted(unknown)}")
    datasets = [DatasetSpec(d, d) if isinstance(d, str) else
                DatasetSpec(d["name"], d.get("label", d["name"]), dict(d.get("options", {})))
                for d in raw.get("datasets", [])]
    kind = raw.get("kind", "train")
    if kind not in ("train", "script"):
        raise HgnnError(f"{path}: kind must be 'train' or 'script', got {kind!r}")
    return Suite(name=raw.get("name", path.stem), kind=kind, models=list(raw.get("models", [])),
                 datasets=datasets, seeds=list(raw.get("seeds", [0])),
                 metric=raw.get("metric", "micro_f1"), overrides=list(raw.get("overrides", [])),
                 references=list(raw.get("references", [])), script=raw.get("script"),
                 given_as=name if path.parent == SUITE_DIR else str(path))


def run_dir(results: Path, model: str, dataset: DatasetSpec) -> Path:
    return results / "runs" / f"{model}-{dataset.label}"


def dataset_present(dataset: DatasetSpec, root: str | None) -> bool:
    from hgnn.data.registry import DATASETS, data_root

    entry = DATASETS.get(dataset.name)
    if entry is None or not entry.paths:
        return True  # generated datasets and paths need no lookup
    base = data_root(root)
    return any((base / p).exists() for p in entry.paths)


def run_suite(suite: Suite, results: Path, root: str | None = None, quiet: bool = True,
              runner: Callable | None = None, log: Callable[[str], None] = print) -> dict:
    """Run what is not done yet, then aggregate and write the tables and plots."""
    results = Path(results)
    if suite.kind == "script":
        script = Path(suite.script or "")
        if not script.is_file():
            raise HgnnError(f"suite '{suite.name}' runs {script}, which is not here (run hgnn "
                            "bench from the repository root)")
        # a script reads its data where every loader does: --root reaches it as HGNN_DATA
        env = {**os.environ, "HGNN_DATA": str(root)} if root is not None else None
        subprocess.run([sys.executable, str(script), "--out", str(results)], check=True, env=env)
        return {}
    if runner is None:
        from hgnn.train.experiment import run_experiment as runner
    for model in suite.models:
        for ds in suite.datasets:
            if not dataset_present(ds, root):
                log(f"skip {model} on {ds.label}: dataset files not found")
                continue
            log(f"run {model} on {ds.label}, seeds {suite.seeds}")
            runner(model, ds.name, suite.seeds, root=root, overrides=list(suite.overrides),
                   out_dir=run_dir(results, model, ds), resume=True, quiet=quiet,
                   dataset_options=ds.options or None)
    table = aggregate(suite, results)
    write_outputs(suite, table, results)
    return table


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def aggregate(suite: Suite, results: Path) -> dict:
    """One row per (model, dataset) from the per-seed ``result.json`` files found."""
    rows = []
    for model in suite.models:
        for ds in suite.datasets:
            folder = run_dir(results, model, ds)
            found = {}
            for seed in suite.seeds:
                path = folder / f"seed_{seed}" / "result.json"
                if path.is_file():
                    found[seed] = json.loads(path.read_text())
            ref = suite.reference(model, ds.label) or suite.reference(model, ds.name)
            row = {"model": model, "dataset": ds.label, "seeds_done": sorted(found),
                   "seeds_missing": [s for s in suite.seeds if s not in found],
                   "reference": ref, "run_dir": str(folder)}
            if found:
                res = list(found.values())
                names = _row_metrics(res)
                row["test"] = {m: _mean_std([r["test"][m] for r in res]) for m in names}
                row["val"] = {m: _mean_std([r["val"][m] for r in res]) for m in names}
                row["timings_s"] = {k: statistics.fmean(r["timings"][k] for r in res)
                                    for k in ("precompute_s", "train_s", "eval_s")}
                row["epoch_s"] = statistics.fmean(r["timings"]["train_s"] / max(r.get("epochs_run", 1), 1)
                                                  for r in res)
                row["peak_memory_mb"] = max(r.get("peak_memory_mb", 0.0) for r in res) or None
                summary = folder / "summary.json"
                if summary.is_file():
                    record = json.loads(summary.read_text())
                    row["config"] = record.get("config")
                    row["versions"] = record.get("versions")
                    row["hardware"] = record.get("hardware")
            rows.append(row)
    from hgnn.train.record import hardware

    rerun = f"hgnn bench {suite.given_as or suite.name}"
    if results != DEFAULT_RESULTS:
        rerun += f" --results {results}"
    return {"suite": suite.name, "metric": suite.metric, "seeds": suite.seeds,
            "machine": hardware(), "rerun": rerun, "rows": rows}


def _row_metrics(results: list[dict]) -> tuple[str, ...]:
    """:data:`METRICS`, then the other metrics the runs' task declares (``task.metrics`` in
    ``result.json``, e.g. ``f1_positive`` on H2GB's binary tasks) where every seed scored them."""
    from hgnn.train.metrics import reported_metrics

    declared = (results[0].get("task") or {}).get("metrics")
    return reported_metrics(declared, *(r[split] for r in results for split in ("val", "test")))


def _extra_metrics(table: dict) -> list[str]:
    """Metrics beyond :data:`METRICS` that some row holds, in first-seen order."""
    return list(dict.fromkeys(m for r in table["rows"] for m in r.get("test", {})
                              if m not in METRICS))


def _cell(stat: dict | None) -> str:
    return "missing" if stat is None else f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def machines(table: dict) -> list[str]:
    """The machine each row's run summary recorded, in table order (the table's own machine for
    runs that recorded none). Rows added to a suite in later sessions can come from other
    machines, and their timings must not be read against each other."""
    from hgnn.train.record import describe_hardware

    return [describe_hardware(r.get("hardware") or table["machine"]) for r in table["rows"]]


def markdown(table: dict) -> str:
    from hgnn.train.record import describe_hardware

    per_row = machines(table)
    # the table's own machine when no row has results yet
    distinct = list(dict.fromkeys(m for m, r in zip(per_row, table["rows"], strict=True)
                                  if "test" in r)) or [describe_hardware(table["machine"])]
    if len(distinct) == 1:
        where = f"Machine: {distinct[0]}."
    else:  # timings from different machines are not comparable: say which row ran where
        where = "Machines (column `machine`; times compare only within one): " + "; ".join(
            f"({chr(97 + i)}) {m}" for i, m in enumerate(distinct)) + "."
    mixed = len(distinct) > 1
    extra = _extra_metrics(table)  # none for suites whose tasks declare no other metric
    lines = [f"# Benchmark suite `{table['suite']}` (measured here)", "",
             f"{where} Seeds "
             f"{table['seeds']}; test metrics of the best-validation checkpoint on the full test "
             "set, mean ± std over seeds, in %. Reference numbers (a paper's, or a named port's) "
             "are labelled with their source below; they are not our results. "
             "Times are means per seed (eval = validation every epoch plus the final test pass); "
             "peak MiB is the process's peak resident memory.",
             "",
             "| model | dataset | micro-F1 | macro-F1 | accuracy | "
             + "".join(f"{EXTRA_LABELS.get(m, m)} | " for m in extra)
             + "reference (metric) | ours - reference | "
             "precompute s | train s | s / epoch | eval s | peak MiB | seeds |"
             + (" machine |" if mixed else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(extra)
             + ("---|" if mixed else "")]
    for r, machine in zip(table["rows"], per_row, strict=True):
        test = r.get("test", {})
        ref = r["reference"]
        ref_cell, diff = "-", "-"
        if ref:
            ref_cell = f"{ref['value']:.2f} ({ref['metric']})"
            if test:
                diff = f"{100 * test[ref['metric']]['mean'] - ref['value']:+.2f}"
        seeds = f"{len(r['seeds_done'])}/{len(r['seeds_done']) + len(r['seeds_missing'])}"
        times = (f"{r['timings_s']['precompute_s']:.1f} | {r['timings_s']['train_s']:.1f} | "
                 f"{r['epoch_s']:.2f} | {r['timings_s']['eval_s']:.1f}") if test else \
            "missing | missing | missing | missing"
        peak = f"{r['peak_memory_mb']:.0f}" if test and r.get("peak_memory_mb") else "-"
        where_cell = ""
        if mixed:
            where_cell = f" {chr(97 + distinct.index(machine)) if test else '-'} |"
        # a row whose task does not declare an extra metric shows "-" there (not applicable)
        extra_cells = "".join(f"{_cell(test[m]) if m in test else '-' if test else 'missing'} | "
                              for m in extra)
        lines.append(f"| {r['model']} | {r['dataset']} | {_cell(test.get('micro_f1'))} | "
                     f"{_cell(test.get('macro_f1'))} | {_cell(test.get('accuracy'))} | "
                     f"{extra_cells}{ref_cell} | "
                     f"{diff} | {times} | {peak} | {seeds} |{where_cell}")
    sources = sorted({r["reference"]["source"] for r in table["rows"] if r["reference"]})
    if sources:
        lines += ["", "References: " + "; ".join(sources) + "."]
    rerun = table.get("rerun", f"hgnn bench {table['suite']}")
    lines += ["", f"Rerun or continue: `{rerun}` (finished seeds are skipped). "
              "Each run folder holds the resolved config, versions and git commit "
              "(`summary.json`) and per-seed results."]
    return "\n".join(lines) + "\n"


def plot(table: dict, png_paper: Path, png_time: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table["rows"] if "test" in r]
    if not rows:
        return
    datasets = sorted({r["dataset"] for r in rows})
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        xs, ours, errs, paper = [], [], [], []
        labels = list(models)
        for i, model in enumerate(models):
            r = next((r for r in rows if r["model"] == model and r["dataset"] == ds), None)
            if r is None:
                continue
            metric = r["reference"]["metric"] if r["reference"] else table["metric"]
            if metric not in r["test"]:  # e.g. f1_positive on a dataset that is not binary
                continue
            if metric != table["metric"]:  # compared on its reference's metric: say so
                labels[i] = f"{model}\n({metric})"
            xs.append(i)
            ours.append(100 * r["test"][metric]["mean"])
            errs.append(100 * r["test"][metric]["std"])
            paper.append(r["reference"]["value"] if r["reference"] else float("nan"))
        ax.bar([x - 0.2 for x in xs], ours, 0.4, yerr=errs, label="ours (measured)")
        ax.bar([x + 0.2 for x in xs], paper, 0.4, label="reference (paper or port)", alpha=0.6)
        ax.set_xticks(range(len(models)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(ds)
        lo = min([v for v in ours + paper if v == v] or [0])
        ax.set_ylim(max(0, lo - 10), 100)
        ax.set_ylabel(f"test {table['metric']} (%)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_paper, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for model in models:
        pts = [(r["timings_s"]["train_s"], 100 * r["test"][table["metric"]]["mean"], r["dataset"])
               for r in rows if r["model"] == model and table["metric"] in r["test"]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=model)
        for x, y, ds in pts:
            ax.annotate(ds, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("training time per seed (s)")
    ax.set_ylabel(f"test {table['metric']} (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_time, dpi=110)
    plt.close(fig)


def write_outputs(suite: Suite, table: dict, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{suite.name}.json").write_text(json.dumps(table, indent=2))
    (results / f"{suite.name}.md").write_text(markdown(table))
    plot(table, results / f"{suite.name}_vs_paper.png", results / f"{suite.name}_time.png")
