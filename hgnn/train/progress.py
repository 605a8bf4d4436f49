"""Epoch progress: a live bar on a terminal, plain lines in a log file or pipe.

tqdm redraws its bar with carriage returns; written to a file (``hgnn train > log 2>&1``, CI,
``nohup``) that becomes one ever-growing line per run. Off a terminal this prints a whole line
instead, about every tenth of the run and at the last epoch, so logs stay readable.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm.auto import tqdm


class EpochProgress:
    """Report finished epochs of one training run.

    Args:
        desc: what is trained, e.g. ``"rgcn/hgb-dblp seed 0"``.
        total: number of epochs in the run.
        initial: epochs already done (a resumed run).
        disable: report nothing.
        stream: where to write (default ``sys.stderr``); a bar only if it is a terminal.
    """

    def __init__(self, desc: str, total: int, initial: int = 0, disable: bool = False,
                 stream: TextIO | None = None) -> None:
        self.desc, self.total, self.done = desc, total, initial
        self.stream = stream if stream is not None else sys.stderr
        self.disable = disable
        isatty = getattr(self.stream, "isatty", None)
        self.bar = None
        if not disable and callable(isatty) and isatty():
            self.bar = tqdm(total=total, initial=initial, leave=False, desc=desc, unit="epoch",
                            file=self.stream)
        self.every = max(1, total // 10)
        self.started = time.perf_counter()
        self.first = initial

    def update(self, **postfix: str) -> None:
        """Count one finished epoch; ``postfix`` holds its loss and validation scores."""
        self.done += 1
        if self.disable:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(**postfix)
            return
        if self.done % self.every == 0 or self.done == self.total or self.done == self.first + 1:
            elapsed = time.perf_counter() - self.started
            scores = " ".join(f"{k}={v}" for k, v in postfix.items())
            print(f"{self.desc}: epoch {self.done}/{self.total} {scores} ({elapsed:.1f} s)",
                  file=self.stream, flush=True)

    def close(self, stopped_early: bool = False) -> None:
        """End the report; off a terminal, say where early stopping ended the run."""
        if self.bar is not None:
            self.bar.close()
        elif not self.disable and stopped_early:
            print(f"{self.desc}: stopped early after epoch {self.done}/{self.total}",
                  file=self.stream, flush=True)
