"""Re-planning from a running plan (SPEC 4.7): move costs that keep the current plan on data/tiny and one that does
not, worked out by hand; moves counted exactly from the MIP's placement; exact = enumerate on seeded random
instances; every plan passes the evaluator and its published routing reproduces it; bad input in one line."""

import dataclasses
import json

import pyomo.environ as pyo
import pytest

import models
import solve
from conftest import DATA
from models.evaluation.evaluate import evaluate_plan
from models.methods.baselines import restricted
from models.methods.brute_force import solve_enumerate
from models.methods.exact import add_move_cost, build_joint_mip, solve_exact
from models.problem.instance import Option, load_instance
from models.problem.moves import Replanning, RunningShard, running_shards
from models.problem.plan import read_plan, write_plan
from models.problem.realized import realized_routing
from random_instances import outcome, write_random_instance

# Hand derivation on data/tiny (its README and docs/formulation.md): only two setups can be placed,
# A = small tp1/mps50 on one GPU beside large tp2/mps50 on both, best quality Q_A = 0.75 + 0.4 (62/140 - 1/4)
# = 289.5/350 = 0.827143, and C = small tp2/mps50 and large tp2/mps50 on both GPUs, Q_C = 1349/1620 = 0.832716.
# Running A, the best plan of each setup moves: A (as placed) nothing; C starts small tp2/mps50 on GPUs 0 and 1
# (2 moves: a shard's option is part of its identity) and keeps large. So C wins when Q_C - 2 C > Q_A, that is
# for a move cost C < (Q_C - Q_A) / 2 = 0.0027866, and A is kept above it.
Q_A = 289.5 / 350
Q_C = 1349 / 1620
SMALL, LARGE = "small", "large"


def current_a(gpu: int) -> frozenset:
    """Setup A running with small on `gpu`, large on GPUs 0 and 1."""
    return frozenset({RunningShard(SMALL, 1, 50, gpu), RunningShard(LARGE, 2, 50, 0), RunningShard(LARGE, 2, 50, 1)})


@pytest.mark.parametrize("method", [solve_exact, solve_enumerate])
@pytest.mark.parametrize("gpu", [0, 1])
def test_a_high_move_cost_keeps_the_current_plan(tiny, method, gpu):
    """With small on GPU 1, keeping it also shows that exact no longer sorts the GPUs by the first model (10)."""
    plan = method(tiny, replanning=Replanning(current_a(gpu), 0.004))
    assert plan.setup == (Option(1, 50), Option(2, 50)) and plan.placement == ((gpu,), (0, 1))
    assert plan.changes.moves == 0 and plan.changes.stop == () and plan.changes.gpus_touched == ()
    assert plan.quality == pytest.approx(Q_A, abs=1e-6)
    assert plan.solver.bound == pytest.approx(Q_A, abs=1e-5)
    assert_returned(tiny, plan)


@pytest.mark.parametrize("method", [solve_exact, solve_enumerate])
def test_a_low_move_cost_moves(tiny, method):
    plan = method(tiny, replanning=Replanning(current_a(0), 0.002))
    assert plan.setup == (Option(2, 50), Option(2, 50))
    assert plan.changes.stop == (RunningShard(SMALL, 1, 50, 0),)
    assert plan.changes.start == (RunningShard(SMALL, 2, 50, 0), RunningShard(SMALL, 2, 50, 1))
    assert plan.changes.gpus_touched == (0, 1)
    assert plan.objective == pytest.approx(Q_C - 2 * 0.002, abs=1e-6)
    data = plan.to_dict()
    assert data["moves"] == 2 and data["move_cost"] == 0.002
    assert data["changes"]["start"][1] == {"model": SMALL, "tp": 2, "mps_pct": 50, "gpu": 1}
    if method is solve_exact:
        assert plan.notes["placement"] == "per-gpu (re-planning needs to know which GPU holds which shard)"
    assert_returned(tiny, plan)


def assert_returned(instance, plan):
    """What solve.py requires of a plan: the evaluator agrees and the published routing reproduces it."""
    evaluation = evaluate_plan(instance, plan.to_dict())
    assert evaluation.consistent, (evaluation.violations, evaluation.mismatches)
    realized = realized_routing(instance, plan)
    assert realized.reproduces_plan and realized.deployable


def test_moves_are_counted_from_the_placement_variables(tiny):
    """(16) at a fixed placement: C on GPUs 0, 1 against A with small on GPU 1 starts two shards."""
    m = build_joint_mip(tiny, placement="per-gpu")
    add_move_cost(m, Replanning(current_a(1), 0.5))
    for c in m.CHOICES:
        m.choose[c].value = int(c[1:] == (2, 50))
        for g in m.GPUS:
            m.place[c, g].value = m.choose[c].value
    assert pyo.value(m.moves) == 2
    assert not m.gpu_order.active
    assert sorted(m.CURRENT) == [(LARGE, 2, 50, 0), (LARGE, 2, 50, 1), (SMALL, 1, 50, 1)]


def test_current_shards_the_instance_cannot_keep_are_moves(tiny):
    """A shard of an option the instance does not have (small has no curve at tp2/mps100) is never kept: every
    shard of the optimum C is a move."""
    gone = frozenset({RunningShard(SMALL, 2, 100, 0)})
    plan = solve_exact(tiny, replanning=Replanning(gone, 0.001))
    assert plan.changes.stop == (RunningShard(SMALL, 2, 100, 0),) and plan.changes.moves == 4
    assert plan.quality == pytest.approx(Q_C, abs=1e-6)


# ---------------------------------------------------------------- random instances

SEEDS = range(10)


@pytest.fixture(scope="module")
def random_replans(tmp_path_factory):
    """Per seed: a random instance and the shards of its exact plan at a 1.5 times looser target (or None)."""
    root = tmp_path_factory.mktemp("replan")
    cases = {}
    for seed in SEEDS:
        instance = load_instance(write_random_instance(root / str(seed), seed))
        looser = outcome(solve_exact, dataclasses.replace(instance, slo_mean_ttft_ms=1.5 * instance.slo_mean_ttft_ms))
        cases[seed] = (instance, None if isinstance(looser, str) else
                       running_shards(instance.model_names, looser.setup, looser.placement))
    return cases


@pytest.mark.parametrize("move_cost", [0.0, 0.01, 0.1])
@pytest.mark.parametrize("seed", SEEDS)
def test_exact_equals_enumerate_when_replanning(random_replans, seed, move_cost):
    instance, current = random_replans[seed]
    if current is None:
        pytest.skip("no plan at the looser target to re-plan from")
    replanning = Replanning(current, move_cost)
    reference = outcome(solve_enumerate, instance, replanning=replanning)
    plan = outcome(solve_exact, instance, replanning=replanning)
    if isinstance(reference, str):
        assert isinstance(plan, str)
        return
    assert plan.objective == pytest.approx(reference.objective, abs=1e-6)
    assert plan.solver.status == "optimal"
    assert plan.solver.bound == pytest.approx(plan.objective, abs=1e-5)
    assert plan.changes.moves == replanning.moves(instance.model_names, plan.setup, plan.placement)
    assert_returned(instance, plan)


def test_random_replans_cover_the_cases(random_replans):
    """Some seeds re-plan with moves at a small cost and keep more shards at a larger one."""
    moved = kept = 0
    for instance, current in random_replans.values():
        if current is None:
            continue
        cheap = outcome(solve_exact, instance, replanning=Replanning(current, 0.0))
        dear = outcome(solve_exact, instance, replanning=Replanning(current, 0.1))
        if not isinstance(cheap, str):
            moved += cheap.changes.moves > 0
            kept += dear.changes.moves < cheap.changes.moves
    assert moved >= 2 and kept >= 1


# ---------------------------------------------------------------- the command line and bad input


@pytest.fixture
def plan_a(tmp_path, tiny):
    """Setup A's plan of data/tiny as solve.py writes it: the best plan with small at tp1/mps50 only."""
    plan = solve_exact(restricted(tiny, {SMALL: {Option(1, 50)}, LARGE: {Option(2, 50)}}))
    return write_plan(plan, tmp_path / "a.json")


def test_replan_on_the_command_line(tmp_path, plan_a, tiny, capsys):
    out = tmp_path / "b.json"
    args = [str(DATA / "tiny"), "--from", str(plan_a), "--move-cost", "0.002", "--out", str(out), "--quiet",
            "--placement", "patterns"]
    assert solve.main(args) == 0
    printed, err = capsys.readouterr()
    assert "warning: --placement patterns does not apply with --from" in err
    assert "re-planned: 2 moves at move cost 0.002" in printed
    assert "stop:  small tp1/mps50 on GPU 0" in printed
    assert "start: small tp2/mps50 on GPU 0; small tp2/mps50 on GPU 1" in printed
    assert "GPUs touched: 0, 1" in printed
    written = json.loads(out.read_text())
    assert written["moves"] == 2 and written["objective_value"] == pytest.approx(Q_C - 0.004, abs=1e-6)
    assert read_plan(out, tiny).quality == pytest.approx(Q_C, abs=1e-6)


@pytest.mark.parametrize("args, words", [
    (["{data}/paper-4xA100", "--from", "{plan}"], "the plan is for 'tiny', not for instance 'paper-4xA100'"),
    (["{data}/tiny", "--move-cost", "0.1"], "--move-cost needs --from"),
    (["{data}/tiny", "--from", "{plan}", "--method", "heuristic"], "method heuristic does not re-plan"),
    (["{data}/tiny", "--from", "{plan}", "--move-cost", "-1"], "is not a non-negative finite number"),
    (["{data}/tiny", "--from", "{missing}"], "missing.json: file is missing"),
])
def test_bad_replanning_input_exits_2_in_one_line(plan_a, args, words, capsys):
    args = [a.format(data=DATA, plan=plan_a, missing=plan_a.parent / "missing.json") for a in args]
    assert solve.main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_api_refuses_replanning_for_other_methods(tiny):
    with pytest.raises(ValueError, match="method 'heuristic' does not re-plan"):
        models.solve(tiny, method="heuristic", replanning=Replanning(current_a(0), 0.1))
