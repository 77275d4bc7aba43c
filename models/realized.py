"""What routing does once every prompt is routed and load is accounted for.

Realized routing (`realized_routing`). A plan's prices are a rule: prompt x
goes to argmax_i s[x,i] - alpha_i over the deployed models (ties to the model
listed first). Applying the rule prompt by prompt gives realized shares, a
realized quality (1/N) sum_x s[x, chosen] and a realized mean TTFT
sum_i H_i(realized w_i), reported next to the planned ones. Where the plan
splits prompts between models, or its prices are only approximately tuned (the
heuristic's), the two differ, and the realized TTFT may break the target or
overload a model.

The fixed-latency router (`solve_fixed_latency`), a latency-oblivious
reference, never a solution. It believes every deployed model answers at its
zero-load latency L_i(0) = L_i1 (the SPEC holds latency flat below the first
profiled load), so it believes the mean TTFT is linear in the routing and solves

    max (1/N) sum_x sum_i s[x,i] y[x,i]
    s.t. (1/N) sum_x sum_i L_i(0) y[x,i] <= tau,   sum_i y[x,i] = 1,   y >= 0.

With one coupling constraint its dual has one multiplier mu >= 0: route x to
argmax_i s[x,i] - mu L_i(0). The believed TTFT of that routing falls as mu
grows; bisection on mu brackets the mu* where it crosses tau, and mixing the
routings on the two sides of mu* meets tau exactly, which is optimal for the LP
(both are optimal routings at mu*). Its prices are mu* L_i(0). That routing is
also optimal for the transportation problem at its own shares (the prices
certify it by complementary slackness), so its quality is Q(w) exactly. It
searches the setups the heuristic keeps (same pruning and floor), takes the one
it believes best (ties to the lowest true mean TTFT), and the plan reports the
true predicted mean TTFT: a plan that breaks the target, or overloads a model,
has solver status `infeasible`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.greedy import solve_quality_greedy
from models.heuristic import DEFAULT_UTILIZATION_FLOOR, PriceRouter, SetupLatency, prune_setups
from models.instance import Instance
from models.latency import latency_ms, share_pieces
from models.plan import Infeasible, Plan, SolverReport, build_plan
from models.report import fmt
from models.setup import Placement, Setup, describe_setup
from models.transport import Prompts, price_choices

MU_BISECTION_STEPS = 50  # halvings of the multiplier's bracket: to about float precision


# ---------------------------------------------------------------- realized routing


@dataclass(frozen=True, eq=False)
class RealizedRouting:
    """A plan's price rule applied prompt by prompt, next to the plan.

    `models` has, per model: name, deployed, price, planned_share, realized_share,
    realized_load_rps, realized_ttft_ms (inf when overloaded).
    """

    models: pd.DataFrame
    planned_quality: float
    realized_quality: float
    planned_mean_ttft_ms: float
    realized_mean_ttft_ms: float
    slo_ms: float

    @property
    def realized_slo_met(self) -> bool:
        return self.realized_mean_ttft_ms <= self.slo_ms


def price_rule(plan: Plan) -> np.ndarray:
    """The plan's prices, +inf for models it does not deploy (no prompt goes there)."""
    prices = np.full(len(plan.models), np.inf)
    for k, row in enumerate(plan.models.itertuples()):
        if not row.deployed:
            continue
        if row.price is None or pd.isna(row.price):
            raise ValueError(f"plan {plan.method}: deployed model '{row.name}' has no price")
        prices[k] = float(row.price)
    return prices


def realized_routing(instance: Instance, plan: Plan) -> RealizedRouting:
    """Route every prompt by the plan's prices (`price_choices`: ties to the model listed first) and measure it."""
    chosen = price_choices(instance.scores, price_rule(plan))
    shares = np.bincount(chosen, minlength=len(instance.models)) / instance.prompt_count
    lam = instance.arrival_rate_rps
    rows, total = [], 0.0
    for k, (model, option) in enumerate(zip(instance.models, plan.setup)):
        ttft, contribution = (math.nan, 0.0)
        if option is not None:
            curve = instance.curve(model, option)
            ttft = latency_ms(curve, lam * shares[k])
            contribution = share_pieces(curve, lam).contribution(shares[k])
        total += contribution
        rows.append({"name": model.name, "deployed": option is not None, "price": plan.models.price[k],
                     "planned_share": plan.shares[k], "realized_share": float(shares[k]),
                     "realized_load_rps": lam * float(shares[k]), "realized_ttft_ms": ttft})
    quality = float(instance.scores[np.arange(instance.prompt_count), chosen].mean())
    return RealizedRouting(pd.DataFrame(rows), plan.quality, quality, plan.mean_ttft_ms, total, plan.slo_ms)


def format_realized(realized: RealizedRouting) -> str:
    """The realized-routing section of a report: shares per model, then quality and mean TTFT."""
    table = realized.models[realized.models.deployed][["name", "price", "planned_share", "realized_share",
                                                       "realized_load_rps", "realized_ttft_ms"]]
    met = "met" if realized.realized_slo_met else "BROKEN"
    return "\n".join([
        "realized routing (each prompt to argmax_i s[x,i] - price_i):",
        table.to_string(index=False, float_format=lambda v: fmt(v, ".4f")),
        f"quality planned {realized.planned_quality:.6f}, realized {realized.realized_quality:.6f}; "
        f"mean TTFT planned {realized.planned_mean_ttft_ms:.2f} ms, realized {realized.realized_mean_ttft_ms:.2f} ms "
        f"/ target {realized.slo_ms:g} ms ({met})",
    ])


# ---------------------------------------------------------------- the fixed-latency router


def zero_load_ttft(instance: Instance, setup: Setup) -> np.ndarray:
    """L_i(0) of each deployed model: its curve's first TTFT (flat below the first profiled load)."""
    return np.array([instance.curve(m, o).ttfts_ms[0] for m, o in zip(instance.models, setup) if o is not None])


@dataclass(frozen=True, eq=False)
class BelievedRouting:
    """The fixed-latency router's LP answer on one setup: shares of the deployed models, prices, believed quality."""

    setup: Setup
    placement: Placement
    shares: np.ndarray
    prices: np.ndarray
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
    return BelievedRouting(setup, placement, shares, mu * ttft0, quality, true_ttft)


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
    prices: list[float | None] = [None] * len(instance.models)
    deployed = [k for k, o in enumerate(chosen.setup) if o is not None]
    shares[deployed] = chosen.shares
    for k, price in zip(deployed, chosen.prices - chosen.prices.min()):
        prices[k] = float(price)
    shares = shares / shares.sum()
    believed_ttft = float(chosen.shares @ zero_load_ttft(instance, chosen.setup))
    met = chosen.true_mean_ttft_ms <= instance.slo_mean_ttft_ms
    report = SolverReport("heuristic" if met else "infeasible", time.perf_counter() - start)
    notes = {"routing": "believes each model runs at its zero-load TTFT; routes for quality under the target",
             "believed_mean_ttft_ms": round(believed_ttft, 3), "setups_searched": len(kept),
             "setup": describe_setup(instance, chosen.setup)}
    return build_plan(instance, "fixed-latency", chosen.setup, chosen.placement, shares, prices,
                      chosen.believed_quality, report, notes)


def latency_oblivious_table(instance: Instance) -> pd.DataFrame:
    """quality-greedy and fixed-latency side by side: quality, true mean TTFT and how far it breaks the target."""
    rows = []
    for plan in (solve_quality_greedy(instance), solve_fixed_latency(instance)):
        rows.append({"method": plan.method, "quality": plan.quality, "true_mean_ttft_ms": plan.mean_ttft_ms,
                     "target_ms": plan.slo_ms, "over_target_ms": plan.mean_ttft_ms - plan.slo_ms,
                     "slo_met": plan.slo_met})
    return pd.DataFrame(rows)
