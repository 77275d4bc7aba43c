"""`--method all`: every method on one instance, each plan checked by the evaluator, in one table.

Columns: method; quality; mean TTFT against the target; whether the SLO is met; status;
setups evaluated; seconds (the wall time of the whole method, loading of the instance
excluded); and quality relative to the exact optimum (or to exact's bound when the optimum is
not proven). Latency-oblivious references appear with their true predicted mean TTFT and
`SLO met: no` when they break it; they are never counted as solutions. A method that fails
(an internal error, or memory) is one row with the reason, never the end of the comparison.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.evaluation.evaluate import evaluate_plan
from models.methods.registry import SolveOptions, run_method
from models.output.report import fmt
from models.problem.files import write_text
from models.problem.instance import Instance
from models.problem.plan import Infeasible, NoPlanInTime, Plan, TooLarge, write_plan
from models.problem.progress import Progress
from models.problem.realized import realized_routing
from models.problem.interrupts import Interrupted


@dataclass(frozen=True, eq=False)
class Outcome:
    """One method's result: a plan (checked by the evaluator), or why there is none."""

    method: str
    seconds: float
    plan: Plan | None = None
    evaluator_agrees: bool | None = None  # a solution passes every check; a broken reference is found broken
    reason: str = ""
    refusal: str | None = None  # why the plan's published routing makes it undeployable (SPEC 4.3)

    @property
    def status(self) -> str:
        if self.plan is None:
            return self.reason.split(":")[0]
        if self.refusal and self.plan.solver.status != "infeasible":
            return "routing breaks"
        return self.plan.solver.status

    @property
    def is_solution(self) -> bool:
        """A plan that meets the target, passes the evaluator and whose published routing realizes it."""
        return (self.plan is not None and self.plan.solver.status != "infeasible" and bool(self.evaluator_agrees)
                and self.refusal is None)


def run(instance: Instance, name: str, options: SolveOptions) -> Outcome:
    start = time.perf_counter()
    try:
        plan = run_method(name, instance, options)
    except (KeyboardInterrupt, Interrupted):
        raise
    except Infeasible as err:
        return Outcome(name, time.perf_counter() - start, reason=f"infeasible: {err}")
    except NoPlanInTime as err:
        return Outcome(name, time.perf_counter() - start, reason=f"no plan in time: {err}")
    except TooLarge as err:
        return Outcome(name, time.perf_counter() - start, reason=f"refused: {err}")
    except Exception as err:  # a bug or a resource: reported loudly, as this method's outcome only
        print(f"internal error in {name}: {type(err).__name__}: {err}", file=sys.stderr)
        return Outcome(name, time.perf_counter() - start, reason=f"error: {type(err).__name__}: {err}")
    evaluation = evaluate_plan(instance, plan.to_dict())
    agrees = evaluation.consistent if plan.solver.status != "infeasible" else not evaluation.feasible
    return Outcome(name, plan.solver.seconds, plan, agrees, refusal=realized_routing(instance, plan).refusal())


def compare(instance: Instance, names, options: SolveOptions,
            out_dir: Path | None = None) -> tuple[pd.DataFrame, list[Outcome]]:
    """Run every named method; the comparison table and each method's outcome. Progress on stderr
    (options.progress); with `out_dir`, each plan that is returned is written there."""
    outcomes = []
    with Progress(len(names), "all", unit="method", enabled=options.progress) as progress:
        for name in names:
            outcome = run(instance, name, options)
            outcomes.append(outcome)
            progress.update(note=f"{name}: {outcome.status}, {outcome.seconds:.1f} s")
            if out_dir is not None and outcome.plan is not None and outcome.status != "routing breaks":
                out_dir.mkdir(parents=True, exist_ok=True)
                write_plan(outcome.plan, out_dir / f"{name}.json")
    return comparison_table(instance, outcomes), outcomes


def reference_quality(outcomes: list[Outcome]) -> tuple[float | None, str]:
    """Exact's optimum, or its bound when the optimum is not proven."""
    exact = next((o for o in outcomes if o.method == "exact" and o.plan is not None), None)
    if exact is None:
        return None, ""
    if exact.plan.solver.status == "optimal":
        return exact.plan.quality, "exact optimum"
    return exact.plan.solver.bound, "exact bound"


def comparison_table(instance: Instance, outcomes: list[Outcome]) -> pd.DataFrame:
    reference, against = reference_quality(outcomes)
    rows = []
    for o in outcomes:
        plan = o.plan
        row = {"method": o.method, "quality": "-", "mean TTFT ms": "-", "SLO met": "-", "status": o.status,
               "setups evaluated": "-", "seconds": fmt(o.seconds, ".2f"), f"quality / {against or 'exact'}": "-"}
        if plan is not None:
            row |= {
                "quality": fmt(plan.quality, ".6f"),
                "mean TTFT ms": fmt(plan.mean_ttft_ms, ".2f"),
                "SLO met": "yes" if plan.slo_met else "NO (broken)",
                "setups evaluated": str(plan.notes.get("setups_evaluated", "-")),
                f"quality / {against or 'exact'}": "-" if reference is None else fmt(plan.quality / reference, ".4f"),
            }
            if o.evaluator_agrees is False:
                row["status"] = "REJECTED by the evaluator"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["target_ms"] = instance.slo_mean_ttft_ms
    return table


def format_comparison(instance: Instance, table: pd.DataFrame, outcomes: list[Outcome]) -> str:
    lines = [f"{instance.name}: {instance.prompt_count} prompts, {instance.arrival_rate_rps:g} requests/s, "
             f"mean TTFT target {instance.slo_mean_ttft_ms:g} ms",
             table.to_string(index=False, na_rep="-")]
    lines += [f"  {o.method}: {o.reason}" for o in outcomes if o.plan is None]
    lines += [f"  {o.method}: not returned: {o.refusal}" for o in outcomes
              if o.refusal and o.plan.solver.status != "infeasible"]
    return "\n".join(lines)


def write_table(table: pd.DataFrame, path: Path) -> Path:
    """The comparison table as CSV or JSON (records), by the file's suffix."""
    text = table.to_json(orient="records", indent=2) + "\n" if path.suffix == ".json" else table.to_csv(index=False)
    return write_text(path, text)
