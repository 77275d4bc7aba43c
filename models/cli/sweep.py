"""`solve.py sweep`: quality against the mean-TTFT target, one solve per (target, method).

    solve.py sweep INSTANCE_DIR --slo-ms A:B:STEP [--methods NAME,...] [--time-limit SECONDS]
                   [--plot DIR] [--table-out FILE.csv|FILE.json] [--quiet]

Writes `<instance>-sweep.csv` and `<instance>-frontier.png` into --plot's folder
and prints the frontier. Exit status as `solve.py`'s: 0 some plan found, 1 a
method failed or the evaluator rejected a plan, 2 bad input or usage, 3 no plan
at any target.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli.args import (EXIT_USAGE, OneLineParser, check_writable_dir, check_writable_file, parse_targets,
                             positive_float, program, table_file)
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
    parser.add_argument("--methods", type=method_list, default=SOLVING_METHODS, metavar="NAME,...",
                        help=f"methods to solve with (default: {','.join(SOLVING_METHODS)})")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                        help="time limit of each solve (default: none)")
    parser.add_argument("--plot", type=Path, default=Path("."), metavar="DIR",
                        help="folder for <instance>-sweep.csv and <instance>-frontier.png (default: .)")
    parser.add_argument("--table-out", type=table_file, metavar="FILE.csv|FILE.json",
                        help="also write the table to this file, CSV or JSON by its suffix (default: not)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr (default: progress shown)")
    args = parser.parse_args(argv)
    try:
        check_writable_dir(args.plot)
        if args.table_out:
            check_writable_file(args.table_out)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    return args


def main(argv) -> int:
    from models.analysis.compare import write_table
    from models.analysis.sweep import format_frontier, run_sweep, write_sweep
    from models.problem.instance import InputError, load_instance

    args = parse_args(argv)
    try:
        instance = load_instance(args.instance)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    table = run_sweep(instance, args.slo_ms, args.methods, time_limit=args.time_limit, progress=not args.quiet)
    print(format_frontier(table))
    for path in write_sweep(table, args.plot):
        print(path)
    if args.table_out:
        print(write_table(table, args.table_out))
    if table.status.isin(("error", "rejected")).any():
        print("internal error: a method failed or the evaluator rejected a plan (see the CSV)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_PLAN if table.quality.notna().any() else EXIT_INFEASIBLE
