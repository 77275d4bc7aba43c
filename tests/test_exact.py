"""The joint MIP: tiny's hand optimum, agreement with `enumerate` on seeded random instances,
the model's structure, determinism, and the routing prices (strong duality, the argmax rule)."""

import dataclasses

import numpy as np
import pyomo.environ as pyo
import pytest
from pyomo.repn import generate_standard_repn

from models.methods import cut_loop
from models.methods.brute_force import solve_enumerate
from models.evaluation.evaluate import evaluate_plan
from models.methods.exact import build_joint_mip, solve_exact
from models.problem.tolerances import GAP_FLOOR
from models.problem.instance import Option, load_instance
from models.problem.plan import NoPlanInTime
from models.methods.routing import build_routing_lp
from models.problem.solver import solve_model
from models.problem.transport import Prompts, best_routing
from random_instances import outcome, write_random_instance
import solve

TINY_OPTIMUM = 1349 / 1620  # data/tiny/README.md
SEEDS = range(36)


@pytest.fixture(scope="module")
def random_instances(tmp_path_factory):
    root = tmp_path_factory.mktemp("random")
    return {seed: load_instance(write_random_instance(root / str(seed), seed)) for seed in SEEDS}


@pytest.mark.parametrize("per_prompt", [False, True])
def test_tiny_optimum(tiny, per_prompt):
    plan = solve_exact(tiny, per_prompt=per_prompt)
    assert plan.quality == pytest.approx(TINY_OPTIMUM, abs=1e-6)
    assert plan.setup == (Option(2, 50), Option(2, 50))
    assert plan.solver.status == "optimal" and plan.solver.gap <= GAP_FLOOR  # the MIP tolerance bounds the gap claimed
    assert evaluate_plan(tiny, plan.to_dict()).consistent


@pytest.mark.parametrize("seed", SEEDS)
def test_exact_equals_enumerate(random_instances, seed):
    instance = random_instances[seed]
    reference = outcome(solve_enumerate, instance)
    plan = outcome(solve_exact, instance)
    if isinstance(reference, str):
        assert plan == reference  # both infeasible, for the same stated reason
        return
    assert plan.quality == pytest.approx(reference.quality, abs=1e-6)
    assert plan.solver.status == "optimal"
    evaluation = evaluate_plan(instance, plan.to_dict())
    assert evaluation.consistent, (evaluation.violations, evaluation.mismatches)


def test_random_instances_cover_the_cases(random_instances):
    """The seeds include infeasible instances, optional models and non-convex curves."""
    infeasible = sum(isinstance(outcome(solve_exact, i), str) for i in random_instances.values())
    optional = sum(any(not m.required for m in i.models) for i in random_instances.values())
    nonconvex = sum(len(build_joint_mip(i).NONCONVEX) > 0 for i in random_instances.values())
    assert infeasible >= 5 and optional >= 10 and nonconvex >= 10


@pytest.mark.parametrize("seed", SEEDS[::4])
def test_per_prompt_formulation_agrees(random_instances, seed):
    instance = random_instances[seed]
    cuts = outcome(solve_exact, instance)
    per_prompt = outcome(lambda i: solve_exact(i, per_prompt=True), instance)
    if isinstance(cuts, str):
        assert per_prompt == cuts
    else:
        assert per_prompt.quality == pytest.approx(cuts.quality, abs=1e-6)


# ---------------------------------------------------------------- structure (no solver)


def test_tiny_model_structure(tiny):
    m = build_joint_mip(tiny, placement="per-gpu")
    # options with curves that fit: small tp1/50, tp1/100, tp2/50; large tp2/50, tp2/100
    assert len(m.CHOICES) == 5 and len(m.NONCONVEX) == 0
    assert len(m.place) == 5 * 2
    # segments: 2 + 1 + 1 for small, 2 + 2 for large, all convex
    assert len(m.convex_epigraph) == 8
    assert len(m.gpu_order) == 1 and len(m.quality_cuts) == 0
    memory = generate_standard_repn(m.memory[0].body)
    coefficients = {v.index()[:3]: c for v, c in zip(memory.linear_vars, memory.linear_coefs)}
    assert coefficients == {("small", 1, 50): 6.0, ("small", 1, 100): 6.0, ("small", 2, 50): 4.0,
                            ("large", 2, 50): 12.0, ("large", 2, 100): 12.0}


def test_tiny_patterns(tiny):
    # maximal contents of an 18 GB GPU, one shard per model: small tp1/50 (6 GB, 50 %) + large tp2/50
    # (12 GB, 50 %); small tp2/50 (4 GB) + large tp2/50; small tp1/100 alone and large tp2/100 alone (100 %
    # of compute). small tp1/50 alone is not maximal: large tp2/50 still fits beside it.
    m = build_joint_mip(tiny)
    contents = {frozenset(h[1:] for h in m.HOLDS if h[0] == p) for p in m.PATTERNS}
    assert contents == {frozenset({("small", 1, 50), ("large", 2, 50)}), frozenset({("small", 2, 50), ("large", 2, 50)}),
                        frozenset({("small", 1, 100)}), frozenset({("large", 2, 100)})}
    assert len(m.gpu_count) == 1 and not hasattr(m, "place")


def test_convex_epigraph_is_the_perspective(tiny):
    # large tp2/mps50, second segment: H = 40 + 180 (w - 0.4) = 180 w - 32 on [0.4, 0.8]
    m = build_joint_mip(tiny)
    row = m.convex_epigraph["large", 2, 50, 1]
    repn = generate_standard_repn(row.body)
    terms = {v.name: c for v, c in zip(repn.linear_vars, repn.linear_coefs)}
    sign = 1 if row.has_lb() else -1  # contribution - 180 share + 32 choose >= 0
    assert {k: sign * c for k, c in terms.items()} == pytest.approx(
        {"contribution[large,2,50]": 1.0, "share[large,2,50]": -180.0, "choose[large,2,50]": 32.0})


def test_nonconvex_curve_gets_segment_binaries(random_instances):
    instance = next(i for i in random_instances.values() if len(build_joint_mip(i).NONCONVEX) > 0)
    m = build_joint_mip(instance)
    for c in m.NONCONVEX:
        segments = [s for s in m.NONCONVEX_SEGMENTS if s[:3] == c]
        assert len(segments) >= 2 and all(m.seg[s].is_binary() for s in segments)


def test_per_prompt_model_size_follows_distinct_rows(tiny):
    m = build_joint_mip(tiny, per_prompt=True)
    assert len(m.y) == 4 * 2 and not hasattr(m, "quality_cuts")


# ---------------------------------------------------------------- runs


def test_determinism(random_instances):
    instance = random_instances[0]
    first, second = (solve_exact(instance).to_dict() for _ in range(2))
    for plan in (first, second):
        plan["solver"].pop("seconds")
    assert first == second


@pytest.mark.parametrize("solve", [solve_exact, solve_enumerate])
def test_target_at_the_lowest_reachable_ttft(tiny, solve):
    """tiny's lowest mean TTFT is 18 ms (README), with every prompt on small at setup C: a target of
    exactly 18 ms is met by that plan, quality (0.9 + 0.5 + 0.2 + 0.6) / 4 = 0.55; at 18.001 ms the plan
    sends 0.001 / 82 of the share to large (mean TTFT 18 + 82 w on large's first segment), gaining 0.8 per
    unit share (p3 moves first): quality 0.55 + 0.8 * 0.001 / 82."""
    plan = solve(dataclasses.replace(tiny, slo_mean_ttft_ms=18.0))
    assert plan.quality == pytest.approx(0.55, abs=1e-9)
    assert plan.mean_ttft_ms == pytest.approx(18.0, abs=1e-7) and plan.slo_met
    plan = solve(dataclasses.replace(tiny, slo_mean_ttft_ms=18.001))
    assert plan.shares[1] == pytest.approx(0.001 / 82, rel=1e-6)
    assert plan.quality == pytest.approx(0.55 + 0.8 * 0.001 / 82, abs=1e-9)


def test_time_limit_without_plan(tiny):
    with pytest.raises(NoPlanInTime):
        solve_exact(tiny, time_limit=1e-9)


def test_time_limit_with_an_incumbent(tiny, monkeypatch, capsys):
    """When HiGHS stops at its time limit with a solution, the plan is that incumbent with the MIP's
    bound and gap, status time_limit, and the command line exits 0. HiGHS is made to report a time
    limit, and a bound 0.01 above its own, on the first MIP of the loop."""
    real_solve = cut_loop.solve_model
    calls = []

    def first_stops_at_time_limit(m, solver=None, **options):
        result = real_solve(m, solver, **options)
        calls.append(result)
        if len(calls) == 1:
            return dataclasses.replace(result, status="time_limit", bound=result.bound + 0.01)
        return result

    monkeypatch.setattr(cut_loop, "solve_model", first_stops_at_time_limit)
    plan = solve_exact(tiny, time_limit=60)
    assert plan.solver.status == "time_limit"
    assert plan.solver.bound == pytest.approx(calls[0].bound + 0.01)
    assert plan.solver.gap == pytest.approx((plan.solver.bound - plan.quality) / plan.quality)
    assert evaluate_plan(tiny, plan.to_dict()).consistent
    calls.clear()
    assert solve.main([str(tiny.folder), "--method", "exact", "--time-limit", "60"]) == 0
    assert "status time_limit" in capsys.readouterr().out


def test_write_model(tiny, tmp_path):
    solve_exact(tiny, placement="patterns", write_model=str(tmp_path / "tiny.lp"))
    text = (tmp_path / "tiny.lp").read_text()
    assert "quality_cuts" in text and "pattern_cover" in text
    solve_exact(tiny, placement="per-gpu", write_model=str(tmp_path / "per-gpu.lp"))
    assert "gpu_order" in (tmp_path / "per-gpu.lp").read_text()


# ---------------------------------------------------------------- routing prices


def exact_plans(tiny, random_instances):
    plans = [(tiny, solve_exact(tiny))]
    for instance in list(random_instances.values())[:12]:
        plan = outcome(solve_exact, instance)
        if not isinstance(plan, str):
            plans.append((instance, plan))
    return plans


def test_prices_by_strong_duality(tiny, random_instances):
    """Q(w) = (1/N) sum_x max_i (s[x,i] - alpha[i]) + sum_i alpha[i] w[i] at the plan's prices,
    with Q from the independent evaluator: the prices are optimal transportation duals."""
    for instance, plan in exact_plans(tiny, random_instances):
        deployed = [k for k, o in enumerate(plan.setup) if o is not None]
        prices = plan.prices[deployed]
        shares = np.array(plan.shares)[deployed]
        dual_value = Prompts.merge(instance.scores[:, deployed]).bound(prices) + prices @ shares
        quality = evaluate_plan(instance, plan.to_dict()).quality
        assert dual_value == pytest.approx(quality, abs=1e-7)


def test_price_rule_sends_prompts_where_the_optimum_does(tiny, random_instances):
    """Every model an optimal routing uses for a prompt maximizes s - alpha; where the maximum is
    unique, the rule's choice is the one the optimum uses."""
    for instance, plan in exact_plans(tiny, random_instances):
        deployed = [k for k, o in enumerate(plan.setup) if o is not None]
        prompts = Prompts.merge(instance.scores[:, deployed])
        fractions = best_routing(prompts, np.array(plan.shares)[deployed]).fractions
        utilities = prompts.rows - plan.prices[deployed]
        best = utilities.max(axis=1, keepdims=True)
        used = fractions > 1e-9
        assert np.all(utilities[used] >= (best - 1e-7).repeat(len(deployed), axis=1)[used])
        unique = (utilities >= best - 1e-7).sum(axis=1) == 1
        chosen = np.argmax(utilities, axis=1)
        assert np.all(used[unique, chosen[unique]])


def test_routing_lp_strong_duality(tiny):
    """The routing LP on tiny's optimal setup, all prompts in the window: the dual objective from the
    duals and reduced costs equals the primal optimum, and the share rows' duals are the prices."""
    setup = (Option(2, 50), Option(2, 50))
    prompts = Prompts.merge(tiny.scores)
    m = build_routing_lp(tiny, setup, prompts.rows, prompts.counts, np.zeros(2), 0.0, {})
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    m.rc = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    assert solve_model(m, tight_lp=True).status == "optimal"
    dual_objective = sum(m.dual[c] * (active_bound(c.body, c.lower, c.upper) - generate_standard_repn(c.body).constant)
                         for c in m.component_data_objects(pyo.Constraint))
    dual_objective += sum(m.rc[v] * active_bound(v, v.lb, v.ub) for v in m.component_data_objects(pyo.Var))
    assert dual_objective == pytest.approx(pyo.value(m.quality), abs=1e-9)
    assert pyo.value(m.quality) == pytest.approx(TINY_OPTIMUM, abs=1e-8)
    assert -m.dual[m.share_definition[1]] + m.dual[m.share_definition[0]] == pytest.approx(0.4, abs=1e-9)


def active_bound(expression, lower, upper):
    """The bound a row or variable sits at (the one nearer its value); its dual is zero otherwise."""
    value = pyo.value(expression)
    candidates = [pyo.value(b) for b in (lower, upper) if b is not None]
    return min(candidates, key=lambda b: abs(b - value)) if candidates else 0.0


def test_threads_after_other_highs_runs(tiny):
    """HiGHS fixes its thread count at its first run in a process and fails a later run that asks for another
    one unless its scheduler is reset (as `solve_model` does): exact with threads=1 after runs with the
    default count gives the same plan."""
    default = solve_exact(tiny)
    one_thread = solve_exact(tiny, threads=1)
    assert one_thread.solver.status == "optimal" and one_thread.quality == pytest.approx(default.quality, abs=1e-9)
