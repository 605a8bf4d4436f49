"""Re-open a trained checkpoint: score it (``hgnn evaluate``) or write predictions (``hgnn predict``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError
from hgnn.models import get_model_class
from hgnn.models.base import HeteroModel
from hgnn.train.checkpoint import load_checkpoint
from hgnn.train.config import with_defaults
from hgnn.train.distributed import parse_device
from hgnn.train.experiment import load_prepared
from hgnn.train.metrics import compute_metrics, predict
from hgnn.train.regimes import Regime, make_regime
from hgnn.train.trainer import graph_schema


@dataclass
class Restored:
    """A checkpoint's model on its prepared graph (or another's), with regimes built on request:
    scoring it in two regimes (``hgnn evaluate --svm``) loads the graph and the weights once."""

    checkpoint: Path
    dataset: str
    model: HeteroModel
    data: HeteroData
    task: TaskSpec
    meta: dict
    train_config: dict
    device: torch.device
    regimes: dict[str, Regime] = field(default_factory=dict, repr=False)

    def require(self, name: str, purpose: str = "") -> None:
        """Refuse, naming the checkpoint and ``purpose``, a regime the model does not have."""
        cls = type(self.model)
        if name not in cls.regimes:
            raise HgnnError(f"{self.checkpoint}: {purpose}model '{self.meta['model_name']}' has "
                            f"no {name} regime (it has {', '.join(cls.regimes)})")

    def regime(self, name: str | None = None) -> Regime:
        """The regime the model trained in (``None``), or ``name`` instead; built once each."""
        cls = type(self.model)
        if name is not None:
            self.require(name)
        cfg = self.train_config
        if name is not None and name != cfg["regime"]:
            # inductive batches belong to the sampled regime the model trained in
            cfg = {**cfg, "regime": name, "inductive": False}
        resolved = cfg["regime"] or cls.regimes[0]
        if resolved not in self.regimes:
            self.regimes[resolved] = make_regime(resolved, self.data, self.task, cfg, self.device,
                                                 self.model)
        return self.regimes[resolved]


def load_restored(checkpoint: str | Path, dataset: str | None = None, root: str | None = None,
                  device: str = "cpu") -> Restored:
    """A checkpoint's model rebuilt on its dataset or another with the same schema."""
    dev = parse_device(device)
    ckpt = load_checkpoint(checkpoint)
    for key in ("model_name", "dataset", "seed", "config", "task", "schema", "model_state"):
        if key not in ckpt:
            raise HgnnError(f"{checkpoint}: checkpoint lacks '{key}'")
    model_cls = get_model_class(ckpt["model_name"])
    config = with_defaults(ckpt["config"], model_cls.default_config())
    options = ckpt.get("dataset_options") if dataset is None else None
    data, task = load_prepared(dataset or ckpt["dataset"], root, ckpt["seed"], config, options)
    schema = graph_schema(data)
    if schema != ckpt["schema"] or task.num_classes != ckpt["task"]["num_classes"] or \
            task.target != ckpt["task"]["target"]:
        raise HgnnError(f"{checkpoint}: the checkpoint was trained on '{ckpt['dataset']}' and does "
                        f"not match '{dataset or ckpt['dataset']}' (node types, relations, input "
                        "widths or classes differ)")
    model = model_cls.build(data, task, config["model"]).to(dev)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as exc:
        raise HgnnError(f"{checkpoint}: weights do not fit the model "
                        f"({str(exc).splitlines()[0][:160]})") from None
    return Restored(Path(checkpoint), dataset or ckpt["dataset"], model, data, task, ckpt,
                    config["train"], dev)


def restore(checkpoint: str | Path, dataset: str | None = None, root: str | None = None,
            device: str = "cpu", regime: str | None = None):
    """(model, regime, data, task, meta) rebuilt from a checkpoint, on its dataset or another;
    ``regime`` scores it in that regime instead of the one it trained in."""
    restored = load_restored(checkpoint, dataset, root, device)
    return restored.model, restored.regime(regime), restored.data, restored.task, restored.meta


def evaluate_restored(restored: Restored) -> dict:
    """Validation and test metrics of a restored checkpoint (the full test set), in the regime it
    trained in."""
    regime, meta = restored.regime(), restored.meta
    logits = regime.logits(restored.model, ("val", "test"))
    return {"checkpoint": str(restored.checkpoint), "model": meta["model_name"],
            "dataset": restored.dataset, "seed": meta["seed"], "epoch": meta.get("epoch"),
            **{s: compute_metrics(logits[s], regime.labels[regime.split_ids[s]], restored.task)
               for s in ("val", "test")}}


def evaluate_checkpoint(checkpoint: str | Path, dataset: str | None = None,
                        root: str | None = None, device: str = "cpu") -> dict:
    """Validation and test metrics of a checkpoint (the full test set)."""
    return evaluate_restored(load_restored(checkpoint, dataset, root, device))


def predict_checkpoint(checkpoint: str | Path, out: str | Path, dataset: str | None = None,
                       root: str | None = None, device: str = "cpu",
                       restored: Restored | None = None) -> Path:
    """Write test-node predictions.

    HGB datasets get HGB's submission format, one line per test node:
    ``node_id<TAB><TAB>node_type<TAB>label[,label...]`` with the file's global ids. Other datasets
    get ``node,label[,label...]`` with the target type's local ids, or
    ``node,source_id,label[,label...]`` where the reader kept the files' own ids (``source_id``:
    H2GB RCDD's global node ids, IEEE-CIS's ``TransactionID``). ``restored`` (from
    :func:`load_restored`) saves loading the checkpoint and its dataset again.
    """
    out = output_path(out)
    restored = restored or load_restored(checkpoint, dataset, root, device)
    model, regime, data, task = restored.model, restored.regime(), restored.data, restored.task
    ids = regime.split_ids["test"]
    pred = predict(regime.logits(model, ("test",))["test"], task.multilabel)
    store = data[task.target]
    hgb = "hgb_id" in store and "hgb_node_types" in data
    source = store.get("source_id")
    lines = []
    for i, p in zip(ids.tolist(), pred.tolist(), strict=True):
        labels = ",".join(str(c) for c, on in enumerate(p) if on) if task.multilabel else str(p)
        if hgb:
            lines.append(f"{int(store.hgb_id[i])}\t\t{data.hgb_node_types[task.target]}\t{labels}")
        elif source is not None:
            lines.append(f"{i},{int(source[i])},{labels}")
        else:
            lines.append(f"{i},{labels}")
    header = "" if hgb else ("node,source_id,label\n" if source is not None else "node,label\n")
    write_atomically(out, header + "\n".join(lines) + "\n")
    return out


def output_path(out: str | Path) -> Path:
    """``out`` as a file this process can write, its folder made; refused before any work."""
    out = Path(out)
    if out.is_dir():
        raise HgnnError(f"--out {out}: is a folder; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HgnnError(f"--out {out}: cannot create its folder ({exc.strerror})") from None
    return out


def write_atomically(path: Path, text: str) -> None:
    """``path`` holds ``text`` in full, or is left as it was (nothing half-written beside it)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HgnnError(f"{path}: cannot write ({exc.strerror})") from None


def explain_checkpoint(checkpoint: str | Path, dataset: str | None = None, root: str | None = None,
                       device: str = "cpu", restored: Restored | None = None,
                       ) -> dict[str, dict[str, float]]:
    """The model's per-type average relation weights on the whole graph (``model.explain``): LATTE's
    node-level relation weights, R-HGNN's relation-fusing attention, GTN's relation selections.
    ``restored`` as in :func:`predict_checkpoint`."""
    restored = restored or load_restored(checkpoint, dataset, root, device)
    model, data, ckpt = restored.model, restored.data, restored.meta
    dev = torch.device(device)
    model.eval()
    x_dict = {t: x.to(dev) for t, x in data.x_dict.items()}
    edge_index_dict = {et: ei.to(dev) for et, ei in data.edge_index_dict.items()}
    try:
        with torch.no_grad():
            return model.explain(x_dict, edge_index_dict)
    except NotImplementedError:
        raise HgnnError(f"model '{ckpt['model_name']}' has no relation weights to explain "
                        "(--explain works for rhgnn, latte and gtn)") from None


def format_explanation(weights: dict[str, dict[str, float]]) -> str:
    """One table per node type: relation (or slot), average weight, in the model's order (LATTE
    lists each layer's slots together; each layer's weights sum to 1 per node)."""
    lines = []
    for node_type, rows in weights.items():
        width = max(len(r) for r in rows) if rows else 8
        lines.append(f"{node_type}")
        lines += [f"  {rel:<{width}}  {w:.4f}" for rel, w in rows.items()]
    return "\n".join(lines)
