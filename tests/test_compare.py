"""`--method all`: every method in one table, computed, with references marked as breaking the SLO."""

import json

import pytest

from conftest import DATA
import solve


def test_all_on_tiny(tmp_path, capsys):
    status = solve.main([str(DATA / "tiny"), "--method", "all", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.split()}
    # exact and enumerate reach the hand-derived optimum; equal-split's rule happens to allow setup C
    for method in ("exact", "enumerate", "equal-split"):
        assert rows[method][1] == "0.832716" and rows[method][-1] == "1.0000"
    assert rows["size-proportional"][1] == "0.827143"  # setup A (tests/test_baselines.py)
    assert rows["quality-greedy"][3:5] == ["NO", "(broken)"]
    assert rows["isolated"][4] == "infeasible"
    written = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert written["exact"]["quality"] == pytest.approx(1349 / 1620, abs=1e-6)
    assert written["quality-greedy"]["slo_met"] is False
    assert "isolated" not in written
