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
from models.problem.instance import Instance, Option
from models.problem.latency import latency_ms, option_pieces
from models.problem.published import PublishedRouting, publish_routing
from models.problem.setup import Placement, Setup
from models.problem.tolerances import SLO_TOL

STATUSES = ("optimal", "time_limit", "heuristic", "infeasible")


class Infeasible(Exception):
    """No plan meets every constraint; the message says why when it is known."""


def slo_out_of_reach(lowest_ms: float, target_ms: float) -> str:
    """The infeasibility reason when no setup gets the mean TTFT down to the target."""
    return f"the lowest mean TTFT any setup reaches is {lowest_ms:.2f} ms, above the target {target_ms:g} ms"


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
    (load / r_K). `routing` is the published rule (SPEC 4.3): a price per model, the split
    prompts and the smallest margin.
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

    @property
    def slo_met(self) -> bool:
        """The mean TTFT is within the target (to SLO_TOL, models/problem/tolerances.py)."""
        return self.mean_ttft_ms <= self.slo_ms * (1 + SLO_TOL)

    @property
    def setup(self) -> Setup:
        return tuple(
            Option(int(row.tp), int(row.mps_pct)) if row.deployed else None for row in self.models.itertuples()
        )

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
            models.append(
                {
                    "name": row.name,
                    "deployed": bool(row.deployed),
                    "tp": int(row.tp) if row.deployed else None,
                    "mps_pct": int(row.mps_pct) if row.deployed else None,
                    "gpus": [int(g) for g in row.gpus],
                    "share": float(row.share),
                    "load_rps": float(row.load_rps),
                    "ttft_ms": finite_or_none(row.ttft_ms) if row.deployed else None,
                    "utilization": float(row.utilization) if row.deployed else None,
                    "price": None if np.isnan(price) else float(price) + 0.0,  # + 0.0: no -0.0
                }
            )
        return {
            "instance": self.instance,
            "method": self.method,
            "quality": float(self.quality),
            "mean_ttft_ms": finite_or_none(self.mean_ttft_ms),
            "slo_mean_ttft_ms": float(self.slo_ms),
            "slo_met": self.slo_met,
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
        }


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
    setup: Setup,
    placement: Placement,
    shares: Sequence[float],
    quality: float,
    solver: SolverReport,
    notes: Mapping[str, object] | None = None,
    sensitivity: Mapping[str, float] | None = None,
    routing: PublishedRouting | None = None,
) -> Plan:
    """Assemble a plan, computing each model's load, latency and TTFT contribution from the curves, and
    its published routing (`models/problem/published.py`) unless one is given."""
    lam = instance.arrival_rate_rps
    if routing is None:
        deployed = [k for k, option in enumerate(setup) if option is not None]
        routing = publish_routing(instance.scores, instance.prompt_ids, deployed, shares)
    rows = []
    for model, option, gpus, share in zip(instance.models, setup, placement, shares):
        deployed = option is not None
        curve = instance.curve(model, option) if deployed else None
        rows.append(
            {
                "name": model.name,
                "deployed": deployed,
                "tp": option.tp if deployed else None,
                "mps_pct": option.mps_pct if deployed else None,
                "gpus": tuple(gpus),
                "share": float(share),
                "load_rps": lam * float(share),
                "ttft_ms": latency_ms(curve, lam * share) if deployed else float("nan"),
                "contribution_ms": option_pieces(instance, model, option).contribution(share) if deployed else 0.0,
                "utilization": lam * float(share) / curve.max_rate_rps if deployed else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
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
    )


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
