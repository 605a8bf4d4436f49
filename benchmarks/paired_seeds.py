"""Paired per-seed comparisons of committed runs: is a gap between two models more than seed noise?

Runs of one suite share their seeds, and a seed fixes the split (HGB's 80/20 holdout) and the
initialisation, so model A's seed s and model B's seed s form a pair. For each pair of run folders
(``benchmarks/results/runs/<model>-<dataset>``) this prints the mean of the per-seed test
differences, their sample std, each seed's difference and a two-sided paired t-test's p-value.
With five seeds a p-value is a rough guide, not a verdict.

    python benchmarks/paired_seeds.py                 # the comparisons the issues ask about
    python benchmarks/paired_seeds.py --out DIR       # write paired_seeds.md there instead
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from scipy import stats

RUNS = Path(__file__).resolve().parent / "results" / "runs"

# (model A run, model B run, metric): A - B on the test split
COMPARISONS = [
    ("rhgnn-hgb-dblp", "rgcn-hgb-dblp", "micro_f1"),
    ("rhgnn-hgb-acm", "rgcn-hgb-acm", "micro_f1"),
    ("rhgnn-hgb-imdb", "rgcn-hgb-imdb", "micro_f1"),
    ("rhgnn-hgb-dblp", "hgt-hgb-dblp", "micro_f1"),
    ("rhgnn-hgb-acm", "hgt-hgb-acm", "micro_f1"),
    ("rhgnn-hgb-imdb", "hgt-hgb-imdb", "micro_f1"),
    ("latte-hgb-dblp", "rgcn-hgb-dblp", "micro_f1"),
    ("latte-hgb-acm", "rgcn-hgb-acm", "micro_f1"),
    ("latte-hgb-imdb", "rgcn-hgb-imdb", "micro_f1"),
    ("h2gformer-hgb-dblp", "hgt-hgb-dblp", "micro_f1"),
    ("h2gformer-hgb-acm", "hgt-hgb-acm", "micro_f1"),
    ("h2gformer-hgb-imdb", "hgt-hgb-imdb", "micro_f1"),
    ("latte-gtn-acm", "gtn-gtn-acm", "macro_f1"),
    ("latte-gtn-dblp", "gtn-gtn-dblp", "macro_f1"),
    ("latte-gtn-imdb", "gtn-gtn-imdb", "macro_f1"),
    ("rhgnn-magnn-imdb", "rgcn-magnn-imdb", "micro_f1"),
    ("h2gformer-synthetic-h0.1-b512", "hgt-synthetic-h0.1", "accuracy"),
    ("h2gformer-synthetic-h0.3-b512", "hgt-synthetic-h0.3", "accuracy"),
]


def per_seed(run: str, metric: str) -> dict[int, float]:
    """Test ``metric`` (in %) per seed of a committed run folder."""
    out = {}
    for path in sorted((RUNS / run).glob("seed_*/result.json")):
        result = json.loads(path.read_text())
        out[int(result["seed"])] = 100 * result["test"][metric]
    return out


def compare(a: str, b: str, metric: str) -> dict | None:
    """The paired comparison of runs ``a`` and ``b`` over their common seeds (None if < 2)."""
    x, y = per_seed(a, metric), per_seed(b, metric)
    seeds = sorted(set(x) & set(y))
    if len(seeds) < 2:
        return None
    diffs = [x[s] - y[s] for s in seeds]
    p = stats.ttest_rel([x[s] for s in seeds], [y[s] for s in seeds]).pvalue
    return {"a": a, "b": b, "metric": metric, "seeds": seeds, "mean": statistics.fmean(diffs),
            "std": statistics.stdev(diffs), "diffs": diffs, "p": float(p)}


def markdown(rows: list[dict]) -> str:
    lines = ["# Paired per-seed test differences between committed runs", "",
             "`python benchmarks/paired_seeds.py`. A - B in points (%), per seed and their mean and "
             "sample std over the runs' common seeds; p: two-sided paired t-test. Same seed = same "
             "split and initialisation seed. With five seeds, p is a rough guide.", "",
             "| A | B | metric | mean A - B | std | per seed | p |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        each = " ".join(f"{d:+.2f}" for d in r["diffs"])
        lines.append(f"| {r['a']} | {r['b']} | {r['metric']} | {r['mean']:+.2f} | {r['std']:.2f} "
                     f"| {each} | {r['p']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RUNS.parent), help="folder for paired_seeds.md")
    args = parser.parse_args()
    rows = [r for a, b, m in COMPARISONS if (r := compare(a, b, m)) is not None]
    text = markdown(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paired_seeds.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
