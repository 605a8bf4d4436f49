"""Graph Transformer Network layers (Yun et al., NeurIPS'19): learned soft selections of relations,
multiplied into meta-path adjacencies, then one graph convolution per channel."""
from __future__ import annotations

import itertools
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from hgnn.nn.graph_input import graph_input
from hgnn.nn.lazy import LAZY, LazyInputModule, as_width, is_lazy, materialize, parameter
from hgnn.ops import Segments, segment_spmm
from hgnn.ops.typed import cached_by_edges

EdgeType = tuple[str, str, str]
NORMALIZATIONS = ("row", "column")
# An off-diagonal row mass this small next to the row's whole mass is rounding, not a path: GTN's
# dense code sees an exact zero there (the row holds only its diagonal) and gives the row weight 0.
_EMPTY_ROW = 1e-5
_CACHE: OrderedDict = OrderedDict()
# Sizes past which a graph is refused rather than left to exhaust memory: the terms of one sparse
# product in column normalisation (24 bytes each, then a sort), the multiply-adds of one product
# behind the closed-walk counts of row normalisation.
MAX_PRODUCT_TERMS = 100_000_000
MAX_PRODUCT_FLOPS = 2_000_000_000


class MetaPathTooLarge(ValueError):
    """A meta-path product of this graph would not fit this machine's memory or time."""


@dataclass
class MetaPathOperands:
    """What :class:`GTNConv` multiplies, built once per graph (see :func:`metapath_operands`).

    ``num_relations`` counts the relations in one global id space, then the identity (GTN's extra
    "self" relation, its last). Row normalisation holds ``relations``, one ``[N, N]`` sparse
    matrix each, and ``walks[r]``, the tensor ``[K] * r + [N]`` whose entry ``[k_1, ..., k_r,
    i]`` is ``(A_{k_1} ... A_{k_r})_{ii}``, the closed walks of node ``i`` through those
    relations, for ``r = 1 .. length``. Column normalisation holds ``entries``, every non-zero of
    every relation, row-sorted, as ``(row, col, relation)`` ``[3, E]``; ``products``, one
    :class:`ProductPattern` per Graph Transformer layer, the first multiplying two selections,
    the rest the previous product's off-diagonal entries by one more; ``final``, the last
    product's off-diagonal entries, then one self-loop per node, grouped by column, and
    ``final_order``, which puts them in that order.
    """

    num_nodes: int
    num_relations: int
    relations: list[Tensor] = field(default_factory=list)
    walks: dict[int, Tensor] = field(default_factory=dict)
    entries: Tensor | None = None
    products: list[ProductPattern] = field(default_factory=list)
    final: Segments | None = None
    final_order: Tensor | None = None


@dataclass
class ProductPattern:
    """The non-zero pattern of a sparse product ``L @ R`` and how to fill it: output entry
    ``out[k]`` is the sum of ``left[left_of[t]] * right[right_of[t]]`` over terms ``t`` with
    ``into[t] == k``. ``rows`` / ``cols`` locate the outputs; ``off_diagonal`` indexes those with
    ``row != col``. Weights change the values, never the pattern (softmax weights are positive)."""

    left_of: Tensor
    right_of: Tensor
    into: Tensor
    rows: Tensor
    cols: Tensor
    off_diagonal: Tensor


def product_pattern(left_rows: np.ndarray, left_cols: np.ndarray, right: sp.csr_matrix,
                    n: int) -> tuple[np.ndarray, ...]:
    """Every term of ``L @ R`` for ``L``'s entries ``(left_rows, left_cols)`` and ``R``'s CSR
    entries: ``(left_of, right_of, into, rows, cols)`` (see :class:`ProductPattern`)."""
    counts = right.indptr[left_cols + 1] - right.indptr[left_cols]
    if counts.sum() > MAX_PRODUCT_TERMS:
        raise MetaPathTooLarge(
            f"GTN's column normalisation would expand a meta-path product into {counts.sum():,} "
            f"terms (limit {MAX_PRODUCT_TERMS:,}); use model.normalization row, which never forms "
            "the product, or fewer model.layers")
    left_of = np.repeat(np.arange(len(left_cols)), counts)
    first = np.cumsum(counts) - counts
    right_of = np.repeat(right.indptr[left_cols] - first, counts) + np.arange(int(counts.sum()))
    keys, into = np.unique(left_rows[left_of].astype(np.int64) * n + right.indices[right_of],
                           return_inverse=True)
    return left_of, right_of, into, keys // n, keys % n


def _scipy_relations(edge_index_dict: dict[EdgeType, Tensor], offsets: dict[str, int],
                     n: int) -> list[sp.csr_matrix]:
    mats = []
    for (src, _, dst), ei in edge_index_dict.items():
        ei = ei.cpu().numpy()
        m = sp.csr_matrix((np.ones(ei.shape[1], np.float64), (ei[0] + offsets[src],
                                                              ei[1] + offsets[dst])), (n, n))
        mats.append(m)
    return mats + [sp.identity(n, np.float64, format="csr")]


def closed_walks(mats: list[sp.csr_matrix], length: int) -> dict[int, np.ndarray]:
    """``{r: [K] * r + [N]}`` diagonals of every product of ``r`` matrices of ``mats`` (the last is
    the identity), for ``r = 1 .. length``. Products with identity factors reuse shorter ones; a
    product's diagonal is the row sum of ``left * right.T`` over its two halves."""
    k, n = len(mats), mats[0].shape[0]
    eye = k - 1
    products: dict[tuple[int, ...], sp.csr_matrix] = {}
    diagonals: dict[tuple[int, ...], np.ndarray] = {(): np.ones(n)}

    def product(key: tuple[int, ...]) -> sp.csr_matrix:
        if key not in products:
            if len(key) == 1:
                products[key] = mats[key[0]]
            else:
                left, right = product(key[:-1]), mats[key[-1]]
                flops = int((np.diff(left.tocsc().indptr) * np.diff(right.indptr)).sum())
                if flops > MAX_PRODUCT_FLOPS:
                    raise MetaPathTooLarge(
                        f"the closed walks of relations {key} take {flops:,} multiply-adds "
                        f"(limit {MAX_PRODUCT_FLOPS:,}); use fewer model.layers")
                products[key] = (left @ right).tocsr()
        return products[key]

    def diagonal(key: tuple[int, ...]) -> np.ndarray:
        if key not in diagonals:
            if len(key) == 1:
                diagonals[key] = mats[key[0]].diagonal()
            else:
                half = (len(key) + 1) // 2
                left, right = product(key[:half]), product(key[half:])
                diagonals[key] = (np.asarray(left.multiply(right.T).sum(axis=1)).ravel()
                                  if left.nnz and right.nnz else np.zeros(n))
        return diagonals[key]

    out = {}
    for r in range(1, length + 1):
        table = np.empty((k,) * r + (n,), np.float32)
        for key in itertools.product(range(k), repeat=r):
            table[key] = diagonal(tuple(i for i in key if i != eye))
        out[r] = table
    return out


def metapath_operands(edge_index_dict: dict[EdgeType, Tensor], num_nodes: dict[str, int],
                      length: int, normalization: str) -> MetaPathOperands:
    """The operands of :class:`GTNConv` for a graph (node types in ``num_nodes`` order make the
    global ids), cached while the same edge tensors come back."""
    def build() -> MetaPathOperands:
        offsets, n = {}, 0
        for t, size in num_nodes.items():
            offsets[t], n = n, n + size
        mats = _scipy_relations(edge_index_dict, offsets, n)
        device = next(iter(edge_index_dict.values())).device
        if normalization == "row":
            return _row_operands(mats, length, device)
        return _column_operands(mats, length, device)

    # The type order sets the global ids, and the shared key ignores it.
    return cached_by_edges(_CACHE, edge_index_dict, num_nodes, build,
                           extra=(length, normalization, tuple(num_nodes)), size=2)


def _row_operands(mats: list[sp.csr_matrix], length: int, device: torch.device) -> MetaPathOperands:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        relations = [torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr).long(), torch.from_numpy(m.indices).long(),
            torch.from_numpy(m.data).float(), m.shape).to(device) for m in mats]
    walks = {r: torch.from_numpy(t).to(device) for r, t in closed_walks(mats, length).items()}
    return MetaPathOperands(mats[0].shape[0], len(mats), relations=relations, walks=walks)


def _column_operands(mats: list[sp.csr_matrix], length: int,
                     device: torch.device) -> MetaPathOperands:
    n = mats[0].shape[0]
    # One entry per relation non-zero, row-sorted: the CSR of the relations side by side.
    coo = [m.tocoo() for m in mats]
    rows = np.concatenate([c.row for c in coo])
    order = np.argsort(rows, kind="stable")
    entries = np.stack([rows, np.concatenate([c.col for c in coo]),
                        np.concatenate([np.full(c.nnz, k) for k, c in enumerate(coo)])])[:, order]
    stacked = sp.csr_matrix((np.ones(entries.shape[1]), entries[1], np.concatenate(
        [[0], np.cumsum(np.bincount(entries[0], minlength=n))])), (n, n))
    products = []
    left_rows, left_cols = entries[0], entries[1]
    for _ in range(length - 1):
        left_of, right_of, into, out_rows, out_cols = product_pattern(left_rows, left_cols,
                                                                      stacked, n)
        off = np.flatnonzero(out_rows != out_cols)
        products.append(ProductPattern(*(torch.from_numpy(a).long().to(device) for a in (
            left_of, right_of, into, out_rows, out_cols, off))))
        left_rows, left_cols = out_rows[off], out_cols[off]
    rows = np.concatenate([left_rows, np.arange(n)])
    cols = np.concatenate([left_cols, np.arange(n)])
    order = np.argsort(cols, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n))])
    return MetaPathOperands(
        n, len(mats), entries=torch.from_numpy(entries).long().to(device), products=products,
        final=Segments(torch.from_numpy(ptr), torch.from_numpy(rows[order]), n).to(device),
        final_order=torch.from_numpy(order).long().to(device))


def _contract(walks: Tensor, weights: list[Tensor]) -> Tensor:
    """``sum_{k_1..k_r} w_1[c, k_1] ... w_r[c, k_r] walks[k_1, ..., k_r, i]`` -> ``[C, N]``."""
    out = torch.einsum("ck,k...->c...", weights[0], walks)
    for w in weights[1:]:
        out = torch.einsum("ck,ck...->c...", w, out)
    return out


class GTNConv(LazyInputModule):
    r"""GTN's Graph Transformer layers and graph convolution, one output block per channel.

    Each of the ``layers + 1`` soft selections mixes the ``K`` relations (the identity included)
    per channel :math:`c`: :math:`Q^c_m = \sum_k \mathrm{softmax}(\alpha_m^c)_k A_k`. The first
    layer multiplies two selections, each further layer one more:

    .. math::
        H^c_1 = Q^c_0 Q^c_1, \qquad H^c_{l+1} = \mathcal{N}(H^c_l)\, Q^c_{l+1}

    and the convolution reads :math:`Z^c = \mathcal{N}_{+I}(H^c_L)\, X W (+ b)`.

    ``normalization="row"`` is GTN's ``main.py`` (its ACM and DBLP runs):
    :math:`\mathcal{N}(H) = D^{-1}(H - \mathrm{diag}\,H)` with :math:`D` the row sums of
    :math:`H - \mathrm{diag}\,H` (a row without off-diagonal mass gets 0), :math:`\mathcal{N}_{+I}`
    the same with the diagonal replaced by 1, gradients through :math:`D`, no bias.
    The :math:`[N, N]` products are never formed: the products are applied right to left to
    :math:`XW`, row sums are the same chain applied to ones, and the diagonals are contractions
    of the selections with precomputed closed-walk counts (:func:`closed_walks`), so the cost is
    that of ``layers + 1`` sparse products with ``channels x out_channels`` columns.

    ``normalization="column"`` is GTN's ``main_sparse.py`` (its IMDB run): between layers the
    diagonal is dropped and each column divided by its (detached) sum, :math:`\mathcal{N}(H) = (H -
    \mathrm{diag}\,H) D_{\mathrm{col}}^{-1}`; the convolution (its ``gcn.py``) aggregates along
    :math:`H^\top`: :math:`Z^c = D^{-1} \tilde H^{c\top} X W + b` with :math:`\tilde H = H - \mathrm{diag}
    \,H + I` and :math:`D` the column sums of :math:`\tilde H` (gradients through them). This
    materialises each channel's sparse :math:`H^c` (GTN IMDB: about 3 million non-zeros).

    Args:
        in_channels: width of ``x`` (one width for every node: all types share the weight
            :math:`W`), or ``-1`` to size it from the first forward (PyG's lazy initialisation);
            ``None``: no weight, ``x`` is already :math:`XW` (a model that projects each node type
            with its own weight), of width ``out_channels``. A per-type dict raises a
            ``ValueError``: project the types first and pass ``None``.
        out_channels: width of each channel's output.
        num_relations: ``K``, the relations plus the identity.
        channels: ``C``, the independent meta-path selections.
        layers: ``L``, Graph Transformer layers (meta-paths of length ``L + 1``).
        normalization: ``"row"`` or ``"column"``, as above.

    Shapes: ``x_dict[t]`` ``[N_t, in_channels]`` (``[N_t, out_channels]`` without a weight),
    ``edge_index_dict[r]`` ``[2, E_r]``; output ``{t: [N_t, channels * out_channels]}``,
    channel-major.
    """

    def __init__(self, in_channels: int | None, out_channels: int, num_relations: int,
                 channels: int = 2, layers: int = 2, normalization: str = "row") -> None:
        super().__init__()
        if isinstance(in_channels, dict):
            raise ValueError("GTNConv's in_channels is one width for every node (one weight over "
                             "the global node table), -1 to size it at the first forward, or None "
                             f"for inputs already projected to out_channels; got {in_channels!r}. "
                             "Project each type first (hgnn.nn.TypeEncoder) and pass None")
        if in_channels is not None:
            in_channels = as_width(in_channels, "GTNConv's in_channels (or None)")
        out_channels = as_width(out_channels, "GTNConv's out_channels", lazy=False)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
                             f"not '{normalization}'")
        if layers < 1 or channels < 1:
            raise ValueError(f"layers and channels must be at least 1 (got {layers}, {channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.channels, self.layers, self.normalization = channels, layers, normalization
        self.selection = nn.Parameter(torch.empty(layers + 1, channels, num_relations))
        self.weight = parameter(in_channels, out_channels) if in_channels is not None else None
        # GTN's dense model declares a bias its convolution never adds; the sparse one's gcn adds it.
        self.bias = nn.Parameter(torch.empty(out_channels)) if normalization == "column" else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.selection, 0.1)  # a uniform softmax, as every GTN release starts
        self._reset_weight()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _reset_weight(self) -> None:
        if self.weight is not None and not is_lazy(self.weight):  # lazy: when sized
            bound = math.sqrt(6.0 / (self.in_channels + self.out_channels))
            nn.init.uniform_(self.weight, -bound, bound)

    def sync_widths(self) -> None:
        if self.weight is not None:
            self.in_channels = LAZY if is_lazy(self.weight) else self.weight.size(0)

    def selections(self) -> Tensor:
        """The softmax weights ``[layers + 1, channels, K]`` of every relation."""
        return torch.softmax(self.selection, dim=-1)

    def forward(self, x_dict: dict[str, Tensor] | HeteroData,
                edge_index_dict: dict[EdgeType, Tensor] | None = None) -> dict[str, Tensor]:
        """Node types in ``x_dict`` order make one id space, the relations in
        ``edge_index_dict`` order (then the identity) the candidates; returns ``{type: [N_t,
        channels * out_channels]}``. A ``HeteroData`` may stand for both dicts."""
        x_dict, edge_index_dict = graph_input(x_dict, edge_index_dict)
        # Relations are selected by position, so none can be left out as other layers do.
        missing = [et for et in edge_index_dict if et[0] not in x_dict or et[2] not in x_dict]
        if missing:
            raise ValueError(f"GTNConv selects among every relation given, and {missing[0]} joins a "
                             "node type missing from x_dict; give every type features (or node "
                             "ids through a TypeEncoder) or leave its relations out")
        widths = {t: int(x.size(-1)) for t, x in x_dict.items()}
        if len(set(widths.values())) > 1:
            raise ValueError(f"GTNConv takes one width for every node type, got {widths}; project "
                             "each type first (hgnn.nn.TypeEncoder) and build it with in_channels=None")
        sizes = {t: int(x.size(0)) for t, x in x_dict.items()}
        operands = metapath_operands(edge_index_dict, sizes, self.layers + 1, self.normalization)
        out = self.propagate(torch.cat(list(x_dict.values())), operands)
        return dict(zip(sizes, out.split(list(sizes.values())), strict=True))

    def propagate(self, x: Tensor, operands: MetaPathOperands) -> Tensor:
        """The layer on one global table ``x`` ``[N, in_channels]`` -> ``[N, C * out]``."""
        if self.weight is not None and materialize(self.weight, (x.size(-1), self.out_channels)):
            self.sync_widths()
            self._reset_weight()
        if operands.num_relations != self.selection.size(-1):
            raise ValueError(f"GTNConv selects among {self.selection.size(-1)} relations (the "
                             f"identity included), the graph has {operands.num_relations}")
        y = x @ self.weight if self.weight is not None else x
        w = self.selections()
        z = self._row(y, w, operands) if self.normalization == "row" else self._column(y, w, operands)
        return z.permute(1, 0, 2).reshape(y.size(0), -1)

    def _select(self, w: Tensor, m: int, z: Tensor, relations: list[Tensor]) -> Tensor:
        """``Q^c_m z^c`` for every channel: ``z`` ``[C, N, F]``."""
        c, n, f = z.shape
        flat = z.permute(1, 0, 2).reshape(n, c * f)
        stacked = torch.stack([torch.sparse.mm(a, flat) for a in relations])
        return torch.einsum("ck,kncf->cnf", w[m], stacked.view(-1, n, c, f))

    def _row(self, y: Tensor, w: Tensor, operands: MetaPathOperands) -> Tensor:
        walks, relations, last = operands.walks, operands.relations, self.layers
        if walks[1].dtype != y.dtype:  # the operands are float32; float64 runs (gradcheck) cast
            walks = {r: t.to(y.dtype) for r, t in walks.items()}
            relations = [a.to(y.dtype) for a in relations]
        delta: dict[int, Tensor] = {}
        scale: dict[int, Tensor] = {}

        def diagonal(level: int, suffix: list[int]) -> Tensor:  # diag(H_level Q_suffix...)
            if level == 1:
                return _contract(walks[2 + len(suffix)], [w[i] for i in [0, 1, *suffix]])
            shorter = _contract(walks[1 + len(suffix)], [w[i] for i in [level, *suffix]])
            return scale[level - 1] * (diagonal(level - 1, [level, *suffix])
                                       - delta[level - 1] * shorter)

        def apply(level: int, z: Tensor) -> Tensor:  # H_level z
            if level == 1:
                return self._select(w, 0, self._select(w, 1, z, relations), relations)
            inner = self._select(w, level, z, relations)
            return scale[level - 1][..., None] * (apply(level - 1, inner)
                                                  - delta[level - 1][..., None] * inner)

        ones = y.new_ones(self.channels, y.size(0), 1)
        for level in range(1, last + 1):
            delta[level] = diagonal(level, [])
            total = apply(level, ones)[..., 0]
            off = total - delta[level]
            if level < last:
                keep = off > _EMPTY_ROW * total
                scale[level] = torch.where(keep, 1.0 / torch.where(keep, off, 1.0), 0.0)
        z = y.expand(self.channels, -1, -1)
        return ((apply(last, z) - delta[last][..., None] * z + z)
                / (off + 1.0)[..., None])

    def _column(self, y: Tensor, w: Tensor, operands: MetaPathOperands) -> Tensor:
        n, relation_of = operands.num_nodes, operands.entries[2]
        out = []
        for c in range(self.channels):
            left, h, previous = w[0, c][relation_of], None, None
            for step, pattern in enumerate(operands.products):
                if previous is not None:  # GTN's normalization(): no diagonal, columns scaled
                    off = previous.off_diagonal  # by their detached sums
                    cols = previous.cols[off]
                    left = h[off] / _column_sums(h[off].detach(), cols, n)[cols]
                right = w[step + 1, c][relation_of]
                h = torch.zeros(pattern.rows.numel(), dtype=y.dtype, device=y.device).index_add(
                    0, pattern.into, left[pattern.left_of] * right[pattern.right_of])
                previous = pattern
            val = torch.cat([h[previous.off_diagonal], h.new_ones(n)])[operands.final_order]
            cols = operands.final.segment_ids()
            val = val / _column_sums(val, cols, n)[cols]  # gcn.py: with gradients
            out.append(segment_spmm(y, operands.final, val) + self.bias)
        return torch.stack(out)


def _column_sums(values: Tensor, cols: Tensor, n: int) -> Tensor:
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, cols, values)
