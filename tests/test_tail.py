"""Tail bounds (SPEC 4.6): a p99 bound that binds on data/tiny, worked out by hand; the first crossing of a
percentile curve; exact = enumerate with tail bounds on seeded random instances; every plan passes the
evaluator and its published routing reproduces it; bad input in one line."""

import numpy as np
import pytest

import solve
from conftest import edit
from models.evaluation.evaluate import evaluate_plan
from models.methods.baselines import solve_baseline
from models.methods.brute_force import solve_enumerate
from models.methods.exact import solve_exact
from models.methods.greedy import solve_quality_greedy
from models.methods.heuristic import solve_heuristic
from models.problem.instance import Curve, InputError, Option, load_instance
from models.problem.plan import Infeasible
from models.problem.realized import realized_routing
from random_instances import outcome, write_random_instance

# data/tiny's curves with a p99 column. Only large's tp2/mps50 matters: tiny's README shows that only the setups
# A (small tp1/mps50 beside large tp2/mps50) and C (small tp2/mps50, large tp2/mps50) can be placed.
TINY_P99 = """model,tp,mps_pct,rate_rps,mean_ttft_ms,p99_ttft_ms
small,1,50,5,20,40
small,1,50,10,30,60
small,1,100,10,15,30
small,2,50,10,18,36
large,2,50,4,100,200
large,2,50,8,140,400
large,2,100,4,60,150
large,2,100,8,80,250
"""


@pytest.fixture
def tiny_p99(tiny_copy):
    """data/tiny with the p99 column above and slo_p99_ttft_ms = 220."""
    (tiny_copy / "profiles.csv").write_text(TINY_P99)
    edit(tiny_copy / "instance.toml", "slo_mean_ttft_ms = 60.0", "slo_mean_ttft_ms = 60.0\nslo_p99_ttft_ms = 220")
    return tiny_copy


# Hand derivation. Without a tail bound tiny's optimum is C with large's share w = 37/81 = 0.4568 (4.568 rps),
# quality 0.832716 (docs/formulation.md). Large tp2/mps50's p99 rises from 200 ms at 4 rps to 400 ms at 8 rps, so
# it reaches 220 ms at 4 + 4 (220 - 200) / (400 - 200) = 4.4 rps: w <= 0.44 on both A and C. Prompts move to
# large in the order of their gain p3 (0.8), p2 (0.4), p1 (0.1): all on small gives (0.9 + 0.5 + 0.2 + 0.6) / 4
# = 0.55, p3 on large (w = 0.25) adds 0.8 / 4, and p2 adds 0.4 per unit of share beyond: at w = 0.44 the quality
# is 0.75 + 0.4 (0.44 - 0.25) = 0.826. The target holds there on both setups: H_large(0.44) = 40 + 0.04 * 180
# = 47.2 ms, plus 0.56 * 18 = 10.08 ms (C) or 10 + 0.06 * 40 = 12.4 ms (A): 57.28 and 59.6 ms <= 60.
BOUND_QUALITY = 0.826
BOUND_SHARE = 0.44


@pytest.mark.parametrize("method", [solve_exact, solve_enumerate])
def test_p99_bound_binds_on_tiny(tiny_p99, method):
    instance = load_instance(tiny_p99)
    plan = method(instance)
    assert plan.quality == pytest.approx(BOUND_QUALITY, abs=1e-6)
    assert plan.shares[1] == pytest.approx(BOUND_SHARE, abs=1e-6)
    assert plan.models.p99_ttft_ms[1] == pytest.approx(220.0, abs=1e-4)
    assert plan.to_dict()["models"][1]["p99_ttft_ms"] == pytest.approx(220.0, abs=1e-4)
    assert plan.to_dict()["slo_p99_ttft_ms"] == 220.0
    assert_returned(instance, plan)


def assert_returned(instance, plan):
    """What solve.py requires of a plan: the evaluator agrees and the published routing reproduces it."""
    evaluation = evaluate_plan(instance, plan.to_dict())
    assert evaluation.consistent, (evaluation.violations, evaluation.mismatches)
    realized = realized_routing(instance, plan)
    assert realized.reproduces_plan and realized.deployable


def test_evaluator_finds_a_broken_p99_bound(tiny, tiny_p99):
    """Tiny's own optimum puts large at 4.568 rps: p99 200 + 0.568 * 50 = 228.4 ms, above 220."""
    plan = solve_exact(tiny).to_dict()
    evaluation = evaluate_plan(load_instance(tiny_p99), plan)
    [violation] = evaluation.violations
    assert violation.rule == "(4.6) p99 TTFT" and "large" in violation.where
    assert violation.amount == pytest.approx(200 + (10 * 37 / 81 - 4) * 50 - 220, abs=1e-6)


def test_an_option_that_breaks_the_bound_at_its_first_point_is_not_used(tiny_p99):
    edit(tiny_p99 / "instance.toml", "slo_p99_ttft_ms = 220", "slo_p99_ttft_ms = 150")
    instance = load_instance(tiny_p99)
    assert instance.options(instance.models[1]) == (Option(2, 100),)  # tp2/mps50 starts at 200 ms
    with pytest.raises(Infeasible):  # large tp2/mps100 takes both GPUs whole: small has no room
        solve_exact(instance)


@pytest.mark.parametrize("values, bound, expected", [
    ((100, 300, 500), 200, 1.5),  # rising: where it crosses
    ((100, 300, 150), 200, 1.5),  # dips back under the bound after crossing: the first crossing
    ((100, 150, 180), 200, 3.0),  # never crosses: r_K
    ((250, 300, 350), 200, 0.0),  # the first point breaks it: unusable
    ((200, 400, 600), 200, 1.0),  # the first point on the bound: up to the first rise
])
def test_rate_within_is_the_first_crossing(values, bound, expected):
    curve = Curve((1.0, 2.0, 3.0), (10.0, 20.0, 30.0), p99_ttfts_ms=values)
    assert curve.rate_within("p99", bound) == pytest.approx(expected)


def test_heuristic_and_baselines_keep_the_bound(tiny_p99):
    instance = load_instance(tiny_p99)
    for plan in [solve_heuristic(instance), solve_baseline(instance, "equal-split")]:
        assert plan.models.p99_ttft_ms[1] <= 220 * (1 + 1e-9)
        assert evaluate_plan(instance, plan.to_dict()).feasible


# ---------------------------------------------------------------- random instances

SEEDS = range(12)


def add_p99(folder, seed):
    """A p99 column (mean times a rising factor) and a bound at the median of the p99 values, which binds on
    some options and excludes others."""
    rng = np.random.default_rng(1000 + seed)
    lines = (folder / "profiles.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    p99 = [float(row[4]) * (1.5 + rng.uniform(0, 1.5)) for row in rows]
    (folder / "profiles.csv").write_text("\n".join([lines[0] + ",p99_ttft_ms"] + [
        ",".join(row) + f",{value:.3f}" for row, value in zip(rows, p99)]) + "\n")
    edit(folder / "instance.toml", "[setup_options]", f"slo_p99_ttft_ms = {np.median(p99):.3f}\n[setup_options]")
    return folder


@pytest.fixture(scope="module")
def random_tail_instances(tmp_path_factory):
    root = tmp_path_factory.mktemp("tail")
    instances = {}
    for seed in SEEDS:
        try:
            instances[seed] = load_instance(add_p99(write_random_instance(root / str(seed), seed), seed))
        except InputError:  # the bound leaves a model no option
            continue
    return instances


@pytest.mark.parametrize("seed", SEEDS)
def test_exact_equals_enumerate_with_tail_bounds(random_tail_instances, seed):
    if seed not in random_tail_instances:
        pytest.skip("the bound leaves a model no option (a loader error, tested below)")
    instance = random_tail_instances[seed]
    reference = outcome(solve_enumerate, instance)
    plan = outcome(solve_exact, instance)
    if isinstance(reference, str):
        assert isinstance(plan, str)
        return
    assert plan.quality == pytest.approx(reference.quality, abs=1e-6)
    assert_returned(instance, plan)
    assert_returned(instance, reference)
    heuristic = outcome(solve_heuristic, instance)
    if not isinstance(heuristic, str):
        assert heuristic.quality <= plan.quality + 1e-9
        assert evaluate_plan(instance, heuristic.to_dict()).feasible


def test_random_tail_instances_cover_the_cases(random_tail_instances):
    """Most seeds load, and the bound binds on some plan (a model at its tail load)."""
    assert len(random_tail_instances) >= 8
    binding = 0
    for instance in random_tail_instances.values():
        plan = outcome(solve_exact, instance)
        if not isinstance(plan, str):
            binding += bool(np.any(np.isclose(plan.models.p99_ttft_ms, instance.tail_slo_ms["p99"], rtol=1e-6)))
    assert binding >= 2


# ---------------------------------------------------------------- bad input


def test_bound_without_the_column_is_named(tiny_copy):
    edit(tiny_copy / "instance.toml", "slo_mean_ttft_ms = 60.0", "slo_mean_ttft_ms = 60.0\nslo_p99_ttft_ms = 220")
    with pytest.raises(InputError, match=r"profiles.csv: column 'p99_ttft_ms' is missing"):
        load_instance(tiny_copy)


@pytest.mark.parametrize("value", ["-5", "0", '"fast"'])
def test_bad_bound_is_named(tiny_p99, value, capsys):
    edit(tiny_p99 / "instance.toml", "slo_p99_ttft_ms = 220", f"slo_p99_ttft_ms = {value}")
    assert solve.main([str(tiny_p99), "--method", "exact", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "field 'workload.slo_p99_ttft_ms'" in err


def test_bad_percentile_cell_is_named(tiny_p99):
    edit(tiny_p99 / "profiles.csv", "large,2,50,8,140,400", "large,2,50,8,140,")
    with pytest.raises(InputError, match=r"line 7: column 'p99_ttft_ms': empty"):
        load_instance(tiny_p99)


def test_bound_that_leaves_a_model_no_option_is_named(tiny_p99):
    edit(tiny_p99 / "instance.toml", "slo_p99_ttft_ms = 220", "slo_p99_ttft_ms = 100")
    with pytest.raises(InputError, match=r"field 'workload.slo_p99_ttft_ms': no option of model 'large' meets "
                                         r"100 ms \(its lowest p99 TTFT, at a first profiled load, is 150 ms\)"):
        load_instance(tiny_p99)


def test_a_reference_that_breaks_the_bound_is_reported_infeasible(tiny_p99, capsys):
    """quality-greedy sends p1, p2 and p3 to large (w = 0.75, 7.5 rps): p99 200 + 3.5 * 50 = 375 ms > 220."""
    instance = load_instance(tiny_p99)
    plan = solve_quality_greedy(instance)
    assert plan.shares[1] == pytest.approx(0.75) and plan.models.p99_ttft_ms[1] == pytest.approx(375.0)
    assert plan.solver.status == "infeasible"
    rules = {v.rule for v in evaluate_plan(instance, plan.to_dict()).violations}
    assert "(4.6) p99 TTFT" in rules
    assert solve.main([str(tiny_p99), "--method", "quality-greedy", "--quiet"]) == 3
