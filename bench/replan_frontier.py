#!/usr/bin/env python3
"""Re-planning after drift (SPEC 4.7): the frontier of quality against moves for a few move costs.

    python bench/replan_frontier.py [INSTANCE_DIR] [--drifted DIR | --load-factor F] [--costs C,C,...]
                                    [--time-limit SECONDS]

The current plan is exact's optimum on INSTANCE_DIR (default data/paper-8xA100). The drifted instance
is DIR (a copy of the same instance, same name, with other data) or, by default, INSTANCE_DIR with its
arrival rate times F (default 0.85: the load falls). On it, exact plans from scratch (its moves counted
against the current plan afterwards) and then re-plans from the current plan at each move cost C; the
table gives moves, GPUs touched, quality, the objective quality - C moves, status, gap, seconds and
whether the independent evaluator accepts the plan.

Measured (2 shared cores, default arguments plus C = 0.0002, 0.0004): 16 shards run; from scratch and
for C <= 0.0002 the plan moves all 16 (quality 0.830437), for C = 0.0003-0.0005 it moves 8 on 5 GPUs
(0.828231), from C = 0.001 it keeps the current plan (0.822764); every re-plan optimal, 15-42 s each.
On data/paper-4xA100 every model runs at tp4 on all four GPUs, so a drift either keeps every shard
(load x1.15) or changes two models' options, 8 moves, whatever C (x1.2, x1.25, x1.3): no frontier.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.evaluation.evaluate import evaluate_plan  # noqa: E402
from models.methods.exact import solve_exact  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.moves import Replanning, running_shards  # noqa: E402
from models.problem.plan import Infeasible  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def row(instance, label: str, plan, replanning: Replanning, seconds: float) -> dict:
    changes = replanning.changes(instance.model_names, plan.replicas, plan.replica_placement)
    return {
        "move cost": label,
        "moves": changes.moves,
        "stops": len(changes.stop),
        "GPUs touched": len(changes.gpus_touched),
        "quality": round(plan.quality, 6),
        "objective": round(plan.quality - replanning.move_cost * changes.moves, 6),
        "status": plan.solver.status,
        "gap": plan.solver.gap,
        "seconds": round(seconds, 1),
        "evaluator": "ok" if evaluate_plan(instance, plan.to_dict()).consistent else "REJECTED",
    }


def timed(solve, *args, **kwargs):
    start = time.perf_counter()
    plan = solve(*args, **kwargs)
    return plan, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", nargs="?", type=Path, default=DATA / "paper-8xA100")
    parser.add_argument("--drifted", type=Path, help="the drifted instance folder (default: --load-factor)")
    parser.add_argument("--load-factor", type=float, default=0.85)
    parser.add_argument("--costs", default="0,0.0001,0.0003,0.0005,0.001", help="move costs, comma-separated")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help="per solve")
    args = parser.parse_args(argv)
    instance = load_instance(args.instance)
    drifted = (load_instance(args.drifted) if args.drifted else
               dataclasses.replace(instance, arrival_rate_rps=args.load_factor * instance.arrival_rate_rps))
    current, seconds = timed(solve_exact, instance, time_limit=args.time_limit)
    print(f"current plan on {instance.name}: quality {current.quality:.6f}, {seconds:.1f} s", file=sys.stderr)
    shards = running_shards(instance.model_names, current.replicas, current.replica_placement)
    try:
        scratch, seconds = timed(solve_exact, drifted, time_limit=args.time_limit)
    except Infeasible as err:
        print(f"the drifted instance is infeasible: {err}", file=sys.stderr)
        return 3
    rows = [row(drifted, "from scratch", scratch, Replanning(shards, 0.0), seconds)]
    for cost in (float(c) for c in args.costs.split(",")):
        replanning = Replanning(shards, cost)
        plan, seconds = timed(solve_exact, drifted, time_limit=args.time_limit, replanning=replanning)
        rows.append(row(drifted, f"{cost:g}", plan, replanning, seconds))
        print(f"move cost {cost:g}: {rows[-1]['moves']} moves, {seconds:.1f} s", file=sys.stderr)
    print(f"{len(shards)} shards running; drifted: {drifted.arrival_rate_rps:g} requests/s")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
