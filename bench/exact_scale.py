#!/usr/bin/env python3
"""Exact at cluster scale: time to proof against the heuristic on the family of bench/scale_instances.py.

    python bench/exact_scale.py [--rows NAME ...] [--time-limit SECONDS] [--keep DIR]

Every row's instance is written to a temporary folder (or DIR) at run time by
bench/scale_instances.py: (models, GPUs) = (3,4), (4,8), (6,16), (8,16), (8,32),
(12,32) at 36,000 prompts with a slack and a binding target each; paper-4xA100
with 300,000 and 1,000,000 prompts; 7 models of the same size on 8 GPUs with
tp in {1, 2, 4, 8}. For each row, in this one process, one after the other:

* `solve_exact(instance, time_limit=...)`: status, CPU and wall seconds to the
  proof (or the gap at the limit), MIP rounds, quality and mean TTFT (next to
  the target: a binding target shows as mean TTFT = target);
* `solve_heuristic(instance, time_limit=...)`: CPU seconds, quality, and how
  far below exact's quality it is (relative);
* exact / heuristic CPU time;
* the independent evaluator on exact's plan: CPU seconds of `evaluate_plan`
  and whether it agrees.

CPU seconds are `time.process_time()` of this process (HiGHS's threads
included), so other jobs on a shared machine count less than in wall time.
numpy's BLAS runs on one thread, as in `solve.py` (`one_blas_thread`: its
spinning threads doubled the CPU time of both methods, not their wall time).
Progress goes to stderr, with each row once it is done; the table to stdout. A row whose solve
fails shows the error, and the other rows still run.

Targets on 2 cores (issue 10): (8,32) proven optimal in 60 s or less; (12,32)
within 0.1% in 5 minutes; N = 1,000,000 exact in 60 s or less; exact at most
the heuristic's time on every row.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale_instances import FAMILY, write_case  # noqa: E402

from models.evaluation.evaluate import evaluate_plan  # noqa: E402
from models.methods.exact import solve_exact  # noqa: E402
from models.methods.heuristic import solve_heuristic  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.plan import Infeasible, NoPlanInTime, TooLarge  # noqa: E402
from models.problem.blas import one_blas_thread  # noqa: E402


def timed(solve):
    """(result or the exception's class name, CPU seconds, wall seconds)."""
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        result = solve()
    except (Infeasible, NoPlanInTime, TooLarge) as err:
        result = type(err).__name__
    return result, time.process_time() - cpu, time.perf_counter() - wall


def run_row(case, folder: Path, time_limit: float) -> dict:
    with contextlib.redirect_stdout(sys.stderr):  # the profiler's report on a case's curves is progress
        instance = load_instance(write_case(case, folder / case.name, folder))
    print(f"{case.name}: {instance.prompt_count} prompts, target {instance.slo_mean_ttft_ms:g} ms; exact ...",
          file=sys.stderr, flush=True)
    exact, exact_cpu, exact_wall = timed(lambda: solve_exact(instance, time_limit=time_limit))
    print(f"{case.name}: exact {exact_cpu:.1f} s CPU ({exact_wall:.1f} s wall); heuristic ...", file=sys.stderr,
          flush=True)
    heuristic, heuristic_cpu, heuristic_wall = timed(
        lambda: solve_heuristic(instance, time_limit=time_limit, progress=False))
    row = {"row": case.name, "M": len(instance.models), "GPUs": instance.gpu_count, "N": instance.prompt_count,
           "target ms": instance.slo_mean_ttft_ms}
    if isinstance(exact, str):
        row |= {"exact": exact, "exact CPU s": round(exact_cpu, 1), "exact wall s": round(exact_wall, 1)}
    else:
        cpu = time.process_time()
        evaluation = evaluate_plan(instance, exact.to_dict())
        row |= {
            "exact": exact.solver.status,
            "exact CPU s": round(exact_cpu, 1),
            "exact wall s": round(exact_wall, 1),
            "gap": exact.solver.gap,
            "rounds": exact.notes.get("mip_rounds"),
            "quality": round(exact.quality, 6),
            "TTFT ms": round(exact.mean_ttft_ms, 2),
            "evaluator": "ok" if evaluation.consistent else "REJECTED",
            "eval CPU s": round(time.process_time() - cpu, 2),
        }
    if isinstance(heuristic, str):  # refused or no plan: no time to compare with
        row |= {"heur": heuristic, "heur CPU s": round(heuristic_cpu, 1)}
    else:
        row |= {"heur": heuristic.solver.status, "heur CPU s": round(heuristic_cpu, 1),
                "heur quality": round(heuristic.quality, 6),
                "exact/heur CPU": round(exact_cpu / max(heuristic_cpu, 1e-9), 2)}
        if not isinstance(exact, str):
            row["heur below"] = f"{(exact.quality - heuristic.quality) / exact.quality:.2e}"
    print(f"{case.name}: heuristic {heuristic_cpu:.1f} s CPU ({heuristic_wall:.1f} s wall)", file=sys.stderr,
          flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", metavar="NAME", help="rows to run (default: all): "
                        + ", ".join(case.name for case in FAMILY))
    parser.add_argument("--time-limit", type=float, default=300.0, metavar="SECONDS",
                        help="per row and method (default 300)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write the instances here and keep them")
    args = parser.parse_args(argv)
    cases = [case for case in FAMILY if not args.rows or case.name in args.rows]
    unknown = set(args.rows or ()) - {case.name for case in FAMILY}
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch, one_blas_thread():
        folder = args.keep or Path(scratch)
        for case in cases:
            try:
                rows.append(run_row(case, folder, args.time_limit))
            except KeyError as err:  # a rate or target not derived yet (bench/scale_instances.py --derive)
                print(f"{case.name}: skipped: {err}", file=sys.stderr, flush=True)
                rows.append({"row": case.name, "exact": "not derived"})
            except Exception as err:  # a failure is a result of this row; the other rows still run
                traceback.print_exc()
                rows.append({"row": case.name, "exact": f"failed: {type(err).__name__}: {err}"})
            print(pd.DataFrame(rows[-1:]).to_string(index=False), file=sys.stderr, flush=True)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(pd.DataFrame(rows).astype(object).fillna("-").to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
