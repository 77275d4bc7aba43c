"""Every method by name, with the options each one takes: the one registry the command line, the API,
the comparison and the sweep use.

This module is light on purpose: a method's module (and Pyomo, HiGHS, pandas
behind it) is imported only when the method runs, so the command line can
list the methods and check its options at once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING

from models.problem.defaults import DEFAULT_MIP_GAP, DEFAULT_UTILIZATION_FLOOR

BASELINES = ("equal-split", "size-proportional", "isolated")
REFERENCES = ("quality-greedy", "fixed-latency")  # latency-oblivious: never solutions
METHOD_NAMES = ("exact", "heuristic", "enumerate", *BASELINES, *REFERENCES)
SOLVING_METHODS = ("exact", "heuristic", *BASELINES)  # what a sweep compares: methods that solve at scale
REPLANNING_METHODS = ("exact", "enumerate")  # the methods that re-plan from a running plan (SPEC 4.7)

if TYPE_CHECKING:
    from models.problem.moves import Replanning


@dataclass(frozen=True)
class SolveOptions:
    """The options of every method; each method reads the ones listed for it in `APPLIES`."""

    time_limit: float | None = None
    threads: int | None = None
    mip_gap: float = DEFAULT_MIP_GAP
    per_prompt: bool = False
    placement: str = "auto"
    write_model: str | None = None
    progress: bool = False
    utilization_floor: float = DEFAULT_UTILIZATION_FLOOR
    tee: bool = False
    replanning: Replanning | None = None  # SPEC 4.7: the current plan's shards and the move cost


# The options (fields of SolveOptions, besides progress) that change what each method does.
APPLIES: dict[str, frozenset[str]] = {
    "exact": frozenset({"time_limit", "threads", "mip_gap", "per_prompt", "placement", "write_model", "tee",
                        "replanning"}),
    "heuristic": frozenset({"time_limit", "utilization_floor"}),
    "enumerate": frozenset({"time_limit", "tee", "replanning"}),
    **{name: frozenset({"time_limit", "threads", "tee"}) for name in BASELINES},
    "quality-greedy": frozenset(),
    "fixed-latency": frozenset({"utilization_floor"}),
}


def run_method(name: str, instance, options: SolveOptions):
    """Solve `instance` with the named method. The plan's `solver.seconds` is the wall time of the whole
    method (its module's import and the loading of the instance excluded)."""
    solve = METHODS[name]
    start = time.perf_counter()
    plan = solve(instance, options)
    seconds = time.perf_counter() - start
    return dataclasses.replace(plan, solver=dataclasses.replace(plan.solver, seconds=seconds))


def function(module: str, name: str):
    return getattr(import_module(f"models.methods.{module}"), name)


def solve_exact(instance, o: SolveOptions):
    return function("exact", "solve_exact")(
        instance, time_limit=o.time_limit, mip_gap=o.mip_gap, threads=o.threads, tee=o.tee,
        write_model=o.write_model, progress=o.progress, per_prompt=o.per_prompt, placement=o.placement,
        replanning=o.replanning)


def solve_heuristic(instance, o: SolveOptions):
    return function("heuristic", "solve_heuristic")(
        instance, time_limit=o.time_limit, utilization_floor=o.utilization_floor, progress=o.progress)


def solve_enumerate(instance, o: SolveOptions):
    return function("brute_force", "solve_enumerate")(instance, time_limit=o.time_limit, tee=o.tee,
                                                      replanning=o.replanning)


def baseline(name: str):
    def solve(instance, o: SolveOptions):
        return function("baselines", "solve_baseline")(instance, name, time_limit=o.time_limit, threads=o.threads,
                                                       tee=o.tee)
    return solve


def solve_quality_greedy(instance, o: SolveOptions):
    return function("greedy", "solve_quality_greedy")(instance)


def solve_fixed_latency(instance, o: SolveOptions):
    return function("fixed_latency", "solve_fixed_latency")(instance, utilization_floor=o.utilization_floor)


METHODS = {
    "exact": solve_exact,
    "heuristic": solve_heuristic,
    "enumerate": solve_enumerate,
    **{name: baseline(name) for name in BASELINES},
    "quality-greedy": solve_quality_greedy,
    "fixed-latency": solve_fixed_latency,
}
