"""Typed-graph data layer: readers, registry, transforms, RelationIndex, synthetic generator."""
from hgnn.data.registry import DATASETS, data_root, load_dataset
from hgnn.data.task import TaskSpec

__all__ = ["DATASETS", "TaskSpec", "data_root", "load_dataset"]
