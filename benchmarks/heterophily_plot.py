"""Test accuracy against edge homophily, one line per model, from the committed heterophily suites.

Reads ``benchmarks/results/heterophily.json`` (cross-class edges to a uniformly random other class)
and, where present, ``heterophily-budget.json`` (H2G-former with a larger budget, H2GB's mag-year
dropout and label mask rate 0.5, same panel) and ``heterophily-structured.json``
(``mixing=permutation``), all written by ``hgnn bench``, from ``--results`` (default
``benchmarks/results``); writes ``heterophily_vs_h.png`` under ``--out`` (default: the ``--results``
folder)::

    python benchmarks/heterophily_plot.py [--results benchmarks/results] [--out DIR]

Runs nothing: run the suites first (``hgnn bench heterophily``, ``hgnn bench heterophily-budget``,
``hgnn bench heterophily-structured``).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from hgnn.bench.harness import machines

RESULTS = Path(__file__).resolve().parent / "results"
SUITES = {"heterophily": "uniform cross-class edges",
          "heterophily-structured": "structured (permutation) cross-class edges"}
# Suites drawn into another suite's panel, with a suffix on their model names.
EXTRA = {"heterophily-budget": ("heterophily", ", budget 512, dropout 0.5, label mask 0.5")}


def series(table: dict, metric: str) -> dict[str, list[tuple[float, float, float]]]:
    """``{model: [(h, mean %, std %), ...]}`` over the rows that have results."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    for row in table["rows"]:
        match = re.search(r"-h(\d+(?:\.\d+)?)", row["dataset"])
        if "test" not in row or not isinstance(row["test"], dict) or match is None:
            continue
        stats = row["test"][metric]
        out.setdefault(row["model"], []).append(
            (float(match.group(1)), 100 * stats["mean"], 100 * stats["std"]))
    return {m: sorted(pts) for m, pts in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="DIR",
                        help="folder of the suites' tables read (default: %(default)s)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for heterophily_vs_h.png (default: the --results folder)")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = {name: json.loads((args.results / f"{name}.json").read_text())
              for name in SUITES if (args.results / f"{name}.json").is_file()}
    if not tables:
        raise SystemExit(f"no heterophily results under {args.results}; run hgnn bench first")
    plotted = list(tables.values())  # every table drawn, for the machine line
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 4), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        lines = dict(series(table, table["metric"]))
        for extra, (panel, suffix) in EXTRA.items():
            path = args.results / f"{extra}.json"
            if panel == name and path.is_file():
                other = json.loads(path.read_text())
                plotted.append(other)
                lines.update({m + suffix: pts for m, pts in series(other, other["metric"]).items()})
        for model, pts in lines.items():
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                        marker="o", capsize=3, label=model)
        ax.set_title(f"{name}: {SUITES[name]}", fontsize=9)
        ax.set_xlabel("edge homophily h")
        ax.set_ylabel(f"test {table['metric']} (%), mean ± std over seeds")
        ax.legend(fontsize=8)
    # the machines the plotted runs recorded (suites may come from different sessions)
    ran_on = dict.fromkeys(m for t in plotted
                           for m, r in zip(machines(t), t["rows"], strict=True) if "test" in r)
    fig.suptitle(f"synthetic generator; measured on {'; '.join(ran_on)}", fontsize=8)
    fig.tight_layout()
    out = (args.out or args.results) / "heterophily_vs_h.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
