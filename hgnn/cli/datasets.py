"""``hgnn datasets list`` and ``hgnn datasets info NAME|PATH [--data KEY=VALUE ...] [--json]
[--schema FILE.png]``."""
from __future__ import annotations

import argparse
import json

from hgnn.data.registry import DATASETS, check_options, data_root, load_dataset
from hgnn.data.summary import check_schema_path, describe, draw_schema, format_summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list datasets and show their statistics")
    dsub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)

    lp = dsub.add_parser("list", help="registered datasets and whether their files are present")
    lp.add_argument("--root", help="data root (default: $HGNN_DATA or ../shared/data)")
    lp.add_argument("--json", action="store_true", help="print JSON")
    lp.set_defaults(func=cmd_list)

    ip = dsub.add_parser("info", help="statistics of one dataset")
    ip.add_argument("name", help="registered name, or a folder / zip in HGB format")
    ip.add_argument("--root", help="data root (default: $HGNN_DATA or ../shared/data)")
    ip.add_argument("--seed", type=int, default=0, help="seed of the train/val holdout (HGB)")
    ip.add_argument("--data", dest="data_options", action="append", default=[],
                    metavar="KEY=VALUE",
                    help="a dataset reader option, as for hgnn train, e.g. --data split=40 for "
                         "heco-freebase (repeatable; values parsed as YAML)")
    ip.add_argument("--json", action="store_true", help="print JSON")
    ip.add_argument("--schema", metavar="FILE.png", help="draw the metagraph to this PNG")
    ip.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    ip.set_defaults(func=cmd_info)


def cmd_list(args: argparse.Namespace) -> int:
    root = data_root(args.root)
    rows = []
    for entry in DATASETS.values():
        found = next((str(root / p) for p in entry.paths if (root / p).exists()), None)
        status = "generated" if not entry.paths else ("present" if found else "missing")
        rows.append({"name": entry.name, "status": status, "path": found,
                     "description": entry.description})
    if args.json:
        print(json.dumps({"root": str(root), "datasets": rows}, indent=2))
        return 0
    print(f"data root: {root}")
    for r in rows:
        print(f"  {r['name']:<15} {r['status']:<10} {r['description']}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from hgnn.cli.train import parse_data_options  # the same KEY=VALUE parsing as hgnn train

    # Checked here as well as in load_dataset, so that a name load_dataset takes itself (seed, root,
    # use_cache) is refused as an unknown option rather than clashing with the argument.
    options = check_options(args.name, parse_data_options(args.data_options))
    if args.schema:  # before the graph loads
        check_schema_path(args.schema)
    data, task = load_dataset(args.name, args.root, seed=args.seed, use_cache=not args.no_cache,
                              **options)
    info = describe(data, task)
    if args.schema:
        info["schema"] = str(draw_schema(data, task, args.schema, title=args.name))
    if args.json:
        print(json.dumps({"name": args.name, **info}, indent=2))
    else:
        print(format_summary(args.name, info))
        if args.schema:
            print(f"  schema: {info['schema']}")
    return 0
