#!/usr/bin/env python3
"""GPU types and the cost objective (SPEC 4.4): time to a proven optimum for both objectives, and exact
against the heuristic.

    python bench/gpu_types.py [INSTANCE] [--min-quality Q ...] [--time-limit SECONDS] [--keep DIR]

INSTANCE defaults to data/mixed-a100-h100. If it is absent, the bench says so in one line and builds a
stand-in from data/paper-4xA100: its three models and prompts on 2 x A100-80GB + 2 x H100-80GB, with the
A100 curves as profiled and H100 curves that are the A100 ones with every TTFT multiplied by
H100_TTFT_FACTOR at the same load (an assumption of this bench only, not a measurement), and costs per hour
A100_COST and H100_COST (illustrative, the SPEC's example). Rows are labelled with the instance used.

For the instance, in this one process:

* quality objective: `solve_exact` (status, seconds to the proof, quality, cost of the GPUs in use, GPU
  mix) and `solve_heuristic` (seconds, quality, relative gap to exact);
* cost objective at each --min-quality (default: exact's optimum quality minus 0.002, 0.01 and 0.03): `solve_exact`
  (status, seconds, least cost, quality, GPU mix) and `solve_heuristic` (seconds, cost, quality);
* every plan through the independent evaluator (`agrees`).

Seconds are wall-clock; the machine may be shared. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.evaluation.evaluate import evaluate_plan  # noqa: E402
from models.methods.exact import solve_exact  # noqa: E402
from models.methods.heuristic import solve_heuristic  # noqa: E402
from models.problem.instance import Objective, load_instance, with_objective  # noqa: E402
from models.problem.plan import Infeasible, NoPlanInTime, TooLarge  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "data" / "mixed-a100-h100"
SOURCE = REPO / "data" / "paper-4xA100"
H100_TTFT_FACTOR = 0.6  # stand-in H100 TTFT / A100 TTFT at the same load (assumed)
A100_COST, H100_COST = 1.8, 3.5  # per GPU-hour, illustrative (SPEC 4.4's example)


def write_stand_in(folder: Path) -> Path:
    """data/paper-4xA100 on 2 A100 + 2 H100, the H100 curves scaled from the A100 ones (module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    toml = (SOURCE / "instance.toml").read_text()
    start, end = toml.index("[cluster]"), toml.index("[workload]")
    cluster = ("[cluster]\n"
               f'[[cluster.gpu_types]]\nname = "A100-80GB"\ncount = 2\nmemory_gb = 80\ncost_per_hour = {A100_COST}\n\n'
               f'[[cluster.gpu_types]]\nname = "H100-80GB"\ncount = 2\nmemory_gb = 80\ncost_per_hour = {H100_COST}\n\n')
    toml = toml[:start] + cluster + toml[end:]
    toml = toml.replace('name = "paper-4xA100"', 'name = "stand-in-2xA100-2xH100"', 1)
    (folder / "instance.toml").write_text(toml)
    a100 = pd.read_csv(SOURCE / "profiles.csv")
    h100 = a100.copy()
    for column in [c for c in a100.columns if c.endswith("_ttft_ms")]:
        h100[column] = a100[column] * H100_TTFT_FACTOR
    table = pd.concat([a100.assign(gpu_type="A100-80GB"), h100.assign(gpu_type="H100-80GB")])
    table.to_csv(folder / "profiles.csv", index=False)
    (folder / "scores.csv").symlink_to(SOURCE / "scores.csv")
    return folder


def timed(solve):
    """(plan or the exception's class name and message, wall seconds)."""
    wall = time.perf_counter()
    try:
        result = solve()
    except (Infeasible, NoPlanInTime, TooLarge) as err:
        result = f"{type(err).__name__}: {err}"
    return result, time.perf_counter() - wall


def gpu_mix(instance, plan) -> str:
    used = {int(g) for gpus in plan.models.gpus for g in gpus}
    return " + ".join(f"{sum(g in used for g in t.gpus)} {t.name}" for t in instance.types)


def row(instance, objective: str, method: str, result, seconds: float) -> dict:
    if isinstance(result, str):
        return {"objective": objective, "method": method, "status": result[:70], "seconds": round(seconds, 2)}
    agrees = evaluate_plan(instance, result.to_dict()).consistent
    return {"objective": objective, "method": method, "status": result.solver.status, "seconds": round(seconds, 2),
            "quality": round(result.quality, 6), "cost_per_hour": result.cost_per_hour,
            "gpu_mix": gpu_mix(instance, result), "gap": result.solver.gap, "agrees": agrees}


def run(instance, min_qualities, time_limit: float | None) -> pd.DataFrame:
    rows = []
    print("quality objective: exact, then the heuristic", file=sys.stderr)
    exact, seconds = timed(lambda: solve_exact(instance, time_limit=time_limit, progress=True))
    rows.append(row(instance, "quality", "exact", exact, seconds))
    heuristic, seconds = timed(lambda: solve_heuristic(instance, time_limit=time_limit))
    rows.append(row(instance, "quality", "heuristic", heuristic, seconds))
    if not isinstance(exact, str) and not isinstance(heuristic, str):
        rows[-1]["below_exact"] = f"{100 * (1 - heuristic.quality / exact.quality):.3f}%"
    if min_qualities is None:
        best = exact.quality if not isinstance(exact, str) else 0.5
        min_qualities = [round(best - gap, 4) for gap in (0.03, 0.01, 0.002)]
    for floor in min_qualities:
        at = with_objective(instance, Objective("cost", floor))
        print(f"cost objective at min_quality {floor:g}: exact, then the heuristic", file=sys.stderr)
        for name, solve in (("exact", lambda: solve_exact(at, time_limit=time_limit, progress=True)),
                            ("heuristic", lambda: solve_heuristic(at, time_limit=time_limit))):
            result, seconds = timed(solve)
            rows.append(row(at, f"cost, Q >= {floor:g}", name, result, seconds))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--min-quality", type=float, nargs="+", metavar="Q",
                        help="qualities for the cost objective (default: exact's optimum - 0.03, - 0.01, - 0.002)")
    parser.add_argument("--time-limit", type=float, default=600.0, metavar="SECONDS",
                        help="per solve (default 600)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the stand-in instance here (default: a "
                        "temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.instance
        if not folder.is_dir():
            print(f"{folder} is absent: using a stand-in built from data/paper-4xA100 with H100 TTFT = "
                  f"{H100_TTFT_FACTOR} x A100 TTFT (assumed)")
            folder = write_stand_in((args.keep or Path(scratch)) / "stand-in-2xA100-2xH100")
        instance = load_instance(folder)
        print(f"instance {instance.name} ({folder}): {instance.gpu_type}, {instance.prompt_count:,} prompts, "
              f"{instance.arrival_rate_rps:g} requests/s, target {instance.slo_mean_ttft_ms:g} ms")
        table = run(instance, args.min_quality, args.time_limit)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, na_rep="-"))


if __name__ == "__main__":
    main()
