"""The capacity relaxation of the joint problem, and the widest setup, which may attain it.

Model i carries at most cap_i = max over its options o of cap[i,o], the largest share an option carries
(capacity, headroom and tail bounds: (5) in models/methods/exact.py), so every plan's shares lie in
W = {w >= 0 : sum_i w_i = 1, w_i <= cap_i} and

    Q* <= Qbar = max over w in W of Q(w),

the transportation problem with the shares capped instead of fixed: no GPUs and no target.

The widest setup puts every model at an option of largest cap (ties to the smallest mean-TTFT contribution
H at that cap, then to the first option). When first-fit decreasing places it and its curves are convex,
its routing LP (models/methods/routing.py) gives a plan: shares w* with quality Q(w*). If the target is
slack there, sum_i H_i(w*_i) < tau, then w* stays optimal once the target is dropped (an optimum of a
convex program stays one when a constraint inactive there is removed), and the routing LP without its
target is exactly Qbar. The plan is then optimal, proven without the MIP: the case of a cluster that
holds every model at its widest option at once, with a target that does not bind.

When the target binds, the plan is still a plan, and the cut loop starts from it. A model with replicas
(SPEC 4.5) can carry more than one option's cap, so the relaxation is not used then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.methods.routing import SetupRouting, solve_routing_lp
from models.problem.instance import Instance, Model, Option
from models.problem.latency import option_pieces
from models.problem.setup import Placement, Setup, first_fit_decreasing
from models.problem.transport import Prompts

SLACK_MS = 1e-6  # the target counts as slack when the plan's mean TTFT is below it by more than this


@dataclass(frozen=True)
class WidestPlan:
    """The widest setup's plan, and whether it attains the capacity relaxation's bound (so is optimal)."""

    setup: Setup
    placement: Placement
    routing: SetupRouting
    mean_ttft_ms: float
    attains_bound: bool


def widest_option(instance: Instance, model: Model) -> Option | None:
    """The model's option of largest cap, ties to the smallest contribution at that cap; None if it has none
    (cap_i = 0: the model cannot be deployed)."""
    def key(option: Option):
        pieces = option_pieces(instance, model, option)
        return -pieces.max_share, pieces.contribution(pieces.max_share)

    return min(instance.options(model), key=key, default=None)


def widest_plan(instance: Instance, prompts: Prompts, deadline: float | None = None) -> WidestPlan | None:
    """The widest setup's plan (module docstring), or None when the relaxation does not bound the instance
    (the cost objective, or replicas), or the widest setup cannot be placed by first-fit decreasing, has a
    non-convex curve, or cannot meet the target (or a required model has no option: the MIP says why)."""
    if instance.objective.kind != "quality" or instance.has_replicas:
        return None
    setup = tuple(widest_option(instance, model) for model in instance.models)
    if any(model.required and option is None for model, option in zip(instance.models, setup)):
        return None
    pieces = [option_pieces(instance, model, option) if option else None
              for model, option in zip(instance.models, setup)]
    if not all(p.is_convex for p in pieces if p):
        return None
    placement = first_fit_decreasing(instance, setup)
    if placement is None:
        return None
    n_models = len(setup)
    routing = solve_routing_lp(instance, setup, np.full(n_models, 1 / n_models), np.zeros(n_models),
                               deadline=deadline, prompts=prompts)
    if routing is None:
        return None
    mean_ttft = sum(p.contribution(float(w)) for p, w in zip(pieces, routing.shares) if p)
    return WidestPlan(setup, placement, routing, mean_ttft, mean_ttft < instance.slo_mean_ttft_ms - SLACK_MS)
