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

Replicas (SPEC 4.5): a setup gives each model a multiset of options, one per replica (sorted: replicas
are interchangeable). A model i with several replicas u = (i, r) has a share v[u] per replica with
(1/N) sum_r c_r y[r,i] = sum_u v[u], and (2)-(5) hold per replica: v[u] = sum_k lam[u,k] W[u,k] and
the SLO sums every replica's H. Every multiset of every model is tried.

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
from models.problem.setup import (Placement, ReplicaPlacement, Replicas, Setup, as_replicas, count_replica_setups,
                                  count_within_compute, describe_setup, fits_gpus, placeable_replica_setups,
                                  placeable_setups, placement_cost)
from models.problem.solver import SolveResult, solve_model

WORK_LIMIT = 300_000  # setups x rows x models: about a minute here (bench/enumerate_size.py: 210-250 s per million)
PLACEMENT_LIMIT = 100_000  # placements of one setup tried for the fewest moves when re-planning


@dataclass(frozen=True)
class SetupOptimum:
    """The best routing for one setup: quality and shares, from the LP with the optimum's segments fixed."""

    quality: float
    shares: tuple[float, ...]
    replica_shares: tuple[tuple[float, ...], ...] = ()  # SPEC 4.5: per model, its replicas' shares


def merged_rows(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct score rows and how many prompts have each (merging identical prompts is exact)."""
    return np.unique(scores, axis=0, return_counts=True)


def build_setup_milp(instance: Instance, setup: Setup | Replicas, objective: str = "quality") -> pyo.ConcreteModel:
    """The per-setup routing MILP of the module docstring (objective 'quality' or 'ttft'); its curve indices
    i are the replicas (model, r) of the deployed models."""
    replicas = as_replicas(setup)
    deployed = [k for k, options in enumerate(replicas) if options]
    units = [(k, r) for k in deployed for r in range(len(replicas[k]))]
    rows, counts = merged_rows(instance.scores[:, deployed])
    pieces = {u: option_pieces(instance, instance.models[u[0]], replicas[u[0]][u[1]]) for u in units}
    n = int(counts.sum())

    m = pyo.ConcreteModel(name=f"enumerate[{describe_setup(instance, setup)}]")
    m.MODELS = pyo.Set(initialize=deployed, doc="deployed models")
    m.UNITS = pyo.Set(dimen=2, initialize=units, doc="curves u: the replicas (i, r) of the deployed models")
    m.SPLIT = pyo.Set(dimen=2, within=m.UNITS, initialize=[u for u in units if len(replicas[u[0]]) > 1],
                      doc="replicas of models with several")
    m.ROWS = pyo.RangeSet(0, len(counts) - 1, doc="distinct score rows")
    m.POINTS = pyo.Set(m.UNITS, initialize=lambda m, *u: range(len(pieces[u].shares)), doc="breakpoints k")
    m.SEGMENTS = pyo.Set(m.UNITS, initialize=lambda m, *u: range(1, len(pieces[u].shares)), doc="segments j")
    m.PT = pyo.Set(dimen=3, initialize=[(*u, k) for u in units for k in range(len(pieces[u].shares))])
    m.SG = pyo.Set(dimen=3, initialize=[(*u, j) for u in units for j in range(1, len(pieces[u].shares))])
    m.count = pyo.Param(m.ROWS, initialize=lambda m, r: int(counts[r]), doc="prompts in row r")
    m.score = pyo.Param(m.ROWS, m.MODELS, initialize=lambda m, r, i: float(rows[r, deployed.index(i)]),
                        doc="predicted quality s[r,i]")
    m.share_at = pyo.Param(m.PT, initialize=lambda m, i, r, k: float(pieces[i, r].shares[k]),
                           doc="breakpoint share W")
    m.ttft_at = pyo.Param(m.PT, initialize=lambda m, i, r, k: float(pieces[i, r].contributions[k]),
                          doc="H at the breakpoint, ms")

    m.y = pyo.Var(m.ROWS, m.MODELS, bounds=(0, 1), doc="fraction of row r sent to model i")
    m.lam = pyo.Var(m.PT, within=pyo.NonNegativeReals, doc="convex-combination weight")
    m.seg = pyo.Var(m.SG, within=pyo.Binary, doc="segment holding the share")
    m.replica_share = pyo.Var(m.SPLIT, within=pyo.NonNegativeReals, doc="share v[u] of a replica")

    m.share = pyo.Expression(m.MODELS, rule=lambda m, i: sum(m.count[r] * m.y[r, i] for r in m.ROWS) / n,
                             doc="routing share w[i]")
    m.contribution = pyo.Expression(m.UNITS, rule=lambda m, *u: sum(m.lam[u, k] * m.ttft_at[u, k]
                                                                    for k in m.POINTS[u]),
                                    doc="H_u(v[u]), ms")

    def unit_share(m, i, r):
        return m.replica_share[i, r] if (i, r) in m.SPLIT else m.share[i]

    @m.Constraint(m.ROWS, doc="(1) every prompt is routed")
    def routed(m, r):
        return sum(m.y[r, i] for i in m.MODELS) == 1

    @m.Constraint(m.UNITS, doc="(2) share lies on the curve")
    def on_curve(m, *u):
        return unit_share(m, *u) == sum(m.lam[u, k] * m.share_at[u, k] for k in m.POINTS[u])

    @m.Constraint(sorted({u[0] for u in m.SPLIT}), doc="(2) a model's share is its replicas'")
    def replicas_carry(m, i):
        return m.share[i] == sum(m.replica_share[u] for u in m.SPLIT if u[0] == i)

    @m.Constraint(m.UNITS, doc="(3) convex combination")
    def convex(m, *u):
        return sum(m.lam[u, k] for k in m.POINTS[u]) == 1

    @m.Constraint(m.UNITS, doc="(3) one segment")
    def one_segment(m, *u):
        return sum(m.seg[u, j] for j in m.SEGMENTS[u]) == 1

    @m.Constraint(m.PT, doc="(4) only the chosen segment's end points")
    def adjacent(m, i, r, k):
        return m.lam[i, r, k] <= sum(m.seg[i, r, j] for j in (k, k + 1) if j in m.SEGMENTS[i, r])

    if objective == "quality":
        @m.Constraint(doc="(5) mean TTFT within the target")
        def slo(m):
            return sum(m.contribution[u] for u in m.UNITS) <= instance.slo_mean_ttft_ms

        m.quality = pyo.Objective(
            expr=sum(m.count[r] * m.score[r, i] * m.y[r, i] for r in m.ROWS for i in m.MODELS) / n,
            sense=pyo.maximize, doc="mean predicted quality")
    else:
        m.mean_ttft = pyo.Objective(expr=sum(m.contribution[u] for u in m.UNITS), sense=pyo.minimize,
                                    doc="mean TTFT, ms")
    return m


def solve_setup_milp(instance: Instance, setup: Setup | Replicas, time_limit: float | None,
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
    replicas = as_replicas(setup)
    shares = np.clip([pyo.value(m.share[k]) if options else 0.0 for k, options in enumerate(replicas)], 0, None)
    total = shares.sum()
    parts = tuple(tuple(max(pyo.value(m.replica_share[k, r]), 0.0) / total if len(options) > 1 else shares[k] / total
                        for r in range(len(options))) for k, options in enumerate(replicas))
    return result, SetupOptimum(pyo.value(m.quality), tuple(shares / total), parts)


def lowest_mean_ttft(instance: Instance, setup: Setup | Replicas) -> float:
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


def fewest_moves(instance: Instance, setup: Setup | Replicas, replanning: Replanning
                 ) -> tuple[Placement | ReplicaPlacement, int]:
    """The placement of a placeable setup that starts the fewest shards, and how many: every placement is
    tried, in `itertools.product` order over the models' (replicas') GPU sets, and the first with the fewest
    is kept (in the setup's form)."""
    replicas = as_replicas(setup)
    gpu_sets = [list(itertools.product(*(itertools.combinations(range(instance.gpu_count), o.tp) for o in options)))
                for options in replicas]
    count = math.prod(len(sets) for sets in gpu_sets)
    if count > PLACEMENT_LIMIT:
        raise TooLarge(f"enumerate would try {count:,} placements of {describe_setup(instance, setup)} for the "
                       f"fewest moves (> {PLACEMENT_LIMIT:,}); use --method exact")
    placements = (p for p in itertools.product(*gpu_sets) if fits_gpus(instance, replicas, p))
    best, moves = min(((p, replanning.moves(instance.model_names, replicas, p)) for p in placements),
                      key=lambda pm: pm[1])
    return (best if replicas == setup else tuple(held[0] if held else () for held in best)), moves


def solve_enumerate(instance: Instance, time_limit: float | None = None, tee: bool = False,
                    replanning: Replanning | None = None) -> Plan:
    """The best plan over every placeable setup; raises `Infeasible` or `TooLarge`. With `replanning`, the
    best quality - C moves, each setup on its placement of fewest moves. With the cost objective
    (SPEC 4.4) each setup is placed on the fewest GPUs of each type and the plan is the cheapest whose best
    routing reaches min_quality (then the one of highest quality)."""
    start = time.perf_counter()
    cost = instance.objective.kind == "cost"
    if instance.has_replicas:
        check_size(instance, count_replica_setups(instance), bound=True)
        setups = list(placeable_replica_setups(instance))
    else:
        check_size(instance, count_within_compute(instance, 0, 100 * instance.gpu_count), bound=True)
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
                      {"setups_evaluated": len(setups)}, replanning=replanning, replica_shares=routing.replica_shares)


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
