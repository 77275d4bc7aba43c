"""How much the load each model sees varies when the live prompt mix is a fresh sample.

A router applies the plan's published rule (SPEC 4.3) to whatever prompts
arrive. Over a window of W requests, the prompts are a sample of the prompt
distribution, which the instance's N prompts stand for; so model i's load in a
window is

    lam * (1/W) sum_{k=1..W} f[x_k, i],    x_1..x_W drawn with replacement from the N prompts,

with f[x, i] the fraction of prompt x the rule sends to model i. A seeded
bootstrap draws `samples` such windows and reports the 95th and 99th
percentile of each model's load, next to its planned load and the highest
load its option sustains, r_K. A 99th percentile above r_K means that about
one window in a hundred overloads the model's server for W / lam seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.problem.defaults import DEFAULT_BOOTSTRAP_SAMPLES, DEFAULT_BOOTSTRAP_SEED, DEFAULT_WINDOW
from models.problem.instance import Instance
from models.problem.plan import Plan

CHUNK = 200  # windows drawn at once


@dataclass(frozen=True, eq=False)
class Robustness:
    """Per deployed model: planned_load_rps, p95_load_rps, p99_load_rps, max_rate_rps (r_K)."""

    window: int
    samples: int
    seed: int
    models: pd.DataFrame

    @property
    def overloaded(self) -> list[str]:
        """Models whose 99th-percentile load passes r_K."""
        return list(self.models.name[self.models.p99_load_rps > self.models.max_rate_rps])

    def notes(self) -> dict:
        """The plan's `robustness` note."""
        return {"window_requests": self.window, "samples": self.samples, "seed": self.seed,
                "models": {row.name: {"planned_load_rps": round(row.planned_load_rps, 4),
                                      "p95_load_rps": round(row.p95_load_rps, 4),
                                      "p99_load_rps": round(row.p99_load_rps, 4),
                                      "max_rate_rps": row.max_rate_rps} for row in self.models.itertuples()}}


def window_loads(instance: Instance, plan: Plan, window: int, samples: int, seed: int) -> np.ndarray:
    """samples x models: each model's load (requests/s) over `window` prompts drawn with replacement."""
    fractions = plan.routing.fractions(instance.scores)
    rng = np.random.default_rng(seed)
    loads = []
    for start in range(0, samples, CHUNK):
        draws = rng.integers(instance.prompt_count, size=(min(CHUNK, samples - start), window))
        loads.append(fractions[draws].mean(axis=1) * instance.arrival_rate_rps)
    return np.vstack(loads)


def robustness(instance: Instance, plan: Plan, window: int = DEFAULT_WINDOW, samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
               seed: int = DEFAULT_BOOTSTRAP_SEED) -> Robustness:
    """The bootstrap of the module docstring for the plan's deployed models."""
    loads = window_loads(instance, plan, window, samples, seed)
    p95, p99 = np.percentile(loads, [95, 99], axis=0)
    rows = [{"name": model.name, "planned_load_rps": float(row.load_rps), "p95_load_rps": float(p95[k]),
             "p99_load_rps": float(p99[k]), "max_rate_rps": model_max_rate(instance, model, options, shares)}
            for k, (model, options, shares, row) in enumerate(zip(instance.models, plan.replicas, plan.replica_shares,
                                                                  plan.models.itertuples()))
            if options]
    return Robustness(window, samples, seed, pd.DataFrame(rows))


def model_max_rate(instance: Instance, model, options, shares) -> float:
    """The model's load at which a replica reaches its r_K, the router splitting it in proportion to the
    replicas' shares (SPEC 4.5): r_K itself for one replica."""
    total = sum(shares)
    if len(options) == 1 or total <= 0:
        return instance.curve(model, options[0]).max_rate_rps
    return min(instance.curve(model, option).max_rate_rps * total / share
               for option, share in zip(options, shares) if share > 0)


def format_robustness(result: Robustness, arrival_rate_rps: float) -> str:
    """Lines for the report: the percentiles per model, and a warning per model whose p99 passes r_K."""
    seconds = result.window / arrival_rate_rps
    lines = [f"robustness (load over {result.window} requests, about {seconds:.0f} s, in {result.samples} "
             f"bootstrap windows of the instance's prompts, seed {result.seed}):"]
    for row in result.models.itertuples():
        lines.append(f"  {row.name}: planned {row.planned_load_rps:.2f} requests/s, p95 {row.p95_load_rps:.2f}, "
                     f"p99 {row.p99_load_rps:.2f}, r_K {row.max_rate_rps:g}")
    for name in result.overloaded:
        lines.append(f"warning: {name}'s 99th-percentile load passes its r_K: about one window in a hundred "
                     "overloads it; a larger headroom (--headroom) plans it further from r_K")
    return "\n".join(lines)
