"""`quality-greedy`: every prompt to its best model, latency ignored.

This is the fixed-latency router that ignores load. Its shares are the
fractions of prompts whose best model is each model (ties to the first model
in the instance). It is given the setup that serves those shares fastest: the
setup with the lowest predicted mean TTFT among those that can be placed,
found by `exact`'s MIP with the shares fixed and the mean TTFT as objective
(the SLO (6) and the quality cuts left out). That TTFT is reported as it is.
When no setup carries the shares within the profiled loads, any placeable
setup that deploys every model the routing uses is taken (the same MIP with
capacity (5) relaxed to "no share on a choice not chosen"), and its TTFT is
infinite. When it breaks the target (or overloads a model) the plan is marked
infeasible: it is a reference, not a solution. When it meets the target it is
optimal, since no routing beats every prompt's best model.
"""

from __future__ import annotations

import time

import numpy as np
import pyomo.environ as pyo

from models.methods.cut_loop import mip_setup
from models.methods.exact import build_joint_mip
from models.problem.instance import Instance
from models.problem.latency import mean_ttft
from models.problem.plan import Infeasible, Plan, SolverReport, build_plan
from models.problem.published import PublishedRouting
from models.problem.setup import Placement, Setup
from models.problem.solver import solve_model


def greedy_shares(scores: np.ndarray) -> np.ndarray:
    best = np.argmax(scores, axis=1)
    return np.bincount(best, minlength=scores.shape[1]) / scores.shape[0]


def fastest_setup(instance: Instance, shares: np.ndarray, within_capacity: bool = True) -> tuple[Setup, Placement] | None:
    """The placeable setup with the lowest mean TTFT at these shares (None if there is none): exact's MIP with
    w fixed. Without `within_capacity`, (5) only keeps shares off the choices not chosen."""
    m = build_joint_mip(instance)
    m.objective.deactivate()
    m.slo.deactivate()
    m.fixed_shares = pyo.Constraint(m.MODELS, rule=lambda m, i: m.w[i] == float(shares[list(m.MODELS).index(i)]),
                                    doc="the greedy routing's shares")
    if not within_capacity:
        m.capacity.deactivate()
        m.share_on_chosen = pyo.Constraint(m.CHOICES, rule=lambda m, *c: m.share[c] <= m.choose[c],
                                           doc="no share on a choice not chosen")
    m.fastest = pyo.Objective(expr=sum(m.contribution[c] for c in m.CHOICES), sense=pyo.minimize,
                              doc="mean TTFT, ms")
    return mip_setup(m) if solve_model(m).has_solution else None


def solve_quality_greedy(instance: Instance) -> Plan:
    """The greedy plan on its fastest placeable setup; status `infeasible` when that breaks the SLO."""
    start = time.perf_counter()
    replicas = {"replicas": "one per model"} if instance.has_replicas else {}
    instance = instance.one_replica_each()
    shares = greedy_shares(instance.scores)
    quality = float(instance.scores.max(axis=1).mean())
    found = fastest_setup(instance, shares) or fastest_setup(instance, shares, within_capacity=False)
    if found is None:
        names = ", ".join(m.name for m, share in zip(instance.models, shares) if share > 0)
        raise Infeasible(f"quality-greedy: no setup can be placed that deploys every model its routing uses ({names})")
    setup, placement = found
    seconds = time.perf_counter() - start
    if mean_ttft(instance, setup, shares) <= instance.slo_mean_ttft_ms:
        report = SolverReport("optimal", seconds, 0.0, quality)  # no routing beats every prompt's best model
    else:
        report = SolverReport("infeasible", seconds)
    prices = [0.0 if option else None for option in setup]  # argmax s - 0: the best model, ties to the first
    return build_plan(instance, "quality-greedy", setup, placement, shares, quality, report,
                      {"routing": "every prompt to its best model; latency ignored", **replicas},
                      routing=PublishedRouting.of_prices(prices, instance.scores))
