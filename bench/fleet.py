#!/usr/bin/env python3
"""data/fleet-32xA100 (issue 15): exact against the heuristic, and re-planning to the drifted copy.

    python bench/fleet.py [--time-limit SECONDS] [--replan-time-limit SECONDS] [--costs C,C,...]

1. exact on data/fleet-32xA100 with the time limit (default 300 s): its status, quality, bound and
   gap, the replicas it runs; the heuristic on the same instance (RouterWise's search deploys each
   model once, so it plans no replicas; its notes say so), its quality and seconds.
2. Re-planning: from exact's plan (the heuristic's if exact found none in time) to
   data/fleet-32xA100-drift (the load x1.3, scores drawn with another seed; the same instance
   name) at each move cost C (default 0.0005 and 0.005), with the
   re-planning time limit (default 150 s); per C the moves, stops, GPUs touched, quality, objective,
   status, gap, seconds and the evaluator's verdict (`bench/replan_frontier.py`'s table).

Measured on the development machine (2 cores shared with other jobs), `solve.py` with the same
settings (data/fleet-32xA100/README.md has the plans):
* exact, --time-limit 300: status time_limit after 302.7 s wall (143 s CPU), quality 0.858206,
  bound 0.899422, gap 4.80e-02; the first MIP round took 229 s. Both wizardlm-13b models run three
  replicas (tp4 at MPS 50-100 %).
* heuristic: 0.876363 in 4.8 s, one replica per model, every model at tp4/mps100 (the only setup
  that uses the whole cluster's compute, the published utilization floor): above exact's incumbent at
  300 s, below its bound, so replicas can add at most 0.899422 - 0.876363 = 0.023 of quality here.
* re-planning to the drift, --time-limit 150: no plan at C = 0.0005 or 0.005 (the MIP found none in
  time), and exact from scratch on the drift none in 300 s. With --time-limit 1200 at C = 0.0005:
  optimal in 796 s, 4 moves (4 GPUs touched), quality 0.862709, objective 0.860709, gap 1e-06.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from replan_frontier import row, timed  # noqa: E402

from models.methods.exact import solve_exact  # noqa: E402
from models.methods.heuristic import solve_heuristic  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.moves import Replanning, running_shards  # noqa: E402
from models.problem.plan import Infeasible, NoPlanInTime  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def method_row(name: str, plan, seconds: float) -> dict:
    """A method's plan on the fleet: status, quality, bound, gap, seconds and its replicas per model."""
    return {"method": name, "status": plan.solver.status, "quality": round(plan.quality, 6),
            "bound": plan.solver.bound, "gap": plan.solver.gap, "seconds": round(seconds, 1),
            "replicas": " ".join(str(len(options)) for options in plan.replicas)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-limit", type=float, default=300.0, metavar="SECONDS")
    parser.add_argument("--replan-time-limit", type=float, default=150.0, metavar="SECONDS")
    parser.add_argument("--costs", default="0.0005,0.005", help="move costs, comma-separated")
    args = parser.parse_args(argv)
    fleet, drift = load_instance(DATA / "fleet-32xA100"), load_instance(DATA / "fleet-32xA100-drift")
    rows = []
    try:
        exact, seconds = timed(solve_exact, fleet, time_limit=args.time_limit)
        rows.append(method_row("exact", exact, seconds))
    except NoPlanInTime as err:
        exact = None
        print(err)
    heuristic, seconds = timed(solve_heuristic, fleet, time_limit=args.time_limit, progress=False)
    rows.append(method_row("heuristic (one replica each)", heuristic, seconds))
    print(f"{fleet.name}: {fleet.arrival_rate_rps:g} requests/s; replicas per model in the instance's order")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False))
    current = exact or heuristic  # re-plan from exact's plan, or the heuristic's when exact found none
    shards = running_shards(fleet.model_names, current.replicas, current.replica_placement)
    replans = []
    for cost in (float(c) for c in args.costs.split(",")):
        replanning = Replanning(shards, cost)
        start = time.perf_counter()
        try:
            plan, seconds = timed(solve_exact, drift, time_limit=args.replan_time_limit, replanning=replanning)
        except (Infeasible, NoPlanInTime) as err:
            print(f"move cost {cost:g}: no plan ({err}) after {time.perf_counter() - start:.1f} s")
            continue
        replans.append(row(drift, f"{cost:g}", plan, replanning, seconds))
    print(f"re-planning to the drift ({drift.arrival_rate_rps:g} requests/s) from {current.method}'s plan, "
          f"{len(shards)} distinct shards")
    if replans:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(pd.DataFrame(replans).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
