"""`heuristic`: RouterWise's dual-price heuristic, as published.

Outer search over setups (an option or nothing per model):

* prune a setup whose total compute exceeds the cluster, sum_i tp_i * mps_i > 100 G;
* prune a setup under the utilization floor, sum_i tp_i * mps_i < floor * 100 G
  (the paper keeps only setups that use the whole cluster's compute, floor 1);
* prune a setup whose shards first-fit decreasing cannot pack on the GPUs
  (shards by decreasing MPS share, then memory; no two shards of a model on a GPU).

With several GPU types (SPEC 4.4) the rules apply per type, since a model's
shards all sit on GPUs of its option's type: the compute of the options on a
type is at most 100 x its GPUs (a setup over it counts as over the cluster's
compute), the floor stays on the total, so floor 1 keeps the setups that fill
every GPU of every type, and first-fit decreasing packs each shard on the
first GPU of its type with room.

Under the cost objective (SPEC 4.4) the heuristic is run as it is on
sub-clusters: every choice of how many GPUs of each type to use (the first
ones of each type), in order of their cost per hour; on each, the rules above
apply with the floor a fraction of that sub-cluster's compute (floor 1 fills
every GPU paid for). The plan is the first one whose quality reaches
min_quality.

Inner solve for a kept setup, over the deployed models' shares w (caps
c_i = min(1, r_K / lam) from capacity (5), T(w) = sum_i H_i(w_i) the mean TTFT):

    maximize  Q(w) - beta * max(0, T(w) - tau)   over  {w : sum_i w_i = 1, 0 <= w_i <= c_i}

* Q's supergradient at w is the price vector alpha that routes the shares w
  (Q(w) = min_alpha D_w(alpha), D_w(alpha) = (1/N) sum_x max_i (s[x,i] - alpha_i) + alpha . w,
  see models/problem/transport.py). alpha is tuned by subgradient steps on D_w,
  alpha += step * (routed(alpha) - w), until the routed shares match w;
  D_w(alpha) >= Q(w) for any alpha, so the tuned alpha also bounds Q(w) from above.
* w moves by projected gradient ascent along alpha - beta * [T(w) > tau] * H'(w),
  H' the slopes of the latency pieces (models/problem/latency.py), with normalized
  steps shrinking geometrically, projected onto the capped simplex.
* beta, the penalty weight on SLO violation, is found by bisection: the smallest
  beta whose ascent ends within the SLO (bracketed by factors of 4 from 1 / tau).
* every iterate within the SLO is a candidate; an ascent that ends slightly
  infeasible is repaired by shifting share from the model with the steepest
  H to the one with the flattest; a setup with no candidate is dropped.

The plan is the best candidate over all setups. Its quality is Q(w) of its
shares computed exactly: by `best_routing`, or, when the tuned prices route
exactly w, by D_w(alpha) itself (their routing is then feasible for w and
attains the upper bound). Candidates are compared by their bounds first, and
Q is computed only while a bound can beat the best Q found. The heuristic's
own tuned alpha, tuned on at the chosen shares, is what the published method
outputs; it need not reproduce the shares prompt by prompt, so it goes in the
plan's notes (with the largest share mismatch it leaves) and the plan
publishes a routing that realizes its shares (`models/problem/published.py`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.problem.instance import Instance, Objective
from models.problem.latency import SharePieces, option_pieces
from models.problem.plan import Infeasible, NoPlanInTime, Plan, SolverReport, TooLarge, build_plan
from models.problem.setup import (Placement, Setup, compute_on_type, compute_pct, count_within_compute,
                                  describe_setup, first_fit_decreasing, model_choices, setups_within_compute)
from models.problem.defaults import DEFAULT_UTILIZATION_FLOOR
from models.problem.progress import Progress
from models.problem.tolerances import SHARE_TOL
from models.problem.transport import Prompts, best_routing

SETUP_LIMIT = 10_000  # setups kept after packing that the search tries at most (inner solves of ~0.1-0.5 s)
VISIT_LIMIT = 1_000_000  # setups within the compute bounds packed at most (first-fit decreasing, ~20 us each)
PRICE_STEPS = 40  # subgradient steps on alpha per ascent iterate, at most
FINAL_PRICE_STEPS = 400  # at most, to tune the plan's prices at the chosen shares
SHARE_MATCH_TOL = 1e-3  # routed shares match w when no share is off by more (or by one merged row)
PRICE_RESOLUTION = 1e-7  # price steps below this stop the tuning (alpha sits where a row is split)
FIRST_PRICE_STEP = 1.0  # price units per unit of share mismatch
RESTART_PRICE_STEP = 1e-3  # a new target w restarts every step at least this large
FINAL_PRICE_STEP = 1e-2  # first step of the final tuning: the candidate's prices are already close
ASCENT_STEPS = 20
FIRST_STEP, LAST_STEP = 0.1, 1e-4  # length of the ascent's normalized steps, in share
BRACKET_STEPS = 12  # beta = 4^k / tau, k = 0..11, then bisection
BISECTION_STEPS = 3
CERTIFIED_TOL = 1e-12  # routed shares this close to w make D_w(alpha) exactly Q(w), up to rounding


# ---------------------------------------------------------------- outer: setups


@dataclass(frozen=True)
class SetupSearch:
    """The setups considered, how many each pruning rule removed, and the kept ones with their placements."""

    considered: int
    over_compute: int
    under_floor: int
    unpackable: int
    kept: tuple[tuple[Setup, Placement], ...]


def prune_setups(instance: Instance, utilization_floor: float) -> SetupSearch:
    """Every setup of usable options, pruned by total compute, the floor and first-fit decreasing.

    The setups are counted by total compute without being listed (7 models of 32 options each are
    34 billion setups), and only those within [floor, 1] of the cluster's compute are visited, each
    packed by first-fit decreasing; above VISIT_LIMIT visits, or SETUP_LIMIT setups kept, the search is
    refused (`TooLarge`)."""
    if not 0 <= utilization_floor <= 1:
        raise ValueError(f"utilization floor {utilization_floor!r} is not a fraction of the cluster's compute in [0, 1]")
    cluster = 100 * instance.gpu_count
    floor = utilization_floor * cluster - 1e-9  # compute is whole percent; the floor may be any fraction
    empty = all(not m.required for m in instance.models)  # every model undeployed: not a setup
    considered = math.prod(len(model_choices(instance, m)) for m in instance.models) - int(empty)
    within = count_within_compute(instance, 0, cluster)
    passed = count_within_compute(instance, floor, cluster)
    if passed > VISIT_LIMIT:
        refuse(f"{passed:,} setups pass its compute bounds, more than the {VISIT_LIMIT:,} it packs", utilization_floor)
    kept, over_type = [], 0
    for setup in setups_within_compute(instance, floor, cluster):
        if not all(compute_on_type(setup, t.name) <= 100 * t.count for t in instance.types):
            over_type += 1
            continue
        placement = first_fit_decreasing(instance, setup)
        if placement is not None:
            kept.append((setup, placement))
        if len(kept) > SETUP_LIMIT:
            refuse(f"more than {SETUP_LIMIT:,} setups pass its compute and packing bounds, the most it tries "
                   "(at a few tenths of a second each)", utilization_floor)
    return SetupSearch(considered=considered, over_compute=considered - within + over_type,
                       under_floor=within - passed, unpackable=passed - over_type - len(kept), kept=tuple(kept))



def refuse(reason: str, utilization_floor: float):
    higher = " (or a higher --utilization-floor)" if utilization_floor < 1 else ""
    raise TooLarge(f"the heuristic's setup search: {reason}; use --method exact{higher}")


# ---------------------------------------------------------------- inner: prices


class PriceRouter:
    """Routes the merged prompts by prices, argmax_i s[r,i] - alpha_i (ties to the lower model index).

    Consecutive prices differ little, so rows are re-routed only where that can
    matter: with reference prices alpha0, a row whose best model leads its second
    by a margin m_r > 2 max_i |alpha_i - alpha0_i| keeps its best model. Rows are
    kept sorted by margin, with running sums of what the rows route, so a call
    costs the rows with margin up to that bound; past a quarter of them, the
    current prices become the reference.
    """

    def __init__(self, prompts: Prompts, columns: list[int]):
        self.scores = prompts.rows[:, columns]
        self.weights = prompts.counts / prompts.prompt_count
        self.match_tol = max(SHARE_MATCH_TOL, float(self.weights.max()))
        self.rebase(np.zeros(len(columns)))

    @property
    def model_count(self) -> int:
        return self.scores.shape[1]

    def rebase(self, prices: np.ndarray) -> None:
        utility = self.scores - prices
        best = np.argmax(utility, axis=1)
        top = utility[np.arange(len(best)), best]
        second = np.partition(utility, -2, axis=1)[:, -2] if self.model_count > 1 else top - np.inf
        order = np.argsort(top - second, kind="stable")
        self.reference = prices.copy()
        self.margins = (top - second)[order]
        self.sorted_scores = self.scores[order]
        self.sorted_weights = self.weights[order]
        routed = np.zeros((len(order), self.model_count))
        routed[np.arange(len(order)), best[order]] = self.sorted_weights
        # rows 0..k-1 of the sorted order route cum_routed[k] shares and cum_score[k] weighted best scores
        self.cum_routed = np.vstack([np.zeros(self.model_count), np.cumsum(routed, axis=0)])
        best_score = self.scores[order, best[order]]
        self.cum_score = np.concatenate([[0.0], np.cumsum(self.sorted_weights * best_score)])

    def route(self, prices: np.ndarray) -> tuple[np.ndarray, float]:
        """Routed shares and the dual function's constant (1/N) sum_x max_i (s[x,i] - alpha_i)."""
        moved = 2 * np.abs(prices - self.reference).max()
        k = int(np.searchsorted(self.margins, moved, side="right"))
        if k > len(self.margins) // 4:
            self.rebase(prices)
            k = int(np.searchsorted(self.margins, 0.0, side="right"))
        shares = self.cum_routed[-1] - self.cum_routed[k]
        constant = self.cum_score[-1] - self.cum_score[k] - float(shares @ prices)
        utility = self.sorted_scores[:k] - prices
        best = np.argmax(utility, axis=1)
        shares = shares + np.bincount(best, weights=self.sorted_weights[:k], minlength=self.model_count)
        return shares, constant + float(self.sorted_weights[:k] @ utility[np.arange(k), best])


@dataclass
class PriceTuner:
    """alpha and its per-model subgradient step, carried from one target w to the next."""

    router: PriceRouter
    prices: np.ndarray
    steps: np.ndarray
    passes: int = 0
    mismatch: np.ndarray | None = None  # routed - w at the last prices

    @classmethod
    def start(cls, router: PriceRouter, prices: np.ndarray | None = None,
              step: float = FIRST_PRICE_STEP) -> "PriceTuner":
        """Prices (zero by default) and a first step per model."""
        models = router.model_count
        prices = np.zeros(models) if prices is None else prices.copy()
        return cls(router, prices, np.full(models, step))

    def tune(self, shares: np.ndarray, tolerance: float | None = None, limit: int = PRICE_STEPS) -> float:
        """Subgradient steps alpha += step * (routed - w) until routed matches w; returns D_w(alpha) >= Q(w).

        Routed shares match when none is off by more than `tolerance` (by default
        SHARE_MATCH_TOL, or one merged row if rows are coarser). A model's step
        halves whenever its mismatch changes sign and grows by half while it keeps
        its sign, so alpha settles where a prompt row is split.
        """
        tolerance = self.router.match_tol if tolerance is None else tolerance
        previous = np.zeros_like(shares)
        self.steps = np.maximum(self.steps, RESTART_PRICE_STEP)
        for _ in range(limit):
            routed, constant = self.router.route(self.prices)
            self.passes += 1
            self.mismatch = routed - shares
            if np.abs(self.mismatch).max() <= tolerance or self.steps.max() < PRICE_RESOLUTION:
                break
            flipped = self.mismatch * previous < 0
            self.steps = np.where(flipped, self.steps / 2, np.minimum(self.steps * 1.5, FIRST_PRICE_STEP))
            self.prices = self.prices + self.steps * self.mismatch
            previous = self.mismatch
        else:
            routed, constant = self.router.route(self.prices)
            self.passes += 1
            self.mismatch = routed - shares
        return constant + float(self.prices @ shares)


# ---------------------------------------------------------------- inner: latency


class SetupLatency:
    """The deployed models' TTFT contributions H_i (breakpoints and slopes), caps c_i and the target tau."""

    def __init__(self, pieces: tuple[SharePieces, ...], target_ms: float):
        self.pieces = pieces
        self.target_ms = target_ms
        self.caps = np.array([p.max_share for p in pieces])
        self.piece_slopes = tuple(p.slopes for p in pieces)

    @classmethod
    def of(cls, instance: Instance, setup: Setup) -> "SetupLatency":
        """The latency side of a setup, over its deployed models in instance order."""
        pieces = tuple(option_pieces(instance, m, o) for m, o in zip(instance.models, setup) if o is not None)
        return cls(pieces, instance.slo_mean_ttft_ms)

    def total(self, shares: np.ndarray) -> float:
        """T(w) = sum_i H_i(w_i), ms (infinite beyond a cap)."""
        return sum(p.contribution(w) for p, w in zip(self.pieces, shares))

    def slopes(self, shares: np.ndarray, side: str = "right") -> np.ndarray:
        """H_i' at w_i on the segment right of w_i (or left of it), ms per unit share."""
        return np.array([s[p.segment(w, side)] for p, s, w in zip(self.pieces, self.piece_slopes, shares)])


def project(values: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {w : sum w = 1, 0 <= w <= caps} (sum caps >= 1).

    The projection is clip(v - theta, 0, caps) with sum = 1; that sum is piecewise
    linear and nonincreasing in theta, with knots at v_i and v_i - c_i.
    """
    knots = np.unique(np.concatenate([values, values - caps]))
    totals = np.clip(values[None, :] - knots[:, None], 0, caps).sum(axis=1)
    theta = np.interp(1.0, totals[::-1], knots[::-1])
    return np.clip(values - theta, 0, caps)


def repair(latency: SetupLatency, shares: np.ndarray) -> np.ndarray | None:
    """Shift share from the steepest H to the flattest, a segment at a time, until T <= tau.

    Each move ends at a breakpoint of one of the two models or at the target, so
    there are at most as many moves as breakpoints. For convex H this finds the
    lowest T the setup reaches; None when T cannot get down to the target.
    """
    target = latency.target_ms
    shares = shares.copy()
    caps = latency.caps
    for _ in range(2 * sum(len(p.shares) for p in latency.pieces) + 2):
        excess = latency.total(shares) - target
        if excess <= 0:
            return shares
        down = np.where(shares > 0, latency.slopes(shares, "left"), -np.inf)
        up = np.where(shares < caps, latency.slopes(shares, "right"), np.inf)
        i, j = int(np.argmax(down)), int(np.argmin(up))
        rate = down[i] - up[j]
        if not rate > 0:
            return None
        left_end = latency.pieces[i].shares[latency.pieces[i].segment(shares[i], "left")]
        right_end = latency.pieces[j].shares[latency.pieces[j].segment(shares[j]) + 1]
        delta = min(shares[i] - left_end, right_end - shares[j], excess / rate)
        shares[i] -= delta
        shares[j] += delta
    return shares if latency.total(shares) <= latency.target_ms else None


# ---------------------------------------------------------------- inner: ascent and bisection


@dataclass(frozen=True, eq=False)
class ShareCandidate:
    """Shares within the SLO, the prices tuned at them, and D_w(alpha), an upper bound on Q(w).

    When the prices route exactly w (`certified`), their routing is feasible for w and
    attains the bound, so the bound is Q(w) itself.
    """

    shares: np.ndarray
    prices: np.ndarray
    bound: float
    repaired: bool
    certified: bool


@dataclass
class InnerSearch:
    """The inner solve of one setup: the price tuner, the latency side and the best candidate so far."""

    tuner: PriceTuner
    latency: SetupLatency
    best: ShareCandidate | None = None

    def offer(self, shares: np.ndarray, bound: float, repaired: bool = False) -> None:
        if self.best is None or bound > self.best.bound:
            certified = bool(np.max(np.abs(self.tuner.mismatch)) <= CERTIFIED_TOL)
            self.best = ShareCandidate(shares.copy(), self.tuner.prices.copy(), bound, repaired, certified)

    def ascend(self, beta: float, shares: np.ndarray) -> tuple[np.ndarray, bool]:
        """Projected gradient ascent on Q(w) - beta max(0, T(w) - tau) from `shares`.

        Returns the last iterate and whether it ends within the SLO, i.e. within one
        last step's worth of T (LAST_STEP times its steepest slope) of the target.
        """
        caps, target = self.latency.caps, self.latency.target_ms
        ratio = (LAST_STEP / FIRST_STEP) ** (1 / (ASCENT_STEPS - 1))
        for t in range(ASCENT_STEPS):
            bound = self.tuner.tune(shares)
            over = self.latency.total(shares) > target
            if not over:
                self.offer(shares, bound)
            gradient = self.tuner.prices - (beta * self.latency.slopes(shares) if over else 0.0)
            direction = gradient - gradient.mean()
            norm = np.linalg.norm(direction)
            if norm == 0:
                break
            shares = project(shares + FIRST_STEP * ratio**t * direction / norm, caps)
        excess = self.latency.total(shares) - target
        slack = LAST_STEP * np.max(self.latency.slopes(shares, "left"))
        if 0 < excess <= slack:
            self.offer_repaired(shares)
        return shares, excess <= slack

    def offer_repaired(self, shares: np.ndarray) -> None:
        fixed = repair(self.latency, shares)
        if fixed is not None:
            self.offer(fixed, self.tuner.tune(fixed), repaired=True)

    def bisect(self, start: np.ndarray) -> ShareCandidate | None:
        """beta = 0 first; then bracket the smallest beta whose ascent ends within the SLO by factors
        of 4 from 1 / tau (one unit of quality per tau of violation), and bisect the bracket."""
        shares, feasible = self.ascend(0.0, start)
        if feasible:
            return self.best
        beta = 1 / self.latency.target_ms
        shares, feasible = self.ascend(beta, shares)
        low, high = (None, beta) if feasible else (beta, None)
        for _ in range(BRACKET_STEPS):
            if low is not None and high is not None:
                break
            beta = beta / 4 if feasible else beta * 4
            shares, feasible = self.ascend(beta, shares)
            if feasible:
                high = beta
            else:
                low = beta
        if high is None:
            self.offer_repaired(shares)
            return self.best
        for _ in range(BISECTION_STEPS if low is not None else 0):
            beta = (low + high) / 2
            shares, feasible = self.ascend(beta, shares)
            low, high = (low, beta) if feasible else (beta, high)
        return self.best


def greedy_start(router: PriceRouter) -> np.ndarray:
    """Every prompt to its best deployed model: the shares that zero prices route."""
    return router.route(np.zeros(router.model_count))[0]


@dataclass(frozen=True, eq=False)
class SetupResult:
    """The inner solver's answer for one setup (None when it found no shares within the SLO)."""

    setup: Setup
    placement: Placement
    deployed: tuple[int, ...]
    candidate: ShareCandidate | None
    passes: int

    def full_shares(self, model_count: int) -> np.ndarray:
        shares = np.zeros(model_count)
        shares[list(self.deployed)] = self.candidate.shares
        return shares / shares.sum()

    def full_prices(self, model_count: int) -> np.ndarray:
        """The candidate's tuned prices over all models (NaN where not deployed)."""
        prices = np.full(model_count, np.nan)
        prices[list(self.deployed)] = self.candidate.prices
        return prices


def inner_solve(instance: Instance, prompts: Prompts, setup: Setup, placement: Placement) -> SetupResult:
    """The inner solve: the best candidate shares for a fixed setup, or none if it cannot meet the SLO."""
    deployed = tuple(k for k, o in enumerate(setup) if o is not None)
    latency = SetupLatency.of(instance, setup)
    router = PriceRouter(prompts, list(deployed))
    search = InnerSearch(PriceTuner.start(router), latency)
    candidate = None
    if latency.caps.sum() >= 1 - SHARE_TOL:  # else the setup cannot carry the arrival rate
        start = project(greedy_start(router), latency.caps)
        if latency.total(start) <= latency.target_ms or repair(latency, start) is not None:
            candidate = search.bisect(start)
    return SetupResult(setup, placement, deployed, candidate, search.tuner.passes)


# ---------------------------------------------------------------- the whole search


@dataclass(frozen=True, eq=False)
class SearchResult:
    """What the inner solver found on every kept setup it reached before the time limit."""

    search: SetupSearch
    results: tuple[SetupResult, ...]
    cut_short: bool
    seconds: dict = field(default_factory=dict)


def search_setups(instance: Instance, prompts: Prompts, utilization_floor: float,
                  time_limit: float | None = None, progress: bool = False, start: float | None = None) -> SearchResult:
    """Prune, then run the inner solver on every kept setup in order until the time limit
    (counted from `start`), with progress on stderr when asked for."""
    start = time.perf_counter() if start is None else start
    clock = time.perf_counter()
    search = prune_setups(instance, utilization_floor)
    seconds = {"prune": time.perf_counter() - clock}
    clock = time.perf_counter()
    results, cut_short = [], False
    with Progress(len(search.kept), "heuristic", unit="setup", enabled=progress) as bar:
        for setup, placement in search.kept:
            if time_limit is not None and time.perf_counter() - start > time_limit:
                cut_short = True
                break
            results.append(inner_solve(instance, prompts, setup, placement))
            bar.update()
    seconds["inner"] = time.perf_counter() - clock
    return SearchResult(search, tuple(results), cut_short, seconds)


def exact_quality(prompts: Prompts, result: SetupResult) -> float:
    """Q(w) of the setup's candidate shares: its bound when certified, else the transportation problem (started
    from the candidate's prices)."""
    if result.candidate.certified:
        return result.candidate.bound
    models = prompts.rows.shape[1]
    return best_routing(prompts, result.full_shares(models), result.full_prices(models)).quality


def best_result(prompts: Prompts, results, deadline: float | None = None) -> tuple[SetupResult | None, float, int]:
    """The result with the highest exact Q, computing Q only while a bound can still beat the best.

    Every candidate's D_w(alpha) bounds its Q(w) from above, so once the next bound
    is no better than the best exact Q found, no later candidate can win. After `deadline`
    (a perf_counter value) no Q is computed beyond the first: the best so far is the answer.
    """
    ranked = sorted((r for r in results if r.candidate is not None), key=lambda r: -r.candidate.bound)
    best, best_quality, computed = None, -np.inf, 0
    for result in ranked:
        if result.candidate.bound <= best_quality or (computed and past(deadline)):
            break
        quality = exact_quality(prompts, result)
        computed += 1
        if quality > best_quality:
            best, best_quality = result, quality
    return best, best_quality, computed


def past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() >= deadline


def final_prices(prompts: Prompts, result: SetupResult) -> tuple[np.ndarray, float]:
    """The candidate's prices tuned on until their steps fall below PRICE_RESOLUTION (alpha then sits
    where a row is split) or FINAL_PRICE_STEPS pass; returns them, lowest at 0, and the largest
    share mismatch left."""
    router = PriceRouter(prompts, list(result.deployed))
    tuner = PriceTuner.start(router, result.candidate.prices, FINAL_PRICE_STEP)
    tuner.tune(result.candidate.shares, tolerance=0.0, limit=FINAL_PRICE_STEPS)
    return tuner.prices - tuner.prices.min(), float(np.max(np.abs(tuner.mismatch)))


def solve_heuristic(instance: Instance, time_limit: float | None = None,
                    utilization_floor: float = DEFAULT_UTILIZATION_FLOOR, progress: bool = True) -> Plan:
    """The heuristic's plan (status `heuristic`); raises `Infeasible` or `NoPlanInTime`. Under the cost objective,
    `solve_cheapest_heuristic`.

    `utilization_floor` is a fraction of the cluster's compute (100 x GPUs). The
    plan publishes a routing that realizes its shares (`models/problem/published.py`); the
    heuristic's own tuned alpha and how far the shares it routes are from the plan's go in the
    notes, with the setups considered, pruned by each rule, kept and evaluated, and the seconds
    per stage.
    """
    if instance.objective.kind == "cost":
        return solve_cheapest_heuristic(instance, time_limit, utilization_floor, progress)
    start = time.perf_counter()
    deadline = None if time_limit is None else start + time_limit
    prompts = Prompts.merge(instance.scores)
    found = search_setups(instance, prompts, utilization_floor, time_limit, progress, start)
    clock = time.perf_counter()
    best, quality, computed = best_result(prompts, found.results, deadline)
    if best is None:
        raise no_plan(instance, found, utilization_floor, time_limit)
    seconds = {**found.seconds, "exact_quality": time.perf_counter() - clock}
    own = {}
    if not past(deadline):  # the heuristic's own prices, as published: for the notes only
        clock = time.perf_counter()
        prices, mismatch = final_prices(prompts, best)
        seconds["final_prices"] = time.perf_counter() - clock
        own = {"heuristic_prices": {instance.models[k].name: float(p) for k, p in zip(best.deployed, prices)},
               "price_share_mismatch": mismatch}
    notes = {**search_notes(found, seconds, computed), "setup": describe_setup(instance, best.setup),
             "repaired": best.candidate.repaired, **own}
    if instance.has_replicas:
        notes["replicas"] = "one per model: RouterWise's search gives each model one option (SPEC 4.5 not searched)"
    if past(deadline) and "cut_short" not in notes:
        notes["cut_short"] = "the time limit passed while the candidates' exact quality was computed"
    report = SolverReport("heuristic", time.perf_counter() - start)
    return build_plan(instance, "heuristic", best.setup, best.placement, best.full_shares(len(instance.models)),
                      quality, report, notes, prices_hint=best.full_prices(len(instance.models)))


def solve_cheapest_heuristic(instance: Instance, time_limit: float | None = None,
                             utilization_floor: float = DEFAULT_UTILIZATION_FLOOR, progress: bool = True) -> Plan:
    """The cost objective (module docstring): the heuristic's plan on the cheapest sub-cluster where it reaches
    min_quality; raises `Infeasible` when none does, `NoPlanInTime` past the time limit."""
    start = time.perf_counter()
    objective = instance.objective
    best_found = None
    for tried, counts in enumerate(sub_clusters(instance), start=1):
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
        if remaining is not None and remaining <= 0:
            raise NoPlanInTime(f"heuristic: time limit of {time_limit:g} s passed after {tried - 1} sub-clusters")
        smaller = sub_cluster(instance, counts)
        if any(model.required and not smaller.options(model) for model in smaller.models):
            continue  # a required model fits none of its GPUs
        try:
            plan = solve_heuristic(smaller, remaining, utilization_floor, progress)
        except (Infeasible, TooLarge):
            continue
        best_found = max(best_found or 0.0, plan.quality)
        if objective.met_by(plan.quality):
            mix = " + ".join(f"{n} {t.name}" for n, t in zip(counts, instance.types) if n)
            return dataclasses.replace(plan, min_quality=objective.min_quality,
                                       solver=SolverReport("heuristic", time.perf_counter() - start),
                                       notes={**plan.notes, "sub_cluster": mix, "sub_clusters_tried": tried})
    found = "none has a plan" if best_found is None else f"the best quality found is {best_found:.6f}"
    raise Infeasible(f"heuristic: on no sub-cluster does it reach quality {objective.min_quality:g}; {found}")


def sub_clusters(instance: Instance) -> list[tuple[int, ...]]:
    """Every count of GPUs per type (not all zero), cheapest first (then fewer GPUs, then in order)."""
    counts = itertools.product(*(range(t.count + 1) for t in instance.types))
    costs = [t.cost_per_hour for t in instance.types]
    return sorted((c for c in counts if any(c)),
                  key=lambda c: (sum(n * k for n, k in zip(c, costs)), sum(c), c))


def sub_cluster(instance: Instance, counts: tuple[int, ...]) -> Instance:
    """The instance on the first `counts[t]` GPUs of each type, with the quality objective. Unlike
    `with_gpu_counts` the GPUs keep their numbers, so that its plans are plans of `instance`, and a model
    that fits no GPU left is not an error (the caller skips the sub-cluster when a required one does not)."""
    types = tuple(dataclasses.replace(t, count=n) for t, n in zip(instance.types, counts))
    return dataclasses.replace(instance, gpu_types=types, gpu_count=sum(counts), objective=Objective())


def search_notes(found: SearchResult, seconds: dict, computed: int) -> dict:
    search = found.search
    notes = {
        "setups_considered": search.considered,
        "pruned_over_compute": search.over_compute,
        "pruned_under_floor": search.under_floor,
        "pruned_unpackable": search.unpackable,
        "setups_kept": len(search.kept),
        "setups_evaluated": len(found.results),
        "setups_within_slo": sum(r.candidate is not None for r in found.results),
        "exact_quality_computed": computed,
        "routing_passes": sum(r.passes for r in found.results),
        "seconds": {stage: round(s, 3) for stage, s in seconds.items()},
    }
    if found.cut_short:
        notes["cut_short"] = f"time limit passed after {len(found.results)} of {len(search.kept)} kept setups"
    return notes


@dataclass(frozen=True, eq=False)
class SetupSpread:
    """The inner solver's quality on every setup that pruning keeps.

    `setups` has one row per kept setup: setup, compute_pct, quality (Q of the inner
    solver's shares, NaN when it found none within the SLO) and mean_ttft_ms.
    """

    instance: str
    setups: pd.DataFrame
    seconds: float

    @property
    def best(self) -> float:
        return float(self.setups.quality.max())

    @property
    def worst(self) -> float:
        return float(self.setups.quality.min())

    @property
    def spread(self) -> float:
        """How much better the best setup is than the worst, relative to the worst."""
        return self.best / self.worst - 1


def format_spread(spread: SetupSpread, floor: float) -> str:
    """One line: setups kept, how many reach the target, best, worst and the spread between them."""
    within = int(spread.setups.quality.notna().sum())
    return (f"{spread.instance} (utilization floor {floor:g}): {len(spread.setups)} setups kept, {within} within the "
            f"target; quality best {spread.best:.6f}, worst {spread.worst:.6f}, spread {100 * spread.spread:.1f}%; "
            f"{spread.seconds:.1f} s")


def setup_spread(instance: Instance, utilization_floor: float = DEFAULT_UTILIZATION_FLOOR,
                 progress: bool = False) -> SetupSpread:
    """Best and worst achievable quality across the setups pruning keeps (the paper's spread statistic)."""
    start = time.perf_counter()
    prompts = Prompts.merge(instance.scores)
    rows = []
    for result in search_setups(instance, prompts, utilization_floor, progress=progress).results:
        within = result.candidate is not None
        latency = SetupLatency.of(instance, result.setup)
        rows.append({
            "setup": describe_setup(instance, result.setup),
            "compute_pct": compute_pct(result.setup),
            "quality": exact_quality(prompts, result) if within else np.nan,
            "mean_ttft_ms": latency.total(result.candidate.shares) if within else np.nan,
        })
    return SetupSpread(instance.name, pd.DataFrame(rows), time.perf_counter() - start)


def search_summary(notes: dict) -> str:
    """One line for a report from a heuristic plan's notes: the setups at each stage and the seconds per stage."""
    stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in notes["seconds"].items())
    line = (f"setups: {notes['setups_considered']} considered, {notes['pruned_over_compute']} over the cluster's "
            f"compute, {notes['pruned_under_floor']} under the floor, {notes['pruned_unpackable']} not packed by "
            f"first-fit decreasing, {notes['setups_kept']} kept, {notes['setups_evaluated']} evaluated, "
            f"{notes['setups_within_slo']} within the target; {stages}")
    return line + (f"; {notes['cut_short']}" if "cut_short" in notes else "")


def no_plan(instance: Instance, found: SearchResult, floor: float, time_limit: float | None) -> Exception:
    if found.cut_short:
        return NoPlanInTime(f"heuristic: time limit of {time_limit:g} s passed after {len(found.results)} of "
                            f"{len(found.search.kept)} kept setups, none within the SLO")
    if not found.search.kept:
        return Infeasible(f"heuristic: no setup passes pruning (compute within the cluster and at least "
                          f"{100 * floor:g}% of it, shards packed by first-fit decreasing); "
                          "a lower utilization_floor keeps more")
    return Infeasible(f"heuristic: none of the {len(found.search.kept)} setups kept after pruning can carry "
                      f"the load within the {instance.slo_mean_ttft_ms:g} ms target")
