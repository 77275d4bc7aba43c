"""`fixed-latency`: a latency-oblivious reference, never a solution.

The fixed-latency router believes every deployed model answers at its
zero-load latency L_i(0) = L_i1 (the SPEC holds latency flat below the first
profiled load), so it believes the mean TTFT is linear in the routing and solves

    max (1/N) sum_x sum_i s[x,i] y[x,i]
    s.t. (1/N) sum_x sum_i L_i(0) y[x,i] <= tau,   sum_i y[x,i] = 1,   y >= 0.

With one coupling constraint its dual has one multiplier mu >= 0: route x to
argmax_i s[x,i] - mu L_i(0). The believed TTFT of that routing falls as mu
grows; bisection on mu brackets the mu* where it crosses tau, and mixing the
routings on the two sides of mu* meets tau exactly, which is optimal for the LP
(both are optimal routings at mu*). That routing is also optimal for the
transportation problem at its own shares (the prices mu* L_i(0) certify it by
complementary slackness), so its quality is Q(w) exactly, and the plan
publishes the routing that realizes those shares (SPEC 4.3). It
searches the setups the heuristic keeps (same pruning and floor), takes the one
it believes best (ties to the lowest true mean TTFT), and the plan reports the
true predicted mean TTFT: a plan that breaks the target, or overloads a model,
has solver status `infeasible`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from models.methods.heuristic import PriceRouter, SetupLatency, prune_setups
from models.problem.defaults import DEFAULT_UTILIZATION_FLOOR
from models.problem.instance import Instance
from models.problem.plan import Infeasible, Plan, SolverReport, build_plan
from models.problem.setup import Placement, Setup, describe_setup
from models.problem.transport import Prompts

MU_BISECTION_STEPS = 50  # halvings of the multiplier's bracket: to about float precision


def zero_load_ttft(instance: Instance, setup: Setup) -> np.ndarray:
    """L_i(0) of each deployed model: its curve's first TTFT (flat below the first profiled load)."""
    return np.array([instance.curve(m, o).ttfts_ms[0] for m, o in zip(instance.models, setup) if o is not None])


@dataclass(frozen=True, eq=False)
class BelievedRouting:
    """The fixed-latency router's LP answer on one setup: shares of the deployed models and believed quality."""

    setup: Setup
    placement: Placement
    shares: np.ndarray
    believed_quality: float
    true_mean_ttft_ms: float


def routed_quality(router: PriceRouter, prices: np.ndarray) -> tuple[np.ndarray, float]:
    """Shares and quality (1/N) sum_x s[x, chosen] of routing by `prices`."""
    shares, constant = router.route(prices)
    return shares, constant + float(prices @ shares)


def believed_routing(instance: Instance, prompts: Prompts, setup: Setup,
                     placement: Placement) -> BelievedRouting | None:
    """The LP of the module docstring on one setup; None when even the fastest model alone exceeds tau."""
    deployed = [k for k, o in enumerate(setup) if o is not None]
    ttft0, tau = zero_load_ttft(instance, setup), instance.slo_mean_ttft_ms
    if ttft0.min() > tau:
        return None
    router = PriceRouter(prompts, deployed)
    shares, quality = routed_quality(router, np.zeros(len(deployed)))
    mu = 0.0
    if shares @ ttft0 > tau:
        low, mu = bracket_multiplier(router, ttft0, tau)
        over, over_quality = routed_quality(router, low * ttft0)
        under, under_quality = routed_quality(router, mu * ttft0)
        theta = (tau - under @ ttft0) / (over @ ttft0 - under @ ttft0)
        shares = theta * over + (1 - theta) * under
        quality = theta * over_quality + (1 - theta) * under_quality
    true_ttft = SetupLatency.of(instance, setup).total(shares)
    return BelievedRouting(setup, placement, shares, quality, true_ttft)


def bracket_multiplier(router: PriceRouter, ttft0: np.ndarray, tau: float) -> tuple[float, float]:
    """mu_low < mu_high, float-close, with the believed TTFT of routing at mu_low above tau and at mu_high not.

    mu doubles from 1 / tau until the believed TTFT is within tau (it is once mu exceeds
    1 / (smallest latency gap): scores differ by at most 1, so every prompt then takes a
    fastest model, whose zero-load TTFT is within tau), then bisection halves the bracket.
    """
    def believed(mu: float) -> float:
        return float(router.route(mu * ttft0)[0] @ ttft0)

    low, high = 0.0, 1 / tau
    while believed(high) > tau:
        low, high = high, 2 * high
    for _ in range(MU_BISECTION_STEPS):
        middle = (low + high) / 2
        if believed(middle) > tau:
            low = middle
        else:
            high = middle
    return low, high


def solve_fixed_latency(instance: Instance, utilization_floor: float = DEFAULT_UTILIZATION_FLOOR) -> Plan:
    """The fixed-latency router's plan on the setup it believes best; status `infeasible` when it truly
    breaks the SLO."""
    start = time.perf_counter()
    prompts = Prompts.merge(instance.scores)
    kept = prune_setups(instance, utilization_floor).kept
    answers = [a for setup, placement in kept if (a := believed_routing(instance, prompts, setup, placement))]
    if not answers:
        raise Infeasible("fixed-latency: on every setup the heuristic keeps, even the fastest model's zero-load "
                         f"TTFT exceeds the {instance.slo_mean_ttft_ms:g} ms target")
    top = max(a.believed_quality for a in answers)
    chosen = min((a for a in answers if a.believed_quality >= top - 1e-12), key=lambda a: a.true_mean_ttft_ms)
    shares = np.zeros(len(instance.models))
    deployed = [k for k, o in enumerate(chosen.setup) if o is not None]
    shares[deployed] = chosen.shares
    shares = shares / shares.sum()
    believed_ttft = float(chosen.shares @ zero_load_ttft(instance, chosen.setup))
    met = chosen.true_mean_ttft_ms <= instance.slo_mean_ttft_ms
    report = SolverReport("heuristic" if met else "infeasible", time.perf_counter() - start)
    notes = {"routing": "believes each model runs at its zero-load TTFT; routes for quality under the target",
             "believed_mean_ttft_ms": round(believed_ttft, 3), "setups_searched": len(kept),
             "setup": describe_setup(instance, chosen.setup),
             **({"replicas": "one per model, as the heuristic's search"} if instance.has_replicas else {})}
    return build_plan(instance, "fixed-latency", chosen.setup, chosen.placement, shares, chosen.believed_quality,
                      report, notes)
