"""`quality-greedy`: every prompt to its best model, latency ignored.

This is the fixed-latency router that ignores load. Its shares are the
fractions of prompts whose best model is each model (ties to the first model
in the instance). It is given the setup that serves those shares fastest, the
setup with the lowest predicted mean TTFT among those that can be placed, and
that TTFT is reported as it is. When it breaks the target (or overloads a
model) the plan is marked infeasible: it is a reference, not a solution.
When it meets the target it is optimal, since no routing beats every prompt's
best model.
"""

from __future__ import annotations

import time

import numpy as np

from models.problem.instance import Instance
from models.problem.latency import option_pieces
from models.problem.plan import Infeasible, Plan, SolverReport, build_plan
from models.problem.published import PublishedRouting
from models.problem.setup import find_placement, model_choices, placeable_setups, setups_by_cost


def greedy_shares(scores: np.ndarray) -> np.ndarray:
    best = np.argmax(scores, axis=1)
    return np.bincount(best, minlength=scores.shape[1]) / scores.shape[0]


def option_costs(instance: Instance, shares: np.ndarray) -> list[dict]:
    """Per model and choice, its TTFT contribution H at the given share (inf when it cannot carry it)."""
    costs = []
    for model, share in zip(instance.models, shares):
        cost = {}
        for choice in model_choices(instance, model):
            if choice is None:
                cost[None] = 0.0 if share == 0 else np.inf
            else:
                cost[choice] = option_pieces(instance, model, choice).contribution(share)
        costs.append(cost)
    return costs


def solve_quality_greedy(instance: Instance) -> Plan:
    """The greedy plan on its fastest placeable setup; status `infeasible` when that breaks the SLO."""
    start = time.perf_counter()
    shares = greedy_shares(instance.scores)
    quality = float(instance.scores.max(axis=1).mean())
    costs = option_costs(instance, shares)
    fastest = next(((s, p) for s in setups_by_cost(instance, costs) if (p := find_placement(instance, s))), None)
    setup, placement = fastest or first_placeable_setup(instance, shares)
    mean_ttft = sum(costs[k][option] for k, option in enumerate(setup))
    seconds = time.perf_counter() - start
    if mean_ttft <= instance.slo_mean_ttft_ms:
        report = SolverReport("optimal", seconds, 0.0, quality)  # no routing beats every prompt's best model
    else:
        report = SolverReport("infeasible", seconds)
    prices = [0.0 if option else None for option in setup]  # argmax s - 0: the best model, ties to the first
    return build_plan(instance, "quality-greedy", setup, placement, shares, quality, report,
                      {"routing": "every prompt to its best model; latency ignored"},
                      routing=PublishedRouting.of_prices(prices, instance.scores))


def first_placeable_setup(instance: Instance, shares: np.ndarray):
    """The first placeable setup that deploys every model the greedy routing uses (all of them overload a
    model at the greedy shares)."""
    used = shares > 0
    found = next(((s, p) for s, p in placeable_setups(instance) if all(o is not None for o, u in zip(s, used) if u)),
                 None)
    if found is None:
        names = ", ".join(m.name for m, u in zip(instance.models, used) if u)
        raise Infeasible(f"quality-greedy: no setup can be placed that deploys every model its routing uses ({names})")
    return found
