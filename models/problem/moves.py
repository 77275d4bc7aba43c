"""Re-planning from a running plan (SPEC 4.7): the shards a plan runs, and what changes between two plans.

A shard is a (model, option, GPU) triple. Against the current plan's shards S0, a new plan with shards S

    moves(S) = |S \\ S0|,   the shards it starts (same model, same option, same GPU are kept);

it stops S0 \\ S. Re-planning maximizes Q - C moves for a move cost C >= 0 (quality per shard started).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from models.problem.setup import Placement, ReplicaPlacement, Replicas, Setup, as_replica_placement, as_replicas


@dataclass(frozen=True, order=True)
class RunningShard:
    """One shard of a deployed model: its model, option and GPU."""

    model: str
    tp: int
    mps_pct: int
    gpu: int

    def __str__(self) -> str:
        return f"{self.model} tp{self.tp}/mps{self.mps_pct} on GPU {self.gpu}"

    def to_dict(self) -> dict:
        return {"model": self.model, "tp": self.tp, "mps_pct": self.mps_pct, "gpu": self.gpu}


def running_shards(model_names: Sequence[str], setup: Setup | Replicas,
                   placement: Placement | ReplicaPlacement) -> frozenset[RunningShard]:
    """The shards of a setup placed on GPUs: one per GPU of each replica (SPEC 4.5) of each deployed model."""
    return frozenset(RunningShard(name, option.tp, option.mps_pct, g)
                     for name, options, held in zip(model_names, as_replicas(setup), as_replica_placement(placement))
                     for option, gpus in zip(options, held) for g in gpus)


@dataclass(frozen=True)
class Changes:
    """From the current plan to a new one: the shards to stop and to start (each sorted), at a move cost."""

    move_cost: float
    stop: tuple[RunningShard, ...]
    start: tuple[RunningShard, ...]

    @property
    def moves(self) -> int:
        return len(self.start)

    @property
    def gpus_touched(self) -> tuple[int, ...]:
        """The GPUs where a shard stops or starts."""
        return tuple(sorted({shard.gpu for shard in self.stop + self.start}))

    def to_dict(self) -> dict:
        return {"stop": [s.to_dict() for s in self.stop], "start": [s.to_dict() for s in self.start],
                "gpus_touched": list(self.gpus_touched)}


@dataclass(frozen=True)
class Replanning:
    """The current plan's shards and the cost C of each shard started."""

    current: frozenset[RunningShard]
    move_cost: float

    def changes(self, model_names: Sequence[str], setup: Setup | Replicas,
                placement: Placement | ReplicaPlacement) -> Changes:
        new = running_shards(model_names, setup, placement)
        return Changes(self.move_cost, tuple(sorted(self.current - new)), tuple(sorted(new - self.current)))

    def moves(self, model_names: Sequence[str], setup: Setup | Replicas,
              placement: Placement | ReplicaPlacement) -> int:
        return len(running_shards(model_names, setup, placement) - self.current)
