"""Checkpoints: written atomically (temporary file, then rename), read back with validation."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from hgnn.errors import HgnnError

FORMAT = "hgnn-checkpoint"
VERSION = 1


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` to ``path`` so that a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise HgnnError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HgnnError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HgnnError(f"{path}: not an hgnn checkpoint")
    if payload.get("version") != VERSION:
        raise HgnnError(f"{path}: checkpoint format version {payload.get('version')} is not "
                        f"supported (expected {VERSION})")
    return payload
