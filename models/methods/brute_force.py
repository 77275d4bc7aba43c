"""`enumerate`: the brute-force reference for small instances.

Every setup (an option, or nothing for an optional model, per model) is
tried. Setups whose totals exceed the cluster (per GPU type) are skipped, then
an exact search looks for a shard placement on GPUs of each option's type (for
the cost objective, on the fewest GPUs of each type); for each placeable setup
the best routing is solved exactly by a small MILP over per-prompt fractions:

Data      N prompts merged into rows r with counts c_r; scores s[r,i];
          breakpoints (W[i,k], HK[i,k]), k = 0..K_i, of model i's TTFT
          contribution H_i at the setup's option (W[i,0] = HK[i,0] = 0);
          target tau (ms).
Variables y[r,i] in [0,1]   fraction of row r's prompts sent to model i
          lam[i,k] >= 0     convex-combination weights on i's breakpoints
          seg[i,j] binary   the segment j = 1..K_i that i's share lies on
Objective max (1/N) sum_{r,i} c_r s[r,i] y[r,i]
(1) sum_i y[r,i] = 1                                   every prompt is routed
(2) (1/N) sum_r c_r y[r,i] = sum_k lam[i,k] W[i,k]     share on the curve; capacity (5) is W[i,K_i]
(3) sum_k lam[i,k] = 1,  sum_j seg[i,j] = 1
(4) lam[i,k] <= seg[i,k] + seg[i,k+1]                  only the chosen segment's ends (SOS2)
(5) sum_i sum_k lam[i,k] HK[i,k] <= tau                the SLO (6) of the SPEC

With the cost objective (SPEC 4.4) the plan is the cheapest placed setup
whose optimum reaches min_quality: the setup's best quality decides whether
it can, so the same MILP serves both objectives.

This is deliberately the plainest exact form, independent of `exact`'s.
The same model with objective min sum_i H_i finds the lowest mean TTFT a
setup can reach, which explains infeasibility.

Re-planning (SPEC 4.7): the routing does not depend on the placement, so each setup's value is its
best quality minus C times the fewest moves of any placement of it, found by trying every placement
(each deployed model's GPU sets, at most PLACEMENT_LIMIT per setup).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from models.problem.instance import Instance
from models.problem.latency import option_pieces
from models.problem.plan import Infeasible, NoPlanInTime, Plan, SolverReport, TooLarge, build_plan, slo_out_of_reach
from models.problem.moves import Replanning
from models.problem.setup import (Placement, Setup, count_within_compute, describe_setup, fits_gpus,
                                  placeable_setups, placement_cost)
from models.problem.solver import SolveResult, solve_model

WORK_LIMIT = 300_000  # setups x rows x models: about a minute here (bench/enumerate_size.py: 210-250 s per million)
PLACEMENT_LIMIT = 100_000  # placements of one setup tried for the fewest moves when re-planning


@dataclass(frozen=True)
class SetupOptimum:
    """The best routing for one setup: quality and shares, from the LP with the optimum's segments fixed."""

    quality: float
    shares: tuple[float, ...]


def merged_rows(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct score rows and how many prompts have each (merging identical prompts is exact)."""
    return np.unique(scores, axis=0, return_counts=True)


def build_setup_milp(instance: Instance, setup: Setup, objective: str = "quality") -> pyo.ConcreteModel:
    """The per-setup routing MILP of the module docstring (objective 'quality' or 'ttft')."""
    deployed = [k for k, option in enumerate(setup) if option is not None]
    rows, counts = merged_rows(instance.scores[:, deployed])
    pieces = {k: option_pieces(instance, instance.models[k], setup[k]) for k in deployed}
    n = int(counts.sum())

    m = pyo.ConcreteModel(name=f"enumerate[{describe_setup(instance, setup)}]")
    m.MODELS = pyo.Set(initialize=deployed, doc="deployed models")
    m.ROWS = pyo.RangeSet(0, len(counts) - 1, doc="distinct score rows")
    m.POINTS = pyo.Set(m.MODELS, initialize=lambda m, i: range(len(pieces[i].shares)), doc="breakpoints k")
    m.SEGMENTS = pyo.Set(m.MODELS, initialize=lambda m, i: range(1, len(pieces[i].shares)), doc="segments j")
    m.PT = pyo.Set(dimen=2, initialize=[(i, k) for i in deployed for k in range(len(pieces[i].shares))])
    m.SG = pyo.Set(dimen=2, initialize=[(i, j) for i in deployed for j in range(1, len(pieces[i].shares))])
    m.count = pyo.Param(m.ROWS, initialize=lambda m, r: int(counts[r]), doc="prompts in row r")
    m.score = pyo.Param(m.ROWS, m.MODELS, initialize=lambda m, r, i: float(rows[r, deployed.index(i)]),
                        doc="predicted quality s[r,i]")
    m.share_at = pyo.Param(m.PT, initialize=lambda m, i, k: float(pieces[i].shares[k]), doc="breakpoint share W")
    m.ttft_at = pyo.Param(m.PT, initialize=lambda m, i, k: float(pieces[i].contributions[k]),
                          doc="H at the breakpoint, ms")

    m.y = pyo.Var(m.ROWS, m.MODELS, bounds=(0, 1), doc="fraction of row r sent to model i")
    m.lam = pyo.Var(m.PT, within=pyo.NonNegativeReals, doc="convex-combination weight")
    m.seg = pyo.Var(m.SG, within=pyo.Binary, doc="segment holding the share")

    m.share = pyo.Expression(m.MODELS, rule=lambda m, i: sum(m.count[r] * m.y[r, i] for r in m.ROWS) / n,
                             doc="routing share w[i]")
    m.contribution = pyo.Expression(m.MODELS, rule=lambda m, i: sum(m.lam[i, k] * m.ttft_at[i, k] for k in m.POINTS[i]),
                                    doc="H_i(w[i]), ms")

    @m.Constraint(m.ROWS, doc="(1) every prompt is routed")
    def routed(m, r):
        return sum(m.y[r, i] for i in m.MODELS) == 1

    @m.Constraint(m.MODELS, doc="(2) share lies on the curve")
    def on_curve(m, i):
        return m.share[i] == sum(m.lam[i, k] * m.share_at[i, k] for k in m.POINTS[i])

    @m.Constraint(m.MODELS, doc="(3) convex combination")
    def convex(m, i):
        return sum(m.lam[i, k] for k in m.POINTS[i]) == 1

    @m.Constraint(m.MODELS, doc="(3) one segment")
    def one_segment(m, i):
        return sum(m.seg[i, j] for j in m.SEGMENTS[i]) == 1

    @m.Constraint(m.PT, doc="(4) only the chosen segment's end points")
    def adjacent(m, i, k):
        return m.lam[i, k] <= sum(m.seg[i, j] for j in (k, k + 1) if j in m.SEGMENTS[i])

    if objective == "quality":
        @m.Constraint(doc="(5) mean TTFT within the target")
        def slo(m):
            return sum(m.contribution[i] for i in m.MODELS) <= instance.slo_mean_ttft_ms

        m.quality = pyo.Objective(
            expr=sum(m.count[r] * m.score[r, i] * m.y[r, i] for r in m.ROWS for i in m.MODELS) / n,
            sense=pyo.maximize, doc="mean predicted quality")
    else:
        m.mean_ttft = pyo.Objective(expr=sum(m.contribution[i] for i in m.MODELS), sense=pyo.minimize,
                                    doc="mean TTFT, ms")
    return m


def solve_setup_milp(instance: Instance, setup: Setup, time_limit: float | None,
                     tee: bool = False) -> tuple[SolveResult, SetupOptimum | None]:
    """Best routing for one setup; the LP with the optimum's segments fixed checks it keeps the plans' margin."""
    m = build_setup_milp(instance, setup)
    result = solve_model(m, time_limit=time_limit, tee=tee)
    if not result.has_solution:
        return result, None
    for v in m.seg.values():
        v.fix(round(v.value))
    pyo.TransformationFactory("core.relax_integer_vars").apply_to(m)
    if solve_model(m, tight_lp=True).status != "optimal":
        return result, None  # the MILP met the target only within HiGHS's tolerance: no plan keeps the margin
    shares = np.clip([pyo.value(m.share[k]) if option is not None else 0.0 for k, option in enumerate(setup)], 0, None)
    return result, SetupOptimum(pyo.value(m.quality), tuple(shares / shares.sum()))


def lowest_mean_ttft(instance: Instance, setup: Setup) -> float:
    """The lowest mean TTFT (ms) any routing reaches on `setup`."""
    m = build_setup_milp(instance, setup, objective="ttft")
    result = solve_model(m)
    return result.objective if result.has_solution else float("inf")


def check_size(instance: Instance, setups: int, bound: bool = False) -> None:
    """Refuse when `setups` MILPs over the instance's distinct prompts exceed WORK_LIMIT (`bound`: the count
    is an upper bound, the setups within the cluster's compute, counted without listing them)."""
    rows = len(merged_rows(instance.scores)[1])
    work = setups * rows * len(instance.models)
    if work > WORK_LIMIT:
        up_to = "up to " if bound else ""
        raise TooLarge(
            f"enumerate would solve {up_to}{setups:,} setup MILPs over {rows:,} distinct prompts "
            f"(work {up_to}{work:,} > {WORK_LIMIT:,}, about a minute here); use --method exact"
        )


def fewest_moves(instance: Instance, setup: Setup, replanning: Replanning) -> tuple[Placement, int]:
    """The placement of a placeable setup that starts the fewest shards, and how many: every placement is
    tried, in `itertools.product` order over the models' GPU sets, and the first with the fewest is kept."""
    gpu_sets = [list(itertools.combinations(range(instance.gpu_count), o.tp)) if o else [()] for o in setup]
    count = math.prod(len(sets) for sets in gpu_sets)
    if count > PLACEMENT_LIMIT:
        raise TooLarge(f"enumerate would try {count:,} placements of {describe_setup(instance, setup)} for the "
                       f"fewest moves (> {PLACEMENT_LIMIT:,}); use --method exact")
    placements = (p for p in itertools.product(*gpu_sets) if fits_gpus(instance, setup, p))
    return min(((p, replanning.moves(instance.model_names, setup, p)) for p in placements), key=lambda pm: pm[1])


def solve_enumerate(instance: Instance, time_limit: float | None = None, tee: bool = False,
                    replanning: Replanning | None = None) -> Plan:
    """The best plan over every placeable setup; raises `Infeasible` or `TooLarge`. With `replanning`, the
    best quality - C moves, each setup on its placement of fewest moves. With the cost objective
    (SPEC 4.4) each setup is placed on the fewest GPUs of each type and the plan is the cheapest whose best
    routing reaches min_quality (then the one of highest quality)."""
    start = time.perf_counter()
    check_size(instance, count_within_compute(instance, 0, 100 * instance.gpu_count), bound=True)
    cost = instance.objective.kind == "cost"
    setups = list(placeable_setups(instance, cheapest=cost))
    if not setups:
        raise Infeasible("no setup fits the cluster: the required models' shards cannot all be placed on the GPUs")
    check_size(instance, len(setups))
    best = None
    best_quality = None  # the highest quality of any setup, for the cost objective's infeasibility reason
    timed_out = False
    for setup, placement in setups:
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
        if remaining is not None and remaining <= 0:
            timed_out = True
            break
        result, routing = solve_setup_milp(instance, setup, remaining, tee)
        timed_out |= result.status == "time_limit"
        if routing is None:
            continue
        best_quality = max(best_quality or 0.0, routing.quality)
        value = routing.quality
        if replanning:
            placement, moves = fewest_moves(instance, setup, replanning)
            value -= replanning.move_cost * moves
        candidate = (setup, placement, routing, placement_cost(instance, placement), value)
        if best is None or better(instance, candidate, best):
            best = candidate
    seconds = time.perf_counter() - start
    if best is None or not instance.objective.met_by(best[2].quality):
        raise no_plan(instance, setups, best_quality, timed_out, time_limit)
    setup, placement, routing, cost_per_hour, value = best
    bound = cost_per_hour if cost else value
    report = SolverReport("time_limit" if timed_out else "optimal", seconds, None if timed_out else 0.0,
                          None if timed_out else bound)
    return build_plan(instance, "enumerate", setup, placement, routing.shares, routing.quality, report,
                      {"setups_evaluated": len(setups)}, replanning=replanning)


def better(instance: Instance, candidate: tuple, than: tuple) -> bool:
    """Candidates (setup, placement, optimum, cost, quality - C moves): a higher quality (less C moves when
    re-planning); under the cost objective one that reaches min_quality when `than` does not, else a lower
    cost, then a higher quality."""
    quality, best_quality = candidate[2].quality, than[2].quality
    if instance.objective.kind != "cost":
        return candidate[4] > than[4] + 1e-12
    reaches, best_reaches = instance.objective.met_by(quality), instance.objective.met_by(best_quality)
    if reaches != best_reaches:
        return reaches
    if abs(candidate[3] - than[3]) > 1e-9:
        return candidate[3] < than[3]
    return quality > best_quality + 1e-12


def no_plan(instance: Instance, setups, best_quality: float | None, timed_out: bool,
            time_limit: float | None) -> Exception:
    """Why there is no plan: the time limit, the target, or (cost objective) min_quality out of reach."""
    if timed_out:
        return NoPlanInTime(f"enumerate: time limit of {time_limit:g} s passed with no plan")
    if best_quality is None:
        lowest = min(lowest_mean_ttft(instance, s) for s, _ in setups)
        return Infeasible(slo_out_of_reach(lowest, instance.slo_mean_ttft_ms))
    return Infeasible(f"no plan reaches quality {instance.objective.min_quality:g}: the best quality reachable "
                      f"is {best_quality:.6f}")
