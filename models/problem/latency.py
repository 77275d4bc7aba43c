"""The SPEC's setup-specific latency model, as the solvers use it.

For one model at one option, the profile points (r_k, L_k) give

* the latency `L(r)`: mean TTFT (ms) at load r, interpolated linearly and flat
  below r_1;
* the contribution to mean TTFT `H(w)`, piecewise linear in the share w through
  (0, 0) and (r_k / lam, (r_k / lam) * L_k);
* the capacity: lam * w <= (1 - headroom) r_K (SPEC 4.1; headroom 0 by default), and
  lam * w no more than the largest load within the tail bounds (SPEC 4.6, `Instance.tail_rate_rps`);
* a TTFT percentile at load r (SPEC 4.6): interpolated linearly, flat below r_1.

The evaluator (`models/evaluation/evaluate.py`) recomputes these on its own on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.problem.instance import Curve, Instance, Model, Option
from models.problem.tolerances import SHARE_TOL

CONVEXITY_TOL = 1e-9
CAPACITY_TOL = 1e-9  # relative; above r_K the option is overloaded and its TTFT unbounded


@dataclass(frozen=True)
class SharePieces:
    """Breakpoints of H over the shares the option can carry: w in [0, min(1, r_K / lam)]."""

    shares: np.ndarray  # w_0 = 0 < w_1 < ... (dimensionless)
    contributions: np.ndarray  # H(w_k), ms

    @property
    def max_share(self) -> float:
        return float(self.shares[-1])

    @property
    def slopes(self) -> np.ndarray:
        """Slope of H on each segment, ms per unit share."""
        return np.diff(self.contributions) / np.diff(self.shares)

    @property
    def intercepts(self) -> np.ndarray:
        """H(w) = slope * w + intercept on each segment."""
        return self.contributions[:-1] - self.slopes * self.shares[:-1]

    @property
    def is_convex(self) -> bool:
        slopes = self.slopes
        return bool(np.all(np.diff(slopes) >= -CONVEXITY_TOL * np.maximum(1.0, np.abs(slopes[1:]))))

    def segment(self, share: float, side: str = "right") -> int:
        """Index of the segment on the given side of `share` (the first or last one at the ends)."""
        k = int(self.shares.searchsorted(share, side="right" if side == "right" else "left")) - 1
        return min(max(k, 0), len(self.shares) - 2)

    def contribution(self, share: float) -> float:
        """H(share) in ms; infinite beyond the option's capacity (to SHARE_TOL)."""
        if share > self.max_share + SHARE_TOL:
            return float("inf")
        return float(np.interp(share, self.shares, self.contributions))


def share_pieces(curve: Curve, arrival_rate_rps: float, capacity_rps: float | None = None) -> SharePieces:
    """H's breakpoints for `curve` at arrival rate lam over the shares the option may carry: up to
    min(1, capacity / lam) (capacity r_K by default), with a breakpoint interpolated at that end (SPEC 4.1 and
    4.6 keep H)."""
    shares = np.concatenate([[0.0], np.asarray(curve.rates_rps) / arrival_rate_rps])
    contributions = np.concatenate([[0.0], shares[1:] * np.asarray(curve.ttfts_ms)])
    end = min(1.0, shares[-1] if capacity_rps is None else capacity_rps / arrival_rate_rps)
    if end < shares[-1]:
        keep = shares < end
        at_end = np.interp(end, shares, contributions)
        shares = np.append(shares[keep], end)
        contributions = np.append(contributions[keep], at_end)
    return SharePieces(shares, contributions)


def option_pieces(instance: Instance, model: Model, option: Option) -> SharePieces:
    """`share_pieces` of a model at an option of the instance, with its arrival rate and capacity (headroom and
    tail bounds)."""
    curve = instance.curve(model, option)
    return share_pieces(curve, instance.arrival_rate_rps, instance.capacity_rps(curve))


def mean_ttft(instance: Instance, setup, shares) -> float:
    """The predicted mean TTFT of these shares on this setup (an option or None per model); infinite when a
    model cannot carry its share."""
    return sum(option_pieces(instance, model, option).contribution(float(share))
               for model, option, share in zip(instance.models, setup, shares) if option is not None)


def latency_ms(curve: Curve, rate_rps: float) -> float:
    """L(rate): mean TTFT interpolated between profiled loads, flat below the first, infinite above r_K."""
    if rate_rps > curve.max_rate_rps * (1 + CAPACITY_TOL):
        return float("inf")
    return float(np.interp(rate_rps, curve.rates_rps, curve.ttfts_ms))


def percentile_ttft_ms(curve: Curve, percentile: str, rate_rps: float) -> float:
    """A TTFT percentile ('p95', 'p99') at `rate`: interpolated between profiled loads, flat below the first."""
    return float(np.interp(rate_rps, curve.rates_rps, curve.percentile_ms(percentile)))
