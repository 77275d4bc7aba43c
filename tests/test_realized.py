"""Realized routing and the fixed-latency router, on tiny by hand and on seeded random instances.

tiny (data/tiny/README.md): scores (small, large) p1 (0.9, 1.0), p2 (0.5, 0.9), p3 (0.2, 1.0),
p4 (0.6, 0.6); lam = 10 requests/s, tau = 60 ms. The heuristic's default floor keeps only setup
C (both models tp2/mps50): H_small(w) = 18 w; H_large through (0, 0), (0.4, 40), (0.8, 112).
"""

import dataclasses

import numpy as np
import pytest

from models.evaluation.evaluate import evaluate_plan
from models.methods.greedy import solve_quality_greedy
from models.problem.instance import Option, load_instance
from models.problem.plan import Infeasible, SolverReport, build_plan
from models.problem.published import PublishedRouting
from models.analysis.references import latency_oblivious_table
from models.output.report import format_realized
from models.problem.realized import realized_routing
from models.methods.fixed_latency import solve_fixed_latency, zero_load_ttft
from models.problem.transport import Prompts, best_routing
from random_instances import write_random_instance

SETUP_C = (Option(2, 50), Option(2, 50))
SEEDS = range(12)


def tiny_plan(tiny, large_price, large_share=37 / 81):
    return build_plan(tiny, "hand", SETUP_C, ((0, 1), (0, 1)), [1 - large_share, large_share], 0.0,
                      SolverReport("heuristic", 0.0), routing=PublishedRouting.of_prices([0.0, large_price]))


@pytest.fixture(scope="module")
def random_instances(tmp_path_factory):
    root = tmp_path_factory.mktemp("random")
    return [load_instance(write_random_instance(root / str(seed), seed)) for seed in SEEDS]


# ---------------------------------------------------------------- realized routing


def test_tie_goes_to_the_model_listed_first(tiny):
    # price gap 0.4 = p2's gain on large: p2 is indifferent and goes to small (listed first);
    # p1 (gain 0.1) and p4 (0) go to small, p3 (0.8) to large. Shares 3/4, 1/4;
    # quality (0.9 + 0.5 + 1.0 + 0.6) / 4 = 0.75; TTFT 18 * 0.75 + 0.25 * 100 (below large's first point) = 38.5
    realized = realized_routing(tiny, tiny_plan(tiny, 0.4))
    assert list(realized.models.realized_share) == [0.75, 0.25]
    assert realized.realized_quality == pytest.approx(0.75, abs=1e-12)
    assert realized.realized_mean_ttft_ms == pytest.approx(38.5, abs=1e-9)
    assert realized.realized_slo_met
    assert realized.planned_mean_ttft_ms == pytest.approx(60.0, abs=1e-9)


def test_realized_routing_can_break_the_target(tiny):
    # price gap 0.3: p2 (gain 0.4) and p3 go to large. Shares 1/2, 1/2; quality (0.9 + 0.9 + 1.0 + 0.6) / 4 = 0.85;
    # TTFT 18 * 0.5 + 40 + 180 * (0.5 - 0.4) = 67 ms, over the 60 ms target
    realized = realized_routing(tiny, tiny_plan(tiny, 0.3))
    assert list(realized.models.realized_share) == [0.5, 0.5]
    assert realized.realized_quality == pytest.approx(0.85, abs=1e-12)
    assert realized.realized_mean_ttft_ms == pytest.approx(67.0, abs=1e-9)
    assert not realized.realized_slo_met
    assert "BROKEN" in format_realized(realized, 0)


def test_undeployed_models_get_nothing_and_prices_are_required(tiny):
    plan = build_plan(tiny, "hand", (Option(2, 50), None), ((0, 1), ()), [1.0, 0.0], 0.55,
                      SolverReport("heuristic", 0.0), routing=PublishedRouting.of_prices([0.0, None]))
    realized = realized_routing(tiny, plan)
    assert list(realized.models.realized_share) == [1.0, 0.0]
    unpriced = build_plan(tiny, "hand", SETUP_C, ((0, 1), (0, 1)), [0.5, 0.5], 0.85,
                          SolverReport("heuristic", 0.0), routing=PublishedRouting.of_prices([0.0, None]))
    with pytest.raises(ValueError, match="'large' has no price"):
        realized_routing(tiny, unpriced)


def test_price_routing_is_optimal_for_its_own_shares(random_instances):
    # the rule argmax s - alpha solves the transportation problem at the shares it realizes
    # (complementary slackness), whatever the prices: its quality is Q of its shares
    rng = np.random.default_rng(0)
    for instance in random_instances:
        try:
            plan = solve_quality_greedy(instance)
        except Infeasible:  # no setup deploys every model the greedy routing uses
            continue
        prices = [None if np.isnan(p) else float(rng.uniform(0, 0.5)) for p in plan.prices]
        priced = dataclasses.replace(plan, routing=PublishedRouting.of_prices(prices))
        realized = realized_routing(instance, priced)
        shares = realized.models.realized_share.to_numpy()
        quality = best_routing(Prompts.merge(instance.scores), shares).quality
        assert realized.realized_quality == pytest.approx(quality, abs=1e-9)


# ---------------------------------------------------------------- the fixed-latency router


def test_fixed_latency_on_tiny(tiny):
    # zero-load TTFTs on C: small 18 ms, large 100 ms. Believed TTFT 18 (1 - w) + 100 w <= 60 gives
    # w <= 21/41 on large. Q(w) = 0.85 + 0.1 (w - 1/2) on [1/2, 3/4] (p1, gain 0.1, is split):
    # Q = 0.85 + 0.1 / 82. True TTFT: 18 * 20/41 + 40 + 180 * (21/41 - 0.4) = 68.976 ms > 60.
    # The published prices tie the split prompt p1: their difference is p1's gain, 0.1.
    plan = solve_fixed_latency(tiny)
    assert plan.setup == SETUP_C
    assert plan.shares[1] == pytest.approx(21 / 41, abs=1e-12)
    assert plan.quality == pytest.approx(0.85 + 0.1 / 82, abs=1e-12)
    assert plan.mean_ttft_ms == pytest.approx(18 * 20 / 41 + 40 + 180 * (21 / 41 - 0.4), abs=1e-9)
    assert plan.notes["believed_mean_ttft_ms"] == pytest.approx(60.0, abs=1e-3)
    assert plan.solver.status == "infeasible"
    small_price, large_price = plan.prices
    assert large_price - small_price == pytest.approx(0.1, abs=1e-9)
    evaluation = evaluate_plan(tiny, plan.to_dict())
    assert not evaluation.mismatches
    assert [v.rule for v in evaluation.violations] == ["(6) SLO"]


def test_fixed_latency_with_a_loose_target(tiny):
    # tau = 200: the greedy routing (p4's tie to small; w_large = 3/4) is believed at 18/4 + 75 = 79.5 ms
    # and truly takes 18/4 + 40 + 180 * 0.35 = 107.5 ms: within the target, a plan like any other
    loose = dataclasses.replace(tiny, slo_mean_ttft_ms=200.0)
    plan = solve_fixed_latency(loose)
    assert plan.shares[1] == pytest.approx(0.75)
    assert plan.quality == pytest.approx(0.875)
    assert plan.mean_ttft_ms == pytest.approx(107.5)
    assert plan.solver.status == "heuristic"
    assert evaluate_plan(loose, plan.to_dict()).consistent


def test_latency_oblivious_table_on_tiny(tiny):
    # quality-greedy: w_large = 3/4 on its fastest setup C, 107.5 ms (see above): 47.5 ms over
    table = latency_oblivious_table(tiny).set_index("method")
    assert table.over_target_ms["quality-greedy"] == pytest.approx(47.5)
    assert table.over_target_ms["fixed-latency"] == pytest.approx(18 * 20 / 41 + 40 + 180 * (21 / 41 - 0.4) - 60)
    assert not table.slo_met.any()


def test_fixed_latency_believes_its_routing_meets_the_target(random_instances):
    for instance in random_instances:
        try:
            plan = solve_fixed_latency(instance, utilization_floor=0.0)
        except Infeasible:
            continue
        shares = np.array(plan.shares)[[o is not None for o in plan.setup]]
        believed = shares @ zero_load_ttft(instance, plan.setup)
        assert believed <= instance.slo_mean_ttft_ms * (1 + 1e-9)
        evaluation = evaluate_plan(instance, plan.to_dict())
        assert not evaluation.mismatches, evaluation.mismatches
        assert evaluation.feasible == (plan.solver.status == "heuristic")
