"""Kernel benchmark: fused typed aggregation and fused attention against the unfused paths.

    python benchmarks/kernels/bench.py [--quick] [--device cpu|cuda] [--out benchmarks/results]

In one run, on random typed graphs (uniform endpoints; 1 or 8 relations over 4 node types; 10 edges
per destination on average), for each size and feature width it times:

* typed sum aggregation (sum over each destination's in-edges of all relations):
  ``hgnn`` (``hgnn.ops.typed.typed_aggregate``, compiled CPU backend) against PyG's path (per
  relation ``x[src]`` gather + ``torch_geometric.utils.scatter``, summed over relations, as
  ``HeteroConv(aggr="sum")`` does), ``torch.sparse`` CSR matmul per relation (adjacency built once,
  outside the timing) and ``torch_scatter`` when importable;
* fused attention (``hgnn.ops.segment_attention``, H = 4 heads) against the PyG-style unfused path
  (gather q/k, per-edge scores, ``torch_geometric.utils.softmax``, weighted gather of v, scatter),
  with peak memory measured in a fresh subprocess for each.

Implementations are timed in interleaved rounds (median of 7 rounds up to 2M edges, 3 above).
On ``--device cuda`` (the fused path is then the Triton backend) each call is timed with CUDA
events after a synchronised warm-up, peak memory is the allocator's peak
(``torch.cuda.max_memory_allocated``) above what the inputs hold, the copy bandwidth is a
device-to-device copy, the sizes go up to 5 * 10^7 edges, and results go to ``kernels_cuda.*``.
Reported: median time, edges/s, effective GB/s under the no-reuse byte model
``B = sum_r [8 (E_r + D_r + 1) + 4 F (E_r + D_r)]`` (every edge reads its source row), and the
stream-copy bandwidth measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEVICE = torch.device("cpu")  # set by --device


def make_graph(num_edges: int, relations: int, feat: int, seed: int = 0):
    from torch_geometric.data import HeteroData

    g = torch.Generator().manual_seed(seed)
    types = ["t0"] if relations == 1 else ["t0", "t1", "t2", "t3"]
    n = max(num_edges // 10 // len(types), 1)
    data = HeteroData()
    for t in types:
        data[t].x = torch.randn(n, feat, generator=g)
    for r in range(relations):
        src, dst = types[r % len(types)], types[(r + 1 + r // len(types)) % len(types)]
        e = num_edges // relations
        data[src, f"r{r}", dst].edge_index = torch.stack([
            torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)])
    return data.to(DEVICE)


def _clock(fn) -> float:
    """Seconds one call of ``fn`` takes: CUDA events around it on a GPU (after draining the queue,
    so earlier work is not counted), the host clock on CPU."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_interleaved(fns: dict, repeat: int) -> dict[str, float]:
    """Median time of each function, run in interleaved rounds so that machine-wide drifts (a
    shared VM's neighbours, frequency changes) hit every implementation alike."""
    for fn in fns.values():
        fn()  # warm-up (and, for hgnn, first-use compilation)
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(_clock(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


def timeit(fn, repeat: int) -> float:
    fn()  # warm-up (and, for hgnn, first-use compilation)
    return statistics.median(_clock(fn) for _ in range(repeat))


def stream_bandwidth_gbs(nbytes: int = 1 << 29) -> float:
    nbytes = nbytes * 4 if DEVICE.type == "cuda" else nbytes  # 2 GiB: far beyond the GPU's L2
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=DEVICE).fill_(1.0)
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), 20 if DEVICE.type == "cuda" else 5)
    return 2 * nbytes / t / 1e9


def no_reuse_bytes(data, feat: int) -> int:
    total = 0
    for (_, _, d), ei in data.edge_index_dict.items():
        e, n_d = ei.size(1), data[d].num_nodes
        total += 8 * (e + n_d + 1) + 4 * feat * (e + n_d)
    return total


def aggregation_paths(data):
    from torch_geometric.utils import scatter

    from hgnn.data.relation_index import RelationIndex
    from hgnn.ops.typed import typed_aggregate

    index = RelationIndex.from_data(data)
    x = data.x_dict
    typed_aggregate(x, index, "sum", per_relation=False)  # builds and caches the segments
    csr = {et: torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1), device=ei.device),
                                       (data[et[2]].num_nodes, data[et[0]].num_nodes)
                                       ).coalesce().to_sparse_csr()
           for et, ei in data.edge_index_dict.items()}

    def pyg():
        out = {}
        for (s, _, d), ei in data.edge_index_dict.items():
            y = scatter(x[s][ei[0]], ei[1], 0, dim_size=data[d].num_nodes, reduce="sum")
            out[d] = out[d] + y if d in out else y
        return out

    def sparse():
        out = {}
        for (s, _, d), a in csr.items():
            y = a @ x[s]
            out[d] = out[d] + y if d in out else y
        return out

    paths = {"hgnn": lambda: typed_aggregate(x, index, "sum", per_relation=False),
             "pyg_gather_scatter": pyg, "torch_sparse_csr": sparse}
    try:
        import torch_scatter

        def ts():
            out = {}
            for (s, _, d), ei in data.edge_index_dict.items():
                y = torch_scatter.scatter(x[s][ei[0]], ei[1], 0, dim_size=data[d].num_nodes)
                out[d] = out[d] + y if d in out else y
            return out

        paths["torch_scatter"] = ts
    except ImportError:
        pass
    return paths


def attention_inputs(num_edges: int, heads: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = num_edges // 10
    src = torch.randint(0, n, (num_edges,), generator=g)
    dst = torch.sort(torch.randint(0, n, (num_edges,), generator=g)).values
    q = torch.randn(n, heads, dim, generator=g)
    k = torch.randn(n, heads, dim, generator=g)
    v = torch.randn(n, heads, dim, generator=g)
    return src, dst, q, k, v, n


def attention_paths(num_edges: int, heads: int, dim: int, backward: bool = False):
    """The fused and unfused attention calls; with ``backward``, each call also runs the backward
    pass (gradients of q, k and v)."""
    from torch_geometric.utils import scatter, softmax

    from hgnn.ops import Segments, segment_attention

    src, dst, q, k, v, n = attention_inputs(num_edges, heads, dim)
    ptr = torch.zeros(n + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=n), 0)
    src, dst, q, k, v = (t.to(DEVICE) for t in (src, dst, q, k, v))
    seg = Segments(ptr, src, n).to(DEVICE)
    seg.transpose()  # built once, as a model's cached segments are
    scale = dim ** -0.5

    def unfused():
        scores = (q[dst] * k[src]).sum(-1) * scale
        alpha = softmax(scores, dst, num_nodes=n)
        return scatter(v[src] * alpha.unsqueeze(-1), dst, 0, dim_size=n, reduce="sum")

    def fused():
        return segment_attention(q, k, v, seg, scale)

    if not backward:
        return {"hgnn_fused": fused, "pyg_unfused": unfused}
    for t in (q, k, v):
        t.requires_grad_()
    grad = torch.randn(n, heads, dim, device=DEVICE)

    def with_backward(fn):
        return lambda: torch.autograd.backward(fn(), grad)

    return {"hgnn_fused": with_backward(fused), "pyg_unfused": with_backward(unfused)}


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_during(fn) -> float:
    """Peak resident memory above the starting level while ``fn`` runs (MiB).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``), so allocations made before the
    call (imports, inputs) do not hide the op's own peak.
    """
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    start = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - start) / 1024


def peak_memory_child(kind: str, num_edges: int, heads: int, dim: int,
                      backward: bool = False) -> float:
    """:func:`peak_during` of one call in a fresh process, so the runs do not share allocator
    caches. On a GPU: the allocator's peak during one call above what was allocated before it."""
    if DEVICE.type == "cuda":
        f = attention_paths(num_edges, heads, dim, backward)[kind]
        f()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        f()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench;"
            f"f = bench.attention_paths({num_edges}, {heads}, {dim})[{kind!r}]; f();"
            "print(bench.peak_during(f))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def machine(device: torch.device | None = None) -> dict:
    """The host, and the GPU when ``device`` (default: the benchmark's ``--device``) is CUDA."""
    device = DEVICE if device is None else device
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "platform": platform.platform(), "device": device.type}
    if device.type == "cuda":
        import triton

        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    sms=props.multi_processor_count, triton=triton.__version__,
                    cuda=torch.version.cuda)
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    ap.add_argument("--out", default=str(HERE.parent / "results"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    gpu = DEVICE.type == "cuda"
    if gpu:
        sizes = [10**5, 10**6] if args.quick else [10**5, 10**6, 10**7, 5 * 10**7]
    else:
        sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 2 * 10**6, 10**7]
    feats = [16, 64] if args.quick else [16, 64, 256]
    message_limit = (24 if gpu else 6) * 2**30  # the unfused path's E x F messages
    bandwidth = stream_bandwidth_gbs()
    print(f"stream copy bandwidth: {bandwidth:.1f} GB/s", flush=True)
    rows = []
    for rel in (1, 8):
        for e in sizes:
            for f in feats:
                if e * f * 4 > message_limit:
                    continue
                data = make_graph(e, rel, f)
                nbytes = no_reuse_bytes(data, f)
                repeat = 7 if e <= 2 * 10**6 or gpu else 3
                for name, t in time_interleaved(aggregation_paths(data), repeat).items():
                    rows.append({"op": "typed_sum", "impl": name, "edges": e, "relations": rel,
                                 "feat": f, "time_s": t, "edges_per_s": e / t,
                                 "effective_gbs": nbytes / t / 1e9})
                    print(json.dumps(rows[-1]), flush=True)
                del data
    att = []
    if gpu:
        att_sizes = [10**5, 10**6] if args.quick else [10**5, 10**6, 10**7, 2 * 10**7]
    else:
        att_sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 2 * 10**6]
    for backward in (False, True):
        for e in att_sizes:
            for name, t in time_interleaved(attention_paths(e, 4, 16, backward), 5).items():
                row = {"op": "attention", "impl": name, "edges": e, "heads": 4, "head_dim": 16,
                       "backward": backward, "time_s": t, "edges_per_s": e / t}
                if e == att_sizes[-1] and (gpu or not backward):
                    row["peak_mib"] = peak_memory_child(name, e, 4, 16, backward)
                att.append(row)
                print(json.dumps(row), flush=True)
    result = {"machine": machine(), "stream_copy_gbs": bandwidth,
              "byte_model": "no-reuse: sum_r 8(E_r + D_r + 1) + 4F(E_r + D_r) bytes",
              "aggregation": rows, "attention": att}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "kernels" + ("_cuda" if gpu else "") + ("_quick" if args.quick else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    from report import write_report

    write_report(result, out / f"{name}.md", out / f"{name}.png")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
