"""`solve.py sweep`: scenario planning, one solve per (GPU counts, load scale, headroom, target, method).

    solve.py sweep INSTANCE_DIR --slo-ms A:B:STEP [--load-scale A:B:STEP] [--headroom H,...]
                   [--gpu-counts TYPE=A:B ...] [--methods NAME,...] [--time-limit SECONDS]
                   [--engine local|ray] [--ray-address ADDRESS] [--resume CSV] [--plot DIR]
                   [--table-out FILE.csv|FILE.json] [--quiet]

Writes `<instance>-sweep.csv` into --plot's folder as the scenarios finish (in
scenario order), then the frontier as PNG (one per GPU counts, load scale and
headroom when there are several), and prints the frontier ('*' marks a plan
cut by a time limit, and a note follows when a plan of a smaller target beats
it). Ctrl-C stops the sweep and keeps the finished rows; `--resume` with that
CSV solves only the rest. Exit status as `solve.py`'s: 0 some plan found, 1 a
method failed or the evaluator rejected a plan, 2 bad input or usage, 3 no
plan in any scenario, 130 interrupted (the finished rows kept).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli.args import (EXIT_USAGE, OneLineParser, add_engine_arguments, check_writable_dir, check_writable_file,
                             chosen_engine, existing_file, headroom_list, parse_gpu_counts, parse_load_scales,
                             parse_targets, positive_float, program, table_file)
from models.methods.registry import SOLVING_METHODS

EXIT_PLAN, EXIT_INTERNAL, EXIT_INFEASIBLE = 0, 1, 3


def method_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    unknown = [n for n in names if n not in SOLVING_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: unknown {', '.join(unknown)} "
                                         f"(known: {', '.join(SOLVING_METHODS)})")
    return names


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(prog=program("sweep"), description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", type=Path, help="instance folder (docs/spec.md section 2)")
    parser.add_argument("--slo-ms", type=parse_targets, required=True, metavar="A:B:STEP",
                        help="mean-TTFT targets a, a + step, ..., b (ms)")
    parser.add_argument("--load-scale", type=parse_load_scales, default=(1.0,), metavar="A:B:STEP",
                        help="factors a, a + step, ..., b the arrival rate is multiplied by (default: 1, the "
                             "instance's rate)")
    parser.add_argument("--headroom", type=headroom_list, metavar="H,...",
                        help="headrooms, fractions in [0, 1) (SPEC 4.1; default: the instance's)")
    parser.add_argument("--gpu-counts", type=parse_gpu_counts, action="append", default=[], metavar="TYPE=A:B",
                        help="with GPU types (SPEC 4.4): sweep the count of GPUs of TYPE over a..b, once per type "
                             "(repeat for more types; the grid is their product, less combinations with no GPU; "
                             "default: the instance's counts)")
    parser.add_argument("--methods", type=method_list, default=SOLVING_METHODS, metavar="NAME,...",
                        help=f"methods to solve with (default: {','.join(SOLVING_METHODS)})")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                        help="time limit of each solve (default: none)")
    add_engine_arguments(parser, "scenario")
    parser.add_argument("--resume", type=existing_file, metavar="CSV",
                        help="an earlier sweep's CSV of this instance: its scenarios are not solved again, but "
                             "for error rows (default: solve every scenario)")
    parser.add_argument("--plot", type=Path, default=Path("."), metavar="DIR",
                        help="folder for <instance>-sweep.csv and the frontier PNGs (default: .)")
    parser.add_argument("--table-out", type=table_file, metavar="FILE.csv|FILE.json",
                        help="also write the table to this file, CSV or JSON by its suffix (default: not)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress on stderr (default: progress shown, with the time left)")
    args = parser.parse_args(argv)
    args.engine = chosen_engine(args, parser)
    try:
        check_writable_dir(args.plot)
        if args.table_out:
            check_writable_file(args.table_out)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    return args


def main(argv) -> int:
    from models.analysis.compare import write_table
    from models.analysis.sweep import format_frontier, gpu_count_grid, run_sweep, sweep_csv_path, write_sweep
    from models.cli.main import EXIT_INTERRUPTED
    from models.problem.instance import InputError, load_instance
    from models.problem.interrupts import Interrupted
    from models.problem.tasks import EngineError

    args = parse_args(argv)
    try:
        instance = load_instance(args.instance)
    except InputError as err:
        return error(str(err), EXIT_USAGE)
    try:
        gpu_counts = gpu_count_grid(instance, args.gpu_counts) if args.gpu_counts else [()]
    except ValueError as err:
        return error(f"argument --gpu-counts: {err}", EXIT_USAGE)
    args.plot.mkdir(parents=True, exist_ok=True)
    csv_path = sweep_csv_path(args.plot, instance.name)
    try:
        table = run_sweep(instance, args.slo_ms, args.methods, time_limit=args.time_limit, progress=not args.quiet,
                          load_scales=args.load_scale, headrooms=args.headroom, gpu_counts=gpu_counts,
                          engine=args.engine, csv_path=csv_path, resume=args.resume)
    except InputError as err:
        return error(f"--resume {err}", EXIT_USAGE)
    except EngineError as err:
        return error(f"--engine ray: {err}", EXIT_USAGE)
    except (KeyboardInterrupt, Interrupted):
        return error(f"interrupted: the finished scenarios are in {csv_path}; "
                     f"--resume {csv_path} solves the rest", EXIT_INTERRUPTED)
    print(format_frontier(table, instance.objective.kind))
    for path in write_sweep(table, args.plot):
        print(path)
    if args.table_out:
        print(write_table(table, args.table_out))
    if table.status.isin(("error", "rejected")).any():
        print("internal error: a method failed or the evaluator rejected a plan (see the CSV)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_PLAN if table.quality.notna().any() else EXIT_INFEASIBLE


def error(message: str, status: int) -> int:
    print(f"error: {message}" if status == EXIT_USAGE else message, file=sys.stderr)
    return status
