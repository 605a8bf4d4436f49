"""Fast, strict parsing of the delimited text files that graph datasets ship.

Parsing 60M comma-separated values with ``float()`` or ``np.loadtxt`` takes 8-12 s here; bag-of-words
rows are mostly ``0`` or single digits, so tokens are classified on a byte view first and only the
remaining ones go through a float conversion. Errors name the file and the 1-based line.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

from hgnn.errors import DataFormatError

_COMMA, _NL, _ZERO, _DOT = 44, 10, 48, 46


def split_lines(data: bytes, where: str) -> list[bytes]:
    """Lines without their terminators; CRLF accepted, trailing blank lines dropped.

    A blank line inside the file is an error: it usually means a damaged or concatenated file.
    """
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    for i, line in enumerate(lines):
        if not line.strip():
            raise DataFormatError(where, "blank line", i + 1)
    return lines


def plain(value: object, limit: int = 40) -> str:
    """A value as an error message should show it: bytes decoded, numpy scalars as Python numbers
    (``-3.0``, not ``np.float64(-3.0)``), at most ``limit`` characters; an empty or space-padded
    string is quoted so that it stays visible."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    elif isinstance(value, np.generic):
        value = value.item()
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text) if not text.strip() or text != text.strip() else text


def parse_int(token: bytes, where: str, line: int, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise DataFormatError(where, f"{what} is not an integer: {plain(token)}", line) from None


def parse_float_rows(rows: list[bytes], line_numbers: list[int], where: str) -> np.ndarray:
    """Parse equally long comma-separated rows into a float32 ``[len(rows), F]`` array.

    Rejects rows of a different width than the first, empty values, non-numbers and NaN / inf.
    """
    n = len(rows)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    buf = b"\n".join(rows)
    u = np.frombuffer(buf, dtype=np.uint8)
    if u.size % 2 == 1:
        # Fast path for rows of single digits ("0,1,0,...", HGB's bag-of-words): digits at even
        # offsets, separators at odd ones, and every row equally long.
        digits, gaps = u[0::2], u[1::2]
        if ((digits - _ZERO) <= 9).all() and ((gaps == _COMMA) | (gaps == _NL)).all():
            if (gaps == _NL).sum() == n - 1 and (digits.size % n) == 0:
                grid = (digits - _ZERO).reshape(n, -1)
                if (u[2 * grid.shape[1] - 1 :: 2 * grid.shape[1]] == _NL).all():
                    return grid.astype(np.float32)
    seps = np.flatnonzero((u == _COMMA) | (u == _NL))
    newlines = np.flatnonzero(u == _NL)
    # Tokens per row = separators before the row's newline, minus those of previous rows.
    row_end_sep = np.searchsorted(seps, newlines)  # index of each newline among separators
    tokens_per_row = np.diff(np.concatenate(([-1], row_end_sep, [len(seps)])))
    width = int(tokens_per_row[0])
    bad = np.flatnonzero(tokens_per_row != width)
    if bad.size:
        r = int(bad[0])
        raise DataFormatError(where, f"expected {width} feature values (as on line "
                              f"{line_numbers[0]}), got {int(tokens_per_row[r])}", line_numbers[r])
    starts = np.concatenate(([0], seps + 1))
    ends = np.concatenate((seps, [len(u)]))
    lengths = ends - starts
    values = np.zeros(starts.size, dtype=np.float32)
    padded = np.concatenate((u, np.zeros(3, dtype=np.uint8)))
    first = padded[starts]
    single_digit = (lengths == 1) & (first >= _ZERO) & (first <= _ZERO + 9)
    values[single_digit] = first[single_digit] - _ZERO
    zero_point_zero = ((lengths == 3) & (first == _ZERO) & (padded[starts + 1] == _DOT)
                       & (padded[starts + 2] == _ZERO))
    rest = np.flatnonzero(~(single_digit | zero_point_zero))
    if rest.size:
        if (lengths[rest] == 0).any():
            tok = int(rest[lengths[rest] == 0][0])
            raise DataFormatError(where, "empty feature value", line_numbers[tok // width])
        tokens = [buf[s:e] for s, e in zip(starts[rest].tolist(), ends[rest].tolist(), strict=True)]
        try:
            values[rest] = np.array(tokens).astype(np.float64)
        except ValueError:
            for pos, tok in zip(rest.tolist(), tokens, strict=True):
                try:
                    float(tok)
                except ValueError:
                    raise DataFormatError(where, f"feature value is not a number: {plain(tok)}",
                                          line_numbers[pos // width]) from None
            raise
        nonfinite = rest[~np.isfinite(values[rest])]
        if nonfinite.size:
            raise DataFormatError(where, "feature value is NaN or infinite",
                                  line_numbers[int(nonfinite[0]) // width])
    return values.reshape(n, width)


def parse_number_table(data: bytes, where: str, columns: int, sep: str = "\t") -> np.ndarray:
    """Parse a file of ``columns`` numeric fields per line into a float64 ``[lines, columns]`` array.

    ``np.loadtxt``'s C reader does the work; when it fails, a line-by-line scan finds the first bad
    line so the error can name it.
    """
    lines = split_lines(data, where)  # rejects blank lines and gives CRLF-free text
    text = b"\n".join(lines)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = np.loadtxt(io.BytesIO(text), delimiter=sep, dtype=np.float64, ndmin=2)
    except ValueError:
        table = None
    if table is not None and table.shape[1] == columns and np.isfinite(table).all():
        return table
    bsep = sep.encode()
    for i, line in enumerate(lines):
        fields = line.split(bsep)
        if len(fields) != columns:
            raise DataFormatError(where, f"expected {columns} fields separated by {sep!r}, got "
                                  f"{len(fields)}", i + 1)
        for f in fields:
            try:
                if not np.isfinite(float(f)):
                    raise ValueError
            except ValueError:
                raise DataFormatError(where, f"not a finite number: {plain(f)}", i + 1) from None
    raise DataFormatError(where, "could not be parsed as a numeric table")


def as_ids(column: np.ndarray, where: str, what: str) -> np.ndarray:
    """Integral float column -> int64, rejecting fractional or negative ids (line named)."""
    ids = column.astype(np.int64)
    bad = np.flatnonzero((ids != column) | (ids < 0))
    if bad.size:
        raise DataFormatError(where, f"{what} is not a non-negative integer: "
                              f"{plain(column[bad[0]])}", int(bad[0]) + 1)
    return ids
