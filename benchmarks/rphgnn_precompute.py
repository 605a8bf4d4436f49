"""RpHGNN pre-computation cost on the synthetic generator: time against edge count, and peak memory
at ogbn-mag's full shape.

Every measurement runs in a fresh process, so its peak RSS is its own. The graph is the ``mag``
preset scaled to the requested number of (generated) edges, prepared as RpHGNN's ogbn-mag run does
(reverse of every relation added, featureless types given random features of width 512) and
pre-computed with the ogbn-mag script's settings (K = 5, ``use_input``). "Generated edges" are the
generator's output; preparation symmetrises ``cites`` and adds a reverse of every other relation.
Timed: the pre-computation alone (generation and preparation are reported separately). Writes
``rphgnn_precompute.{json,md,png}`` under ``--out`` (default ``benchmarks/results``, the committed
results)::

    python benchmarks/rphgnn_precompute.py                       # 1M, 4M, 16M edges + full mag shape
    python benchmarks/rphgnn_precompute.py --edges 1e6 --no-full --out /tmp/rp  # one point, aside
    python benchmarks/rphgnn_precompute.py --report-only         # redraw table and plot from the JSON

A partial run merges into the JSON already under ``--out``: the points it measures replace those
with the same requested edge count, and the points and full-shape record it did not measure are
kept, with the file's other fields (as ``benchmarks/scale.py --only`` keeps the parts it did not
run); the exponent is refitted over the merged points. A run that re-measures everything there
replaces the file.

At the full shape the groups (about 12 GB of float16) are streamed to a directory (``--store``,
default a temporary one) and opened as memory maps, which is what ``model.precompute_dir`` does in
training.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MAG_EDGES = 21_111_007
SETTINGS = {"num_hops": 5, "use_input": True, "random_dim": 512, "sparsity": 3.0}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(edges: float, store: str | None, threads: int) -> dict:
    """Generate, prepare and pre-compute once in this process."""
    import torch

    from hgnn.data.synthetic import read_synthetic
    from hgnn.nn.rphgnn import rphgnn_precompute
    from hgnn.train.config import TRAIN_DEFAULTS
    from hgnn.train.graph import prepare_graph

    torch.set_num_threads(threads)
    scale = min(edges / MAG_EDGES, 1.0)
    t0 = time.perf_counter()
    data, task = read_synthetic(seed=0, preset="mag", scale=scale)
    generated = sum(int(data[et].edge_index.size(1)) for et in data.edge_types)
    t1 = time.perf_counter()
    graph = {**TRAIN_DEFAULTS["graph"], "add_reverse": "all", "featureless": "random",
             "random_dim": SETTINGS["random_dim"]}
    prepare_graph(data, task, graph, seed=0)
    from hgnn.data.relation_index import relation_index

    relation_index(data)  # the CSC build is part of preparation, not of the pre-computation
    t2 = time.perf_counter()
    rss_before = _rss_mib()
    feats = rphgnn_precompute(data, task.target, SETTINGS["num_hops"], SETTINGS["use_input"],
                              torch.Generator().manual_seed(0), s=SETTINGS["sparsity"],
                              store=store)
    t3 = time.perf_counter()
    out_bytes = sum(v.numel() * v.element_size() for v in feats.values())
    return {
        "requested_edges": int(edges),
        "scale": round(scale, 5),
        "nodes": sum(int(data[t].num_nodes) for t in data.node_types),
        "generated_edges": generated,
        "edges_with_reverses": sum(int(data[et].edge_index.size(1)) for et in data.edge_types),
        "relations": len(data.edge_types),
        "groups": len(feats),
        "output_gib": round(out_bytes / 2**30, 3),
        "store": "disk (float16 .npy, memory-mapped)" if store else "memory (float16)",
        "generate_s": round(t1 - t0, 2),
        "prepare_s": round(t2 - t1, 2),
        "precompute_s": round(t3 - t2, 2),
        "rss_before_precompute_mib": round(rss_before, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
        "threads": threads,
    }


def run_child(edges: float, store: str | None, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--one", str(edges), "--threads", str(threads)]
    if store:
        cmd += ["--store", store]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit_exponent(points: list[dict]) -> float | None:
    """Least-squares slope of log(time) against log(edges with reverses)."""
    if len(points) < 2:
        return None
    xs = [math.log(p["edges_with_reverses"]) for p in points]
    ys = [math.log(p["precompute_s"]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def machine() -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def merge(old: dict, new: dict) -> dict:
    """``new`` over ``old``: scaling points by requested edges, ``full`` only where measured. While
    anything of ``old`` is kept, so are its other fields (notes on its rows) and the exponent is
    refitted over the merged points; a run that re-measures everything replaces ``old``."""
    points = {p["requested_edges"]: p for p in old.get("scaling", [])}
    kept = len(set(points) - {p["requested_edges"] for p in new["scaling"]})
    points.update({p["requested_edges"]: p for p in new["scaling"]})
    scaling = sorted(points.values(), key=lambda p: p["requested_edges"])
    full = new["full"] if new["full"] is not None else old.get("full")
    kept_full = new["full"] is None and full is not None
    if not (kept or kept_full):
        return new
    if old.get("machine") != new["machine"]:
        print(f"note: keeping {kept} scaling point(s){' and the full shape' if kept_full else ''} "
              f"measured on another machine ({old.get('machine')})", file=sys.stderr)
    return {**old, **new, "scaling": scaling, "full": full, "exponent": fit_exponent(scaling)}


def report(result: dict, out: Path) -> None:
    rows = result["scaling"] + ([result["full"]] if result.get("full") else [])
    exp = result.get("exponent")
    lines = [
        "# RpHGNN pre-computation on the synthetic generator",
        "",
        f"Machine: {result['machine']['cores']} cores, {result['machine']['memory_gib']} GiB, torch "
        f"{result['machine']['torch']}, no GPU. Settings (RpHGNN's ogbn-mag script): K = "
        f"{SETTINGS['num_hops']}, use_input, random features of width {SETTINGS['random_dim']} for "
        "featureless types, sparse projections s = 3. `python benchmarks/rphgnn_precompute.py`.",
        "",
        "| generated edges | with reverses | nodes | groups | output GiB | store | precompute s | "
        "generate s | prepare s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['generated_edges']:,} | {r['edges_with_reverses']:,} | {r['nodes']:,} | "
                     f"{r['groups']} | {r['output_gib']} | {r['store']} | {r['precompute_s']} | "
                     f"{r['generate_s']} | {r['prepare_s']} | {r['peak_rss_mib']:,.0f} |")
    if exp is not None:
        lines += ["", f"Fitted growth of pre-computation time with edges (log-log slope over the "
                      f"scaled points): **{exp:.3f}** (1 = linear)."]
    if result.get("generated_edges_note"):
        lines += ["", result["generated_edges_note"]]
    if result.get("full"):
        f = result["full"]
        lines += ["", f"ogbn-mag's full shape: peak RSS **{f['peak_rss_mib'] / 1024:.2f} GiB** "
                      f"(budget 16 GiB) while writing {f['output_gib']} GiB of float16 groups to disk."]
    (out / "rphgnn_precompute.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(5.5, 4))
    xs = [r["edges_with_reverses"] for r in rows]
    ax.loglog(xs, [r["precompute_s"] for r in rows], "o-", label="pre-compute (s)")
    ax2 = ax.twinx()
    ax2.semilogx(xs, [r["peak_rss_mib"] / 1024 for r in rows], "s--", color="tab:red",
                 label="peak RSS (GiB)")
    ax.set_xlabel("edges (with reverses)")
    ax.set_ylabel("seconds")
    ax2.set_ylabel("GiB", color="tab:red")
    title = "RpHGNN pre-compute, K=5"
    if exp is not None:
        title += f" (slope {exp:.2f})"
    ax.set_title(title)
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88), fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "rphgnn_precompute.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=float, nargs="+", default=[1e6, 4e6, 16e6])
    parser.add_argument("--no-full", action="store_true", help="skip ogbn-mag's full shape")
    parser.add_argument("--store", help="directory for the full-shape groups (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", default=str(RESULTS), metavar="DIR",
                        help="folder for rphgnn_precompute.{json,md,png}; a run merges into the "
                             "JSON there (default: %(default)s, the committed results)")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.store, args.threads)))
        return
    out = Path(args.out)
    path = out / "rphgnn_precompute.json"
    if args.report_only:
        report(json.loads(path.read_text()), out)
        return
    scaling = []
    for e in args.edges:
        scaling.append(run_child(e, None, args.threads))
        print(json.dumps(scaling[-1]), flush=True)
    full = None
    if not args.no_full:
        store = args.store or tempfile.mkdtemp(prefix="rphgnn-mag-")
        try:
            full = run_child(MAG_EDGES, store, args.threads)
            print(json.dumps(full), flush=True)
        finally:
            if not args.store:
                shutil.rmtree(store, ignore_errors=True)
    result = {"machine": machine(), "settings": SETTINGS, "scaling": scaling, "full": full,
              "exponent": fit_exponent(scaling)}
    if path.is_file():  # keep what this run did not measure
        result = merge(json.loads(path.read_text()), result)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    report(result, out)


if __name__ == "__main__":
    main()
