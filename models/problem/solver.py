"""The one HiGHS wrapper every Pyomo model here is solved with, and what every HiGHS run shares.

`solve_model` sets the time limit, gaps, tolerances and threads; loads the
solution when there is one; and turns HiGHS's termination into one of
`optimal`, `time_limit`, `infeasible`, raising `SolverError` on anything else.

Every HiGHS run here (Pyomo's or a `highspy.Highs` built by `new_highs`) is
quiet unless asked (HiGHS prints a banner on stdout when an instance is
created, and its log while it runs unless its output is off or, in Pyomo's
interface, captured into Pyomo's logger), and stops on Ctrl-C within moments when
`models.problem.interrupts.interrupt_on_sigint` is in force (`Interrupted` is
raised; the module says how).
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass

import pyomo.environ as pyo
import highspy
from pyomo.common.tee import capture_output
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from models.problem.interrupts import stoppable
from models.problem.tolerances import DEFAULT_MIP_GAP, LP_FEASIBILITY, MIP_ABS_GAP

# LP_FEASIBILITY (models/problem/tolerances.py) is for LPs only. On the joint MIP of a synthetic 8-GPU development instance,
# HiGHS 1.15 with tolerances this tight returned "optimal" at 0.786 where 0.802 is right (presolve off,
# or default tolerances, found 0.802), so MIPs keep HiGHS's defaults and plans come from tight LPs.


class SolverError(RuntimeError):
    """HiGHS ended in a way no result can be taken from (error, unbounded, unknown)."""


class DeadlinePassed(Exception):
    """A time limit passed inside a computation that has no useful partial answer."""


def remaining(deadline: float | None) -> float | None:
    """Seconds left until `deadline` (a `time.perf_counter()` value; None: no limit); `DeadlinePassed` if none."""
    if deadline is None:
        return None
    left = deadline - time.perf_counter()
    if left <= 0:
        raise DeadlinePassed("the time limit passed")
    return left


def highs_running(highs: highspy.Highs):
    """Around HiGHS's own run, so that SIGINT stops it (`models.problem.interrupts.stoppable`). Python work
    (building a model) stays outside, where SIGINT interrupts at once."""
    return stoppable(highs)


def quiet_output(tee: bool = False):
    """Discard what HiGHS prints (stdout and stderr, at the file-descriptor level) unless `tee`."""
    return contextlib.nullcontext() if tee else capture_output(io.StringIO(), capture_fd=True)


def new_highs() -> highspy.Highs:
    """A quiet `highspy.Highs` (run it inside `highs_running`, so that SIGINT stops it)."""
    with quiet_output():
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    return highs


@dataclass(frozen=True)
class SolveResult:
    """`objective` is the best feasible value found, `bound` the proven bound, `gap` their relative gap."""

    status: str  # optimal | time_limit | infeasible
    objective: float | None
    bound: float | None
    seconds: float

    @property
    def has_solution(self) -> bool:
        return self.objective is not None

    @property
    def gap(self) -> float | None:
        if self.objective is None or self.bound is None:
            return None
        return abs(self.bound - self.objective) / max(abs(self.objective), 1e-12)


def make_solver(
    time_limit: float | None = None,
    mip_gap: float = DEFAULT_MIP_GAP,
    threads: int | None = None,
    tee: bool = False,
    tight_lp: bool = False,
) -> Highs:
    """A persistent HiGHS interface: re-solving the same model after small changes is incremental.

    `tight_lp` sets feasibility tolerances of 1e-9, for LPs whose solutions become plans."""
    solver = Highs()
    solver.config.load_solution = False
    solver.config.stream_solver = tee
    solver.config.mip_gap = mip_gap
    if time_limit is not None:
        solver.config.time_limit = max(float(time_limit), 0.01)
    options = {"mip_abs_gap": MIP_ABS_GAP, "random_seed": 0}
    if tight_lp:
        options |= {"primal_feasibility_tolerance": LP_FEASIBILITY, "dual_feasibility_tolerance": LP_FEASIBILITY}
    if threads is not None:
        options["threads"] = int(threads)
    solver.highs_options = options
    return solver


def solve_model(model: pyo.ConcreteModel, solver: Highs | None = None, **options) -> SolveResult:
    """Solve `model`; load its variable values when solved, and for an LP its duals and reduced costs
    into the suffixes `model.dual` and `model.rc` where declared."""
    solver = solver or make_solver(**options)
    start = time.perf_counter()
    tee = solver.config.stream_solver
    if solver._model is not model:  # a new model: Pyomo builds its HiGHS instance now, in Python
        with quiet_output(tee):
            solver.set_instance(model)
    if "threads" in solver.highs_options:  # HiGHS fixes its thread count at its first run in the process and
        highspy.Highs.resetGlobalScheduler(True)  # refuses another unless its scheduler is reset first
    with quiet_output(tee), highs_running(solver._solver_model):  # rows added since the last solve reach
        results = solver.solve(model)  # HiGHS here, and it may warn on stdout (e.g. of coefficients below 1e-9)
    seconds = time.perf_counter() - start
    condition = results.termination_condition
    if condition in (TerminationCondition.infeasible, TerminationCondition.infeasibleOrUnbounded):
        return SolveResult("infeasible", None, None, seconds)
    if condition == TerminationCondition.optimal:
        status = "optimal"
    elif condition == TerminationCondition.maxTimeLimit:
        status = "time_limit"
    else:
        raise SolverError(f"HiGHS ended with {condition.name}")
    objective = results.best_feasible_objective
    if objective is not None:
        results.solution_loader.load_vars()
        if isinstance(getattr(model, "dual", None), pyo.Suffix) and not has_integers(model):
            model.dual.update(results.solution_loader.get_duals())
        if isinstance(getattr(model, "rc", None), pyo.Suffix) and not has_integers(model):
            model.rc.update(results.solution_loader.get_reduced_costs())
    return SolveResult(status, objective, results.best_objective_bound, seconds)


def has_integers(model: pyo.ConcreteModel) -> bool:
    return any(v.is_integer() and not v.fixed for v in model.component_data_objects(pyo.Var, active=True))
