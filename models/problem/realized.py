"""Realized routing: a plan publishes a rule (SPEC 4.3):
its listed prompts go to models in fixed fractions, every other prompt x to
argmax_i s[x,i] - alpha_i over the deployed models (exact ties to the model
listed first). Applying the rule prompt by prompt gives realized shares, a
realized quality and a realized mean TTFT sum_i H_i(realized w_i), reported
next to the planned ones. For a plan whose rule realizes it
(`models/problem/published.py`) they agree; for one whose prices do not (hand-made,
or corrupted) the realized TTFT may break the target or overload a model, and
`solve.py` then returns no plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.problem.instance import Instance
from models.problem.latency import latency_ms, option_pieces
from models.problem.plan import Plan
from models.problem.tolerances import SHARE_TOL, SLO_TOL


@dataclass(frozen=True, eq=False)
class RealizedRouting:
    """A plan's published rule applied prompt by prompt, next to the plan.

    `models` has, per model: name, deployed, price, planned_share, realized_share,
    realized_load_rps, realized_ttft_ms (inf above r_K) and over_capacity (the realized load
    passes the planned capacity (1 - headroom) r_K, or the load within the tail bounds, SPEC 4.6).
    """

    models: pd.DataFrame
    planned_quality: float
    realized_quality: float
    planned_mean_ttft_ms: float
    realized_mean_ttft_ms: float
    slo_ms: float

    @property
    def realized_slo_met(self) -> bool:
        return self.realized_mean_ttft_ms <= self.slo_ms * (1 + SLO_TOL)

    @property
    def reproduces_plan(self) -> bool:
        """Every model gets its planned share within SHARE_TOL."""
        return bool(np.all(np.abs(self.models.realized_share - self.models.planned_share) <= SHARE_TOL))

    @property
    def deployable(self) -> bool:
        """No model over its capacity and the target met: what `solve.py` requires to return a plan."""
        return self.realized_slo_met and not self.models.over_capacity.any()

    def refusal(self) -> str | None:
        """Why a plan with this realized routing is not returned or deployed; None when it is deployable."""
        over = list(self.models.name[self.models.over_capacity])
        if over:
            return f"its published routing overloads {', '.join(over)} on the instance's own prompts"
        if not self.realized_slo_met:
            return (f"its published routing breaks the target on the instance's own prompts: realized mean TTFT "
                    f"{self.realized_mean_ttft_ms:.2f} ms > {self.slo_ms:g} ms")
        return None


def check_priced(plan: Plan) -> None:
    for name, deployed, price in zip(plan.models.name, plan.models.deployed, plan.prices):
        if deployed and np.isnan(price):
            raise ValueError(f"plan {plan.method}: deployed model '{name}' has no price")


def realized_routing(instance: Instance, plan: Plan) -> RealizedRouting:
    """Route every prompt by the plan's published rule (split prompts by their fractions, the others to
    argmax_i s[x,i] - price_i, exact ties to the model listed first) and measure it."""
    check_priced(plan)
    fractions = plan.routing.fractions(instance.scores)
    shares = fractions.mean(axis=0)
    lam = instance.arrival_rate_rps
    rows, total = [], 0.0
    for k, (model, options) in enumerate(zip(instance.models, plan.replicas)):
        ttft, contribution, over = realized_latency(instance, model, options, plan.replica_shares[k],
                                                    float(shares[k]))
        total += contribution
        rows.append({"name": model.name, "deployed": bool(options), "price": plan.prices[k],
                     "planned_share": plan.shares[k], "realized_share": float(shares[k]),
                     "realized_load_rps": lam * float(shares[k]), "realized_ttft_ms": ttft, "over_capacity": over})
    quality = float((fractions * instance.scores).sum(axis=1).mean())
    return RealizedRouting(pd.DataFrame(rows), plan.quality, quality, plan.mean_ttft_ms, total, plan.slo_ms)


def realized_latency(instance: Instance, model, options, planned, share: float) -> tuple[float, float, bool]:
    """A model's realized TTFT (load-weighted over its replicas), contribution (the sum of its replicas' H) and
    whether a replica is over its capacity, when the router splits its realized `share` over its replicas in
    proportion to their planned shares (SPEC 4.5); NaN, 0 and False when it is not deployed."""
    if not options:
        return math.nan, 0.0, False
    lam = instance.arrival_rate_rps
    total = sum(planned)
    parts = [share * p / total if total > 0 else share / len(options) for p in planned] if len(options) > 1 else [share]
    curves = [instance.curve(model, option) for option in options]
    ttfts = [latency_ms(curve, lam * part) for curve, part in zip(curves, parts)]
    ttft = sum(t * part for t, part in zip(ttfts, parts)) / share if len(parts) > 1 and share > 0 else ttfts[0]
    contribution = sum(option_pieces(instance, model, option).contribution(part)
                       for option, part in zip(options, parts))
    over = any(part > instance.capacity_rps(curve) / lam + SHARE_TOL for curve, part in zip(curves, parts))
    return ttft, contribution, over
