#!/usr/bin/env python3
"""Validation against measurements nobody here made: Splitwise's llama2-70b prompt times on A100.

    python bench/validate_splitwise.py [--data data/measured]

Splitwise (Patel et al., ISCA 2024; Mutinifni/splitwise-sim, MIT) measured the
prompt (prefill) time of Llama-2-70B on A100-80GB by tensor-parallel degree and
prompt size, one prompt at a time. For the tp degrees the step-time table also
measured for the stand-in llama-65b (4 and 8), the simulator serves requests
of exactly that prompt size (one output token) arriving 100 s apart, so that
none ever waits and its mean TTFT is its prefill iteration alone, and the
table prints the error against Splitwise's mean over its repetitions: once
for the table's GPU time alone, once with the engine's CPU time per iteration
as the shipped curves charge it (Vidur's overheads at the default calibration,
models/profiling/calibration.py; the request delay outside the engine is left
out, as Splitwise timed the prompt phase itself).
The server's context window and token budget are widened to Splitwise's
longest prompt (8,192 tokens) so every size can be served; beyond 512 tokens
the times are the table's extrapolation along the sequence length.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.profiling.calibration import DEFAULT  # noqa: E402
from models.profiling.overheads import read_cpu_overheads  # noqa: E402
from models.profiling.server import ServerConfig  # noqa: E402
from models.profiling.simulator import Server, simulate  # noqa: E402
from models.profiling.standins import STAND_INS, kv_capacity_tokens  # noqa: E402
from models.profiling.table import read_step_table  # noqa: E402
from models.profiling.workload import Workload  # noqa: E402

SERVED = "llama-2-70b"
LOW_RATE_RPS = 0.01  # with evenly spaced arrivals: one request every 100 s
REQUESTS = 10
WINDOW = 8192 + 1  # Splitwise's longest prompt and its first token
KV_CACHE_GB = 8.0  # per shard, as in the paper instances


def splitwise_prompt_times(path: Path) -> pd.DataFrame:
    """Mean measured prompt time (ms) per tp and prompt size, one prompt per batch, A100."""
    table = pd.read_csv(path)
    rows = table[(table.model == "llama2-70b") & (table.hardware == "a100-80gb") & (table.batch_size == 1)]
    return (rows.groupby(["tensor_parallel", "prompt_size"]).prompt_time.agg(["mean", "count"])
            .reset_index().rename(columns={"tensor_parallel": "tp", "mean": "splitwise_ms", "count": "runs"}))


def low_load_ttft_ms(server: Server, prompt_tokens: int) -> float:
    """The simulator's mean TTFT for requests of one prompt size, arriving too rarely to queue."""
    workload = Workload(np.ones(REQUESTS), np.full(REQUESTS, prompt_tokens), np.ones(REQUESTS, dtype=np.int64))
    first = simulate(server, workload, LOW_RATE_RPS)
    return float((first - workload.arrivals_ms(LOW_RATE_RPS)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "measured")
    args = parser.parse_args()
    table = read_step_table(args.data / "muxserve-a100" / "llama.json")
    overheads = read_cpu_overheads(args.data / "vidur-a100-cpu-overheads" / "cpu_overheads.csv")
    stand_in = STAND_INS[SERVED]
    measured = splitwise_prompt_times(args.data / "splitwise-a100-h100" / "perf_model.csv")
    rows = []
    for tp, group in measured.groupby("tp"):
        if tp not in table.tps(stand_in):
            continue
        config = ServerConfig(kv_capacity_tokens(stand_in, tp, KV_CACHE_GB), token_budget=WINDOW)
        gpu_only = table.step_times(stand_in, tp, 100)
        servers = {"gpu": Server.build(config, gpu_only, WINDOW),
                   "cpu": Server.build(config, gpu_only.with_cpu(overheads.iteration_cost(tp, DEFAULT.overhead_scale)),
                                       WINDOW)}
        for row in group.itertuples():
            row_out = {"tp": tp, "prompt_tokens": row.prompt_size, "splitwise_ms": row.splitwise_ms, "runs": row.runs}
            for label, server in servers.items():
                simulated = low_load_ttft_ms(server, int(row.prompt_size))
                row_out |= {f"{label}_ms": simulated, f"{label}_error_pct": 100 * (simulated / row.splitwise_ms - 1)}
            rows.append(row_out)
    errors = pd.DataFrame(rows)
    print(f"{SERVED} (stand-in {stand_in}, whole GPUs) on A100-80GB, low-load TTFT vs Splitwise prompt time;")
    print("gpu: the table's prefill time alone; cpu: with the CPU time per iteration of the shipped curves")
    print(errors.round(1).to_string(index=False))
    for label in servers:
        for what, part in (("all sizes", errors), ("up to 2,048 tokens", errors[errors.prompt_tokens <= 2048])):
            error = part[f"{label}_error_pct"]
            print(f"{label}, {what}: mean |error| {error.abs().mean():.1f} %, max |error| {error.abs().max():.1f} %")


if __name__ == "__main__":
    main()
