"""Plans (SPEC section 3): the frozen result every method returns, and its JSON form."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from models.problem.instance import Instance, Option
from models.problem.latency import latency_ms, share_pieces
from models.problem.setup import Placement, Setup

STATUSES = ("optimal", "time_limit", "heuristic", "infeasible")


class Infeasible(Exception):
    """No plan meets every constraint; the message says why when it is known."""


def slo_out_of_reach(lowest_ms: float, target_ms: float, margin: float) -> str:
    """The infeasibility reason when no setup gets the mean TTFT below the target (plans keep `margin`)."""
    where = "above" if lowest_ms > target_ms else f"within the plans' margin ({margin:g}) of"
    return f"the lowest mean TTFT any setup reaches is {lowest_ms:.2f} ms, {where} the target {target_ms:g} ms"


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
    name, deployed, tp, mps_pct, gpus, share, load_rps, ttft_ms, contribution_ms, price.
    """

    instance: str
    method: str
    quality: float
    mean_ttft_ms: float
    slo_ms: float
    models: pd.DataFrame
    solver: SolverReport
    notes: Mapping[str, object] = field(default_factory=dict)
    sensitivity: Mapping[str, float] | None = None  # marginal quality per ms of target, per request/s of load

    @property
    def slo_met(self) -> bool:
        return self.mean_ttft_ms <= self.slo_ms

    @property
    def setup(self) -> Setup:
        return tuple(
            Option(int(row.tp), int(row.mps_pct)) if row.deployed else None for row in self.models.itertuples()
        )

    @property
    def shares(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.models.share)

    def to_dict(self) -> dict:
        models = []
        for row in self.models.itertuples():
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
                    "price": None if pd.isna(row.price) else float(row.price),
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
            "solver": {
                "status": self.solver.status,
                "seconds": float(self.solver.seconds),
                "gap": self.solver.gap,
                "bound": self.solver.bound,
            },
            "sensitivity": dict(self.sensitivity) if self.sensitivity else None,
            "notes": dict(self.notes),
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
    prices: Sequence[float | None],
    quality: float,
    solver: SolverReport,
    notes: Mapping[str, object] | None = None,
    sensitivity: Mapping[str, float] | None = None,
) -> Plan:
    """Assemble a plan, computing each model's load, latency and TTFT contribution from the curves."""
    lam = instance.arrival_rate_rps
    rows = []
    for model, option, gpus, share, price in zip(instance.models, setup, placement, shares, prices):
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
                "contribution_ms": share_pieces(curve, lam).contribution(share) if deployed else 0.0,
                "price": price,
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
        notes=dict(notes or {}),
        sensitivity=sensitivity,
    )


def write_plan(plan: Plan, path: str | Path) -> None:
    Path(path).write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
