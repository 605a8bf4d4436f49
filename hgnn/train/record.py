"""What a run record says about the software and machine it ran on."""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def versions() -> dict:
    import torch_geometric

    import hgnn

    return {"hgnn": hgnn.__version__, "torch": torch.__version__,
            "torch_geometric": torch_geometric.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "git_commit": git_commit()}


PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: Path = PACKAGE_ROOT) -> str | None:
    """HEAD of the checkout at ``root``, suffixed ``-dirty`` when its code (``hgnn/``) differs
    from that commit: a record must not name a commit whose code it did not run. Changes
    elsewhere (results, docs) do not count. ``None`` unless ``root`` is a checkout's top: an
    installed package inside some other repository (a venv in a project) has no commit of ours."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
        if not head:
            return None
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "hgnn"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return f"{head}-dirty" if changed else head


def hardware() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def describe_hardware(hw: dict) -> str:
    """One line for a ``hardware()`` record: CPU, cores, torch threads (when recorded), GPU."""
    threads = f", torch threads {hw['torch_threads']}" if hw.get("torch_threads") else ""
    return f"{hw['cpu']}, {hw['cpu_count']} cores{threads}, GPU: {hw.get('gpu') or 'none'}"


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def peak_gpu_memory_mb() -> float | None:
    """Peak CUDA memory allocated by torch (MiB), ``None`` without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20
