#!/usr/bin/env python3
"""Validation against measured vLLM runs: DistServe's OPT-13B server on one A100-80GB, 1 to 4 requests/s.

    python bench/validate_vllm.py [--data data/measured] [--max-requests 40000]

For each of the 8 measured runs (`data/measured/distserve-vllm-opt13b/`) it
prints the measured mean, p50 and p90 TTFT (the mean with its 95 % interval
from 20 batch means of consecutive requests), the same from a replay of the
run's exact arrivals and lengths through the simulated server
(`models/profiling/replay.py`), and the latency curve's mean TTFT at the run's
rate, with their errors; then the mean time per output token (TPOT), and two
signs of a backlog: the mean TTFT of the run's last tenth of requests, and the
first tokens per second delivered over the second half of its arrivals.

The server is `OPT13B_SERVER` with the calibration fitted on the training runs
(`models/profiling/calibration.py`; the fit is recomputed here and must give
the shipped constants). The curve is a sweep of that server (`sweep.py`) with
Poisson arrivals and lengths drawn from all 1,850 measured requests, seed 0.

Then the knee: which runs end backed up (their last tenth waited over 1 s on
average, three times the longest prefill), what the real server delivered
while backed up, and the curve's r_K; and the targets: mean TTFT within 15 %
(or inside the measured 95 % interval) at every rate up to 2.5 requests/s, r_K
within the delivered rates of the backed-up runs. Then the same summary for
the server `solve.py profile` uses by default (calibration DEFAULT). Last, how
often the queue-growth test (`sweep.queue_grows`) flags an M/D/1 queue
(D = 10 ms, one request at a time) of 40,000 requests, over 20 seeds, by load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.problem.instance import Curve  # noqa: E402
from models.problem.latency import latency_ms  # noqa: E402
from models.profiling.calibration import (  # noqa: E402
    DEFAULT,
    DISTSERVE_VLLM,
    OPT13B_SERVER,
    TRAINING_RUNS,
    Calibration,
    fit_calibration,
)
from models.profiling.overheads import read_cpu_overheads  # noqa: E402
from models.profiling.replay import RecordedRun, read_recorded_runs, replay  # noqa: E402
from models.profiling.server import ServerConfig  # noqa: E402
from models.profiling.simulator import Server, simulate  # noqa: E402
from models.profiling.sweep import SweepSettings, batch_means_ci, queue_grows, sweep  # noqa: E402
from models.profiling.workload import Workload  # noqa: E402
from models.profiling.table import read_step_table  # noqa: E402
from models.profiling.workload import LengthModel, Trace, sample_workload  # noqa: E402

TARGET_ERROR = 0.15
TARGET_MAX_RATE_RPS = 2.5
BACKED_UP_MS = 1_000.0  # mean TTFT of a run's last tenth; the longest prefill alone is about 300 ms
LAST_SHARE = 0.1
MD1_LOADS = (0.5, 0.9, 0.95, 0.98, 1.0, 1.01, 1.02, 1.05, 1.1)
MD1_SEEDS = 20
MD1_REQUESTS = 40_000


def delivered_rps(arrival_ms: np.ndarray, first_token_ms: np.ndarray) -> float:
    """First tokens per second delivered between the run's middle and last arrivals."""
    start, end = arrival_ms[-1] / 2, arrival_ms[-1]
    return 1000.0 * np.count_nonzero((first_token_ms > start) & (first_token_ms <= end)) / (end - start)


def stats(prefix: str, ttft_ms: np.ndarray, tpot_ms: np.ndarray, arrival_ms: np.ndarray) -> dict:
    last = ttft_ms[-max(1, int(LAST_SHARE * len(ttft_ms))):]
    return {f"{prefix}_mean": ttft_ms.mean(), f"{prefix}_p50": np.percentile(ttft_ms, 50),
            f"{prefix}_p90": np.percentile(ttft_ms, 90), f"{prefix}_tpot": np.nanmean(tpot_ms),
            f"{prefix}_last_tenth": last.mean(), f"{prefix}_delivered": delivered_rps(arrival_ms, arrival_ms + ttft_ms)}


def pooled_lengths(runs: tuple[RecordedRun, ...]) -> Trace:
    return Trace(Path("measured_requests.csv"), np.concatenate([r.prompt_tokens for r in runs]),
                 np.concatenate([r.output_tokens for r in runs]))


def curve_of(server, runs, max_requests: int) -> Curve:
    """The sweep's stable points (and their half-widths) as a SPEC curve of the measured server."""
    trace = pooled_lengths(runs)
    lengths = LengthModel(trace.prompt_tokens.mean(), trace.output_tokens.mean(), OPT13B_SERVER.context_window)
    workload = sample_workload(trace, lengths, max_requests, seed=0)  # factor 1: the measured lengths as they are
    points = [p for p in sweep(server, workload, SweepSettings(max_requests=max_requests)) if not p.saturated]
    return Curve(tuple(p.rate_rps for p in points), tuple(p.mean_ttft_ms for p in points)), points[-1]


def compare(runs, server, curve: Curve) -> pd.DataFrame:
    rows = []
    for run in runs:
        replayed = replay(server, run)
        mean, half_width = batch_means_ci(run.ttft_ms)
        at_rate = latency_ms(curve, run.nominal_rate_rps)
        rows.append({"run": run.name, "role": "train" if run.name in TRAINING_RUNS else "test",
                     "rate": run.nominal_rate_rps, "requests": len(run), "meas_ci95": half_width,
                     **stats("meas", run.ttft_ms, run.tpot_ms, run.arrival_ms),
                     **stats("replay", replayed.ttft_ms, replayed.tpot_ms, run.arrival_ms),
                     "curve_mean": at_rate})
    table = pd.DataFrame(rows)
    for what in ("replay_mean", "replay_p50", "replay_p90", "curve_mean", "replay_tpot"):
        measured = table["meas_" + what.split("_")[1]]
        table[what + "_err_pct"] = 100 * (table[what] / measured - 1)
    return table


def print_runs(table: pd.DataFrame) -> None:
    ttft = table[["run", "role", "rate", "requests", "meas_mean", "meas_ci95", "replay_mean", "replay_mean_err_pct",
                  "curve_mean", "curve_mean_err_pct", "meas_p50", "replay_p50", "replay_p50_err_pct",
                  "meas_p90", "replay_p90", "replay_p90_err_pct"]]
    print("TTFT (ms): measured (mean, 95 % half-width), replay and curve, errors in %")
    print(ttft.round(1).replace([np.inf], "above r_K").to_string(index=False))
    load = table[["run", "meas_tpot", "replay_tpot", "replay_tpot_err_pct", "meas_last_tenth",
                  "replay_last_tenth", "meas_delivered", "replay_delivered"]]
    print("\nTPOT (ms), mean TTFT of the last tenth (ms), first tokens/s over the second half of arrivals")
    print(load.round(2).to_string(index=False))


def print_verdict(table: pd.DataFrame, top, label: str) -> None:
    low = table[table.rate <= TARGET_MAX_RATE_RPS]
    inside = (low.replay_mean_err_pct.abs() <= 100 * TARGET_ERROR) | \
             ((low.replay_mean - low.meas_mean).abs() <= low.meas_ci95)
    backed_up = table[table.meas_last_tenth > BACKED_UP_MS]
    low_rate, high_rate = backed_up.meas_delivered.min(), backed_up.meas_delivered.max()
    print(f"\n{label}")
    print(f"  mean TTFT up to {TARGET_MAX_RATE_RPS} requests/s within {100 * TARGET_ERROR:.0f} % or the measured "
          f"interval: {'met' if inside.all() else 'NOT met'} (replay errors {low.replay_mean_err_pct.min():+.1f} "
          f"to {low.replay_mean_err_pct.max():+.1f} %; test runs only: "
          f"{low[low.role == 'test'].replay_mean_err_pct.abs().max():.1f} % at most)")
    print(f"  measured: backed up at {', '.join(f'{r:g}' for r in backed_up.rate)} requests/s, where it delivered "
          f"{low_rate:.2f}-{high_rate:.2f} first tokens/s; not at {table.rate[table.meas_last_tenth <= BACKED_UP_MS].max():g}")
    print(f"  curve r_K = {top.rate_rps:.3f} requests/s (mean TTFT {top.mean_ttft_ms:,.0f} +- "
          f"{top.ci95_ttft_ms:,.0f} ms there): {'inside' if low_rate <= top.rate_rps <= high_rate else 'OUTSIDE'} "
          f"{low_rate:.2f}-{high_rate:.2f}")


def queue_test_on_md1() -> None:
    """Share of M/D/1 runs the queue-growth test calls growing, by load (1.0 = capacity)."""
    grid = np.full((2, 65), 10.0)
    server = Server.from_grids(ServerConfig(kv_tokens=10**6, token_budget=64, max_batch=1), grid, grid)
    flagged = []
    for load in MD1_LOADS:
        count = 0
        for seed in range(MD1_SEEDS):
            rng = np.random.default_rng(seed)
            workload = Workload(rng.exponential(size=MD1_REQUESTS), np.full(MD1_REQUESTS, 16),
                                np.ones(MD1_REQUESTS, dtype=np.int64))
            rate_rps = load * 100.0
            count += queue_grows(workload.arrivals_ms(rate_rps), simulate(server, workload, rate_rps))
        flagged.append(f"{load:g}: {count}/{MD1_SEEDS}")
    print(f"\nqueue-growth test on M/D/1, {MD1_REQUESTS:,} requests, runs flagged by load: {', '.join(flagged)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "measured")
    parser.add_argument("--max-requests", type=int, default=SweepSettings.max_requests)
    args = parser.parse_args()
    table_data = read_step_table(args.data / "muxserve-a100" / "llama.json")
    overheads = read_cpu_overheads(args.data / "vidur-a100-cpu-overheads" / "cpu_overheads.csv")
    runs = read_recorded_runs(args.data / "distserve-vllm-opt13b" / "measured_requests.csv")
    fitted = fit_calibration(runs, table_data, overheads)
    print(f"fit on {', '.join(TRAINING_RUNS)}: overhead scale k = {fitted.overhead_scale:g}, request delay "
          f"d = {fitted.request_delay_ms:g} ms ({'as shipped' if fitted == DISTSERVE_VLLM else 'DIFFERS from'} "
          f"DISTSERVE_VLLM {DISTSERVE_VLLM})")
    config = OPT13B_SERVER.config()
    print(f"server: {OPT13B_SERVER.table_model} tp{OPT13B_SERVER.tp}, {config.kv_tokens:,} KV tokens, token budget "
          f"{config.token_budget:,}, at most {config.max_batch:,} requests, context {OPT13B_SERVER.context_window:,}\n")
    for label, calibration in (("fitted (DISTSERVE_VLLM)", fitted), ("shipped default (DEFAULT)", DEFAULT)):
        server = OPT13B_SERVER.server(table_data, overheads, calibration)
        curve, top = curve_of(server, runs, args.max_requests)
        table = compare(runs, server, curve)
        if calibration == fitted:
            print_runs(table)
        print_verdict(table, top, f"{label}: {Calibration.__name__}({calibration.overhead_scale:g}, "
                                  f"{calibration.request_delay_ms:g} ms)")
    queue_test_on_md1()


if __name__ == "__main__":
    main()
