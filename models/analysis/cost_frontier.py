"""The cost frontier (SPEC 4.4): the cheapest GPUs that reach each quality, by `exact` under the cost objective.

At each quality q the instance is solved as given except for its objective: minimize the hourly cost of the
GPUs that hold a shard subject to Q >= q. The result is a tidy table, one row per q:

    instance        the instance's name
    min_quality     q
    status          the plan's solver status (SPEC section 3); with no plan: `infeasible`, `time_limit`,
                    `rejected` (by the independent evaluator) or `error`
    cost_per_hour   the plan's hourly cost of the GPUs in use; empty when there is no plan
    quality         the plan's quality Q (at least q); empty when there is no plan
    gpus_<type>     GPUs of each type in use, one column per GPU type (the plan's GPU mix)
    seconds         wall-clock time of the solve (s)
    setup           each model's option (`-` when not deployed); empty when there is no plan
    reason          why there is no plan, when there is none (for infeasibility, the best quality reachable)

`write_cost_frontier` writes the table as CSV and the frontier as PNG (`models/output/plots.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from models.analysis.compare import Outcome, run
from models.analysis.sweep import NO_PLAN_STATUS
from models.methods.registry import SolveOptions
from models.output.plots import plot_cost_frontier, save
from models.problem.files import slug, write_text
from models.problem.instance import Instance, Objective, with_objective
from models.problem.plan import Plan
from models.problem.progress import Progress
from models.problem.setup import describe_setup


def cost_frontier(instance: Instance, qualities: Sequence[float], time_limit: float | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Solve the cost objective at every quality with `exact`; the table of the module docstring. Every plan
    goes through the independent evaluator (`models.analysis.compare.run`). Progress goes to stderr."""
    options = SolveOptions(time_limit=time_limit)
    rows = []
    with Progress(len(qualities), f"cost frontier {instance.name}", unit="solve", enabled=progress) as bar:
        for quality in qualities:
            at_quality = with_objective(instance, Objective("cost", float(quality)))
            row = frontier_row(at_quality, run(at_quality, "exact", options))
            rows.append({"instance": instance.name, "min_quality": float(quality), **row})
            bar.update(note=f"quality {quality:g}: {row['status']}")
    mix = [f"gpus_{t.name}" for t in instance.types]
    columns = ["instance", "min_quality", "status", "cost_per_hour", "quality", *mix, "seconds", "setup", "reason"]
    return pd.DataFrame(rows, columns=columns).astype({column: "Int64" for column in mix})


def gpu_mix(instance: Instance, plan: Plan) -> dict[str, int]:
    """GPUs of each type that hold at least one shard, as `gpus_<type>` columns."""
    used = {int(g) for gpus in plan.models.gpus for g in gpus}
    return {f"gpus_{t.name}": sum(g in used for g in t.gpus) for t in instance.types}


def frontier_row(instance: Instance, outcome: Outcome) -> dict:
    """One row's status, cost, quality, GPU mix, seconds, setup and reason."""
    if outcome.plan is None or not outcome.evaluator_agrees:
        status = NO_PLAN_STATUS[outcome.status] if outcome.plan is None else "rejected"
        reason = outcome.reason.split(": ", 1)[1] if outcome.plan is None else \
            "the independent evaluator rejects the plan"
        empty = {f"gpus_{t.name}": np.nan for t in instance.types}
        return {"status": status, "cost_per_hour": np.nan, "quality": np.nan, **empty, "seconds": outcome.seconds,
                "setup": "", "reason": reason}
    plan = outcome.plan
    return {"status": plan.solver.status, "cost_per_hour": plan.cost_per_hour, "quality": plan.quality,
            **gpu_mix(instance, plan), "seconds": outcome.seconds, "setup": describe_setup(instance, plan.setup),
            "reason": ""}


def format_cost_frontier(table: pd.DataFrame) -> str:
    """The frontier for people: quality floor, status, cost, quality reached and GPU mix."""
    shown = table.drop(columns=["instance", "setup", "reason", "seconds"])
    return shown.to_string(index=False, na_rep="-")


def write_cost_frontier(table: pd.DataFrame, folder: str | Path) -> list[Path]:
    """`<instance>-cost-frontier.csv` and `.png` in `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = slug(table.instance.iloc[0])
    csv_path = write_text(folder / f"{name}-cost-frontier.csv", table.to_csv(index=False))
    png_path = save(plot_cost_frontier(table), folder / f"{name}-cost-frontier.png")
    return [csv_path, png_path]
