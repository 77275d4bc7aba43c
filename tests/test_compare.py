"""`--method all`: every method in one table, computed, with references marked as breaking the SLO."""

import json

import pytest

from conftest import DATA
from models.analysis.compare import compare
from models.problem.instance import load_instance
from models.methods.registry import METHODS, SolveOptions
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


@pytest.mark.parametrize("name", ["paper-4xA100", "paper-8xA100"])
def test_all_on_the_paper_instances(name):
    """Every method runs; exact is proven optimal and no solution beats it; every plan agrees with the
    evaluator; enumerate refuses the size; references are solutions only when they meet the target."""
    instance = load_instance(DATA / name)
    table, outcomes = compare(instance, list(METHODS), SolveOptions())
    by_method = {o.method: o for o in outcomes}
    assert list(table.method) == list(METHODS)
    assert by_method["exact"].plan.solver.status == "optimal"
    assert by_method["enumerate"].status == "refused"
    assert all(o.evaluator_agrees is not False and o.status != "error" for o in outcomes)
    optimum = by_method["exact"].plan.quality
    for outcome in outcomes:
        plan = outcome.plan
        if plan is not None and plan.solver.status != "infeasible":
            assert plan.slo_met and plan.quality <= optimum + 1e-7
    for reference in ("quality-greedy", "fixed-latency"):
        plan = by_method[reference].plan
        assert (plan.solver.status == "infeasible") == (not plan.slo_met)
