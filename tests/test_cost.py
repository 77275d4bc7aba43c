"""The cost objective (SPEC 4.4): minimize the hourly cost of the GPUs holding a shard s.t. Q >= min_quality.

Hand derivation on data/tiny over two types (tests/typed_tiny.py: A at 1 per hour, B at 3, B's TTFTs
halved). large runs at tp2 on two GPUs of one type; small shares them or takes GPUs of its own. The costs
a placement can have: both on A, 2 (data/tiny's setups); large on A and small tp1 on B, 2 + 3 = 5; both on B, 6;
large on B and small tp1 on A, 7; more otherwise. The best quality at each cost:

* 2: data/tiny's optimum, setup C: Q = 1349/1620 = 0.832716 (setup A reaches 0.827143).
* 5: large tp2 mps100 on A (H = 100 w - 16 on [0.4, 0.8]) and small tp1 mps100 on B (H = 7.5 (1 - w)):
  mean TTFT 92.5 w - 8.5 <= 60 gives w = 137/185, and with Q(w) = 0.85 + 0.1 (w - 0.5) on [0.5, 0.75]
  (p1 moves to large), Q = 0.85 + 0.1 * 89/370 = 1617/1850 = 0.874054 (small at mps50, H = 10 (1 - w),
  reaches 0.873333).
* 6: data/tiny on B is data/tiny at a 120 ms target: small tp2 and large tp2 at mps50 give mean TTFT
  81 w - 7 <= 60 up to the capacity w = 0.8, where Q = 0.875, the most any plan reaches.

So min_quality 0.8 costs 2, 0.85 costs 5, 0.875 costs 6, and 0.9 has no plan: the best reachable is 0.875.
"""

import re

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from random_instances import write_random_typed_instance
from typed_tiny import write_typed_tiny
from models.analysis.cost_frontier import cost_frontier
from models.evaluation.evaluate import evaluate_plan
from models.methods.brute_force import solve_enumerate
from models.methods.exact import build_joint_mip, solve_exact
from models.methods.heuristic import solve_heuristic
from models.output.plots import plot_cost_frontier
from models.problem.instance import InputError, Objective, load_instance, with_objective
from models.problem.plan import Infeasible
import solve

COSTS = {0.8: (2.0, 1349 / 1620), 0.85: (5.0, 1617 / 1850), 0.875: (6.0, 0.875)}  # module docstring


def cost_instance(folder, min_quality: float):
    return load_instance(write_typed_tiny(folder, f'\n[objective]\nkind = "cost"\nmin_quality = {min_quality}\n'))


@pytest.mark.parametrize("min_quality", sorted(COSTS))
@pytest.mark.parametrize("method", ["patterns", "per-gpu", "per-prompt", "enumerate"])
def test_hand_derived_least_cost(tmp_path, min_quality, method):
    instance = cost_instance(tmp_path / "tiny", min_quality)
    if method == "enumerate":
        plan = solve_enumerate(instance)
    else:
        plan = solve_exact(instance, per_prompt=method == "per-prompt",
                           placement="patterns" if method == "per-prompt" else method)
    cost, quality = COSTS[min_quality]
    assert plan.cost_per_hour == pytest.approx(cost) and plan.solver.status == "optimal"
    assert plan.solver.bound == pytest.approx(cost, rel=1e-6)
    # several setups have the least cost (at 2, data/tiny's A and C; at 5, small at mps 50 or 100): every
    # method returns the best quality among them
    assert plan.quality == pytest.approx(quality, abs=1e-6)
    evaluation = evaluate_plan(instance, plan.to_dict())
    assert evaluation.consistent and evaluation.cost_per_hour == pytest.approx(cost)
    assert plan.to_dict()["objective"] == {"kind": "cost", "min_quality": min_quality}


@pytest.mark.parametrize("method", [solve_exact, solve_enumerate])
def test_unreachable_quality_names_the_best_reachable(tmp_path, method):
    with pytest.raises(Infeasible, match="no plan reaches quality 0.9: the best quality reachable is 0.875000"):
        method(cost_instance(tmp_path / "tiny", 0.9))


def test_unreachable_target_keeps_its_reason(tmp_path):
    folder = write_typed_tiny(tmp_path / "tiny", '\n[objective]\nkind = "cost"\nmin_quality = 0.5\n')
    toml = folder / "instance.toml"
    toml.write_text(toml.read_text().replace("slo_mean_ttft_ms = 60.0", "slo_mean_ttft_ms = 5.0"))
    # every prompt on small, alone on a B GPU at tp1 mps100: H = 7.5 ms (half of A's 15 ms)
    with pytest.raises(Infeasible, match="lowest mean TTFT any setup reaches is 7.50 ms"):
        solve_exact(load_instance(folder))


@pytest.mark.parametrize("seed", [0, 1, 3, 5, 6, 7, 8, 9, 10, 11])
def test_exact_equals_enumerate_on_random_typed_instances(tmp_path, seed):
    # min_quality 0.75 is out of reach on about half of the seeds
    instance = load_instance(write_random_typed_instance(tmp_path / "r", seed, min_quality=0.75))
    try:
        reference = solve_enumerate(instance)
    except Infeasible as err:
        with pytest.raises(Infeasible) as again:
            solve_exact(instance)
        assert str(again.value) == str(err)  # the same best quality, or the same lowest mean TTFT
        return
    plan = solve_exact(instance)
    assert plan.cost_per_hour == pytest.approx(reference.cost_per_hour, rel=1e-9)
    assert plan.quality == pytest.approx(reference.quality, rel=1e-6)  # the best quality at the least cost
    for found in (plan, reference):
        assert found.quality >= 0.75 - 1e-9
        assert evaluate_plan(instance, found.to_dict()).consistent


def test_heuristic_costs_at_least_the_optimum(tmp_path):
    instance = cost_instance(tmp_path / "tiny", 0.85)
    plan = solve_heuristic(instance, progress=False)
    assert plan.cost_per_hour >= 5.0 and plan.quality >= 0.85 - 1e-9
    assert evaluate_plan(instance, plan.to_dict()).consistent


def test_evaluator_checks_min_quality_and_cost(tmp_path):
    instance = cost_instance(tmp_path / "tiny", 0.85)
    plan = solve_exact(instance).to_dict()
    plan["cost_per_hour"] = 4.0
    assert any("cost_per_hour" in m for m in evaluate_plan(instance, plan).mismatches)
    higher = with_objective(instance, Objective("cost", 0.874054 + 1e-4))
    assert any(v.rule == "(4.4) min quality" for v in evaluate_plan(higher, plan).violations)


BAD_OBJECTIVES = {
    "missing cost": ("cost_per_hour = 3.0\n", "", "field 'cluster.gpu_types[1].cost_per_hour': missing"),
    "missing min_quality": ("min_quality = 0.8\n", "", "field 'objective.min_quality': missing"),
    "min_quality above 1": ("min_quality = 0.8", "min_quality = 1.5", "field 'objective.min_quality': 1.5"),
    "unknown kind": ('kind = "cost"', 'kind = "money"', "field 'objective.kind': 'money'"),
    "min_quality with quality": ('kind = "cost"', 'kind = "quality"', "given with kind = \"quality\""),
}


@pytest.mark.parametrize("case", sorted(BAD_OBJECTIVES))
def test_bad_objective_is_named_in_one_line(tmp_path, case):
    old, new, words = BAD_OBJECTIVES[case]
    folder = write_typed_tiny(tmp_path / "tiny", '\n[objective]\nkind = "cost"\nmin_quality = 0.8\n')
    toml = folder / "instance.toml"
    toml.write_text(toml.read_text().replace(old, new, 1))
    with pytest.raises(InputError, match="instance.toml") as err:
        load_instance(folder)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_cost_on_an_untyped_instance_is_refused(tiny):
    with pytest.raises(InputError, match="needs \\[\\[cluster.gpu_types\\]\\] with cost_per_hour"):
        with_objective(tiny, Objective("cost", 0.5))


def test_command_line_objective(tmp_path, capsys):
    folder = write_typed_tiny(tmp_path / "tiny")
    out = tmp_path / "plan.json"
    assert solve.main([str(folder), "--objective", "cost", "--min-quality", "0.85", "--quiet", "--out", str(out)]) == 0
    assert '"cost_per_hour": 5.0' in out.read_text()
    assert solve.main([str(folder), "--objective", "cost", "--min-quality", "0.9", "--quiet"]) == 3
    assert "best quality reachable is 0.875000" in capsys.readouterr().err
    for usage in (["--objective", "cost"], ["--min-quality", "0.8"]):
        assert solve.main([str(folder), "--quiet", *usage]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_frontier_on_the_typed_tiny(tmp_path, capsys):
    instance = load_instance(write_typed_tiny(tmp_path / "tiny"))
    table = cost_frontier(instance, [0.8, 0.85, 0.875, 0.9], progress=False)
    assert table.cost_per_hour.tolist()[:3] == [2.0, 5.0, 6.0] and table.status.iloc[3] == "infeasible"
    assert table[["gpus_A", "gpus_B"]].iloc[1].tolist() == [2, 1]  # large on both A GPUs, small on one B
    assert "0.875000" in table.reason.iloc[3]
    assert solve.main(["frontier", str(instance.folder), "--quality", "0.80:0.88:0.04", "--plot", str(tmp_path),
                       "--quiet"]) == 0
    assert (tmp_path / "tiny-cost-frontier.png").stat().st_size > 0
    lines = (tmp_path / "tiny-cost-frontier.csv").read_text().splitlines()
    assert lines[0].startswith("instance,min_quality,status,cost_per_hour,quality,gpus_A,gpus_B") and len(lines) == 4
    assert solve.main(["frontier", str(instance.folder), "--quality", "0.9:0.8:0.1"]) == 2
    capsys.readouterr()
    assert solve.main(["frontier", str(REPO / "data" / "tiny"), "--quality", "0.8:0.9:0.1"]) == 2  # no costs
    assert capsys.readouterr().err.count("\n") == 1


def test_formulation_cost_rows_name_real_components(tmp_path):
    doc = (REPO / "docs" / "formulation.md").read_text()
    rows = doc.split("### Rows of the cost objective", 1)[1].split("Notes on GPU types", 1)[0]
    names = set(re.findall(r"`(\w+)(?:\[[^`]*\])?`", rows))
    instance = cost_instance(tmp_path / "tiny", 0.8)
    forms = [build_joint_mip(instance), build_joint_mip(instance, placement="per-gpu")]
    assert names == {"in_use", "gpu_cost", "min_quality", "at_least_cost", "quality_at_cost"}
    solved = tmp_path / "solved.lp"  # the second stage's (15) is added while solving
    solve_exact(instance, write_model=str(solved))
    written = solved.read_text()
    assert all(any(m.component(name) is not None for m in forms) or name in written for name in names)
    assert "at_least_cost" in written and "quality_at_cost" in written


def test_frontier_plot_takes_any_type_name():
    table = pd.DataFrame({"instance": ["x", "x"], "min_quality": [0.7, 0.8], "status": ["optimal", "infeasible"],
                          "cost_per_hour": [3.99, np.nan], "quality": [0.71, np.nan],
                          "gpus_H100-80GB": pd.array([1, pd.NA], dtype="Int64")})
    axes = plot_cost_frontier(table).axes[0]
    assert [text.get_text() for text in axes.texts] == ["1 H100-80GB"]
