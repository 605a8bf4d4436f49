"""The two ways a layer here is given a graph: ``(x_dict, edge_index_dict)`` as PyG's hetero
layers take it, or one ``HeteroData`` (a whole graph or a loader's batch)."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

from torch import Tensor
from torch_geometric.data import HeteroData


def graph_input(x_dict: Mapping[str, Tensor] | HeteroData,
                edge_index_dict: Mapping | None) -> tuple[dict, dict]:
    """``(x_dict, edge_index_dict)`` from either form; a ``HeteroData`` gives its ``x_dict`` and
    ``edge_index_dict``, and then no separate ``edge_index_dict`` may be passed."""
    if isinstance(x_dict, HeteroData):
        if edge_index_dict is not None:
            raise ValueError("pass either a HeteroData or x_dict and edge_index_dict, not both")
        # a type without .x is left out of x_dict, as with data.x_dict passed by hand
        return x_dict.x_dict, x_dict.edge_index_dict
    if edge_index_dict is None:
        raise ValueError("edge_index_dict is missing: pass x_dict and edge_index_dict, or one "
                         "HeteroData")
    return dict(x_dict), dict(edge_index_dict)


class UnknownRelationWarning(UserWarning):
    """A layer was given relations it was not built for, and leaves them out."""


def warn_unknown_relations(layer: object, edge_index_dict: Mapping,
                           known: Callable[[object], bool]) -> None:
    """Warn, once per layer, about the keys of ``edge_index_dict`` (with edges) that ``known``
    refuses: the layer leaves them out (as PyG's ``HeteroConv`` does, silently), which is what
    happens to reverse relations added by ``ToUndirected`` after the layer was built from the
    metadata."""
    if layer.__dict__.get("_warned_unknown_relations"):
        return
    unknown = [key for key, ei in edge_index_dict.items()  # an empty one loses nothing
               if not known(key) and not (isinstance(ei, Tensor) and ei.numel() == 0)]
    if unknown:
        layer.__dict__["_warned_unknown_relations"] = True
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        warnings.warn(f"{type(layer).__name__} leaves out relations it was not built for: "
                      f"{unknown[:3]}{more}; build it from the graph's metadata after transforms "
                      "such as ToUndirected to use them", UnknownRelationWarning, stacklevel=3)
