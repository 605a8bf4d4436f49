"""Per-node-type input projection to a shared width."""
from __future__ import annotations

import operator
import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hgnn.nn.lazy import LAZY, LazyInputModule, as_width, is_lazy, linear, materialize_linear

SPARSE_MIN_ELEMENTS = 1 << 20  # smaller inputs are cheap either way
SPARSE_MAX_DENSITY = 0.05


class _SparseRowsMatmul(torch.autograd.Function):
    """``x @ w`` for a constant sparse ``x`` given as CSR and its transpose (for the weight
    gradient); no gradient for ``x``."""

    @staticmethod
    def forward(ctx, csr: Tensor, csr_t: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(csr_t)
        return torch.sparse.mm(csr, w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (csr_t,) = ctx.saved_tensors
        return None, None, torch.sparse.mm(csr_t, grad)


class SparseInputLinear(nn.Linear):
    """``nn.Linear`` that multiplies large, mostly-zero, constant inputs (bag-of-words features:
    HGB DBLP's 4,231-wide paper rows are 0.16% non-zero) as CSR instead of densely. Inputs that
    need a gradient, are small or are dense take the ordinary path; the result is the same up to
    float rounding. The CSR form of the last input is cached (full-batch training passes the same
    tensor every epoch). The cache is keyed on the tensor object itself (a weak reference) and its
    version, never on its address: a sampled batch's features freed and the next batch's allocated
    at the same address with the same shape would otherwise reuse the old batch's rows."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._cache: tuple | None = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_cache"] = None  # a weak reference does not pickle; the cache refills on use
        return state

    def _sparse(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        if x.is_inference():  # no version counter to guard a cached copy
            return self._to_csr_pair(x)
        if self._cache is not None:
            ref, version, found = self._cache
            if ref() is x and version == x._version:
                return found
        found = self._to_csr_pair(x)
        self._cache = (weakref.ref(x), x._version, found)
        return found

    @staticmethod
    def _to_csr_pair(x: Tensor) -> tuple[Tensor, Tensor] | None:
        if int(torch.count_nonzero(x)) > SPARSE_MAX_DENSITY * x.numel():
            return None
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            csr = x.to_sparse_csr()
            return csr, csr.t().to_sparse_csr()

    def forward(self, x: Tensor) -> Tensor:
        if (x.dim() != 2 or x.requires_grad or x.numel() < SPARSE_MIN_ELEMENTS
                or not x.is_floating_point() or x.layout != torch.strided):
            return F.linear(x, self.weight, self.bias)
        pair = self._sparse(x)
        if pair is None:
            return F.linear(x, self.weight, self.bias)
        out = _SparseRowsMatmul.apply(pair[0], pair[1], self.weight.t())
        return out + self.bias if self.bias is not None else out


class TypeEncoder(LazyInputModule):
    r"""Projects each node type's input to ``out_channels``.

    .. math::
        h_v = \sigma(W_{\tau(v)} x_v + b_{\tau(v)}) \quad\text{or}\quad h_v = \sigma(E_{\tau(v)}[x_v])

    A type whose ``x`` holds float features gets a ``Linear``; a type whose ``x`` holds long node ids
    (featureless types, see :func:`hgnn.train.graph.prepare_graph`) gets an ``Embedding`` row per
    node, which equals a one-hot input times a weight matrix, as HGB's baselines use.

    Args:
        in_channels: ``{node_type: feature width}``, or ``{node_type: -num_nodes}`` for id inputs
            (so ``-1`` in the dict is a one-node id type, not PyG's lazy width); ``None`` as a
            type's width sizes its ``Linear`` from the first forward that brings the type (PyG's
            lazy ``-1``; float features only: ids need their node count). One int for every type
            takes ``node_types``, as PyG's ``HeteroDictLinear`` takes ``types``: a positive width,
            or ``-1`` for every type lazy.
        out_channels: output width.
        activation: ``"none"``, ``"relu"`` or ``"tanh"`` (HGB's HGT applies tanh).
        node_types: the types, when ``in_channels`` is one int (with a dict, its keys).

    Shapes: ``x_dict[t]`` is ``[N_t, F_t]`` float or ``[N_t]`` long; output ``[N_t, out_channels]``.
    """

    def __init__(self, in_channels: int | dict[str, int | None], out_channels: int,
                 activation: str = "none", node_types: list[str] | None = None) -> None:
        super().__init__()
        out_channels = as_width(out_channels, "TypeEncoder's out_channels", lazy=False)
        if isinstance(in_channels, dict):
            if node_types is not None and set(node_types) != set(in_channels):
                raise ValueError(f"TypeEncoder's node_types {list(node_types)} do not match the "
                                 f"keys of in_channels {list(in_channels)}")
            widths = {t: None if c is None else _signed_width(c, t) for t, c in in_channels.items()}
        elif node_types is None:
            raise ValueError(f"TypeEncoder with one in_channels ({in_channels!r}) for every type "
                             "needs node_types=[...]; or give {node_type: width}")
        else:
            width = as_width(in_channels, "TypeEncoder's in_channels (or a {node_type: width} dict)")
            widths = {t: None if width == LAZY else width for t in node_types}
        self.out_channels = out_channels
        self.proj = nn.ModuleDict({
            t: linear(LAZY, out_channels, cls=SparseInputLinear) if c is None
            else nn.Embedding(-c, out_channels) if c < 0 else SparseInputLinear(c, out_channels)
            for t, c in widths.items()
        })
        self.activation = {"none": nn.Identity(), "relu": nn.ReLU(), "tanh": nn.Tanh()}[activation]
        self.sync_widths()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.proj.values():
            if not is_lazy(m.weight):  # a lazy one is initialised when it is sized
                m.reset_parameters()

    def sync_widths(self) -> None:
        """``in_channels``: ``{node_type: width, -num_nodes, or None while not sized}``."""
        self.in_channels = {
            t: -m.num_embeddings if isinstance(m, nn.Embedding)
            else None if m.in_features == LAZY else m.in_features
            for t, m in self.proj.items()
        }

    def initialize(self, x_dict: dict[str, Tensor]) -> None:
        """Sizes and initialises the lazy projections of the types in ``x_dict``."""
        sized = False
        for t, x in x_dict.items():
            lin = self.proj[t] if t in self.proj else None
            if lin is None or not is_lazy(lin.weight):
                continue
            if not x.is_floating_point():
                raise ValueError(f"TypeEncoder sizes the projection of type {t!r} from its first "
                                 f"input, which holds node ids ({x.dtype}); give an id input its "
                                 f"node count, in_channels={{{t!r}: -num_nodes}}")
            materialize_linear(lin, x.size(-1))
            lin.reset_parameters()
            sized = True
        if sized:
            self.sync_widths()

    def forward(self, x_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.has_lazy():
            self.initialize(x_dict)
        out = {}
        for t, x in x_dict.items():
            if t not in self.proj:
                continue
            proj = self.proj[t]
            if isinstance(proj, nn.Embedding) and x.is_floating_point():
                raise ValueError(
                    f"TypeEncoder's type {t!r} takes node ids (in_channels {-proj.num_embeddings} "
                    f"is minus its node count) but got float features {list(x.shape)}; for a "
                    "width sized at the first forward give None (PyG's -1) as its in_channels")
            out[t] = self.activation(proj(x))
        return out


def _signed_width(value: object, node_type: str) -> int:
    """A type's entry of :class:`TypeEncoder`'s ``in_channels``: a feature width, or minus the
    node count of an id input."""
    what = f"TypeEncoder's in_channels[{node_type!r}]"
    try:
        width = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        width = None
    if width == 0:
        raise ValueError(f"{what} is 0: a feature width of 0, or node ids of a type with no "
                         "nodes; leave such a type out (hgnn.data.transforms.drop_empty_node_types)")
    if not width:
        raise ValueError(f"{what} must be a feature width, -num_nodes for node ids, or None "
                         f"(sized at the first forward), got {value!r}")
    return width


def input_channels(x_dict: dict[str, Tensor]) -> dict[str, int]:
    """The ``in_channels`` argument of :class:`TypeEncoder` for a graph's ``x_dict``."""
    return {t: -x.size(0) if x.dtype == torch.long else x.size(-1) for t, x in x_dict.items()}
