"""``hgnn train``, ``hgnn evaluate`` and ``hgnn predict``."""
from __future__ import annotations

import argparse
import json
import os

from hgnn.models import DEFAULT_MODEL, MODELS


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (default: the default model on 'synthetic')")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(sorted(MODELS))}")
    p.add_argument("--dataset", default="synthetic", help="registered name or HGB-format path")
    p.add_argument("--root", help="data root (default: $HGNN_DATA or ../shared/data)")
    p.add_argument("--config", help="YAML file overriding the model's config for this dataset")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    p.add_argument("--epochs", type=int, help="shorthand for --set train.epochs=N")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", help="run folder (default: runs/<model>-<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.005 (repeatable)")
    p.add_argument("--data", dest="data_options", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="a dataset reader option, e.g. --data homophily=0.2 --data "
                        "mixing=permutation for synthetic (repeatable; values parsed as YAML)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--nproc", type=int, default=1,
                   help="train with N processes on this machine (runs torchrun --standalone "
                        "--nproc_per_node=N; for several machines call torchrun yourself)")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a checkpoint on validation and test")
    e.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by train")
    e.add_argument("--dataset", help="evaluate on this dataset instead of the training one")
    e.add_argument("--root", help="data root")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true")
    e.add_argument("--svm", action="store_true",
                   help="also run MAGNN's protocol: a linear SVM on the test nodes' embeddings, "
                        "trained on 80/60/40/20%% of them, 10 random splits each")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="write test predictions (HGB submission format for HGB)")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--out", required=True, help="output file")
    r.add_argument("--dataset", help="predict on this dataset instead of the training one")
    r.add_argument("--root", help="data root")
    r.add_argument("--device", default="cpu")
    r.add_argument("--explain", action="store_true",
                   help="also print each node type's average relation weights (rhgnn, latte; gtn: "
                        "each relation selection's weights) and "
                        "write them to OUT.explain.json")
    r.set_defaults(func=cmd_predict)


def _exec_torchrun(nproc: int) -> None:
    """Replace this process by ``torchrun`` running the same command without ``--nproc``."""
    import os
    import sys

    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "hgnn", *argv]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)


def cmd_train(args: argparse.Namespace) -> int:
    from hgnn.errors import HgnnError
    from hgnn.train import distributed

    if args.nproc < 1:
        raise HgnnError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1:
        if distributed.launched_by_torchrun():
            raise HgnnError("--nproc given inside a torchrun job; use torchrun's --nproc_per_node")
        _exec_torchrun(args.nproc)
    from hgnn.train.experiment import run_experiment

    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    try:
        summary = run_experiment(args.model, args.dataset, args.seeds, root=args.root,
                                 config_file=args.config, overrides=overrides, out_dir=args.out,
                                 resume=args.resume, device=args.device, quiet=args.quiet,
                                 dataset_options=parse_data_options(args.data_options))
    except BaseException:
        distributed.shutdown(sync=False)
        raise
    distributed.shutdown()
    if not distributed.launched_by_torchrun() or int(os.environ.get("RANK", "0")) == 0:
        _print_summary(args, summary)
    return 0


def parse_data_options(items: list[str]) -> dict:
    """``["homophily=0.2", "mixing=permutation"]`` -> ``{"homophily": 0.2, "mixing": "permutation"}``
    (values read as YAML scalars, so numbers and booleans keep their types)."""
    from hgnn.errors import HgnnError
    from hgnn.train.config import parse_key_value

    options = {}
    for item in items:
        pair = parse_key_value(item)
        if pair is None:
            raise HgnnError(f"--data expects KEY=VALUE, got {item!r}")
        options[pair[0]] = pair[1]
    return options


def _print_summary(args: argparse.Namespace, summary: dict) -> None:
    from hgnn.train.experiment import format_table

    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary))
        print(f"run record: {summary['out_dir']}/summary.json")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from hgnn.train.inference import evaluate_restored, load_restored

    restored = load_restored(args.checkpoint, args.dataset, args.root, args.device)
    if args.svm:  # refused before the model's own evaluation (a precompute) runs
        from hgnn.train.svm_protocol import check_svm, svm_evaluate

        check_svm(restored)
    result = evaluate_restored(restored)
    if args.svm:  # on the same graph and weights, in the full-batch regime
        result["svm"] = svm_evaluate(restored)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for split in ("val", "test"):
            m = result[split]
            print(f"{split:<5} " + "  ".join(f"{k} {100 * v:.2f}" for k, v in m.items()))
        for row in result.get("svm", []):
            (mi, mi_sd), (ma, ma_sd) = row["micro_f1"], row["macro_f1"]
            print(f"svm {100 * row['train_fraction']:.0f}% of test  micro_f1 {100 * mi:.2f} ± "
                  f"{100 * mi_sd:.2f}  macro_f1 {100 * ma:.2f} ± {100 * ma_sd:.2f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hgnn.train.inference import (
        explain_checkpoint,
        format_explanation,
        load_restored,
        output_path,
        predict_checkpoint,
        write_atomically,
    )

    output_path(args.out)
    restored = load_restored(args.checkpoint, args.dataset, args.root, args.device)
    weights = None
    if args.explain:  # before writing anything, so an unsupported model leaves no file behind
        weights = explain_checkpoint(args.checkpoint, restored=restored)
    out = predict_checkpoint(args.checkpoint, args.out, restored=restored)
    print(out)
    if weights is not None:
        path = Path(str(out) + ".explain.json")
        write_atomically(path, json.dumps(weights, indent=1))
        print(format_explanation(weights))
        print(f"relation weights: {path}")
    return 0
