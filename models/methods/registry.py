"""Every method by name, with the options they take: the one registry the command line,
the comparison and the sweep use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.methods.baselines import BASELINES, solve_baseline
from models.methods.brute_force import solve_enumerate
from models.methods.exact import solve_exact
from models.methods.greedy import solve_quality_greedy
from models.methods.heuristic import DEFAULT_UTILIZATION_FLOOR, solve_heuristic
from models.problem.instance import Instance
from models.problem.plan import Plan
from models.methods.fixed_latency import solve_fixed_latency
from models.problem.solver import DEFAULT_MIP_GAP


@dataclass(frozen=True)
class SolveOptions:
    time_limit: float | None = None
    threads: int | None = None
    mip_gap: float = DEFAULT_MIP_GAP
    per_prompt: bool = False
    write_model: str | None = None
    progress: bool = False
    utilization_floor: float = DEFAULT_UTILIZATION_FLOOR


Method = Callable[[Instance, SolveOptions], Plan]

METHODS: dict[str, Method] = {
    "exact": lambda instance, o: solve_exact(
        instance, time_limit=o.time_limit, mip_gap=o.mip_gap, threads=o.threads, write_model=o.write_model,
        progress=o.progress, per_prompt=o.per_prompt),
    "heuristic": lambda instance, o: solve_heuristic(
        instance, time_limit=o.time_limit, utilization_floor=o.utilization_floor, progress=o.progress),
    "enumerate": lambda instance, o: solve_enumerate(instance, time_limit=o.time_limit),
    **{name: (lambda instance, o, name=name: solve_baseline(instance, name, time_limit=o.time_limit))
       for name in BASELINES},
    "quality-greedy": lambda instance, o: solve_quality_greedy(instance),
    "fixed-latency": lambda instance, o: solve_fixed_latency(instance, utilization_floor=o.utilization_floor),
}
