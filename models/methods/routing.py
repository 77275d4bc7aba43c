"""The routing LP: with the setup fixed, the best shares and routing, and the routing prices.

Data      a fixed setup: deployed models i with curve pieces (slope a[i,k],
          intercept b[i,k] of H_i on segment k) and capacity share cap[i];
          window rows r with counts c_r and scores s[r,i]; every other
          prompt is fixed to a model b(r): F[i] prompts with total score S_F,
          and D[i,j] = max over the fixed rows of i of s[r,j] - s[r,i], the
          best gain of moving a fixed prompt from i to j.
Variables y[r,i] >= 0   fraction of window row r sent to model i
          x[i,j] >= 0   fixed prompts moved from model i to model j (pairs with fixed rows on i)
          w[i] in [0, cap[i]]   share of model i
          h[i] >= 0     model i's contribution to mean TTFT (ms)
Objective max (S_F + sum_{r,i} c_r s[r,i] y[r,i] + sum_{i,j} D[i,j] x[i,j]) / N
(1) sum_i y[r,i] = 1                       every window prompt is routed
(2) w[i] = (F[i] + sum_r c_r y[r,i] - sum_j x[i,j] + sum_j x[j,i]) / N
                                           share; its dual is the price alpha[i]
(3) h[i] >= a[i,k] w[i] + b[i,k]           H_i's epigraph: every segment of a convex curve,
                                           or the one segment w[i] is held to on a non-convex one
(4) sum_i h[i] <= tau                      the SLO

Replicas (SPEC 4.5): a model i with several replicas u = (i, r) has a share v[u] in [0, cap[u]] per
replica, (5) w[i] = sum_r v[i,r], and (3) is per replica, h[u] >= a[u,k] v[u] + b[u,k]; the routing
and its prices stay on the models (the replicas of a model have the same scores, so any routing of
w[i] splits over them in proportion to v). A model with one replica has v = w, as above.

`build_routing_lp` states this LP in Pyomo (for reading, the tutorial and a test against the solver);
`RoutingWindow` (models/methods/window_lp.py) solves it: the same rows and columns built from arrays in
HiGHS once per setup, and grown in place as rows join the window.

Marginal values (envelope theorem, from the LP's duals at the optimum):
* d quality / d tau = the SLO row's dual (per ms of target);
* d quality / d lam (per request/s): on each segment H(w) = G(lam w) / lam, where G is the
  piecewise-linear latency-weighted load through (r_k, r_k L_k); so slopes a do not move with
  lam, intercepts b scale as 1/lam, and so do share bounds that are profiled loads over lam
  (capacity r_K / lam, segment ends). Hence d/d lam = sum_k dual_k b_k / lam
  - sum over such active bounds of reduced cost x bound / lam.

Fixing prompts is exact once certified. The moves x make the LP a relaxation
of the LP over all prompts (any routing of the fixed prompts maps onto
moves at a gain of at most D), so an infeasible LP means the setup cannot
meet the SLO; and the dual of x[i,j], alpha_j - alpha_i >= D[i,j], keeps every
fixed prompt's model a best one at the LP's prices. When the optimum moves
nothing, the fixed prompts at their models and the window's y route every
prompt at the relaxation's value: that is the optimum over all prompts (on
these segments), and with the prices alpha every fixed prompt's model still
maximizes s[x,i] - alpha[i] (complementary slackness, checked row by row).
When it moves load from i to j, the fixed rows of i most drawn to j join
the window and the LP is solved again; rows only join, so this ends.
Without x (as this module first did) a window too narrow for the hint's
prices made the LP infeasible and the window widened by factors of 4, or
left the prices free over a wide interval, and every fixed row they crossed
joined at once (at 12 models, windows of tens of thousands of rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from models.methods.window_lp import RoutingWindow, deployed_models, replica_units, share_bounds
from models.problem.instance import Instance
from models.problem.latency import option_pieces
from models.problem.setup import Replicas, Setup, as_replicas
from models.problem.solver import remaining
from models.problem.transport import FixedRows, Prompts, best_at, best_models

MOVE_TOL = 1e-9  # prompts: a move below this is LP round-off, not a move
SAMPLE_ROWS, SAMPLE_STEP = 2_000, 8  # above SAMPLE_ROWS distinct rows, prices from every SAMPLE_STEP-th row first


@dataclass(frozen=True, eq=False)
class SetupRouting:
    """The routing LP's optimum on one setup: quality, shares, prices (NaN for undeployed models), and each
    model's replicas' shares (SPEC 4.5; they add up to its share)."""

    quality: float
    shares: np.ndarray
    prices: np.ndarray
    window_rows: int
    quality_per_ms: float  # d quality / d target, per ms
    quality_per_rps: float  # d quality / d arrival rate, per request/s
    replica_shares: tuple[tuple[float, ...], ...] = ()


def build_routing_lp(
    instance: Instance,
    setup: Setup | Replicas,
    rows: np.ndarray,
    counts: np.ndarray,
    fixed_load: np.ndarray,
    fixed_value: float,
    segments: dict[tuple[int, int], int],
    gains: np.ndarray | None = None,
) -> pyo.ConcreteModel:
    """The LP of the module docstring; `rows` are window rows over the deployed models, `segments`
    holds the segment of each replica (model, r) with a non-convex curve, `gains` is D over the deployed
    models (-inf where there is no move; None: no moves, as when every row is in the window)."""
    replicas = as_replicas(setup)
    deployed = deployed_models(replicas)
    units = replica_units(replicas)
    split = [u for u in units if len(replicas[u[0]]) > 1]  # replicas with a share of their own
    pieces = {u: option_pieces(instance, instance.models[u[0]], replicas[u[0]][u[1]]) for u in units}
    n = instance.prompt_count
    gains = np.full((len(deployed), len(deployed)), -np.inf) if gains is None else gains
    pairs = [(deployed[a], deployed[b]) for a, b in np.argwhere(np.isfinite(gains))]

    def epigraph_segments(u):
        return [segments[u]] if u in segments else range(len(pieces[u].slopes))

    m = pyo.ConcreteModel(name="routing")
    m.MODELS = pyo.Set(initialize=deployed, doc="deployed models")
    m.UNITS = pyo.Set(dimen=2, initialize=units, doc="replicas (i, r) of the deployed models")
    m.SPLIT = pyo.Set(dimen=2, within=m.UNITS, initialize=split, doc="replicas of models with several")
    m.ROWS = pyo.RangeSet(0, len(counts) - 1, doc="window rows")
    m.PIECES = pyo.Set(dimen=3, initialize=[(*u, k) for u in units for k in epigraph_segments(u)],
                       doc="segments of H in the epigraph")
    m.PAIRS = pyo.Set(dimen=2, initialize=pairs, doc="(i, j): fixed prompts of i may move to j")
    m.count = pyo.Param(m.ROWS, initialize=lambda m, r: float(counts[r]), doc="prompts in row r")
    m.score = pyo.Param(m.ROWS, m.MODELS, initialize=lambda m, r, i: float(rows[r, deployed.index(i)]),
                        doc="predicted quality s[r,i]")
    m.fixed_load = pyo.Param(m.MODELS, initialize=lambda m, i: float(fixed_load[deployed.index(i)]),
                             doc="prompts fixed to model i")
    m.gain = pyo.Param(m.PAIRS, initialize=lambda m, i, j: float(gains[deployed.index(i), deployed.index(j)]),
                       doc="D[i,j]: best gain of moving a fixed prompt from i to j")
    m.slope = pyo.Param(m.PIECES, initialize=lambda m, i, r, k: float(pieces[i, r].slopes[k]),
                        doc="ms per unit share")
    m.intercept = pyo.Param(m.PIECES, initialize=lambda m, i, r, k: float(pieces[i, r].intercepts[k]), doc="ms")

    def unit_bounds(u):
        return share_bounds(pieces[u], segments.get(u))

    m.y = pyo.Var(m.ROWS, m.MODELS, within=pyo.NonNegativeReals, doc="fraction of row r sent to model i")
    m.move = pyo.Var(m.PAIRS, within=pyo.NonNegativeReals, doc="fixed prompts moved from i to j")
    m.share = pyo.Var(m.MODELS, bounds=lambda m, i: (0.0, None) if len(replicas[i]) > 1 else unit_bounds((i, 0)),
                      doc="routing share w[i]")
    m.contribution = pyo.Var(m.UNITS, within=pyo.NonNegativeReals, doc="H_u(v[u]), ms")
    m.replica_share = pyo.Var(m.SPLIT, bounds=lambda m, *u: unit_bounds(u), doc="share v[u] of a replica")

    @m.Constraint(m.ROWS, doc="(1) every window prompt is routed")
    def routed(m, r):
        return sum(m.y[r, i] for i in m.MODELS) == 1

    @m.Constraint(m.MODELS, doc="(2) share definition; dual = routing price")
    def share_definition(m, i):
        moved = sum(m.move[j, k] for j, k in m.PAIRS if k == i) - sum(m.move[j, k] for j, k in m.PAIRS if j == i)
        return m.share[i] == (m.fixed_load[i] + sum(m.count[r] * m.y[r, i] for r in m.ROWS) + moved) / n

    @m.Constraint(m.PIECES, doc="(3) TTFT contribution epigraph")
    def epigraph(m, i, r, k):
        return m.contribution[i, r] >= m.slope[i, r, k] * unit_share(m, i, r) + m.intercept[i, r, k]

    @m.Constraint(doc="(4) mean TTFT within the target")
    def slo(m):
        return sum(m.contribution[u] for u in m.UNITS) <= instance.slo_mean_ttft_ms

    @m.Constraint(sorted({u[0] for u in split}), doc="(5) a model's share is the sum of its replicas' shares")
    def replicas_carry(m, i):
        return m.share[i] == sum(m.replica_share[u] for u in m.SPLIT if u[0] == i)

    m.quality = pyo.Objective(
        expr=(fixed_value + sum(m.count[r] * m.score[r, i] * m.y[r, i] for r in m.ROWS for i in m.MODELS)
              + sum(m.gain[p] * m.move[p] for p in m.PAIRS)) / n,
        sense=pyo.maximize, doc="mean predicted quality")
    return m


def unit_share(m: pyo.ConcreteModel, i: int, r: int):
    """The share of replica (i, r): its own variable when model i has several replicas, else w[i]."""
    return m.replica_share[i, r] if (i, r) in m.SPLIT else m.share[i]


def solve_routing_lp(instance: Instance, setup: Setup | Replicas, shares_hint, prices_hint,
                     segments: dict | None = None, deadline: float | None = None,
                     prompts: Prompts | None = None) -> SetupRouting | None:
    """The routing LP's optimum on `setup`; None if the setup cannot meet the SLO.

    The window is centered on the prices of the LP over a sample of the rows (`sampled_prices`), which
    starts from `prices_hint`, optimal transport prices at `shares_hint`. Each non-convex curve is held to
    `segments[(model, replica)]`, or by default to the segment holding the replica's even part of
    `shares_hint`. Fixed rows that the LP moves join the window (module docstring). With a `deadline` (a
    `time.perf_counter()` value), `DeadlinePassed` is raised once it passes (checked before every LP, and
    HiGHS gets the time left). `prompts` is `Prompts.merge(instance.scores)`, if the caller has it already."""
    deployed = deployed_models(setup)
    if segments is None:
        segments = nonconvex_segments(instance, setup, shares_hint)
    over_deployed = Prompts.merge(instance.scores[:, deployed]) if prompts is None else prompts.over(deployed)
    return routing_over(instance, setup, over_deployed,
                        np.asarray(prices_hint, dtype=float)[deployed], segments, deadline)


def routing_over(instance: Instance, setup: Setup | Replicas, prompts: Prompts, center: np.ndarray, segments: dict,
                 deadline: float | None) -> SetupRouting | None:
    """The routing LP over `prompts` (distinct rows of the deployed models' scores), its window centered
    on the prices a sample of the rows gives from `center` (`sampled_prices`)."""
    center = sampled_prices(instance, setup, prompts, center, segments, deadline)
    return window_routing(instance, setup, prompts, center, segments, deadline)


def window_routing(instance: Instance, setup: Setup | Replicas, prompts: Prompts, center: np.ndarray, segments: dict,
                   deadline: float | None) -> SetupRouting | None:
    """The routing LP over `prompts`, its window centered on the prices `center` (over the deployed models):
    the rows closest to a tie there start in it, and rows that the LP's moves draw join it."""
    deployed = deployed_models(setup)
    best, margin = best_models(prompts.rows, center)
    inside = margin <= initial_window(margin, len(deployed))
    lp = RoutingWindow(instance, setup, prompts, segments, best)
    while True:
        fixed = FixedRows.of(prompts, best, ~inside)
        if not lp.solve(inside, fixed, remaining(deadline)):
            return None
        moves = lp.moves()
        moved = moves > MOVE_TOL
        if moved.any():
            inside |= fixed.drawn_rows(prompts, moves, moved)
            continue
        violated = ~inside & ~best_at(prompts.rows, best, lp.prices())
        if violated.any():  # round-off beyond the certificate's tolerance: solve again with those rows
            inside |= violated
            continue
        return setup_routing(lp, instance, setup, int(inside.sum()))


def sampled_prices(instance: Instance, setup: Setup | Replicas, prompts: Prompts, center: np.ndarray, segments: dict,
                   deadline: float | None) -> np.ndarray:
    """Prices to center the window on: the routing LP's over an evenly spaced sample of one row in
    SAMPLE_STEP (each standing for the prompts of SAMPLE_STEP rows), itself solved this way, when there
    are more than SAMPLE_ROWS rows; else `center`. Far from the optimal prices the window needs every
    row the prices misplace, so a hint from shares that are off by a few percent (a first MIP round's)
    would bring tens of thousands of rows into it; the sample's prices misplace few. They only center
    the window: the answer is the LP over all rows either way. If the sample cannot meet the SLO, `center`."""
    sample = sample_of(prompts)
    if sample is None:
        return center
    routing = routing_over(instance, setup, sample, center, segments, deadline)
    return center if routing is None else routing.prices[deployed_models(setup)]


def sample_of(prompts: Prompts) -> Prompts | None:
    """Every SAMPLE_STEP-th row, each standing for the prompts of SAMPLE_STEP rows (the counts scaled to the
    same number of prompts), when there are more than SAMPLE_ROWS rows; else None."""
    if len(prompts.counts) <= SAMPLE_ROWS:
        return None
    sample = Prompts(prompts.rows[::SAMPLE_STEP], prompts.counts[::SAMPLE_STEP])
    return Prompts(sample.rows, sample.counts * prompts.prompt_count / sample.prompt_count)


def initial_window(margin: np.ndarray, models: int) -> float:
    """Rows this close to a tie at the hint's prices start in the window: a few per model."""
    if not len(margin):
        return 0.0
    return max(1e-6, 2 * float(np.quantile(margin, min(1.0, 4 * models / len(margin)), method="lower")))


def nonconvex_segments(instance: Instance, setup: Setup | Replicas, shares) -> dict[tuple[int, int], int]:
    """The segment of each replica's non-convex curve that holds its even part of its model's share."""
    replicas = as_replicas(setup)
    segments = {}
    for i, r in replica_units(replicas):
        pieces = option_pieces(instance, instance.models[i], replicas[i][r])
        if not pieces.is_convex:
            segments[i, r] = pieces.segment(float(shares[i]) / len(replicas[i]))
    return segments


def setup_routing(lp: RoutingWindow, instance: Instance, setup: Setup | Replicas, window_rows: int) -> SetupRouting:
    """The solved window LP's answer over all models (undeployed ones at share 0, price NaN)."""
    replicas = as_replicas(setup)
    shares = np.zeros(len(replicas))
    shares[lp.deployed] = lp.shares()
    total = shares.sum()
    prices = np.full(len(replicas), np.nan)
    prices[lp.deployed] = lp.prices()
    replica_shares = tuple(tuple(lp.unit_share((i, r)) / total for r in range(len(options)))
                           for i, options in enumerate(replicas))
    return SetupRouting(lp.quality(), shares / total, prices, window_rows, lp.quality_per_ms(), lp.quality_per_rps(),
                        replica_shares)
