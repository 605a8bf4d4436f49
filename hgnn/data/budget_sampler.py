"""HGT's budget sampling (Hu et al., WWW'20, Algorithm 1) over the RelationIndex, in plain torch.

The algorithm of PyG's ``HGTLoader`` / ``HGTSampler`` (``torch_sparse.hgt_sample``), which needs
the compiled ``torch-sparse`` package; this loader yields the same kind of batch as
:class:`~hgnn.data.sampler.NeighborLoader` (a ``HeteroData`` subgraph with the seeds first in the
target type, ``batch_size`` on it and ``n_id`` per type), so the sampled regime runs either.

Per batch:

1. The seeds are the first sampled nodes. Every sampled node ``w`` adds, for each relation into
   its type, ``1 / deg(w)`` to the *budget* score of each not-yet-sampled in-neighbour
   (``deg`` = in-degree under that relation). A node with more than ``max_neighbors`` (50, as in
   ``torch_sparse``) in-neighbours under a relation instead spreads ``1 / max_neighbors`` over that
   many of them, drawn uniformly without replacement.
2. Iteration ``l`` = 1..L: for every node type ``t``, ``budget[t][l]`` nodes are drawn without
   replacement from ``t``'s budget with probability proportional to the *squared* score (all of
   them when the budget holds no more). All types draw before any budget changes; the drawn nodes
   leave the budget and (except after the last iteration) add their in-neighbours to it as in 1.
3. The batch is the subgraph induced on the sampled nodes: for every relation and sampled
   destination, its in-edges from sampled sources; a destination with more than
   ``max_neighbors`` in-edges under a relation has that many of them considered, drawn uniformly
   (``torch_sparse`` does the same).

Node order within a type: seeds (target type), then iteration 1's draws, iteration 2's, ...
Randomness comes from one ``torch.Generator``: the same generator state gives the same batches.
"""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import RelationIndex, relation_index
from hgnn.data.sampler import SeedLoader, _positions, _sample_segments, subgraph_nodes

MAX_NEIGHBORS = 50  # torch_sparse's hgt_sample constant
_KEYS_LIMIT = 1 << 15  # capped segments holding up to this many edges in all: random keys


def _sample_capped(lo: torch.Tensor, deg: torch.Tensor, k: int,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``k`` positions from each segment ``[lo, lo + deg)``, uniformly without replacement
    (all of a segment with ``deg <= k``; ``k < 0``: all). Returns (positions, owning segment).

    Segments over the cap draw their ``k`` edges as the smallest of one uniform key per edge, in
    one sort over all their edges; when those edges are many (hubs), Floyd's algorithm of
    :func:`~hgnn.data.sampler._sample_segments` (``O(k^2)`` per segment) is used instead."""
    if k < 0:
        return _sample_segments(lo, deg, -1, gen)
    big = deg > k
    total_big = int(deg[big].sum())
    if total_big == 0 or total_big > _KEYS_LIMIT:
        return _sample_segments(lo, deg, k, gen)
    idx_small = (~big).nonzero().view(-1)
    d_small = deg[idx_small]
    n_small = int(d_small.sum())
    owner_small = torch.repeat_interleave(idx_small, d_small, output_size=n_small)
    first = torch.repeat_interleave(torch.cumsum(d_small, 0) - d_small, d_small,
                                    output_size=n_small)
    pos_small = lo[owner_small] + torch.arange(n_small) - first
    idx_big = big.nonzero().view(-1)
    d_big = deg[idx_big]
    seg = torch.repeat_interleave(torch.arange(idx_big.numel()), d_big, output_size=total_big)
    start = torch.cumsum(d_big, 0) - d_big
    keys = torch.rand(total_big, generator=gen, dtype=torch.float64)
    order = torch.argsort(seg.double() + keys)  # segments stay contiguous, each sorted by key
    owner_sorted = seg[order]
    rank = torch.arange(total_big) - start[owner_sorted]
    take = order[rank < k]
    owner = seg[take]
    pos_big = lo[idx_big[owner]] + take - start[owner]
    return torch.cat([pos_small, pos_big]), torch.cat([owner_small, idx_big[owner]])


class BudgetSampler:
    """HGT budget sampling of the subgraph around seed nodes (see the module docstring).

    Args:
        data: the full graph.
        budget: nodes drawn per node type per iteration, the same for every type
            (``[512, 512, 512]``: 3 iterations), or ``{node_type: [n_1, ..., n_L]}`` (types not
            listed draw nothing; every list has the same length).
        max_neighbors: in-neighbours considered per (relation, node) beyond which a uniform
            subset of this size is used; ``<= 0`` considers all.
    """

    def __init__(self, data: HeteroData, budget: list[int] | dict[str, list[int]],
                 max_neighbors: int = MAX_NEIGHBORS) -> None:
        self.data = data
        self.index: RelationIndex = relation_index(data)
        if isinstance(budget, dict):
            lengths = {len(v) for v in budget.values()}
            if len(lengths) != 1:
                raise ValueError("every node type needs the same number of iterations in budget")
            self.num_iters = lengths.pop()
            unknown = set(budget) - set(self.index.node_types)
            if unknown:
                raise ValueError(f"budget names unknown node types: {sorted(unknown)}")
            self.budget = {t: [int(n) for n in budget.get(t, [0] * self.num_iters)]
                           for t in self.index.node_types}
        else:
            self.num_iters = len(budget)
            self.budget = {t: [int(n) for n in budget] for t in self.index.node_types}
        self.max_neighbors = max_neighbors if max_neighbors > 0 else -1

    def _in_edges(self, r: int, dst: torch.Tensor, gen: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (capped) in-edges of ``dst`` under relation ``r``: (source ids, owner position in
        ``dst``, per-edge ``1 / considered in-degree``)."""
        ri = self.index
        seg = ri.seg_offset[r] + dst
        lo = ri.col_ptr[seg]
        deg = ri.col_ptr[seg + 1] - lo
        pos, owner = _sample_capped(lo, deg, self.max_neighbors, gen)
        considered = deg if self.max_neighbors < 0 else deg.clamp(max=self.max_neighbors)
        return ri.src[pos], owner, 1.0 / considered[owner].to(torch.float32)

    def _add_to_budget(self, node_type: str, new: torch.Tensor, scores: dict, sampled: dict,
                       gen: torch.Generator) -> None:
        if new.numel() == 0:
            return
        for r, (s, _, d) in enumerate(self.index.edge_types):
            if d != node_type:
                continue
            src, _, contrib = self._in_edges(r, new, gen)
            fresh = ~sampled[s][src]
            scores[s].index_add_(0, src[fresh], contrib[fresh])

    def sample(self, input_type: str, seeds: torch.Tensor,
               generator: torch.Generator | None = None) -> HeteroData:
        """The sampled subgraph around ``seeds`` (distinct ids of ``input_type``)."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        ri = self.index
        sizes = dict(zip(ri.node_types, ri.num_nodes.tolist(), strict=True))
        seeds = seeds.long().view(-1)
        empty = torch.zeros(0, dtype=torch.long)
        nodes: dict[str, list[torch.Tensor]] = {t: [] for t in ri.node_types}
        sampled = {t: torch.zeros(n, dtype=torch.bool) for t, n in sizes.items()}
        scores = {t: torch.zeros(n, dtype=torch.float32) for t, n in sizes.items()}
        nodes[input_type].append(seeds)
        sampled[input_type][seeds] = True
        self._add_to_budget(input_type, seeds, scores, sampled, gen)
        for it in range(self.num_iters):
            drawn = {}
            for t in ri.node_types:
                k = self.budget[t][it]
                cand = scores[t].nonzero().view(-1) if k > 0 else empty
                if cand.numel() > k:
                    weight = scores[t][cand].double().pow(2)
                    cand = cand[torch.multinomial(weight, k, replacement=False, generator=gen)]
                drawn[t] = cand
                nodes[t].append(cand)
                sampled[t][cand] = True
                scores[t][cand] = 0.0
            if it < self.num_iters - 1:
                for t, new in drawn.items():
                    self._add_to_budget(t, new, scores, sampled, gen)
        known = {t: torch.cat(parts) if parts else empty for t, parts in nodes.items()}
        return self._build(input_type, seeds.numel(), known, sampled, gen)

    def _build(self, input_type: str, batch_size: int, known: dict[str, torch.Tensor],
               sampled: dict[str, torch.Tensor], gen: torch.Generator) -> HeteroData:
        out = subgraph_nodes(self.data, known, input_type, batch_size)
        for r, et in enumerate(self.index.edge_types):
            dst = known[et[2]]
            src, owner, _ = self._in_edges(r, dst, gen)
            hit = sampled[et[0]][src]
            src, owner = src[hit], owner[hit]
            out[et].edge_index = torch.stack([_positions(known[et[0]], src), owner])
        return out


class BudgetLoader(SeedLoader):
    """Mini-batches of seed nodes with HGT budget-sampled subgraphs; the interface of
    :class:`~hgnn.data.sampler.NeighborLoader` (``budget`` in place of ``num_neighbors``).

    With ``shuffle`` the seed order is drawn from ``generator`` (the global torch RNG when none is
    given), and each pass seeds its sampling generator from it, so restoring the RNG state replays
    an epoch exactly.
    """

    def __init__(self, data: HeteroData, budget, input_nodes: tuple[str, torch.Tensor],
                 batch_size: int = 32, shuffle: bool = False,
                 generator: torch.Generator | None = None,
                 max_neighbors: int = MAX_NEIGHBORS) -> None:
        super().__init__(BudgetSampler(data, budget, max_neighbors), input_nodes, batch_size,
                         shuffle, generator)
