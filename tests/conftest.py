"""Shared fixtures: a private cache folder per test session, the real-data root, and the MLP
baseline on the small synthetic graph that models are compared with."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from hgnn.data.registry import data_root


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or write the user's cache."""
    old = os.environ.get("HGNN_CACHE")
    os.environ["HGNN_CACHE"] = str(tmp_path_factory.mktemp("hgnn-cache"))
    yield
    if old is None:
        os.environ.pop("HGNN_CACHE", None)
    else:
        os.environ["HGNN_CACHE"] = old


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real-data root ($HGNN_DATA or ../shared/data); tests using it skip when it is absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data root {root} not found (set HGNN_DATA)")
    return root


def require(root: Path, rel: str) -> Path:
    """Path of a dataset below the root, skipping the test when it is absent."""
    path = root / rel
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture
def one_thread():
    """Small tensors on a shared 2-core machine: one thread avoids OpenMP barrier stalls."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


SMALL_SYNTHETIC = {"scale": 0.25}  # 1,500 target nodes: seconds per run


def train_small_synthetic(model: str, out_dir: Path, *overrides: str) -> dict:
    """Train ``model`` on the small synthetic graph, seed 0; returns the run summary."""
    from hgnn.train.experiment import run_experiment

    return run_experiment(model, "synthetic", [0], overrides=list(overrides), out_dir=out_dir,
                          quiet=True, dataset_options=SMALL_SYNTHETIC)


def summary_accuracy(summary: dict) -> float:
    """A run summary's mean test accuracy."""
    return summary["metrics"]["test"]["accuracy"]["mean"]



@pytest.fixture(scope="session")
def mlp_synthetic_accuracy(tmp_path_factory) -> float:
    """Test accuracy of the MLP baseline on the small synthetic graph (seed 0), trained once."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = train_small_synthetic("mlp", tmp_path_factory.mktemp("mlp"), "train.epochs=60",
                                        "train.lr=0.01")
    finally:
        torch.set_num_threads(old)
    return summary_accuracy(summary)
