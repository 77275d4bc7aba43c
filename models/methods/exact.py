"""`exact`: the joint setup-and-routing problem as one mixed-integer program, solved by HiGHS.

Sets      models i; replica slots u of model i (SPEC 4.5: max_replicas of them, the first named as
          the model, slot r >= 2 as NAME#r); GPUs g = 0..G-1; GPU types t with GPUs G_t (SPEC 4.4; one type
          without them); choices c = (u, tp, mps[, t]), the options of slot u's model with a latency curve
          whose shard fits a GPU of the option's type t_c; segments k of H_c; GPU patterns p of each type t_p.
Data      shard_gb[c] = weights_i / tp + kv_i (GB); mps[c] (%); tp[c]; memory M_t (GB) per GPU of type t;
          kappa_t, the cost per hour of a GPU of type t; qmin, the least quality (cost objective);
          cap[c] = min(1, (1 - headroom) r_K / lam, tail[c] / lam), the largest share the option carries (5);
          tail[c] (requests/s), the largest load up to which each TTFT percentile with a bound stays within it
          (SPEC 4.6, `Instance.tail_rate_rps`); a choice whose first profiled point breaks a bound is not a choice;
          H_c's segments: H_c(w) = a[c,k] w + b[c,k] on [lo[c,k], hi[c,k]] (ms);
          tau, the mean-TTFT target (ms); required_i; a[p,c] = 1 if pattern p holds a shard of c.
Variables choose[c] in {0,1}       model i runs with option c
          share[c] >= 0            routing share carried at choice c; w[i] = sum_c share[c]
          contribution[c] >= 0     H_c(share[c]), ms
          seg[c,k] in {0,1}, piece[c,k] >= 0   the segment holding share[c] (non-convex H_c only)
          quality                  the mean predicted quality Q(w)
          placement, in one of two forms:
          gpus_with[p] in {0..G}   GPUs whose content is pattern p   (patterns, the default)
          place[c,g] in {0,1}      a shard of choice c sits on GPU g of type t_c (per-GPU)
          used[g] in {0,1}         GPU g holds a shard (per-GPU, cost objective)
Objective max quality; or, with the cost objective, min gpu_cost s.t. (14)
(1) sum_{c of u} choose[c] = 1 for the first slot u of a required model, <= 1 for every other slot
(17) replica symmetry: for consecutive slots u' = r-1, u = r of a model with options indexed 1..n,
    sum_{c of u} choose[c] <= sum_{c of u'} choose[c]   and
    sum_{c of u'} idx[c] choose[c] <= sum_{c of u} idx[c] choose[c] + n (1 - sum_{c of u} choose[c]).
    The slots are interchangeable, so sorting any plan's replicas (used first, by option index)
    keeps it feasible with the same value: no optimum is cut off. Replicas are placed per GPU, and are
    not planned with GPU types or the cost objective (the loader refuses them together).
Placement, per-GPU form:
(2) sum_{g in G_{t_c}} place[c,g] = tp[c] choose[c];   sum_{c of u} place[c,g] <= 1 (one shard of a
    replica per GPU)
(3) sum_c shard_gb[c] place[c,g] <= M_t for g of type t      memory per GPU
(4) sum_c mps[c] place[c,g] <= 100                          compute share per GPU
(10) GPUs of a type are identical: those holding the first model come first,
    sum_{c of model 1} place[c,g] >= sum_{c of model 1} place[c,g+1] for g, g+1 of one type. Sorting
    any plan's GPUs of each type this way keeps it feasible (and its cost), so no optimal plan is cut
    off. HiGHS's own symmetry detection handles the permutations left.
(13) cost objective: used[g] >= place[c,g];  gpu_cost = sum_g kappa_{t(g)} used[g]
Placement, pattern (configuration) form: a pattern of type t is a maximal content of a GPU of type t,
a set of shards of choices of type t, at most one per model, within M_t GB and 100 %
(models/problem/setup.py `maximal_patterns`).
(2p) sum_p a[p,c] gpus_with[p] >= tp[c] choose[c]           each chosen option's shards on as many GPUs
(3p) sum_{p of type t} gpus_with[p] <= |G_t|                 no more GPUs of a type than the cluster has
(13p) cost objective: gpu_cost = sum_p kappa_{t_p} gpus_with[p]; at the optimum every counted GPU
    holds a shard (else dropping it is cheaper), so it is the cost of the GPUs in use
    Every GPU content of a placement lies in a maximal pattern, and dropping shards keeps a GPU
    within (3) and (4), so (2p)-(3p) admit exactly the setups that can be placed: (2)-(4) hold by
    construction, GPUs are not told apart, and (10) is not needed.
(5) share[c] <= cap[c] choose[c]                            capacity and tail bounds; the only bound, from the data
(6) sum_c contribution[c] <= tau                            the SLO
(7) sum_i w[i] = 1                                          every prompt is routed
(8) convex H_c: contribution[c] >= a[c,k] share[c] + b[c,k] choose[c] for every k
    (the perspective of the epigraph: exact, no extra binaries, 0 when c is not chosen)
(9) non-convex H_c: sum_k seg[c,k] = choose[c]; lo[c,k] seg[c,k] <= piece[c,k] <= hi[c,k] seg[c,k];
    share[c] = sum_k piece[c,k]; contribution[c] >= sum_k (a[c,k] piece[c,k] + b[c,k] seg[c,k])
(11) quality <= B(alpha) + sum_i alpha[i] w[i] for cuts alpha, B(alpha) = (1/N) sum_x max_i (s[x,i] - alpha[i]).
(14) cost objective: quality >= qmin. With (11) an outer approximation of the concave Q(w), (14) is
    a relaxation of Q(w) >= qmin that the cut loop makes exact (docs/formulation.md).
(15) cost objective, second stage once the least cost c* is proven: gpu_cost <= c*, max quality.

Re-planning from a running plan (SPEC 4.7, `add_move_cost`), on the per-GPU placement only: the
pattern form counts GPUs per content and cannot tell which GPU keeps which shard.
Data      S0, the current plan's shards (c, g) that are still choices of this instance; C >= 0, the move cost
(16) moves = sum_{c,g} place[c,g] - sum_{(c,g) in S0} place[c,g]      the shards started, exactly
    with replicas (SPEC 4.5), a current shard (model, option, GPU) is kept by any slot of the model placing
    that option there: kept[s] <= sum of those place[c,g], 0 <= kept[s] <= 1, counted once (no binary)
Objective max quality - C moves
    (10) is dropped: GPUs that hold different shards now are no longer alike.

The per-prompt formulation (`per_prompt=True`, the textbook form, kept for
teaching and as the benchmark's baseline) replaces (11) by the routing itself,
over distinct score rows r with counts c_r:
(12) y[r,i] >= 0, sum_i y[r,i] = 1;  w[i] = (1/N) sum_r c_r y[r,i];
     quality = (1/N) sum_{r,i} c_r s[r,i] y[r,i].

Q(w), the best quality for shares w, is the transportation problem's value:
concave and piecewise linear, and by LP duality Q(w) = min over alpha of the
right-hand side of (11). So (11) over all alpha is exact, and the model's
size does not depend on the number of prompts N. The cuts are generated in
rounds by the cut loop (models/methods/cut_loop.py), which also states how the
plan, its bound and its gap are obtained.

The model solves the target and the capacities themselves, with no margin
(models/problem/tolerances.py): its solutions meet them within HiGHS's MIP
feasibility tolerance, and every plan is then taken from an LP solved to 1e-9.
"""

from __future__ import annotations

import dataclasses
import time

import pyomo.environ as pyo

from models.problem.instance import GpuType, Instance, Objective, Option
from models.problem.latency import option_pieces
from models.problem.plan import Infeasible, NoPlanInTime, Plan, SolverReport, build_plan, slo_out_of_reach
from models.methods.capacity_bound import WidestPlan, widest_plan
from models.methods.cut_loop import CutLoop, MipInfeasible, SetupCandidate, choice_of
from models.methods.routing import SetupRouting
from models.problem.setup import TooManyPatterns, maximal_patterns, placement_cost
from models.problem.defaults import DEFAULT_MIP_GAP
from models.problem.tolerances import GAP_FLOOR
from models.problem.interrupts import Interrupted
from models.problem.moves import Replanning
from models.problem.solver import DeadlinePassed, make_solver, solve_model
from models.problem.transport import Prompts


def mip_choices(instance: Instance) -> list[tuple]:
    """Choices c = (slot, tp, mps), and the GPU type when the instance lists types (`choice_of`): every option of
    every replica slot of every model (SPEC 4.5; a model's first slot is named as the model, `Model.slot_names`)."""
    return [choice_of(slot, o) for m in instance.models for slot in m.slot_names for o in instance.options(m)]


def choice_option(c: tuple) -> Option:
    return Option(*c[1:])


def choice_type(instance: Instance, c: tuple) -> GpuType:
    """The GPU type a choice's shards sit on."""
    return instance.gpu_type_named(choice_option(c).gpu_type)


PLACEMENTS = ("patterns", "per-gpu")
PER_GPU_UP_TO = 4  # GPUs: `placement="auto"` takes the per-GPU form on clusters this small, else the patterns


def build_joint_mip(instance: Instance, per_prompt: bool = False, placement: str = "patterns") -> pyo.ConcreteModel:
    """The MIP of the module docstring: with (11) and no cuts yet (see `add_quality_cut`), or with (12);
    placement by GPU patterns (2p)-(3p) or per GPU (2)-(4), (10)."""
    by_name = {slot: model for model in instance.models for slot in model.slot_names}  # slots' models
    choices = mip_choices(instance)
    pieces = {c: option_pieces(instance, by_name[c[0]], choice_option(c)) for c in choices}
    convex = [c for c in choices if pieces[c].is_convex]
    segments = [(*c, k) for c in choices for k in range(len(pieces[c].slopes))]

    m = pyo.ConcreteModel(name=f"joint[{instance.name}]")
    m.MODELS = pyo.Set(initialize=[model.name for model in instance.models], ordered=True, doc="models i")
    m.GPUS = pyo.RangeSet(0, instance.gpu_count - 1, doc="GPUs g")
    m.SLOTS = pyo.Set(initialize=list(by_name), ordered=True, doc="replica slots of the models (SPEC 4.5)")
    m.slot_model = pyo.Param(m.SLOTS, within=pyo.Any, initialize=lambda m, u: by_name[u].name,
                             doc="the model a slot is a replica of")
    m.slot_rank = pyo.Param(m.SLOTS, initialize=lambda m, u: by_name[u].slot_names.index(u),
                            doc="r: the slot is the model's replica r + 1")
    width = 4 if instance.typed else 3  # `choice_of`
    m.CHOICES = pyo.Set(dimen=width, initialize=choices, ordered=True,
                        doc="choices c = (slot, tp, mps[, GPU type])")
    m.USABLE = pyo.Set(initialize=[u for u in m.SLOTS if any(c[0] == u for c in choices)], ordered=True,
                       within=m.SLOTS, doc="slots of models with at least one choice")
    m.CONVEX = pyo.Set(dimen=width, within=m.CHOICES, initialize=convex, doc="choices with convex H")
    m.NONCONVEX = pyo.Set(dimen=width, within=m.CHOICES, initialize=[c for c in choices if c not in convex],
                          doc="choices with non-convex H")
    m.SEGMENTS = pyo.Set(dimen=width + 1, initialize=segments, doc="segments (c, k) of H_c")
    m.NONCONVEX_SEGMENTS = pyo.Set(dimen=width + 1, within=m.SEGMENTS,
                                   initialize=[s for s in segments if s[:-1] not in convex],
                                   doc="segments of non-convex H_c")

    m.cap = pyo.Param(m.CHOICES, initialize=lambda m, *c: pieces[c].max_share,
                      doc="largest share the option carries: capacity (5) and tail bounds (5t)")
    m.slope = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: float(pieces[s[:-1]].slopes[s[-1]]), doc="a, ms")
    m.intercept = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: float(pieces[s[:-1]].intercepts[s[-1]]), doc="b, ms")
    m.lo = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: float(pieces[s[:-1]].shares[s[-1]]), doc="segment start")
    m.hi = pyo.Param(m.SEGMENTS, initialize=lambda m, *s: min(float(pieces[s[:-1]].shares[s[-1] + 1]), m.cap[s[:-1]]),
                     doc="segment end")

    m.choose = pyo.Var(m.CHOICES, within=pyo.Binary, doc="model runs with this option")
    m.share = pyo.Var(m.CHOICES, within=pyo.NonNegativeReals, doc="routing share carried at the choice")
    m.contribution = pyo.Var(m.CHOICES, within=pyo.NonNegativeReals, doc="H_c(share), ms")
    m.seg = pyo.Var(m.NONCONVEX_SEGMENTS, within=pyo.Binary, doc="segment holding the share")
    m.piece = pyo.Var(m.NONCONVEX_SEGMENTS, within=pyo.NonNegativeReals, doc="share on the segment")
    m.quality = pyo.Var(bounds=(0, float(instance.scores.max(axis=1).mean())), doc="mean predicted quality")
    m.w = pyo.Expression(m.MODELS, rule=lambda m, i: sum(m.share[c] for c in m.CHOICES if m.slot_model[c[0]] == i),
                         doc="routing share of model i: the sum over its replicas")

    @m.Constraint(m.SLOTS, doc="(1) one option per deployed model (and at most one per further replica slot)")
    def one_option(m, i):
        first = by_name[i].required and m.slot_rank[i] == 0
        if i not in m.USABLE:  # no option: a required model makes the MIP infeasible, an optional one stays out
            return pyo.Constraint.Infeasible if first else pyo.Constraint.Skip
        chosen = sum(m.choose[c] for c in m.CHOICES if c[0] == i)
        return chosen == 1 if first else chosen <= 1

    add_slot_order(m)

    if placement == "patterns":
        add_pattern_placement(m, instance, by_name)
    elif placement == "per-gpu":
        add_per_gpu_placement(m, instance, by_name)
    else:
        raise ValueError(f"placement {placement!r} is not one of {', '.join(PLACEMENTS)}")

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
        c = s[:-1]
        return m.contribution[c] >= m.slope[s] * m.share[c] + m.intercept[s] * m.choose[c]

    @m.Constraint(m.NONCONVEX, doc="(9) one segment of a chosen non-convex H")
    def one_segment(m, *c):
        return sum(m.seg[s] for s in m.NONCONVEX_SEGMENTS if s[:-1] == c) == m.choose[c]

    @m.Constraint(m.NONCONVEX_SEGMENTS, doc="(9) piece within its segment")
    def piece_low(m, *s):
        return m.piece[s] >= m.lo[s] * m.seg[s]

    @m.Constraint(m.NONCONVEX_SEGMENTS, doc="(9) piece within its segment")
    def piece_high(m, *s):
        return m.piece[s] <= m.hi[s] * m.seg[s]

    @m.Constraint(m.NONCONVEX, doc="(9) share is the chosen segment's piece")
    def share_pieces_sum(m, *c):
        return m.share[c] == sum(m.piece[s] for s in m.NONCONVEX_SEGMENTS if s[:-1] == c)

    @m.Constraint(m.NONCONVEX, doc="(9) non-convex H on the chosen segment")
    def nonconvex_epigraph(m, *c):
        return m.contribution[c] >= sum(m.slope[s] * m.piece[s] + m.intercept[s] * m.seg[s]
                                        for s in m.NONCONVEX_SEGMENTS if s[:-1] == c)

    if per_prompt:
        add_per_prompt_routing(m, Prompts.merge(instance.scores))
    else:
        m.quality_cuts = pyo.ConstraintList(doc="(11) outer approximation of Q(w) by its dual prices")
    m.excluded = pyo.ConstraintList(doc="setups (and segments) that meet the target only within the MIP's tolerance")
    add_objective(m, instance)
    return m


def add_objective(m: pyo.ConcreteModel, instance: Instance) -> None:
    """max quality; or, with the cost objective, min gpu_cost s.t. (14) quality >= min_quality."""
    if instance.objective.kind != "cost":
        m.objective = pyo.Objective(expr=m.quality, sense=pyo.maximize, doc="mean predicted quality")
        return

    @m.Constraint(doc="(14) mean predicted quality at least min_quality")
    def min_quality(m):
        return m.quality >= instance.objective.min_quality

    m.objective = pyo.Objective(expr=m.gpu_cost, sense=pyo.minimize, doc="hourly cost of the GPUs in use")


def add_per_gpu_placement(m: pyo.ConcreteModel, instance: Instance, by_name) -> None:
    """(2)-(4) and (10): a binary per choice and GPU of the choice's type; with the cost objective, (13)."""
    m.shard_gb = pyo.Param(m.CHOICES, initialize=lambda m, *c: by_name[c[0]].shard_gb(c[1]), doc="GB per shard")
    m.PLACES = pyo.Set(dimen=m.CHOICES.dimen + 1, initialize=[(*c, g) for c in m.CHOICES
                                                             for g in choice_type(instance, c).gpus],
                      doc="(c, g): GPU g is of choice c's type")
    m.place = pyo.Var(m.PLACES, within=pyo.Binary, doc="a shard of the choice sits on the GPU")
    on_gpu = {g: [] for g in m.GPUS}
    for *c, g in m.PLACES:
        on_gpu[g].append(tuple(c))

    @m.Constraint(m.CHOICES, doc="(2) tp shards on distinct GPUs")
    def shards(m, *c):
        return sum(m.place[c, g] for g in choice_type(instance, c).gpus) == c[1] * m.choose[c]

    @m.Constraint(m.USABLE, m.GPUS, doc="(2) at most one shard of a model (of each replica) per GPU")
    def one_shard_per_gpu(m, i, g):
        mine = [c for c in on_gpu[g] if c[0] == i]
        return sum(m.place[c, g] for c in mine) <= 1 if mine else pyo.Constraint.Skip

    @m.Constraint(m.GPUS, doc="(3) memory per GPU")
    def memory(m, g):
        if not on_gpu[g]:
            return pyo.Constraint.Skip
        return sum(m.shard_gb[c] * m.place[c, g] for c in on_gpu[g]) <= instance.type_of_gpu(g).memory_gb

    @m.Constraint(m.GPUS, doc="(4) compute share per GPU")
    def compute(m, g):
        if not on_gpu[g]:
            return pyo.Constraint.Skip
        return sum(c[2] * m.place[c, g] for c in on_gpu[g]) <= 100

    first = {g: [c for c in on_gpu[g] if m.slot_model[c[0]] == instance.models[0].name] for g in m.GPUS}

    @m.Constraint(m.GPUS, doc="(10) identical GPUs: those holding the first model come first")
    def gpu_order(m, g):
        if g + 1 not in instance.type_of_gpu(g).gpus or not first[g]:
            return pyo.Constraint.Skip
        return sum(m.place[c, g] for c in first[g]) >= sum(m.place[c, g + 1] for c in first[g + 1])

    if instance.objective.kind == "cost":
        m.used = pyo.Var(m.GPUS, within=pyo.Binary, doc="GPU g holds at least one shard")

        @m.Constraint(m.PLACES, doc="(13) a GPU holding a shard is used")
        def in_use(m, *slot):
            return m.used[slot[-1]] >= m.place[slot]

        m.gpu_cost = pyo.Expression(expr=sum(instance.type_of_gpu(g).cost_per_hour * m.used[g] for g in m.GPUS),
                                    doc="hourly cost of the GPUs in use")


def add_pattern_placement(m: pyo.ConcreteModel, instance: Instance, by_name) -> None:
    """(2p)-(3p): an integer count of GPUs per maximal GPU pattern of each GPU type; with the cost objective
    the cost of the counted GPUs (13p)."""
    choices = list(m.CHOICES)
    patterns, types = [], []
    for gpu_type in instance.types:
        mine = [k for k, c in enumerate(choices) if choice_option(c).gpu_type == gpu_type.name]
        found = maximal_patterns([(by_name[choices[k][0]], choice_option(choices[k])) for k in mine],
                                 gpu_type.memory_gb)
        patterns += [tuple(mine[j] for j in content) for content in found]
        types += [gpu_type] * len(found)
    m.PATTERNS = pyo.RangeSet(0, len(patterns) - 1, doc="maximal GPU patterns p")
    m.HOLDS = pyo.Set(dimen=m.CHOICES.dimen + 1,
                      initialize=[(p, *choices[k]) for p, content in enumerate(patterns) for k in content],
                      doc="(p, c): pattern p holds a shard of choice c")
    m.pattern_choices = patterns  # the patterns' contents (indices into CHOICES), read back by mip_setup
    m.pattern_types = types  # each pattern's GPU type, read back by mip_setup
    m.gpus_with = pyo.Var(m.PATTERNS, within=pyo.NonNegativeIntegers, bounds=lambda m, p: (0, types[p].count),
                          doc="GPUs whose content is pattern p")

    holders = {c: [] for c in choices}
    for p, *c in m.HOLDS:
        holders[tuple(c)].append(p)

    @m.Constraint(m.CHOICES, doc="(2p) each chosen option's shards on GPUs whose pattern holds it")
    def pattern_cover(m, *c):
        return sum(m.gpus_with[p] for p in holders[c]) >= c[1] * m.choose[c]

    @m.Constraint(range(len(instance.types)), doc="(3p) no more GPUs than the cluster has")
    def gpu_count(m, t):
        gpu_type = instance.types[t]
        counted = [p for p in m.PATTERNS if types[p] == gpu_type]
        return sum(m.gpus_with[p] for p in counted) <= gpu_type.count if counted else pyo.Constraint.Skip

    if instance.objective.kind == "cost":
        m.gpu_cost = pyo.Expression(expr=sum(types[p].cost_per_hour * m.gpus_with[p] for p in m.PATTERNS),
                                    doc="(13p) hourly cost of the GPUs counted")


def add_slot_order(m: pyo.ConcreteModel) -> None:
    """(17) symmetry among a model's replica slots (SPEC 4.5): slot r is used only if slot r-1 is, and then with
    an option of index (1..n_i, in CHOICES order) at least slot r-1's. Slots are interchangeable (the same
    options, data and constraints), so sorting any plan's replicas this way keeps it feasible and optimal.
    n_i, the number of options, bounds the index sum of an unused slot r; it is the only big-M, from the data."""
    later = [u for u in m.USABLE if m.slot_rank[u] > 0]
    before = {u: v for v, u in zip(m.SLOTS, list(m.SLOTS)[1:]) if u in later}  # the previous slot of the model
    index = {c: 1 + [d[1:] for d in m.CHOICES if d[0] == c[0]].index(c[1:]) for c in m.CHOICES}

    def used(u):
        return sum(m.choose[c] for c in m.CHOICES if c[0] == u)

    def option_index(u):
        return sum(index[c] * m.choose[c] for c in m.CHOICES if c[0] == u)

    @m.Constraint(later, doc="(17) replica slot r used only if slot r-1 is")
    def slot_order(m, u):
        return used(u) <= used(before[u])

    @m.Constraint(later, doc="(17) consecutive used slots in option order")
    def slot_option_order(m, u):
        options = max(index[c] for c in m.CHOICES if c[0] == u)
        return option_index(before[u]) <= option_index(u) + options * (1 - used(u))


def add_move_cost(m: pyo.ConcreteModel, replanning: Replanning) -> None:
    """(16) on a per-GPU MIP: the shards started against the current plan, and the objective quality - C moves;
    (10) dropped. A current shard (model, option, GPU) is kept by any replica slot of the model that places that
    option there; with replicas, kept[s] <= min(1, those placements) counts it once (exact, no binary)."""
    current = sorted((s.model, s.tp, s.mps_pct, s.gpu) for s in replanning.current)
    options = {(m.slot_model[c[0]], *c[1:]) for c in m.CHOICES}
    m.CURRENT = pyo.Set(dimen=4, initialize=[s for s in current if s[:3] in options and s[3] in m.GPUS],
                        doc="shards (c, g) of the current plan that this instance can keep")
    m.move_cost = pyo.Param(initialize=replanning.move_cost, doc="C, quality per shard started")

    def placed_at(s):
        return sum(m.place[c, s[3]] for c in m.CHOICES if m.slot_model[c[0]] == s[0] and c[1:] == s[1:3])

    if len(m.SLOTS) > len(m.MODELS):
        m.kept = pyo.Var(m.CURRENT, bounds=(0, 1), doc="(16) the current shard s is kept by some replica")

        @m.Constraint(m.CURRENT, doc="(16) kept only where placed")
        def kept_placed(m, *s):
            return m.kept[s] <= placed_at(s)

        kept = sum(m.kept[s] for s in m.CURRENT)
    else:
        kept = sum(placed_at(s) for s in m.CURRENT)
    m.moves = pyo.Expression(expr=sum(m.place[c, g] for c in m.CHOICES for g in m.GPUS) - kept,
                             doc="(16) shards started")
    m.gpu_order.deactivate()
    m.del_component(m.objective)
    m.objective = pyo.Objective(expr=m.quality - m.move_cost * m.moves, sense=pyo.maximize,
                                doc="mean predicted quality minus the cost of the moves")


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


def solve_exact(
    instance: Instance,
    time_limit: float | None = None,
    mip_gap: float = DEFAULT_MIP_GAP,
    threads: int | None = None,
    tee: bool = False,
    write_model: str | None = None,
    progress: bool = False,
    per_prompt: bool = False,
    placement: str = "auto",
    replanning: Replanning | None = None,
) -> Plan:
    """Solve the joint MIP to a proven optimum (relative gap `mip_gap`, at least the MIP's tolerance), or
    report the best plan with its bound and gap at the time limit (models/methods/cut_loop.py). With
    `replanning`, maximize quality - C moves on the per-GPU placement (SPEC 4.7).

    With `placement="auto"` (and neither `per_prompt`, `write_model` nor `replanning`), the widest setup's plan
    comes first (models/methods/capacity_bound.py): when it attains the capacity relaxation's bound it is
    returned, proven optimal without a MIP; otherwise the cut loop starts from it. A placement form asked
    for by name always solves the MIP in that form."""
    start = time.perf_counter()
    deadline = None if time_limit is None else start + time_limit
    prompts = Prompts.merge(instance.scores)
    use_relaxation = placement == "auto" and not (per_prompt or write_model or replanning)
    widest = widest_plan_in_time(instance, prompts, deadline) if use_relaxation else None
    if widest is not None and widest.attains_bound:
        return widest_setup_plan(instance, widest, time.perf_counter() - start)
    form, placement = placement_form(instance, placement, replanning)
    try:
        m = build_joint_mip(instance, per_prompt=per_prompt, placement=form)
    except TooManyPatterns as err:
        form, placement = "per-gpu", f"per-gpu (patterns: {err})"
        m = build_joint_mip(instance, per_prompt=per_prompt, placement=form)
    if replanning:
        add_move_cost(m, replanning)
    solver = make_solver(time_limit=time_limit, mip_gap=mip_gap / 10, threads=threads, tee=tee)
    loop = CutLoop(m, solver, instance, prompts, mip_gap, deadline, progress, replanning)
    if widest is not None:
        loop.start_from(SetupCandidate(widest.setup, widest.placement, widest.routing,
                                       cost=placement_cost(instance, widest.placement)))
    try:
        loop.run()
    except Interrupted:
        raise Interrupted(loop.summary()) from None
    except MipInfeasible:
        if instance.objective.kind == "cost":
            raise Infeasible(below_min_quality(instance, deadline, threads)) from None
        raise Infeasible(infeasibility_reason(instance, form, deadline)) from None
    if loop.incumbent is None:
        raise NoPlanInTime(f"exact: the time limit of {time_limit:g} s passed before a plan was found")
    notes = {"formulation": "per-prompt" if per_prompt else "cuts", "placement": placement, **loop.notes()}
    best = loop.incumbent
    if instance.objective.kind == "cost" and loop.status() == "optimal":
        second = best_quality_at_cost(m, instance, solver, prompts, loop, deadline, progress)
        best, notes["quality_at_least_cost"] = second.incumbent, {"status": second.status(), **second.notes()}
    if write_model:
        m.write(write_model, io_options={"symbolic_solver_labels": True})
    return build_plan(instance, "exact", best.setup, best.placement, best.routing.shares, best.quality,
                      SolverReport(loop.status(), time.perf_counter() - start, loop.reported_gap(), loop.bound),
                      notes, sensitivity_of(best.routing), replanning=replanning,
                      replica_shares=best.routing.replica_shares, prices_hint=best.routing.prices)


def widest_plan_in_time(instance: Instance, prompts: Prompts, deadline: float | None) -> WidestPlan | None:
    """The widest setup's plan, or None if it has none or the time limit passes first (the loop then reports
    that no plan was found in time)."""
    try:
        return widest_plan(instance, prompts, deadline)
    except DeadlinePassed:
        return None


def widest_setup_plan(instance: Instance, widest: WidestPlan, seconds: float) -> Plan:
    """The widest setup's plan, optimal because it attains the capacity relaxation's bound (no MIP is solved):
    the bound that proves it, and the gap the least a plan reports."""
    notes = {"formulation": "cuts", "placement": "first-fit decreasing", "mip_rounds": 0, "cuts": 0,
             "setups_evaluated": 1, "routing_window_rows": widest.routing.window_rows,
             "proof": (f"capacity relaxation: every model at its option of largest capacity fits the cluster, and "
                       f"{widest.proof}, so no plan has higher quality (docs/formulation.md, \"Before the MIP\")")}
    return build_plan(instance, "exact", widest.setup, widest.placement, widest.routing.shares, widest.routing.quality,
                      SolverReport("optimal", seconds, GAP_FLOOR, widest.bound), notes, sensitivity_of(widest.routing),
                      prices_hint=widest.routing.prices)


def placement_form(instance: Instance, placement: str, replanning: Replanning | None) -> tuple[str, str]:
    """The placement form the MIP is built in, and the plan's note on it. Re-planning and replicas need the
    per-GPU form. `auto` takes it on clusters of at most PER_GPU_UP_TO GPUs, where GPU symmetry is small
    (exact in CPU seconds, patterns against per-GPU: scale-3m4g-slack 1.75 and 0.9, paper-4xA100 0.95 and
    0.79, scale-3m4g-binding 0.81 and 0.80, paper-4xA100-binding 0.78 and 0.91), and the patterns above
    (scale-4m8g-slack 3.5 and 10.0, paper-8xA100 1.2 and 2.3, scale-8m32g-slack 3.0 and 24)."""
    if replanning and placement != "per-gpu":
        return "per-gpu", "per-gpu (re-planning needs to know which GPU holds which shard)"
    if instance.has_replicas and placement != "per-gpu":
        return "per-gpu", "per-gpu (replicas, SPEC 4.5: a GPU pattern holds one shard per model)"
    if placement == "auto":
        form = "per-gpu" if instance.gpu_count <= PER_GPU_UP_TO else "patterns"
        return form, f"{form} (auto: {instance.gpu_count} GPUs)"
    return placement, placement


def best_quality_at_cost(m: pyo.ConcreteModel, instance: Instance, solver, prompts: Prompts, loop: CutLoop,
                         deadline: float | None, progress: bool) -> CutLoop:
    """The cost objective's second stage: the highest quality among plans of the least cost. (15) bounds the
    cost by the least one found (to GAP_FLOOR) and the same cut loop maximizes quality on `m`: its cuts and
    exclusions stay valid, and its first incumbent is the least-cost plan."""
    least = loop.value(loop.incumbent)
    m.objective.deactivate()
    m.at_least_cost = pyo.Constraint(expr=m.gpu_cost <= least + GAP_FLOOR * max(1.0, abs(least)),
                                     doc="(15) cost at most the least found")
    m.quality_at_cost = pyo.Objective(expr=m.quality, sense=pyo.maximize, doc="mean predicted quality")
    second = CutLoop(m, solver, dataclasses.replace(instance, objective=Objective()), prompts, loop.mip_gap,
                     deadline, progress)
    second.incumbent = loop.incumbent
    second.run()
    return second


def below_min_quality(instance: Instance, deadline: float | None, threads: int | None) -> str:
    """Why the cost objective has no plan: the quality objective's own reason, or the best quality any plan
    reaches (solved exactly, within the time left before `deadline`)."""
    quality_instance = dataclasses.replace(instance, objective=Objective())
    time_limit = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
    try:
        best = solve_exact(quality_instance, time_limit=time_limit, threads=threads)
    except Infeasible as err:
        return str(err)
    except NoPlanInTime:
        return f"no plan reaches quality {instance.objective.min_quality:g}; {NO_REASON_IN_TIME}"
    reached = "the best quality reachable is" if best.solver.status == "optimal" else \
        f"the time limit passed; the best quality found is {best.quality:.6f}, bounded by"
    value = best.quality if best.solver.status == "optimal" else best.solver.bound
    return f"no plan reaches quality {instance.objective.min_quality:g}: {reached} {value:.6f}"


def sensitivity_of(routing: SetupRouting) -> dict[str, float]:
    """The plan's sensitivity entry: marginal quality at the chosen setup (routing LP duals)."""
    return {"quality_per_ms_of_target": routing.quality_per_ms, "quality_per_rps_of_load": routing.quality_per_rps}


NO_REASON_IN_TIME = "the joint MIP has no solution; the time limit passed before its reason was found"


def infeasibility_reason(instance: Instance, placement: str = "patterns", deadline: float | None = None) -> str:
    """Why the MIP has no solution: no placement, too little capacity, or the lowest mean TTFT reachable
    (two more MIPs, within the time left before `deadline`)."""
    m = build_joint_mip(instance, placement=placement)
    m.objective.deactivate()
    m.slo.deactivate()
    m.routed.deactivate()
    m.carried = pyo.Objective(expr=sum(m.w[i] for i in m.MODELS), sense=pyo.maximize)
    time_limit = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
    result = solve_model(m, time_limit=time_limit)
    if result.status == "time_limit":
        return NO_REASON_IN_TIME
    if not result.has_solution:
        return "no setup fits the cluster: the required models' shards cannot all be placed on the GPUs"
    if result.objective < 1 - 1e-9:
        return (f"no setup has the capacity: at most {100 * result.objective:.1f}% of "
                f"{instance.arrival_rate_rps:g} requests/s can be carried within the profiled loads")
    m.carried.deactivate()
    m.routed.activate()
    m.fastest = pyo.Objective(expr=sum(m.contribution[c] for c in m.CHOICES), sense=pyo.minimize)
    time_limit = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
    fastest = solve_model(m, time_limit=time_limit)
    if fastest.status == "time_limit":
        return NO_REASON_IN_TIME
    return slo_out_of_reach(fastest.objective, instance.slo_mean_ttft_ms)
