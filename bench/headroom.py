#!/usr/bin/env python3
"""Which headroom (SPEC 4.1) keeps the live load under r_K: quality against the bootstrap's p99 load.

    python bench/headroom.py [INSTANCE ...] [--headroom 0,0.05,0.1,0.15,0.2] [--window 1000]

For each instance (default: the three shipped paper instances) and headroom h,
the exact plan is solved with `headroom = h` and its published routing is
bootstrapped (models/analysis/robustness.py: 2,000 windows of `--window`
requests drawn from the instance's prompts, seed 0). Printed per row: the
plan's quality and its loss against h = 0, and over the deployed models the
largest planned load / r_K and the largest 99th-percentile window load / r_K.
A row whose `p99 / r_K` is at most 1 is a plan that about one window in a
hundred or fewer overloads; the smallest such h is the shipped instances'
headroom (their READMEs say why).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.analysis.robustness import robustness  # noqa: E402
from models.methods.exact import solve_exact  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.plan import Infeasible  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
SHIPPED = ("paper-4xA100", "paper-4xA100-binding", "paper-8xA100")


def row(instance, headroom: float, window: int) -> dict:
    """One instance at one headroom: quality, and the largest planned and p99 loads over r_K."""
    try:
        plan = solve_exact(dataclasses.replace(instance, headroom=headroom))
    except Infeasible:
        return {"instance": instance.name, "headroom": headroom, "quality": None}
    loads = robustness(instance, plan, window=window).models
    return {"instance": instance.name, "headroom": headroom, "quality": plan.quality,
            "status": plan.solver.status,
            "planned / r_K": float((loads.planned_load_rps / loads.max_rate_rps).max()),
            "p99 / r_K": float((loads.p99_load_rps / loads.max_rate_rps).max())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("instances", nargs="*", default=[str(DATA / name) for name in SHIPPED], metavar="INSTANCE")
    parser.add_argument("--headroom", default="0,0.05,0.1,0.15,0.2", help="comma-separated fractions")
    parser.add_argument("--window", type=int, default=1000, help="requests per bootstrap window (default 1000)")
    args = parser.parse_args(argv)
    rows = []
    for path in args.instances:
        instance = load_instance(path)
        for headroom in (float(h) for h in args.headroom.split(",")):
            print(f"{instance.name} headroom {headroom:g} ...", file=sys.stderr, flush=True)
            rows.append(row(instance, headroom, args.window))
    table = pd.DataFrame(rows)
    best = table.groupby("instance").quality.transform("first")
    table["loss vs h=0"] = 1 - table.quality / best
    print(table.to_string(index=False, na_rep="infeasible", formatters={
        "headroom": "{:g}".format, "quality": "{:.6f}".format, "planned / r_K": "{:.3f}".format,
        "p99 / r_K": "{:.3f}".format, "loss vs h=0": "{:.2%}".format}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
