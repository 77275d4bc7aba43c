#!/usr/bin/env python3
"""Time to a proven optimum: the cut formulation of `exact` against the per-prompt formulation.

    python bench/exact_speed.py [INSTANCE_DIR ...] [--per-prompt-limit SECONDS] [--threads N]

For each instance (default: data/paper-4xA100 and data/paper-8xA100) both formulations are solved
in this process, one after the other; the table gives seconds, status, quality, and the ratio
per-prompt / cuts. A per-prompt run that hits its time limit shows its gap, and the ratio is then
a lower bound (">"). Targets on a 2-core machine: paper-4xA100 <= 10 s, paper-8xA100 <= 60 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.evaluation.evaluate import evaluate_plan  # noqa: E402
from models.methods.exact import solve_exact  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.plan import NoPlanInTime  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def run(instance, per_prompt: bool, time_limit: float | None, threads: int | None) -> dict:
    start = time.perf_counter()
    try:
        plan = solve_exact(instance, time_limit=time_limit, threads=threads, per_prompt=per_prompt)
    except NoPlanInTime:
        return {"seconds": time.perf_counter() - start, "status": "no plan", "quality": None, "gap": None}
    evaluation = evaluate_plan(instance, plan.to_dict())
    return {
        "seconds": time.perf_counter() - start,
        "status": plan.solver.status,
        "quality": plan.quality,
        "gap": plan.solver.gap,
        "rounds": plan.notes.get("mip_rounds"),
        "evaluator": "ok" if evaluation.consistent else "REJECTED",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instances", nargs="*", type=Path,
                        default=[DATA / "paper-4xA100", DATA / "paper-8xA100"])
    parser.add_argument("--per-prompt-limit", type=float, default=900.0, metavar="SECONDS")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    rows = []
    for folder in args.instances:
        instance = load_instance(folder)
        cuts = run(instance, False, None, args.threads)
        print(f"{instance.name}: cuts {cuts['seconds']:.1f} s ({cuts['status']})", file=sys.stderr)
        per_prompt = run(instance, True, args.per_prompt_limit, args.threads)
        print(f"{instance.name}: per-prompt {per_prompt['seconds']:.1f} s ({per_prompt['status']})", file=sys.stderr)
        proven = per_prompt["status"] == "optimal"
        ratio = per_prompt["seconds"] / cuts["seconds"]
        rows.append({
            "instance": instance.name,
            "prompts": instance.prompt_count,
            "cuts s": round(cuts["seconds"], 1),
            "cuts status": cuts["status"],
            "cut rounds": cuts["rounds"],
            "cuts quality": cuts["quality"],
            "per-prompt s": round(per_prompt["seconds"], 1),
            "per-prompt status": per_prompt["status"],
            "per-prompt gap": per_prompt["gap"],
            "per-prompt / cuts": f"{'' if proven else '>'}{ratio:.1f}x",
            "same optimum": proven and abs(per_prompt["quality"] - cuts["quality"]) <= 1e-6,
            "evaluator": f"{cuts['evaluator']}/{per_prompt.get('evaluator', '-')}",
        })
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
