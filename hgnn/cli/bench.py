"""``hgnn bench SUITE``."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from hgnn.bench.harness import DEFAULT_RESULTS, known_suites

    p = sub.add_parser("bench", help="run a benchmark suite (resumable) and tabulate it")
    p.add_argument("suite", help=f"{', '.join(known_suites())}, or a suite YAML path")
    p.add_argument("--results", default=str(DEFAULT_RESULTS),
                   help="where runs and tables go, relative to the current folder (default: "
                        "benchmarks/results, the committed results when run from the repository)")
    p.add_argument("--root", help="data root (default: $HGNN_DATA or ../shared/data)")
    p.add_argument("--table-only", action="store_true",
                   help="aggregate what exists, run nothing (training suites; a script suite's "
                        "tables are written by its script)")
    p.add_argument("--verbose", action="store_true", help="show progress bars")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from hgnn.bench.harness import aggregate, load_suite, run_dir, run_suite, write_outputs
    from hgnn.errors import HgnnError

    suite = load_suite(args.suite)
    results = Path(args.results)
    if args.table_only and suite.kind == "script":
        raise HgnnError(f"--table-only: suite '{suite.name}' is a script ({suite.script}) that "
                        "measures and writes its own tables; nothing to aggregate")
    if args.table_only:
        if not any(run_dir(results, m, ds).is_dir() for m in suite.models for ds in suite.datasets):
            raise HgnnError(f"--table-only: no run folder of suite '{suite.name}' under "
                            f"{results}/runs (run it first, or pass --results DIR)")
        table = aggregate(suite, results)
        write_outputs(suite, table, results)
    else:
        run_suite(suite, results, args.root, quiet=not args.verbose)
    if suite.kind == "train":
        print((results / f"{suite.name}.md").read_text())
    return 0
