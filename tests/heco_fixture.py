"""A HeCo Freebase folder in the release's layout, small: all 3,492 movies labelled (the release's
count), only movies 0..3 linked, one 20-per-class split."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_heco(root: Path, md: str = "0\t0\n1\t1\n2\t1\n3\t0\n", labels: int = 3492) -> Path:
    root.mkdir(parents=True)
    np.save(root / "labels.npy", np.arange(labels, dtype=np.int64) % 3)
    (root / "ma.txt").write_text("0\t0\n1\t1\n2\t0\n3\t2\n")
    (root / "md.txt").write_text(md)
    (root / "mw.txt").write_text("0\t0\n1\t0\n2\t0\n3\t0\n")
    for part, ids in (("train", [0, 1]), ("val", [2]), ("test", [3])):
        np.save(root / f"{part}_20.npy", np.array(ids, dtype=np.int64))
    return root
