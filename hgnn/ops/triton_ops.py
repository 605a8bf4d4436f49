"""Triton GPU backend (placeholder until the Triton kernels land): reports unavailable."""
from __future__ import annotations


def available() -> bool:
    return False
