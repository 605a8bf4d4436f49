"""A run over several seeds: load, prepare, train each seed, aggregate into ``summary.json``."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from hgnn.data import load_dataset
from hgnn.data.registry import check_options, is_path_like
from hgnn.errors import HgnnError
from hgnn.models import get_model_class
from hgnn.train.config import check_monitor, config_differences, config_sources, resolve_config
from hgnn.train.distributed import device_for, init_from_env, parse_device
from hgnn.train.graph import prepare_graph
from hgnn.train.metrics import reported_metrics
from hgnn.train.record import hardware, peak_gpu_memory_mb, peak_memory_mb, versions
from hgnn.train.regimes import check_regime
from hgnn.train.trainer import SeedRun, train_seed

# Fields of a seed's result.json that the summary's per_seed entries leave out: bulky, or the same
# for every seed and kept once at the summary's top level.
NOT_IN_SUMMARY = ("history", "task", "config", "dataset_options", "model", "dataset")


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def load_prepared(dataset: str, root: str | None, seed: int, config: dict,
                  dataset_options: dict | None = None, record: dict | None = None):
    """The dataset with its seed's holdout split, prepared as the config's ``graph`` section asks.

    ``record`` collects one-off preparation costs (:func:`hgnn.train.graph.prepare_graph`).
    """
    data, task = load_dataset(dataset, root, seed=seed, **(dataset_options or {}))
    return prepare_graph(data, task, config["graph"], seed, record), task


def check_trainable(data, task, config: dict, dataset: str, seed: int) -> str | None:
    """Refuse, before anything trains, a run that cannot train meaningfully: a ``train.monitor``
    the task does not score, ``train.class_weights`` that do not fit its classes, an empty
    training split (nothing to learn from), or an empty validation split under a ``loss``
    monitor (no validation loss: no epoch would ever be kept, and the run would fail only after
    training).

    Returns a warning for an empty validation split under a metric monitor: every epoch then
    scores 0, so the checkpoint kept is epoch 0's. It is not refused, as tiny fixtures (a 0.2
    holdout of a handful of nodes) train that way. An empty test split is warned about too.
    """
    check_monitor(config, task, dataset)
    weights = config["train"]["class_weights"]
    if weights and (task.multilabel or len(weights) != task.num_classes):
        fix = ("multi-label (class weights are for single-label tasks)" if task.multilabel
               else f"give {task.num_classes} weights")
        raise HgnnError(f"train.class_weights {weights}: dataset '{dataset}' has "
                        f"{task.num_classes} classes; {fix}")
    monitor = config["train"]["monitor"]
    store = data[task.target]
    sizes = {split: int(store[f"{split}_mask"].sum()) if f"{split}_mask" in store else 0
             for split in ("train", "val", "test")}
    where = (f"train {sizes['train']}, val {sizes['val']}, test {sizes['test']} "
             f"'{task.target}' nodes, seed {seed}")
    if sizes["train"] == 0:
        raise HgnnError(f"dataset '{dataset}': the training split is empty ({where}); there is "
                        "nothing to train on")
    if sizes["val"] == 0 and "loss" in monitor.split("+"):
        raise HgnnError(f"dataset '{dataset}': the validation split is empty ({where}); "
                        f"train.monitor '{monitor}' needs a validation loss to keep a checkpoint")
    if sizes["val"] == 0:
        return (f"dataset '{dataset}': the validation split is empty ({where}); every epoch "
                f"scores 0 on train.monitor '{monitor}', so the checkpoint kept is epoch 0's")
    if sizes["test"] == 0:
        return (f"dataset '{dataset}': the test split is empty ({where}); the test scores will "
                "read 0")
    return None


def load_checked(dataset: str, root: str | None, seed: int, config: dict,
                 dataset_options: dict | None = None, record: dict | None = None,
                 warn: bool = False):
    """:func:`load_prepared`, refusing (:func:`check_trainable`) before the graph is prepared;
    ``warn`` prints its warning, if any, to stderr."""
    data, task = load_dataset(dataset, root, seed=seed, **(dataset_options or {}))
    warning = check_trainable(data, task, config, dataset, seed)
    if warning and warn:
        print(f"hgnn: warning: {warning}", file=sys.stderr)
    return prepare_graph(data, task, config["graph"], seed, record), task


def run_experiment(model: str, dataset: str, seeds: list[int], *, root: str | None = None,
                   config_file: str | None = None, overrides: list[str] = (),
                   out_dir: str | Path | None = None, resume: bool = False,
                   device: str = "cpu", quiet: bool = False,
                   dataset_options: dict | None = None) -> dict:
    """Train ``model`` on ``dataset`` once per seed and write ``out_dir/summary.json``.

    ``dataset_options`` go to the dataset's reader (e.g. ``{"scale": 0.2}`` for ``synthetic``) and
    are stored in the checkpoints so ``evaluate`` rebuilds the same graph.

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1), the ranks join one process group and train
    together (:mod:`hgnn.train.distributed`); rank 0 writes every file. Every rank returns the summary.
    """
    model_cls = get_model_class(model)
    if len(set(seeds)) != len(seeds):
        raise HgnnError(f"--seeds {' '.join(map(str, seeds))}: a seed is given twice")
    if is_path_like(dataset):  # recorded so that evaluate finds it from any working directory
        dataset = str(Path(dataset).resolve())
    # the reader's own options only (seed and root are run_experiment's), before any work
    dataset_options = check_options(dataset, dict(dataset_options or {}))
    config = resolve_config(model_cls.default_config(), model, dataset, config_file, overrides,
                            model_choices=model_cls.config_choices())
    parse_device(device)
    ctx = init_from_env(device)
    dev = device_for(device, ctx)
    if is_path_like(dataset) and not quiet and ctx.is_main:
        print(f"hgnn: note: {dataset} is read as a path, so no hgnn/configs/{model}/<dataset>.yaml "
              "applies and the model's defaults train it; --config FILE gives other settings",
              file=sys.stderr)
    dataset_label = Path(dataset).name if Path(dataset).exists() else dataset
    out = Path(out_dir) if out_dir else Path("runs") / f"{model}-{dataset_label}"
    options = dict(dataset_options or {})
    previous = _read_summary(out) if resume else None
    finished = {}
    for seed in seeds if resume else ():  # every finished seed checked before any seed trains
        done = out / f"seed_{seed}" / "result.json"
        if done.is_file():
            finished[seed] = json.loads(done.read_text())
            _check_finished_seed(done, finished[seed], previous,
                                 {"model": model, "dataset": dataset}, config, options)
    per_seed, prepared = [], {}
    if dev.type == "cpu" and len(finished) < len(seeds):
        # built (or loaded from torch's cache) here, so a first run's compile is not timed as
        # precompute or training; HGNN_OPS_BACKEND=reference skips it
        from hgnn.ops import cpu as cpu_ops

        start = time.perf_counter()
        if os.environ.get("HGNN_OPS_BACKEND") != "reference" and cpu_ops.available():
            prepared["cpu_ops_load_s"] = time.perf_counter() - start
    # The first seed to train is loaded and checked (check_trainable) before an earlier run's
    # seeds are cleared or any folder is made: a refused run leaves the run folder as it was.
    loaded = {}
    todo = [seed for seed in seeds if seed not in finished]
    if todo:
        check_regime(model, model_cls.regimes, config["train"])
        record: dict = {}
        loaded[todo[0]] = (*load_checked(dataset, root, todo[0], config, dataset_options, record,
                                         warn=ctx.is_main), record)
    if out.exists() and not resume and ctx.is_main:
        for child in out.glob("seed_*"):
            shutil.rmtree(child)
    ctx.barrier()
    for seed in seeds:
        seed_dir = out / f"seed_{seed}"
        if seed in finished:
            per_seed.append(finished[seed])
            continue
        made = [d for d in (out, seed_dir) if not d.exists()]
        seed_dir.mkdir(parents=True, exist_ok=True)
        try:
            if seed in loaded:
                data, task, record = loaded.pop(seed)
            else:  # a holdout or random split is drawn per seed: each is checked
                record = {}
                data, task = load_checked(dataset, root, seed, config, dataset_options, record,
                                          warn=ctx.is_main)
            for key, value in record.items():  # the first seed's: it is the one that pays
                prepared.setdefault(key, value)
            run = SeedRun(model, dataset, seed, config, task, seed_dir, dev, quiet, options)
            per_seed.append(train_seed(run, model_cls, data, resume=resume))
        except BaseException:
            for folder in reversed(made):  # a failed start leaves no empty run folder behind
                if ctx.is_main and folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            raise
    if previous is not None and previous.get("seeds") == list(seeds) \
            and all(seed in finished for seed in seeds):
        # Nothing trained here: rewriting would stamp this checkout's commit, versions and
        # hardware on results that other code produced.
        return dict(previous, out_dir=str(out))
    summary = {
        "model": model, "dataset": dataset, "dataset_options": options,
        "seeds": list(seeds), "config": config,
        "config_files": config_sources(model, dataset, config_file),
        "task": per_seed[0]["task"],
        # METRICS, then any other metric the task declares (f1_positive on H2GB's binary tasks)
        "metrics": {split: {m: mean_std([r[split][m] for r in per_seed])
                            for m in reported_metrics(per_seed[0]["task"].get("metrics"),
                                                      *(r[s] for r in per_seed
                                                        for s in ("val", "test")))}
                    for split in ("val", "test")},
        "per_seed": [{k: v for k, v in r.items() if k not in NOT_IN_SUMMARY} for r in per_seed],
        "timings": {k: statistics.fmean(r["timings"][k] for r in per_seed)
                    for k in ("precompute_s", "train_s", "eval_s")},
        # Per-seed peaks were taken when each seed trained; a resumed run's own process may not
        # have trained at all, so its peak alone would understate the run.
        "peak_memory_mb": max([r["peak_memory_mb"] for r in per_seed if "peak_memory_mb" in r]
                              or [peak_memory_mb()]),
        "peak_gpu_memory_mb": peak_gpu_memory_mb(),
        # One-off costs outside the per-seed timings, e.g. metapath2vec inputs (trained once per
        # graph and cached, so a rerun reads them: "cached" says which this run did).
        "preparation": prepared,
        "device": str(dev), "world_size": ctx.world_size, "versions": versions(),
        "hardware": hardware(),
    }
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["out_dir"] = str(out)
    return summary


def _check_finished_seed(path: Path, finished: dict, summary: dict | None, identity: dict,
                         config: dict, dataset_options: dict) -> None:
    """Refuse to resume past a seed that finished with another model, dataset, config or dataset
    options.

    Results written before seeds recorded these are checked against the run's ``summary``, when
    there is one.
    """
    def recorded(key: str):
        value = finished.get(key)
        return summary.get(key) if value is None and summary is not None else value

    for key, value in identity.items():
        if recorded(key) is not None and recorded(key) != value:
            raise HgnnError(f"{path}: cannot resume: this seed trained {key} '{recorded(key)}', not "
                            f"'{value}'. Start without --resume, or write to another --out folder")
    options = recorded("dataset_options")
    changes = [] if recorded("config") is None else config_differences(recorded("config"), config)
    if options is not None and options != dataset_options:
        changes.append(f"dataset options: {options!r} -> {dataset_options!r}")
    if changes:
        shown = "; ".join(changes[:5]) + ("; ..." if len(changes) > 5 else "")
        raise HgnnError(f"{path}: cannot resume: this seed finished with another setting ({shown}). "
                        "Start without --resume, or write to another --out folder")


def _read_summary(out: Path) -> dict | None:
    """``out/summary.json``, or None when it is missing or unreadable (it is rewritten then)."""
    path = out / "summary.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def format_table(summary: dict) -> str:
    """The final table: mean +- std of each metric on validation and test, in percent
    (:data:`METRICS`, then the task's own, e.g. ``f1_positive``, where the summary holds them)."""
    names = reported_metrics(list(summary["metrics"]["val"]), summary["metrics"]["val"],
                             summary["metrics"]["test"])
    lines = [f"{summary['model']} on {summary['dataset']}, seeds {summary['seeds']}",
             f"{'split':<6}" + "".join(f"{m:>20}" for m in names)]
    for split in ("val", "test"):
        row = summary["metrics"][split]
        lines.append(f"{split:<6}" + "".join(
            f"{100 * row[m]['mean']:>13.2f} ± {100 * row[m]['std']:<4.2f}" for m in names))
    t = summary["timings"]
    lines.append(f"time per seed: precompute {t['precompute_s']:.1f} s, train {t['train_s']:.1f} s, "
                 f"eval {t['eval_s']:.1f} s; peak memory {summary['peak_memory_mb']:.0f} MiB")
    m2v = summary.get("preparation", {}).get("metapath2vec")
    if m2v:
        spent = "time not recorded" if m2v["seconds"] is None else f"{m2v['seconds']:.1f} s"
        lines.append(f"metapath2vec inputs: {spent} once per graph, "
                     + ("read from the cache" if m2v["cached"] else "trained and cached"))
    return "\n".join(lines)
