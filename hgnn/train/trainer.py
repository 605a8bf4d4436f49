"""Train one model with one seed: epochs, early stopping, checkpoints, exact resume."""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError
from hgnn.models.base import HeteroModel
from hgnn.train.checkpoint import load_checkpoint, save_checkpoint
from hgnn.train.distributed import context
from hgnn.train.metrics import compute_metrics
from hgnn.train.progress import EpochProgress
from hgnn.train.record import git_commit, peak_memory_mb
from hgnn.train.regimes import check_regime, loss_fn, make_regime


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def monitor_score(metrics: dict[str, float], loss: float, monitor: str) -> float:
    """Higher is better: the validation metric, the mean of the two F1s, or minus the loss."""
    if monitor == "loss":
        return -loss
    if monitor == "mean_f1":
        return (metrics["micro_f1"] + metrics["macro_f1"]) / 2
    return metrics[monitor]


def improves(metrics: dict[str, float], loss: float, monitor: str,
             best: dict[str, float]) -> bool:
    """Whether this epoch beats ``best`` on every ``+``-joined part of ``monitor`` (one part: the
    usual comparison). On improvement ``best`` takes this epoch's scores; otherwise it is left
    alone, so each part must beat the scores of the same saved epoch (R-HGNN's EarlyStopping)."""
    scores = {part: monitor_score(metrics, loss, part) for part in monitor.split("+")}
    if all(score > best.get(part, -math.inf) for part, score in scores.items()):
        best.update(scores)
        return True
    return False


@dataclass
class SeedRun:
    """Everything that identifies one seed's run; stored in its checkpoints."""

    model_name: str
    dataset: str
    seed: int
    config: dict
    task: TaskSpec
    out_dir: Path
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    quiet: bool = False
    dataset_options: dict = field(default_factory=dict)

    def meta(self, model: HeteroModel, data: HeteroData) -> dict:
        return {"model_name": self.model_name, "dataset": self.dataset,
                "dataset_options": self.dataset_options, "seed": self.seed,
                "config": self.config, "task": self.task.to_dict(),
                "schema": graph_schema(data)}


def graph_schema(data: HeteroData) -> dict:
    """What a checkpoint's weights depend on: types, relations, input widths."""
    return {"node_types": list(data.node_types),
            "edge_types": ["__".join(et) for et in data.edge_types],
            "inputs": {t: (-int(x.size(0)) if x.dtype == torch.long else int(x.size(-1)))
                       for t, x in data.x_dict.items()}}


def cosine_with_warmup(warmup: int, total: int):
    """GraphGym's ``cosine_with_warmup`` factor at epoch ``e`` (H2GB's scheduler): ``e / warmup``
    (at least 1e-6) during warm-up, then half a cosine from 1 to 0 at ``total``."""
    def factor(epoch: int) -> float:
        if epoch < warmup:
            return max(1e-6, epoch / max(1, warmup))
        progress = (epoch - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    return factor


def make_optimizer(model: HeteroModel, cfg: dict, steps_per_epoch: int = 1,
                   own: list[tuple[list[str], Callable[[int], float]]] | None = None):
    """The optimiser (parameters named by ``model.no_weight_decay()`` in an undecayed group) and
    the learning-rate scheduler. ``scheduler.step()`` is due once per epoch, except for ``cosine``
    (once per optimisation step, as R-HGNN's code does) and ``plateau`` (once per epoch with the
    validation loss). ``steps_per_epoch`` counts optimiser steps (batches / ``accumulate``).
    Parameters in ``model.lr_groups`` (or ``own``, when the caller already holds them) get a
    group each, last, starting at their epoch -1 rate (the trainer sets each epoch's rate before
    it trains)."""
    cls = torch.optim.AdamW if cfg["optimizer"] == "adamw" else torch.optim.Adam
    skip = model.no_weight_decay()
    if own is None:
        own = model.lr_groups(cfg["lr"])
    if own and cfg["scheduler"] != "none":
        names = ", ".join(n for names, _ in own for n in names)
        raise HgnnError(f"model '{model.name}' trains {names} at a rate of its own, which "
                        f"train.scheduler '{cfg['scheduler']}' would override; use "
                        "train.scheduler none, or the model's option for one rate")
    params = dict(model.named_parameters())
    apart = {n for names, _ in own for n in names}
    decay = [p for n, p in params.items() if n not in skip and n not in apart]
    no_decay = [p for n, p in params.items() if n in skip and n not in apart]
    groups = [{"params": decay}] + ([{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
    groups += [{"params": [params[n] for n in names], "lr": at(-1)} for names, at in own]
    optimizer = cls(groups, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheduler = None
    if cfg["scheduler"] == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg["lr"], total_steps=max(cfg["epochs"], 1),
            pct_start=cfg["pct_start"])
    elif cfg["scheduler"] == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(cfg["epochs"] * steps_per_epoch, 1), eta_min=cfg["lr"] / 100)
    elif cfg["scheduler"] == "cosine_warmup":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, cosine_with_warmup(cfg.get("warmup_epochs", 5), cfg["epochs"]))
    elif cfg["scheduler"] == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg["plateau_factor"], patience=cfg["plateau_patience"])
    return optimizer, scheduler


def train_seed(run: SeedRun, model_cls: type[HeteroModel], data: HeteroData,
               resume: bool = False) -> dict:
    """Train, early-stop on the validation metric, and score the best epoch on val and test.

    ``out_dir/last.pt`` is written after every epoch (model, optimizer, scheduler, early-stopping
    state and the torch RNG state), ``out_dir/best.pt`` whenever validation improves. With
    ``resume``, training continues from ``last.pt``; on CPU the result equals an uninterrupted run.
    """
    cfg = run.config["train"]
    ctx = context()
    commit = git_commit()  # now: the checkout may move on while a long seed trains
    seed_everything(run.seed)
    model = model_cls.build(data, run.task, run.config["model"]).to(run.device)
    regime_name = check_regime(run.model_name, model_cls.regimes, cfg)
    regime = make_regime(regime_name, data, run.task, cfg, run.device, model)
    regime.seed = run.seed
    trained = model  # what the training steps call: a DDP wrapper when there are several ranks
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=True)  # relations can be absent from a sampled batch
    own_lr = model.lr_groups(cfg["lr"])  # set before every epoch: a resumed run needs no state
    optimizer, scheduler = make_optimizer(model, cfg, regime.optimizer_steps_per_epoch(), own_lr)
    per_step = scheduler if cfg["scheduler"] == "cosine" else None
    meta = run.meta(model, data)
    last_path, best_path = run.out_dir / "last.pt", run.out_dir / "best.pt"

    state = {"epoch": -1, "best_scores": {}, "best_epoch": -1, "bad_epochs": 0,
             "history": [], "train_s": 0.0, "eval_s": 0.0}
    if resume and last_path.is_file():
        ckpt = load_checkpoint(last_path)
        for key in ("model_name", "dataset", "dataset_options", "seed", "config"):
            if ckpt.get(key) != meta[key]:
                raise HgnnError(f"{last_path}: cannot resume: the checkpoint's {key} differs from "
                                "this run's (start without --resume to train afresh)")
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        if scheduler is not None and ckpt.get("scheduler_state"):
            scheduler.load_state_dict(ckpt["scheduler_state"])
        state = ckpt["state"]
        if "best_scores" not in state:  # a checkpoint from before joined monitors held one score
            state["best_scores"] = {cfg["monitor"]: state.pop("best_score")}
        rng = ckpt.get("rng_states") or [ckpt["rng_state"]]
        if len(rng) != ctx.world_size:
            raise HgnnError(f"{last_path}: cannot resume: written by {len(rng)} process(es), "
                            f"resumed with {ctx.world_size}")
        torch.set_rng_state(rng[ctx.rank])

    epochs = cfg["epochs"]
    bar = EpochProgress(f"{run.model_name}/{run.dataset} seed {run.seed}", epochs,
                        initial=state["epoch"] + 1, disable=run.quiet or not ctx.is_main)
    stopped = state.get("stopped", False)
    for epoch in range(state["epoch"] + 1, epochs):
        if stopped:
            break
        t0 = time.perf_counter()
        first_own = len(optimizer.param_groups) - len(own_lr)
        for group, (_, at) in zip(optimizer.param_groups[first_own:], own_lr, strict=True):
            group["lr"] = at(epoch)
        loss = regime.train_epoch(trained, optimizer, per_step, epoch)
        if scheduler is not None and cfg["scheduler"] in ("onecycle", "cosine_warmup"):
            scheduler.step()
        t1 = time.perf_counter()
        val_logits = regime.logits(model, ("val",), subset=True, monitoring=True)["val"]
        val_y = regime.scored_labels("val")
        val = compute_metrics(val_logits, val_y, run.task)
        val_loss = float(loss_fn(val_logits, val_y, run.task, cfg.get("class_weights", ()))) \
            if val_y.numel() else math.nan
        t2 = time.perf_counter()
        state["train_s"] += t1 - t0
        state["eval_s"] += t2 - t1
        if cfg["scheduler"] == "plateau":
            scheduler.step(val_loss)
        state["history"].append({"epoch": epoch, "loss": loss, "val_loss": val_loss, **{
            f"val_{k}": v for k, v in val.items()}, "train_s": t1 - t0, "eval_s": t2 - t1})
        state["epoch"] = epoch
        improved = improves(val, val_loss, cfg["monitor"], state["best_scores"])
        if improved:
            state.update(best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        stopped = (cfg["patience"] > 0 and state["bad_epochs"] >= cfg["patience"]
                   and epoch + 1 >= cfg["min_epochs"])
        state["stopped"] = stopped
        rng_states = ctx.gather_objects(torch.get_rng_state())
        if ctx.is_main:  # ranks hold equal weights and state: one writer
            if improved:
                save_checkpoint({**meta, "epoch": epoch, "model_state": model.state_dict()},
                                best_path)
            save_checkpoint({**meta, "epoch": epoch, "model_state": model.state_dict(),
                             "optimizer_state": optimizer.state_dict(),
                             "scheduler_state": scheduler.state_dict() if scheduler else None,
                             "state": state, "rng_state": rng_states[0],
                             "rng_states": rng_states, "world_size": ctx.world_size}, last_path)
        bar.update(loss=f"{loss:.4f}", **{
            # the loss as it is, not monitor_score's negated one
            f"val_{part}": f"{val_loss if part == 'loss' else monitor_score(val, val_loss, part):.4f}"
            for part in cfg["monitor"].split("+")})
    bar.close(stopped_early=stopped)
    ctx.barrier()  # rank 0's last writes are visible to every rank from here

    if not best_path.is_file():
        raise HgnnError(f"{run.out_dir}: no epoch was trained (epochs = {epochs})")
    model.load_state_dict(load_checkpoint(best_path)["model_state"])
    t0 = time.perf_counter()
    logits = regime.logits(model, ("val", "test"), subset=True)
    eval_s = state["eval_s"] + time.perf_counter() - t0
    result = {
        "model": run.model_name, "dataset": run.dataset,
        "seed": run.seed, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"] + 1,
        "regime": regime_name, "task": run.task.to_dict(),
        "val": compute_metrics(logits["val"], regime.scored_labels("val"), run.task),
        "test": compute_metrics(logits["test"], regime.scored_labels("test"), run.task),
        "scored_nodes": {s: int(regime.scored_ids[s].numel()) for s in ("val", "test")},
        "timings": {"precompute_s": regime.precompute_s, "train_s": state["train_s"],
                    "eval_s": eval_s},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "peak_memory_mb": peak_memory_mb(),
        "world_size": ctx.world_size,
        "git_commit": commit,  # the code this seed trained with (a summary may be newer)
        # What it trained with: --resume checks a finished seed against the run's config.
        "config": run.config, "dataset_options": run.dataset_options,
        "history": state["history"],
    }
    if ctx.is_main:
        (run.out_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result
