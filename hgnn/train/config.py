"""Resolved run configuration: trainer defaults < model defaults < dataset protocol YAML <
(model, dataset) YAML < ``--config FILE`` < ``--set key=value``. Every key must exist in the
defaults and keep its type. A dataset protocol YAML (``configs/_datasets/<dataset>.yaml``) holds
what a benchmark fixes for every model, e.g. the metric that selects the checkpoint."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from hgnn.data.metapath2vec import DEFAULTS as METAPATH2VEC_DEFAULTS
from hgnn.errors import HgnnError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

TRAIN_DEFAULTS: dict = {
    "train": {
        "regime": "",            # "" = the model's first regime; else full | sampled | precomputed
        "epochs": 200,
        "lr": 0.01,
        "weight_decay": 0.0,
        "optimizer": "adam",     # adam | adamw
        # none | onecycle (max_lr = lr over epochs) | cosine (per optimisation step down to lr/100)
        # | plateau (x plateau_factor after plateau_patience epochs without a lower validation loss)
        # | cosine_warmup (per epoch: linear warm-up over warmup_epochs, then cosine to 0 at epochs;
        # GraphGym's cosine_with_warmup, as H2GB uses)
        "scheduler": "none",
        "warmup_epochs": 5,
        "pct_start": 0.05,
        "plateau_factor": 0.1,
        "plateau_patience": 10,
        "patience": 50,          # epochs without improvement before stopping; 0 = never stop
        # early stopping cannot end a run before this many epochs: a model that sits at the label
        # prior for a while (LATTE on HGB IMDB) is not taken for converged
        "min_epochs": 0,
        # accuracy | micro_f1 | macro_f1 | mean_f1 | loss | f1_positive (binary tasks only: the
        # positive class's F1, H2GB's metric_best f1 on RCDD, IEEE-CIS-G, PDNS), or several joined
        # by "+": a checkpoint is then kept only when every one of them beats its score at the
        # last kept epoch (R-HGNN's EarlyStopping with accuracy and macro-F1)
        "monitor": "micro_f1",
        # one cross-entropy weight per class (H2GB's weighted_cross_entropy loss_fun_weight); []
        # weighs every class 1; single-label tasks only
        "class_weights": [],
        "batch_size": 1024,      # sampled / precomputed regimes
        "eval_batch_size": 4096,
        "num_neighbors": [10, 10],
        # neighbour sampler at evaluation: [] = num_neighbors; -1 per hop keeps every neighbour
        # (R-HGNN's official final scores come from full-neighbour inference)
        "eval_num_neighbors": [],
        # neighbour sampler for the per-epoch validation that early stopping reads: [] = as
        # eval_num_neighbors; otherwise these fan-outs, redrawn every epoch (R-HGNN's official
        # script scores each epoch's validation with the training sampler and runs full-neighbour
        # inference only on the kept checkpoint)
        "monitor_num_neighbors": [],
        # sampled regime: neighbor (num_neighbors per relation) | neighbor_blocks (the same, redrawn
        # at each hop for every node reached so far, one edge set per layer: DGL's blocks, which
        # R-HGNN's official sampler builds; models with layerwise_edges) | neighbor_joint (num_neighbors
        # per node over all relations together, every node so far redrawn each hop: LATTE's
        # official sampler, PyG 1.x NeighborSampler on the merged graph) | budget (HGT's, budget)
        "sampler": "neighbor",
        # neighbour samplers: training batches leave out validation and test target nodes,
        # validation batches test nodes (LATTE's official loader, whose --inductive is always on)
        "inductive": False,
        "budget": [512, 512, 512],  # budget sampler: nodes per node type per iteration
        "iters_per_epoch": 0,     # > 0: an epoch is this many batches of a shuffled pass
        "accumulate": 1,          # batches whose gradients add up (loss / N) before each step
        # sampled regime: which nodes the loss scores. seeds = the batch's seed nodes; sampled =
        # every training node of the sampled subgraph (LATTE's official training)
        "loss_nodes": "seeds",
        # sampled regime: which nodes the per-epoch validation (its loss and metrics, read by
        # early stopping and the plateau scheduler) scores. seeds = the validation seeds; sampled
        # = also every other labelled validation or training node the validation batches reach
        # (LATTE's official validation_step). Final validation and test scores are the seeds'.
        "monitor_nodes": "seeds",
        # > 0: every evaluation scores eval_subset x eval_batch_size random nodes of the split
        # (H2GB's protocol), redrawn per epoch; 0 = the whole split
        "eval_subset": 0,
        # order of the seeds in evaluation batches: sorted (by node id) | shuffled (a fixed random
        # order per run seed and split, H2GB's shuffled loaders). It matters for the budget
        # sampler, whose batch shares one budget: sorted ids put same-class seeds together on HGB
        "eval_order": "sorted",
        "grad_clip": 0.0,
    },
    "graph": {
        "drop_duplicate_reverses": False,
        "add_reverse": "missing",  # missing (only where no reverse is stored) | all | none
        # same-type relations (paper-cites-paper) made symmetric, serving as their own reverse
        # (PyG's ToUndirected, RpHGNN); false adds rev_<rel> as a relation of its own
        # (R-HGNN's preprocess_ogbn_mag.py: cites and rev_cites)
        "symmetrise_same_type": True,
        "features": "all",       # all | target | none: which node types keep their given features
        # scale each kept feature row to sum 1 after subtracting the type's minimum (PyG's
        # NormalizeFeatures, which H2GB's loader applies to IEEE-CIS-G)
        "normalize_features": False,
        # embedding (learned per node) | random (seeded N(0, 1/d)) | mean (of featured
        # in-neighbours' features, H2GB's mag-year; types no featured type reaches: random)
        "featureless": "embedding",
        "random_dim": 64,
        # metapath2vec embeddings concatenated to every input type's features (the featureless
        # get them alone): R-HGNN's ogbn-mag features, H2GB's Hetero_Metapath encoding
        "metapath2vec": dict(METAPATH2VEC_DEFAULTS),
    },
    "model": {},
}
CHOICES = {
    "train.regime": ("", "full", "sampled", "precomputed"),
    "train.optimizer": ("adam", "adamw"),
    "train.scheduler": ("none", "onecycle", "cosine", "plateau", "cosine_warmup"),
    "train.sampler": ("neighbor", "neighbor_blocks", "neighbor_joint", "budget"),
    "train.loss_nodes": ("seeds", "sampled"),
    "train.monitor_nodes": ("seeds", "sampled"),
    "train.eval_order": ("sorted", "shuffled"),
    "train.monitor": ("accuracy", "micro_f1", "macro_f1", "mean_f1", "loss", "f1_positive"),
    "graph.features": ("all", "target", "none"),
    "graph.add_reverse": ("missing", "all", "none"),
    "graph.featureless": ("embedding", "random", "mean"),
}


# Numeric options outside these ranges would fail deep inside torch, or train nothing.
AT_LEAST_ONE = {"train.epochs", "train.batch_size", "train.eval_batch_size", "train.accumulate",
                "graph.random_dim"}
NON_NEGATIVE = {"train.lr", "train.weight_decay", "train.patience", "train.min_epochs", "train.warmup_epochs",
                "train.iters_per_epoch", "train.eval_subset", "train.grad_clip",
                "train.plateau_patience"}
UNIT_INTERVAL = {"train.pct_start", "train.plateau_factor"}
# model sizes, whatever the model: a model section's key with one of these names is >= 1
MODEL_SIZES = {"hidden", "dim", "heads", "layers", "channels", "num_hops", "relation_hidden",
               "relation_input"}
# fan-outs: a count per hop, or -1 for every neighbour; budgets: nodes per type and step
FANOUTS = {"train.num_neighbors", "train.eval_num_neighbors", "train.monitor_num_neighbors"}
LIST_ITEMS = {**dict.fromkeys(FANOUTS, int), "train.budget": int, "train.class_weights": float}


def _check_range(key: str, value, where: str) -> None:
    name = key.rpartition(".")[2]
    in_model = key.startswith("model.")
    if isinstance(value, list):
        if key in FANOUTS and any(n < 1 and n != -1 for n in value):
            raise HgnnError(f"{where}: '{key}' takes counts >= 1 or -1 (every neighbour) per hop, "
                            f"got {value!r}")
        if key == "train.budget" and any(n < 1 for n in value):
            raise HgnnError(f"{where}: '{key}' takes node counts >= 1, got {value!r}")
        if key == "train.class_weights" and any(w <= 0 for w in value):
            raise HgnnError(f"{where}: '{key}' takes weights > 0, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if key in UNIT_INTERVAL or in_model and ("dropout" in name or name.endswith("_rate")):
        ok, need = 0 <= value <= 1, "in [0, 1]"
    elif key in AT_LEAST_ONE or in_model and name in MODEL_SIZES:
        ok, need = value >= 1, ">= 1"
    elif key in NON_NEGATIVE:
        ok, need = value >= 0, ">= 0"
    else:
        return
    if not ok:
        raise HgnnError(f"{where}: '{key}' must be {need}, got {value!r}")


def _merge(base: dict, override: dict, where: str, choices: dict, path: str = "") -> None:
    for key, value in override.items():
        full = f"{path}{key}"
        if key not in base:
            known = ", ".join(f"{path}{k}" for k in base)
            raise HgnnError(f"{where}: unknown config key '{full}' (known: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise HgnnError(f"{where}: '{full}' must be a mapping, got {value!r}")
            _merge(base[key], value, where, choices, f"{full}.")
        else:
            base[key] = _coerce(base[key], value, full, where, choices.get(full))


def _coerce(default, value, key: str, where: str, choices: tuple | None):
    ok = (type(value) is type(default)
          or (isinstance(default, float) and type(value) is int)
          or (isinstance(default, list) and isinstance(value, list)))
    if not ok:
        raise HgnnError(f"{where}: '{key}' must be {type(default).__name__}, got {value!r}")
    if isinstance(default, float):
        value = float(value)
    item = LIST_ITEMS.get(key)
    if item is float and all(type(v) in (int, float) for v in value):
        value = [float(v) for v in value]  # [1, 5] is a list of weights too
    if item is not None and any(type(v) is not item for v in value):
        raise HgnnError(f"{where}: '{key}' must be a list of {item.__name__}, got {value!r}")
    _check_range(key, value, where)
    if key == "train.monitor" and "+" in value:
        bad = [part for part in value.split("+") if part not in choices or part == "mean_f1"]
        if bad:
            raise HgnnError(f"{where}: '{key}': {bad[0]!r} cannot be joined; join two or more of "
                            "'accuracy', 'micro_f1', 'macro_f1', 'f1_positive', 'loss' with '+'")
    elif choices and value not in choices:
        joined = (", or two or more of them but mean_f1 joined with '+' (accuracy+macro_f1)"
                  if key == "train.monitor" else "")
        raise HgnnError(f"{where}: '{key}' must be one of {', '.join(map(repr, choices))}"
                        f"{joined}, got {value!r}")
    return value


def check_monitor(config: dict, task, dataset: str) -> None:
    """Refuse a ``train.monitor`` that ``dataset``'s task does not score: ``f1_positive`` needs a
    positive class (a binary single-label task). ``task`` is the dataset's
    :class:`~hgnn.data.task.TaskSpec`; called before any seed trains."""
    from hgnn.train.metrics import metric_names

    monitor = config["train"]["monitor"]
    scored = metric_names(task)
    missing = [part for part in monitor.split("+")
               if part not in scored and part not in ("mean_f1", "loss")]
    if missing:
        kind = (f"{task.num_classes} classes, multi-label" if task.multilabel
                else f"{task.num_classes} classes")
        raise HgnnError(f"train.monitor {monitor!r}: {missing[0]!r} needs a binary task's "
                        f"positive class, and dataset '{dataset}' has {kind}; its metrics are "
                        f"{', '.join(scored)} (monitor one of them, mean_f1 or loss)")


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise HgnnError(f"{path}: cannot read config ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise HgnnError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise HgnnError(f"{path}: a config must be a mapping")
    loaded.pop("source", None)  # citation of where the values come from; informational
    return loaded


PROTOCOL_DIR = CONFIG_DIR / "_datasets"


def protocol_config_path(dataset: str) -> Path | None:
    """``hgnn/configs/_datasets/<dataset>.yaml`` when it exists (registered datasets only)."""
    from hgnn.data.registry import is_path_like

    if is_path_like(dataset):
        return None
    path = PROTOCOL_DIR / f"{dataset}.yaml"
    return path if path.is_file() else None


def dataset_config_path(model: str, dataset: str) -> Path | None:
    """``hgnn/configs/<model>/<dataset>.yaml`` when it exists (registered datasets only)."""
    from hgnn.data.registry import is_path_like

    if is_path_like(dataset):
        return None
    path = CONFIG_DIR / model / f"{dataset}.yaml"
    return path if path.is_file() else None


def resolve_config(model_defaults: dict, model: str, dataset: str,
                   config_file: str | Path | None = None, overrides: list[str] = (),
                   model_choices: dict[str, tuple] | None = None) -> dict:
    """The run's config (see the module docstring). ``model_choices`` names the values each
    string option of the model section may take (:meth:`HeteroModel.config_choices`)."""
    choices = {**CHOICES, **{f"model.{k}": v for k, v in (model_choices or {}).items()}}
    config = copy.deepcopy(TRAIN_DEFAULTS)
    config["model"] = copy.deepcopy(model_defaults)
    for path in filter(None, [CONFIG_DIR / model / "default.yaml", protocol_config_path(dataset),
                              dataset_config_path(model, dataset)]):
        if path.is_file():
            _merge(config, _read_yaml(path), str(path), choices)
    if config_file:
        _merge(config, _read_yaml(Path(config_file)), str(config_file), choices)
    for item in overrides:
        pair = parse_key_value(item)
        if pair is None:
            raise HgnnError(f"--set {item!r}: expected key=value, e.g. train.lr=0.005")
        key, value = pair
        nested: dict = {}
        cursor = nested
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        _merge(config, nested, f"--set {key}", choices)
    return config


def with_defaults(config: dict, model_defaults: dict) -> dict:
    """``config`` with every key it lacks filled from :data:`TRAIN_DEFAULTS` and, under
    ``model``, from ``model_defaults``: a checkpoint written before a key existed still resolves
    (its value was the default then)."""
    def fill(base: dict, given: dict) -> dict:
        out = copy.deepcopy(given)
        for key, value in base.items():
            if key not in out:
                out[key] = copy.deepcopy(value)
            elif isinstance(value, dict) and isinstance(out[key], dict) and value:
                out[key] = fill(value, out[key])
        return out
    return fill({**TRAIN_DEFAULTS, "model": model_defaults}, config)


def parse_key_value(item: str) -> tuple[str, object] | None:
    """``"train.lr=0.005"`` -> ``("train.lr", 0.005)``: the value read as a YAML scalar (kept as
    the raw string where it is not valid YAML); ``None`` when ``item`` is not ``key=value``."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        return None
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError:
        return key, raw


def config_sources(model: str, dataset: str, config_file: str | Path | None) -> list[str]:
    """The files that contributed to a resolved config, for the run record."""
    files = [CONFIG_DIR / model / "default.yaml", protocol_config_path(dataset),
             dataset_config_path(model, dataset)]
    out = [str(p) for p in files if p is not None and p.is_file()]
    return out + ([str(config_file)] if config_file else [])


def config_differences(recorded: dict, config: dict, prefix: str = "") -> list[str]:
    """``key: recorded -> config`` for every key both configs hold with different values.

    Keys only one side has are skipped: a default added after a run was recorded says nothing
    about how that run was configured.
    """
    out = []
    for key in sorted(set(recorded) & set(config)):
        old, new = recorded[key], config[key]
        if isinstance(old, dict) and isinstance(new, dict):
            out += config_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return out
