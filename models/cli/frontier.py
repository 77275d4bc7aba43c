"""`solve.py frontier`: the least hourly cost of the GPUs in use against the quality required (SPEC 4.4).

    solve.py frontier INSTANCE_DIR --quality A:B:STEP [--time-limit SECONDS] [--plot DIR] [--quiet]

Solves the cost objective with `exact` at each quality, checks every plan with the independent evaluator,
writes `<instance>-cost-frontier.csv` and `<instance>-cost-frontier.png` into --plot's folder and prints
the frontier with each point's GPU mix (GPUs in use per type). Progress goes to stderr. Exit status as
`solve.py`'s: 0 some quality has a plan, 1 a solve failed or the evaluator rejected a plan, 2 bad input or
usage (the instance needs a cost_per_hour for every GPU type), 3 no quality has a plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli.args import EXIT_USAGE, OneLineParser, check_writable_dir, parse_qualities, positive_float, program

EXIT_PLAN, EXIT_INTERNAL, EXIT_INFEASIBLE = 0, 1, 3


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(prog=program("frontier"), description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", type=Path, help="instance folder with GPU types and their costs (SPEC 4.4)")
    parser.add_argument("--quality", type=parse_qualities, required=True, metavar="A:B:STEP",
                        help="qualities required: a, a + step, ..., b (in [0, 1])")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                        help="time limit of each solve (default: none)")
    parser.add_argument("--plot", type=Path, default=Path("."), metavar="DIR",
                        help="folder for <instance>-cost-frontier.csv and .png (default: .)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr (default: progress shown)")
    args = parser.parse_args(argv)
    try:
        check_writable_dir(args.plot)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    return args


def main(argv) -> int:
    from models.analysis.cost_frontier import cost_frontier, format_cost_frontier, write_cost_frontier
    from models.problem.instance import InputError, Objective, load_instance, with_objective

    args = parse_args(argv)
    try:
        instance = load_instance(args.instance)
        with_objective(instance, Objective("cost", args.quality[0]))  # every GPU type has a cost
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    table = cost_frontier(instance, args.quality, time_limit=args.time_limit, progress=not args.quiet)
    print(format_cost_frontier(table))
    for path in write_cost_frontier(table, args.plot):
        print(path)
    if table.status.isin(("error", "rejected")).any():
        print("internal error: a solve failed or the evaluator rejected a plan (see the CSV)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_PLAN if table.cost_per_hour.notna().any() else EXIT_INFEASIBLE
