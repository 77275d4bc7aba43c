"""routerplan: GPU setups and prompt routing for multi-model LLM serving.

The Python API (`docs/api.md`), the few names a user needs:

* `load_instance(folder) -> Instance`: read and validate an instance (SPEC section 2);
* `solve(instance, method="exact", **options) -> Plan`: solve it with a method by name;
* `evaluate_plan(instance, plan_dict) -> Evaluation`: the independent plan evaluator;
* `compare(instance, names, options)`: several methods, each plan checked, in one table;
* `sweep(instance, targets_ms, methods=..., ...)`: the quality-vs-target frontier's table;
* `build_joint_mip(instance) -> pyo.ConcreteModel`: the joint MIP, to read or solve yourself;
* `Plan`: the frozen result every method returns (SPEC section 3).

They are loaded on first use (PEP 562), so `import models` stays cheap: it imports
neither Pyomo, HiGHS, pandas, matplotlib nor the methods.

Subpackages, by role; each imports only those listed before it (no cycles):

* `problem`: the instance and its validation, plans, the latency model, setups
  and placements, the transportation problem, the HiGHS wrapper, scores, moves
  against a running plan, and the local/Ray task engine;
* `evaluation`: the independent plan evaluator (imports only `problem.instance`);
* `methods`: exact, the routing LP, heuristic, baselines, enumerate, the
  latency-oblivious references, and the registry of methods by name;
* `output`: reports, plots, the deployment export and the router that serves a plan;
* `analysis`: comparison of methods, the scenario sweep, the cost frontier, robustness;
* `profiling`: latency curves from measured step times (imports `problem` only);
* `cli`: the command lines.

`api` holds `solve`, the one public function that is not defined in a subpackage.
"""

from importlib import import_module as _import_module

# public name -> (module, attribute in that module)
_API = {
    "load_instance": ("models.problem.instance", "load_instance"),
    "solve": ("models.api", "solve"),
    "evaluate_plan": ("models.evaluation.evaluate", "evaluate_plan"),
    "compare": ("models.analysis.compare", "compare"),
    "sweep": ("models.analysis.sweep", "run_sweep"),
    "build_joint_mip": ("models.methods.exact", "build_joint_mip"),
    "Plan": ("models.problem.plan", "Plan"),
}

__all__ = list(_API)


def __getattr__(name: str):
    """Import a public name's module on first access (PEP 562) and keep the name here."""
    try:
        module, attribute = _API[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
