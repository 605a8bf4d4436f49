"""Every kind of bad input gives one line naming the file (and line), exit status 2, no traceback,
and leaves nothing in the cache."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.hgb_fixture import LABELS, LINKS, NODES, write_hgb, zip_folder

CASES = {
    # name: (overrides, expected file, expected line or None, words in the message)
    "malformed line": ({"link_dat": LINKS[:3] + ["0\t6"] + LINKS[4:]}, "link.dat", 4,
                       "expected 4 fields"),
    "id out of range": ({"link_dat": LINKS + ["0\t99\t0\t1.0"]}, "link.dat", len(LINKS) + 1,
                        "99 is not in node.dat"),
    "unknown node type": ({"node_dat": NODES + ["12\tx\t7"]}, "node.dat", len(NODES) + 1,
                          "unknown node type 7"),
    "unknown link type": ({"link_dat": LINKS + ["0\t6\t9\t1.0"]}, "link.dat", len(LINKS) + 1,
                          "unknown link type 9"),
    "wrong feature width": ({"node_dat": NODES[:2] + ["2\tauthor2\t0\t1,0"] + NODES[3:]},
                            "node.dat", 3, "expected 3 feature values"),
    "NaN feature": ({"node_dat": NODES[:1] + ["1\tauthor1\t0\t1,nan,0"] + NODES[2:]},
                    "node.dat", 2, "NaN or infinite"),
    "inf feature": ({"node_dat": NODES[:7] + ["7\tpaper1\t1\tinf,0"] + NODES[8:]},
                    "node.dat", 8, "NaN or infinite"),
    "non-numeric feature": ({"node_dat": NODES[:1] + ["1\tauthor1\t0\t1,abc,0"] + NODES[2:]},
                            "node.dat", 2, "not a number"),
    "empty file": ({"label_dat": ""}, "label.dat", None, "empty"),
    "truncated file": ({"node_dat": "\n".join(NODES)[: len(NODES[0]) + 12]}, "node.dat", 2,
                       "features"),
    "truncated feature row": ({"node_dat": "\n".join(NODES)[: len(NODES[0]) + 16]}, "node.dat",
                              2, "expected 3 feature values"),
    "missing file": ({"link_dat": None}, "link.dat", None, "missing file"),
    "label out of range": ({"label_dat": LABELS[:-1] + ["3\tauthor3\t0\t5"]}, "label.dat", 4,
                           "label out of range"),
    "label on wrong type": ({"label_dat": LABELS + ["7\tpaper1\t0\t1"]}, "label.dat",
                            len(LABELS) + 1, "has type 1 in node.dat"),
    "duplicate node id": ({"node_dat": NODES + ["3\tagain\t0\t1,1,1"]}, "node.dat", None,
                          "appears more than once"),
    "link joins wrong types": ({"link_dat": LINKS + ["6\t7\t0\t1.0"]}, "link.dat",
                               len(LINKS) + 1, "should join node types 0->1"),
    "bad info json": ({"info_dat": "{not json"}, "info.dat", None, "not valid JSON"),
}


def run_cli(*args: str, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HGNN_CACHE": cache}
    return subprocess.run([sys.executable, "-m", "hgnn", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_in_process(tmp_path, monkeypatch, case):
    from hgnn.data import load_dataset
    from hgnn.errors import DataFormatError

    overrides, file, line, words = CASES[case]
    folder = write_hgb(tmp_path / "bad", **overrides)
    cache = tmp_path / "cache"
    monkeypatch.setenv("HGNN_CACHE", str(cache))
    with pytest.raises(DataFormatError) as info:
        load_dataset(str(folder))
    msg = str(info.value)
    assert file in msg and words in msg, msg
    if line is not None:
        assert f"line {line}:" in msg, msg
    assert "\n" not in msg
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.parametrize("case", ["malformed line", "NaN feature", "missing file", "empty file"])
def test_bad_input_cli(tmp_path, case):
    overrides, file, line, words = CASES[case]
    folder = write_hgb(tmp_path / "bad", **overrides)
    cache = tmp_path / "cache"
    for target in (folder, zip_folder(folder, tmp_path / "bad.zip")):
        proc = run_cli("datasets", "info", str(target), cache=str(cache))
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip()
        assert "Traceback" not in proc.stderr and len(err.splitlines()) == 1, proc.stderr
        assert err.startswith("hgnn: error:") and file in err and words in err
        if target.suffix == ".zip":
            assert "bad.zip" in err
        assert not cache.exists() or not any(cache.iterdir())


def test_unknown_dataset_and_missing_path(tmp_path):
    proc = run_cli("datasets", "info", "no-such-dataset", cache=str(tmp_path / "c"))
    assert proc.returncode == 2 and "unknown dataset 'no-such-dataset'" in proc.stderr
    proc = run_cli("datasets", "info", str(tmp_path / "nowhere"), cache=str(tmp_path / "c"))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_a_zip(tmp_path):
    bogus = tmp_path / "graph.zip"
    bogus.write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli("datasets", "info", str(bogus), cache=str(tmp_path / "c"))
    assert proc.returncode == 2 and "graph.zip" in proc.stderr and "Traceback" not in proc.stderr
