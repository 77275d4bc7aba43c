"""The planner's command line (`solve.py`, installed as `routerplan`).

    routerplan [INSTANCE_DIR] [--method NAME|all] [options]     solve, check, report, write
    routerplan sweep INSTANCE_DIR --slo-ms A:B:STEP ...           quality against the target
    routerplan profile INSTANCE_DIR --table llama.json ...        latency curves from step times
    routerplan route PLAN.json --instance DIR ...                 serve the plan as an HTTP router
    routerplan frontier INSTANCE_DIR --quality A:B:STEP ...       cheapest GPUs against quality

With no instance it solves the default shipped instance with every method and
prints the comparison (`--method all`). Every plan is checked by the
independent evaluator, its published routing is applied to the instance's
prompts, and its robustness is bootstrapped before it is printed or written.

Exit status: 0 a plan was found; 1 internal error; 2 bad input or usage (one
line on stderr naming the file, row or field); 3 no feasible plan, or the
method's plan breaks the target or its own routing does (nothing is written);
4 the time limit passed with no plan; 130 interrupted (Ctrl-C; nothing
written).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

from models.cli.args import (EXIT_USAGE, OneLineParser, check_writable_dir, check_writable_file, fraction,
                             headroom_fraction, non_negative_float, non_negative_int, positive_float, positive_int,
                             program, table_file)
from models.methods.registry import APPLIES, METHOD_NAMES, REPLANNING_METHODS, SolveOptions
from models.problem.defaults import (DEFAULT_BOOTSTRAP_SEED, DEFAULT_MIP_GAP, DEFAULT_UTILIZATION_FLOOR,
                                     DEFAULT_WINDOW)

DEFAULT_INSTANCE = Path(__file__).resolve().parents[2] / "data" / "paper-4xA100"

EXIT_PLAN, EXIT_INTERNAL, EXIT_INFEASIBLE, EXIT_NO_PLAN_IN_TIME = 0, 1, 3, 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader went away; nothing is printed

# Method options: the flag, the SolveOptions field and its value when the flag is absent.
METHOD_FLAGS = {
    "--time-limit": ("time_limit", None),
    "--threads": ("threads", None),
    "--mip-gap": ("mip_gap", DEFAULT_MIP_GAP),
    "--formulation": ("per_prompt", "cuts"),
    "--placement": ("placement", "auto"),
    "--write-model": ("write_model", None),
    "--utilization-floor": ("utilization_floor", DEFAULT_UTILIZATION_FLOOR),
}


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(prog=program(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", nargs="?", type=Path,
                        help="instance folder (docs/spec.md section 2; default: data/paper-4xA100 with --method all)")
    parser.add_argument("--method", choices=METHOD_NAMES + ("all",),
                        help="solution method, or all of them (default: exact; all with no instance)")
    parser.add_argument("--time-limit", type=positive_float, metavar="SECONDS",
                        help="stop the method after this many seconds (default: none); exact then reports its best "
                             "plan with the bound and gap")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="HiGHS threads (default: HiGHS decides)")
    parser.add_argument("--mip-gap", type=positive_float, metavar="GAP",
                        help=f"exact: relative gap at which it stops as optimal (default {DEFAULT_MIP_GAP:g})")
    parser.add_argument("--formulation", choices=("cuts", "per-prompt"),
                        help="exact: quality by dual-price cuts, or one routing variable per prompt, the textbook "
                             "form (default: cuts)")
    parser.add_argument("--placement", choices=("auto", "patterns", "per-gpu"),
                        help="exact: GPU placement by counts of GPU patterns (no GPU symmetry), or a binary per "
                             "option and GPU, the textbook form (default: auto, per-gpu on up to 4 GPUs, "
                             "else patterns; auto first tries the widest setup, which may prove optimality "
                             "without the MIP)")
    parser.add_argument("--write-model", metavar="FILE.lp",
                        help="exact: write the MIP as solved, cuts included (.lp or .mps; default: not written)")
    parser.add_argument("--utilization-floor", type=fraction, metavar="FRACTION",
                        help="heuristic and fixed-latency: keep setups using at least this fraction of the cluster's "
                             f"compute (default {DEFAULT_UTILIZATION_FLOOR:g}, the paper's rule)")
    parser.add_argument("--headroom", type=headroom_fraction, metavar="FRACTION",
                        help="plan no model above (1 - FRACTION) of the highest load its option sustains "
                             "(SPEC 4.1; default: the instance's workload.headroom, 0 if absent)")
    parser.add_argument("--from", dest="from_plan", type=Path, metavar="CURRENT_PLAN.json",
                        help="re-plan from this running plan of the same instance, maximizing quality - C x moves, "
                             "a move being a shard not in the current plan with the same model, option and GPU "
                             "(SPEC 4.7; exact and enumerate; default: plan from scratch)")
    parser.add_argument("--move-cost", type=non_negative_float, metavar="C",
                        help="with --from: quality given up per shard started (default 0: report the changes only)")
    parser.add_argument("--objective", choices=("quality", "cost"),
                        help="maximize quality, or minimize the hourly cost of the GPUs in use subject to quality >= "
                             "--min-quality (SPEC 4.4; default: the instance's [objective], quality if absent)")
    parser.add_argument("--min-quality", type=fraction, metavar="Q",
                        help="with the cost objective: the least mean predicted quality (default: the instance's "
                             "objective.min_quality)")
    parser.add_argument("--window", type=positive_int, default=DEFAULT_WINDOW, metavar="REQUESTS",
                        help="robustness: the window of requests over which each model's load is bootstrapped "
                             f"(default {DEFAULT_WINDOW})")
    parser.add_argument("--bootstrap-seed", type=non_negative_int, default=DEFAULT_BOOTSTRAP_SEED, metavar="SEED",
                        help=f"robustness: the bootstrap's seed (default {DEFAULT_BOOTSTRAP_SEED})")
    parser.add_argument("--out", type=Path, metavar="PLAN.json", help="write the plan (SPEC section 3; default: not)")
    parser.add_argument("--out-dir", type=Path, metavar="DIR",
                        help="--method all: write each method's plan as DIR/METHOD.json (default: not)")
    parser.add_argument("--table-out", type=table_file, metavar="FILE.csv|FILE.json",
                        help="--method all: write the comparison table as CSV or JSON (default: not)")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="write the plan's GPU map and latency curves as PNG into DIR (default: not)")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="write the deployment into DIR: launch.sh, plan.json, a LiteLLM config and a README "
                             "(docs/deploy.md; default: not)")
    parser.add_argument("--spread", action="store_true",
                        help="also report the best and worst quality over the setups pruning keeps (the paper's "
                             "spread statistic, from the heuristic's inner solver)")
    parser.add_argument("--verbose", action="store_true", help="show HiGHS's own output (default: quiet)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr (default: progress shown)")
    args = parser.parse_args(argv)
    if args.write_model and not args.write_model.endswith((".lp", ".mps")):
        parser.error(f"--write-model {args.write_model}: the file name must end in .lp or .mps")
    if args.method is None:
        args.method = "all" if args.instance is None else "exact"
    if args.method == "all" and (args.plot or args.export or args.out):
        parser.error("--plot, --export and --out take one method's plan; with --method all use --out-dir")
    if args.method != "all" and (args.out_dir or args.table_out):
        parser.error("--out-dir and --table-out take --method all's plans and table; with one method use --out")
    if args.move_cost is not None and args.from_plan is None:
        parser.error("--move-cost needs --from CURRENT_PLAN.json")
    if args.from_plan is not None and args.method not in REPLANNING_METHODS:
        parser.error(f"--from: method {args.method} does not re-plan from a running plan; "
                     f"{' and '.join(REPLANNING_METHODS)} do")
    check_output_paths(args, parser)
    return args


def check_output_paths(args, parser) -> None:
    """Every output path can be written, checked before any solving."""
    try:
        for path in (args.out, args.table_out, args.write_model and Path(args.write_model)):
            if path:
                check_writable_file(path)
        for folder in (args.out_dir, args.plot, args.export):
            if folder:
                check_writable_dir(folder)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))


def not_applying(args) -> list[str]:
    """One warning per method option given that the chosen method does not read."""
    if args.method == "all":
        return []
    warnings = []
    for flag, (field, default) in METHOD_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value != default and field not in APPLIES[args.method]:
            warnings.append(f"warning: {flag} does not apply to method {args.method}; ignored")
    if args.from_plan is not None and args.placement == "patterns":
        warnings.append("warning: --placement patterns does not apply with --from: exact re-plans on the per-GPU "
                        "placement, which knows which GPU holds which shard")
    return warnings


def solve_options(args, replanning=None) -> SolveOptions:
    given = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _) in METHOD_FLAGS.items()}
    given["per_prompt"] = given["per_prompt"] == "per-prompt"
    given = {field: value for field, value in given.items() if value is not None}
    return SolveOptions(**given, progress=not args.quiet, tee=args.verbose, replanning=replanning)


def error(message: str, status: int) -> int:
    print(message, file=sys.stderr)
    return status


def report_and_gate(instance, plan, args):
    """Check, print and gate one plan: the evaluator, the realized routing, the robustness bootstrap.
    Returns the plan (with its robustness note) and the exit status."""
    from models.analysis.robustness import format_robustness, robustness
    from models.evaluation.evaluate import evaluate_plan
    from models.methods.heuristic import search_summary
    from models.output.report import format_plan, format_realized
    from models.problem.realized import realized_routing

    evaluation = evaluate_plan(instance, plan.to_dict())
    print(format_plan(plan, evaluation))
    if plan.method == "heuristic":
        print(search_summary(plan.notes))
    realized = realized_routing(instance, plan)
    print(format_realized(realized, len(plan.routing.splits)))
    robust = robustness(instance, plan, args.window, seed=args.bootstrap_seed)
    print(format_robustness(robust, instance.arrival_rate_rps))
    plan = dataclasses.replace(plan, notes={**plan.notes, "robustness": robust.notes()})
    if plan.solver.status == "infeasible":
        over = "" if math.isfinite(plan.mean_ttft_ms) else " (a model's load passes its capacity or tail bound)"
        return plan, error(f"infeasible: {plan.method} breaks the SLO: predicted mean TTFT {plan.mean_ttft_ms:.2f} ms "
                           f"> target {plan.slo_ms:g} ms{over}; it is a reference, not a plan", EXIT_INFEASIBLE)
    if realized.refusal():
        return plan, error(f"infeasible: the {plan.method} plan is not returned: {realized.refusal()}",
                           EXIT_INFEASIBLE)
    if not evaluation.consistent:
        return plan, error(f"internal error: the independent evaluator rejects the {plan.method} plan; not returned",
                           EXIT_INTERNAL)
    return plan, EXIT_PLAN


def run_one(instance, name: str, args, replanning=None) -> int:
    """Solve with one method (re-planning, with `replanning`), check the plan independently, print it, write it;
    return the exit status."""
    from models.methods.registry import run_method
    from models.output.export import ExportError, write_export
    from models.output.plots import write_plots
    from models.problem.plan import Infeasible, NoPlanInTime, TooLarge, write_plan

    try:
        plan = run_method(name, instance, solve_options(args, replanning))
    except Infeasible as err:
        return error(f"infeasible: {err}", EXIT_INFEASIBLE)
    except NoPlanInTime as err:
        return error(f"time limit: {err}", EXIT_NO_PLAN_IN_TIME)
    except TooLarge as err:
        return error(f"error: {err}", EXIT_USAGE)
    plan, status = report_and_gate(instance, plan, args)
    if args.plot:
        for path in write_plots(instance, plan, args.plot):
            print(f"plot: {path}", file=sys.stderr)
    if status != EXIT_PLAN:
        return status
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
    from models.analysis.compare import compare, format_comparison, write_table

    table, outcomes = compare(instance, list(METHOD_NAMES), solve_options(args), args.out_dir)
    print(format_comparison(instance, table, outcomes))
    if args.table_out:
        write_table(table, args.table_out)
    if any(o.evaluator_agrees is False or o.status == "error" for o in outcomes):
        return error("internal error: a method failed or the evaluator rejects a plan (see the table)",
                     EXIT_INTERNAL)
    if any(o.is_solution for o in outcomes):
        return EXIT_PLAN
    if any(o.status == "no plan in time" for o in outcomes):
        return EXIT_NO_PLAN_IN_TIME
    return EXIT_INFEASIBLE


def objective_of(instance, args):
    """The instance with the objective of --objective and --min-quality, which override its [objective]."""
    from models.problem.instance import InputError, Objective, with_objective

    kind = args.objective or instance.objective.kind
    if kind != "cost":
        if args.min_quality is not None:
            raise InputError("--min-quality: read only with the cost objective (--objective cost)")
        return with_objective(instance, Objective())
    floor = instance.objective.min_quality if args.min_quality is None else args.min_quality
    if floor is None:
        raise InputError("--objective cost: needs --min-quality (the instance gives no objective.min_quality)")
    return with_objective(instance, Objective("cost", floor))


def solve_main(argv) -> int:
    args = parse_args(argv)
    for warning in not_applying(args):
        print(warning, file=sys.stderr)
    from models.problem.instance import InputError, load_instance
    from models.problem.plan import PlanError

    try:
        instance = load_instance(args.instance or DEFAULT_INSTANCE)
    except InputError as err:
        return error(f"error: {err}", EXIT_USAGE)
    if args.headroom is not None:
        instance = dataclasses.replace(instance, headroom=args.headroom)
    try:
        instance = objective_of(instance, args)
        replanning = current_replanning(args, instance)
    except (InputError, PlanError) as err:
        return error(f"error: {err}", EXIT_USAGE)
    status = run_all(instance, args) if args.method == "all" else run_one(instance, args.method, args, replanning)
    if args.spread:
        from models.methods.heuristic import format_spread, setup_spread

        floor = DEFAULT_UTILIZATION_FLOOR if args.utilization_floor is None else args.utilization_floor
        print(format_spread(setup_spread(instance, utilization_floor=floor, progress=not args.quiet), floor))
    return status


def current_replanning(args, instance):
    """`--from` and `--move-cost` as a `Replanning`: the current plan's shards, read with `read_plan` (a plan of
    another instance is a `PlanError`), and the move cost; None without `--from`."""
    if args.from_plan is None:
        return None
    if instance.typed or instance.objective.kind == "cost":
        from models.problem.instance import InputError

        raise InputError("--from: re-planning (SPEC 4.7) is implemented for one GPU type and the quality objective "
                         "only, not with cluster.gpu_types or the cost objective")
    from models.problem.moves import Replanning, running_shards
    from models.problem.plan import read_plan

    current = read_plan(args.from_plan, instance)
    return Replanning(running_shards(instance.model_names, current.replicas, current.replica_placement),
                      args.move_cost or 0.0)


def subcommand(name: str):
    """The entry point of a subcommand, imported when it runs."""
    from importlib import import_module

    return import_module(f"models.cli.{name}").main


SUBCOMMANDS = ("profile", "sweep", "route", "frontier")


def main(argv=None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    from models.problem.files import OutputError
    from models.problem.interrupts import Interrupted, interrupt_on_sigint
    from models.problem.blas import one_blas_thread

    argv = sys.argv[1:] if argv is None else list(argv)
    with interrupt_on_sigint(), one_blas_thread():
        try:
            if argv and argv[0] in SUBCOMMANDS:
                return subcommand(argv[0])(argv[1:])
            return solve_main(argv)
        except SystemExit as stop:  # --help, or a usage error already printed as one line
            return stop.code
        except (KeyboardInterrupt, Interrupted) as stop:
            detail = str(stop) if isinstance(stop, Interrupted) and str(stop) != "interrupted" else ""
            return error("interrupted" + (f": {detail}" if detail else "; nothing written"), EXIT_INTERRUPTED)
        except OutputError as err:
            return error(f"error: {err}", EXIT_USAGE)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)  # Python would complain again flushing stdout at exit
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
