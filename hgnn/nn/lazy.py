"""Lazily sized inputs, PyG's ``-1``: weights whose input width is read from the first forward.

A layer built with an input width of ``-1`` (:data:`LAZY`) holds
:class:`~torch.nn.parameter.UninitializedParameter` in place of the weights that width sizes, as
PyG's ``Linear(-1, out)`` and ``HeteroDictLinear`` do. Its first forward materialises them from
the inputs it is given and initialises them as the layer would have at construction; the other
parameters are left as they are. A per-type weight whose type is absent from that forward stays
unsized until a forward brings the type.

:class:`LazyInputModule` keeps such a layer usable before then: ``state_dict()`` saves an unsized
weight as an unsized placeholder (as PyG's ``Linear`` does), and ``load_state_dict()`` sizes them
from the loaded tensors, so a checkpoint restores into a freshly built lazy layer without a
forward. (An optimizer, as with PyG's lazy modules, takes the parameters once they are sized.)
"""
from __future__ import annotations

import operator
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.parameter import UninitializedParameter

LAZY = -1


def is_lazy(value: object) -> bool:
    """Whether ``value`` is a weight not sized yet."""
    return isinstance(value, UninitializedParameter)


def as_width(value: object, what: str, lazy: bool = True) -> int:
    """``value`` as a width: a positive int or, with ``lazy``, ``-1``. Anything else raises a
    ``ValueError`` that starts with ``what`` (the layer and the argument) and says what it takes."""
    try:
        width = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        width = None
    if width is None or not (width > 0 or (lazy and width == LAZY)):
        takes = "a positive int or -1 (sized at the first forward)" if lazy else "a positive int"
        raise ValueError(f"{what} must be {takes}, got {value!r}")
    return width


def per_type_widths(value: object, node_types: Iterable[str], what: str) -> dict[str, int]:
    """PyG's ``in_channels`` of a layer that projects each node type separately: one width for
    every type (an int, ``-1`` lazy), or ``{node_type: width}`` naming exactly ``node_types``
    (each width an int or ``-1``)."""
    node_types = list(node_types)
    if not isinstance(value, dict):
        width = as_width(value, what + " (or a {node_type: width} dict)")
        return {t: width for t in node_types}
    missing = [t for t in node_types if t not in value]
    unknown = [t for t in value if t not in node_types]
    if missing or unknown:
        raise ValueError(f"{what} as a dict must give a width for every node type and no other "
                         f"key: missing {missing}, unknown {unknown}")
    return {t: as_width(value[t], f"{what}[{t!r}]") for t in node_types}


def parameter(*shape: int) -> nn.Parameter:
    """An empty parameter of ``shape``, or an unsized one where a dimension is :data:`LAZY`."""
    if LAZY in shape:
        return UninitializedParameter()
    return nn.Parameter(torch.empty(*shape))


def linear(in_features: int, out_features: int, cls: type[nn.Linear] = nn.Linear,
           **kwargs) -> nn.Linear:
    """``cls(in_features, out_features)``; with ``in_features`` :data:`LAZY`, the same module with
    an unsized weight (``in_features == -1``) and an uninitialised bias: :func:`materialize_linear`
    sizes it and the layer initialises it."""
    if in_features != LAZY:
        return cls(in_features, out_features, **kwargs)
    with torch.device("meta"):  # no memory, no random draws for the weights replaced here
        lin = cls(1, out_features, **kwargs)
    lin.weight = UninitializedParameter()
    lin.in_features = LAZY
    if lin.bias is not None:  # zeros until the layer initialises it, which needs the width
        lin.bias = nn.Parameter(torch.zeros_like(lin.bias, device=torch.get_default_device()))
    return lin


@torch.no_grad()
def materialize(weight: Tensor, shape: tuple[int, ...]) -> bool:
    """Sizes ``weight`` to ``shape`` if it is unsized (values left for the layer to initialise);
    returns whether it did."""
    if not is_lazy(weight):
        return False
    weight.materialize(shape)
    return True


def materialize_linear(lin: nn.Linear, in_features: int) -> bool:
    """Sizes a lazy :func:`linear`'s weight to ``[out_features, in_features]``; returns whether it
    did (the caller then initialises it)."""
    if not materialize(lin.weight, (lin.out_features, in_features)):
        return False
    lin.in_features = in_features
    return True


def recorded_widths(current: int | dict[str, int], widths: dict[str, int]) -> int | dict[str, int]:
    """A per-type layer's ``in_channels`` once lazy types are sized: one width stays one width,
    and types sized to different widths make it ``{node_type: width}``."""
    shared = set(widths.values())
    if not isinstance(current, dict) and len(shared) == 1:
        return shared.pop()
    return widths


class LazyInputModule(nn.Module):
    """Base of hgnn's layers whose input widths may be lazy (:data:`LAZY`).

    ``has_lazy()`` tells whether a weight is still unsized; ``state_dict()`` saves such a weight as
    an unsized :class:`~torch.nn.parameter.UninitializedParameter`, and ``load_state_dict()`` sizes
    them from the loaded tensors before copying, then calls :meth:`sync_widths` so the layers'
    recorded widths follow. Without lazy weights both behave as ``nn.Module``'s.
    """

    def has_lazy(self) -> bool:
        return any(is_lazy(p) for p in self.parameters())

    def sync_widths(self) -> None:
        """Updates the layer's recorded input widths from its weights' shapes (after sizing)."""

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        # nn.Module's own saving would call .detach() on an unsized weight, which raises: hide
        # those from it, then add them as they are.
        lazy = [(m, name, p) for m in self.modules() for name, p in m._parameters.items()
                if is_lazy(p)]
        if not lazy:
            return super().state_dict(*args, destination=destination, prefix=prefix,
                                      keep_vars=keep_vars)
        keys = {id(p): prefix + name for name, p in self.named_parameters() if is_lazy(p)}
        for m, name, _ in lazy:
            m._parameters[name] = None
        try:
            out = super().state_dict(*args, destination=destination, prefix=prefix,
                                     keep_vars=keep_vars)
        finally:
            for m, name, p in lazy:
                m._parameters[name] = p
        for _, _, p in lazy:  # a snapshot, as for sized weights: sizing p later leaves it unsized
            out[keys[id(p)]] = p if keep_vars else UninitializedParameter(
                p.requires_grad, device=p.device, dtype=p.dtype)
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        # Runs before the submodules load: size every unsized weight of the layer from the
        # tensor about to be copied into it (an unsized saved weight leaves it unsized).
        sized = False
        for name, p in self.named_parameters():
            value = state_dict.get(prefix + name)
            if is_lazy(p) and isinstance(value, Tensor) and not is_lazy(value):
                sized |= materialize(p, tuple(value.shape))
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.in_features == LAZY and not is_lazy(m.weight):
                m.in_features = m.weight.size(1)
        if sized:
            for m in self.modules():
                if isinstance(m, LazyInputModule):
                    m.sync_widths()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
