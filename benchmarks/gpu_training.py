"""Training speed of every model on a GPU against the same machine's CPU, in one run.

    python benchmarks/gpu_training.py [--epochs 4] [--scale 5] [--devices cuda cpu]
                                      [--out benchmarks/results]

Each model trains one seed on the embedded ``synthetic`` graph with its own default config
(full-batch, sampled or precomputed, as the model's first regime), on each device in turn. The
run record keeps every epoch's training and evaluation time (``history``); the table reports the
median over epochs after the first (the first pays Triton's compilation and allocator warm-up),
the one-off precompute time (RpHGNN, MLP), and the peak GPU memory. Nothing here checks accuracy:
``tests/test_cuda.py`` checks that GPU and CPU give the same logits.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = ["rgcn", "hgt", "rhgnn", "latte", "h2gformer", "rphgnn", "mlp"]


def measure(model: str, device: str, epochs: int, scale: float) -> dict:
    from hgnn.models import get_model_class
    from hgnn.train.experiment import run_experiment

    with tempfile.TemporaryDirectory() as tmp:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        summary = run_experiment(model, "synthetic", [0], device=device, quiet=True,
                                 overrides=[f"train.epochs={epochs}", "train.patience=0"],
                                 out_dir=tmp, dataset_options={"scale": scale})
        result = json.loads((Path(tmp) / "seed_0" / "result.json").read_text())
    steady = result["history"][1:] or result["history"]
    row = {"model": model, "device": device, "epochs": len(result["history"]),
           "regime": result["config"]["train"]["regime"] or get_model_class(model).regimes[0],
           "first_epoch_s": result["history"][0]["train_s"],
           "train_epoch_s": statistics.median(h["train_s"] for h in steady),
           "eval_epoch_s": statistics.median(h["eval_s"] for h in steady),
           "precompute_s": summary["timings"]["precompute_s"],
           "peak_memory_mb": summary["peak_memory_mb"]}
    if device == "cuda":
        row["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def machine() -> dict:
    sys.path.insert(0, str(HERE / "kernels"))
    import bench  # the kernel benchmark's machine description

    return bench.machine(torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def write_report(result: dict, md_path: Path) -> None:
    rows, m = result["rows"], result["machine"]
    by = {(r["model"], r["device"]): r for r in rows}
    gpu = f"{m['gpu']}, CUDA {m['cuda']}, Triton {m['triton']}" if "gpu" in m else "no GPU"
    lines = ["# Training speed: GPU against the same machine's CPU (measured here)", "",
             f"Machine: {gpu}; host {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
             f"({m['torch_threads']} threads). Graph: `synthetic` at scale {result['scale']} "
             f"({result['graph']}). One seed, {result['epochs']} epochs, each model's default "
             "config; times are medians over the epochs after the first.", "",
             "| model | regime | GPU train s/epoch | CPU train s/epoch | speed-up | GPU eval s/epoch | "
             "CPU eval s/epoch | GPU first epoch s | precompute s (GPU / CPU) | peak GPU MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model in result["models"]:
        g, c = by.get((model, "cuda")), by.get((model, "cpu"))
        if g is None or c is None:
            continue
        lines.append(
            f"| {model} | {g['regime']} | {g['train_epoch_s']:.4f} | {c['train_epoch_s']:.4f} | "
            f"{c['train_epoch_s'] / g['train_epoch_s']:.1f}x | {g['eval_epoch_s']:.4f} | "
            f"{c['eval_epoch_s']:.4f} | {g['first_epoch_s']:.2f} | "
            f"{g['precompute_s']:.2f} / {c['precompute_s']:.2f} | {g['peak_gpu_memory_mb']:.0f} |")
    lines += ["", f"Produced by `python benchmarks/gpu_training.py` at commit {result.get('git_commit')} "
              "(JSON beside this file)."]
    md_path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--scale", type=float, default=5.0)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--commit", help="the commit measured, where the checkout has no .git (a copy "
                                     "sent to a GPU machine)")
    args = ap.parse_args()
    from hgnn.data.registry import load_dataset

    data = load_dataset("synthetic", scale=args.scale)[0]
    graph = f"{sum(data[t].num_nodes for t in data.node_types):,} nodes, " \
            f"{sum(data[e].num_edges for e in data.edge_types):,} edges, " \
            f"{len(data.edge_types)} relations"
    from hgnn.train.record import git_commit

    result = {"machine": machine(), "git_commit": args.commit or git_commit(), "scale": args.scale,
              "graph": graph, "epochs": args.epochs, "models": args.models, "rows": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        for device in args.devices:
            result["rows"].append(measure(model, device, args.epochs, args.scale))
            print(json.dumps(result["rows"][-1]), flush=True)
            # written after every run: a run cut short keeps what it measured
            (out / "gpu_training.json").write_text(json.dumps(result, indent=2))
            write_report(result, out / "gpu_training.md")


if __name__ == "__main__":
    main()
