"""Setups: an option (or nothing) per model, and shard placements on the GPUs.

A setup assigns each model an `Option` or `None` (not deployed). A placement
puts a deployed model's `tp` shards on distinct GPUs under memory (3) and
compute share (4). `find_placement` searches placements exactly,
`first_fit_decreasing` places quickly and may miss one;
`candidate_setups` lists the setups that pass the cluster-wide totals.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from models.problem.instance import GpuType, Instance, Model, Option

Setup = tuple[Option | None, ...]
Placement = tuple[tuple[int, ...], ...]  # per model, its GPUs (empty when not deployed)
Replicas = tuple[tuple[Option, ...], ...]  # SPEC 4.5: per model, its replicas' options (empty when not deployed)
ReplicaPlacement = tuple[tuple[tuple[int, ...], ...], ...]  # per model, per replica, its GPUs


def as_replicas(setup: Setup | Replicas) -> Replicas:
    """A setup in the replica form (SPEC 4.5): an option becomes one replica, None none; a replica form is
    kept."""
    return tuple(entry if isinstance(entry, tuple) else (() if entry is None else (entry,)) for entry in setup)


def as_replica_placement(placement: Placement | ReplicaPlacement) -> ReplicaPlacement:
    """A placement in the replica form: a model's GPUs become one replica's (none when not deployed)."""
    return tuple(gpus if gpus and isinstance(gpus[0], tuple) else ((tuple(gpus),) if gpus else ())
                 for gpus in placement)


def first_replicas(replicas: Replicas) -> Setup:
    """Each model's first replica's option (None when not deployed): the plan entry's own option."""
    return tuple(options[0] if options else None for options in replicas)


MEMORY_TOL_GB = 1e-9


@dataclass(frozen=True)
class Shard:
    """What one shard of a model needs on its GPU."""

    memory_gb: float
    mps_pct: int


def shard_of(model: Model, option: Option) -> Shard:
    return Shard(model.shard_gb(option.tp), option.mps_pct)


def model_choices(instance: Instance, model: Model) -> tuple[Option | None, ...]:
    """A model's options, with `None` first when it may stay undeployed."""
    options = instance.options(model)
    return ((None,) if not model.required else ()) + options


def compute_pct(setup: Setup) -> int:
    """Total compute share of a setup, in percent of one GPU."""
    return sum(o.compute_pct for o in setup if o is not None)


def fits_cluster_totals(instance: Instance, setup: Setup) -> bool:
    """Necessary conditions: per GPU type, total compute share and total memory within its GPUs."""
    return all(fits_type_totals(instance, setup, gpu_type) for gpu_type in instance.types)


def fits_type_totals(instance: Instance, setup: Setup, gpu_type: GpuType) -> bool:
    memory = sum(o.tp * m.shard_gb(o.tp) for m, o in zip(instance.models, setup)
                 if o is not None and o.gpu_type == gpu_type.name)
    return (compute_on_type(setup, gpu_type.name) <= 100 * gpu_type.count
            and memory <= gpu_type.count * gpu_type.memory_gb + MEMORY_TOL_GB)


def compute_on_type(setup: Setup, gpu_type: str) -> int:
    """Total compute share of the setup's options on one GPU type, in percent of one GPU."""
    return compute_pct(tuple(o for o in setup if o is not None and o.gpu_type == gpu_type))


def candidate_setups(instance: Instance) -> Iterator[Setup]:
    """Every setup (with at least one model deployed) whose totals fit the cluster, in a fixed order
    (placement not yet checked)."""
    for setup in setups_within_compute(instance, 0, 100 * instance.gpu_count):
        if fits_cluster_totals(instance, setup):
            yield setup


def setups_within_compute(instance: Instance, low: float, high: float) -> Iterator[Setup]:
    """The setups with at least one model deployed and total compute share in [low, high] (percent of one
    GPU), in the order of `itertools.product` over the models' choices. Partial setups that can no longer
    reach [low, high] are cut, so only setups in the range are visited."""
    choices = [model_choices(instance, m) for m in instance.models]
    compute = [[0 if o is None else o.compute_pct for o in c] for c in choices]
    least = np.cumsum([min(c) for c in compute][::-1])[::-1].tolist() + [0]  # least compute of models k..
    most = np.cumsum([max(c) for c in compute][::-1])[::-1].tolist() + [0]

    def extend(k: int, setup: tuple, total: int) -> Iterator[Setup]:
        if k == len(choices):
            if any(o is not None for o in setup):
                yield setup
            return
        for option, amount in zip(choices[k], compute[k]):
            reached = total + amount
            if reached + least[k + 1] <= high and reached + most[k + 1] >= low:
                yield from extend(k + 1, setup + (option,), reached)

    yield from extend(0, (), 0)


def count_within_compute(instance: Instance, low: float, high: float) -> int:
    """How many setups `setups_within_compute` yields, counted over total compute without listing them."""
    ways = {0: 1}  # total compute so far -> partial setups with it
    for model in instance.models:
        amounts = [0 if o is None else o.compute_pct for o in model_choices(instance, model)]
        reached: dict[int, int] = {}
        for total, count in ways.items():
            for amount in amounts:
                if total + amount <= high:
                    reached[total + amount] = reached.get(total + amount, 0) + count
        ways = reached
    empty = all(not m.required for m in instance.models) and low <= 0  # every model undeployed: not a setup
    return sum(count for total, count in ways.items() if total >= low) - int(empty)


def placeable_setups(instance: Instance, cheapest: bool = False) -> Iterator[tuple[Setup, Placement]]:
    """Every setup that can be placed, with one placement (`cheapest`: one on the fewest GPUs of each type),
    in a fixed order."""
    for setup in candidate_setups(instance):
        placement = cheapest_placement(instance, setup) if cheapest else find_placement(instance, setup)
        if placement is not None:
            yield setup, placement


def first_fit_decreasing(instance: Instance, setup: Setup) -> Placement | None:
    """Shards by decreasing MPS share (then memory), each on the first GPU of its option's type with room
    that holds no shard of its model; None if some shard finds no GPU."""
    deployed = [k for k, o in enumerate(setup) if o is not None]
    order = sorted(deployed, key=lambda k: (-setup[k].mps_pct, -instance.models[k].shard_gb(setup[k].tp), k))
    numbers = [g for t in instance.types for g in t.gpus]  # the GPUs' numbers, by position in these arrays
    kinds = np.array([t.name for t in instance.types for _ in t.gpus], dtype=object)
    free_memory = np.array([t.memory_gb for t in instance.types for _ in t.gpus])
    free_compute = np.full(len(numbers), 100)
    gpus: dict[int, list[int]] = {k: [] for k in deployed}
    for k in order:
        memory, share = instance.models[k].shard_gb(setup[k].tp), setup[k].mps_pct
        for _ in range(setup[k].tp):
            room = (kinds == setup[k].gpu_type) & (free_memory + MEMORY_TOL_GB >= memory) & (free_compute >= share)
            room[gpus[k]] = False
            if not room.any():
                return None
            g = int(np.argmax(room))
            free_memory[g] -= memory
            free_compute[g] -= share
            gpus[k].append(g)
    return tuple(tuple(sorted(numbers[g] for g in gpus.get(k, ()))) for k in range(len(setup)))


def find_placement(instance: Instance, setup: Setup, usable: Sequence[int] | None = None) -> Placement | None:
    """An exact search for a placement of every deployed model's shards on GPUs of its option's type (on the
    `usable` GPUs only, by default all of them), or None if there is none (`place_replicas` with one replica
    per deployed model)."""
    placed = place_replicas(instance, as_replicas(setup), usable)
    return None if placed is None else tuple(gpus[0] if gpus else () for gpus in placed)


def place_replicas(instance: Instance, replicas: Replicas,
                   usable: Sequence[int] | None = None) -> ReplicaPlacement | None:
    """An exact search for a placement of every replica's shards on GPUs of its option's type (SPEC 4.5: a
    replica's shards on distinct GPUs; two replicas may share a GPU; on the `usable` GPUs only, by default all
    of them), or None if there is none.

    Replicas are placed largest first; GPUs of the same type with the same free memory and compute
    are interchangeable, so only one of each such group is tried per step.
    """
    gpus = list(range(instance.gpu_count)) if usable is None else list(usable)
    kinds = [instance.type_of_gpu(g).name for g in gpus]
    units = [(k, r) for k, options in enumerate(replicas) for r in range(len(options))]
    order = sorted(units, key=lambda u: (-replicas[u[0]][u[1]].tp, -instance.models[u[0]].shard_gb(
        replicas[u[0]][u[1]].tp), -replicas[u[0]][u[1]].mps_pct, u))
    free_memory = [instance.type_of_gpu(g).memory_gb for g in gpus]
    free_compute = [100] * len(gpus)
    chosen: dict[tuple[int, int], tuple[int, ...]] = {}
    failed: set[tuple] = set()

    def place(step: int) -> bool:
        if step == len(order):
            return True
        k, r = order[step]
        option = replicas[k][r]
        state = (step, tuple(sorted(zip(kinds, free_memory, free_compute))))
        if state in failed:
            return False
        shard = shard_of(instance.models[k], option)
        fitting = [g for g in range(len(gpus)) if kinds[g] == option.gpu_type]
        for local in distinct_gpu_sets(free_memory, free_compute, shard, option.tp, fitting):
            for g in local:
                free_memory[g] -= shard.memory_gb
                free_compute[g] -= shard.mps_pct
            chosen[k, r] = tuple(gpus[g] for g in local)
            if place(step + 1):
                return True
            for g in local:
                free_memory[g] += shard.memory_gb
                free_compute[g] += shard.mps_pct
        failed.add(state)
        return False

    if not place(0):
        return None
    return tuple(tuple(tuple(sorted(chosen[k, r])) for r in range(len(options))) for k, options in enumerate(replicas))


def fits_gpus(instance: Instance, setup: Setup | Replicas, placement: Placement | ReplicaPlacement) -> bool:
    """Whether a placement puts each deployed model's replica on `tp` distinct GPUs (2) within every GPU's memory
    (3) and compute share (4)."""
    memory = [0.0] * instance.gpu_count
    compute = [0] * instance.gpu_count
    for model, options, held in zip(instance.models, as_replicas(setup), as_replica_placement(placement)):
        for option, gpus in zip(options, held):
            if len(set(gpus)) != option.tp:
                return False
            for g in gpus:
                memory[g] += model.shard_gb(option.tp)
                compute[g] += option.mps_pct
    return all(used <= instance.gpu_memory_gb + MEMORY_TOL_GB for used in memory) and max(compute) <= 100


def distinct_gpu_sets(
    free_memory: Sequence[float], free_compute: Sequence[int], shard: Shard, tp: int, candidates: Sequence[int]
) -> Iterator[tuple[int, ...]]:
    """Sets of `tp` GPUs among `candidates` (GPUs of one type) that can take the shard, one per multiset of
    GPU states."""
    fitting = [
        g
        for g in candidates
        if free_memory[g] + MEMORY_TOL_GB >= shard.memory_gb and free_compute[g] >= shard.mps_pct
    ]
    seen = set()
    for gpus in itertools.combinations(fitting, tp):
        states = tuple(sorted((free_memory[g], free_compute[g]) for g in gpus))
        if states not in seen:
            seen.add(states)
            yield gpus


def cheapest_placement(instance: Instance, setup: Setup) -> Placement | None:
    """A placement on the fewest GPUs of each type, so of the least cost (SPEC 4.4), or None if there is none.

    Shards of different types never share a GPU, so each type is placed on its own: on its first n GPUs
    for the smallest n that `find_placement` can use."""
    gpus: list[tuple[int, ...]] = [() for _ in setup]
    for gpu_type in instance.types:
        on_type = tuple(o if o is not None and o.gpu_type == gpu_type.name else None for o in setup)
        if all(o is None for o in on_type):
            continue
        least = max(o.tp for o in on_type if o is not None)
        found = (find_placement(instance, on_type, gpu_type.gpus[:n]) for n in range(least, gpu_type.count + 1))
        placement = next((p for p in found if p is not None), None)
        if placement is None:
            return None
        gpus = [mine or theirs for mine, theirs in zip(gpus, placement)]
    return tuple(gpus)


def placement_cost(instance: Instance, placement: Placement | ReplicaPlacement) -> float:
    """Hourly cost of the GPUs that hold at least one shard (SPEC 4.4; a type without a cost counts 0)."""
    used = {g for held in as_replica_placement(placement) for gpus in held for g in gpus}
    return float(sum(instance.type_of_gpu(g).cost_per_hour or 0.0 for g in used))


def describe_setup(instance: Instance, setup: Setup | Replicas) -> str:
    return ", ".join(f"{m.name}={'+'.join(map(str, options)) or '-'}"
                     for m, options in zip(instance.models, as_replicas(setup)))


# ---------------------------------------------------------------- replicas (SPEC 4.5)


def replica_choices(instance: Instance, model: Model) -> tuple[tuple[Option, ...], ...]:
    """A model's replica multisets: 1..max_replicas options each, sorted (replicas are interchangeable), with
    none first when it may stay undeployed."""
    options = instance.options(model)
    multisets = tuple(chosen for count in range(1, model.max_replicas + 1)
                      for chosen in itertools.combinations_with_replacement(options, count))
    return ((),) * (not model.required) + multisets


def placeable_replica_setups(instance: Instance) -> Iterator[tuple[Replicas, ReplicaPlacement]]:
    """Every replica setup (some model deployed) within the cluster's totals that can be placed, with one
    placement, in `itertools.product` order over the models' replica multisets."""
    for replicas in itertools.product(*(replica_choices(instance, m) for m in instance.models)):
        units = [(m, o) for m, options in zip(instance.models, replicas) for o in options]
        memory = sum(o.tp * m.shard_gb(o.tp) for m, o in units)
        if (not units or sum(o.compute_pct for _, o in units) > 100 * instance.gpu_count
                or memory > instance.gpu_count * instance.gpu_memory_gb + MEMORY_TOL_GB):
            continue
        placement = place_replicas(instance, replicas)
        if placement is not None:
            yield replicas, placement


def count_replica_setups(instance: Instance) -> int:
    """How many replica setups `placeable_replica_setups` looks at, before the totals and the placement."""
    return math.prod(len(replica_choices(instance, m)) for m in instance.models)


# ---------------------------------------------------------------- GPU patterns

PATTERN_NODES_LIMIT = 2_000_000  # partial GPU contents visited while listing patterns (about 10 s here)


class TooManyPatterns(ValueError):
    """Listing the GPU patterns would visit more partial contents than PATTERN_NODES_LIMIT."""


def maximal_patterns(choices: Sequence[tuple[Model, Option]], memory_gb: float) -> list[tuple[int, ...]]:
    """Every maximal GPU content: a set of shards, at most one per model (indices into `choices`), within the
    GPU's memory `memory_gb` and compute share, to which no shard of an absent model can be added.

    Any GPU's content in a placement is a subset of a maximal one, and dropping shards keeps a GPU
    within its limits: so covering each chosen option's `tp` shards by maximal patterns is exact
    (the pattern form of `models/methods/exact.py`)."""
    by_model: dict[str, list[int]] = {}
    for k, (model, _) in enumerate(choices):
        by_model.setdefault(model.name, []).append(k)
    groups = list(by_model.values())
    shards = [shard_of(model, option) for model, option in choices]
    found: list[tuple[int, ...]] = []
    visited = 0

    def fits(k: int, memory: float, compute: int) -> bool:
        return shards[k].memory_gb <= memory + MEMORY_TOL_GB and shards[k].mps_pct <= compute

    def extend(group: int, content: tuple[int, ...], memory: float, compute: int, skipped: tuple[int, ...]):
        nonlocal visited
        visited += 1
        if visited > PATTERN_NODES_LIMIT:
            raise TooManyPatterns(f"more than {PATTERN_NODES_LIMIT:,} partial GPU contents")
        if group == len(groups):
            # maximal: no skipped model has a shard that still fits
            if not any(fits(k, memory, compute) for g in skipped for k in groups[g]):
                found.append(content)
            return
        for k in groups[group]:
            if fits(k, memory, compute):
                extend(group + 1, content + (k,), memory - shards[k].memory_gb, compute - shards[k].mps_pct, skipped)
        extend(group + 1, content, memory, compute, skipped + (group,))

    extend(0, (), memory_gb, 100, ())
    return [content for content in found if content]
