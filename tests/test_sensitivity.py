"""Marginal quality of the target and of the load, from the routing LP's duals at the chosen setup.

tiny's optimum (setup C, data/tiny/README.md) sits on large's second segment. In load terms large's
latency-weighted load is G(r) = 180 r - 320 there (through (4, 400) and (8, 1120)), so
H_L(w) = G(lam w) / lam = 180 w - 320 / lam, and H_S(w) = 18 w. The SLO 18 (1 - w) + 180 w - 320 / lam = tau
gives w = (tau - 18 + 320 / lam) / 162, and Q = 0.75 + 0.4 (w - 1/4). So
    dQ/dtau = 0.4 / 162,    dQ/dlam = -0.4 * 320 / (162 lam^2)   (lam = 10).
"""

import dataclasses

import numpy as np

import pytest

from models.methods.exact import solve_exact
from models.problem.instance import load_instance
from models.problem.plan import Infeasible
from models.methods.routing import solve_routing_lp
from random_instances import write_random_instance


def test_tiny_by_hand(tiny):
    sensitivity = solve_exact(tiny).sensitivity
    assert sensitivity["quality_per_ms_of_target"] == pytest.approx(0.4 / 162, rel=1e-7)
    assert sensitivity["quality_per_rps_of_load"] == pytest.approx(-0.4 * 320 / (162 * 100), rel=1e-7)


def quality_at(instance, plan, **changes):
    """The routing LP's optimum at the plan's setup with perturbed data."""
    perturbed = dataclasses.replace(instance, **changes)
    return solve_routing_lp(perturbed, plan.setup, plan.shares, np.nan_to_num(plan.prices)).quality


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """The feasible seeded random instances with their exact plans."""
    root = tmp_path_factory.mktemp("sensitivity")
    plans = {}
    for seed in range(36):
        instance = load_instance(write_random_instance(root / str(seed), seed))
        try:
            plans[seed] = (instance, solve_exact(instance))
        except Infeasible:
            pass
    return plans


def test_random_instances_exercise_both_values(solved):
    values = [plan.sensitivity for _, plan in solved.values()]
    assert sum(v["quality_per_ms_of_target"] > 0 for v in values) >= 3
    assert sum(v["quality_per_rps_of_load"] < 0 for v in values) >= 3


@pytest.mark.parametrize("seed", range(36))
def test_agrees_with_perturbed_resolve(solved, seed):
    """Small steps reproduce the derivatives; the reported 1 ms step never gains more than the
    derivative says (Q is concave in the target)."""
    if seed not in solved:
        pytest.skip("infeasible instance")
    instance, plan = solved[seed]
    per_ms = plan.sensitivity["quality_per_ms_of_target"]
    per_rps = plan.sensitivity["quality_per_rps_of_load"]
    step = 1e-4
    tau, lam = instance.slo_mean_ttft_ms, instance.arrival_rate_rps
    by_tau = (quality_at(instance, plan, slo_mean_ttft_ms=tau + step) - plan.quality) / step
    by_lam = (quality_at(instance, plan, arrival_rate_rps=lam + step) - plan.quality) / step
    assert by_tau == pytest.approx(per_ms, rel=1e-3, abs=1e-6)
    assert by_lam == pytest.approx(per_rps, rel=1e-3, abs=1e-6)
    assert quality_at(instance, plan, slo_mean_ttft_ms=tau + 1) - plan.quality <= per_ms + 1e-7
