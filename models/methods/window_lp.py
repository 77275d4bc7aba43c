"""The routing LP's window (models/methods/routing.py) in HiGHS directly, built once per setup and grown.

`build_routing_lp` states the routing LP in Pyomo, for reading and teaching. Solving it that way at
scale spent more time building models than solving them: on 8 models and 36,000 prompts, 77 window
LPs over 4 setups, each rebuilt from scratch, half of exact's time in Pyomo. Here the same LP is
built from arrays, once per setup and prompt set; rows that join the window only add their row (1)
and their columns y, and the fixed rows' loads F and gains D change row bounds and costs in place,
so HiGHS's primal simplex starts each solve from the last solution, still feasible (the rows that join
start at the models they were fixed to).

Columns   w[i] share of each deployed model; v[u] share of each replica of a model with several;
          h[u] >= 0 contribution of each replica to mean TTFT (ms); x[i,j] >= 0 fixed prompts moved
          from i to j, one per ordered pair (held at 0 where no fixed row of i can move to j);
          then y[r,i] >= 0, the fraction of window row r sent to model i, window row by window row.
Rows      (2) (1/N) (sum_r c_r y[r,i] + sum_j x[j,i] - sum_j x[i,j]) - w[i] = -F[i]/N,
          (3) h[u] - a[u,k] v[u] >= b[u,k] (v[u] is w[i] for a model with one replica),
          (4) sum_u h[u] <= tau,  (5) w[i] - sum_r v[i,r] = 0,  then (1) sum_i y[r,i] = 1 per window row.
HiGHS minimizes -(sum_{r,i} c_r s[r,i] y[r,i] + sum_{i,j} D[i,j] x[i,j]) / N, so quality is
S_F / N less its optimum, and every dual of the routing LP (maximizing quality) is the negative of
HiGHS's: the price alpha[i] is minus the dual of (2) (y[r,i] has reduced cost
c_r (-s[r,i] - dual_i) / N - dual of (1), so the routed model maximizes s[r,i] + dual_i).
"""

from __future__ import annotations

import highspy
import numpy as np

from models.problem.instance import Instance
from models.problem.latency import SharePieces, option_pieces
from models.problem.setup import Replicas, Setup, as_replicas
from models.problem.solver import DeadlinePassed, highs_running, new_highs
from models.problem.tolerances import LP_FEASIBILITY
from models.problem.transport import FixedRows, Prompts

PRIMAL_SIMPLEX = 4  # simplex_strategy: a grown window starts primal feasible (`start_joined_rows_at_their_models`)
INFEASIBLE = (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible)


def deployed_models(setup: Setup | Replicas) -> list[int]:
    return [k for k, options in enumerate(as_replicas(setup)) if options]


def replica_units(setup: Setup | Replicas) -> list[tuple[int, int]]:
    """(model, replica) of every replica of the deployed models, in model order."""
    return [(k, r) for k, options in enumerate(as_replicas(setup)) for r in range(len(options))]


def share_bounds(pieces: SharePieces, segment: int | None) -> tuple[float, float]:
    """A replica's share bounds: [0, its capacity], or the segment its non-convex curve is held to."""
    if segment is None:
        return 0.0, pieces.max_share
    return float(pieces.shares[segment]), min(pieces.max_share, float(pieces.shares[segment + 1]))


def bound_scales_with_load(pieces: SharePieces, bound: float) -> bool:
    """Whether a share bound is a profiled load over lam (moves with lam): a segment end or the capacity
    r_K / lam, not 0 and not the share 1 that caps the capacity."""
    return bound > 0 and not (bound == pieces.max_share == 1.0)


class RoutingWindow:
    """The routing LP of one setup over `prompts` (distinct rows of the deployed models' scores), with each
    non-convex curve held to `segments[(model, replica)]`; `solve` it on a window of rows, then read the
    answer off it."""

    def __init__(self, instance: Instance, setup: Setup | Replicas, prompts: Prompts, segments: dict,
                 best: np.ndarray):
        replicas = as_replicas(setup)
        self.deployed = deployed_models(replicas)
        self.units = replica_units(replicas)
        self.pieces = {u: option_pieces(instance, instance.models[u[0]], replicas[u[0]][u[1]]) for u in self.units}
        self.segments = segments
        self.prompts = prompts
        self.best = best  # each row's model b(r), where it is fixed until it joins the window (index into deployed)
        self.n = float(instance.prompt_count)
        self.lam = instance.arrival_rate_rps
        self.in_lp = np.zeros(len(prompts.counts), dtype=bool)
        self.fixed_value = 0.0
        models = len(self.deployed)
        self.pairs = np.array([(a, b) for a in range(models) for b in range(models) if a != b],
                              dtype=np.int32).reshape(-1, 2)  # (0, 2) with one model
        split = [u for u in self.units if len(replicas[u[0]]) > 1]
        self.share_column = {u: models + split.index(u) if u in split else self.deployed.index(u[0])
                             for u in self.units}  # v[u], or w[i] for a model with one replica
        self.h = models + len(split)
        self.x = self.h + len(self.units)
        self.highs = new_highs()
        for option, value in (("presolve", "off"), ("simplex_strategy", PRIMAL_SIMPLEX),
                              ("primal_feasibility_tolerance", LP_FEASIBILITY),
                              ("dual_feasibility_tolerance", LP_FEASIBILITY)):
            self.highs.setOptionValue(option, value)
        self.add_setup_columns(split)
        self.add_setup_rows(instance.slo_mean_ttft_ms, {u[0] for u in split})

    # ---------------------------------------------------------------- building

    def bounds_of(self, u) -> tuple[float, float]:
        return share_bounds(self.pieces[u], self.segments.get(u))

    def add_setup_columns(self, split) -> None:
        lower, upper = [], []
        for k in self.deployed:  # w
            single = (k, 0) not in split
            low, high = self.bounds_of((k, 0)) if single else (0.0, highspy.kHighsInf)
            lower.append(low)
            upper.append(high)
        for u in split:  # v
            low, high = self.bounds_of(u)
            lower.append(low)
            upper.append(high)
        lower += [0.0] * (len(self.units) + len(self.pairs))  # h, x
        upper += [highspy.kHighsInf] * (len(self.units) + len(self.pairs))
        count = len(lower)
        self.highs.addCols(count, np.zeros(count), np.array(lower), np.array(upper), 0,
                           np.zeros(count, dtype=np.int32), np.array([], dtype=np.int32), np.array([]))

    def epigraph_pieces(self) -> list[tuple[tuple[int, int], int]]:
        """(replica, segment) of every row (3): all segments of a convex curve, the held one of another."""
        return [(u, k) for u in self.units
                for k in ([self.segments[u]] if u in self.segments else range(len(self.pieces[u].slopes)))]

    def add_setup_rows(self, target_ms: float, with_replicas: set[int]) -> None:
        rows = []  # (lower, upper, {column: value})
        models = len(self.deployed)
        for a in range(models):  # (2), without y: the moves, and -w
            entries = {a: -1.0}
            for p, (i, j) in enumerate(self.pairs):
                if j == a or i == a:
                    entries[self.x + p] = 1.0 / self.n if j == a else -1.0 / self.n
            rows.append((0.0, 0.0, entries))
        self.epigraph = self.epigraph_pieces()
        for u, k in self.epigraph:  # (3)
            rows.append((float(self.pieces[u].intercepts[k]), highspy.kHighsInf,
                         {self.h + self.units.index(u): 1.0, self.share_column[u]: -float(self.pieces[u].slopes[k])}))
        self.slo_row = len(rows)
        rows.append((-highspy.kHighsInf, float(target_ms), {self.h + q: 1.0 for q in range(len(self.units))}))  # (4)
        for k in sorted(with_replicas):  # (5)
            entries = {self.deployed.index(k): 1.0}
            entries |= {self.share_column[u]: -1.0 for u in self.units if u[0] == k}
            rows.append((0.0, 0.0, entries))
        starts = np.cumsum([0] + [len(e) for _, _, e in rows[:-1]]).astype(np.int32)
        index = np.array([c for _, _, e in rows for c in e], dtype=np.int32)
        value = np.array([v for _, _, e in rows for v in e.values()])
        self.highs.addRows(len(rows), np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), len(index),
                           starts, index, value)

    def add_window_rows(self, rows: np.ndarray) -> None:
        """Columns y[r, i] for `rows` (entries c_r / N in the share rows (2)), then their rows (1)."""
        if not len(rows):
            return
        models = len(self.deployed)
        first = self.highs.getNumCol()
        scores = self.prompts.rows[rows]
        counts = self.prompts.counts[rows]
        count = len(rows) * models
        self.highs.addCols(count, -(counts[:, None] * scores).ravel() / self.n, np.zeros(count),
                           np.full(count, highspy.kHighsInf), count, np.arange(count, dtype=np.int32),
                           np.tile(np.arange(models, dtype=np.int32), len(rows)), np.repeat(counts / self.n, models))
        self.highs.addRows(len(rows), np.ones(len(rows)), np.ones(len(rows)), count,
                           np.arange(0, count, models, dtype=np.int32), np.arange(first, first + count, dtype=np.int32),
                           np.ones(count))
        self.in_lp[rows] = True

    def start_joined_rows_at_their_models(self, joining: np.ndarray) -> None:
        """Warm start: each row that joined the window was fixed at its model b(r) and now routes wholly there,
        y[r, b(r)] = 1 basic and its row (1) nonbasic, so the last solution stays primal feasible (the share rows'
        right-hand sides move by what y now carries). The basis matrix stays nonsingular: y[r, b(r)] is the only
        basic column of row (1) of r."""
        basis = self.highs.getBasis()
        models = len(self.deployed)
        first = self.highs.getNumCol() - len(joining) * models
        columns = first + np.arange(len(joining)) * models + self.best[joining]
        rows = self.highs.getNumRow() - len(joining) + np.arange(len(joining))
        col_status, row_status = list(basis.col_status), list(basis.row_status)
        for c, r in zip(columns, rows):
            col_status[c] = highspy.HighsBasisStatus.kBasic
            row_status[r] = highspy.HighsBasisStatus.kLower
        basis.col_status, basis.row_status = col_status, row_status
        self.highs.setBasis(basis)

    def fix_rows(self, fixed: FixedRows) -> None:
        """Rows (2) at -F/N, and each pair's move at its gain D (held at 0 without one)."""
        rows = np.arange(len(self.deployed), dtype=np.int32)
        self.highs.changeRowsBounds(len(rows), rows, -fixed.load / self.n, -fixed.load / self.n)
        gains = fixed.gains[self.pairs[:, 0], self.pairs[:, 1]]
        movable = np.isfinite(gains)
        columns = self.x + np.arange(len(self.pairs), dtype=np.int32)
        self.highs.changeColsCost(len(columns), columns, np.where(movable, -gains, 0.0) / self.n)
        self.highs.changeColsBounds(len(columns), columns, np.zeros(len(columns)),
                                    np.where(movable, highspy.kHighsInf, 0.0))
        self.fixed_value = float(self.prompts.counts[fixed.rows] @ self.prompts.rows[fixed.rows, fixed.model])

    # ---------------------------------------------------------------- solving

    def solve(self, inside: np.ndarray, fixed: FixedRows, time_limit: float | None) -> bool:
        """Solve with the rows of `inside` in the window (rows only join) and the others `fixed`; whether it
        is feasible (if not, neither is the LP over all prompts: this one is a relaxation)."""
        joining = np.flatnonzero(inside & ~self.in_lp)
        solved_before = bool(self.highs.getInfo().basis_validity)
        self.add_window_rows(joining)
        if solved_before and len(joining):
            self.start_joined_rows_at_their_models(joining)
        self.fix_rows(fixed)
        self.highs.setOptionValue("time_limit", float(time_limit) if time_limit is not None else highspy.kHighsInf)
        with highs_running(self.highs):
            self.highs.run()
        status = self.highs.getModelStatus()
        if status == highspy.HighsModelStatus.kTimeLimit:
            raise DeadlinePassed("the time limit passed in the routing LP")
        if status in INFEASIBLE:
            return False
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"the routing window LP ended {self.highs.modelStatusToString(status)}")
        solution = self.highs.getSolution()
        self.columns = np.array(solution.col_value)
        self.column_duals = np.array(solution.col_dual)
        self.row_duals = np.array(solution.row_dual)
        return True

    # ---------------------------------------------------------------- the answer

    def moves(self) -> np.ndarray:
        """x[i, j] over the deployed models, in prompts."""
        matrix = np.zeros((len(self.deployed), len(self.deployed)))
        matrix[self.pairs[:, 0], self.pairs[:, 1]] = self.columns[self.x:self.x + len(self.pairs)]
        return matrix

    def prices(self) -> np.ndarray:
        """alpha over the deployed models: minus the duals of (2)."""
        return -self.row_duals[:len(self.deployed)]

    def quality(self) -> float:
        return self.fixed_value / self.n - self.highs.getInfo().objective_function_value

    def shares(self) -> np.ndarray:
        """w over the deployed models."""
        return self.columns[:len(self.deployed)]

    def unit_share(self, u) -> float:
        return float(self.columns[self.share_column[u]])

    def quality_per_ms(self) -> float:
        """d quality / d tau: the SLO row's dual (routing.py's module docstring)."""
        return float(-self.row_duals[self.slo_row])

    def quality_per_rps(self) -> float:
        """d quality / d lam (routing.py's module docstring). A right-hand side or bound B that is a profiled
        load over lam moves by dB/dlam = -B/lam, and d quality / dB is minus HiGHS's dual of it; so each row (3)
        adds its dual x b / lam, and each replica share at such a bound its reduced cost x bound / lam."""
        duals = self.row_duals[len(self.deployed):self.slo_row]
        per_rps = sum(d * float(self.pieces[u].intercepts[k]) for d, (u, k) in zip(duals, self.epigraph)) / self.lam
        for u in self.units:
            low, high = self.bounds_of(u)
            share = self.unit_share(u)
            bound = low if abs(share - low) <= abs(share - high) else high
            if bound_scales_with_load(self.pieces[u], bound):
                per_rps += self.column_duals[self.share_column[u]] * bound / self.lam
        return float(per_rps)
