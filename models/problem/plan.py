"""Plans (SPEC section 3): the frozen result every method returns, and its JSON form."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from models.problem.files import write_text
from models.problem.instance import Instance, Model, Option
from models.problem.latency import latency_ms, option_pieces, percentile_ttft_ms
from models.problem.moves import Changes, Replanning
from models.problem.published import PublishedRouting, Split, publish_routing
from models.problem.setup import (Placement, ReplicaPlacement, Replicas, Setup, as_replica_placement,
                                  as_replicas, placement_cost)
from models.problem.tolerances import SLO_TOL

STATUSES = ("optimal", "time_limit", "heuristic", "infeasible")


class Infeasible(Exception):
    """No plan meets every constraint; the message says why when it is known."""


def slo_out_of_reach(lowest_ms: float, target_ms: float) -> str:
    """The infeasibility reason when no setup gets the mean TTFT down to the target."""
    return f"the lowest mean TTFT any setup reaches is {lowest_ms:.2f} ms, above the target {target_ms:g} ms"


class TooLarge(ValueError):
    """A method refuses an instance beyond what it can do in reasonable time; the message says how large."""


class NoPlanInTime(Exception):
    """The time limit passed before any plan was found."""


@dataclass(frozen=True)
class SolverReport:
    """How a plan was obtained: `bound` and `gap` are given whenever a method has them."""

    status: str
    seconds: float
    gap: float | None = None
    bound: float | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown solver status {self.status!r}")


@dataclass(frozen=True, eq=False)
class Plan:
    """A setup, per-model shares and routing prices, with the numbers that describe them.

    `models` is a tidy table, one row per model of the instance, with columns
    name, deployed, tp, mps_pct, gpus, share, load_rps, ttft_ms, contribution_ms and utilization
    (load / r_K), p95_ttft_ms, p99_ttft_ms for the percentiles the profiles have (SPEC 4.6), and
    gpu_type when the instance lists GPU types (SPEC 4.4). `routing` is the published rule (SPEC 4.3):
    a price per model, the split prompts and the smallest margin.
    `cost_per_hour` is the hourly cost of the GPUs holding a shard when every GPU type has a cost;
    `min_quality` is set when the plan minimizes that cost subject to Q >= min_quality (SPEC 4.4).
    """

    instance: str
    method: str
    quality: float
    mean_ttft_ms: float
    slo_ms: float
    models: pd.DataFrame
    solver: SolverReport
    routing: PublishedRouting
    notes: Mapping[str, object] = field(default_factory=dict)
    sensitivity: Mapping[str, float] | None = None  # marginal quality per ms of target, per request/s of load
    tail_slo_ms: Mapping[str, float] = field(default_factory=dict)  # SPEC 4.6: percentile -> bound, ms
    changes: Changes | None = None  # SPEC 4.7: from the current plan, when re-planning
    cost_per_hour: float | None = None
    min_quality: float | None = None

    @property
    def slo_met(self) -> bool:
        """The mean TTFT is within the target (to SLO_TOL, models/problem/tolerances.py)."""
        return self.mean_ttft_ms <= self.slo_ms * (1 + SLO_TOL)

    @property
    def setup(self) -> Setup:
        return tuple(
            Option(int(row.tp), int(row.mps_pct), getattr(row, "gpu_type", "")) if row.deployed else None
            for row in self.models.itertuples()
        )

    @property
    def placement(self) -> Placement:
        return tuple(tuple(int(g) for g in gpus) for gpus in self.models.gpus)

    @property
    def objective(self) -> float:
        """What the method maximized: Q, or Q - C moves when re-planning (SPEC 4.7)."""
        return self.quality - (self.changes.move_cost * self.changes.moves if self.changes else 0.0)

    @property
    def prices(self) -> np.ndarray:
        """The routing price of each model (NaN when not deployed)."""
        return self.routing.prices

    @property
    def shares(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.models.share)

    def to_dict(self) -> dict:
        models = []
        for row, price in zip(self.models.itertuples(), self.prices):
            typed = {"gpu_type": row.gpu_type if row.deployed else None} if hasattr(row, "gpu_type") else {}
            models.append(
                {
                    "name": row.name,
                    "deployed": bool(row.deployed),
                    "tp": int(row.tp) if row.deployed else None,
                    "mps_pct": int(row.mps_pct) if row.deployed else None,
                    **typed,
                    "gpus": [int(g) for g in row.gpus],
                    "share": float(row.share),
                    "load_rps": float(row.load_rps),
                    "ttft_ms": finite_or_none(row.ttft_ms) if row.deployed else None,
                    "utilization": float(row.utilization) if row.deployed else None,
                    "price": None if np.isnan(price) else float(price) + 0.0,  # + 0.0: no -0.0
                    **{column: float(getattr(row, column)) if row.deployed else None
                       for column in self.percentile_columns},
                    **self.replicas_dict(row),
                }
            )
        cost = {} if self.cost_per_hour is None else {"cost_per_hour": float(self.cost_per_hour)}
        objective = {} if self.min_quality is None else {"objective": {"kind": "cost",
                                                                       "min_quality": float(self.min_quality)}}
        return {
            "instance": self.instance,
            "method": self.method,
            **objective,
            "quality": float(self.quality),
            **cost,
            "mean_ttft_ms": finite_or_none(self.mean_ttft_ms),
            "slo_mean_ttft_ms": float(self.slo_ms),
            "slo_met": self.slo_met,
            **{f"slo_{p}_ttft_ms": float(bound) for p, bound in self.tail_slo_ms.items()},
            "models": models,
            "routing": self.routing_dict(),
            "solver": {
                "status": self.solver.status,
                "seconds": float(self.solver.seconds),
                "gap": self.solver.gap,
                "bound": self.solver.bound,
            },
            "sensitivity": dict(self.sensitivity) if self.sensitivity else None,
            "notes": dict(self.notes),
            **self.changes_dict(),
        }

    def changes_dict(self) -> dict:
        """SPEC 4.7, when re-planning: moves, the move cost, the objective Q - C moves (which the solver's
        bound and gap are about) and the changes."""
        if self.changes is None:
            return {}
        return {"moves": self.changes.moves, "move_cost": self.changes.move_cost, "objective_value": self.objective,
                "changes": self.changes.to_dict()}

    def replicas_dict(self, row) -> dict:
        """SPEC 4.5: `replicas` for a model with more than one, each with tp, mps_pct, gpus, share, load_rps,
        ttft_ms and the profiled percentiles at its load."""
        replicas = getattr(row, "replicas", ())
        if len(replicas) < 2:
            return {}
        keys = ("tp", "mps_pct", "gpus", "share", "load_rps", "ttft_ms") + self.percentile_columns
        return {"replicas": [{key: list(part[key]) if key == "gpus" else part[key] for key in keys}
                             for part in replicas]}

    @property
    def replicas(self) -> Replicas:
        """Every model's replicas' options (SPEC 4.5; one replica for a model with no `replicas`)."""
        return tuple(tuple(Option(part["tp"], part["mps_pct"]) for part in row.get("replicas", ()))
                     or ((option,) if option is not None else ())
                     for row, option in zip(self.models.to_dict("records"), self.setup))

    @property
    def replica_placement(self) -> ReplicaPlacement:
        """Every model's replicas' GPUs, in the order of `replicas`."""
        return tuple(tuple(part["gpus"] for part in row.get("replicas", ())) or ((gpus,) if gpus else ())
                     for row, gpus in zip(self.models.to_dict("records"), self.placement))

    @property
    def replica_shares(self) -> tuple[tuple[float, ...], ...]:
        """Every model's replicas' shares, in the order of `replicas`."""
        return tuple(tuple(part["share"] for part in row.get("replicas", ())) or ((share,) if option else ())
                     for row, share, option in zip(self.models.to_dict("records"), self.shares, self.setup))

    @property
    def percentile_columns(self) -> tuple[str, ...]:
        """The TTFT percentile columns of `models` (SPEC 4.6): p95_ttft_ms, p99_ttft_ms, as profiled."""
        return tuple(column for column in ("p95_ttft_ms", "p99_ttft_ms") if column in self.models.columns)

    def routing_dict(self) -> dict:
        """SPEC 4.3: the price rule, the split prompts with their fractions by model, the smallest margin."""
        names = list(self.models.name)
        return {
            "rule": "price",
            "splits": [{"prompt_id": s.prompt_id,
                        "fractions": {names[k]: float(f) for k, f in enumerate(s.fractions) if f > 0}}
                       for s in self.routing.splits],
            "min_margin": self.routing.min_margin,
        }


def finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an overloaded model's TTFT (and so the mean) is written as null."""
    return float(value) if math.isfinite(value) else None


def build_plan(
    instance: Instance,
    method: str,
    setup: Setup | Replicas,
    placement: Placement | ReplicaPlacement,
    shares: Sequence[float],
    quality: float,
    solver: SolverReport,
    notes: Mapping[str, object] | None = None,
    sensitivity: Mapping[str, float] | None = None,
    routing: PublishedRouting | None = None,
    replanning: Replanning | None = None,
    replica_shares: Sequence[Sequence[float]] = (),
    prices_hint: Sequence[float] | None = None,
) -> Plan:
    """Assemble a plan, computing each model's load, latency and TTFT contribution from the curves, and
    its published routing (`models/problem/published.py`) unless one is given; with `replanning`, the
    changes from the current plan (SPEC 4.7). A setup in the replica form (SPEC 4.5) needs `replica_shares`,
    per model its replicas' shares, for the models with more than one. `prices_hint` (over all models), the
    method's own prices at these shares, only speeds up publishing."""
    replicas, held = as_replicas(setup), as_replica_placement(placement)
    if routing is None:
        deployed = [k for k, options in enumerate(replicas) if options]
        routing = publish_routing(instance.scores, instance.prompt_ids, deployed, shares, prices_hint)
    parts = [[replica_row(instance, model, *part)
              for part in zip(options, gpus, replica_shares[k] if len(options) > 1 else (float(share),))]
             for k, (model, options, gpus, share) in enumerate(zip(instance.models, replicas, held, shares))]
    table = pd.DataFrame([model_row(instance, model, found, share)
                          for model, found, share in zip(instance.models, parts, shares)])
    if any(len(found) > 1 for found in parts):
        table["replicas"] = [tuple(found) if len(found) > 1 else () for found in parts]
    return Plan(
        instance=instance.name,
        method=method,
        quality=float(quality),
        mean_ttft_ms=float(table.contribution_ms.sum()),
        slo_ms=instance.slo_mean_ttft_ms,
        models=table,
        solver=solver,
        routing=routing,
        notes=dict(notes or {}),
        sensitivity=sensitivity,
        tail_slo_ms=dict(instance.tail_slo_ms),
        changes=replanning.changes(instance.model_names, replicas, held) if replanning else None,
        cost_per_hour=placement_cost(instance, placement) if has_costs(instance) else None,
        min_quality=instance.objective.min_quality if instance.objective.kind == "cost" else None,
    )


def has_costs(instance: Instance) -> bool:
    """Whether the instance lists GPU types, each with a cost per hour (SPEC 4.4)."""
    return instance.typed and all(t.cost_per_hour is not None for t in instance.gpu_types)


def replica_row(instance: Instance, model: Model, option: Option, gpus: Sequence[int], share: float) -> dict:
    """One replica at its option, GPUs and share: load lam v, latency L(lam v), contribution H(v), utilization
    lam v / r_K and the profiled percentiles at its load."""
    lam = instance.arrival_rate_rps
    curve = instance.curve(model, option)
    return {
        "tp": option.tp,
        "mps_pct": option.mps_pct,
        "gpus": tuple(gpus),
        "share": float(share),
        "load_rps": lam * float(share),
        "ttft_ms": latency_ms(curve, lam * share),
        "contribution_ms": option_pieces(instance, model, option).contribution(share),
        "utilization": lam * float(share) / curve.max_rate_rps,
        **{f"{p}_ttft_ms": percentile_ttft_ms(curve, p, lam * share) for p in instance.profiled_percentiles},
        **({"gpu_type": option.gpu_type} if instance.typed else {}),
    }


def model_row(instance: Instance, model: Model, parts: list[dict], share: float) -> dict:
    """A model's row from its replicas' rows (`replica_row`): its one replica's numbers; with several (SPEC 4.5)
    the first replica's option and GPUs, the sums of the shares, loads and contributions, the share-weighted
    mean TTFT, and the largest utilization and percentiles (the replicas' own are in `replicas`); NaN and no
    GPUs when not deployed (with the `share` given, which the evaluator checks is 0)."""
    if not parts:
        return {"name": model.name, "deployed": False, "tp": None, "mps_pct": None, "gpus": (),
                "share": float(share), "load_rps": instance.arrival_rate_rps * float(share),
                "ttft_ms": float("nan"), "contribution_ms": 0.0, "utilization": float("nan"),
                **{f"{p}_ttft_ms": float("nan") for p in instance.profiled_percentiles},
                **({"gpu_type": None} if instance.typed else {})}
    row = {"name": model.name, "deployed": True, **parts[0]}
    if len(parts) > 1:
        share = sum(part["share"] for part in parts)
        weighted = sum(part["share"] * part["ttft_ms"] for part in parts) / share if share > 0 else parts[0]["ttft_ms"]
        row.update(share=share, load_rps=sum(part["load_rps"] for part in parts), ttft_ms=weighted,
                   contribution_ms=sum(part["contribution_ms"] for part in parts),
                   utilization=max(part["utilization"] for part in parts),
                   **{f"{p}_ttft_ms": max(part[f"{p}_ttft_ms"] for part in parts)
                      for p in instance.profiled_percentiles})
    return row


def write_plan(plan: Plan, path: str | Path) -> Path:
    """The plan as JSON (SPEC section 3): no -0.0, and NaN or infinity as null (JSON has neither)."""
    return write_text(path, json.dumps(plain_json(plan.to_dict()), indent=2) + "\n")


def plain_json(value):
    """`value` with every float made JSON-plain: -0.0 as 0.0, NaN and infinities as None."""
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return float(value) + 0.0 if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------- reading a plan file


class PlanError(ValueError):
    """A plan file that cannot be read for the instance given. Its message is one line: file, field, problem."""


def read_plan(path: str | Path, instance: Instance) -> Plan:
    """The plan a file holds (SPEC 3 and 4.3), rebuilt on `instance`: its setup, GPUs, shares, prices and
    split prompts are read; loads, latencies and the mean TTFT are recomputed from the instance's curves.
    A plan without `routing` publishes its prices alone (no split prompts)."""
    path = Path(path)
    data = plan_json(path)
    if data.get("instance") != instance.name:
        raise PlanError(f"{path}: field 'instance': the plan is for {data.get('instance')!r}, "
                        f"not for instance '{instance.name}'")
    entries = model_entries(data, instance, path)
    setup = tuple(plan_option(entry, instance, path) for entry in entries)
    prices = [plan_number(entry, "price", path, f"{entry['where']}.price") if option else None
              for entry, option in zip(entries, setup)]
    routing = plan_routing(data.get("routing"), prices, instance, path)
    solver = data.get("solver")
    if not isinstance(solver, dict):
        raise PlanError(f"{path}: field 'solver': missing or not an object")
    try:
        report = SolverReport(solver.get("status"), plan_number(solver, "seconds", path, "solver.seconds"),
                              solver.get("gap"), solver.get("bound"))
    except ValueError as err:
        raise PlanError(f"{path}: field 'solver.status': {err}") from None
    replicas = [plan_replicas(entry, instance, path) if option else () for entry, option in zip(entries, setup)]
    return build_plan(instance, str(data.get("method", "")), tuple(tuple(o for o, _, _ in r) for r in replicas),
                      tuple(tuple(gpus for _, gpus, _ in r) for r in replicas),
                      [plan_number(entry, "share", path, f"{entry['where']}.share") for entry in entries],
                      plan_number(data, "quality", path, "quality"), report,
                      notes=data.get("notes") if isinstance(data.get("notes"), dict) else None, routing=routing,
                      replica_shares=tuple(tuple(share for _, _, share in r) for r in replicas))


def plan_replicas(entry: dict, instance: Instance, path: Path) -> tuple[tuple[Option, tuple[int, ...], float], ...]:
    """A deployed entry's replicas (SPEC 4.5) as (option, GPUs, share): its `replicas` list, each checked as an
    entry is, at most `max_replicas` of them; without one, the entry itself."""
    where = entry["where"]
    listed = entry.get("replicas")
    if listed is None:
        return ((plan_option(entry, instance, path), tuple(entry["gpus"]),
                 plan_number(entry, "share", path, f"{where}.share")),)
    most = next(model.max_replicas for model in instance.models if model.name == entry["name"])
    if not isinstance(listed, list) or not 1 <= len(listed) <= most or not all(isinstance(r, dict) for r in listed):
        raise PlanError(f"{path}: field '{where}.replicas': not a list of 1 to {most} replicas (max_replicas of "
                        f"'{entry['name']}')")
    parts = [{**part, "name": entry["name"], "deployed": True, "where": f"{where}.replicas[{r}]"}
             for r, part in enumerate(listed)]
    return tuple((plan_option(part, instance, path), tuple(part["gpus"]),
                  plan_number(part, "share", path, f"{part['where']}.share")) for part in parts)


def plan_json(path: Path) -> dict:
    if not path.is_file():
        raise PlanError(f"{path}: file is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PlanError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: not a plan (a JSON object)")
    return data


def plan_number(table: dict, key: str, path: Path, where: str) -> float:
    """`table[key]` as a float; `where` names the field in the file."""
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PlanError(f"{path}: field '{where}': missing or not a finite number")
    return float(value)


def model_entries(data: dict, instance: Instance, path: Path) -> list[dict]:
    """The plan's model entries in the instance's order, each with `where` (its place in the file) added."""
    entries = data.get("models")
    if not isinstance(entries, list):
        raise PlanError(f"{path}: field 'models': missing or not a list")
    by_name = {}
    for k, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in instance.model_names or name in by_name:
            raise PlanError(f"{path}: field 'models[{k}].name': {name!r} is not a model of instance "
                            f"'{instance.name}' or is listed twice")
        by_name[name] = {**entry, "where": f"models[{k}]"}
    for name in instance.model_names:
        if name not in by_name:
            raise PlanError(f"{path}: field 'models': no entry for model '{name}'")
    return [by_name[name] for name in instance.model_names]


def plan_option(entry: dict, instance: Instance, path: Path) -> Option | None:
    """A deployed entry's option, with a latency curve in the instance and tp GPUs of the cluster; None if not
    deployed."""
    where = entry["where"]
    if not isinstance(entry.get("deployed"), bool):
        raise PlanError(f"{path}: field '{where}.deployed': missing or not true or false")
    if not entry["deployed"]:
        return None
    tp, mps, gpus = entry.get("tp"), entry.get("mps_pct"), entry.get("gpus")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (tp, mps)):
        raise PlanError(f"{path}: field '{where}': tp and mps_pct must be integers for a deployed model")
    gpu_type = entry.get("gpu_type", "") if instance.typed else ""
    if instance.typed and gpu_type not in [t.name for t in instance.gpu_types]:
        raise PlanError(f"{path}: field '{where}.gpu_type': {gpu_type!r} is not a GPU type of the instance")
    option = Option(tp, mps, gpu_type)
    if (entry["name"], option) not in instance.curves:
        raise PlanError(f"{path}: field '{where}': {option} has no latency curve for '{entry['name']}' in the instance")
    allowed = instance.gpu_type_named(gpu_type).gpus
    if (not isinstance(gpus, list) or len(gpus) != tp
            or not all(isinstance(g, int) and not isinstance(g, bool) and g in allowed for g in gpus)):
        raise PlanError(f"{path}: field '{where}.gpus': {gpus!r} is not {tp} GPU indices in "
                        f"{allowed.start}..{allowed.stop - 1}")
    return option


def plan_routing(routing, prices: list, instance: Instance, path: Path) -> PublishedRouting:
    """SPEC 4.3 `routing` as a `PublishedRouting` over the instance's models and prompts."""
    if routing is None:
        return PublishedRouting.of_prices(prices, instance.scores)
    if (not isinstance(routing, dict) or routing.get("rule") != "price"
            or not isinstance(routing.get("splits", []), list)):
        raise PlanError(f"{path}: field 'routing': not a price rule with a list of splits (SPEC 4.3)")
    margin = routing.get("min_margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))):
        raise PlanError(f"{path}: field 'routing.min_margin': {margin!r} is not a number or null")
    prompts = {prompt_id: x for x, prompt_id in enumerate(instance.prompt_ids)}
    models = {name: i for i, name in enumerate(instance.model_names)}
    splits = []
    for k, split in enumerate(routing.get("splits", [])):
        where = f"routing.splits[{k}]"
        prompt = prompts.get(split.get("prompt_id")) if isinstance(split, dict) else None
        fractions = split.get("fractions") if isinstance(split, dict) else None
        if prompt is None or not isinstance(fractions, dict):
            raise PlanError(f"{path}: field '{where}': no prompt_id of the instance's scores, or no fractions")
        row = np.zeros(len(models))
        for name, fraction in fractions.items():
            if name not in models or isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
                raise PlanError(f"{path}: field '{where}.fractions': {name!r}: {fraction!r} is not a fraction "
                                "for a model of the instance")
            row[models[name]] = fraction
        splits.append(Split(prompt, instance.prompt_ids[prompt], row))
    prices = np.array([np.nan if p is None else p for p in prices])
    return PublishedRouting(prices, tuple(splits), None if margin is None else float(margin))
