"""``hgnn datasets list / info`` output."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hgnn.cli.main import main
from tests.hgb_fixture import write_hgb


def test_info_json_fields(tmp_path, capsys):
    folder = write_hgb(tmp_path / "g")
    assert main(["datasets", "info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_nodes"] == 12 and info["num_edges"] == 22
    assert info["node_types"] == {"author": 6, "paper": 4, "venue": 2}
    assert info["edge_types"]["author__write__paper"] == 7
    assert info["feature_dims"] == {"author": 3, "paper": 2, "venue": 0}
    assert info["num_classes"] == 2 and info["multilabel"] is False
    assert sum(info["split"].values()) == 6 and info["split"]["test"] == 2


def test_info_text_and_schema(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("networkx")
    folder = write_hgb(tmp_path / "g")
    png = tmp_path / "schema.png"
    assert main(["datasets", "info", str(folder), "--schema", str(png)]) == 0
    out = capsys.readouterr().out
    assert "author -[write]-> paper" in out and "split (holdout, seed 0)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schema_file_with_no_image_format_is_refused_before_loading(tmp_path, capsys):
    assert main(["datasets", "info", str(tmp_path / "absent"), "--schema",
                 str(tmp_path / "acm.txt")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"hgnn: error: --schema {tmp_path / 'acm.txt'}: the file name must end in .png, .svg, "
        ".pdf (the image format)")


def test_list_marks_generated_and_missing(tmp_path, capsys):
    assert main(["datasets", "list", "--root", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r["status"] for r in json.loads(capsys.readouterr().out)["datasets"]}
    assert rows["synthetic"] == "generated" and rows["hgb-dblp"] == "missing"


def test_synthetic_info_runs_in_a_fresh_process():
    proc = subprocess.run([sys.executable, "-m", "hgnn", "datasets", "info", "synthetic", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    assert info["target"] == "paper" and info["num_edges"] > 0
