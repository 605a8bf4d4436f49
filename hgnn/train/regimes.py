"""The three training regimes behind one interface.

Each regime owns how data reaches the model: the whole graph at once (``full``), sampled
neighbourhoods of seed batches (``sampled``), or per-target-node tensors computed once by the model
(``precomputed``). The trainer calls ``train_epoch`` and ``logits`` and never asks which it has.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from hgnn.data.budget_sampler import BudgetLoader
from hgnn.data.sampler import NeighborLoader, layer_edges
from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError
from hgnn.models.base import HeteroModel
from hgnn.train.distributed import context


def loss_fn(logits: Tensor, y: Tensor, task: TaskSpec, class_weights: list[float] = ()) -> Tensor:
    """Cross-entropy (with ``class_weights`` per class when given, as GraphGym's
    weighted_cross_entropy), or binary cross-entropy on logits for multi-label tasks."""
    if task.multilabel:
        return F.binary_cross_entropy_with_logits(logits, y.float())
    weight = torch.tensor(class_weights, dtype=logits.dtype, device=logits.device) \
        if class_weights else None
    return F.cross_entropy(logits, y, weight=weight)


def _split_ids(data: HeteroData, task: TaskSpec, split: str) -> Tensor:
    return data[task.target][f"{split}_mask"].nonzero().view(-1)


class Regime:
    """Shared state: the graph, task, train config and device.

    Models with ``uses_labels`` get :meth:`~hgnn.models.base.HeteroModel.set_label_context` before
    every forward: the phase (``"train"`` in training steps, the split being scored in
    :meth:`logits`), and, in batched regimes, the batch's target ids and seed count.
    """

    def __init__(self, data: HeteroData, task: TaskSpec, train_config: dict,
                 device: torch.device) -> None:
        self.data, self.task, self.cfg, self.device = data, task, train_config, device
        self.precompute_s = 0.0
        self.labels = data[task.target].y
        self.split_ids = {s: _split_ids(data, task, s) for s in ("train", "val", "test")}
        self.ctx = context()
        self.seed, self.epoch = 0, 0  # the trainer sets them; they fix each epoch's rank shards
        self.scored_ids: dict[str, Tensor] = {}  # per split, the nodes the last logits() scored

    @property
    def batch_size(self) -> int:
        """Per-rank batch: the configured (global) batch split over the ranks."""
        return math.ceil(self.cfg["batch_size"] / self.ctx.world_size)

    def train_ids(self) -> Tensor:
        """This rank's training nodes this epoch (all of them in a single process)."""
        return self.ctx.shard_train(self.split_ids["train"], self.seed, self.epoch)

    def train_epoch(self, model: HeteroModel, optimizer, scheduler=None, epoch: int = 0) -> float:
        """One pass over (this rank's shard of) the training nodes; the mean loss over batches
        (and ranks). ``model`` may be a ``DistributedDataParallel`` wrapper. ``scheduler``, if
        given, is stepped after every optimisation step.

        With ``train.accumulate`` = N > 1 the gradients of N batches (each loss scaled by 1/N) add
        up before one optimiser step; a last group of fewer batches still takes its step. Under
        DDP the gradients are averaged at every backward, as without accumulation."""
        self.epoch = epoch
        model.train()
        losses = []
        limit = self.steps_per_epoch()
        accumulate = self.accumulate
        optimizer.zero_grad()
        pending = 0
        for logits, y in self._train_batches(model):
            last = len(losses) + 1 == limit
            pending += 1
            update = pending == accumulate or last
            losses.append(self._step(model, optimizer, logits, y, update))
            if update:
                pending = 0
                if scheduler is not None:
                    scheduler.step()
            if last:
                break
        if pending:  # the loader ran out in the middle of a group
            self._update(model, optimizer)
            if scheduler is not None:
                scheduler.step()
        return self.ctx.mean(sum(losses) / max(len(losses), 1))

    @property
    def accumulate(self) -> int:
        """Batches whose gradients add up before each optimiser step (``train.accumulate``)."""
        return max(int(self.cfg.get("accumulate", 1)), 1)

    def optimizer_steps_per_epoch(self) -> int:
        """Optimiser steps in one ``train_epoch``: batches over ``train.accumulate``, rounded up."""
        return math.ceil(self.steps_per_epoch() / self.accumulate)

    def steps_per_epoch(self) -> int:
        """Batches in one ``train_epoch``: a pass over the training nodes, or
        ``train.iters_per_epoch`` batches of it when that is set (H2GB's fixed-size epochs)."""
        shard = math.ceil(self.split_ids["train"].numel() / self.ctx.world_size)
        full = max(math.ceil(shard / self.batch_size), 1)
        return min(full, self.cfg["iters_per_epoch"]) if self.cfg["iters_per_epoch"] > 0 else full

    def eval_ids(self, split: str, subset: bool = False) -> Tensor:
        """The nodes of ``split`` to score: all of them, or with ``subset`` and
        ``train.eval_subset`` = B > 0, B x ``eval_batch_size`` of them drawn at random (H2GB's
        evaluation protocol: ``val.iter_per_epoch`` batches of a shuffled loader). The draw is
        seeded by run seed, epoch and split, so every rank and a resumed run draw the same.
        ``train.eval_order`` = shuffled scores them in a random order fixed per run seed and split
        (H2GB reshuffles at every evaluation; a fixed order, like the fixed sampling generator of
        :meth:`_eval_batches`, keeps one epoch's score comparable with the next)."""
        ids = self.split_ids[split]
        split_index = ("train", "val", "test").index(split)
        shuffled = self.cfg.get("eval_order", "sorted") == "shuffled"
        n = int(self.cfg.get("eval_subset", 0)) * int(self.cfg["eval_batch_size"])
        if subset and 0 < n < ids.numel():
            key = self.seed * 1_000_003 + self.epoch * 8 + split_index
            pick = torch.randperm(ids.numel(), generator=torch.Generator().manual_seed(key))[:n]
            return ids[pick if shuffled else pick.sort().values]
        if shuffled:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 4 + split_index)
            return ids[torch.randperm(ids.numel(), generator=gen)]
        return ids

    def scored_labels(self, split: str) -> Tensor:
        """Labels of the nodes the last :meth:`logits` call scored for ``split``, in its order."""
        return self.labels[self.scored_ids.get(split, self.split_ids[split])]

    def _label_context(self, model: HeteroModel, phase: str, node_ids: Tensor | None = None,
                       num_seeds: int | None = None) -> None:
        inner = getattr(model, "module", model)
        if inner.uses_labels:
            inner.set_label_context(phase, node_ids, num_seeds)

    @torch.no_grad()
    def logits(self, model: HeteroModel, splits: tuple[str, ...], subset: bool = False,
               monitoring: bool = False) -> dict[str, Tensor]:
        """Logits for the nodes of each split, in the order of ``split_ids[split]`` (or of
        :meth:`eval_ids` with ``subset``; :meth:`scored_labels` gives their labels).
        ``monitoring`` marks the per-epoch validation that early stopping reads
        (``train.monitor_num_neighbors``)."""
        model.eval()
        out = {}
        for s in splits:
            ids = self.scored_ids[s] = self.eval_ids(s, subset)
            parts, scored = [], []
            for x in self._eval_batches(model, self.ctx.shard_eval(ids), s, monitoring):
                if isinstance(x, tuple):  # (logits, the target ids they score)
                    x, node_ids = x
                    scored.append(node_ids)
                parts.append(x.cpu())
            mine = torch.cat(parts) if parts else torch.zeros(0, self.task.num_classes)
            out[s] = self.ctx.gather_rows(mine)
            if scored:
                self.scored_ids[s] = self.ctx.gather_rows(torch.cat(scored))
        return out

    def _train_batches(self, model: HeteroModel):
        raise NotImplementedError

    def _eval_batches(self, model: HeteroModel, ids: Tensor, split: str, monitoring: bool):
        """Logits of ``ids`` in batches, scoring ``split`` (``monitoring``: for early stopping).
        A batch may instead yield ``(logits, node_ids)`` when it scores other target nodes than
        its share of ``ids``."""
        raise NotImplementedError

    def _step(self, model: HeteroModel, optimizer, logits: Tensor, y: Tensor,
              update: bool = True) -> float:
        """Backward of one batch's loss (divided by ``train.accumulate``); with ``update``, the
        optimiser step over the gradients gathered since the last one."""
        loss = loss_fn(logits, y.to(logits.device), self.task, self.cfg.get("class_weights", ()))
        extra = getattr(model, "module", model).auxiliary_loss()
        if extra is not None:
            loss = loss + extra
        (loss / self.accumulate if self.accumulate > 1 else loss).backward()
        if update:
            self._update(model, optimizer)
        return loss.item()

    def _update(self, model: HeteroModel, optimizer) -> None:
        if self.cfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg["grad_clip"])
        optimizer.step()
        optimizer.zero_grad()


class FullBatch(Regime):
    """Every epoch runs the model on the whole graph; the loss uses the training nodes."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.x_dict = {t: x.to(self.device) for t, x in self.data.x_dict.items()}
        self.edge_index_dict = {et: ei.to(self.device)
                                for et, ei in self.data.edge_index_dict.items()}

    def steps_per_epoch(self) -> int:
        return 1

    def _train_batches(self, model: HeteroModel):
        ids = self.train_ids()
        self._label_context(model, "train")
        yield model(self.x_dict, self.edge_index_dict)[ids.to(self.device)], self.labels[ids]

    @torch.no_grad()
    def logits(self, model: HeteroModel, splits: tuple[str, ...], subset: bool = False,
               monitoring: bool = False) -> dict[str, Tensor]:
        # One forward pass scores every split (one per split for models that read labels, since
        # each split sees different ones); ranks hold equal weights, so nothing is gathered.
        model.eval()
        out, full = {}, None
        for s in splits:
            ids = self.scored_ids[s] = self.eval_ids(s, subset)
            if full is None or getattr(model, "module", model).uses_labels:
                self._label_context(model, s)
                full = model(self.x_dict, self.edge_index_dict).cpu()
            out[s] = full[ids]
        return out


class Sampled(Regime):
    """Mini-batches of training nodes with sampled neighbourhoods (``num_neighbors`` per hop)."""

    def __init__(self, *args, model: HeteroModel | None = None) -> None:
        super().__init__(*args)
        hops = self.cfg["num_neighbors"]
        self.blocks = self.cfg.get("sampler", "neighbor") == "neighbor_blocks"
        inner = getattr(model, "module", model)
        if self.blocks and model is not None:
            if not inner.layerwise_edges:
                raise HgnnError("train.sampler neighbor_blocks gives each layer its own edges; "
                                f"model '{model.name}' takes one edge set for all layers (use "
                                "train.sampler neighbor)")
            if inner.num_layers != len(hops):
                raise HgnnError(f"train.sampler neighbor_blocks draws one hop per layer: "
                                f"train.num_neighbors {hops} for {inner.num_layers} layers")
        for key in ("loss_nodes", "monitor_nodes"):
            if self.blocks and self.cfg.get(key, "seeds") == "sampled":
                raise HgnnError(f"train.{key}=sampled scores non-seed nodes, which a "
                                f"neighbor_blocks batch computes only up to its first layers; "
                                f"use {key}=seeds")
        if self.cfg.get("monitor_nodes", "seeds") == "sampled" and inner is not None \
                and inner.uses_labels:
            raise HgnnError("train.monitor_nodes=sampled scores training nodes, whose own labels "
                            "a label-reading model sees in validation; use monitor_nodes=seeds")
        for key in ("inductive", "monitor_num_neighbors"):
            if self.cfg.get(key) and self.cfg.get("sampler") == "budget":
                raise HgnnError(f"train.{key} needs a neighbour sampler (train.sampler neighbor, "
                                "neighbor_blocks or neighbor_joint), not budget")
        for key in ("eval_num_neighbors", "monitor_num_neighbors"):
            fanout = self.cfg.get(key) or []
            if fanout and len(fanout) != len(hops):
                raise HgnnError(f"train.{key} {fanout} needs one entry per hop of "
                                f"train.num_neighbors {hops}")
        self.blocked = self._blocked_masks() if self.cfg.get("inductive", False) else {}

    def _loader(self, ids: Tensor, shuffle: bool, batch_size: int,
                generator: torch.Generator | None, phase: str = "train",
                fanout: list[int] | None = None) -> NeighborLoader | BudgetLoader:
        """``train.sampler``: ``neighbor`` (``fanout``, else ``num_neighbors`` per relation and
        hop, or ``eval_num_neighbors`` when evaluating and set), ``neighbor_blocks`` (the same
        fan-outs redrawn at each hop for every node reached so far, one edge set per layer:
        DGL's blocks, R-HGNN's sampler), ``neighbor_joint`` (the same fan-outs per node over all
        relations together, LATTE's sampler) or ``budget`` (HGT's budget sampling,
        ``train.budget`` nodes per type and iteration)."""
        sampler = self.cfg.get("sampler", "neighbor")
        if sampler == "budget":
            return BudgetLoader(self.data, self.cfg["budget"], (self.task.target, ids),
                                batch_size=batch_size, shuffle=shuffle, generator=generator)
        if fanout is None:
            fanout = self.cfg["num_neighbors"]
            if phase != "train" and self.cfg.get("eval_num_neighbors"):
                fanout = self.cfg["eval_num_neighbors"]
        return NeighborLoader(self.data, fanout, (self.task.target, ids),
                              batch_size=batch_size, shuffle=shuffle, generator=generator,
                              joint=sampler == "neighbor_joint",
                              blocked=self.blocked.get(phase),
                              blocks=self.blocks)

    def _blocked_masks(self) -> dict[str, Tensor]:
        """``train.inductive``: per phase, the target nodes its batches must not contain:
        validation and test nodes in training, test nodes in validation (LATTE's loader)."""
        test = torch.zeros(self.data[self.task.target].num_nodes, dtype=torch.bool)
        test[self.split_ids["test"]] = True
        train = test.clone()
        train[self.split_ids["val"]] = True
        return {"train": train, "val": test}

    def _forward(self, model: HeteroModel, batch: HeteroData, phase: str,
                 seeds_only: bool = True) -> Tensor:
        x_dict = {t: x.to(self.device) for t, x in batch.x_dict.items()}
        if self.blocks:
            ei = [{et: e.to(self.device) for et, e in layer.items()}
                  for layer in layer_edges(batch, len(self.cfg["num_neighbors"]))]
        else:
            ei = {et: e.to(self.device) for et, e in batch.edge_index_dict.items()}
        store = batch[self.task.target]
        self._label_context(model, phase, store.n_id, store.batch_size)
        out = model(x_dict, ei)
        return out[: store.batch_size] if seeds_only else out

    def _train_batches(self, model: HeteroModel):
        # The global RNG drives shuffling and sampling, so a restored RNG state replays the epoch.
        every_sampled = self.cfg.get("loss_nodes", "seeds") == "sampled"
        if every_sampled:
            if getattr(model, "module", model).uses_labels:
                raise HgnnError("train.loss_nodes=sampled scores non-seed training nodes, whose "
                                "own labels a label-reading model may see; use loss_nodes=seeds")
            is_train = torch.zeros(self.labels.shape[0], dtype=torch.bool)
            is_train[self.split_ids["train"]] = True
        for batch in self._loader(self.train_ids(), True, self.batch_size, None):
            store = batch[self.task.target]
            if every_sampled:
                # LATTE's official loss: every labelled training node the sampler reached, seeds
                # first (the seeds are training nodes, so they always count)
                keep = is_train[store.n_id]
                out = self._forward(model, batch, "train", seeds_only=False)
                yield out[keep.to(self.device)], store.y[keep]
            else:
                yield self._forward(model, batch, "train"), store.y[: store.batch_size]

    def _eval_batches(self, model: HeteroModel, ids: Tensor, split: str, monitoring: bool):
        fanout, key = None, 12345  # evaluation samples the same way each time, unless
        if monitoring and self.cfg.get("monitor_num_neighbors"):
            # seeded by run seed and epoch: redrawn every epoch, identical on every rank and resume
            fanout, key = self.cfg["monitor_num_neighbors"], self.seed * 1_000_003 + self.epoch * 8
        gen = torch.Generator().manual_seed(key)
        every_reached = monitoring and self.cfg.get("monitor_nodes", "seeds") == "sampled"
        if every_reached:
            scored = torch.zeros(self.labels.shape[0], dtype=torch.bool)
            scored[self.split_ids["train"]] = True
            scored[self.split_ids[split]] = True
        for batch in self._loader(ids, False, self.cfg["eval_batch_size"], gen, phase=split,
                                  fanout=fanout):
            if every_reached:
                # LATTE's official validation: every labelled validation or training node the
                # batch reached, the seeds first (a node reached by two batches counts twice)
                n_id = batch[self.task.target].n_id
                keep = scored[n_id]
                out = self._forward(model, batch, split, seeds_only=False)
                yield out[keep.to(self.device)], n_id[keep]
            else:
                yield self._forward(model, batch, split)


class Precomputed(Regime):
    """The model's ``precompute`` turns the graph into per-target-node tensors once; training then
    iterates over batches of training rows."""

    def __init__(self, *args, model: HeteroModel) -> None:
        super().__init__(*args)
        start = time.perf_counter()
        feats = model.precompute(self.data)
        self.precompute_s = time.perf_counter() - start
        self.features = feats

    def _rows(self, ids: Tensor):
        if isinstance(self.features, dict):
            return {k: v[ids].to(self.device).float() for k, v in self.features.items()}
        return self.features[ids].to(self.device).float()

    def _train_batches(self, model: HeteroModel):
        ids = self.train_ids()
        ids = ids[torch.randperm(ids.numel())]
        for start in range(0, ids.numel(), self.batch_size):
            b = ids[start:start + self.batch_size]
            yield model(self._rows(b)), self.labels[b]

    def _eval_batches(self, model: HeteroModel, ids: Tensor, split: str, monitoring: bool):
        for start in range(0, ids.numel(), self.cfg["eval_batch_size"]):
            yield model(self._rows(ids[start:start + self.cfg["eval_batch_size"]]))


def check_regime(model_name: str, regimes: tuple[str, ...] | list[str], train_config: dict) -> str:
    """The regime a run trains in (``train.regime``, else the model's first), refused with an
    ``HgnnError`` when the model does not support it or other ``train`` keys need another one.
    It reads the config only, so a run checks it before touching an earlier run's folder."""
    name = train_config["regime"] or regimes[0]
    if name not in regimes:
        raise HgnnError(f"model '{model_name}' supports the regimes {', '.join(regimes)}, "
                        f"not '{name}'")
    _check_sampled_keys(name, train_config)
    return name


def _check_sampled_keys(name: str, train_config: dict) -> None:
    if train_config.get("inductive", False) and name != "sampled":
        raise HgnnError("train.inductive leaves nodes out of sampled batches: it needs "
                        "train.regime=sampled")
    for key in ("loss_nodes", "monitor_nodes"):
        if train_config.get(key, "seeds") != "seeds" and name != "sampled":
            raise HgnnError(f"train.{key}={train_config[key]} scores the other nodes of sampled "
                            f"batches: it needs train.regime=sampled")


def make_regime(name: str, data: HeteroData, task: TaskSpec, train_config: dict,
                device: torch.device, model: HeteroModel) -> Regime:
    _check_sampled_keys(name, train_config)
    if name == "full":
        return FullBatch(data, task, train_config, device)
    if name == "sampled":
        return Sampled(data, task, train_config, device, model=model)
    return Precomputed(data, task, train_config, device, model=model)
