"""routerplan: GPU setups and prompt routing for multi-model LLM serving.

Subpackages, by role; each imports only those listed before it (no cycles):

* `problem`: the instance and its validation, plans, the latency model, setups
  and placements, the transportation problem, the HiGHS wrapper, scores;
* `evaluation`: the independent plan evaluator (imports only `problem.instance`);
* `methods`: exact, the routing LP, heuristic, baselines, enumerate, the
  latency-oblivious references, and the registry of methods by name;
* `output`: reports, plots, the deployment export;
* `analysis`: comparison of methods, the target sweep, realized routing;
* `profiling`: latency curves from measured step times (imports `problem` only);
* `cli`: the command lines.
"""
