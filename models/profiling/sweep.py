"""A latency curve by simulation: mean TTFT with its confidence interval at rising loads, up to saturation.

For one server:

1. Capacity estimate mu: the throughput with every request queued at time 0
   (first tokens per second over all but the first fifth of the requests).
2. Rates at fixed fractions of mu (RATE_FRACTIONS, then steps of 0.02 mu),
   lowest first. At each rate, simulate the same seeded requests (common
   random numbers) with Poisson arrivals.
3. Drop the first 10 % of requests (warm-up). The mean TTFT's 95 % confidence
   interval comes from 20 batch means of consecutive requests (Student t, 19
   degrees of freedom). If its half-width is above 2.5 % of the mean, simulate
   again with the run length that the 1 / sqrt(requests) law says reaches it
   (times 1.2), up to `max_requests`. Near saturation TTFTs are correlated
   over long stretches and the interval may stay wider; at `max_requests` the
   point is kept if the half-width is at most 10 % of the mean (each point's
   half-width is written with it).
4. The rate is saturated (the queue grows without bound) when, at the last
   arrival, more than 2 % of the requests still wait for their first token:
   a stable queue holds a bounded number, an overloaded one a share that
   grows with the run (1 - mu / rate of all arrivals). A rate whose interval
   is still wider than 10 % at `max_requests` (or is predicted to be twice
   that, by the 1 / sqrt law from a shorter run) is treated as saturated too:
   it is not sustainable to a useful precision. The curve ends at the last rate
   before the first saturated one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.profiling.simulator import Server, simulate
from models.profiling.workload import Workload

RATE_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.96, 0.98, 1.0)
RATE_STEP_ABOVE = 0.02  # further fractions of mu, past RATE_FRACTIONS, until saturation
TOP_FRACTION = 1.5  # the backlog run batches best, so no Poisson load this far above mu is stable
WARMUP_SHARE = 0.1
BATCHES = 20
T_975_DF19 = 2.093  # Student t quantile 0.975 at 19 degrees of freedom
BACKLOG_SHARE = 0.02
CAPACITY_SKIP = 0.2
RUN_MARGIN = 1.2
HOPELESS = 2.0  # predicted half-width at max_requests, in loosest half-widths, that ends a rate early


@dataclass(frozen=True)
class SweepSettings:
    """Run lengths and precision of a sweep."""

    first_requests: int = 4_000
    max_requests: int = 40_000
    target_half_width: float = 0.025  # of the mean, 95 % confidence
    loosest_half_width: float = 0.1  # accepted at max_requests, near saturation


@dataclass(frozen=True)
class RatePoint:
    """What one load gave: TTFT statistics (ms) over the requests after warm-up."""

    rate_rps: float
    requests: int
    saturated: bool
    mean_ttft_ms: float = np.nan
    ci95_ttft_ms: float = np.nan  # half-width of the mean's 95 % confidence interval
    p50_ttft_ms: float = np.nan
    p95_ttft_ms: float = np.nan
    p99_ttft_ms: float = np.nan


def capacity_rps(server: Server, workload: Workload) -> float:
    """Throughput (first tokens per second) with every request waiting from time 0."""
    backlog = Workload(np.zeros(len(workload)), workload.prompt_tokens, workload.output_tokens)
    first = np.sort(simulate(server, backlog, 1.0))
    skip = int(CAPACITY_SKIP * len(first))
    return 1000.0 * (len(first) - 1 - skip) / (first[-1] - first[skip])


def batch_means_ci(ttft_ms: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % interval from BATCHES consecutive batch means."""
    usable = len(ttft_ms) - len(ttft_ms) % BATCHES
    means = ttft_ms[:usable].reshape(BATCHES, -1).mean(axis=1)
    return float(ttft_ms.mean()), T_975_DF19 * float(means.std(ddof=1)) / np.sqrt(BATCHES)


def measure(server: Server, workload: Workload, rate_rps: float, settings: SweepSettings) -> RatePoint:
    """Simulate at `rate_rps` with as many of `workload`'s requests as the precision needs."""
    most = min(settings.max_requests, len(workload))
    count = min(settings.first_requests, most)
    while True:
        requests = workload.head(count)
        arrivals = requests.arrivals_ms(rate_rps)
        first = simulate(server, requests, rate_rps)
        if np.count_nonzero(first > arrivals[-1]) > BACKLOG_SHARE * count:
            return RatePoint(rate_rps, count, saturated=True)
        ttft = (first - arrivals)[int(WARMUP_SHARE * count):]
        mean, half_width = batch_means_ci(ttft)
        precise = half_width <= settings.target_half_width * mean
        if precise or count == most:
            if half_width > settings.loosest_half_width * mean:
                return RatePoint(rate_rps, count, saturated=True)
            p50, p95, p99 = np.percentile(ttft, [50, 95, 99])
            return RatePoint(rate_rps, count, False, mean, half_width, p50, p95, p99)
        # the half-width shrinks as 1 / sqrt(requests): aim for the target with some margin,
        # and give up now if even the longest run would clearly stay wider than the loosest
        if half_width * np.sqrt(count / most) > HOPELESS * settings.loosest_half_width * mean:
            return RatePoint(rate_rps, count, saturated=True)
        needed = count * (half_width / (settings.target_half_width * mean)) ** 2 * RUN_MARGIN
        count = min(most, max(int(needed), count + settings.first_requests))


def rate_fractions() -> np.ndarray:
    above = np.arange(RATE_FRACTIONS[-1] + RATE_STEP_ABOVE, TOP_FRACTION + 1e-9, RATE_STEP_ABOVE)
    return np.concatenate([RATE_FRACTIONS, above])


def sweep(server: Server, workload: Workload, settings: SweepSettings = SweepSettings()) -> list[RatePoint]:
    """Points from 5 % of the capacity estimate upward; the last one is the first saturated rate."""
    mu = capacity_rps(server, workload.head(settings.first_requests))
    points = []
    for fraction in rate_fractions():
        points.append(measure(server, workload, fraction * mu, settings))
        if points[-1].saturated:
            return points
    raise RuntimeError(f"no saturation up to {TOP_FRACTION} x the capacity estimate {mu:.3g} requests/s")
