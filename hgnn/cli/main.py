"""``hgnn`` entry point: subcommand dispatch and the one place user errors become exit status 2."""
from __future__ import annotations

import argparse
import sys

from hgnn import __version__
from hgnn.errors import HgnnError


def build_parser() -> argparse.ArgumentParser:
    from hgnn.cli import bench, datasets, train

    parser = argparse.ArgumentParser(prog="hgnn", description="Heterogeneous graph neural networks.")
    parser.add_argument("--version", action="version", version=f"hgnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    train.add_parsers(sub)
    datasets.add_parser(sub)
    bench.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except HgnnError as exc:
        print(f"hgnn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hgnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
