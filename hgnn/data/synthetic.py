"""Seeded typed-graph generator: the toolkit's embedded dataset, needing no files.

Every node of every type carries a latent class in ``[0, C)``; the target type's latent class is
its label ``y``. Each relation draws exactly ``round(h * E)`` edges between nodes of the same latent
class and sends the rest to a uniformly chosen *different* class, so its measured edge homophily is
``h`` to within ``1 / E``. Endpoints are drawn by a per-node popularity (Pareto weights), which
skews the degrees within each class block. Features are ``snr * mu[class] + N(0, I)`` with class
centroids ``mu ~ N(0, I)``, so a low ``snr`` on the target and a higher one on its neighbours puts
most of the label signal in the graph, and a relation with ``homophily="random"`` (``1 / C``) is
pure noise that a relation-aware model has to learn to ignore.

``mixing`` says where the cross-class edges go. ``"uniform"`` (default) sends each one to a uniformly
chosen other class, so a neighbour's class says little beyond "probably not mine". ``"permutation"``
sends all of a relation's cross-class edges from class ``c`` to class ``(c + k_r) mod C``, with a
fixed shift ``k_r`` in ``[1, C)`` drawn per relation: the class-compatibility matrix is
``h I + (1 - h) P_r``, the structured heterophily of real graphs (fraudsters next to the accounts
they target, buyers next to sellers), where neighbours' classes predict a node's class even at low
``h``. A ``"random"`` relation stays uniform, hence uninformative, under either mixing.

Non-target types keep their latent class as ``data[t].latent_y``. Models must not read it: it exists
only so that :func:`edge_homophily` can measure every relation.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.task import TaskSpec
from hgnn.errors import HgnnError, UnknownNameError

# Features are drawn this many rows at a time so the mag preset never holds a second [N, F] array.
_FEATURE_CHUNK = 1 << 16
_SELF_LOOP_ROUNDS = 10
MIXINGS = ("uniform", "permutation")


@dataclass(frozen=True)
class NodeTypeSpec:
    """A node type: ``num_nodes`` nodes with ``feat_dim`` features (0 = featureless) of strength
    ``snr`` (centroid scale per coordinate, the noise having unit variance)."""

    name: str
    num_nodes: int
    feat_dim: int = 0
    snr: float = 0.5


@dataclass(frozen=True)
class RelationSpec:
    """A relation ``src -rel-> dst`` with ``num_edges`` edges. ``homophily`` is the fraction of
    same-class edges: ``None`` takes the config's default, ``"random"`` means ``1 / C`` (an
    uninformative relation, unaffected by the global knob)."""

    src: str
    rel: str
    dst: str
    num_edges: int
    homophily: float | Literal["random"] | None = None


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that shapes a generated graph; the seed is passed separately."""

    node_types: tuple[NodeTypeSpec, ...]
    relations: tuple[RelationSpec, ...]
    target: str
    num_classes: int
    homophily: float = 0.75
    train_frac: float = 0.6
    val_frac: float = 0.2
    test_frac: float = 0.2
    degree_exponent: float = 2.0  # Pareto tail index of node popularity; smaller = more skewed
    mixing: Literal["uniform", "permutation"] = "uniform"  # where cross-class edges go

    def relation_homophily(self, spec: RelationSpec) -> float:
        """The homophily a relation is generated with."""
        if spec.homophily == "random":
            return 1.0 / self.num_classes
        return self.homophily if spec.homophily is None else float(spec.homophily)

    def scaled(self, scale: float) -> SyntheticConfig:
        """Node and edge counts times ``scale`` (each type keeps at least ``num_classes`` nodes)."""
        nodes = tuple(replace(t, num_nodes=max(self.num_classes, round(t.num_nodes * scale)))
                      for t in self.node_types)
        rels = tuple(replace(r, num_edges=max(1, round(r.num_edges * scale)))
                     for r in self.relations)
        return replace(self, node_types=nodes, relations=rels)

    def validate(self) -> None:
        """Raise :class:`HgnnError` on an inconsistent config."""
        names = [t.name for t in self.node_types]
        if len(set(names)) != len(names):
            raise HgnnError(f"synthetic: duplicate node type names {names}")
        if self.target not in names:
            raise HgnnError(f"synthetic: target '{self.target}' is not a node type")
        if self.num_classes < 2:
            raise HgnnError("synthetic: num_classes must be at least 2")
        if self.mixing not in MIXINGS:
            raise HgnnError(f"synthetic: mixing must be one of {', '.join(MIXINGS)}, "
                            f"got {self.mixing!r}")
        for t in self.node_types:
            if t.num_nodes < self.num_classes:
                raise HgnnError(f"synthetic: type '{t.name}' has {t.num_nodes} nodes, fewer than "
                                f"num_classes={self.num_classes}")
        for r in self.relations:
            if r.src not in names or r.dst not in names:
                raise HgnnError(f"synthetic: relation {r.src}-{r.rel}-{r.dst} names an unknown "
                                "node type")
            h = self.relation_homophily(r)
            if not 0.0 <= h <= 1.0:
                raise HgnnError(f"synthetic: homophily of '{r.rel}' is {h}, not in [0, 1]")
        fracs = (self.train_frac, self.val_frac, self.test_frac)
        if min(fracs) < 0 or sum(fracs) > 1 + 1e-9:
            raise HgnnError(f"synthetic: split fractions {fracs} must be >= 0 and sum to <= 1")


def default_preset(num_classes: int = 5) -> SyntheticConfig:
    """~15k nodes, ~102k edges, ogbn-mag's schema; ``has_topic`` is the uninformative relation."""
    return SyntheticConfig(
        node_types=(
            NodeTypeSpec("paper", 6000, 64, snr=0.12),  # weak: the label lives in the graph
            NodeTypeSpec("author", 6500, 32, snr=0.6),
            NodeTypeSpec("field_of_study", 1500, 32, snr=0.6),
            NodeTypeSpec("institution", 1000, 16, snr=0.6),
        ),
        relations=(
            RelationSpec("author", "affiliated_with", "institution", 7000),
            RelationSpec("author", "writes", "paper", 40000),
            RelationSpec("paper", "cites", "paper", 30000),
            RelationSpec("paper", "has_topic", "field_of_study", 25000, homophily="random"),
        ),
        target="paper",
        num_classes=num_classes,
    )


def mag_preset(num_classes: int = 349) -> SyntheticConfig:
    """ogbn-mag's shape: node and edge counts, 128-d paper features only, 349 classes, and split
    fractions close to its time split. ``snr=0.22`` leaves features alone about as weak as there."""
    return SyntheticConfig(
        node_types=(
            NodeTypeSpec("paper", 736_389, 128, snr=0.22),
            NodeTypeSpec("author", 1_134_649),
            NodeTypeSpec("institution", 8_740),
            NodeTypeSpec("field_of_study", 59_965),
        ),
        relations=(
            RelationSpec("author", "affiliated_with", "institution", 1_043_998),
            RelationSpec("author", "writes", "paper", 7_145_660),
            RelationSpec("paper", "cites", "paper", 5_416_271),
            RelationSpec("paper", "has_topic", "field_of_study", 7_505_078),
        ),
        target="paper",
        num_classes=num_classes,
        homophily=0.6,
        train_frac=0.855,
        val_frac=0.088,
        test_frac=0.057,
    )


PRESETS = {"default": default_preset, "mag": mag_preset}


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """An independent stream per (seed, component), so e.g. changing one relation's homophily
    leaves every other relation and all features bit-identical."""
    s = int(seed) % (1 << 64)
    words = [s & 0xFFFFFFFF, s >> 32] + [zlib.crc32(k.encode()) for k in keys]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


class _Blocks:
    """A type's nodes grouped by latent class, with cumulative popularity for weighted draws."""

    def __init__(self, classes: np.ndarray, weights: np.ndarray, num_classes: int) -> None:
        self.order = np.argsort(classes, kind="stable")
        self.cum = np.cumsum(weights[self.order])
        counts = np.bincount(classes, minlength=num_classes)
        self.last = np.cumsum(counts) - 1
        self.first = self.last - counts + 1
        self.lo = np.where(self.first > 0, self.cum[np.maximum(self.first - 1, 0)], 0.0)
        self.hi = self.cum[self.last]

    def sample(self, rng: np.random.Generator, classes: np.ndarray | None, size: int) -> np.ndarray:
        """``size`` node ids, by popularity, within ``classes`` (per draw) or anywhere (None)."""
        u = rng.random(size)
        if classes is None:
            u *= self.cum[-1]
            pos = np.searchsorted(self.cum, u, side="right")
            np.minimum(pos, self.cum.size - 1, out=pos)
        else:
            lo = self.lo[classes]
            u *= self.hi[classes] - lo
            u += lo
            del lo
            pos = np.searchsorted(self.cum, u, side="right")
            # Rounding at a block edge can land one past it; clamp back into the class.
            np.clip(pos, self.first[classes], self.last[classes], out=pos)
        return self.order[pos]


def _latent_classes(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """Uniform classes, with every class present at least once (needs ``n >= num_classes``)."""
    classes = rng.integers(num_classes, size=n)
    classes[rng.choice(n, num_classes, replace=False)] = np.arange(num_classes)
    return classes


def _features(rng: np.random.Generator, classes: np.ndarray, spec: NodeTypeSpec,
              num_classes: int) -> np.ndarray:
    centroids = spec.snr * rng.standard_normal((num_classes, spec.feat_dim), dtype=np.float32)
    x = np.empty((classes.size, spec.feat_dim), dtype=np.float32)
    for start in range(0, classes.size, _FEATURE_CHUNK):
        stop = min(start + _FEATURE_CHUNK, classes.size)
        rng.standard_normal((stop - start, spec.feat_dim), dtype=np.float32, out=x[start:stop])
        x[start:stop] += centroids[classes[start:stop]]
    return x


def _edges(rng: np.random.Generator, h: float, num_edges: int, num_classes: int,
           src_classes: np.ndarray, src: _Blocks, dst: _Blocks, same_type: bool,
           shift: int | None = None) -> np.ndarray:
    """Edges with exactly ``round(h * num_edges)`` same-class pairs; the others go to a uniformly
    random other class, or to class ``(c + shift) mod C`` when ``shift`` is given."""
    out = np.empty((2, num_edges), dtype=np.int64)
    out[0] = src.sample(rng, None, num_edges)
    cls = src_classes[out[0]]
    different = np.ones(num_edges, dtype=bool)
    different[rng.permutation(num_edges)[: round(h * num_edges)]] = False
    # A uniform non-zero shift mod C picks a uniformly random *other* class.
    offsets = (rng.integers(1, num_classes, size=int(different.sum())) if shift is None
               else shift)
    cls[different] += offsets
    cls[different] %= num_classes
    del different
    out[1] = dst.sample(rng, cls, num_edges)
    if same_type:
        # Redraw self-loops inside the same class, which keeps the homophily count exact.
        for _ in range(_SELF_LOOP_ROUNDS):
            loops = np.flatnonzero(out[0] == out[1])
            if loops.size == 0:
                break
            out[1, loops] = dst.sample(rng, cls[loops], loops.size)
    return out


def generate(config: SyntheticConfig, seed: int = 0) -> tuple[HeteroData, TaskSpec]:
    """Generate the graph described by ``config``; the same ``(config, seed)`` is bit-identical."""
    config.validate()
    C = config.num_classes
    data = HeteroData()
    classes: dict[str, np.ndarray] = {}
    blocks: dict[str, _Blocks] = {}
    for spec in config.node_types:
        rng = _rng(seed, "node", spec.name)
        cls = _latent_classes(rng, spec.num_nodes, C)
        popularity = rng.pareto(config.degree_exponent, spec.num_nodes) + 1.0
        classes[spec.name], blocks[spec.name] = cls, _Blocks(cls, popularity, C)
        store = data[spec.name]
        store.num_nodes = spec.num_nodes
        # Features and split get their own streams: changing a dimension or an SNR leaves the
        # graph and the split untouched.
        if spec.feat_dim > 0:
            store.x = torch.from_numpy(_features(_rng(seed, "x", spec.name), cls, spec, C))
        if spec.name == config.target:
            store.y = torch.from_numpy(cls)
            _split_masks(store, _rng(seed, "split", spec.name), config)
        else:
            store.latent_y = torch.from_numpy(cls)
    for r in config.relations:
        rng = _rng(seed, "edge", r.src, r.rel, r.dst)
        shift = None
        if config.mixing == "permutation" and r.homophily != "random":
            # Its own stream, so the uniform graphs are unchanged by the option's existence.
            shift = int(_rng(seed, "shift", r.src, r.rel, r.dst).integers(1, C))
        edge_index = _edges(rng, config.relation_homophily(r), r.num_edges, C, classes[r.src],
                            blocks[r.src], blocks[r.dst], r.src == r.dst, shift)
        data[r.src, r.rel, r.dst].edge_index = torch.from_numpy(edge_index)
    task = TaskSpec(
        target=config.target,
        num_classes=C,
        metrics=("accuracy", "micro_f1", "macro_f1"),
        split="fixed",
        featureless=tuple(t.name for t in config.node_types if t.feat_dim == 0),
    )
    return data, task


def _split_masks(store, rng: np.random.Generator, config: SyntheticConfig) -> None:
    n = store.num_nodes
    perm = torch.from_numpy(rng.permutation(n))
    n_train = round(config.train_frac * n)
    n_val = min(round(config.val_frac * n), n - n_train)
    n_test = min(round(config.test_frac * n), n - n_train - n_val)
    bounds = {"train_mask": (0, n_train), "val_mask": (n_train, n_train + n_val),
              "test_mask": (n_train + n_val, n_train + n_val + n_test)}
    for name, (a, b) in bounds.items():
        mask = torch.zeros(n, dtype=torch.bool)
        mask[perm[a:b]] = True
        store[name] = mask


def read_synthetic(
    path: None = None,
    *,
    seed: int = 0,
    preset: str = "default",
    homophily: float | None = None,
    scale: float | None = None,
    num_classes: int | None = None,
    relation_homophily: dict[str, float] | None = None,
    mixing: str | None = None,
    **unknown,
) -> tuple[HeteroData, TaskSpec]:
    """Registry reader for ``synthetic`` / ``synthetic-mag``: a preset plus overrides.

    Args:
        path: always ``None`` (generated data has no files).
        seed: seed of the whole graph.
        preset: ``"default"`` (~15k nodes, ~100k edges) or ``"mag"`` (ogbn-mag's shape).
        homophily: the default homophily of relations that do not fix their own (the preset's
            ``"random"`` control relation stays random).
        scale: multiplies node and edge counts.
        num_classes: number of classes (also of every type's latent class).
        relation_homophily: per-relation overrides, keyed by relation name (``{"cites": 0.2}``);
            these win over everything, the ``"random"`` relation included.
        mixing: ``"uniform"`` (the presets') or ``"permutation"``: where cross-class edges go (see
            the module docstring).
    """
    if unknown:
        raise UnknownNameError(f"synthetic: unknown option(s) {sorted(unknown)} (known: preset, "
                               "homophily, scale, num_classes, relation_homophily, mixing)")
    if path is not None:
        raise HgnnError(f"synthetic data is generated and reads no files (got path {path})")
    if preset not in PRESETS:
        raise UnknownNameError(f"synthetic: unknown preset '{preset}' (known: {sorted(PRESETS)})")
    config = PRESETS[preset]() if num_classes is None else PRESETS[preset](int(num_classes))
    if homophily is not None:
        config = replace(config, homophily=float(homophily))
    if mixing is not None:
        config = replace(config, mixing=mixing)
    if relation_homophily:
        rels = {r.rel for r in config.relations}
        if not set(relation_homophily) <= rels:
            unknown_rels = sorted(set(relation_homophily) - rels)
            raise UnknownNameError(f"synthetic: unknown relation(s) {unknown_rels} "
                                   f"(known: {sorted(rels)})")
        config = replace(config, relations=tuple(
            replace(r, homophily=float(relation_homophily[r.rel])) if r.rel in relation_homophily
            else r for r in config.relations))
    if scale is not None:
        if scale <= 0:
            raise HgnnError(f"synthetic: scale must be positive, got {scale}")
        config = config.scaled(float(scale))
    return generate(config, seed=seed)


def edge_homophily(data: HeteroData, edge_type: tuple[str, str, str] | None = None
                   ) -> float | dict[tuple[str, str, str], float]:
    """Fraction of edges whose endpoints share a class (``y`` on the target, ``latent_y``
    elsewhere); edges touching an unlabelled (``-1``) or class-less node are left out.

    Returns one float for ``edge_type``, else a dict over all edge types; ``nan`` where nothing is
    measurable.
    """
    if edge_type is None:
        return {et: edge_homophily(data, et) for et in data.edge_types}
    src, _, dst = edge_type
    cls_src, cls_dst = _node_classes(data, src), _node_classes(data, dst)
    if cls_src is None or cls_dst is None:
        return float("nan")
    ei = data[edge_type].edge_index
    a, b = cls_src[ei[0]], cls_dst[ei[1]]
    valid = (a >= 0) & (b >= 0)
    if not bool(valid.any()):
        return float("nan")
    return float((a == b)[valid].double().mean())


def _node_classes(data: HeteroData, node_type: str) -> torch.Tensor | None:
    store = data[node_type]
    for key in ("y", "latent_y"):
        value = store.get(key)
        if isinstance(value, torch.Tensor) and value.dim() == 1:
            return value
    return None
