"""`solve`: one function for every method of the registry, with its options as keywords.

The registry (`models/methods/registry.py`) is imported on the first call, so that
importing this module, like importing `models`, loads neither Pyomo nor HiGHS.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.problem.instance import Instance
    from models.problem.plan import Plan


def solve(instance: Instance, method: str = "exact", **options) -> Plan:
    """Solve `instance` with the method named `method` (a key of `METHODS`) and return its plan.

    `options` are the fields of `SolveOptions` (time_limit, threads, mip_gap, per_prompt,
    write_model, progress, utilization_floor, ...); a method ignores those it does not take.
    Raises ValueError for an unknown method, TypeError for an unknown option, and the methods'
    own exceptions: `Infeasible` (no plan meets the constraints), `NoPlanInTime` (the time
    limit passed with no plan), `TooLarge` (enumerate refuses the instance). `replanning` (SPEC 4.7)
    is taken by exact and enumerate only; another method with it raises ValueError.

    The plan is returned as the method gives it: a latency-oblivious reference that breaks the
    target comes back with status `infeasible` (where the command line exits 3); check
    `plan.slo_met` or `evaluate_plan` before deploying it.
    """
    from models.methods.registry import METHODS, REPLANNING_METHODS, SolveOptions  # here: see the module docstring
    from models.problem.blas import one_blas_thread

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; the methods are: {', '.join(METHODS)}")
    fields = [field.name for field in dataclasses.fields(SolveOptions)]
    unknown = [name for name in options if name not in fields]
    if unknown:
        raise TypeError(f"solve() got unknown option(s) {', '.join(map(repr, unknown))}; "
                        f"the options are: {', '.join(fields)}")
    if options.get("replanning") is not None and method not in REPLANNING_METHODS:
        raise ValueError(f"method {method!r} does not re-plan from a running plan; "
                         f"{' and '.join(REPLANNING_METHODS)} do")
    with one_blas_thread():
        return METHODS[method](instance, SolveOptions(**options))
