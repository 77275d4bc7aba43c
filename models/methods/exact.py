"""`exact`: the joint setup-and-routing problem as one mixed-integer program, solved by HiGHS.

Sets      models i; GPUs g = 0..G-1; choices c = (i, tp, mps), the options of model i
          with a latency curve whose shard fits a GPU; segments k of H_c.
Data      shard_gb[c] = weights_i / tp + kv_i (GB); mps[c] (%); tp[c]; memory M (GB) per GPU;
          cap[c] = min(1, r_K / lam), the largest share the option carries (5);
          H_c's segments: H_c(w) = a[c,k] w + b[c,k] on [lo[c,k], hi[c,k]] (ms);
          tau, the mean-TTFT target (ms); required_i.
Variables choose[c] in {0,1}       model i runs with option c
          place[c,g] in {0,1}      a shard of choice c sits on GPU g
          share[c] >= 0            routing share carried at choice c; w[i] = sum_c share[c]
          contribution[c] >= 0     H_c(share[c]), ms
          seg[c,k] in {0,1}, piece[c,k] >= 0   the segment holding share[c] (non-convex H_c only)
          quality                  the mean predicted quality Q(w)
Objective max quality
(1) sum_{c of i} choose[c] = 1 if i is required, <= 1 otherwise
(2) sum_g place[c,g] = tp[c] choose[c];   sum_{c of i} place[c,g] <= 1 (one shard of a model per GPU)
(3) sum_c shard_gb[c] place[c,g] <= M                       memory per GPU
(4) sum_c mps[c] place[c,g] <= 100                          compute share per GPU
(5) share[c] <= cap[c] choose[c]                            capacity; the only bound, from the data
(6) sum_c contribution[c] <= tau                            the SLO
(7) sum_i w[i] = 1                                          every prompt is routed
(8) convex H_c: contribution[c] >= a[c,k] share[c] + b[c,k] choose[c] for every k
    (the perspective of the epigraph: exact, no extra binaries, 0 when c is not chosen)
(9) non-convex H_c: sum_k seg[c,k] = choose[c]; lo[c,k] seg[c,k] <= piece[c,k] <= hi[c,k] seg[c,k];
    share[c] = sum_k piece[c,k]; contribution[c] >= sum_k (a[c,k] piece[c,k] + b[c,k] seg[c,k])
(10) GPUs are identical: the GPUs holding the first model come first,
    sum_{c of model 1} place[c,g] >= sum_{c of model 1} place[c,g+1]. Sorting any plan's GPUs
    this way keeps it feasible, so no optimal plan is cut off. HiGHS's own symmetry detection
    handles the permutations left; the complete lexicographic order of the GPUs' model-presence
    codes made the first MIP of a synthetic 8-GPU instance 2-3 times slower.
(11) quality <= B(alpha) + sum_i alpha[i] w[i] for cuts alpha, B(alpha) = (1/N) sum_x max_i (s[x,i] - alpha[i]).

The per-prompt formulation (`per_prompt=True`, the textbook form, kept for
teaching and as the benchmark's baseline) replaces (11) by the routing itself,
over distinct score rows r with counts c_r:
(12) y[r,i] >= 0, sum_i y[r,i] = 1;  w[i] = (1/N) sum_r c_r y[r,i];
     quality = (1/N) sum_{r,i} c_r s[r,i] y[r,i].

Q(w), the best quality for shares w, is the transportation problem's value:
concave and piecewise linear, and by LP duality Q(w) = min over alpha of the
right-hand side of (11). So (11) over all alpha is exact, and the model's
size does not depend on the number of prompts N. Cuts are generated lazily
(HiGHS has no lazy-constraint callback), in rounds:

* solve the MIP; its bound is a valid upper bound on the optimum;
* compute Q and its optimal prices at the MIP's shares (models/problem/transport.py)
  and add the cut that is tight there;
* the first time a setup comes up, fix it and keep adding cuts at the fixed
  MIP's solutions until its bound meets Q; then solve the routing LP on that
  setup exactly (models/methods/routing.py). Its value is a feasible plan's quality,
  a lower bound, and its duals are the routing prices;
* stop when the bound and the best plan meet (relative gap `mip_gap`).

Every cut holds for every setup, so the fixed-setup rounds also tighten the
MIP for the others; in practice the loop ends after a few rounds.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from models.problem.instance import Instance, Option
from models.problem.latency import option_pieces
from models.problem.plan import Infeasible, NoPlanInTime, Plan, SolverReport, build_plan, slo_out_of_reach
from models.methods.routing import SetupRouting, solve_routing_lp
from models.problem.setup import Placement, Setup
from models.problem.solver import DEFAULT_MIP_GAP, make_solver, solve_model
from models.problem.transport import Prompts, best_routing


def mip_choices(instance: Instance) -> list[tuple[str, int, int]]:
    return [(m.name, o.tp, o.mps_pct) for m in instance.models for o in instance.options(m)]


def build_joint_mip(instance: Instance, per_prompt: bool = False) -> pyo.ConcreteModel:
    """The MIP of the module docstring: with (11) and no cuts yet (see `add_quality_cut`), or with (12)."""
    by_name = {model.name: model for model in instance.models}
    choices = mip_choices(instance)
    pieces = {c: option_pieces(instance, by_name[c[0]], Option(c[1], c[2])) for c in choices}
    convex = [c for c in choices if pieces[c].is_convex]
    segments = [(*c, k) for c in choices for k in range(len(pieces[c].slopes))]

    m = pyo.ConcreteModel(name=f"joint[{instance.name}]")
    m.MODELS = pyo.Set(initialize=[model.name for model in instance.models], ordered=True, doc="models i")
    m.GPUS = pyo.RangeSet(0, instance.gpu_count - 1, doc="GPUs g")
    m.CHOICES = pyo.Set(dimen=3, initialize=choices, ordered=True, doc="choices c = (model, tp, mps)")
    m.USABLE = pyo.Set(initialize=[i for i in m.MODELS if any(c[0] == i for c in choices)], ordered=True,
                       within=m.MODELS, doc="models with at least one choice")
    m.CONVEX = pyo.Set(dimen=3, within=m.CHOICES, initialize=convex, doc="choices with convex H")
    m.NONCONVEX = pyo.Set(dimen=3, within=m.CHOICES, initialize=[c for c in choices if c not in convex],
                          doc="choices with non-convex H")
    m.SEGMENTS = pyo.Set(dimen=4, initialize=segments, doc="segments (c, k) of H_c")
    m.NONCONVEX_SEGMENTS = pyo.Set(dimen=4, within=m.SEGMENTS, initialize=[s for s in segments if s[:3] not in convex],
                                   doc="segments of non-convex H_c")

    m.shard_gb = pyo.Param(m.CHOICES, initialize=lambda m, i, tp, mps: by_name[i].shard_gb(tp), doc="GB per shard")
    m.cap = pyo.Param(m.CHOICES, initialize=lambda m, *c: pieces[c].max_share,
                      doc="largest share the option carries")
    m.slope = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: float(pieces[s[:3]].slopes[s[3]]), doc="a, ms")
    m.intercept = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: float(pieces[s[:3]].intercepts[s[3]]), doc="b, ms")
    m.lo = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: float(pieces[s[:3]].shares[s[3]]), doc="segment start")
    m.hi = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: min(float(pieces[s[:3]].shares[s[3] + 1]), m.cap[s[:3]]),
                     doc="segment end")

    m.choose = pyo.Var(m.CHOICES, within=pyo.Binary, doc="model runs with this option")
    m.place = pyo.Var(m.CHOICES, m.GPUS, within=pyo.Binary, doc="a shard of the choice sits on the GPU")
    m.share = pyo.Var(m.CHOICES, within=pyo.NonNegativeReals, doc="routing share carried at the choice")
    m.contribution = pyo.Var(m.CHOICES, within=pyo.NonNegativeReals, doc="H_c(share), ms")
    m.seg = pyo.Var(m.NONCONVEX_SEGMENTS, within=pyo.Binary, doc="segment holding the share")
    m.piece = pyo.Var(m.NONCONVEX_SEGMENTS, within=pyo.NonNegativeReals, doc="share on the segment")
    m.quality = pyo.Var(bounds=(0, float(instance.scores.max(axis=1).mean())), doc="mean predicted quality")
    m.w = pyo.Expression(m.MODELS, rule=lambda m, i: sum(m.share[c] for c in m.CHOICES if c[0] == i),
                         doc="routing share of model i")

    @m.Constraint(m.MODELS, doc="(1) one option per deployed model")
    def one_option(m, i):
        if i not in m.USABLE:  # no option: a required model makes the MIP infeasible, an optional one stays out
            return pyo.Constraint.Infeasible if by_name[i].required else pyo.Constraint.Skip
        chosen = sum(m.choose[c] for c in m.CHOICES if c[0] == i)
        return chosen == 1 if by_name[i].required else chosen <= 1

    @m.Constraint(m.CHOICES, doc="(2) tp shards on distinct GPUs")
    def shards(m, *c):
        return sum(m.place[c, g] for g in m.GPUS) == c[1] * m.choose[c]

    @m.Constraint(m.USABLE, m.GPUS, doc="(2) at most one shard of a model per GPU")
    def one_shard_per_gpu(m, i, g):
        return sum(m.place[c, g] for c in m.CHOICES if c[0] == i) <= 1

    @m.Constraint(m.GPUS, doc="(3) memory per GPU")
    def memory(m, g):
        return sum(m.shard_gb[c] * m.place[c, g] for c in m.CHOICES) <= instance.gpu_memory_gb

    @m.Constraint(m.GPUS, doc="(4) compute share per GPU")
    def compute(m, g):
        return sum(c[2] * m.place[c, g] for c in m.CHOICES) <= 100

    @m.Constraint(m.CHOICES, doc="(5) capacity")
    def capacity(m, *c):
        return m.share[c] <= m.cap[c] * m.choose[c]

    @m.Constraint(doc="(6) mean TTFT within the target")
    def slo(m):
        return sum(m.contribution[c] for c in m.CHOICES) <= instance.slo_mean_ttft_ms

    @m.Constraint(doc="(7) every prompt is routed")
    def routed(m):
        return sum(m.w[i] for i in m.MODELS) == 1

    @m.Constraint(m.SEGMENTS - m.NONCONVEX_SEGMENTS, doc="(8) convex H: perspective epigraph")
    def convex_epigraph(m, *s):
        c = s[:3]
        return m.contribution[c] >= m.slope[s] * m.share[c] + m.intercept[s] * m.choose[c]

    @m.Constraint(m.NONCONVEX, doc="(9) one segment of a chosen non-convex H")
    def one_segment(m, *c):
        return sum(m.seg[s] for s in m.NONCONVEX_SEGMENTS if s[:3] == c) == m.choose[c]

    @m.Constraint(m.NONCONVEX_SEGMENTS, doc="(9) piece within its segment")
    def piece_low(m, *s):
        return m.piece[s] >= m.lo[s] * m.seg[s]

    @m.Constraint(m.NONCONVEX_SEGMENTS, doc="(9) piece within its segment")
    def piece_high(m, *s):
        return m.piece[s] <= m.hi[s] * m.seg[s]

    @m.Constraint(m.NONCONVEX, doc="(9) share is the chosen segment's piece")
    def share_pieces_sum(m, *c):
        return m.share[c] == sum(m.piece[s] for s in m.NONCONVEX_SEGMENTS if s[:3] == c)

    @m.Constraint(m.NONCONVEX, doc="(9) non-convex H on the chosen segment")
    def nonconvex_epigraph(m, *c):
        return m.contribution[c] >= sum(m.slope[s] * m.piece[s] + m.intercept[s] * m.seg[s]
                                        for s in m.NONCONVEX_SEGMENTS if s[:3] == c)

    first = [c for c in choices if c[0] == instance.models[0].name]

    @m.Constraint(m.GPUS, doc="(10) identical GPUs: those holding the first model come first")
    def gpu_order(m, g):
        if g == instance.gpu_count - 1:
            return pyo.Constraint.Skip
        return sum(m.place[c, g] for c in first) >= sum(m.place[c, g + 1] for c in first)

    if per_prompt:
        add_per_prompt_routing(m, Prompts.merge(instance.scores))
    else:
        m.quality_cuts = pyo.ConstraintList(doc="(11) outer approximation of Q(w) by its dual prices")
    m.excluded_setups = pyo.ConstraintList(doc="setups that meet the target only within the solver's tolerance")
    m.objective = pyo.Objective(expr=m.quality, sense=pyo.maximize, doc="mean predicted quality")
    return m


def add_per_prompt_routing(m: pyo.ConcreteModel, prompts: Prompts) -> None:
    """(12): routing fractions for every distinct score row."""
    names = list(m.MODELS)
    n = prompts.prompt_count
    m.ROWS = pyo.RangeSet(0, len(prompts.counts) - 1, doc="distinct score rows r")
    m.count = pyo.Param(m.ROWS, initialize=lambda m, r: float(prompts.counts[r]), doc="prompts in row r")
    m.score = pyo.Param(m.ROWS, m.MODELS, initialize=lambda m, r, i: float(prompts.rows[r, names.index(i)]),
                        doc="predicted quality s[r,i]")
    m.y = pyo.Var(m.ROWS, m.MODELS, within=pyo.NonNegativeReals, doc="fraction of row r sent to model i")

    @m.Constraint(m.ROWS, doc="(12) every prompt is routed")
    def routed_rows(m, r):
        return sum(m.y[r, i] for i in m.MODELS) == 1

    @m.Constraint(m.MODELS, doc="(12) share of model i")
    def share_of_rows(m, i):
        return m.w[i] == sum(m.count[r] * m.y[r, i] for r in m.ROWS) / n

    @m.Constraint(doc="(12) quality of the routing")
    def routed_quality(m):
        return m.quality == sum(m.count[r] * m.score[r, i] * m.y[r, i] for r in m.ROWS for i in m.MODELS) / n


CUT_SCALE = 1e4  # cut rows are scaled so that HiGHS's feasibility tolerance (1e-7) is 1e-11 in quality


def add_quality_cut(m: pyo.ConcreteModel, prompts: Prompts, prices: np.ndarray) -> None:
    """(11) for these prices: tight at every share vector they route to."""
    constant = prompts.bound(prices)
    m.quality_cuts.add(CUT_SCALE * m.quality <= CUT_SCALE * (
        constant + sum(float(a) * m.w[i] for i, a in zip(m.MODELS, prices))))


@dataclass(frozen=True, eq=False)
class SetupCandidate:
    """A plan in the making: a setup with its placement and its routing LP's optimum."""

    setup: Setup
    placement: Placement
    routing: SetupRouting

    @property
    def quality(self) -> float:
        return self.routing.quality


def mip_setup(m: pyo.ConcreteModel) -> tuple[Setup, Placement]:
    """The setup and placement of the MIP's current solution."""
    setup, placement = [], []
    for name in m.MODELS:
        chosen = [c for c in m.CHOICES if c[0] == name and m.choose[c].value > 0.5]
        setup.append(Option(chosen[0][1], chosen[0][2]) if chosen else None)
        placement.append(tuple(g for g in m.GPUS if chosen and m.place[chosen[0], g].value > 0.5))
    return tuple(setup), tuple(placement)


def mip_shares(m: pyo.ConcreteModel) -> np.ndarray:
    shares = np.clip([pyo.value(m.w[i]) for i in m.MODELS], 0, None)
    return shares / shares.sum()


def evaluate_mip_solution(m, solver, instance: Instance, prompts: Prompts, solved: set, deadline: float):
    """The first time a setup comes up, its best plan: with the cuts (11), Kelley cuts with the setup
    fixed until the fixed-setup bound meets Q; then the routing LP around those shares' prices.
    With (11), also the cut at the MIP's shares. Returns the candidate (None for a setup already solved)."""
    setup, placement = mip_setup(m)
    at_shares = best_routing(prompts, mip_shares(m))
    with_cuts = hasattr(m, "quality_cuts")
    if with_cuts:
        add_quality_cut(m, prompts, at_shares.prices)
    if setup in solved:
        return None
    solved.add(setup)
    shares, prices = mip_shares(m), at_shares.prices
    if with_cuts:
        shares, prices = optimize_setup(m, solver, prompts, prices, deadline)
    routing = solve_routing_lp(instance, setup, shares, prices)
    if routing is None:
        # the MIP met the target only within HiGHS's tolerance: no plan keeps the margin on this setup
        exclude_setup(m, setup)
        return None
    return SetupCandidate(setup, placement, routing)


def exclude_setup(m: pyo.ConcreteModel, setup: Setup) -> None:
    """A no-good cut: the MIP may not choose exactly this option (or none) for every model again."""
    chosen = {(name, o.tp, o.mps_pct) for name, o in zip(m.MODELS, setup) if o is not None}
    undeployed = {name for name, o in zip(m.MODELS, setup) if o is None}
    m.excluded_setups.add(
        sum(m.choose[c] for c in chosen) - sum(m.choose[c] for c in m.CHOICES if c[0] in undeployed)
        <= len(chosen) - 1)


def optimize_setup(m, solver, prompts: Prompts, prices: np.ndarray, deadline: float, tolerance: float = 1e-8,
                   rounds: int = 60):
    """With the MIP's current setup fixed, add cuts at its solutions until its bound is within
    `tolerance` (relative) of the best Q found, or the deadline passes. The cuts stay: they hold for
    every setup. Returns the best shares and their optimal prices (the MIP's current ones at worst)."""
    binaries = [v for v in (*m.choose.values(), *m.place.values())]
    for v in binaries:
        v.fix(round(v.value))
    best = (mip_shares(m), prices, -np.inf)
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            break
        result = solve_model(m, solver)
        if not result.has_solution:
            break
        shares = mip_shares(m)
        routing = best_routing(prompts, shares, prices)
        prices = routing.prices
        if routing.quality > best[2]:
            best = (shares, routing.prices, routing.quality)
        if result.objective - best[2] <= tolerance * abs(best[2]):
            break
        add_quality_cut(m, prompts, routing.prices)
    for v in binaries:
        v.unfix()
    return best[:2]


def seed_cuts(m: pyo.ConcreteModel, prompts: Prompts, n_models: int) -> None:
    """Cuts at every model alone and at equal shares: enough to bound the first MIP sensibly."""
    for shares in np.vstack([np.eye(n_models), np.full(n_models, 1 / n_models)]):
        add_quality_cut(m, prompts, best_routing(prompts, shares).prices)


def solve_exact(
    instance: Instance,
    time_limit: float | None = None,
    mip_gap: float = DEFAULT_MIP_GAP,
    threads: int | None = None,
    tee: bool = False,
    write_model: str | None = None,
    progress: bool = False,
    per_prompt: bool = False,
) -> Plan:
    """Solve the joint MIP to a proven optimum (relative gap `mip_gap`), or report the bound at the time limit.

    With the cuts (11), rounds of MIP solves add cuts until bound and best plan meet; with the
    per-prompt routing (12), one MIP solve does it."""
    start = time.perf_counter()
    prompts = Prompts.merge(instance.scores)
    m = build_joint_mip(instance, per_prompt=per_prompt)
    if not per_prompt:
        seed_cuts(m, prompts, len(instance.models))
    solver = make_solver(time_limit=time_limit, mip_gap=mip_gap / 10, threads=threads, tee=tee)
    best, bound, rounds, solved = None, float("inf"), 0, set()
    deadline = start + (time_limit if time_limit is not None else float("inf"))
    while time.perf_counter() < deadline:
        if time_limit is not None:
            solver.config.time_limit = deadline - time.perf_counter()
        result = solve_model(m, solver)
        rounds += 1
        if result.status == "infeasible":
            raise Infeasible(infeasibility_reason(instance))
        bound = min(bound, result.bound if result.bound is not None else float("inf"))
        if not result.has_solution:
            break
        candidate = evaluate_mip_solution(m, solver, instance, prompts, solved, deadline)
        if candidate is not None and (best is None or candidate.quality > best.quality):
            best = candidate
        gap = relative_gap(bound, best.quality) if best else float("inf")
        if progress:
            print(f"exact: round {rounds}: bound {bound:.7f}, best {best.quality:.7f}, gap {gap:.2e}",
                  file=sys.stderr)
        if per_prompt or gap <= mip_gap or result.status == "time_limit":
            break
    if write_model:
        m.write(write_model, io_options={"symbolic_solver_labels": True})
    if best is None:
        raise NoPlanInTime(f"exact: the time limit of {time_limit:g} s passed before the MIP found a plan")
    notes = {"formulation": "per-prompt" if per_prompt else "cuts", "mip_rounds": rounds,
             "setups_evaluated": len(solved), "routing_window_rows": best.routing.window_rows}
    return final_plan(instance, best, bound, mip_gap, notes, time.perf_counter() - start)


def relative_gap(bound: float, quality: float) -> float:
    return max(0.0, bound - quality) / max(abs(quality), 1e-12)


def final_plan(instance: Instance, best: SetupCandidate, bound: float, mip_gap: float, notes: dict, seconds: float) -> Plan:
    """The best setup's routing LP optimum as a plan, with the MIP's bound and the gap."""
    routing = best.routing
    bound = max(bound, routing.quality)
    gap = relative_gap(bound, routing.quality)
    status = "optimal" if gap <= mip_gap else "time_limit"
    return build_plan(instance, "exact", best.setup, best.placement, routing.shares, routing.quality,
                      SolverReport(status, seconds, gap, bound), notes, sensitivity_of(routing))


def sensitivity_of(routing: SetupRouting) -> dict[str, float]:
    """The plan's sensitivity entry: marginal quality at the chosen setup (routing LP duals)."""
    return {"quality_per_ms_of_target": routing.quality_per_ms, "quality_per_rps_of_load": routing.quality_per_rps}


def infeasibility_reason(instance: Instance) -> str:
    """Why the MIP has no solution: no placement, too little capacity, or the lowest mean TTFT reachable."""
    m = build_joint_mip(instance)
    m.objective.deactivate()
    m.slo.deactivate()
    m.routed.deactivate()
    m.carried = pyo.Objective(expr=sum(m.w[i] for i in m.MODELS), sense=pyo.maximize)
    result = solve_model(m)
    if not result.has_solution:
        return "no setup fits the cluster: the required models' shards cannot all be placed on the GPUs"
    if result.objective < 1 - 1e-9:
        return (f"no setup has the capacity: at most {100 * result.objective:.1f}% of "
                f"{instance.arrival_rate_rps:g} requests/s can be carried within the profiled loads")
    m.carried.deactivate()
    m.routed.activate()
    m.fastest = pyo.Objective(expr=sum(m.contribution[c] for c in m.CHOICES), sense=pyo.minimize)
    return slo_out_of_reach(solve_model(m).objective, instance.slo_mean_ttft_ms)
