"""The cut loop of `exact`: rounds of the joint MIP, cuts on Q, and the routing LP on each candidate.

State: the incumbent (the best plan found: a setup, its placement and its routing LP's optimum),
the bound (the smallest bound any round's MIP proved), the candidates evaluated (keyed on the
setup and the segments of its non-convex curves), and the counts of rounds and cuts.

A round, one method each:

1. `solve_mip`: solve the MIP. Its bound is an upper bound on the optimum, because the cuts (11)
   over-estimate Q. A bound below the incumbent by more than the MIP's tolerance contradicts a
   known plan: the MIP is solved again with presolve off, and if the bound stays below, that is
   a solver failure (`SolverError`), never clamped away.
2. `evaluate_candidate`: the first time a (setup, segments) pair comes up, solve the routing LP on
   exactly that setup, with each non-convex curve held to the MIP's own segment
   (models/methods/routing.py). Its optimum is a feasible plan (a lower bound) and its prices give
   the cut tight at its shares. If the LP is infeasible, the MIP met the target only within its
   tolerance there: a no-good cut excludes exactly that pair.
3. `cut_at_mip_shares`, unless step 2 closed the gap: compute Q and its prices at the MIP's shares
   (models/problem/transport.py, starting from the last prices found) and add the cut (11) that is
   tight there, if the MIP's quality exceeds Q there: a new cut.
4. Stop when the relative gap between bound and incumbent is within `mip_gap` (at least
   GAP_FLOOR, the MIP's tolerance: no smaller gap can be claimed), or the time limit passes. A
   round that adds no new candidate and whose MIP solution (shares and quality, to 1e-9) came up
   before, so that the cut added at it did not cut it off, cannot change the next round (a stall):
   the loop stops and reports the gap it has, never loops silently.

With the per-prompt formulation (12) the MIP's quality is Q itself: one round does it.

Re-planning (SPEC 4.7; `add_move_cost` in models/methods/exact.py) makes the MIP's objective
quality - C moves. A candidate's value is then its routing LP's quality minus C times the moves of
the placement the MIP chose, the incumbent is the candidate of the highest value, and the bound and
the gap are about the value: the MIP still over-estimates Q through (11) and counts moves exactly, so
its bound is an upper bound on the best value. A candidate is keyed on its moves as well: the same
setup placed with fewer moves is a new, better candidate (its routing LP is solved again).
With the cost objective (SPEC 4.4) the same loop minimizes: the MIP's bound is a lower bound on the
least cost (the cuts relax Q >= min_quality, (14)), the best bound is the largest, and the incumbent
is the cheapest candidate (then the one of highest quality). A candidate is a setup with the MIP's
placement, keyed on its cost too, and its routing LP's optimum; a setup whose LP quality is below
min_quality is excluded by a no-good cut like one that misses the target. `exact` then runs the loop
again on the same model with the cost bounded by the least one and the quality objective (15).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from models.methods.routing import SetupRouting, solve_routing_lp
from models.problem.instance import Instance, Option
from models.problem.moves import Replanning
from models.problem.progress import Progress
from models.problem.setup import (Placement, ReplicaPlacement, Replicas, Setup, as_replicas, first_replicas,
                                  placement_cost)
from models.problem.solver import DeadlinePassed, SolverError, make_solver, remaining, solve_model
from models.problem.tolerances import GAP_FLOOR
from models.problem.transport import Prompts, best_routing, price_unused

CUT_SCALE = 1e4  # cut rows are scaled so that HiGHS's feasibility tolerance (1e-7) is 1e-11 in quality
CUT_TOL = 1e-9  # relative: a MIP quality above Q by more than this makes the cut at its shares a new one

Segments = dict  # (model index, replica) -> the segment of its non-convex curve that holds its share


class MipInfeasible(Exception):
    """The MIP has no solution and no plan is known: the instance is infeasible."""


@dataclass(frozen=True, eq=False)
class SetupCandidate:
    """A plan in the making: a setup with its placement (and the hourly cost of its GPUs) and its routing LP's
    optimum; when re-planning, the placement's moves and their cost."""

    setup: Setup | Replicas
    placement: Placement | ReplicaPlacement
    routing: SetupRouting
    moves: int = 0
    move_cost: float = 0.0
    cost: float = 0.0

    @property
    def quality(self) -> float:
        return self.routing.quality

    @property
    def value(self) -> float:
        """The MIP's objective at this candidate: Q, or Q - C moves when re-planning."""
        return self.quality - self.move_cost * self.moves


def add_quality_cut(m: pyo.ConcreteModel, prompts: Prompts, prices: np.ndarray) -> None:
    """(11) for these prices: tight at every share vector they route to."""
    constant = prompts.bound(prices)
    m.quality_cuts.add(CUT_SCALE * m.quality <= CUT_SCALE * (
        constant + sum(float(a) * m.w[i] for i, a in zip(m.MODELS, prices))))


def full_prices(prompts: Prompts, routing: SetupRouting) -> np.ndarray:
    """Prices over every model at which the routing LP's optimum is a best routing: its own prices on the
    deployed models (optimal transport prices at its shares, by complementary slackness) and, for the others,
    prices at which no prompt prefers them (`price_unused`), so that the cut (11) is tight at its shares."""
    deployed = np.flatnonzero(np.isfinite(routing.prices))
    return price_unused(prompts, deployed, routing.prices[deployed])


def seed_cuts(m: pyo.ConcreteModel, prompts: Prompts, n_models: int) -> None:
    """Cuts at every model alone and at equal shares: enough to bound the first MIP sensibly."""
    for shares in np.vstack([np.eye(n_models), np.full(n_models, 1 / n_models)]):
        add_quality_cut(m, prompts, best_routing(prompts, shares).prices)


def choice_of(slot: str, option: Option) -> tuple:
    """The MIP's index of a replica slot (SPEC 4.5; a model's first slot is named as the model) at an option:
    (slot, tp, mps), with the GPU type appended when there is one."""
    return (slot, option.tp, option.mps_pct, *((option.gpu_type,) if option.gpu_type else ()))


def exclude(m: pyo.ConcreteModel, setup: Setup | Replicas, segments: Segments) -> None:
    """A no-good cut: the MIP may not choose exactly these options (or none) for every replica slot, with these
    segments of its non-convex curves, again."""
    slots = model_slots(m)
    replicas = as_replicas(setup)
    chosen = [choice_of(slots[k][r], o) for k, options in enumerate(replicas) for r, o in enumerate(options)]
    used = {c[0] for c in chosen}
    picked = [(*choice_of(slots[k][r], replicas[k][r]), segment) for (k, r), segment in segments.items()]
    m.excluded.add(
        sum(m.choose[c] for c in chosen) + sum(m.seg[s] for s in picked)
        - sum(m.choose[c] for c in m.CHOICES if c[0] not in used) <= len(chosen) + len(picked) - 1)


def model_slots(m: pyo.ConcreteModel) -> list[list[str]]:
    """Each model's replica slots, in order (SPEC 4.5; one per model without replicas)."""
    return [[u for u in m.SLOTS if m.slot_model[u] == i] for i in m.MODELS]


def mip_setup(m: pyo.ConcreteModel) -> tuple[Setup, Placement] | tuple[Replicas, ReplicaPlacement]:
    """The setup and a placement of the MIP's current solution (in either placement form); in the replica form
    (SPEC 4.5) when the MIP has replica slots, each model's replicas in slot order."""
    choices = list(m.CHOICES)
    chosen = [c for c in choices if m.choose[c].value > 0.5]
    if hasattr(m, "place"):
        gpus = {c: tuple(p[-1] for p in m.PLACES if p[:-1] == c and m.place[p].value > 0.5) for c in chosen}
    else:
        gpus = pattern_gpus(m, choices, set(chosen))
    by_model = [[c for u in slots for c in chosen if c[0] == u] for slots in model_slots(m)]
    replicas = tuple(tuple(Option(*c[1:]) for c in held) for held in by_model)
    placement = tuple(tuple(gpus[c] for c in held) for held in by_model)
    if len(m.SLOTS) > len(m.MODELS):
        return replicas, placement
    return first_replicas(replicas), tuple(held[0] if held else () for held in placement)


def pattern_gpus(m: pyo.ConcreteModel, choices: list, chosen: set) -> dict:
    """GPU numbers for the pattern counts: patterns in order, each on its count of consecutive GPUs of its
    type (from the type's first GPU on); each chosen option takes the first tp GPUs whose pattern holds it
    (a pattern holds at most one shard of a model, so they are distinct, and a subset of a pattern fits its
    GPU)."""
    gpus = {c: [] for c in chosen}
    next_gpu = {}
    for p in m.PATTERNS:
        gpu_type = m.pattern_types[p]
        g = next_gpu.get(gpu_type.name, gpu_type.first_gpu)
        for _ in range(round(m.gpus_with[p].value)):
            for k in m.pattern_choices[p]:
                c = choices[k]
                if c in chosen and len(gpus[c]) < c[1]:
                    gpus[c].append(g)
            g += 1
        next_gpu[gpu_type.name] = g
    return {c: tuple(found) for c, found in gpus.items()}


def mip_segments(m: pyo.ConcreteModel) -> Segments:
    """The segment the MIP chose for each deployed replica (model index, slot) with a non-convex curve."""
    names = list(m.MODELS)
    return {(names.index(m.slot_model[s[0]]), m.slot_rank[s[0]]): s[-1] for s in m.NONCONVEX_SEGMENTS
            if m.seg[s].value > 0.5}


def mip_shares(m: pyo.ConcreteModel) -> np.ndarray:
    shares = np.clip([pyo.value(m.w[i]) for i in m.MODELS], 0, None)
    return shares / shares.sum()


class CutLoop:
    """The loop of the module docstring on a built MIP `m`."""

    def __init__(self, m: pyo.ConcreteModel, solver, instance: Instance, prompts: Prompts, mip_gap: float,
                 deadline: float | None, progress: bool = False, replanning: Replanning | None = None):
        self.m, self.solver, self.instance, self.prompts = m, solver, instance, prompts
        self.replanning = replanning
        self.mip_gap = max(mip_gap, GAP_FLOOR)
        self.deadline = deadline
        self.progress = Progress(None, "exact", unit="round", enabled=progress)
        self.with_cuts = hasattr(m, "quality_cuts")
        self.min_quality = instance.objective.min_quality if instance.objective.kind == "cost" else None
        self.sense = 1 if self.min_quality is None else -1  # maximize quality, or minimize cost
        self.incumbent: SetupCandidate | None = None
        self.bound = self.sense * math.inf
        self.evaluated: dict[tuple, SetupCandidate | None] = {}
        self.rounds = self.cuts = 0
        self.prices: np.ndarray | None = None  # the last prices found: where the next window and smoothing start
        self.points: set[tuple] = set()  # the MIP solutions seen: shares and quality, rounded
        self.stop_reason = ""
        self.start: pyo.ComponentMap | None = None  # the integer values of the MIP solution that gave the incumbent

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        if self.with_cuts:
            seed_cuts(self.m, self.prompts, len(self.instance.models))
        try:
            while not self.finished():
                status = self.solve_mip()
                if status is None:
                    break
                new_point = self.remember_point()
                new_candidate = self.evaluate_candidate()
                if self.with_cuts and not self.finished():
                    self.cut_at_mip_shares()
                self.report()
                if status == "time_limit":
                    self.stop_reason = "the time limit passed inside the MIP"
                    break
                if not self.with_cuts:
                    break
                if not new_point and not new_candidate and not self.finished():
                    self.stop_reason = ("stalled: the MIP returned a solution it had returned before, the cut at "
                                        "it had not cut it off, and it brought no new candidate")
                    break
        except DeadlinePassed:
            self.stop_reason = "the time limit passed in a routing LP"
        finally:
            self.progress.close()

    def finished(self) -> bool:
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            self.stop_reason = self.stop_reason or "the time limit passed"
            return True
        return self.incumbent is not None and self.gap() <= self.mip_gap

    # ---------------------------------------------------------------- the steps

    def solve_mip(self) -> str | None:
        """Step 1: the MIP's status (`optimal` or `time_limit`), or None when it has no solution in time."""
        if self.deadline is not None:
            self.solver.config.time_limit = max(remaining(self.deadline), 0.01)
        self.offer_incumbent()
        result = solve_model(self.m, self.solver)
        self.rounds += 1
        if result.status == "infeasible":
            if self.incumbent is None:
                raise MipInfeasible()
            self.bound = self.value(self.incumbent)  # every other candidate is excluded
            self.stop_reason = "every other setup is excluded"
            return None
        if result.bound is not None:
            self.check_bound(result.bound)
            self.bound = self.sense * min(self.sense * self.bound, self.sense * result.bound)
        return result.status if result.has_solution else None

    def offer_incumbent(self) -> None:
        """Give HiGHS the incumbent as a MIP start: the integer values (setup, placement, segments) of the
        round that found it, every continuous value left undefined (kHighsUndefined, infinity), so that HiGHS
        completes it by an LP with those integers fixed. That LP is feasible (later cuts bound only the
        quality, and no-good cuts exclude only other setups), and its objective is at least as good as the
        incumbent's."""
        if self.start is None:
            return
        for var in self.m.component_data_objects(pyo.Var):
            var.set_value(self.start.get(var, math.inf), skip_validation=True)
        self.solver.config.warmstart = True

    def value(self, candidate: SetupCandidate) -> float:
        """The objective's value at a candidate: its quality (less C moves when re-planning), or with the cost
        objective its cost."""
        return candidate.value if self.min_quality is None else candidate.cost

    def contradicts(self, bound: float | None) -> bool:
        """Whether a MIP bound is worse than the incumbent's value beyond the MIP's tolerance."""
        value = self.value(self.incumbent)
        return bound is None or self.sense * (value - bound) > GAP_FLOOR * abs(value)

    def check_bound(self, bound: float) -> None:
        """A bound worse than the incumbent beyond the MIP's tolerance is wrong: solve once more with presolve
        off, then fail loudly."""
        if self.incumbent is None or not self.contradicts(bound):
            return
        retry = make_solver(time_limit=self.solver.config.time_limit, mip_gap=self.solver.config.mip_gap)
        retry.highs_options = {**self.solver.highs_options, "presolve": "off"}
        again = solve_model(self.m, retry)
        if self.contradicts(again.bound):
            beyond = "above the cost" if self.min_quality is not None else \
                f"below the quality{' - C moves' if self.replanning else ''}"
            raise SolverError(f"exact: HiGHS proved a bound of {bound:.9f} (and {again.bound} with presolve off), "
                              f"{beyond} {self.value(self.incumbent):.9f} of a plan it admits; its bound cannot be "
                              "trusted")

    def remember_point(self) -> bool:
        """Whether the MIP's solution (shares, quality and objective, to 1e-9) is a new one."""
        point = (*np.round(mip_shares(self.m), 9), round(pyo.value(self.m.quality), 9),
                 round(pyo.value(self.m.objective), 9))
        new = point not in self.points
        self.points.add(point)
        return new

    def cut_at_mip_shares(self) -> None:
        """Step 3: the cut tight at the MIP's shares, if it cuts off the MIP's solution."""
        at_shares = best_routing(self.prompts, mip_shares(self.m), self.prices, deadline=self.deadline)
        self.prices = at_shares.prices
        if pyo.value(self.m.quality) > at_shares.quality + CUT_TOL * max(1.0, abs(at_shares.quality)):
            add_quality_cut(self.m, self.prompts, at_shares.prices)
            self.cuts += 1

    def evaluate_candidate(self) -> bool:
        """Step 2: the routing LP on the MIP's (setup, segments), the first time they come up (with the cost
        objective, the first time at that cost: a cheaper placement of a setup is a new candidate; when
        re-planning, with its moves). A setup whose best quality is below min_quality is excluded like one
        that misses the target."""
        setup, placement = mip_setup(self.m)
        segments = mip_segments(self.m)
        cost = placement_cost(self.instance, placement)
        moves = self.replanning.moves(self.instance.model_names, setup, placement) if self.replanning else 0
        key = self.key(setup, segments, cost, moves)
        if key in self.evaluated:
            return False
        prices = self.prices if self.prices is not None else np.zeros(len(setup))
        routing = solve_routing_lp(self.instance, setup, mip_shares(self.m), prices, segments=segments,
                                   deadline=self.deadline, prompts=self.prompts)
        if routing is not None and self.with_cuts:  # the cut tight at the setup's best shares
            self.prices = full_prices(self.prompts, routing)
            add_quality_cut(self.m, self.prompts, self.prices)
            self.cuts += 1
        if routing is None or not self.instance.objective.met_by(routing.quality):
            self.evaluated[key] = None
            exclude(self.m, setup, segments)
            return True
        candidate = SetupCandidate(setup, placement, routing, cost=cost, moves=moves,
                                   move_cost=self.replanning.move_cost if self.replanning else 0.0)
        self.evaluated[key] = candidate
        if self.incumbent is None or self.better(candidate, self.incumbent):
            self.incumbent = candidate
            self.start = pyo.ComponentMap((var, var.value) for var in self.m.component_data_objects(pyo.Var)
                                          if var.is_integer())
        return True

    def key(self, setup: Setup | Replicas, segments: Segments, cost: float, moves: int) -> tuple:
        """What tells candidates apart: the setup and its segments, its cost with the cost objective, its moves."""
        return (setup, tuple(sorted(segments.items())), round(cost, 9) if self.min_quality is not None else None,
                moves)

    def start_from(self, candidate: SetupCandidate) -> None:
        """A plan known before the first round (a convex setup, with no moves): the incumbent, with the cut at
        its shares, and its setup counts as evaluated."""
        self.incumbent = candidate
        self.evaluated[self.key(candidate.setup, {}, candidate.cost, 0)] = candidate
        if self.with_cuts:
            self.prices = full_prices(self.prompts, candidate.routing)
            add_quality_cut(self.m, self.prompts, self.prices)
            self.cuts += 1

    def better(self, candidate: SetupCandidate, than: SetupCandidate) -> bool:
        """Higher quality (less C moves when re-planning); with the cost objective lower cost, then higher
        quality."""
        if self.min_quality is None:
            return candidate.value > than.value
        return (candidate.cost, -candidate.quality) < (than.cost, -than.quality)

    # ---------------------------------------------------------------- what it found

    def gap(self) -> float:
        """The relative gap between the bound and the incumbent, as it is (negative if the bound is past it)."""
        if self.incumbent is None:
            return math.inf
        value = self.value(self.incumbent)
        return self.sense * (self.bound - value) / max(abs(value), 1e-12)

    def reported_gap(self) -> float:
        """The gap a plan reports: at least GAP_FLOOR, since the MIP's bound is no more precise."""
        return max(self.gap(), GAP_FLOOR)

    def status(self) -> str:
        return "optimal" if self.gap() <= self.mip_gap else "time_limit"

    def report(self) -> None:
        best = f"{self.value(self.incumbent):.7f}" if self.incumbent else "-"
        self.progress.update(note=f"bound {self.bound:.7f}, best {best}, gap {self.gap():.2e}, {self.cuts} cuts")

    def notes(self) -> dict:
        notes = {"mip_rounds": self.rounds, "cuts": self.cuts, "setups_evaluated": len(self.evaluated)}
        if self.incumbent is not None:
            notes["routing_window_rows"] = self.incumbent.routing.window_rows
        if self.stop_reason and self.status() != "optimal":
            notes["stopped"] = self.stop_reason
        return notes

    def summary(self) -> str:
        """One line on the best plan so far, for an interrupted solve."""
        if self.incumbent is None:
            return "no plan found yet; nothing written"
        what = "quality" if self.min_quality is None else "cost per hour"
        value = f" (quality - move cost x moves {self.incumbent.value:.6f})" if self.replanning else ""
        return (f"best plan so far {what} {self.value(self.incumbent):.6f}{value}, bound {self.bound:.6f}, "
                f"gap {self.reported_gap():.2e}; nothing written")
