"""Per-node-type input projection to a shared width."""
from __future__ import annotations

import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        if self._cache is not None:
            ref, version, found = self._cache
            if ref() is x and version == x._version:
                return found
        found = None
        if int(torch.count_nonzero(x)) <= SPARSE_MAX_DENSITY * x.numel():
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                csr = x.to_sparse_csr()
                found = (csr, csr.t().to_sparse_csr())
        self._cache = (weakref.ref(x), x._version, found)
        return found

    def forward(self, x: Tensor) -> Tensor:
        if (x.dim() != 2 or x.requires_grad or x.numel() < SPARSE_MIN_ELEMENTS
                or not x.is_floating_point() or x.layout != torch.strided):
            return F.linear(x, self.weight, self.bias)
        pair = self._sparse(x)
        if pair is None:
            return F.linear(x, self.weight, self.bias)
        out = _SparseRowsMatmul.apply(pair[0], pair[1], self.weight.t())
        return out + self.bias if self.bias is not None else out


class TypeEncoder(nn.Module):
    r"""Projects each node type's input to ``out_channels``.

    .. math::
        h_v = \sigma(W_{\tau(v)} x_v + b_{\tau(v)}) \quad\text{or}\quad h_v = \sigma(E_{\tau(v)}[x_v])

    A type whose ``x`` holds float features gets a ``Linear``; a type whose ``x`` holds long node ids
    (featureless types, see :func:`hgnn.train.graph.prepare_graph`) gets an ``Embedding`` row per
    node, which equals a one-hot input times a weight matrix, as HGB's baselines use.

    Args:
        in_channels: ``{node_type: feature width}``, or ``{node_type: -num_nodes}`` for id inputs.
        out_channels: output width.
        activation: ``"none"``, ``"relu"`` or ``"tanh"`` (HGB's HGT applies tanh).

    Shapes: ``x_dict[t]`` is ``[N_t, F_t]`` float or ``[N_t]`` long; output ``[N_t, out_channels]``.
    """

    def __init__(self, in_channels: dict[str, int], out_channels: int,
                 activation: str = "none") -> None:
        super().__init__()
        self.proj = nn.ModuleDict({
            t: nn.Embedding(-c, out_channels) if c < 0 else SparseInputLinear(c, out_channels)
            for t, c in in_channels.items()
        })
        self.activation = {"none": nn.Identity(), "relu": nn.ReLU(), "tanh": nn.Tanh()}[activation]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.proj.values():
            m.reset_parameters()

    def forward(self, x_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        return {t: self.activation(self.proj[t](x)) for t, x in x_dict.items() if t in self.proj}


def input_channels(x_dict: dict[str, Tensor]) -> dict[str, int]:
    """The ``in_channels`` argument of :class:`TypeEncoder` for a graph's ``x_dict``."""
    return {t: -x.size(0) if x.dtype == torch.long else x.size(-1) for t, x in x_dict.items()}
