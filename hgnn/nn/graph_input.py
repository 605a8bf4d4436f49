"""The two ways a layer here is given a graph: ``(x_dict, edge_index_dict)`` as PyG's hetero
layers take it, or one ``HeteroData`` (a whole graph or a loader's batch)."""
from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor
from torch_geometric.data import HeteroData


def graph_input(x_dict: Mapping[str, Tensor] | HeteroData,
                edge_index_dict: Mapping | None) -> tuple[dict, dict]:
    """``(x_dict, edge_index_dict)`` from either form; a ``HeteroData`` gives its ``x_dict`` and
    ``edge_index_dict``, and then no separate ``edge_index_dict`` may be passed."""
    if isinstance(x_dict, HeteroData):
        if edge_index_dict is not None:
            raise ValueError("pass either a HeteroData or x_dict and edge_index_dict, not both")
        missing = [t for t in x_dict.node_types if "x" not in x_dict[t]]
        if missing:
            raise ValueError(f"the HeteroData has no features (.x) for node types {missing}; give "
                             "them features or pass x_dict and edge_index_dict")
        return x_dict.x_dict, x_dict.edge_index_dict
    if edge_index_dict is None:
        raise ValueError("edge_index_dict is missing: pass x_dict and edge_index_dict, or one "
                         "HeteroData")
    return dict(x_dict), dict(edge_index_dict)
