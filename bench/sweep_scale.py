#!/usr/bin/env python3
"""Benchmark: one 200-scenario sweep on the local engine and on Ray with 2 workers, in one run.

    python bench/sweep_scale.py [INSTANCE_DIR] [--methods exact,equal-split]

The grid: 5 mean-TTFT targets x 10 load scales x 2 headrooms x 2 methods = 200
scenarios of data/paper-4xA100 (by default). It is swept twice, in this process
(`--engine local`) and on a local Ray started with 2 CPUs (`--engine ray`),
and the two tables are checked equal but for their `seconds`. Printed: the wall
time of each (Ray's start-up apart), the speed-up, the mean time per scenario,
and a projection, from that time, of a 10,000-scenario sweep on a 64-core Ray
cluster.

The projection assumes what this machine cannot measure: every core runs one
task at a time at this machine's pace per task, the tasks keep all 64 busy
(10,000 / 64 rounds), and scheduling costs nothing. It is a projection, not a
measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.analysis.sweep import run_sweep  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.tasks import Engine  # noqa: E402

TARGETS_MS = (100.0, 200.0, 300.0, 400.0, 500.0)
LOAD_SCALES = tuple(round(0.6 + 0.1 * k, 9) for k in range(10))  # 0.6 .. 1.5
HEADROOMS = (0.0, 0.1)
RAY_CPUS = 2
PROJECTED_SCENARIOS, PROJECTED_CORES = 10_000, 64


def timed_sweep(instance, methods, engine: Engine):
    start = time.perf_counter()
    table = run_sweep(instance, TARGETS_MS, methods, progress=False, load_scales=LOAD_SCALES, headrooms=HEADROOMS,
                      engine=engine)
    return table, time.perf_counter() - start


def start_ray() -> float:
    """Start a local Ray with RAY_CPUS CPUs (no dashboard); its start-up time (s)."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", nargs="?", type=Path, default=REPO / "data" / "paper-4xA100")
    parser.add_argument("--methods", default="exact,equal-split", help="(default: %(default)s)")
    args = parser.parse_args()
    instance = load_instance(args.instance)
    methods = tuple(args.methods.split(","))
    count = len(TARGETS_MS) * len(LOAD_SCALES) * len(HEADROOMS) * len(methods)
    print(f"{instance.name}: {count} scenarios ({len(TARGETS_MS)} targets x {len(LOAD_SCALES)} load scales x "
          f"{len(HEADROOMS)} headrooms x {len(methods)} methods)", flush=True)
    local, local_s = timed_sweep(instance, methods, Engine("local"))
    print(f"local engine (1 process):      {local_s:8.1f} s", flush=True)
    startup_s = start_ray()
    on_ray, ray_s = timed_sweep(instance, methods, Engine("ray"))
    print(f"ray engine ({RAY_CPUS} workers):         {ray_s:8.1f} s  (+ {startup_s:.1f} s to start Ray)")
    same = on_ray.drop(columns="seconds").equals(local.drop(columns="seconds"))
    print(f"speed-up: {local_s / ray_s:.2f}x ({local_s / (ray_s + startup_s):.2f}x with Ray's start-up); "
          f"tables {'equal' if same else 'DIFFERENT'} but for seconds")
    per_task = local_s / count
    projected = PROJECTED_SCENARIOS * per_task / PROJECTED_CORES
    print(f"mean time per scenario (local): {per_task:.2f} s")
    print(f"PROJECTION, not a measurement: {PROJECTED_SCENARIOS:,} scenarios on a {PROJECTED_CORES}-core Ray cluster "
          f"~ {PROJECTED_SCENARIOS:,} x {per_task:.2f} s / {PROJECTED_CORES} = {projected / 60:.1f} min "
          f"(against {PROJECTED_SCENARIOS * per_task / 3600:.1f} h on the local engine)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
