"""The capacity relaxation (models/methods/capacity_bound.py): its bound holds for every plan, exact returns
the widest setup's plan without a MIP only where that plan attains it, and otherwise starts its loop from it.
The bound is computed here by a plain LP over the prompts, not by the planner's routing code."""

import numpy as np
import pyomo.environ as pyo
import pytest

from models.evaluation.evaluate import evaluate_plan
from models.methods import routing
from models.methods.capacity_bound import capacity_bound, capped_optimum, widest_plan
from models.methods.exact import solve_exact
from models.output.report import format_plan
from models.problem.instance import load_instance
from models.problem.latency import option_pieces
from models.problem.solver import solve_model
from models.problem.transport import Prompts
from random_instances import outcome, write_random_instance

SEEDS = range(36)


@pytest.fixture(scope="module")
def random_instances(tmp_path_factory):
    root = tmp_path_factory.mktemp("random")
    return {seed: load_instance(write_random_instance(root / str(seed), seed)) for seed in SEEDS}


@pytest.fixture(scope="module")
def larger_instances(tmp_path_factory):
    """5 models, 8 GPUs, 50-200 prompts: enough rows for a sample of them to differ from them all."""
    root = tmp_path_factory.mktemp("larger")
    return [load_instance(write_random_instance(root / str(seed), seed, larger=True)) for seed in SEEDS]


def largest_caps(instance) -> np.ndarray:
    return np.array([max((option_pieces(instance, m, o).max_share for o in instance.options(m)), default=0.0)
                     for m in instance.models])


def relaxation_bound(instance) -> float:
    """max (1/N) sum_x s[x,i] y[x,i] over routings y with each model's share at most its largest option cap."""
    result = solve_model(relaxation_lp(instance), tight_lp=True)
    assert result.status == "optimal"
    return result.objective


def relaxation_lp(instance) -> pyo.ConcreteModel:
    caps = largest_caps(instance)
    scores = instance.scores
    n, models = scores.shape
    lp = pyo.ConcreteModel()
    lp.y = pyo.Var(range(n), range(models), bounds=(0, 1))
    lp.routed = pyo.Constraint(range(n), rule=lambda lp, x: sum(lp.y[x, i] for i in range(models)) == 1)
    lp.cap = pyo.Constraint(range(models), rule=lambda lp, i: sum(lp.y[x, i] for x in range(n)) <= caps[i] * n)
    lp.quality = pyo.Objective(expr=sum(float(scores[x, i]) * lp.y[x, i] for x in range(n) for i in range(models)) / n,
                               sense=pyo.maximize)
    return lp


def test_exact_proves_by_the_relaxation_only_where_it_is_attained(random_instances):
    proven, by_mip = [], []
    for instance in random_instances.values():
        plan = outcome(solve_exact, instance)
        if isinstance(plan, str):
            continue
        bound = relaxation_bound(instance)
        assert plan.quality <= bound + 1e-9
        if "proof" in plan.notes:
            proven.append(instance.name)
            assert plan.notes["mip_rounds"] == 0 and plan.solver.status == "optimal"
            assert plan.quality == pytest.approx(bound, abs=1e-9)
            assert plan.mean_ttft_ms < instance.slo_mean_ttft_ms
            evaluation = evaluate_plan(instance, plan.to_dict())
            assert evaluation.consistent
            assert "\nproof: capacity relaxation" in format_plan(plan, evaluation)
            by_patterns = solve_exact(instance, placement="patterns")  # the MIP, asked for by name
            assert by_patterns.notes["mip_rounds"] >= 1
            assert by_patterns.quality == pytest.approx(plan.quality, abs=1e-6)
        else:
            by_mip.append(instance.name)
    assert len(proven) >= 3 and len(by_mip) >= 5, (proven, by_mip)  # 4 and 25 of the 36 seeds (7 infeasible)


def test_widest_plan_starts_the_loop_when_the_target_binds(random_instances):
    """Where the widest setup meets the target only at it (or misses the bound), exact still solves the MIP,
    and its plan is at least as good as the widest one."""
    started = 0
    for instance in random_instances.values():
        widest = widest_plan(instance, Prompts.merge(instance.scores))
        if widest is None or widest.attains_bound:
            continue
        started += 1
        plan = solve_exact(instance)
        assert "proof" not in plan.notes and plan.notes["mip_rounds"] >= 1
        assert plan.quality >= widest.routing.quality - 1e-9
        assert widest.mean_ttft_ms == pytest.approx(instance.slo_mean_ttft_ms, abs=1e-6)
    assert started >= 1


def test_widest_setup_takes_each_models_largest_cap(random_instances):
    for instance in random_instances.values():
        widest = widest_plan(instance, Prompts.merge(instance.scores))
        if widest is None:
            continue
        for model, option in zip(instance.models, widest.setup):
            caps = [option_pieces(instance, model, o).max_share for o in instance.options(model)]
            assert option_pieces(instance, model, option).max_share == max(caps)
        assert np.all(widest.routing.shares >= -1e-12)


def test_prices_on_the_caps_bound_every_routing(random_instances):
    """Weak duality: B(alpha) >= Qbar for any prices alpha (clipped to alpha >= 0)."""
    rng = np.random.default_rng(0)
    for instance in random_instances.values():
        caps = largest_caps(instance)
        if caps.sum() < 1:
            continue
        bound = relaxation_bound(instance)
        prompts = Prompts.merge(instance.scores)
        for prices in [np.zeros(len(caps)), *rng.uniform(-0.2, 0.5, (5, len(caps)))]:
            assert capacity_bound(prompts, caps, prices) >= bound - 1e-12


def test_a_sample_that_guesses_the_capped_models_proves_by_one_transportation_solve(larger_instances, monkeypatch):
    """With every instance sampled (SAMPLE_ROWS and SAMPLE_STEP made small), the widest plan is proven by the
    capped transportation solve where the sample's capped models are right, and by the routing LP where they
    are not. Each proven plan attains the relaxation's bound as the plain LP computes it, and exact's plan from
    it passes the evaluator."""
    by_routing_lp = {i.name: widest_plan(i, Prompts.merge(i.scores)) for i in larger_instances}
    monkeypatch.setattr(routing, "SAMPLE_ROWS", 20)
    monkeypatch.setattr(routing, "SAMPLE_STEP", 2)
    capped, other = 0, 0
    for instance in larger_instances:
        widest = widest_plan(instance, Prompts.merge(instance.scores))
        before = by_routing_lp[instance.name]
        assert (widest is None) == (before is None)
        if widest is None or not widest.attains_bound:
            continue
        assert widest.routing.quality == pytest.approx(relaxation_bound(instance), abs=1e-9)
        assert np.all(widest.routing.shares <= largest_caps(instance) + 1e-9)
        assert widest.routing.shares.sum() == pytest.approx(1.0, abs=1e-9)
        assert widest.mean_ttft_ms <= instance.slo_mean_ttft_ms
        if "attain the bound" in widest.proof:
            capped += 1
            assert widest.routing.quality_per_ms == 0.0
            if before.attains_bound:  # the routing LP's marginal value of load, at another optimum of the same LP
                assert widest.routing.quality_per_rps == pytest.approx(before.routing.quality_per_rps, abs=1e-6)
            plan = solve_exact(instance)
            assert "attain the bound" in plan.notes["proof"] and plan.notes["mip_rounds"] == 0
            assert plan.solver.bound == widest.bound >= plan.quality - 1e-12  # B(alpha), not the quality
            assert evaluate_plan(instance, plan.to_dict()).consistent
        else:
            other += 1
    assert capped >= 3 and other >= 1, (capped, other)  # 5 and 2 of the 36 seeds


def test_a_wrong_guess_of_the_capped_models_is_declined(larger_instances):
    """Where the routing LP leaves models at their caps, guessing none (a free model then exceeds its cap), or
    also a model that is below its cap at every optimum (its price then falls below 0, and the bound stays
    above the quality), gives no optimum."""
    declined, pinned_too = 0, 0
    for instance in larger_instances:
        widest = widest_plan(instance, Prompts.merge(instance.scores))
        caps = largest_caps(instance)
        if widest is None or not widest.attains_bound or np.any(caps == 0):
            continue
        at_cap = widest.routing.shares >= caps - 1e-7
        if not at_cap.any() or at_cap.all():
            continue
        prompts = Prompts.merge(instance.scores)
        start = np.nan_to_num(widest.routing.prices)
        assert capped_optimum(prompts, caps, at_cap, start) is not None
        assert capped_optimum(prompts, caps, np.zeros(len(caps), dtype=bool), start) is None
        declined += 1
        for k in np.flatnonzero(~at_cap):
            pinned = at_cap.copy()
            pinned[k] = True
            if caps[pinned].sum() < 1 and relaxation_with_share(instance, k, caps[k]) < widest.routing.quality - 1e-9:
                assert capped_optimum(prompts, caps, pinned, start) is None
                pinned_too += 1
    assert declined >= 2 and pinned_too >= 2, (declined, pinned_too)


def relaxation_with_share(instance, model: int, share: float) -> float:
    """The relaxation's bound with `model` held at `share` (the plain LP, one more row)."""
    n = len(instance.scores)
    lp = relaxation_lp(instance)
    lp.held = pyo.Constraint(expr=sum(lp.y[x, model] for x in range(n)) == share * n)
    result = solve_model(lp, tight_lp=True)
    return result.objective if result.status == "optimal" else -np.inf
