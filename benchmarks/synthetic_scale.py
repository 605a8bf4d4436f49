"""Time the synthetic generator at ogbn-mag's shape and fractions of it.

Each size runs in a fresh process, so its peak RSS is its own. Writes
``synthetic_scale.{json,png}`` under ``--out`` (default ``benchmarks/results``, the committed
results; ``--plot-only`` reads the JSON there)::

    python benchmarks/synthetic_scale.py                 # scales 0.005 .. 1.0 of the mag preset
    python benchmarks/synthetic_scale.py --plot-only     # redraw the plot from the JSON
    python benchmarks/synthetic_scale.py --scales 0.05 --out /tmp/synth  # just one, aside

A run of some scales replaces those points and keeps the others already in the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def measure(preset: str, scale: float, seed: int) -> dict:
    """Generate once in this process; wall seconds and peak RSS (MiB) of the whole process."""
    from hgnn.data.synthetic import read_synthetic

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    data, _ = read_synthetic(seed=seed, preset=preset, scale=scale)
    wall = time.perf_counter() - start
    return {
        "preset": preset,
        "scale": scale,
        "seed": seed,
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mib": round(rss_before, 1),
        "nodes": sum(int(data[t].num_nodes) for t in data.node_types),
        "edges": sum(int(data[et].edge_index.size(1)) for et in data.edge_types),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mag")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.005, 0.05, 0.2, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # child-process mode
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--out", default=str(RESULTS), metavar="DIR",
                        help="folder for synthetic_scale.{json,png} (default: %(default)s, the "
                             "committed results)")
    args = parser.parse_args()
    path = Path(args.out) / "synthetic_scale.json"
    if args.plot_only:
        plot(json.loads(path.read_text()), path.parent)
        return
    if args.one is not None:
        print(json.dumps(measure(args.preset, args.one, args.seed)))
        return
    runs = []
    for scale in args.scales:
        out = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--seed",
                              str(args.seed), "--one", str(scale)],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "processor": platform.processor()}
    runs = merged_runs(path, runs, machine)
    report = {
        "benchmark": "synthetic generator (hgnn.data.synthetic.read_synthetic)",
        "machine": machine,
        "runs": runs,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    report["fitted_exponent"] = fitted_exponent(runs)
    path.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, path.parent)
    print(f"wrote {path}")


def merged_runs(path: Path, runs: list[dict], machine: dict) -> list[dict]:
    """``runs`` over the runs already in ``path`` that this call did not measure (same preset,
    scale and seed are replaced), sorted by scale: a partial run keeps the other points."""
    if not path.is_file():
        return runs
    old = json.loads(path.read_text())
    measured = {(r["preset"], r["scale"], r["seed"]) for r in runs}
    kept = [r for r in old.get("runs", []) if (r["preset"], r["scale"], r["seed"]) not in measured]
    if kept and old.get("machine") != machine:
        print(f"note: {path} keeps {len(kept)} point(s) measured on another machine "
              f"({old.get('machine', {}).get('processor') or 'unrecorded'})", file=sys.stderr)
    return sorted(kept + runs, key=lambda r: r["scale"])


def fitted_exponent(runs: list[dict]) -> float:
    """Slope of log(time) against log(edges): 1.0 is linear growth."""
    import numpy as np

    x = np.log([r["edges"] for r in runs])
    y = np.log([max(r["wall_s"], 1e-3) for r in runs])
    return float(np.polyfit(x, y, 1)[0]) if len(runs) > 1 else float("nan")


def plot(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(report["runs"], key=lambda r: r["edges"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog([r["edges"] for r in runs], [r["wall_s"] for r in runs], "o-", label="generation")
    ax.set_xlabel("edges")
    ax.set_ylabel("wall seconds")
    ax.set_title(f"synthetic generator (fitted exponent {fitted_exponent(runs):.2f})")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "synthetic_scale.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
