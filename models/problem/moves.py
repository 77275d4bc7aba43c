"""Re-planning from a running plan (SPEC 4.7): the shards a plan runs, and what changes between two plans.

A shard is a (model, option, GPU) triple. Against the current plan's shards S0, a new plan with shards S

    moves(S) = |S \\ S0|,   the shards it starts (same model, same option, same GPU are kept);

it stops S0 \\ S. Re-planning maximizes Q - C moves for a move cost C >= 0 (quality per shard started).
With replicas (SPEC 4.5) two replicas of a model may run the same option on the same GPU: S is then a
multiset, a current shard is kept once, and moves(S) = |S| - |set(S) & S0| (models/methods/exact.py, (13r)).
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


def placed_shards(model_names: Sequence[str], setup: Setup | Replicas,
                  placement: Placement | ReplicaPlacement) -> list[RunningShard]:
    """The shards of a setup placed on GPUs, sorted: one per GPU of each replica (SPEC 4.5) of each deployed
    model (a multiset: two replicas may run the same option on one GPU)."""
    return sorted(RunningShard(name, option.tp, option.mps_pct, g)
                  for name, options, held in zip(model_names, as_replicas(setup), as_replica_placement(placement))
                  for option, gpus in zip(options, held) for g in gpus)


def running_shards(model_names: Sequence[str], setup: Setup | Replicas,
                   placement: Placement | ReplicaPlacement) -> frozenset[RunningShard]:
    """The distinct shards of a setup placed on GPUs (`placed_shards` as a set)."""
    return frozenset(placed_shards(model_names, setup, placement))


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
        """The current shards the new plan lacks, and its shards but one of each kept current shard."""
        placed = placed_shards(model_names, setup, placement)
        kept = set(placed) & self.current
        start = [shard for k, shard in enumerate(placed) if shard not in kept or shard in placed[:k]]
        return Changes(self.move_cost, tuple(sorted(self.current - set(placed))), tuple(start))

    def moves(self, model_names: Sequence[str], setup: Setup | Replicas,
              placement: Placement | ReplicaPlacement) -> int:
        return self.changes(model_names, setup, placement).moves
