"""A latency curve by simulation: mean TTFT with its confidence interval at rising loads, up to the highest
load the server sustains.

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
   (times 1.2), up to `max_requests`. Near capacity TTFTs are correlated over
   long stretches and the interval may stay wider; the point is kept with its
   half-width, however wide.
4. Queue growth (`queue_grows`). Let B_n be the number of requests without
   their first token when request n arrives (itself included). After the
   warm-up, take the means of B over 20 consecutive batches, B_1..B_20, and
   fit B_j = alpha + beta j by least squares. The queue grows when its fitted
   rise over the run, 19 beta, exceeds 1 % of the run's N requests and beta is
   significantly positive (beta > t(0.99, 18) se(beta)). A stable queue's
   backlog is stationary, so neither holds but by rare chance; an overloaded
   queue's climbs by 1 - mu / rate per arrival, so a load 2 % above capacity
   rises by about 1.7 % of the run's requests.
5. The sweep stops at the first rate whose queue grows. The rate before it, if
   its run was shorter than `max_requests`, is run again with `max_requests`
   requests: if its queue grows there, it is overloaded too, and the rate
   before it is checked the same way. The curve's last point r_K is therefore
   the highest rate of the grid whose queue stays bounded over a run of
   `max_requests` requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.profiling.simulator import Server, simulate
from models.profiling.workload import Workload

RATE_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.96, 0.98, 1.0)
RATE_STEP_ABOVE = 0.02  # further fractions of mu, past RATE_FRACTIONS, until the queue grows
TOP_FRACTION = 1.5  # the backlog run batches best, so no Poisson load this far above mu is stable
WARMUP_SHARE = 0.1
BATCHES = 20
T_975_DF19 = 2.093  # Student t quantile 0.975 at 19 degrees of freedom (the mean's interval)
T_99_DF18 = 2.552  # Student t quantile 0.99 at 18 degrees of freedom (the slope of 20 batch means)
GROWTH_SHARE = 0.01  # of the run's requests: the least rise of the backlog that counts as growth
CAPACITY_SKIP = 0.2
MIN_REQUESTS = 1_000  # the shortest useful run: 20 batch means of 45 requests after warm-up
RUN_MARGIN = 1.2


@dataclass(frozen=True)
class SweepSettings:
    """Run lengths and precision of a sweep."""

    first_requests: int = 4_000
    max_requests: int = 40_000
    target_half_width: float = 0.025  # of the mean, 95 % confidence


@dataclass(frozen=True)
class RatePoint:
    """What one load gave: TTFT statistics (ms) over the requests after warm-up, or `saturated`
    (the queue grows) and nothing else."""

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


def batch_means(values: np.ndarray) -> np.ndarray:
    """Means of BATCHES consecutive batches of equal size (a remainder at the end is left out)."""
    usable = len(values) - len(values) % BATCHES
    return values[:usable].reshape(BATCHES, -1).mean(axis=1)


def batch_means_ci(ttft_ms: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % interval from BATCHES consecutive batch means."""
    return float(ttft_ms.mean()), T_975_DF19 * float(batch_means(ttft_ms).std(ddof=1)) / np.sqrt(BATCHES)


def backlog_at_arrivals(arrivals_ms: np.ndarray, first_token_ms: np.ndarray) -> np.ndarray:
    """B_n: requests arrived by request n's arrival (n included) that have no first token yet."""
    delivered = np.searchsorted(np.sort(first_token_ms), arrivals_ms, side="right")
    return np.arange(1, len(arrivals_ms) + 1) - delivered


def queue_grows(arrivals_ms: np.ndarray, first_token_ms: np.ndarray) -> bool:
    """Step 4 of the module docstring: the backlog's fitted rise after warm-up is material and significant."""
    count = len(arrivals_ms)
    means = batch_means(backlog_at_arrivals(arrivals_ms, first_token_ms)[int(WARMUP_SHARE * count):])
    j = np.arange(BATCHES) - (BATCHES - 1) / 2
    slope = float(j @ means / (j @ j))
    residuals = means - means.mean() - slope * j
    slope_se = np.sqrt(residuals @ residuals / (BATCHES - 2) / (j @ j))
    return bool(slope * (BATCHES - 1) > GROWTH_SHARE * count and slope > T_99_DF18 * slope_se)


def measure(server: Server, workload: Workload, rate_rps: float, settings: SweepSettings,
            requests: int | None = None) -> RatePoint:
    """Simulate at `rate_rps` with as many of `workload`'s requests as the precision needs
    (at least `requests`, when given)."""
    most = min(settings.max_requests, len(workload))
    count = min(requests or settings.first_requests, most)
    while True:
        head = workload.head(count)
        arrivals = head.arrivals_ms(rate_rps)
        first = simulate(server, head, rate_rps)
        if queue_grows(arrivals, first):
            return RatePoint(rate_rps, count, saturated=True)
        ttft = (first - arrivals)[int(WARMUP_SHARE * count):]
        mean, half_width = batch_means_ci(ttft)
        if half_width <= settings.target_half_width * mean or count == most:
            p50, p95, p99 = np.percentile(ttft, [50, 95, 99])
            return RatePoint(rate_rps, count, False, mean, half_width, p50, p95, p99)
        # the half-width shrinks as 1 / sqrt(requests): aim for the target with some margin
        needed = count * (half_width / (settings.target_half_width * mean)) ** 2 * RUN_MARGIN
        count = min(most, max(int(needed), count + settings.first_requests))


def rate_fractions() -> np.ndarray:
    above = np.arange(RATE_FRACTIONS[-1] + RATE_STEP_ABOVE, TOP_FRACTION + 1e-9, RATE_STEP_ABOVE)
    return np.concatenate([RATE_FRACTIONS, above])


def sweep(server: Server, workload: Workload, settings: SweepSettings = SweepSettings()) -> list[RatePoint]:
    """Points from 5 % of the capacity estimate upward; the last one is the first rate whose queue grows."""
    mu = capacity_rps(server, workload.head(settings.first_requests))
    stable = []
    for fraction in rate_fractions():
        point = measure(server, workload, fraction * mu, settings)
        if point.saturated:
            return confirm_highest(server, workload, stable, point, settings)
        stable.append(point)
    raise RuntimeError(f"no saturation up to {TOP_FRACTION} x the capacity estimate {mu:.3g} requests/s")


def confirm_highest(server: Server, workload: Workload, stable: list[RatePoint], overloaded: RatePoint,
                    settings: SweepSettings) -> list[RatePoint]:
    """Step 5: the highest stable rate measured on a shorter run is measured again on the longest one;
    if its queue grows there, it takes the overloaded point's place and the rate below is next."""
    longest = min(settings.max_requests, len(workload))
    while stable and stable[-1].requests < longest:
        point = measure(server, workload, stable[-1].rate_rps, settings, requests=longest)
        if not point.saturated:
            return stable[:-1] + [point, overloaded]
        stable, overloaded = stable[:-1], point
    return stable + [overloaded]
