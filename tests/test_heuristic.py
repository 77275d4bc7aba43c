"""The RouterWise heuristic: pruning, its inner pieces, and properties on tiny and seeded random instances.

tiny (data/tiny/README.md): lam = 10 requests/s, tau = 60 ms, two 18 GB GPUs.
  small's usable options: tp1/mps50, tp1/mps100, tp2/mps50; large's: tp2/mps50, tp2/mps100.
  Compute tp x mps (cluster 200): small 50, 100, 100; large 100, 200.
  6 setups; over the cluster (> 200): the three with large at tp2/mps100 (200 + 50..100).
  Left: A = small tp1/mps50 (150), B = small tp1/mps100 (200), C = small tp2/mps50 (200),
  each with large tp2/mps50. B cannot be packed: large's mps50 shard sits on both GPUs, and
  small's mps100 shard would bring one of them to 150%. A uses 75% of the compute.
  The optimum is C with share 37/81 on large, quality 1349/1620; A reaches 0.827143.
"""

import dataclasses
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from models.methods.brute_force import solve_enumerate
from models.evaluation.evaluate import evaluate_plan
from models.methods.heuristic import (PriceRouter, SetupLatency, exact_quality, format_spread, project,
                              prune_setups, repair, search_setups, search_summary, setup_spread,
                              solve_heuristic)
from models.problem.instance import Curve, Instance, Model, Option, load_instance
from models.problem.plan import Infeasible, NoPlanInTime
from models.problem.setup import find_placement, first_fit_decreasing
from models.problem.transport import Prompts
from random_instances import write_random_instance

TINY_OPTIMUM = 1349 / 1620
TINY_A = 0.75 + 0.4 * (62 / 140 - 0.25)  # setup A's best quality (README)


SEEDS = range(26)  # 21 of them feasible (enumerate finds a plan)


def outcome(solve, instance):
    """A method's plan, or None when it raises Infeasible."""
    try:
        return solve(instance)
    except Infeasible:
        return None


@pytest.fixture(scope="module")
def random_instances(tmp_path_factory):
    root = tmp_path_factory.mktemp("random")
    return {seed: load_instance(write_random_instance(root / str(seed), seed)) for seed in SEEDS}


@pytest.fixture(scope="module")
def references(random_instances):
    """enumerate's plan (or None when infeasible) on every seeded random instance."""
    return {seed: outcome(solve_enumerate, instance) for seed, instance in random_instances.items()}


def heuristic_without_floor(instance):
    return solve_heuristic(instance, utilization_floor=0.0, progress=False)


@pytest.fixture(scope="module")
def heuristic_plans(random_instances):
    """The heuristic's plan with no utilization floor (or None when it finds none) on every seeded random instance."""
    return {seed: outcome(heuristic_without_floor, instance) for seed, instance in random_instances.items()}


# ---------------------------------------------------------------- pruning


def test_tiny_pruning_counts(tiny):
    search = prune_setups(tiny, 1.0)
    assert (search.considered, search.over_compute, search.under_floor, search.unpackable) == (6, 3, 1, 1)
    assert [setup for setup, _ in search.kept] == [(Option(2, 50), Option(2, 50))]  # C
    assert len(prune_setups(tiny, 0.75).kept) == 2  # A (exactly 75%) and C
    with pytest.raises(ValueError, match="not a fraction"):
        prune_setups(tiny, 1.5)


def test_first_fit_decreasing_places_validly_and_never_beats_exact_search(random_instances):
    for instance in random_instances.values():
        for setup, placement in prune_setups(instance, 0.0).kept:
            assert find_placement(instance, setup) is not None
            memory, compute = np.zeros(instance.gpu_count), np.zeros(instance.gpu_count)
            for model, option, gpus in zip(instance.models, setup, placement):
                assert len(gpus) == (option.tp if option else 0) and len(set(gpus)) == len(gpus)
                for g in gpus:
                    memory[g] += model.shard_gb(option.tp)
                    compute[g] += option.mps_pct
            assert np.all(memory <= instance.gpu_memory_gb + 1e-9) and np.all(compute <= 100)


def test_first_fit_decreasing_can_miss_a_packing():
    # six tp1 models with MPS shares 50, 40, 30, 30, 30, 20 on two GPUs (200% in all). First fit
    # decreasing puts 50 + 40 on GPU 0 and 30 + 30 + 30 on GPU 1; 20 then fits on neither, though
    # {50, 30, 20} and {40, 30, 30} pack.
    shares = (50, 40, 30, 30, 30, 20)
    models = tuple(Model(f"m{i}", 1.0, 0.0) for i in range(len(shares)))
    curves = {(m.name, Option(1, s)): Curve((10.0,), (10.0,)) for m, s in zip(models, shares)}
    instance = Instance(name="ffd", description="", folder=Path("."), scores_path=Path("scores.csv"), gpu_count=2,
                        gpu_memory_gb=80.0, gpu_type="", arrival_rate_rps=10.0, slo_mean_ttft_ms=100.0, tp_options=(1,),
                        mps_options=tuple(sorted(set(shares))), models=models, curves=MappingProxyType(curves),
                        prompt_ids=("p",), scores=np.zeros((1, len(shares))))
    setup = tuple(Option(1, s) for s in shares)
    assert first_fit_decreasing(instance, setup) is None
    assert find_placement(instance, setup) is not None


# ---------------------------------------------------------------- inner pieces


def test_price_router_matches_direct_routing():
    rng = np.random.default_rng(0)
    prompts = Prompts.merge(np.round(rng.random((3000, 3)), 2))
    router = PriceRouter(prompts, [0, 1, 2])
    weights = prompts.counts / prompts.prompt_count
    prices = np.zeros(3)
    for scale in [0.001] * 50 + [0.05] * 20:  # small moves re-route few rows; large ones rebase
        prices = prices + rng.normal(0, scale, 3)
        shares, constant = router.route(prices)
        utility = prompts.rows - prices
        best = np.argmax(utility, axis=1)
        assert np.allclose(shares, np.bincount(best, weights=weights, minlength=3), atol=1e-12)
        assert constant == pytest.approx(weights @ utility.max(axis=1), abs=1e-12)


def test_projection_onto_capped_simplex():
    rng = np.random.default_rng(1)
    for _ in range(200):
        caps = rng.uniform(0.2, 1.0, 3)
        caps[0] = max(caps[0], 1.0 - caps[1:].sum())
        values = rng.normal(0.3, 0.5, 3)
        point = project(values, caps)
        assert point.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(point >= 0) and np.all(point <= caps + 1e-15)
        # no feasible point is closer: check against random points of the capped simplex
        for _ in range(20):
            other = project(rng.normal(0.3, 0.5, 3), caps)
            assert np.linalg.norm(values - point) <= np.linalg.norm(values - other) + 1e-12


def test_repair_on_tiny_setup_c(tiny):
    # C at w_large = 0.5: T = 18 * 0.5 + (40 + 180 * 0.1) = 67 ms, 7 ms over. Moving share from
    # large (slope 180) to small (slope 18) lowers T by 162 per unit: w_large = 0.5 - 7/162 = 37/81.
    latency = SetupLatency.of(tiny, (Option(2, 50), Option(2, 50)))
    fixed = repair(latency, np.array([0.5, 0.5]))
    assert fixed[1] == pytest.approx(37 / 81, abs=1e-9)
    assert latency.total(fixed) <= 60.0
    # with a 10 ms target no shift gets there: the lowest T is 18 ms, everything on small
    assert repair(SetupLatency(latency.pieces, 10.0), np.array([0.5, 0.5])) is None


def test_bounds_are_upper_bounds(random_instances):
    # D_w(alpha) >= Q(w) for any prices (weak duality), so every candidate's bound is at least its Q
    for instance in random_instances.values():
        prompts = Prompts.merge(instance.scores)
        for result in search_setups(instance, prompts, 0.0).results:
            if result.candidate is not None:
                assert result.candidate.bound >= exact_quality(prompts, result) - 1e-9


# ---------------------------------------------------------------- whole plans


def test_tiny_plan(tiny):
    plan = solve_heuristic(tiny, progress=False)
    assert plan.setup == (Option(2, 50), Option(2, 50))
    assert plan.solver.status == "heuristic"
    # the ascent's last steps are 1e-4 in share and Q rises 0.4 per unit of share on large here,
    # so the best iterate within the SLO is within about 4e-5 of the optimum
    assert TINY_OPTIMUM - 1e-4 <= plan.quality <= TINY_OPTIMUM + 1e-9
    assert evaluate_plan(tiny, plan.to_dict()).consistent
    notes = plan.notes
    assert (notes["setups_considered"], notes["setups_kept"], notes["setups_evaluated"]) == (6, 1, 1)
    assert set(notes["seconds"]) == {"prune", "inner", "exact_quality", "final_prices"}
    assert search_summary(notes).startswith("setups: 6 considered, 3 over the cluster's compute, 1 under the floor, "
                                            "1 not packed by first-fit decreasing, 1 kept, 1 evaluated")


def test_tiny_infeasible_target(tiny):
    # the lowest mean TTFT on C is 18 ms (everything on small)
    with pytest.raises(Infeasible, match="none of the 1 setups"):
        solve_heuristic(dataclasses.replace(tiny, slo_mean_ttft_ms=10.0), progress=False)


def test_floor_above_every_setup_is_reported(tiny):
    # on four GPUs (400% of compute) tiny's setups use at most small 100 + large 200 = 300%
    with pytest.raises(Infeasible, match="no setup passes pruning"):
        solve_heuristic(dataclasses.replace(tiny, gpu_count=4), progress=False)


def test_time_limit_before_any_setup(tiny):
    with pytest.raises(NoPlanInTime):
        solve_heuristic(tiny, time_limit=1e-9, progress=False)


def test_time_limit_returns_the_best_so_far(tiny, monkeypatch):
    # a clock that only moves when a setup is solved, by 10 s: with a 5 s limit only the first kept
    # setup (A, in enumeration order) is solved, and its plan comes back marked as cut short
    import models.methods.heuristic as heuristic
    now = [0.0]
    solve = heuristic.inner_solve

    def slow_solve(*args):
        now[0] += 10.0
        return solve(*args)

    monkeypatch.setattr(heuristic.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(heuristic, "inner_solve", slow_solve)
    plan = solve_heuristic(tiny, time_limit=5.0, utilization_floor=0.0, progress=False)
    assert plan.setup == (Option(1, 50), Option(2, 50))
    assert plan.quality == pytest.approx(TINY_A, abs=1e-4)
    assert "cut_short" in plan.notes and plan.solver.status == "heuristic"


def test_same_plan_twice(random_instances, heuristic_plans):
    first = heuristic_plans[25]  # three models; the heuristic ends below the optimum here
    second = heuristic_without_floor(random_instances[25])
    assert first.setup == second.setup
    assert first.shares == second.shares
    assert np.array_equal(first.prices, second.prices, equal_nan=True)


def test_random_plans_pass_the_evaluator_and_never_beat_enumerate(random_instances, references, heuristic_plans):
    found = [seed for seed in SEEDS if heuristic_plans[seed] is not None]
    assert len(found) >= 20
    for seed in found:
        plan, reference = heuristic_plans[seed], references[seed]
        evaluation = evaluate_plan(random_instances[seed], plan.to_dict())
        assert evaluation.consistent, (seed, evaluation.violations, evaluation.mismatches)
        assert reference is not None, seed  # a plan the evaluator accepts proves the instance feasible
        assert plan.quality <= reference.quality + 1e-6, seed


def test_infeasible_random_instances_stay_infeasible(references, heuristic_plans):
    assert any(references[seed] is None for seed in SEEDS)
    for seed in SEEDS:
        if references[seed] is None:
            assert heuristic_plans[seed] is None, seed


# ---------------------------------------------------------------- setup spread


def test_tiny_spread(tiny):
    spread = setup_spread(tiny, utilization_floor=0.0)
    assert list(spread.setups.compute_pct) == [150, 200]  # A, C
    assert spread.worst == pytest.approx(TINY_A, abs=1e-4)
    assert spread.best == pytest.approx(TINY_OPTIMUM, abs=1e-4)
    assert spread.spread == pytest.approx(TINY_OPTIMUM / TINY_A - 1, abs=1e-3)
    assert format_spread(spread, 0.0).startswith("tiny (utilization floor 0): 2 setups kept, 2 within the target")
