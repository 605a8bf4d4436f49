"""Readers for the H2GB benchmark (Lin et al., "When Heterophily Meets Heterogeneity", KDD'25 D&B).

H2GB (``junhongmit/H2GB``) builds nine graphs from files that keep their publishers' layouts. This
module holds what the H2GB readers share (streaming members of a folder or zip, pandas' missing-value
spellings, the seeded random splits) and the ``mag-year`` reader; the other datasets have a module
each: :mod:`~hgnn.data.formats.h2gb_oag`, :mod:`~hgnn.data.formats.h2gb_rcdd`,
:mod:`~hgnn.data.formats.h2gb_ieee`, :mod:`~hgnn.data.formats.h2gb_pokec`,
:mod:`~hgnn.data.formats.h2gb_pdns`.

``mag-year`` (``H2GB/datasets/mag_dataset.py``, name ``mag-year``) is ogbn-mag with the venue labels
replaced by five classes of publication year, cut at the 20/40/60/80 % quantiles of ``node_year``
(``even_quantile_labels`` in ``H2GB/datasets/utils.py``), and a random 50/25/25 split of all papers.
It reads the same raw OGB layout as :func:`hgnn.data.formats.ogb_mag.read_ogbn_mag`, which does the
parsing; H2GB keeps it below ``<root>/mag/ogbn_mag``.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.ogb_mag import read_ogbn_mag
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

#: Cells that pandas.read_csv reads as missing by default (its ``na_values``); H2GB's pandas code sees
#: these as NaN, so the readers do too.
NA_VALUES = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, UnicodeDecodeError)
_BLOCK = 1 << 26  # bytes of text handed to one numpy parse


# ---------------------------------------------------------------------------------------------
# mag-year
# ---------------------------------------------------------------------------------------------

MAG_YEAR_CLASSES = 5


def read_h2gb_mag_year(path: str | Path, split_seed: int = 0,
                       **options) -> tuple[HeteroData, TaskSpec]:
    """Read H2GB's ``mag-year``: ogbn-mag papers classified into 5 publication-year quantiles.

    Args:
        path: the ogbn-mag folder or ``mag.zip`` in OGB's raw layout (see
            :mod:`hgnn.data.formats.ogb_mag`).
        split_seed: seed of the random 50/25/25 train/validation/test split of the papers.

    The graph is exactly what :func:`~hgnn.data.formats.ogb_mag.read_ogbn_mag` returns; only ``y``
    and the masks change. ``data["paper"].venue`` keeps the original venue label.
    """
    if options:
        raise UnknownNameError(f"mag-year takes only 'split_seed' (got {sorted(options)})")
    data, mag_task = read_ogbn_mag(path)
    paper = data["paper"]
    labels, bounds = even_quantile_labels(paper.year.numpy().astype(np.float64), MAG_YEAR_CLASSES)
    paper.venue = paper.y
    paper.y = torch.from_numpy(labels)
    train, val, test = split_50_25_25(np.flatnonzero(labels >= 0), split_seed)
    set_masks(paper, paper.num_nodes, train, val, test)
    names = [f"year < {bounds[0]:g}"]
    names += [f"{lo:g} <= year < {hi:g}" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    names.append(f"year >= {bounds[-1]:g}")
    task = TaskSpec(target="paper", num_classes=MAG_YEAR_CLASSES, metrics=("accuracy",),
                    split="random", split_seed=int(split_seed), class_names=tuple(names),
                    featureless=mag_task.featureless)
    return data, task


def even_quantile_labels(values: np.ndarray, n_classes: int) -> tuple[np.ndarray, list[float]]:
    """Classes by quantile, as H2GB's ``even_quantile_labels``: class ``k`` holds the values in
    ``[q_k, q_{k+1})`` where ``q_0 = -inf``, ``q_k`` is the ``k / n_classes`` quantile (numpy's
    linear interpolation, NaN ignored) and the last class is open above. NaN gets ``-1``.

    Returns the int64 labels and the ``n_classes - 1`` inner cut points.
    """
    labels = np.full(values.shape[0], -1, dtype=np.int64)
    bounds = [float(np.nanquantile(values, (k + 1) / n_classes)) for k in range(n_classes - 1)]
    lower = -np.inf
    for k, upper in enumerate(bounds):
        labels[(values >= lower) & (values < upper)] = k
        lower = upper
    labels[values >= lower] = n_classes - 1
    return labels, bounds


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

def split_50_25_25(idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H2GB's random split: half to train, then half of the rest to validation, the rest to test.

    Sizes follow scikit-learn's ``train_test_split(train_size=0.5)`` applied twice (train gets
    ``floor(n / 2)``, validation ``floor(rest / 2)``); the draw itself is a seeded permutation.
    """
    perm = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(int(seed))).numpy()]
    n_train = len(idx) // 2
    n_val = (len(idx) - n_train) // 2
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def set_masks(store, n: int, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> None:
    """``train_mask`` / ``val_mask`` / ``test_mask`` over ``n`` nodes from index arrays."""
    for name, idx in (("train_mask", train), ("val_mask", val), ("test_mask", test)):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.as_tensor(np.asarray(idx, dtype=np.int64))] = True
        store[name] = mask


# ---------------------------------------------------------------------------------------------
# Reading members (shared by the H2GB readers)
# ---------------------------------------------------------------------------------------------

def find_member(src: Source, name: str, prefixes: tuple[str, ...] = ("", "raw/")) -> str:
    """The first of ``prefix + name`` that exists; a missing-file error names the first candidate.

    H2GB's folders keep the publisher's files in ``raw/``; the readers also take the folder of the
    files themselves (or a zip of them).
    """
    for prefix in prefixes:
        if src.exists(prefix + name):
            return prefix + name
    # The first candidate sits where the reader was pointed (the registry resolves ``RCDD/raw``), so
    # it is the path to act on; the fallbacks are only listed, a ``raw/raw/`` path would mislead.
    others = ", ".join(p or "./" for p in prefixes[1:])
    raise DataFormatError(src.where(prefixes[0] + name),
                          "missing file" + (f" (also looked for it in {others})" if others else ""))


def members_matching(src: Source, suffix_pattern, prefixes: tuple[str, ...] = ("", "raw/")
                     ) -> list[tuple[str, object]]:
    """Members directly under one of ``prefixes`` whose base name matches the compiled regex;
    ``(member, match)`` pairs, from the first prefix that has any."""
    if src.is_zip:
        names = list(src._members)
    else:
        names = [str(p.relative_to(src.path).as_posix()) for p in src.path.rglob("*") if p.is_file()]
    for prefix in prefixes:
        found = []
        for name in names:
            if not name.startswith(prefix) or "/" in name[len(prefix):]:
                continue
            match = suffix_pattern.fullmatch(name[len(prefix):])
            if match:
                found.append((name, match))
        if found:
            return found
    return []


@contextlib.contextmanager
def open_member(src: Source, member: str) -> Iterator[IO[bytes]]:
    """A member as a binary stream, gunzipped when its name ends in ``.gz``; never read whole."""
    if not src.exists(member):
        raise DataFormatError(src.where(member), "missing file")
    with contextlib.ExitStack() as stack:
        try:
            if src.is_zip:
                zf = stack.enter_context(zipfile.ZipFile(src.path))
                raw = stack.enter_context(zf.open(src._members[member]))
            else:
                raw = stack.enter_context(open(src.path / member, "rb"))
        except _READ_ERRORS as exc:
            raise DataFormatError(src.where(member), f"cannot be read ({exc})") from None
        if member.endswith(".gz"):
            raw = stack.enter_context(gzip.GzipFile(fileobj=raw))
        yield raw


def iter_lines(src: Source, member: str) -> Iterator[tuple[int, str]]:
    """``(line number, text without the line break)`` for each line of a UTF-8 member."""
    where = src.where(member)
    with open_member(src, member) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        line_no = 0
        try:
            for line_no, line in enumerate(text, start=1):  # noqa: B007
                yield line_no, line.rstrip("\r\n")
        except _READ_ERRORS as exc:
            raise DataFormatError(where, f"cannot be read as UTF-8 text ({exc})", line_no + 1
                                  ) from None
        if line_no == 0:
            raise DataFormatError(where, "file is empty")


def iter_csv(src: Source, member: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` per record of a CSV member (quotes as Python's csv module reads
    them, which is also how pandas reads them). Blank records are skipped, as pandas skips them."""
    where = src.where(member)
    with open_member(src, member) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        seen = False
        try:
            for fields in reader:
                seen = True
                if fields and any(f != "" for f in fields):
                    yield reader.line_num, fields
        except csv.Error as exc:
            raise DataFormatError(where, f"malformed CSV ({exc})", reader.line_num) from None
        except _READ_ERRORS as exc:
            raise DataFormatError(where, f"cannot be read as UTF-8 text ({exc})",
                                  reader.line_num + 1) from None
        if not seen:
            raise DataFormatError(where, "file is empty")


def csv_with_header(src: Source, member: str, required: tuple[str, ...]
                    ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header of a CSV member (checked for ``required`` columns) and an iterator over the rest,
    each row checked to have as many fields as the header."""
    rows = iter_csv(src, member)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataFormatError(src.where(member), "file is empty") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(src.where(member), f"no column {missing[0]!r} in the header", 1)

    def body() -> Iterator[tuple[int, list[str]]]:
        for line_no, fields in rows:
            if len(fields) != len(header):
                raise DataFormatError(src.where(member), f"expected {len(header)} fields as in the "
                                      f"header, got {len(fields)}", line_no)
            yield line_no, fields

    return header, body()


def iter_blocks(src: Source, member: str) -> Iterator[tuple[int, bytes]]:
    """The member's text in blocks of whole lines ``(number of the block's first line, bytes)``."""
    where = src.where(member)
    with open_member(src, member) as raw:
        carry, first_line = b"", 1
        try:
            while chunk := raw.read(_BLOCK):
                chunk = carry + chunk
                cut = chunk.rfind(b"\n") + 1
                carry = chunk[cut:]
                if cut:
                    yield first_line, chunk[:cut]
                    first_line += chunk.count(b"\n", 0, cut)
        except _READ_ERRORS as exc:
            raise DataFormatError(where, f"cannot be read ({exc})") from None
        if carry.strip():
            yield first_line, carry + b"\n"


def parse_float(text: str, where: str, line: int, what: str) -> float:
    """A number as pandas would read it: missing spellings give NaN; anything else unparsable, and
    an ``inf``, is a :class:`DataFormatError`. ``True``/``False`` read as 1/0."""
    text = text.strip()
    if text in NA_VALUES:
        return float("nan")
    if text in ("True", "TRUE", "true"):
        return 1.0
    if text in ("False", "FALSE", "false"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise DataFormatError(where, f"{what}: {text!r} is not a number", line) from None
    if not np.isfinite(value):
        raise DataFormatError(where, f"{what}: {text!r} is not finite", line)
    return value


def parse_int(text: str, where: str, line: int, what: str) -> int:
    """A non-missing integer (``12`` or ``12.0``); anything else is a :class:`DataFormatError`."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value != int(value):
        raise DataFormatError(where, f"{what}: {text!r} is not an integer", line)
    return int(value)


def check_ids(ids: list[int], lines: list[int], lo: int, where: str, what: str) -> np.ndarray:
    """The row order that sorts ``ids``, which must be exactly ``lo .. lo + len(ids) - 1`` (H2GB
    uses a row's rank as its node id); a repeated or out-of-range id is named with its line."""
    arr = np.asarray(ids, dtype=np.int64)
    hi = lo + len(arr)
    bad = np.flatnonzero((arr < lo) | (arr >= hi))
    if bad.size:
        raise DataFormatError(where, f"{what} {arr[bad[0]]} is out of range [{lo}, {hi}) (ids must "
                              f"run {lo}..{hi - 1}, one row each)", lines[int(bad[0])])
    order = np.argsort(arr, kind="stable")
    dup = np.flatnonzero(arr[order][1:] == arr[order][:-1])
    if dup.size:
        raise DataFormatError(where, f"{what} {arr[order][dup[0]]} appears twice",
                              lines[int(order[dup[0] + 1])])
    return order


def zscore(x: np.ndarray) -> np.ndarray:
    """H2GB's ``normalize``: ``(x - mean) / (population std + 1e-9)`` per column, as float32."""
    x = x.astype(np.float64, copy=False)
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    std = np.sqrt(((x - mean) ** 2).mean(axis=0)) if len(x) else np.zeros(x.shape[1])
    return ((x - mean) / (std + 1e-9)).astype(np.float32)


def categories(values: list) -> list:
    """Distinct values in the order pandas gives categories (``get_dummies`` columns): sorted, or,
    when numbers and strings mix (a string column whose gaps were filled with 0), the numbers sorted
    and then the strings sorted."""
    seen = list(dict.fromkeys(values))
    try:
        return sorted(seen)
    except TypeError:
        numbers = sorted(v for v in seen if not isinstance(v, str))
        return numbers + sorted(v for v in seen if isinstance(v, str))


def one_hot(values: list, cats: list) -> np.ndarray:
    """``[len(values), len(cats)]`` float32 one-hot of each value's position in ``cats``."""
    pos = {c: i for i, c in enumerate(cats)}
    out = np.zeros((len(values), len(cats)), dtype=np.float32)
    out[np.arange(len(values)), [pos[v] for v in values]] = 1.0
    return out
