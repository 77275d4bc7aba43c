"""What routing does once every prompt is routed and load is accounted for.

Realized routing (`realized_routing`). A plan's prices are a rule: prompt x
goes to argmax_i s[x,i] - alpha_i over the deployed models (ties to the model
listed first). Applying the rule prompt by prompt gives realized shares, a
realized quality (1/N) sum_x s[x, chosen] and a realized mean TTFT
sum_i H_i(realized w_i), reported next to the planned ones. Where the plan
splits prompts between models, or its prices are only approximately tuned (the
heuristic's), the two differ, and the realized TTFT may break the target or
overload a model.

The latency-oblivious references side by side (`latency_oblivious_table`):
quality-greedy and the fixed-latency router (`models/methods/fixed_latency.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.methods.greedy import solve_quality_greedy
from models.methods.fixed_latency import solve_fixed_latency
from models.problem.instance import Instance
from models.problem.latency import latency_ms, share_pieces
from models.problem.plan import Plan
from models.output.report import fmt
from models.problem.transport import price_choices


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


def latency_oblivious_table(instance: Instance) -> pd.DataFrame:
    """quality-greedy and fixed-latency side by side: quality, true mean TTFT and how far it breaks the target."""
    rows = []
    for plan in (solve_quality_greedy(instance), solve_fixed_latency(instance)):
        rows.append({"method": plan.method, "quality": plan.quality, "true_mean_ttft_ms": plan.mean_ttft_ms,
                     "target_ms": plan.slo_ms, "over_target_ms": plan.mean_ttft_ms - plan.slo_ms,
                     "slo_met": plan.slo_met})
    return pd.DataFrame(rows)
