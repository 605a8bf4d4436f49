"""Scale on one machine and across processes: sampled training and RpHGNN pre-computation on the
synthetic generator at ogbn-mag's shape (``synthetic-mag``) and fractions of it.

Three measurements, each in a fresh process (its peak RSS is its own; two-process points run
under ``torchrun`` and report rank 0's peak and the slowest rank's time):

* ``--series``: sampled RGCN training (``TIMED_BATCHES`` batches timed; a full epoch's time is that
  rate times the epoch's batch count, reported as an estimate) and the RpHGNN pre-computation, at
  10^5 .. 2x10^7 generated edges; fitted log-log growth exponents;
* ``--models``: ``TIMED_BATCHES`` sampled training batches of RGCN, HGT and R-HGNN on the full
  ogbn-mag shape;
* ``--procs``: the same work with 1 and 2 processes (gloo) at one size.

Writes ``scale.{json,md,png}`` under ``--out`` (default ``benchmarks/results``, the committed
results); ``--only`` and ``--report-only`` read back the JSON there::

    python benchmarks/scale.py                    # everything (about an hour on 2 cores)
    python benchmarks/scale.py --only series      # one part; others are kept from the JSON
    python benchmarks/scale.py --only procs --out /tmp/scale  # one part, beside the committed one
    python benchmarks/scale.py --report-only
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MAG_EDGES = 21_111_007
SERIES_EDGES = [1e5, 1e6, 4e6, 2e7]
BATCH = 1024
TIMED_BATCHES = 20  # a full epoch at ogbn-mag's size is ~600 batches: too long for this machine
FANOUT = [10, 10]
MODEL_SETTINGS = {  # per-model overrides for the sampled runs (hidden sizes of the HGB configs)
    "rgcn": {},
    "hgt": {},
    "rhgnn": {"hidden": 16, "heads": 4},
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepared(scale: float, model: str):
    from hgnn.models import get_model_class
    from hgnn.train.config import resolve_config
    from hgnn.train.experiment import load_prepared

    cls = get_model_class(model)
    config = resolve_config(cls.default_config(), model, "synthetic-mag")
    config["model"].update(MODEL_SETTINGS.get(model, {}))
    data, task = load_prepared("synthetic-mag", None, 0, config, {"scale": scale})
    return cls, config, data, task


def child_train(scale: float, model: str, iters: int) -> dict:
    """Time ``iters`` sampled training batches (0 = a full pass) in this process (or rank)."""
    import torch

    from hgnn.train import distributed
    from hgnn.train.regimes import make_regime
    from hgnn.train.trainer import make_optimizer

    ctx = distributed.init_from_env("cpu")
    t0 = time.perf_counter()
    cls, config, data, task = _prepared(scale, model)
    cfg = {**config["train"], "regime": "sampled", "batch_size": BATCH, "num_neighbors": FANOUT,
           "iters_per_epoch": iters, "scheduler": "none"}
    torch.manual_seed(0)
    net = cls.build(data, task, config["model"])
    regime = make_regime("sampled", data, task, cfg, torch.device("cpu"), net)
    trained = net
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(net, find_unused_parameters=True)
    optimizer, _ = make_optimizer(net, cfg)
    load_s = time.perf_counter() - t0
    ctx.barrier()
    t1 = time.perf_counter()
    regime.train_epoch(trained, optimizer, None, 0)
    train_s = time.perf_counter() - t1
    slowest = max(ctx.gather_objects(train_s))
    full_epoch = math.ceil(math.ceil(regime.split_ids["train"].numel() / ctx.world_size)
                           / regime.batch_size)
    out = {"kind": "train", "model": model, "scale": round(scale, 5), "world_size": ctx.world_size,
           "batches": regime.steps_per_epoch(), "epoch_batches": full_epoch,
           "epoch_s_estimate": round(slowest / regime.steps_per_epoch() * full_epoch, 1),
           "batch_size": BATCH, "fanout": FANOUT,
           "train_nodes": int(regime.split_ids["train"].numel()),
           "nodes": sum(int(data[t].num_nodes) for t in data.node_types),
           "edges_with_reverses": sum(int(data[et].edge_index.size(1)) for et in data.edge_types),
           "load_prepare_s": round(load_s, 2), "train_s": round(slowest, 2),
           "s_per_batch": round(slowest / regime.steps_per_epoch(), 4),
           "peak_rss_mib": round(_rss_mib(), 1),
           "threads": torch.get_num_threads()}
    distributed.shutdown()
    return out


def child_precompute(scale: float) -> dict:
    """The RpHGNN pre-computation with the ogbn-mag script's settings, float16 groups on disk."""
    import tempfile

    import torch

    from hgnn.nn.rphgnn import rphgnn_precompute
    from hgnn.train import distributed

    ctx = distributed.init_from_env("cpu")
    _, config, data, task = _prepared(scale, "rphgnn")
    m = config["model"]
    store = ctx.broadcast_object(tempfile.mkdtemp(prefix="hgnn-scale-") if ctx.is_main else None)
    ctx.barrier()
    t0 = time.perf_counter()
    feats = rphgnn_precompute(data, task.target, m["num_hops"], m["use_input"],
                              torch.Generator().manual_seed(0), s=m["sparsity"], store=store)
    took = time.perf_counter() - t0
    slowest = max(ctx.gather_objects(took))
    out = {"kind": "precompute", "scale": round(scale, 5), "world_size": ctx.world_size,
           "nodes": sum(int(data[t].num_nodes) for t in data.node_types),
           "edges_with_reverses": sum(int(data[et].edge_index.size(1)) for et in data.edge_types),
           "output_gib": round(sum(v.numel() * 2 for v in feats.values()) / 2**30, 3),
           "precompute_s": round(slowest, 2), "peak_rss_mib": round(_rss_mib(), 1),
           "threads": torch.get_num_threads()}
    del feats
    ctx.barrier()
    if ctx.is_main:
        import shutil

        shutil.rmtree(store, ignore_errors=True)
    distributed.shutdown()
    return out


def run(args: list[str], nproc: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", __file__, *args]
    else:
        cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[0])  # rank 0's line


def fit(points: list[dict], key: str) -> float | None:
    pts = [(math.log(p["edges_with_reverses"]), math.log(p[key])) for p in points if p[key] > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def machine() -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__,
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def report(res: dict, out: Path) -> None:
    lines = ["# Scale: sampled training and RpHGNN pre-computation on `synthetic-mag`", "",
             f"Machine: {res['machine']['cores']} cores, {res['machine']['memory_gib']} GiB, torch "
             f"{res['machine']['torch']}, CPU only. Sampled training: batch {BATCH}, fan-out "
             f"{FANOUT} per relation; RpHGNN: the ogbn-mag script's settings (K = 5, use_input, "
             "random features of width 512), float16 groups written to disk. "
             "`python benchmarks/scale.py`.", ""]
    series = res.get("series") or []
    if series:
        lines += ["## Growth with graph size (one process)", "",
                  "| edges (with reverses) | nodes | RGCN s / batch | batches per epoch | RGCN epoch s "
                  "(estimate) | RGCN peak MiB | RpHGNN precompute s | precompute peak MiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for p in series:
            t, c = p["train"], p["precompute"]
            lines.append(f"| {t['edges_with_reverses']:,} | {t['nodes']:,} | {t['s_per_batch']} | "
                         f"{t['epoch_batches']} | {t['epoch_s_estimate']} | "
                         f"{t['peak_rss_mib']:,.0f} | {c['precompute_s']} | "
                         f"{c['peak_rss_mib']:,.0f} |")
        lines += ["", f"Training: {TIMED_BATCHES} batches timed per size; the epoch time is that rate "
                      "times the epoch's batch count (an estimate, not a measured full pass).",
                  "", f"Fitted log-log exponents (time against edges): training epoch "
                      f"**{res['exponents']['train']:.3f}**, pre-computation "
                      f"**{res['exponents']['precompute']:.3f}** (1 = linear).", ""]
    if res.get("models"):
        lines += [f"## {TIMED_BATCHES} sampled batches on the full ogbn-mag shape (one process)", "",
                  f"| model | s per batch | {TIMED_BATCHES} batches s | load + prepare s | peak MiB |",
                  "|---|---|---|---|---|"]
        for p in res["models"]:
            lines.append(f"| {p['model']} | {p['s_per_batch']} | {p['train_s']} | "
                         f"{p['load_prepare_s']} | {p['peak_rss_mib']:,.0f} |")
        lines.append("")
    if res.get("procs"):
        lines += ["## 1 against 2 processes (gloo, same work, same machine)", "",
                  "| work | processes | threads each | seconds | peak MiB (rank 0) | speed-up |",
                  "|---|---|---|---|---|---|"]
        base = {}
        for p in res["procs"]:
            key = p["kind"]
            secs = p["train_s"] if key == "train" else p["precompute_s"]
            base.setdefault(key, secs)
            what = (f"RGCN, {p['batches']} batches" if key == "train"
                    else "RpHGNN precompute")
            lines.append(f"| {what}, {p['edges_with_reverses']:,} edges | {p['world_size']} | "
                         f"{p['threads']} | {secs} | {p['peak_rss_mib']:,.0f} | "
                         f"{base[key] / secs:.2f} |")
        lines += ["", "Both cores are used in both rows (one process with 2 threads, or 2 "
                      "processes with 1 thread each), so the ratio shows the cost of splitting the "
                      "work over processes, not extra hardware."]
    if res.get("note"):
        lines += ["", f"Note: {res['note']}"]
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if series:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        xs = [p["train"]["edges_with_reverses"] for p in series]
        ax.loglog(xs, [p["train"]["epoch_s_estimate"] for p in series], "o-",
                  label="RGCN sampled epoch (estimate)")
        ax.loglog(xs, [p["precompute"]["precompute_s"] for p in series], "s-",
                  label="RpHGNN precompute")
        ax.set_xlabel("edges (with reverses)")
        ax.set_ylabel("seconds")
        ax.set_title("synthetic-mag, one process")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scale.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["series", "models", "procs"])
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", default=str(RESULTS), metavar="DIR",
                        help="folder for scale.{json,md,png}; --only keeps the other parts of the "
                             "JSON there (default: %(default)s, the committed results)")
    parser.add_argument("--child", choices=["train", "precompute"], help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="rgcn", help=argparse.SUPPRESS)
    parser.add_argument("--iters", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out = child_train(args.scale, args.model, args.iters) if args.child == "train" \
            else child_precompute(args.scale)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps(out), flush=True)
        return
    out_dir = Path(args.out)
    path = out_dir / "scale.json"
    res = json.loads(path.read_text()) if path.is_file() else {}
    if not args.report_only:
        res["machine"] = machine()
        threads = os.cpu_count() or 1
        if args.only in (None, "series"):
            res["series"] = []
            for e in SERIES_EDGES:
                s = min(e / MAG_EDGES, 1.0)
                point = {"train": run(["--child", "train", "--scale", str(s), "--iters",
                                       str(TIMED_BATCHES)], 1, threads),
                         "precompute": run(["--child", "precompute", "--scale", str(s)], 1,
                                           threads)}
                res["series"].append(point)
                print(json.dumps(point), flush=True)
            res["exponents"] = {"train": fit([p["train"] for p in res["series"]], "epoch_s_estimate"),
                                "precompute": fit([p["precompute"] for p in res["series"]],
                                                  "precompute_s")}
        if args.only in (None, "models"):
            res["models"] = []
            for m in ("rgcn", "hgt", "rhgnn"):
                res["models"].append(run(["--child", "train", "--model", m, "--iters",
                                          str(TIMED_BATCHES)], 1, threads))
                print(json.dumps(res["models"][-1]), flush=True)
        if args.only in (None, "procs"):
            res["procs"] = []
            s = str(4e6 / MAG_EDGES)
            for kind in ("train", "precompute"):
                for nproc in (1, 2):
                    extra = ["--iters", str(TIMED_BATCHES)] if kind == "train" else []
                    res["procs"].append(run(["--child", kind, "--scale", s, *extra], nproc,
                                            max(threads // nproc, 1)))
                    print(json.dumps(res["procs"][-1]), flush=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1))
    report(res, out_dir)


if __name__ == "__main__":
    main()
