"""The published routing of a plan (SPEC 4.3): prices on the optimal dual face that realize its shares.

Given a setup and shares w, the best routing is the transportation problem of
`models/problem/transport.py`. Its optimal prices are not unique: they form the
optimal dual face, the prices alpha that satisfy complementary slackness with
an optimal routing y*,

    s[r,i] - alpha_i >= s[r,j] - alpha_j   for every row r, model i with y*[r,i] > 0, and every j.

A vertex of that face (what an LP solver returns) makes some rows tie exactly,
and the price rule, argmax_i s[x,i] - alpha_i with ties to the first model,
then sends them to the wrong model. So the published prices solve, over the
distinct score rows r of the deployed models, with y* fixed:

    max t
    s.t. alpha_j - alpha_i - t >= D[i,j]     for every ordered pair i != j,
             D[i,j] = max over rows r routed wholly to i of s[r,j] - s[r,i]
         alpha_j - alpha_i >= E[i,j]         E[i,j] = max over split rows r with y*[r,i] > 0 of s[r,j] - s[r,i]
         alpha_i - alpha_k = s[r,i] - s[r,k] for the models i, k a split row r uses
         alpha_0 = 0,  0 <= t <= 1

(only the pairs with such rows). Every feasible alpha lies on the optimal
dual face (complementary slackness with y*), and t is the smallest margin
between a whole row's model and its runner-up. Rows that y* splits are listed
with their fractions (a basic y* splits at most as many rows as there are
binding share constraints); every other prompt follows the price rule. If the
face forces a whole row into a tie (t = 0 at the optimum), the tied rows are
listed too, with their one model, and the LP is solved again without them.
Applied to the prompts, the rule then gives every model exactly its share in y*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from models.problem.solver import solve_model
from models.problem.transport import Prompts, best_routing

FRACTION_TOL = 1e-9  # a routing fraction above this uses the model
MARGIN_TOL = 1e-9  # a whole row whose margin is not above this is listed with its model
MAX_MARGIN = 1.0  # scores lie in [0, 1]; a larger margin changes nothing


@dataclass(frozen=True, eq=False)
class Split:
    """A prompt (index into the instance's prompts, and its id) sent to several models in fixed fractions."""

    prompt: int
    prompt_id: str
    fractions: np.ndarray  # over all models of the instance; adds up to 1


@dataclass(frozen=True, eq=False)
class PublishedRouting:
    """Per model of the instance its price (NaN when not deployed), the split prompts, and the smallest
    margin of the others (None when at most one model is deployed)."""

    prices: np.ndarray
    splits: tuple[Split, ...] = ()
    min_margin: float | None = None

    @classmethod
    def of_prices(cls, prices, scores: np.ndarray | None = None) -> "PublishedRouting":
        """A plain price rule with no splits (None for an undeployed model's price); its smallest margin
        over the given prompts' scores, if any."""
        prices = np.array([np.nan if p is None else float(p) for p in prices])
        return cls(prices, (), None if scores is None else smallest_margin(scores, prices))

    def fractions(self, scores: np.ndarray) -> np.ndarray:
        """The rule applied to every prompt: N x M fractions (rows add up to 1)."""
        fractions = np.zeros(scores.shape)
        fractions[np.arange(len(scores)), price_choices(scores, self.prices)] = 1.0
        for split in self.splits:
            fractions[split.prompt] = split.fractions
        return fractions

    def shares(self, scores: np.ndarray) -> np.ndarray:
        """The share of prompts the rule sends to each model."""
        return self.fractions(scores).mean(axis=0)


def smallest_margin(scores: np.ndarray, prices: np.ndarray) -> float | None:
    """The smallest difference between a prompt's largest and second-largest s[x,i] - alpha_i over the
    models with a price; None with fewer than two such models."""
    priced = ~np.isnan(prices)
    if priced.sum() < 2:
        return None
    top_two = np.sort(scores[:, priced] - prices[priced], axis=1)[:, -2:]
    return float((top_two[:, 1] - top_two[:, 0]).min())


def price_choices(scores: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """argmax_i s[x,i] - alpha_i over the models with a price (NaN: not deployed); exact ties to the first."""
    return np.argmax(np.where(np.isnan(prices), -np.inf, scores - np.nan_to_num(prices)), axis=1)


def publish_routing(scores: np.ndarray, prompt_ids, deployed: list[int], shares,
                    prices_hint=None) -> PublishedRouting:
    """Prices, splits and margin that realize `shares` (over all models; zero where not deployed) with the
    best quality those shares allow. `prices_hint` (over all models; e.g. the method's own prices at these
    shares) only speeds up the transportation solve: the routing is exact either way."""
    rows, inverse, counts = np.unique(scores[:, deployed], axis=0, return_inverse=True, return_counts=True)
    prices = np.full(scores.shape[1], np.nan)
    if len(deployed) == 1:
        prices[deployed] = 0.0
        return PublishedRouting(prices, (), None)
    start = None if prices_hint is None else np.asarray(prices_hint, dtype=float)[deployed]
    routing = best_routing(Prompts(rows, counts.astype(float)), np.asarray(shares, dtype=float)[deployed], start)
    support = routing.fractions > FRACTION_TOL
    listed = support.sum(axis=1) > 1
    while True:
        alpha, margin = max_margin_prices(rows, routing.fractions, support, listed)
        tied = ~listed & (margin <= MARGIN_TOL)
        if not tied.any():
            break
        listed |= tied
    prices[deployed] = alpha - alpha.min()
    splits = []
    for r in np.flatnonzero(listed):
        split = np.zeros(scores.shape[1])
        split[deployed] = np.where(support[r], routing.fractions[r], 0.0)
        split /= split.sum()
        splits += [Split(int(x), prompt_ids[x], split) for x in np.flatnonzero(inverse.ravel() == r)]
    whole = margin[~listed]
    return PublishedRouting(prices, tuple(sorted(splits, key=lambda s: s.prompt)),
                            float(whole.min()) if whole.size else None)


def pair_bounds(rows: np.ndarray, support: np.ndarray, which: np.ndarray) -> np.ndarray:
    """B[i,j] = max over the rows in `which` that use model i of s[r,j] - s[r,i] (-inf where none)."""
    models = rows.shape[1]
    bounds = np.full((models, models), -np.inf)
    for i in range(models):
        using = which & support[:, i]
        if using.any():
            bounds[i] = (rows[using] - rows[using, i][:, None]).max(axis=0)
    np.fill_diagonal(bounds, -np.inf)
    return bounds


def build_margin_lp(rows: np.ndarray, support: np.ndarray, listed: np.ndarray) -> pyo.ConcreteModel:
    """The max-margin LP of the module docstring over the deployed models' prices."""
    whole = pair_bounds(rows, support, ~listed)
    split = pair_bounds(rows, support, listed)
    models = range(rows.shape[1])
    m = pyo.ConcreteModel(name="max-margin prices")
    m.MODELS = pyo.Set(initialize=models, doc="deployed models i")
    m.PAIRS = pyo.Set(dimen=2, initialize=[(i, j) for i in models for j in models if np.isfinite(whole[i, j])],
                      doc="ordered pairs (i, j): a whole row of i has j as a rival")
    m.SPLIT_PAIRS = pyo.Set(dimen=2, initialize=[(i, j) for i in models for j in models if np.isfinite(split[i, j])],
                            doc="ordered pairs (i, j): a split row using i has j as a rival")
    ties = [(int(r), i, k) for r in np.flatnonzero(listed) for i, k in consecutive(np.flatnonzero(support[r]))]
    m.TIES = pyo.Set(dimen=3, initialize=ties, doc="(row r, model i, model k): r is split between i and k")
    m.price = pyo.Var(m.MODELS, doc="alpha_i")
    m.margin = pyo.Var(bounds=(0, MAX_MARGIN), doc="t, the smallest margin of a whole row")
    m.price[0].fix(0.0)

    @m.Constraint(m.PAIRS, doc="whole rows keep their model by at least the margin")
    def whole_rows(m, i, j):
        return m.price[j] - m.price[i] - m.margin >= float(whole[i, j])

    @m.Constraint(m.SPLIT_PAIRS, doc="split rows prefer the models they use (dual feasibility)")
    def split_rows(m, i, j):
        return m.price[j] - m.price[i] >= float(split[i, j])

    @m.Constraint(m.TIES, doc="split rows tie between the models they use (complementary slackness)")
    def split_ties(m, r, i, k):
        return m.price[i] - m.price[k] == float(rows[r, i] - rows[r, k])

    m.objective = pyo.Objective(expr=m.margin, sense=pyo.maximize, doc="the smallest margin")
    return m


def consecutive(items) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in zip(items[:-1], items[1:])]


def max_margin_prices(rows, fractions, support, listed) -> tuple[np.ndarray, np.ndarray]:
    """The LP's prices (first model at 0) and every row's margin at them (inf for listed rows)."""
    m = build_margin_lp(rows, support, listed)
    result = solve_model(m, tight_lp=True)
    if result.status != "optimal":
        raise RuntimeError(f"published routing: the max-margin LP ended {result.status}; the routing's own prices "
                           "are feasible for it, so this is a bug")
    alpha = np.array([m.price[i].value for i in m.MODELS])
    utility = rows - alpha
    assigned = np.argmax(fractions, axis=1)
    own = utility[np.arange(len(rows)), assigned]
    utility[np.arange(len(rows)), assigned] = -np.inf
    margin = np.where(listed, np.inf, own - utility.max(axis=1))
    return alpha, margin
