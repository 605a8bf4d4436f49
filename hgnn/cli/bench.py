"""``hgnn bench SUITE``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite (resumable) and tabulate it")
    p.add_argument("suite", help="hgb, heterophily, kernels, scaling, or a suite YAML path")
    p.add_argument("--results", default="benchmarks/results", help="where runs and tables go")
    p.add_argument("--root", help="data root (default: $HGNN_DATA or ../shared/data)")
    p.add_argument("--table-only", action="store_true", help="aggregate what exists, run nothing")
    p.add_argument("--verbose", action="store_true", help="show progress bars")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from hgnn.bench.harness import aggregate, load_suite, run_suite, write_outputs

    suite = load_suite(args.suite)
    results = Path(args.results)
    if args.table_only and suite.kind == "train":
        table = aggregate(suite, results)
        write_outputs(suite, table, results)
    else:
        run_suite(suite, results, args.root, quiet=not args.verbose)
    if suite.kind == "train":
        print((results / f"{suite.name}.md").read_text())
    return 0
