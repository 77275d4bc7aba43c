"""Human-readable tables of plans and comparisons."""

from __future__ import annotations

import math

import pandas as pd

from models.evaluation.evaluate import Evaluation
from models.problem.plan import Plan
from models.problem.realized import RealizedRouting


def fmt(value, spec: str, missing: str = "-") -> str:
    """A number for a table: `missing` for none, `overloaded` for infinity, no sign on a printed zero."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float) and math.isinf(value):
        return "overloaded"
    text = format(value, spec)
    return text.lstrip("-") if text.startswith("-") and float(text) == 0 else text


def option_text(row: dict) -> str:
    on = f"{row['gpu_type']} " if row.get("gpu_type") else ""
    return f"{on}tp{row['tp']} mps{row['mps_pct']}%"


def plan_table(plan: Plan) -> pd.DataFrame:
    """One row per model: option, GPUs, share, load, TTFT (and its profiled percentiles, SPEC 4.6), H,
    utilization (load / r_K) and price, as strings; a model with several replicas (SPEC 4.5) shows its sums
    (its first replica's option and GPUs) and then a row per replica, named `  #r`."""
    rows = []
    for row, price in zip(plan.models.itertuples(), plan.prices):
        rows.append({"model": row.name, **table_cells(plan, row._asdict()), "price": fmt(price, ".4f")})
        for r, part in enumerate(getattr(row, "replicas", ()), start=1):
            rows.append({"model": f"  #{r}", **table_cells(plan, {**part, "deployed": True}), "price": ""})
    return pd.DataFrame(rows)


def table_cells(plan: Plan, row: dict) -> dict:
    """The cells of a model's or a replica's row, but its name and price."""
    return {
        "option": option_text(row) if row["deployed"] else "not deployed",
        "GPUs": ",".join(str(g) for g in row["gpus"]) or "-",
        "share": fmt(row["share"], ".4f"),
        "load rps": fmt(row["load_rps"], ".2f"),
        "TTFT ms": fmt(row["ttft_ms"], ".1f"),
        **{column.replace("_ttft_ms", " ms"): fmt(row[column], ".1f") for column in plan.percentile_columns},
        "H ms": fmt(row["contribution_ms"], ".1f"),
        "util": fmt(row["utilization"], ".3f"),
    }


def format_plan(plan: Plan, evaluation: Evaluation) -> str:
    target = plan.slo_ms
    met = "met" if plan.slo_met else "BROKEN"
    lines = [
        f"{plan.instance} · method {plan.method}",
        plan_table(plan).to_string(index=False),
        f"quality {plan.quality:.6f} · mean TTFT {fmt(plan.mean_ttft_ms, '.2f')} ms / target {target:g} ms ({met})"
        f" · status {plan.solver.status} · {plan.solver.seconds:.2f} s",
    ]
    if plan.changes is not None:
        lines += change_lines(plan)
    if plan.cost_per_hour is not None:
        floor = "" if plan.min_quality is None else f" (minimized, s.t. quality >= {plan.min_quality:g})"
        lines.append(f"GPUs in use cost {plan.cost_per_hour:g} per hour{floor}")
    if plan.solver.bound is not None:
        lines.append(f"bound {plan.solver.bound:.6f} · gap {fmt(plan.solver.gap, '.2e')}")
    if "proof" in plan.notes:
        lines.append(f"proof: {plan.notes['proof']}")
    if plan.sensitivity:
        lines.append(f"sensitivity at this setup: +1 ms of target {plan.sensitivity['quality_per_ms_of_target']:+.2e} "
                     f"quality · +1 request/s of load {plan.sensitivity['quality_per_rps_of_load']:+.2e} quality")
    if plan.tail_slo_ms:
        lines.append("tail bounds: " + ", ".join(
            f"{p} TTFT <= {bound:g} ms (highest {plan.models[f'{p}_ttft_ms'].max():.1f} ms)"
            for p, bound in plan.tail_slo_ms.items()))
    lines.append(evaluation_line(evaluation))
    return "\n".join(lines)


def change_lines(plan: Plan) -> list[str]:
    """Re-planning (SPEC 4.7): the objective, then the shards to stop, the shards to start, the GPUs touched."""
    changes = plan.changes
    return [
        f"re-planned: {changes.moves} moves at move cost {changes.move_cost:g} · objective quality - cost x moves "
        f"{plan.objective:.6f} (the bound below is on it)",
        "  stop:  " + ("; ".join(map(str, changes.stop)) or "nothing"),
        "  start: " + ("; ".join(map(str, changes.start)) or "nothing"),
        "  GPUs touched: " + (", ".join(map(str, changes.gpus_touched)) or "none"),
    ]


def evaluation_line(evaluation: Evaluation) -> str:
    quality = fmt(evaluation.quality, ".6f")
    if evaluation.feasible:
        head = f"evaluator: every constraint holds; quality {quality}, mean TTFT {evaluation.mean_ttft_ms:.2f} ms"
    else:
        broken = "; ".join(f"{v.rule} {v.where}: {v.amount:.4g} {v.unit} over" for v in evaluation.violations)
        head = f"evaluator: {len(evaluation.violations)} violation(s): {broken}"
    return head + "".join(f"\nevaluator: {m}" for m in evaluation.mismatches)


def format_realized(realized: RealizedRouting, splits: int) -> str:
    """The realized-routing section of a report: shares per model, then quality and mean TTFT."""
    table = realized.models[realized.models.deployed][["name", "price", "planned_share", "realized_share",
                                                       "realized_load_rps", "realized_ttft_ms"]]
    met = "met" if realized.deployable else "BROKEN"
    rule = "each prompt to argmax_i s[x,i] - price_i" + (f", {splits} listed prompts split" if splits else "")
    return "\n".join([
        f"realized routing ({rule}):",
        table.to_string(index=False, float_format=lambda v: fmt(v, ".4f")),
        f"quality planned {realized.planned_quality:.6f}, realized {realized.realized_quality:.6f}; "
        f"mean TTFT planned {realized.planned_mean_ttft_ms:.2f} ms, realized {realized.realized_mean_ttft_ms:.2f} ms "
        f"/ target {realized.slo_ms:g} ms ({met})"
        + ("" if realized.reproduces_plan else "; the shares differ from the plan's"),
    ])
