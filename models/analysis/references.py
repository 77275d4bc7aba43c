"""The latency-oblivious references side by side: quality-greedy (`models/methods/greedy.py`) and the
fixed-latency router (`models/methods/fixed_latency.py`), with their true predicted mean TTFT."""

from __future__ import annotations

import pandas as pd

from models.methods.fixed_latency import solve_fixed_latency
from models.methods.greedy import solve_quality_greedy
from models.problem.instance import Instance


def latency_oblivious_table(instance: Instance) -> pd.DataFrame:
    """quality-greedy and fixed-latency side by side: quality, true mean TTFT and how far it breaks the target."""
    rows = []
    for plan in (solve_quality_greedy(instance), solve_fixed_latency(instance)):
        rows.append({"method": plan.method, "quality": plan.quality, "true_mean_ttft_ms": plan.mean_ttft_ms,
                     "target_ms": plan.slo_ms, "over_target_ms": plan.mean_ttft_ms - plan.slo_ms,
                     "slo_met": plan.slo_met})
    return pd.DataFrame(rows)
