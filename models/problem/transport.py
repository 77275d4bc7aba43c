"""The best routing for given shares: the transportation problem, solved exactly and fast.

    Q(w) = max (1/N) sum_r c_r sum_i s[r,i] y[r,i]
           s.t. sum_i y[r,i] = 1 (rows r),   (1/N) sum_r c_r y[r,i] = w[i] (models i),   y >= 0

over distinct score rows r with counts c_r. Its dual has one price per model:
Q(w) = min_alpha (1/N) sum_r c_r max_i (s[r,i] - alpha[i]) + sum_i alpha[i] w[i].

Solving the whole LP is slow for tens of thousands of continuous rows (HiGHS
needs 30 s or more on 36,000 x 3, 50 s on 131,000 x 3). Almost every row is
decided by the prices, though: a row whose best model beats its second by a
clear margin goes there in every optimal routing. So:

1. approximate the prices by minimizing the entropy-smoothed dual (Newton
   steps at decreasing temperature);
2. send every row whose margin at those prices exceeds a window to its best
   model b(r) (the fixed rows F, F_i of them on model i, in prompts), and
   solve the window LP over the rows W left, with one aggregated column per
   ordered pair of models (i, j) that stands for all fixed rows:

       max  sum_{r in W, i} s[r,i] y[r,i] + sum_{i != j} D[i,j] x[i,j]
       s.t. sum_i y[r,i] = c_r                                        (r in W)
            sum_{r in W} y[r,i] - sum_j x[i,j] + sum_j x[j,i] = N w[i] - F_i   (alpha_i)
            y, x >= 0,   D[i,j] = max_{r in F, b(r) = i} (s[r,j] - s[r,i]).

   x[i,j] moves fixed load from model i to model j at the best gain any
   fixed row of i offers. It is a relaxation of the whole LP: a routing of
   all rows maps onto it (a fixed row's traffic sent to j counts in x[b(r), j],
   at a gain of at most D), so its value bounds Q(w) N from above. It is
   always feasible (load can move between any two models) and bounded (the
   prices that fixed the rows make every cycle of moves lose). Its dual
   constraint for x[i,j] is alpha_j - alpha_i >= D[i,j]: every fixed row's
   model stays a best one at the LP's prices, whatever they are;
3. certify: if the optimum moves nothing (x = 0), the fixed rows at their
   models with the window LP's y is a routing of the whole LP that attains
   the relaxation's bound, so it is optimal; and with the LP's prices alpha,
   every fixed row's model is a best one (complementary slackness for the
   whole LP, checked row by row), so alpha is optimal too. Otherwise, for each
   pair with x[i,j] > 0 the fixed rows of i most drawn to j (largest
   s[r,j] - s[r,i]) join the window, enough to carry twice the moved load,
   and the LP is solved again (column generation with the rows as columns).
   Rows only join, so this ends, at worst with every row in the window.

Without x (as this module first did), the window LP: a window
too narrow for the approximate prices either overloaded a model (and the
window widened by a factor of 4) or left prices free over a wide interval,
and every fixed row they crossed joined at once. At 300,000 prompts one such
step built a window of 131,089 rows (50 s); at 1,000,000, one of 572,319 rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np

from models.problem.solver import DeadlinePassed, highs_running, new_highs, remaining

CERTIFICATE_TOL = 1e-9  # a fixed row may trail its best model by this much (score units)
SHARE_TOL = 1e-9
TIE_TOL = 1e-9  # the price rule counts models this close to the best as tied; ties go to the first model
MOVE_TOL = 1e-9  # prompts: a pair move below this is LP round-off, not a move
LP_TOL = 1e-10  # primal and dual feasibility tolerance of the window LP
GROWTH = 0.5  # rows that join for a pair carry this many times the load it moved
MIN_JOIN = 8  # and at least this many rows
COARSE_SAMPLE = 50_000  # rows the smoothing sees at its coarse temperatures
NEAR_SPAN = 30.0  # in temperatures: rows farther from a tie count as decided in the smoothing


@dataclass(frozen=True, eq=False)
class Prompts:
    """Distinct score rows (over the models considered) and how many prompts share each."""

    rows: np.ndarray  # R x M
    counts: np.ndarray  # R

    @classmethod
    def merge(cls, scores: np.ndarray) -> "Prompts":
        rows, counts = np.unique(np.asarray(scores, dtype=float), axis=0, return_counts=True)
        return cls(rows, counts.astype(float))

    def over(self, models) -> "Prompts":
        """The distinct rows over some models' columns, each counting the prompts of the rows it merges
        (the same as merging those columns of the scores, from R rows instead of N prompts)."""
        rows, inverse = np.unique(self.rows[:, models], axis=0, return_inverse=True)
        return Prompts(rows, np.bincount(inverse.ravel(), weights=self.counts, minlength=len(rows)))

    @property
    def prompt_count(self) -> float:
        return float(self.counts.sum())

    def bound(self, prices: np.ndarray) -> float:
        """The dual function's constant: (1/N) sum_r c_r max_i (s[r,i] - alpha[i]); any prices give a bound."""
        return float(self.counts @ np.max(self.rows - prices, axis=1)) / self.prompt_count


@dataclass(frozen=True, eq=False)
class Routing:
    """An optimal routing for given shares: Q, prices alpha, and fractions y[r, i] per distinct row."""

    quality: float
    prices: np.ndarray
    fractions: np.ndarray
    window_rows: int  # rows the exact LP was solved over


def best_routing(prompts: Prompts, shares, initial_prices=None, deadline: float | None = None) -> Routing:
    """Q(w), optimal prices and fractions; exact, certified by complementary slackness.
    `initial_prices` (e.g. optimal prices at nearby shares) only speed it up. With a `deadline`
    (a `time.perf_counter()` value), `DeadlinePassed` is raised once it passes (checked before
    every LP, and HiGHS gets the time left)."""
    shares = check_shares(shares)
    active = np.flatnonzero(shares > 0)
    start = None if initial_prices is None else np.asarray(initial_prices, dtype=float)[active]
    routing = routing_on(Prompts(prompts.rows[:, active], prompts.counts), shares[active], start, deadline)
    fractions = np.zeros((len(prompts.counts), len(shares)))
    fractions[:, active] = routing.fractions
    return Routing(routing.quality, price_unused(prompts, active, routing.prices), fractions, routing.window_rows)


def price_unused(prompts: Prompts, used: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Prices for all models from those of the `used` ones: a model with no share is priced so that
    no row prefers it, alpha_i = max_r (s[r,i] - u_r) with u_r = max_{j used} (s[r,j] - alpha_j)."""
    utility = np.max(prompts.rows[:, used] - prices, axis=1)
    full = np.max(prompts.rows - utility[:, None], axis=0)
    full[used] = prices
    return full


def price_choices(scores: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """The price rule prompt by prompt: argmax_i s[x,i] - alpha_i, ties (within TIE_TOL) to the first model.
    The tolerance keeps prices that differ by rounding noise from deciding ties."""
    utilities = scores - prices
    return np.argmax(utilities >= utilities.max(axis=1, keepdims=True) - TIE_TOL, axis=1)


def check_shares(shares) -> np.ndarray:
    shares = np.asarray(shares, dtype=float)
    if np.any(shares < -SHARE_TOL) or abs(shares.sum() - 1) > 1e-7:
        raise ValueError(f"shares must be non-negative and add up to 1, got {shares}")
    shares = np.clip(shares, 0, None)
    return shares / shares.sum()


def routing_on(prompts: Prompts, shares: np.ndarray, start: np.ndarray | None,
               deadline: float | None = None) -> Routing:
    """`best_routing` for models that all have positive shares (steps 1-3 of the module docstring)."""
    capacity = shares * prompts.prompt_count
    if len(shares) == 1:
        return Routing(prompts.bound(np.zeros(1)), np.zeros(1), np.ones((len(prompts.counts), 1)), 0)
    prices, temperature = smoothed_prices(prompts, shares, start)
    best, margin = best_models(prompts.rows, prices)
    inside = margin <= initial_window(margin, len(shares), temperature)
    while True:
        fixed = FixedRows.of(prompts, best, ~inside)
        solved = window_lp(prompts.rows[inside], prompts.counts[inside], capacity - fixed.load, fixed.gains,
                           remaining(deadline))
        value, prices, y, moves = solved
        moved = moves > MOVE_TOL
        if moved.any():
            inside |= fixed.drawn_rows(prompts, moves, moved)
            continue
        violated = ~inside & ~best_at(prompts.rows, best, prices)
        if not violated.any():
            return assemble(prompts, inside, best, value, prices, y)
        inside |= violated  # round-off beyond the certificate's tolerance: solve again with those rows


def initial_window(margin: np.ndarray, models: int, temperature: float) -> float:
    """Rows within this margin of a tie at the smoothed prices start in the window: about a few rows per
    model, and every row the smoothing at `temperature` leaves undecided."""
    few = 2 * float(np.quantile(margin, min(1.0, 4 * models / len(margin)), method="lower"))
    return max(1e-9, few, temperature / 2)


@dataclass(frozen=True, eq=False)
class FixedRows:
    """The rows outside the window, each at its model b(r): load per model and the pair gains D[i,j]."""

    rows: np.ndarray  # indices of the fixed rows
    model: np.ndarray  # b(r) of each
    load: np.ndarray  # F_i, prompts
    gains: np.ndarray  # D[i,j], -inf where model i has no fixed row, and on the diagonal

    @classmethod
    def of(cls, prompts: Prompts, best: np.ndarray, fixed: np.ndarray) -> "FixedRows":
        rows = np.flatnonzero(fixed)
        model = best[rows]
        n_models = prompts.rows.shape[1]
        load = np.bincount(model, weights=prompts.counts[rows], minlength=n_models)
        gains = np.full((n_models, n_models), -np.inf)
        for i in range(n_models):
            own = rows[model == i]
            if len(own):
                gains[i] = (prompts.rows[own] - prompts.rows[own, i][:, None]).max(axis=0)
        np.fill_diagonal(gains, -np.inf)
        return cls(rows, model, load, gains)

    def drawn_rows(self, prompts: Prompts, moves: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """For every pair (i, j) that moved load, the fixed rows of i with the largest s[r,j] - s[r,i],
        enough to carry GROWTH times the moved load (at least MIN_JOIN rows): a mask over all rows."""
        join = np.zeros(len(prompts.counts), dtype=bool)
        for i, j in zip(*np.nonzero(moved)):
            own = self.rows[self.model == i]
            pull = prompts.rows[own, j] - prompts.rows[own, i]
            order = np.argsort(-pull, kind="stable")
            carried = np.cumsum(prompts.counts[own[order]])
            take = max(MIN_JOIN, int(np.searchsorted(carried, GROWTH * moves[i, j])) + 1)
            join[own[order[:take]]] = True
        return join


def smoothed_prices(prompts: Prompts, shares: np.ndarray, start: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Approximate optimal prices: minimize T (1/N) sum_r c_r logsumexp((s_r - alpha)/T) + alpha.w
    by damped Newton steps at T = 1e-1, 1e-2, 1e-3, 1e-4, or at 1e-3, 1e-4 from `start` (alpha[0] stays
    fixed); returns them and the last temperature. The window LP makes the answer exact, so rough
    prices only cost a wider window, and two shortcuts cost nothing in exactness: the coarse
    temperatures see an evenly spaced sample of at most COARSE_SAMPLE rows, and at the last one a row
    whose margin exceeds NEAR_SPAN T counts as sent wholly to its best model (its softmax weight on
    any other is below e^-NEAR_SPAN), so Newton's steps only touch the rows near a tie."""
    weights = prompts.counts / prompts.prompt_count
    alpha = np.zeros(len(shares)) if start is None else start - start[0]
    temperatures = (1e-1, 1e-2, 1e-3, 1e-4) if start is None else (1e-3, 1e-4)
    for temperature in temperatures:
        coarse = temperature > temperatures[-1]
        stride = max(1, -(-len(weights) // COARSE_SAMPLE)) if coarse else 1
        rows, row_weights = prompts.rows[::stride], weights[::stride]
        near = NearRows.select(rows, row_weights / row_weights.sum(), shares, alpha, temperature)
        for _ in range(12):
            step = newton_step(near.rows, near.weights, near.shares, alpha, temperature)
            if step is None:
                break
            alpha = alpha + step
            if np.max(np.abs(alpha - near.center)) > NEAR_SPAN * temperature / 6:
                near = NearRows.select(rows, row_weights / row_weights.sum(), shares, alpha, temperature)
    return alpha, temperatures[-1]


@dataclass(frozen=True, eq=False)
class NearRows:
    """The rows within NEAR_SPAN T of a tie at the prices `center`, and the shares left for them once
    every other row goes wholly to its best model."""

    rows: np.ndarray
    weights: np.ndarray
    shares: np.ndarray
    center: np.ndarray

    @classmethod
    def select(cls, rows, weights, shares, center, temperature) -> "NearRows":
        best, margin = best_models(rows, center)
        near = margin <= NEAR_SPAN * temperature
        far_load = np.bincount(best[~near], weights=weights[~near], minlength=len(shares))
        return cls(rows[near], weights[near], shares - far_load, center.copy())


def newton_step(rows, weights, shares, alpha, temperature) -> np.ndarray | None:
    """A damped Newton step on the smoothed dual (scores lie in [0, 1], so steps are capped at 1);
    None once the gradient vanishes or no step decreases the function."""
    p, value = softmax(rows, alpha, temperature)
    value = temperature * (weights @ value) + alpha @ shares
    gradient = shares - weights @ p
    if np.max(np.abs(gradient[1:])) < 1e-9:
        return None
    hessian = (np.diag(weights @ p) - (p * weights[:, None]).T @ p) / temperature
    step = np.zeros_like(alpha)
    ridge = 1e-12 * (1 + np.trace(hessian))
    step[1:] = np.linalg.solve(hessian[1:, 1:] + ridge * np.eye(len(alpha) - 1), -gradient[1:])
    step /= max(1.0, np.max(np.abs(step)))
    t = 1.0
    while t > 1e-3:
        trial = alpha + t * step
        trial_value = temperature * (weights @ softmax(rows, trial, temperature)[1]) + trial @ shares
        if trial_value <= value + 0.25 * t * (gradient @ step):
            return t * step
        t /= 4
    return None


def softmax(rows, alpha, temperature):
    """Row-wise softmax of (s - alpha)/T and the row-wise logsumexp."""
    z = (rows - alpha) / temperature
    top = z.max(axis=1, keepdims=True)
    e = np.exp(z - top)
    total = e.sum(axis=1, keepdims=True)
    return e / total, top[:, 0] + np.log(total[:, 0])


def window_lp(rows: np.ndarray, counts: np.ndarray, capacity: np.ndarray, gains: np.ndarray,
              time_limit: float | None = None):
    """The window LP of the module docstring (step 2): (value, prices, y, moves x[i,j] as an M x M array).
    Columns: y[r,i] row by row, then x[i,j] for the pairs with a finite gain."""
    n_rows, n_models = rows.shape
    pairs = np.argwhere(np.isfinite(gains))
    n_y = n_rows * n_models
    lp = highspy.HighsLp()
    lp.num_col_ = n_y + len(pairs)
    lp.num_row_ = n_rows + n_models
    lp.col_cost_ = -np.concatenate([rows.ravel(), gains[pairs[:, 0], pairs[:, 1]]])
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.concatenate([np.repeat(counts, n_models), np.full(len(pairs), highspy.kHighsInf)])
    lower = np.concatenate([counts, capacity])
    upper = lower.copy()
    # the share rows add up to the routed rows, so one is implied; with the round-off in N w[i] (1.5e-10 of
    # 1,000,000 prompts was seen) it contradicts the others beyond LP_TOL, so the last is left free: its
    # price is 0 and the others are relative to it (prices are only ever used relative to each other)
    lower[-1], upper[-1] = -highspy.kHighsInf, highspy.kHighsInf
    lp.row_lower_ = lower
    lp.row_upper_ = upper
    index = np.empty(2 * lp.num_col_, dtype=np.int32)
    value = np.ones(2 * lp.num_col_)
    index[0:2 * n_y:2] = np.repeat(np.arange(n_rows), n_models)
    index[1:2 * n_y:2] = n_rows + np.tile(np.arange(n_models), n_rows)
    index[2 * n_y::2] = n_rows + pairs[:, 0]  # x[i,j] takes load off model i ...
    index[2 * n_y + 1::2] = n_rows + pairs[:, 1]  # ... and puts it on model j
    value[2 * n_y::2] = -1.0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * lp.num_col_ + 1, 2, dtype=np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    highs = new_highs()
    highs.setOptionValue("presolve", "off")  # on these degenerate LPs presolve costs more than it saves
    highs.setOptionValue("primal_feasibility_tolerance", LP_TOL)
    highs.setOptionValue("dual_feasibility_tolerance", LP_TOL)
    if time_limit is not None:
        highs.setOptionValue("time_limit", float(time_limit))
    highs.passModel(lp)
    with highs_running(highs):
        highs.run()
    status = highs.getModelStatus()
    if status == highspy.HighsModelStatus.kTimeLimit:
        raise DeadlinePassed("the time limit passed in the transportation LP")
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"transportation window LP ended {highs.modelStatusToString(status)}; it is feasible "
                           "and bounded by construction")
    solution = highs.getSolution()
    prices = -np.array(solution.row_dual[n_rows:])  # minimizing -s: the share rows' duals are -alpha
    columns = np.array(solution.col_value)
    moves = np.zeros((n_models, n_models))
    moves[pairs[:, 0], pairs[:, 1]] = columns[n_y:]
    y = columns[:n_y].reshape(n_rows, n_models)
    objective = float(rows.ravel() @ columns[:n_y])
    return objective, prices, y, moves


def best_models(rows: np.ndarray, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best model at these prices and its margin over the second best."""
    utilities = rows - prices
    best = np.argmax(utilities, axis=1)
    if rows.shape[1] == 1:
        return best, np.full(len(best), np.inf)
    margin = utilities[np.arange(len(best)), best] - np.partition(utilities, -2, axis=1)[:, -2]
    return best, margin


def best_at(rows: np.ndarray, assigned: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Per row, whether its assigned model is a best one at these prices (complementary slackness)."""
    utilities = rows - prices
    chosen = utilities[np.arange(len(assigned)), assigned]
    return chosen >= utilities.max(axis=1) - CERTIFICATE_TOL


def assemble(prompts: Prompts, inside, best, window_value, prices, y) -> Routing:
    fractions = np.zeros_like(prompts.rows)
    outside = np.flatnonzero(~inside)
    fractions[outside, best[outside]] = 1.0
    fractions[np.flatnonzero(inside)] = y / prompts.counts[inside][:, None]
    fixed_value = float(prompts.counts[outside] @ prompts.rows[outside, best[outside]])
    quality = (fixed_value + window_value) / prompts.prompt_count
    return Routing(quality, prices - prices.min(), fractions, int(inside.sum()))
