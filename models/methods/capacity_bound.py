"""The capacity relaxation of the joint problem, and the widest setup, which may attain it.

Model i carries at most cap_i = max over its options o of cap[i,o], the largest share an option carries
(capacity, headroom and tail bounds: (5) in models/methods/exact.py), so every plan's shares lie in
W = {w >= 0 : sum_i w_i = 1, w_i <= cap_i} and

    Q* <= Qbar = max over w in W of Q(w),

the transportation problem with the shares capped instead of fixed: no GPUs and no target. Its dual has a
price alpha_i >= 0 per cap, and any such prices bound it (weak duality: for a routing y with shares w,
sum_r c_r s[r,i] y[r,i] / N = sum_r c_r (s[r,i] - alpha_i) y[r,i] / N + sum_i alpha_i w_i):

    Qbar <= B(alpha) = (1/N) sum_r c_r max_i (s[r,i] - alpha_i) + sum_i alpha_i cap_i      (`capacity_bound`).

The widest setup puts every model at an option of largest cap (ties to the smallest mean-TTFT contribution
H at that cap, then to the first option). When first-fit decreasing places it and its curves are convex,
it gives a plan, optimal when it attains Qbar, in one of two ways:

* by one transportation solve (`capped_optimum`), on more than SAMPLE_ROWS distinct rows: the routing LP
  on a sample of the rows (models/methods/routing.py) tells which models sit at their caps; they keep
  their caps as fixed shares, and the others, which then have price 0, act as one model that scores the
  best of them, with the share left over. Its prices (alpha_i of a capped model: its price less the merged
  model's; 0 for the others) make B(alpha) a bound, and the plan is optimal when it meets the target and
  its quality is B(alpha) within GAP_FLOOR. When the sample guessed the capped models wrong, a free model
  exceeds its cap or B(alpha) stays above the quality, and the routing LP decides instead;
* by the routing LP over all rows: if the target is slack there, sum_i H_i(w*_i) < tau, then w* stays
  optimal once the target is dropped (an optimum of a convex program stays one when a constraint inactive
  there is removed), and the routing LP without its target is exactly Qbar.

That is the case of a cluster that holds every model at its widest option at once, with a target that does
not bind. When the target binds, the routing LP's plan is still a plan, and the cut loop starts from it. A
model with replicas (SPEC 4.5) can carry more than one option's cap, so the relaxation is not used then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.methods.routing import SetupRouting, routing_over, sample_of, window_routing
from models.methods.window_lp import bound_scales_with_load
from models.problem.instance import Instance, Model, Option
from models.problem.latency import SharePieces, mean_ttft, option_pieces
from models.problem.setup import Placement, Setup, first_fit_decreasing
from models.problem.tolerances import GAP_FLOOR, SHARE_TOL
from models.problem.transport import Prompts, best_routing

SLACK_MS = 1e-6  # the target counts as slack when the plan's mean TTFT is below it by more than this
AT_CAP = 1e-7  # a model whose share on the sample is this close to its cap counts as capped


@dataclass(frozen=True)
class WidestPlan:
    """The widest setup's plan, and why it attains the capacity relaxation's bound (so is optimal), or None;
    the bound on Qbar that proves it (at least the plan's quality)."""

    setup: Setup
    placement: Placement
    routing: SetupRouting
    mean_ttft_ms: float
    proof: str | None
    bound: float | None = None

    @property
    def attains_bound(self) -> bool:
        return self.proof is not None


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
    deployed = [k for k, option in enumerate(setup) if option]
    over = prompts.over(deployed)
    center = np.zeros(len(deployed))
    sample = sample_of(over)
    if sample is not None:
        on_sample = routing_over(instance, setup, sample, center, {}, deadline)  # None: the sample misses the target
        if on_sample is not None:
            center = on_sample.prices[deployed]
            if mean_ttft(instance, setup, on_sample.shares) < instance.slo_mean_ttft_ms - SLACK_MS:
                capped = capped_plan(instance, setup, placement, pieces, deployed, over, on_sample, deadline)
                if capped is not None:
                    return capped
    routing = window_routing(instance, setup, over, center, {}, deadline)
    if routing is None:
        return None
    ttft = mean_ttft(instance, setup, routing.shares)
    slack = ttft < instance.slo_mean_ttft_ms - SLACK_MS
    proof = f"the target is slack at its routing LP's optimum (mean TTFT {ttft:.2f} ms)" if slack else None
    return WidestPlan(setup, placement, routing, ttft, proof, routing.quality if slack else None)


def capacity_bound(prompts: Prompts, caps: np.ndarray, prices: np.ndarray) -> float:
    """B(alpha) of the module docstring, at the prices clipped to alpha >= 0 (over the columns of `prompts`)."""
    alpha = np.maximum(prices, 0.0)
    return prompts.bound(alpha) + float(caps @ alpha)


@dataclass(frozen=True)
class CappedOptimum:
    """Qbar attained: shares, quality, the prices alpha >= 0 whose bound B(alpha) certifies it, and the rows
    of the transportation solve's window."""

    shares: np.ndarray
    quality: float
    prices: np.ndarray
    bound: float
    window_rows: int


def capped_optimum(prompts: Prompts, caps: np.ndarray, at_cap: np.ndarray, start: np.ndarray,
                   deadline: float | None = None) -> CappedOptimum | None:
    """Qbar over the columns of `prompts` by one transportation solve, given the models `at_cap` at the
    optimum, from prices `start` (module docstring); None when that guess is wrong: no model is left free, a
    free one exceeds its cap, or the bound is not attained."""
    pinned, free = np.flatnonzero(at_cap), np.flatnonzero(~at_cap)
    left = 1.0 - float(caps[pinned].sum())
    if not len(free) or left <= SHARE_TOL:
        return None
    merged = Prompts(np.column_stack([prompts.rows[:, pinned], prompts.rows[:, free].max(axis=1)]), prompts.counts)
    routing = best_routing(merged, np.append(caps[pinned], left), np.append(start[pinned], 0.0), deadline)
    n = prompts.prompt_count
    shares = np.zeros(len(caps))
    shares[pinned] = prompts.counts @ routing.fractions[:, :-1] / n
    best_free = free[np.argmax(prompts.rows[:, free], axis=1)]
    shares += np.bincount(best_free, weights=prompts.counts * routing.fractions[:, -1], minlength=len(caps)) / n
    prices = np.zeros(len(caps))
    prices[pinned] = routing.prices[:-1] - routing.prices[-1]
    bound = capacity_bound(prompts, caps, prices)
    if np.any(shares > caps + SHARE_TOL) or bound - routing.quality > GAP_FLOOR * abs(routing.quality):
        return None
    return CappedOptimum(shares, routing.quality, np.maximum(prices, 0.0), bound, routing.window_rows)


def capped_plan(instance: Instance, setup: Setup, placement: Placement, pieces: list[SharePieces | None],
                deployed: list[int], prompts: Prompts, on_sample: SetupRouting,
                deadline: float | None) -> WidestPlan | None:
    """The widest setup's plan from `capped_optimum` over the `deployed` models' `prompts`, with the models at
    their caps on the sample, if it attains Qbar and meets the target; else None."""
    caps = np.array([pieces[k].max_share for k in deployed])
    at_cap = on_sample.shares[deployed] >= caps - AT_CAP
    optimum = capped_optimum(prompts, caps, at_cap, on_sample.prices[deployed], deadline)
    if optimum is None:
        return None
    shares = np.zeros(len(setup))
    shares[deployed] = optimum.shares
    ttft = mean_ttft(instance, setup, shares)
    if ttft > instance.slo_mean_ttft_ms:
        return None
    routing = SetupRouting(optimum.quality, shares, deployed_prices(len(setup), deployed, optimum.prices),
                           optimum.window_rows, 0.0, quality_per_rps(instance, pieces, deployed, caps, optimum),
                           tuple((float(w),) if p else () for p, w in zip(pieces, shares)))
    proof = (f"its shares meet the target (mean TTFT {ttft:.2f} ms) and attain the bound that prices on the caps "
             f"give ({optimum.bound:.9f})")
    return WidestPlan(setup, placement, routing, ttft, proof, optimum.bound)


def deployed_prices(models: int, deployed: list[int], prices: np.ndarray) -> np.ndarray:
    """Prices over all models, NaN where not deployed."""
    full = np.full(models, np.nan)
    full[deployed] = prices
    return full


def quality_per_rps(instance: Instance, pieces: list[SharePieces | None], deployed: list[int], caps: np.ndarray,
                    optimum: CappedOptimum) -> float:
    """d Qbar / d lam by the envelope theorem: d Qbar / d cap_i = alpha_i, and a cap that is a profiled load
    over lam moves by -cap_i / lam (models/methods/routing.py)."""
    scales = np.array([bound_scales_with_load(pieces[k], float(cap)) for k, cap in zip(deployed, caps)])
    return float(-(optimum.prices * caps)[scales].sum() / instance.arrival_rate_rps)
