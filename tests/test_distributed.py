"""torch.distributed: the column-sharded RpHGNN pre-computation equals the single-process one bit for
bit; a 2-process gloo training run matches one process; a killed rank ends the job."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch_geometric.data import HeteroData

from hgnn.data.transforms import add_reverse
from hgnn.nn.rphgnn import rphgnn_precompute
from hgnn.nn.rphgnn_store import ColumnShards

REPO = Path(__file__).resolve().parents[1]


def wide_graph() -> HeteroData:
    """Widths that split into several 64-column chunks (a: 3 chunks, b: 2) and one type narrower
    than a chunk (c), so with 2 ranks one rank owns no column of c."""
    gen = torch.Generator().manual_seed(3)
    data = HeteroData()
    for t, n, d in (("a", 40, 150), ("b", 30, 70), ("c", 12, 20)):
        data[t].x = torch.randn(n, d, generator=gen)
    for (s, r, d), e in ((("a", "x", "b"), 120), (("b", "y", "c"), 50), (("a", "cites", "a"), 90)):
        src = torch.randint(0, data[s].num_nodes, (e,), generator=gen)
        dst = torch.randint(0, data[d].num_nodes, (e,), generator=gen)
        data[s, r, d].edge_index = torch.stack([src, dst])
    return add_reverse(data)


def _precompute(store):
    return rphgnn_precompute(wide_graph(), "a", 3, True, torch.Generator().manual_seed(5),
                             store=store)


def _sharded_worker(rank: int, world: int, init: str, out: str, store: str | None) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        feats = _precompute(store)
        if rank == 0:
            torch.save({k: v.clone() for k, v in feats.items()}, out)
    finally:
        dist.destroy_process_group()


def test_column_shards_cover_each_type_once():
    widths = {"a": 150, "b": 70, "c": 20}
    for world in (1, 2, 3):
        shards = [ColumnShards(widths, r, world) for r in range(world)]
        for t, d in widths.items():
            cols = [s.columns(t) for s in shards]
            covered = [c for lo, hi in cols for c in range(lo, hi)]
            assert covered == list(range(d))
            assert all(lo % 64 == 0 for lo, hi in cols if hi > lo)


@pytest.mark.parametrize("on_disk", [False, True])
def test_sharded_precompute_equals_single_process(tmp_path, on_disk):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = _precompute(str(tmp_path / "single") if on_disk else None)
        want = {k: v.clone() for k, v in want.items()}
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "sharded.pt"
    store = str(tmp_path / "sharded") if on_disk else None
    mp.spawn(_sharded_worker, args=(2, f"file://{tmp_path / 'rdzv'}", str(out), store), nprocs=2)
    got = torch.load(out)
    assert list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape
        assert torch.equal(got[key], want[key]), key
    if on_disk:
        assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == \
            sorted(p.name for p in (tmp_path / "single").iterdir())


def _train(args: list[str], out: Path, nproc: int = 1) -> dict:
    cmd = [sys.executable, "-m", "hgnn", "train", "--dataset", "synthetic", "--quiet", "--out",
           str(out), *args]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("model,extra,tolerance", [
    ("rgcn", ["--epochs", "12"], 0.005),       # full batch: gradients of equal shards averaged
    ("rphgnn", ["--epochs", "12"], 0.02),      # precomputed: batches drawn per rank
])
def test_two_processes_match_one(tmp_path, model, extra, tolerance):
    one = _train(["--model", model, *extra], tmp_path / "one")
    two = _train(["--model", model, *extra], tmp_path / "two", nproc=2)
    assert two["world_size"] == 2 and one["world_size"] == 1
    for split in ("val", "test"):
        a = one["metrics"][split]["accuracy"]["mean"]
        b = two["metrics"][split]["accuracy"]["mean"]
        assert abs(a - b) <= tolerance, (split, a, b)
    assert (tmp_path / "two" / "seed_0" / "best.pt").is_file()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_killed_rank_ends_the_job(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "hgnn", "train", "--model", "rgcn", "--dataset", "synthetic", "--quiet",
           "--epochs", "100000", "--set", "train.patience=0", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HGNN_DIST_TIMEOUT": "60"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (out / "seed_0" / "last.pt").is_file():
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
        workers = _children(proc.pid)
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)
        start = time.monotonic()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert time.monotonic() - start < 120
        assert "failed" in err.lower() or "error" in err.lower()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
