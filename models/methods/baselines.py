"""Resource-allocation baselines: a fixed rule for the setup, then the best routing for it.

Each rule fixes how much compute each model gets (its total share tp x mps_pct, in percent of one
GPU) and so which options it may use; the best setup and routing within those options is found by
`exact` on the instance restricted to them. Where the rule admits several setups (tp choices and
placements with the same compute), that search takes the best one.

* Equal-Split: every model gets the same total compute c: the largest value that some option of
  every model achieves, with n_models x c <= 100 x GPUs and some setup of those options placeable.
* Size-Proportional: model i gets the largest compute an option of it achieves at or below
  f x 100 x GPUs x weights_i / sum_j weights_j (its smallest option if none is that small), with
  the largest f in 1, 0.99, 0.98, ... for which some setup of those options can be placed.
* Isolated: every model runs on whole GPUs of its own: MPS share 100, so no GPU holds two shards.

A rule whose allocation cannot carry the load or meet the target is reported infeasible.

The plans are the baselines' best, not the instance's: their status is `heuristic`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from types import MappingProxyType

from models.methods.exact import solve_exact
from models.problem.instance import Instance, Option
from models.problem.plan import Infeasible, Plan, SolverReport
from models.problem.setup import find_placement


def restricted(instance: Instance, allowed: dict[str, set[Option]]) -> Instance:
    """The instance with each model's options cut down to `allowed[model]`."""
    curves = {key: curve for key, curve in instance.curves.items() if key[1] in allowed[key[0]]}
    return dataclasses.replace(instance, curves=MappingProxyType(curves))


def options_with_compute(instance: Instance, amounts: dict[str, int]) -> dict[str, set[Option]]:
    return {m.name: {o for o in instance.options(m) if o.compute_pct == amounts[m.name]} for m in instance.models}


def placeable(instance: Instance, allowed: dict[str, set[Option]]) -> bool:
    """Whether some setup of the allowed options (all models deployed) can be placed on the GPUs."""
    choices = [[o for o in instance.options(m) if o in allowed[m.name]] for m in instance.models]
    return any(find_placement(instance, setup) is not None for setup in itertools.product(*choices))


def equal_split_allocation(instance: Instance) -> dict[str, int] | None:
    common = set.intersection(*({o.compute_pct for o in instance.options(m)} for m in instance.models))
    for level in sorted((c for c in common if len(instance.models) * c <= 100 * instance.gpu_count), reverse=True):
        amounts = {m.name: level for m in instance.models}
        if placeable(instance, options_with_compute(instance, amounts)):
            return amounts
    return None


def size_proportional_allocation(instance: Instance) -> dict[str, int] | None:
    total_weights = sum(m.weights_gb for m in instance.models)
    for percent in range(100, 0, -1):
        amounts = {}
        for model in instance.models:
            target = percent * instance.gpu_count * model.weights_gb / total_weights
            achievable = sorted({o.compute_pct for o in instance.options(model)})
            amounts[model.name] = max((c for c in achievable if c <= target), default=achievable[0])
        if placeable(instance, options_with_compute(instance, amounts)):
            return amounts
    return None


def isolated_options(instance: Instance) -> dict[str, set[Option]]:
    return {m.name: {o for o in instance.options(m) if o.mps_pct == 100} for m in instance.models}


def solve_baseline(instance: Instance, name: str, time_limit: float | None = None, threads: int | None = None,
                   tee: bool = False) -> Plan:
    """The best plan within the named rule; raises `Infeasible` when the rule admits none."""
    start = time.perf_counter()
    replicas = {"replicas": "one per model: the rules allocate compute per model"} if instance.has_replicas else {}
    instance = instance.one_replica_each()
    if name == "isolated":
        allowed, rule = isolated_options(instance), "whole GPUs per model, MPS share 100"
        without = [m.name for m in instance.models if m.required and not allowed[m.name]]
        if without:
            raise Infeasible(f"{name} ({rule}): {', '.join(without)} has no profiled option at MPS share 100")
    else:
        allocation = (equal_split_allocation if name == "equal-split" else size_proportional_allocation)(instance)
        if allocation is None:
            raise Infeasible(f"{name}: no allocation by the rule can be placed on the GPUs")
        allowed = options_with_compute(instance, allocation)
        rule = "compute per model (% of a GPU): " + ", ".join(f"{k} {v}" for k, v in allocation.items())
    try:
        plan = solve_exact(restricted(instance, allowed), time_limit=time_limit, threads=threads, tee=tee)
    except Infeasible as err:
        raise Infeasible(f"{name} ({rule}): {err}") from None
    report = SolverReport("heuristic", time.perf_counter() - start)
    return dataclasses.replace(plan, method=name, solver=report,
                               notes={"rule": rule, "within the rule": plan.solver.status,
                                      "bound within the rule": plan.solver.bound,
                                      "setups_evaluated": plan.notes["setups_evaluated"], **replicas})
