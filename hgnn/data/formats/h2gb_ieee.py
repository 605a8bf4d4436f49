"""Reader for IEEE-CIS-G, H2GB's transaction graph from the IEEE-CIS Fraud Detection data
(``H2GB/datasets/ieee_cis_dataset.py``, split in ``H2GB/loader/master_loader.py: preformat_IEEE_CIS``).

Files: Kaggle's ``train_transaction.csv`` and ``train_identity.csv`` (CSV with a header), which H2GB
keeps in ``<root>/IEEE-CIS/raw/`` (its ``IEEE-CIS.zip`` unpacks there). H2GB also reads Kaggle's
``test_*.csv``, but those have no ``isFraud`` and every one of their rows is dropped, so they are not
read here.

The graph, as H2GB builds it:

* ``transaction`` nodes: the transactions that have an identity row (inner join on
  ``TransactionID``), labelled ``isFraud`` (1 = fraud);
* one node type per column of :data:`NODE_COLUMNS` (``card1`` ... ``R_emaildomain``), a node per
  distinct non-missing value (numbered in order of first appearance), and an edge
  ``(transaction, to, <column>)`` from each transaction to its value;
* transaction features: the one-hot columns of :data:`CATEGORICAL_COLUMNS` (missing values filled
  with 0 first, category order as ``pandas.get_dummies``), then every other column except
  ``TransactionID``, ``isFraud`` and ``TransactionDT``, missing as 0, ``TransactionAmt`` as
  ``log10(|amount| + 1e-9)``, each z-scored (population std + 1e-9);
* split by time: transactions ordered by ``TransactionDT`` (stable), the first 80 % train, the next
  10 % validation, the rest test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.h2gb import (
    NA_VALUES,
    categories,
    csv_with_header,
    find_member,
    one_hot,
    parse_float,
    parse_int,
    set_masks,
    zscore,
)
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

TARGET = "transaction"
KEY, LABEL, TIME, AMOUNT = "TransactionID", "isFraud", "TransactionDT", "TransactionAmt"
NODE_COLUMNS = ("card1", "card2", "card3", "card4", "card5", "card6", "ProductCD", "addr1", "addr2",
                "P_emaildomain", "R_emaildomain")
CATEGORICAL_COLUMNS = (tuple(f"M{i}" for i in range(1, 10)) + ("DeviceType", "DeviceInfo")
                       + tuple(f"id_{i}" for i in range(12, 39)))
EXCLUDED = (KEY, LABEL, TIME)
TRAIN_FRACTION, VAL_FRACTION = 0.8, 0.1
_CHUNK = 8192  # rows converted to floats at once


def read_h2gb_ieee_cis(path: str | Path, **options) -> tuple[HeteroData, TaskSpec]:
    """Read IEEE-CIS-G: transactions, fraud or not, linked to card / address / e-mail nodes."""
    if options:
        raise UnknownNameError(f"IEEE-CIS takes no options (got {sorted(options)})")
    src = Source(path)
    tx_member = find_member(src, "train_transaction.csv")
    id_member = find_member(src, "train_identity.csv")
    tx_where, id_where = src.where(tx_member), src.where(id_member)

    id_header, id_rows = csv_with_header(src, id_member, (KEY,))
    id_key = id_header.index(KEY)
    identity: dict[int, tuple[int, list[str]]] = {}
    for line_no, fields in id_rows:
        tid = parse_int(fields[id_key], id_where, line_no, KEY)
        if tid in identity:
            raise DataFormatError(id_where, f"{KEY} {tid} appears twice", line_no)
        identity[tid] = (line_no, fields)

    tx_header, tx_rows = csv_with_header(src, tx_member, (KEY, LABEL, TIME, AMOUNT))
    both = (set(tx_header) & set(id_header)) - {KEY}
    if both:
        raise DataFormatError(id_where, f"column {sorted(both)[0]!r} is also in {tx_member}", 1)
    # Merged columns, as pandas.merge orders them: the transaction's, then the identity's.
    columns = [("tx", i, c) for i, c in enumerate(tx_header)]
    columns += [("id", i, c) for i, c in enumerate(id_header) if c != KEY]
    by_name = {c: (side, i) for side, i, c in columns}
    for name in NODE_COLUMNS + CATEGORICAL_COLUMNS:
        if name not in by_name:
            raise DataFormatError(tx_where, f"no column {name!r} here nor in {id_member}", 1)
    numeric = [(side, i, c) for side, i, c in columns
               if c not in NODE_COLUMNS + CATEGORICAL_COLUMNS + EXCLUDED]
    strings = [by_name[c] for c in NODE_COLUMNS + CATEGORICAL_COLUMNS]
    label_col, time_col = tx_header.index(LABEL), tx_header.index(TIME)
    key_col = tx_header.index(KEY)

    times, labels, lines, id_lines, text_rows, tids = [], [], [], [], [], []
    num_chunks, pending = [], []
    tx_lines: dict[int, int] = {}  # TransactionID -> line; Kaggle's key, so never repeated
    for line_no, fields in tx_rows:
        tid = parse_int(fields[key_col], tx_where, line_no, KEY)
        if tid in tx_lines:  # pandas.merge would make two transaction nodes of one id
            raise DataFormatError(tx_where, f"{KEY} {tid} appears twice (first on line "
                                  f"{tx_lines[tid]})", line_no)
        tx_lines[tid] = line_no
        if tid not in identity:
            continue
        id_line, id_fields = identity[tid]
        label = parse_float(fields[label_col], tx_where, line_no, LABEL)
        if np.isnan(label):
            continue  # H2GB drops transactions without isFraud (Kaggle's test rows)
        if label not in (0.0, 1.0):
            raise DataFormatError(tx_where, f"{LABEL} {fields[label_col]!r} is not 0 or 1", line_no)
        rows = {"tx": fields, "id": id_fields}
        times.append(parse_float(fields[time_col], tx_where, line_no, TIME))
        labels.append(int(label))
        tids.append(tid)
        lines.append(line_no)
        id_lines.append(id_line)
        text_rows.append([_cell(rows[side][i]) for side, i in strings])
        pending.append([rows[side][i] for side, i, _ in numeric])
        if len(pending) == _CHUNK:
            num_chunks.append(_to_float(pending, lines[-len(pending):], id_lines[-len(pending):],
                                        numeric, tx_where, id_where))
            pending = []
    if pending:
        num_chunks.append(_to_float(pending, lines[-len(pending):], id_lines[-len(pending):],
                                    numeric, tx_where, id_where))
    n = len(labels)
    if n == 0:
        raise DataFormatError(tx_where, f"no labelled transaction has a row in {id_member}")
    times_arr = np.asarray(times)
    if np.isnan(times_arr).any():
        bad = int(np.flatnonzero(np.isnan(times_arr))[0])
        raise DataFormatError(tx_where, f"{TIME} is missing", lines[bad])
    order = np.argsort(times_arr, kind="stable")

    nums = np.concatenate(num_chunks)[order] if numeric else np.zeros((n, 0))
    nums = np.nan_to_num(nums, nan=0.0)
    amount = [c for _, _, c in numeric].index(AMOUNT)
    nums[:, amount] = np.log10(np.abs(nums[:, amount]) + 1e-9)

    text_cols = list(zip(*[text_rows[i] for i in order], strict=True))
    n_nodes = len(NODE_COLUMNS)
    blocks = []
    for values in text_cols[n_nodes:]:
        values = _typed(values, fill=0)
        blocks.append(one_hot(values, categories(values)))
    x = np.concatenate(blocks + [zscore(nums)], axis=1).astype(np.float32)

    data = HeteroData()
    data[TARGET].x = torch.from_numpy(x)
    data[TARGET].num_nodes = n
    data[TARGET].y = torch.as_tensor(labels, dtype=torch.long)[torch.from_numpy(order)]
    data[TARGET].time = torch.from_numpy(times_arr[order])
    data[TARGET].source_id = torch.as_tensor(tids, dtype=torch.long)[torch.from_numpy(order)]
    for name, values in zip(NODE_COLUMNS, text_cols[:n_nodes], strict=True):
        values = _typed(values, fill=None)
        entity: dict = {}
        rows, ids = [], []
        for row, value in enumerate(values):
            if value is None:
                continue
            rows.append(row)
            ids.append(entity.setdefault(value, len(entity)))
        data[TARGET, "to", name].edge_index = torch.tensor([rows, ids], dtype=torch.long
                                                           ).view(2, -1)
        data[name].num_nodes = len(entity)
    n_train = int(TRAIN_FRACTION * n)
    n_val = int(VAL_FRACTION * n)
    idx = np.arange(n)
    set_masks(data[TARGET], n, idx[:n_train], idx[n_train:n_train + n_val], idx[n_train + n_val:])
    task = TaskSpec(target=TARGET, num_classes=2, metrics=("f1_positive", "accuracy"),
                    split="fixed", class_names=("legit", "fraud"), featureless=NODE_COLUMNS)
    return data, task


def _cell(text: str) -> str | None:
    text = text.strip()
    return None if text in NA_VALUES else text


def _typed(values, fill):
    """A column's cells as pandas types them: floats when every present cell is a number, else
    strings; missing cells become ``fill``."""
    present = [v for v in values if v is not None]
    try:
        numbers = {v: float(v) for v in set(present)}
    except ValueError:
        return [fill if v is None else v for v in values]
    return [fill if v is None else numbers[v] for v in values]


def _to_float(rows: list[list[str]], lines: list[int], id_lines: list[int], numeric, tx_where: str,
              id_where: str) -> np.ndarray:
    """Numeric cells to float64 (missing -> NaN), naming the first cell that is not a number."""
    arr = np.array(rows, dtype=object)
    if arr.size:
        stripped = np.char.strip(arr.astype(str))
        arr = np.where(np.isin(stripped, list(NA_VALUES)), "nan", stripped)
    try:
        out = arr.astype(np.float64).reshape(len(rows), len(numeric))
    except ValueError:
        out = None
    if out is not None and np.isfinite(out[~np.isnan(out)]).all():
        return out
    for r, row in enumerate(rows):
        for (side, _, name), cell in zip(numeric, row, strict=True):
            if side == "tx":
                parse_float(cell, tx_where, lines[r], name)
            else:
                parse_float(cell, id_where, id_lines[r], name)
    raise DataFormatError(tx_where, "numeric columns could not be parsed", lines[0])
