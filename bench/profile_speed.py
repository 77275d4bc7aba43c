#!/usr/bin/env python3
"""Benchmark: how long the simulator takes to build every latency curve of paper-4xA100.

    python bench/profile_speed.py [--workers 2] [--data data/measured]

1. The block-stepping engine against the simpy reference (one event per
   iteration) on the same requests, on the server as the shipped curves
   configure it (CPU time per iteration, request delay): seconds each (best
   of 3) and the ratio.
2. The whole profile command for data/paper-4xA100 (written to a temporary
   file, the shipped profiles.csv is left alone): wall-clock and CPU seconds,
   against the 5-minute budget.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.cli.profile import main as profile_main  # noqa: E402
from models.profiling.calibration import DEFAULT  # noqa: E402
from models.profiling.overheads import read_cpu_overheads  # noqa: E402
from models.profiling.reference import simulate_reference  # noqa: E402
from models.profiling.server import ServerConfig  # noqa: E402
from models.profiling.simulator import Server, simulate  # noqa: E402
from models.profiling.standins import kv_capacity_tokens  # noqa: E402
from models.profiling.sweep import capacity_rps  # noqa: E402
from models.profiling.table import read_step_table  # noqa: E402
from models.profiling.workload import LengthModel, read_trace, sample_workload  # noqa: E402

BUDGET_S = 300.0
ENGINE_CASES = (("llama-7b", 4, 100), ("llama-30b", 2, 50))
LOADS = (0.1, 0.5, 0.8)  # of the capacity estimate
REQUESTS = 4_000
REPEATS = 3


def table_and_trace(data: Path) -> tuple[Path, Path]:
    return data / "muxserve-a100" / "llama.json", data / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def best_of(run, repeats: int = REPEATS) -> float:
    """The shortest of a few timings: the least disturbed by other jobs on the machine."""
    return min(timed(run) for _ in range(repeats))


def engine_against_reference(data: Path) -> None:
    table_path, trace_path = table_and_trace(data)
    table = read_step_table(table_path)
    overheads = read_cpu_overheads(data / "vidur-a100-cpu-overheads" / "cpu_overheads.csv")
    workload = sample_workload(read_trace(trace_path), LengthModel(256, 32), REQUESTS, seed=0)
    print(f"engine vs simpy reference, {REQUESTS} requests per run, best of {REPEATS}:")
    print(f"{'option':>22} {'load':>5} {'engine s':>9} {'simpy s':>8} {'ratio':>6}")
    for model, tp, sm in ENGINE_CASES:
        config = ServerConfig(kv_capacity_tokens(model, tp, 8.0), token_budget=4096)
        step_times = table.step_times(model, tp, sm).with_cpu(overheads.iteration_cost(tp, DEFAULT.overhead_scale))
        server = Server.build(config, step_times, 4096, DEFAULT.request_delay_ms)
        mu = capacity_rps(server, workload)
        for load in LOADS:
            fast = best_of(lambda: simulate(server, workload, load * mu))
            slow = best_of(lambda: simulate_reference(server, workload, load * mu))
            print(f"{f'{model} tp{tp}/sm{sm}':>22} {load:5.2f} {fast:9.3f} {slow:8.3f} {slow / fast:6.1f}")


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def whole_instance(data: Path, workers: int) -> None:
    table_path, trace_path = table_and_trace(data)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "profiles.csv"
        argv = [str(REPO / "data" / "paper-4xA100"), "--table", str(table_path), "--trace", str(trace_path),
                "--workers", str(workers), "--out", str(out)]
        cpu_before = cpu_seconds()
        wall = timed(lambda: profile_main(argv))
        cpu = cpu_seconds() - cpu_before
    print(f"paper-4xA100, all curves, {workers} workers: {wall:.1f} s wall, {cpu:.1f} s CPU; "
          f"wall / budget ({BUDGET_S:.0f} s) = {wall / BUDGET_S:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "measured")
    args = parser.parse_args()
    engine_against_reference(args.data)
    whole_instance(args.data, args.workers)


if __name__ == "__main__":
    main()
