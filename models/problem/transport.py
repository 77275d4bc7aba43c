"""The best routing for given shares: the transportation problem, solved exactly and fast.

    Q(w) = max (1/N) sum_r c_r sum_i s[r,i] y[r,i]
           s.t. sum_i y[r,i] = 1 (rows r),   (1/N) sum_r c_r y[r,i] = w[i] (models i),   y >= 0

over distinct score rows r with counts c_r. Its dual has one price per model:
Q(w) = min_alpha (1/N) sum_r c_r max_i (s[r,i] - alpha[i]) + sum_i alpha[i] w[i].

Solving the whole LP is slow for tens of thousands of continuous rows (HiGHS
needs 30 s or more on 36,000 x 3). Almost every row is decided by the prices,
though: a row whose best model beats its second by a clear margin goes there
in every optimal routing. So:

1. approximate the prices by minimizing the entropy-smoothed dual (Newton
   steps at decreasing temperature);
2. send every row whose margin exceeds a window to its best model, and solve
   the LP exactly over the rows left in the window;
3. certify: with the LP's prices, every fixed row's model must still be a
   best one (complementary slackness for the whole LP). Rows that fail join
   the window (as columns join a restricted master in column generation) and
   the LP is solved again; if the fixed rows overload a model, the window
   widens. A certified answer is an optimal solution of the whole LP, primal
   and dual. The window only grows, so this ends, at worst with every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np

from models.problem.solver import highs_running, new_highs

CERTIFICATE_TOL = 1e-9  # a fixed row may trail its best model by this much (score units)
SHARE_TOL = 1e-9
TIE_TOL = 1e-9  # the price rule counts models this close to the best as tied; ties go to the first model


@dataclass(frozen=True, eq=False)
class Prompts:
    """Distinct score rows (over the models considered) and how many prompts share each."""

    rows: np.ndarray  # R x M
    counts: np.ndarray  # R

    @classmethod
    def merge(cls, scores: np.ndarray) -> "Prompts":
        rows, counts = np.unique(np.asarray(scores, dtype=float), axis=0, return_counts=True)
        return cls(rows, counts.astype(float))

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


def best_routing(prompts: Prompts, shares, initial_prices=None) -> Routing:
    """Q(w), optimal prices and fractions; exact, certified by complementary slackness.
    `initial_prices` (e.g. optimal prices at nearby shares) only speed it up."""
    shares = check_shares(shares)
    active = np.flatnonzero(shares > 0)
    start = None if initial_prices is None else np.asarray(initial_prices, dtype=float)[active]
    routing = routing_on(Prompts(prompts.rows[:, active], prompts.counts), shares[active], start)
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


def routing_on(prompts: Prompts, shares: np.ndarray, start: np.ndarray | None) -> Routing:
    """`best_routing` for models that all have positive shares."""
    capacity = shares * prompts.prompt_count
    if len(shares) == 1:
        return Routing(prompts.bound(np.zeros(1)), np.zeros(1), np.ones((len(prompts.counts), 1)), 0)
    prices = smoothed_prices(prompts, shares, start)
    best, margin = best_models(prompts.rows, prices)
    window = max(1e-6, 2 * float(np.quantile(margin, min(1.0, 2 * len(shares) / len(margin)))))
    inside = margin <= window
    while True:
        fixed_load = np.bincount(best[~inside], weights=prompts.counts[~inside], minlength=len(shares))
        solved = None
        if np.all(fixed_load <= capacity + 1e-9):
            solved = window_lp(prompts.rows[inside], prompts.counts[inside], capacity - fixed_load)
        if solved is not None:
            violated = ~inside & ~best_at(prompts.rows, best, solved[1])
            if not violated.any():
                return assemble(prompts, inside, best, *solved)
            inside |= violated
        elif inside.all():
            raise RuntimeError("transportation LP over every row failed its own certificate")
        else:
            window *= 4
            inside |= margin <= window


def smoothed_prices(prompts: Prompts, shares: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Approximate optimal prices: minimize T (1/N) sum_r c_r logsumexp((s_r - alpha)/T) + alpha.w
    by damped Newton steps at T = 1e-1, 1e-2, 1e-3, or at 1e-3 alone from `start` (alpha[0] stays
    fixed). The window LP makes the answer exact, so rough prices only cost a wider window."""
    weights = prompts.counts / prompts.prompt_count
    alpha = np.zeros(len(shares)) if start is None else start - start[0]
    for temperature in (1e-1, 1e-2, 1e-3) if start is None else (1e-3,):
        for _ in range(12):
            step = newton_step(prompts.rows, weights, shares, alpha, temperature)
            if step is None:
                break
            alpha = alpha + step
    return alpha


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


def window_lp(rows: np.ndarray, counts: np.ndarray, capacity: np.ndarray):
    """max sum_r sum_i s[r,i] y[r,i] s.t. sum_i y[r,i] = c_r, sum_r y[r,i] = capacity[i]: (value, prices, y)."""
    n_rows, n_models = rows.shape
    lp = highspy.HighsLp()
    lp.num_col_ = n_rows * n_models
    lp.num_row_ = n_rows + n_models
    lp.col_cost_ = -rows.ravel()
    lp.col_lower_ = np.zeros(lp.num_col_)
    lp.col_upper_ = np.repeat(counts, n_models)
    bounds = np.concatenate([counts, capacity])
    lp.row_lower_ = bounds
    lp.row_upper_ = bounds.copy()
    index = np.empty(2 * lp.num_col_, dtype=np.int32)
    index[0::2] = np.repeat(np.arange(n_rows), n_models)
    index[1::2] = n_rows + np.tile(np.arange(n_models), n_rows)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * lp.num_col_ + 1, 2, dtype=np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = np.ones(2 * lp.num_col_)
    highs = new_highs()
    highs.setOptionValue("presolve", "off")  # on these degenerate LPs presolve costs more than it saves
    highs.setOptionValue("primal_feasibility_tolerance", 1e-10)
    highs.setOptionValue("dual_feasibility_tolerance", 1e-10)
    highs.passModel(lp)
    with highs_running(highs):
        highs.run()
    if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    solution = highs.getSolution()
    prices = -np.array(solution.row_dual[n_rows:])  # minimizing -s: the share rows' duals are -alpha
    y = np.array(solution.col_value).reshape(n_rows, n_models)
    return -highs.getInfo().objective_function_value, prices, y


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
