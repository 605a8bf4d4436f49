"""Heterogeneous neighbour sampling over the RelationIndex, in plain torch.

PyG's ``NeighborLoader`` needs the compiled ``pyg-lib`` or ``torch-sparse`` packages, which have no
wheels for current torch releases; this loader produces the same kind of batch without them: a
``HeteroData`` subgraph whose target type lists the seed nodes first (``batch_size`` of them), with
``n_id`` (original ids) per type, and messages flowing src -> dst as in the full graph.

Per hop and relation, each frontier node of the relation's destination type keeps ``k`` of its
in-neighbours, drawn uniformly without replacement (all of them when it has ``k`` or fewer;
``k = -1`` keeps all). With ``joint``, each hop instead draws ``k`` in-neighbours per node over all
relations together, for every node reached so far (seeds included), and the hops' edges are
merged without duplicates: PyG 1.x's ``NeighborSampler`` (``sample_adj``) on the graph with its
types merged, which LATTE's official loader runs. With ``blocks``, each hop draws ``k`` per
relation afresh for every node reached so far (seeds included) and every edge keeps the hop that
drew it (``edge_hop``): DGL's ``MultiLayerNeighborSampler`` blocks, where the last layer reads the
seeds' hop-0 draws and each earlier layer the next hop's (:func:`layer_edges`). ``blocked`` (a
mask over the seed type's nodes) drops those nodes from the batch with their edges after the draw,
as LATTE's inductive loader does with the validation and test nodes of a training batch. Sampling
is seeded by a ``torch.Generator``: the same seed gives the same batches.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch_geometric.data import HeteroData

from hgnn.data.relation_index import EdgeType, RelationIndex, relation_index


def _sample_segments(ptr_lo: torch.Tensor, deg: torch.Tensor, k: int,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick up to ``k`` positions from each segment ``[lo, lo + deg)`` without replacement.

    Returns (edge positions, owning segment index). Segments with ``deg <= k`` keep every edge;
    larger ones draw a uniform ``k``-subset with Floyd's algorithm, vectorised across segments, so
    the cost is ``O(k^2)`` per segment whatever its degree (hubs do not blow up the batch cost).
    """
    if k < 0:
        k = int(deg.max()) if deg.numel() else 0
    small = deg <= k
    idx_small = small.nonzero().view(-1)
    d_small = deg[idx_small]
    total = int(d_small.sum())
    owner_small = torch.repeat_interleave(idx_small, d_small, output_size=total)
    first = torch.repeat_interleave(torch.cumsum(d_small, 0) - d_small, d_small, output_size=total)
    pos_small = ptr_lo[owner_small] + torch.arange(total) - first

    idx_big = (~small).nonzero().view(-1)
    if idx_big.numel() == 0:
        return pos_small, owner_small
    d_big = deg[idx_big]
    chosen = torch.empty(idx_big.numel(), k, dtype=torch.long)
    for i in range(k):
        j = d_big - k + i
        t = (torch.rand(idx_big.numel(), generator=gen, dtype=torch.float64) * (j + 1)).long()
        t = torch.minimum(t, j)  # guards the (measure-zero) rand() == 1 - eps rounding case
        dup = (chosen[:, :i] == t.unsqueeze(1)).any(1)
        chosen[:, i] = torch.where(dup, j, t)
    pos_big = (ptr_lo[idx_big].unsqueeze(1) + chosen).view(-1)
    owner_big = idx_big.repeat_interleave(k)
    return torch.cat([pos_small, pos_big]), torch.cat([owner_small, owner_big])


class NeighborSampler:
    """Samples the multi-hop typed neighbourhood of seed nodes (see the module docstring).

    Args:
        data: the full graph.
        num_neighbors: fan-out per hop, the same for every relation (``[10, 10]``), or a dict
            ``{edge_type: [k_hop1, k_hop2, ...]}``.
        joint: draw each node's ``k`` over all its relations together (a list fan-out only).
        blocks: redraw every node reached so far at each hop and tag edges with their hop.
        blocked: bool mask over the seed type's nodes that a batch must not contain (seeds aside).
    """

    def __init__(self, data: HeteroData, num_neighbors: list[int] | dict[EdgeType, list[int]],
                 joint: bool = False, blocked: torch.Tensor | None = None,
                 blocks: bool = False):
        self.data = data
        self.index: RelationIndex = relation_index(data)
        self.joint, self.blocked, self.blocks = joint, blocked, blocks
        if joint and blocks:
            raise ValueError("joint and blocks sampling exclude each other")
        if joint and isinstance(num_neighbors, dict):
            raise ValueError("joint sampling takes one fan-out per hop for all relations, not a "
                             "dict per relation")
        if isinstance(num_neighbors, dict):
            hops = {len(v) for v in num_neighbors.values()}
            if len(hops) != 1:
                raise ValueError("every relation needs the same number of hops in num_neighbors")
            self.fanout = {tuple(k): list(v) for k, v in num_neighbors.items()}
            self.num_hops = hops.pop()
        else:
            self.fanout = {et: list(num_neighbors) for et in self.index.edge_types}
            self.num_hops = len(num_neighbors)

    def sample(self, input_type: str, seeds: torch.Tensor,
               generator: torch.Generator | None = None) -> HeteroData:
        """The sampled subgraph around ``seeds`` (ids of ``input_type``) as a ``HeteroData``."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        ri = self.index
        empty = torch.zeros(0, dtype=torch.long)
        seeds = seeds.long().view(-1)
        # Per type: the batch's nodes in order of arrival (seeds first); the last hop's arrivals
        # form the frontier whose in-neighbours the next hop samples.
        known = {t: empty for t in ri.node_types}
        known[input_type] = seeds
        frontier = dict(known)
        edges: dict[EdgeType, list[tuple[torch.Tensor, torch.Tensor, int]]] = {
            et: [] for et in ri.edge_types}
        for hop in range(self.num_hops):
            arrivals: dict[str, list[torch.Tensor]] = {t: [] for t in ri.node_types}
            draws = self._draw_joint(known, hop, gen) if self.joint \
                else self._draw_per_relation(known if self.blocks else frontier, hop, gen)
            for et, src, dst in draws:
                if self.blocked is not None and et[0] == input_type:
                    keep = ~self.blocked[src] | torch.isin(src, seeds)
                    src, dst = src[keep], dst[keep]
                edges[et].append((src, dst, hop))
                arrivals[et[0]].append(src)
            for t in ri.node_types:
                cand = _unique_in_order(torch.cat(arrivals[t])) if arrivals[t] else empty
                fresh = cand[~torch.isin(cand, known[t])]
                known[t] = torch.cat([known[t], fresh])
                frontier[t] = fresh
        return self._build(input_type, seeds.numel(), known, edges)

    def _draw_per_relation(self, frontier: dict[str, torch.Tensor], hop: int,
                           gen: torch.Generator):
        """(relation, src, dst) of the hop's draws: ``k`` per frontier node and relation (with
        ``blocks``, the frontier is every node reached so far)."""
        ri = self.index
        for r, et in enumerate(ri.edge_types):
            k = self.fanout.get(et, [0] * self.num_hops)[hop]
            dst_nodes = frontier[et[2]]
            if k == 0 or dst_nodes.numel() == 0:
                continue
            seg = ri.seg_offset[r] + dst_nodes
            lo = ri.col_ptr[seg]
            pos, owner = _sample_segments(lo, ri.col_ptr[seg + 1] - lo, k, gen)
            yield et, ri.src[pos], dst_nodes[owner]

    def _draw_joint(self, known: dict[str, torch.Tensor], hop: int, gen: torch.Generator):
        """(relation, src, dst) of the hop's draws: ``k`` per node reached so far, drawn from its
        in-edges of every relation as one list (relation by relation, in index order)."""
        ri = self.index
        k = self.fanout[ri.edge_types[0]][hop] if ri.edge_types else 0
        for t in ri.node_types:
            rels = [r for r, et in enumerate(ri.edge_types) if et[2] == t]
            nodes = known[t]
            if k == 0 or not rels or nodes.numel() == 0:
                continue
            seg = torch.stack([ri.seg_offset[r] + nodes for r in rels], 1)  # [nodes, relations]
            lo = ri.col_ptr[seg]
            deg = ri.col_ptr[seg + 1] - lo
            end = deg.cumsum(1)
            offset, owner = _sample_segments(torch.zeros_like(end[:, -1]), end[:, -1], k, gen)
            which = torch.searchsorted(end[owner], offset.unsqueeze(1), right=True).view(-1)
            pos = lo[owner, which] + offset - (end - deg)[owner, which]
            for j, r in enumerate(rels):
                hit = which == j
                yield ri.edge_types[r], ri.src[pos[hit]], nodes[owner[hit]]

    def _build(self, input_type: str, batch_size: int, known: dict[str, torch.Tensor],
               edges: dict[EdgeType, list]) -> HeteroData:
        out = subgraph_nodes(self.data, known, input_type, batch_size)
        for et, parts in edges.items():
            if parts:
                src = torch.cat([p[0] for p in parts])
                dst = torch.cat([p[1] for p in parts])
                if self.joint:  # a later hop redraws the earlier hops' nodes: merge repeats
                    n = self.data[et[2]].num_nodes
                    pair = _unique_in_order(src * n + dst)
                    src, dst = pair // n, pair % n
            else:
                src = dst = torch.zeros(0, dtype=torch.long)
            out[et].edge_index = torch.stack([_positions(known[et[0]], src),
                                              _positions(known[et[2]], dst)])
            if self.blocks:  # which hop drew each edge, in the order the parts were joined
                out[et].edge_hop = torch.cat([torch.full((p[0].numel(),), p[2], dtype=torch.long)
                                              for p in parts] or [torch.zeros(0, dtype=torch.long)])
        return out


def layer_edges(batch: HeteroData, num_layers: int) -> list[dict[EdgeType, torch.Tensor]]:
    """Per layer, input layer first, the edges of a ``blocks`` batch that the layer aggregates:
    layer ``l`` of ``L`` reads the edges drawn at hop ``L - 1 - l``, so the last layer reads the
    seeds' own draws (DGL's block order)."""
    out = []
    for layer in range(num_layers):
        hop = num_layers - 1 - layer
        out.append({et: ei[:, batch[et].edge_hop == hop]
                    for et, ei in batch.edge_index_dict.items()})
    return out


def subgraph_nodes(data: HeteroData, known: dict[str, torch.Tensor], input_type: str,
                   batch_size: int) -> HeteroData:
    """A batch holding, per type, the global ids ``n_id`` of ``known[t]`` and every per-node tensor
    of ``data`` sliced to them; the first ``batch_size`` nodes of ``input_type`` are the seeds."""
    out = HeteroData()
    for t, ids in known.items():
        store = data[t]
        out[t].n_id = ids
        out[t].num_nodes = ids.numel()
        for key, value in store.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and \
                    value.size(0) == store.num_nodes and key != "n_id":
                out[t][key] = value[ids]
    out[input_type].batch_size = batch_size
    return out


def _unique_in_order(x: torch.Tensor) -> torch.Tensor:
    """Unique values in order of first appearance (deterministic batch layouts)."""
    if x.numel() == 0:
        return x
    uniq, inverse = torch.unique(x, return_inverse=True)
    first = torch.full((uniq.numel(),), x.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(x.numel()), reduce="amin")
    return x[torch.sort(first).values]


def _positions(ids: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Index of each ``query`` value within ``ids`` (all present)."""
    order = torch.argsort(ids)
    return order[torch.searchsorted(ids[order], query)]


class SeedLoader:
    """Mini-batches of seed nodes, each expanded by ``sampler.sample(type, seeds, generator)``.

    With ``shuffle`` the seed order is drawn from ``generator`` (the global torch RNG when none is
    given), so restoring the RNG state reproduces an epoch exactly.
    """

    def __init__(self, sampler, input_nodes: tuple[str, torch.Tensor], batch_size: int,
                 shuffle: bool = False, generator: torch.Generator | None = None) -> None:
        self.sampler = sampler
        self.input_type, nodes = input_nodes
        nodes = torch.as_tensor(nodes)
        self.input_ids = nodes.nonzero().view(-1) if nodes.dtype == torch.bool else nodes.long()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return (self.input_ids.numel() + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[HeteroData]:
        ids = self.input_ids
        if self.shuffle:
            ids = ids[torch.randperm(ids.numel(), generator=self.generator)]
        # One sampling generator per epoch, seeded from the (restorable) loader RNG.
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        gen = torch.Generator().manual_seed(seed)
        for start in range(0, ids.numel(), self.batch_size):
            yield self.sampler.sample(self.input_type, ids[start:start + self.batch_size], gen)


class NeighborLoader(SeedLoader):
    """Mini-batches of seed nodes with their sampled neighbourhoods.

    Iterating yields ``HeteroData`` batches (see :class:`NeighborSampler`); seed order and
    sampling as :class:`SeedLoader`.
    """

    def __init__(self, data: HeteroData, num_neighbors, input_nodes: tuple[str, torch.Tensor],
                 batch_size: int = 1024, shuffle: bool = False,
                 generator: torch.Generator | None = None, joint: bool = False,
                 blocked: torch.Tensor | None = None, blocks: bool = False) -> None:
        super().__init__(NeighborSampler(data, num_neighbors, joint, blocked, blocks),
                         input_nodes, batch_size, shuffle, generator)
