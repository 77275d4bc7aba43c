#!/usr/bin/env python3
"""Benchmark: the RouterWise heuristic against the exact references, and its run time.

    python bench/heuristic_vs_reference.py [--seeds 36] [--exact-time-limit 0]

1. On the seeded random instances of tests/random_instances.py: the heuristic's
   quality over enumerate's optimum, per instance, then the mean and worst ratio,
   once with no utilization floor and once with the default floor. Instances
   where enumerate finds no plan are counted apart (the heuristic must find none).
2. On the shipped instances (tiny, paper-4xA100, paper-8xA100 when present): the
   heuristic's quality, mean TTFT, setups kept / evaluated and seconds per stage;
   what its prices do prompt by prompt (realized routing); the latency-oblivious
   routers' true mean TTFT; and, with --exact-time-limit > 0, the exact MIP's
   quality or bound at that limit and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from models.methods.brute_force import solve_enumerate  # noqa: E402
from models.evaluation.evaluate import evaluate_plan  # noqa: E402
from models.methods.exact import solve_exact  # noqa: E402
from models.problem.defaults import DEFAULT_UTILIZATION_FLOOR  # noqa: E402
from models.methods.heuristic import solve_heuristic  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.plan import Infeasible  # noqa: E402
from models.analysis.references import latency_oblivious_table  # noqa: E402
from models.problem.realized import realized_routing  # noqa: E402
from random_instances import write_random_instance  # noqa: E402

SHIPPED = ("tiny", "paper-4xA100", "paper-8xA100")


def plan_or_none(solve, instance):
    try:
        return solve(instance)
    except Infeasible:
        return None


def random_ratios(instances: list, references: list, floor: float) -> None:
    """The heuristic at one utilization floor against enumerate's plans (None where infeasible)."""
    ratios, missed, both_infeasible, seconds = [], [], 0, 0.0
    for seed, (instance, reference) in enumerate(zip(instances, references)):
        clock = time.perf_counter()
        plan = plan_or_none(lambda i: solve_heuristic(i, utilization_floor=floor, progress=False), instance)
        seconds += time.perf_counter() - clock
        if plan is not None and not evaluate_plan(instance, plan.to_dict()).consistent:
            raise SystemExit(f"seed {seed}: the evaluator rejects the heuristic's plan")
        if reference is None:
            both_infeasible += plan is None
        elif plan is None:
            missed.append(seed)
        else:
            ratios.append(plan.quality / reference.quality)
    ratios = np.array(ratios)
    print(f"floor {floor:g}: {len(ratios)} instances with both plans: heuristic / enumerate mean {ratios.mean():.6f}, "
          f"worst {ratios.min():.6f}, equal (within 1e-6) on {int(np.sum(ratios > 1 - 1e-6))}; "
          f"no heuristic plan on {len(missed)} feasible instances {missed}; both infeasible on {both_infeasible}; "
          f"heuristic {seconds:.1f} s in all")


def shipped(name: str, exact_time_limit: float) -> None:
    folder = REPO / "data" / name
    if not (folder / "instance.toml").is_file():
        print(f"{name}: not present")
        return
    instance = load_instance(folder)
    clock = time.perf_counter()
    plan = solve_heuristic(instance, progress=False)
    seconds = time.perf_counter() - clock
    notes = plan.notes
    consistent = evaluate_plan(instance, plan.to_dict()).consistent
    print(f"{name}: heuristic quality {plan.quality:.6f}, mean TTFT {plan.mean_ttft_ms:.2f} ms, {seconds:.2f} s "
          f"(stages {notes['seconds']}); setups considered {notes['setups_considered']}, kept "
          f"{notes['setups_kept']}, within the SLO {notes['setups_within_slo']}; setup {notes['setup']}; "
          f"evaluator {'accepts' if consistent else 'REJECTS'}")
    realized = realized_routing(instance, plan)
    gap = (realized.models.realized_share - realized.models.planned_share).abs().max()
    print(f"{name}: the heuristic's prices prompt by prompt: quality {realized.realized_quality:.6f} (planned "
          f"{plan.quality:.6f}), mean TTFT {realized.realized_mean_ttft_ms:.2f} ms (planned {plan.mean_ttft_ms:.2f}), "
          f"largest share gap {gap:.2e}")
    for row in latency_oblivious_table(instance).itertuples():
        print(f"{name}: {row.method}: quality {row.quality:.6f}, true mean TTFT {row.true_mean_ttft_ms:.2f} ms, "
              f"{row.over_target_ms:+.2f} ms against the {row.target_ms:g} ms target")
    if exact_time_limit > 0:
        clock = time.perf_counter()
        exact = solve_exact(instance, time_limit=exact_time_limit)
        bound = exact.solver.bound if exact.solver.bound is not None else exact.quality
        print(f"{name}: exact {exact.solver.status} quality {exact.quality:.6f}, bound {bound:.6f}, "
              f"{time.perf_counter() - clock:.1f} s; heuristic / exact {plan.quality / exact.quality:.6f}, "
              f"heuristic / bound {plan.quality / bound:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=36)
    parser.add_argument("--exact-time-limit", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        instances = [load_instance(write_random_instance(Path(root) / str(seed), seed)) for seed in range(args.seeds)]
    references = [plan_or_none(solve_enumerate, instance) for instance in instances]
    print(f"{args.seeds} random instances, enumerate finds a plan on {sum(r is not None for r in references)}")
    for floor in (0.0, DEFAULT_UTILIZATION_FLOOR):
        random_ratios(instances, references, floor)
    for name in SHIPPED:
        shipped(name, args.exact_time_limit)


if __name__ == "__main__":
    main()
