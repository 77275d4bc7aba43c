"""The quality-vs-target frontier: solve one instance at a range of mean-TTFT targets with several methods.

At each target tau the instance is solved as given except for `slo_mean_ttft_ms = tau`.
The result is a tidy table, one row per (target, method):

    instance            the instance's name
    target_ms           the mean-TTFT target tau of this row (ms)
    method              `exact`, `heuristic` or a baseline of `models/methods/baselines.py`
    status              the plan's solver status (SPEC section 3); with no plan: `infeasible`, `time_limit`,
                        `rejected` (by the independent evaluator) or `error` (a solver's internal error)
    quality             the plan's mean predicted quality Q; empty when there is no plan
    mean_ttft_ms        the plan's predicted mean TTFT (ms); empty when there is no plan
    seconds             wall-clock time of the solve (s)
    setup               each model's option (`-` when not deployed); empty when there is no plan
    reason              why there is no plan, when there is none
    quality_best_model  Q with every prompt sent to its best model, latency ignored: no plan at any target beats it

`write_sweep` writes the table as CSV and the frontier as PNG (`models/output/plots.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from models.analysis.compare import Outcome, run
from models.methods.registry import SOLVING_METHODS, SolveOptions
from models.output.plots import plot_frontier, save
from models.output.report import fmt
from models.problem.files import slug, write_text
from models.problem.instance import Instance
from models.problem.progress import Progress
from models.problem.setup import describe_setup

COLUMNS = ("instance", "target_ms", "method", "status", "quality", "mean_ttft_ms", "seconds", "setup", "reason",
           "quality_best_model")


def run_sweep(instance: Instance, targets_ms: Sequence[float], methods: Sequence[str] = SOLVING_METHODS,
              time_limit: float | None = None, progress: bool = True) -> pd.DataFrame:
    """Solve the instance at every target with every method; the table of the module docstring.

    Every plan goes through the independent evaluator at its target (`models.compare.run`); a
    method with no plan at a target gives a row with empty quality and the reason. Progress goes
    to stderr.
    """
    unknown = [name for name in methods if name not in SOLVING_METHODS]
    if unknown:
        raise ValueError(f"sweep methods: unknown {', '.join(unknown)} (known: {', '.join(SOLVING_METHODS)})")
    best_model = float(instance.scores.max(axis=1).mean())
    options = SolveOptions(time_limit=time_limit)
    rows = []
    runs = [(target, name) for target in targets_ms for name in methods]
    with Progress(len(runs), f"sweep {instance.name}", unit="solve", enabled=progress) as bar:
        for target, name in runs:
            at_target = dataclasses.replace(instance, slo_mean_ttft_ms=float(target))
            row = sweep_row(at_target, run(at_target, name, options))
            rows.append({"instance": instance.name, "target_ms": float(target), "method": name, **row,
                         "quality_best_model": best_model})
            bar.update(note=f"{target:g} ms {name}: {row['status']}")
    return pd.DataFrame(rows, columns=list(COLUMNS))


NO_PLAN_STATUS = {"infeasible": "infeasible", "no plan in time": "time_limit", "error": "error"}


def sweep_row(instance: Instance, outcome: Outcome) -> dict:
    """One row's status, quality, mean TTFT, seconds, setup and reason."""
    if outcome.plan is None:
        return no_plan(NO_PLAN_STATUS[outcome.status], outcome.reason.split(": ", 1)[1], outcome.seconds)
    if not outcome.evaluator_agrees:
        return no_plan("rejected", "the independent evaluator rejects the plan", outcome.seconds)
    if outcome.refusal:
        return no_plan("routing breaks", outcome.refusal, outcome.seconds)
    plan = outcome.plan
    return {"status": plan.solver.status, "quality": plan.quality, "mean_ttft_ms": plan.mean_ttft_ms,
            "seconds": outcome.seconds, "setup": describe_setup(instance, plan.setup), "reason": ""}


def no_plan(status: str, reason: str, seconds: float) -> dict:
    return {"status": status, "quality": np.nan, "mean_ttft_ms": np.nan, "seconds": seconds, "setup": "",
            "reason": reason}


def frontier(table: pd.DataFrame) -> pd.DataFrame:
    """Quality by target (rows) and method (columns, in the sweep's order); NaN where there is no plan."""
    methods = list(dict.fromkeys(table.method))
    return table.pivot(index="target_ms", columns="method", values="quality")[methods]


def format_frontier(table: pd.DataFrame) -> str:
    """The frontier for people: '-' where a method has no plan."""
    return frontier(table).map(lambda quality: fmt(quality, ".6f")).to_string()


def write_sweep(table: pd.DataFrame, folder: str | Path) -> list[Path]:
    """`<instance>-sweep.csv` and `<instance>-frontier.png` in `folder` (created if needed; the instance's
    name made safe for a file name)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = slug(table.instance.iloc[0])
    csv_path = write_text(folder / f"{name}-sweep.csv", table.to_csv(index=False))
    png_path = save(plot_frontier(table, frontier(table)), folder / f"{name}-frontier.png")
    return [csv_path, png_path]
