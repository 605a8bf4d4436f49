"""Exceptions that the CLI turns into a one-line message and exit status 2."""
from __future__ import annotations

from pathlib import Path


class HgnnError(Exception):
    """Base class for user-facing errors (bad input, unknown names, bad configs)."""


class DataFormatError(HgnnError):
    """A data file is missing, malformed or inconsistent.

    The message always names the file, and the 1-based line when there is one, so a user can open it
    at the right place: ``node.dat (in DBLP.zip), line 12: expected 4 tab-separated fields, got 2``.
    """

    def __init__(self, file: str | Path, message: str, line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.reason = message
        where = self.file if line is None else f"{self.file}, line {line}"
        super().__init__(f"{where}: {message}")


class UnknownNameError(HgnnError):
    """An unknown dataset, model or option name."""
