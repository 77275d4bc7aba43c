"""Closed-form mean TTFT of the simulated server: a queueing approximation, the simulator's cross-check.

The server alternates prefill iterations (which have priority) and decode
steps, so a new request waits like a high-priority job of an M/G/1 queue with
non-preemptive priority (Cobham's formula): it waits out the iteration in
progress and the prefill work queued ahead of it, then its own prefill.

Data (per request, drawn from the workload): prompt length L, output length O.
Step times P(b, s) and D(b, s) (ms) from the table, CPU time per iteration
included (`StepTimes.prefill_ms`, `decode_ms`); arrival rate lam (1/ms).

* p = P(1, L): a request's own prefill, run alone.
* b: the size of the prefill batch a request joins. Under load requests that
  wait are prefilled together, and each adds only its share of the batch:
  w(b) = P(k, L) / k with k = min(b, token_budget // L).
* rho = lam E[w]: share of time spent in prefill.
* Decode: n requests decode together, each for O - 1 steps, and steps only run
  in the 1 - rho of time left by prefill. Little's law gives the fixed point
  (2) n = lam E[O - 1] D(max(n, 1), c) / (1 - rho), c = E[L] + E[O] / 2 the
  mean KV length of a decoding request. Decode steps are in progress a share
  u = min(n, 1) (1 - rho) of the time.
* Mean wait (Cobham, prefill and decode steps as the two classes):
  W(b) = (lam E[w^2] / 2 + u D / 2) / (1 - rho), with D = D(max(n, 1), c).
* The batch a request joins holds itself and those waiting when it arrives
  (Little): (1) b = 1 + lam W(b). W falls as b grows, so the fixed point is
  unique; it is found by bisection on b in [1, max_batch].
* Mean TTFT = E[p] + W(b).

The load is sustainable when (1) and (2) have solutions with rho < 1,
n <= max_batch and n c within the KV cache. The curve runs at fixed fractions
of the highest sustainable rate (found by bisection), up to 0.8 of it: closer to
saturation the model underestimates TTFT, having no term for admissions that
wait for a full batch or KV cache to drain (docs/latency.md compares it with
the simulator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.profiling.server import ServerConfig
from models.profiling.table import StepTimes
from models.profiling.workload import Workload

CURVE_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8)
BISECTION_STEPS = 30


@dataclass(frozen=True)
class QueueModel:
    """The workload and one deployment's step times (ms), reduced to what the formulas need."""

    step_times: StepTimes
    lengths: np.ndarray  # distinct prompt lengths L
    weights: np.ndarray  # their frequencies
    full_batch: np.ndarray  # token_budget // L, at least 1, at most max_batch
    full_batch_work_ms: np.ndarray  # P(full_batch, L) / full_batch
    prefill_alone_ms: float  # E[p]
    decode_steps: float  # E[O - 1]
    decode_row_ms: np.ndarray  # D(n, c) for n = 1..max_batch
    mean_kv_tokens: float  # c
    config: ServerConfig

    @classmethod
    def of(cls, step_times: StepTimes, config: ServerConfig, workload: Workload) -> "QueueModel":
        lengths, counts = np.unique(workload.prompt_tokens, return_counts=True)
        full = np.clip(config.token_budget // lengths, 1, config.max_batch)
        batches = np.unique(full)
        at_full = step_times.prefill_ms(batches, lengths)[np.searchsorted(batches, full), np.arange(len(full))]
        mean_kv = float(workload.prompt_tokens.mean() + workload.output_tokens.mean() / 2)
        weights = counts / counts.sum()
        return cls(
            step_times=step_times,
            lengths=lengths,
            weights=weights,
            full_batch=full,
            full_batch_work_ms=at_full / full,
            prefill_alone_ms=float(step_times.prefill_ms([1], lengths)[0] @ weights),
            decode_steps=float((workload.output_tokens - 1).mean()),
            decode_row_ms=step_times.decode_ms(np.arange(1, config.max_batch + 1), [mean_kv])[:, 0],
            mean_kv_tokens=mean_kv,
            config=config,
        )

    def work_ms(self, batch: float) -> np.ndarray:
        """w(b) for each distinct prompt length."""
        shared = self.step_times.prefill_ms([batch], self.lengths)[0] / batch
        return np.where(self.full_batch >= batch, shared, self.full_batch_work_ms)

    def decoding(self, lam: float, rho: float) -> float | None:
        """Requests decoding at once, n, from (2); None when no n fits batch and cache."""
        demand = lam * self.decode_steps * self.decode_row_ms / (1 - rho)  # right side of (2) at n = 1, 2, ...
        if demand[0] <= 1:
            return float(demand[0])  # fewer than one at a time: each decodes alone
        settled = np.flatnonzero(demand <= np.arange(1, len(demand) + 1))
        if not settled.size:
            return None
        k = settled[0]  # the right side crosses n between n = k and n = k + 1
        n = k + (demand[k - 1] - k) / (1 + demand[k - 1] - demand[k])
        return n if n * self.mean_kv_tokens <= self.config.kv_tokens else None

    def wait_ms(self, lam: float, batch: float) -> float:
        """W(b), infinite when the load is not sustainable at that batch size."""
        work = self.work_ms(batch)
        rho = lam * float(work @ self.weights)
        n = self.decoding(lam, rho) if rho < 1 else None
        if n is None:
            return float("inf")
        step = float(np.interp(max(n, 1.0), np.arange(1, len(self.decode_row_ms) + 1), self.decode_row_ms))
        in_decode = min(n, 1.0) * (1 - rho)
        return (lam * float(work**2 @ self.weights) / 2 + in_decode * step / 2) / (1 - rho)

    def mean_ttft_ms(self, rate_rps: float) -> float:
        """Mean TTFT (ms) at `rate_rps`; infinite when the load is not sustainable."""
        lam = rate_rps / 1000.0
        low, high = 1.0, float(self.config.max_batch)
        if 1 + lam * self.wait_ms(lam, high) > high:
            return float("inf")
        for _ in range(BISECTION_STEPS):  # (1): 1 + lam W(b) - b falls from >= 0 at b = 1
            middle = (low + high) / 2
            low, high = (middle, high) if 1 + lam * self.wait_ms(lam, middle) > middle else (low, middle)
        return self.prefill_alone_ms + self.wait_ms(lam, high)

    def max_rate_rps(self) -> float:
        """The highest sustainable rate, by bisection (sustainability is monotone in the rate)."""
        low, high = 0.0, 1000.0 / float(self.work_ms(self.config.max_batch) @ self.weights)  # rho >= 1 beyond
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            low, high = (middle, high) if np.isfinite(self.mean_ttft_ms(middle)) else (low, middle)
        return low


def analytic_curve(step_times: StepTimes, config: ServerConfig, workload: Workload) -> list[tuple[float, float]]:
    """(rate_rps, mean_ttft_ms) points at CURVE_FRACTIONS of the highest sustainable rate."""
    queue = QueueModel.of(step_times, config, workload)
    top = queue.max_rate_rps()
    return [(f * top, queue.mean_ttft_ms(f * top)) for f in CURVE_FRACTIONS]
