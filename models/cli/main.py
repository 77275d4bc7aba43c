"""The planner's command line.

    python solve.py [INSTANCE_DIR] [--method NAME|all] [--time-limit SECONDS] [--out PLAN.json]
                    [--out-dir DIR] [--plot DIR] [--export DIR] [--threads N] [--mip-gap GAP]
                    [--formulation cuts|per-prompt] [--write-model FILE.lp]
                    [--utilization-floor FRACTION] [--spread]
    python solve.py sweep INSTANCE_DIR --slo-ms A:B:STEP [--methods NAME,...] [--plot DIR]
    python solve.py profile INSTANCE_DIR --table llama.json --trace TRACE.csv ...

With no instance it solves the default shipped instance with every method and
prints the comparison (`--method all`). `sweep` solves at a range of mean-TTFT
targets and writes the quality frontier (CSV and PNG); `profile` builds latency
curves from measured step times (`python solve.py profile --help`).

Exit status: 0 a plan was found; 1 internal error; 2 bad input or usage; 3 no
feasible plan (or the method's plan breaks the SLO); 4 the time limit passed
with no plan.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from models.methods.brute_force import TooLarge
from models.cli.args import (EXIT_USAGE, OneLineParser, fraction, headroom_fraction, non_negative_int, positive_float,
                             positive_int)
from models.analysis.compare import compare, format_comparison
from models.evaluation.evaluate import evaluate_plan
from models.output.export import ExportError, write_export
from models.methods.heuristic import DEFAULT_UTILIZATION_FLOOR, format_spread, search_summary, setup_spread
from models.problem.instance import InputError, load_instance
from models.methods.registry import METHODS, SolveOptions
from models.problem.plan import Infeasible, NoPlanInTime, write_plan
from models.output.plots import write_plots
from models.cli import profile as profile_cli
from models.cli import route as route_cli
from models.analysis.robustness import DEFAULT_SEED, DEFAULT_WINDOW, format_robustness, robustness
from models.output.report import format_plan, format_realized
from models.problem.realized import realized_routing
from models.problem.solver import DEFAULT_MIP_GAP
from models.analysis.sweep import DEFAULT_METHODS, SWEEP_METHODS, frontier, parse_targets, run_sweep, write_sweep

DEFAULT_INSTANCE = Path(__file__).resolve().parents[2] / "data" / "paper-4xA100"

EXIT_PLAN, EXIT_INTERNAL, EXIT_INFEASIBLE, EXIT_NO_PLAN_IN_TIME = 0, 1, 3, 4


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", nargs="?", type=Path, help="instance folder (SPEC section 2)")
    parser.add_argument("--method", choices=sorted(METHODS) + ["all"],
                        help="solution method, or all of them (default: exact; all with no instance)")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS")
    parser.add_argument("--out", type=Path, metavar="PLAN.json", help="write the plan (SPEC section 3)")
    parser.add_argument("--out-dir", type=Path, metavar="DIR", help="--method all: write each method's plan")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="write the plan's GPU map and latency curves (PNG)")
    parser.add_argument("--export", type=Path, metavar="DIR", help="write launch.sh, plan.json, LiteLLM config, README")
    parser.add_argument("--threads", type=positive_int, default=None, help="HiGHS threads (default: HiGHS decides)")
    parser.add_argument("--mip-gap", type=positive_float, default=DEFAULT_MIP_GAP, metavar="GAP",
                        help=f"relative gap at which exact stops as optimal (default {DEFAULT_MIP_GAP:g})")
    parser.add_argument("--formulation", choices=("cuts", "per-prompt"), default="cuts",
                        help="exact: quality by dual-price cuts (default) or one routing variable per prompt")
    parser.add_argument("--write-model", metavar="FILE.lp", help="exact: write the MIP (.lp or .mps) as solved")
    parser.add_argument("--utilization-floor", type=fraction, default=DEFAULT_UTILIZATION_FLOOR, metavar="FRACTION",
                        help="heuristic and fixed-latency: keep setups using at least this fraction of the "
                             f"cluster's compute (default {DEFAULT_UTILIZATION_FLOOR:g}, the paper's rule)")
    parser.add_argument("--headroom", type=headroom_fraction, default=None, metavar="FRACTION",
                        help="plan no model above (1 - FRACTION) of the highest load its option sustains "
                             "(SPEC 4.1; default: the instance's workload.headroom, 0 if absent)")
    parser.add_argument("--window", type=positive_int, default=DEFAULT_WINDOW, metavar="REQUESTS",
                        help="robustness: the window of requests over which each model's load is bootstrapped "
                             f"(default {DEFAULT_WINDOW})")
    parser.add_argument("--bootstrap-seed", type=non_negative_int, default=DEFAULT_SEED, metavar="SEED",
                        help=f"robustness: the bootstrap's seed (default {DEFAULT_SEED})")
    parser.add_argument("--spread", action="store_true",
                        help="also report the best and worst quality over the setups pruning keeps (the "
                             "paper's spread statistic, from the heuristic's inner solver)")
    args = parser.parse_args(argv)
    if args.write_model and not args.write_model.endswith((".lp", ".mps")):
        parser.error(f"--write-model {args.write_model}: the file name must end in .lp or .mps")
    if args.method is None:
        args.method = "all" if args.instance is None else "exact"
    if args.method == "all" and (args.plot or args.export or args.out):
        parser.error("--plot, --export and --out take one method's plan; with --method all use --out-dir")
    return args


def solve_options(args) -> SolveOptions:
    return SolveOptions(time_limit=args.time_limit, threads=args.threads, mip_gap=args.mip_gap,
                        per_prompt=args.formulation == "per-prompt", write_model=args.write_model,
                        progress=sys.stderr.isatty(), utilization_floor=args.utilization_floor)


def error(message: str, status: int) -> int:
    print(message, file=sys.stderr)
    return status


def run_method(instance, name: str, args) -> int:
    """Solve with one method, check the plan independently, print it, write it; return the exit status."""
    try:
        plan = METHODS[name](instance, solve_options(args))
    except Infeasible as err:
        return error(f"infeasible: {err}", EXIT_INFEASIBLE)
    except NoPlanInTime as err:
        return error(f"time limit: {err}", EXIT_NO_PLAN_IN_TIME)
    except TooLarge as err:
        return error(f"error: {err}", EXIT_USAGE)
    evaluation = evaluate_plan(instance, plan.to_dict())
    print(format_plan(plan, evaluation))
    if plan.method == "heuristic":
        print(search_summary(plan.notes))
    realized = realized_routing(instance, plan)
    print(format_realized(realized, len(plan.routing.splits)))
    robust = robustness(instance, plan, args.window, seed=args.bootstrap_seed)
    print(format_robustness(robust, instance.arrival_rate_rps))
    plan = dataclasses.replace(plan, notes={**plan.notes, "robustness": robust.notes()})
    if args.plot:
        for path in write_plots(instance, plan, args.plot):
            print(f"plot: {path}", file=sys.stderr)
    if plan.solver.status == "infeasible":
        return error(f"infeasible: {name} breaks the SLO: predicted mean TTFT {plan.mean_ttft_ms:.2f} ms "
                     f"> target {plan.slo_ms:g} ms; it is a reference, not a plan", EXIT_INFEASIBLE)
    if realized.refusal():
        return error(f"infeasible: the {name} plan is not returned: {realized.refusal()}", EXIT_INFEASIBLE)
    if not evaluation.consistent:
        return error(f"internal error: the independent evaluator rejects the {name} plan; not returned",
                     EXIT_INTERNAL)
    if args.out:
        write_plan(plan, args.out)
    if args.export:
        try:
            for path in write_export(instance, plan, args.export):
                print(f"export: {path}", file=sys.stderr)
        except ExportError as err:
            return error(f"error: {err}", EXIT_INFEASIBLE)
    return EXIT_PLAN


def run_all(instance, args) -> int:
    """Every method, one comparison table; exit 0 when some method found a feasible plan."""
    table, outcomes = compare(instance, list(METHODS), solve_options(args), args.out_dir,
                              progress=sys.stderr.isatty())
    print(format_comparison(instance, table, outcomes))
    if any(o.evaluator_agrees is False or o.status == "error" for o in outcomes):
        return error("internal error: a method failed or the evaluator rejects a plan (see the table)",
                     EXIT_INTERNAL)
    if any(o.is_solution for o in outcomes):
        return EXIT_PLAN
    if any(o.status == "no plan in time" for o in outcomes):
        return EXIT_NO_PLAN_IN_TIME
    return EXIT_INFEASIBLE


def method_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    unknown = [n for n in names if n not in SWEEP_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: unknown {', '.join(unknown)} (known: {', '.join(SWEEP_METHODS)})")
    return names


def sweep_main(argv) -> int:
    parser = OneLineParser(prog="solve.py sweep", description="quality vs mean-TTFT target: CSV and frontier PNG")
    parser.add_argument("instance", type=Path)
    parser.add_argument("--slo-ms", type=parse_targets, required=True, metavar="A:B:STEP")
    parser.add_argument("--methods", type=method_list, default=DEFAULT_METHODS, metavar="NAME,...")
    parser.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS", help="per solve")
    parser.add_argument("--plot", type=Path, default=Path("."), metavar="DIR",
                        help="folder for <instance>-sweep.csv and <instance>-frontier.png")
    args = parser.parse_args(argv)
    try:
        instance = load_instance(args.instance)
    except InputError as err:
        return error(f"error: {err}", EXIT_USAGE)
    table = run_sweep(instance, args.slo_ms, args.methods, time_limit=args.time_limit,
                      progress=sys.stderr.isatty())
    print(frontier(table).to_string())
    try:
        for path in write_sweep(table, args.plot):
            print(path)
    except OSError as err:
        return error(f"error: {err.filename}: {err.strerror}", EXIT_USAGE)
    if (table.status == "error").any() or (table.status == "rejected").any():
        return error("internal error: a method failed or the evaluator rejected a plan (see the CSV)", EXIT_INTERNAL)
    return EXIT_PLAN if table.quality.notna().any() else EXIT_INFEASIBLE


SUBCOMMANDS = {"profile": profile_cli.main, "sweep": sweep_main, "route": route_cli.main}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    try:
        args = parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return stop.code
    try:
        instance = load_instance(args.instance or DEFAULT_INSTANCE)
    except InputError as err:
        return error(f"error: {err}", EXIT_USAGE)
    if args.headroom is not None:
        instance = dataclasses.replace(instance, headroom=args.headroom)
    try:
        status = run_all(instance, args) if args.method == "all" else run_method(instance, args.method, args)
    except OSError as err:  # an output path that cannot be written
        return error(f"error: {err.filename}: {err.strerror}", EXIT_USAGE)
    if args.spread:
        print(format_spread(setup_spread(instance, utilization_floor=args.utilization_floor), args.utilization_floor))
    return status


if __name__ == "__main__":
    sys.exit(main())
