"""The prediction task attached to a heterogeneous graph."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TaskSpec:
    """What to predict on a graph and how to score it.

    Attributes:
        target: node type that carries the labels (``data[target].y``).
        num_classes: number of classes.
        multilabel: ``True`` when a node may carry several classes; ``y`` is then a ``[N, C]`` float
            0/1 tensor, otherwise a ``[N]`` long tensor with ``-1`` for unlabelled nodes.
        metrics: metric names, the first being the headline one (``micro_f1``, ``macro_f1``,
            ``accuracy``, ``f1_positive``).
        split: how ``train_mask`` / ``val_mask`` / ``test_mask`` were made: ``"fixed"`` (the
            dataset ships them) or ``"holdout"`` (the shipped training pool is split into train and
            validation by ``split_seed``, stratified, ``val_fraction`` going to validation) or
            ``"random"`` (the reader drew all three from the nodes with ``split_seed``, as some
            H2GB datasets define their split).
        val_fraction: fraction of the training pool held out for validation (``"holdout"`` only).
        split_seed: seed of the holdout split, ``None`` for fixed splits.
        class_names: human-readable class names when the dataset records them.
        featureless: node types that the source ships without features.
    """

    target: str
    num_classes: int
    multilabel: bool = False
    metrics: tuple[str, ...] = ("micro_f1", "macro_f1")
    split: str = "fixed"
    val_fraction: float = 0.0
    split_seed: int | None = None
    class_names: tuple[str, ...] | None = None
    featureless: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """Plain-JSON form (tuples become lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        for key in ("metrics", "class_names", "featureless"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
