"""The profile command: latency curves (`profiles.csv`) for an instance from measured step times.

    profile INSTANCE_DIR --table llama.json --trace AzureLLMInferenceTrace_conv.csv
            [--method simulate|analytic] [--prompt-mean 256] [--output-mean 32] [--seed 0]
            [--stand-in NAME=TABLE_MODEL ...] [--max-requests 40000] [--workers 2]
            [--out PATH] [--quiet]

Builds a curve for every model, tp and MPS share of the instance's
setup_options that the table measured and whose shard fits a GPU, writes them
to the instance's `files.profiles` (or --out), and prints, per model, the best
mean TTFT it reaches alone at the instance's arrival rate. Exit status: 0 done;
2 bad input or usage (one line on stderr naming the file and field).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli.args import EXIT_USAGE, OneLineParser, non_negative_int, positive_float, positive_int
from models.problem.instance import InputError
from models.profiling.deployments import deployments, read_target
from models.profiling.profiles import (
    CurveJob,
    analytic_rows,
    best_single_model,
    build_profiles,
    simulated_rows,
    write_profiles,
)
from models.profiling.simulator import check_fits
from models.profiling.standins import STAND_INS
from models.profiling.sweep import SweepSettings
from models.profiling.table import read_step_table
from models.profiling.workload import LengthModel, read_trace, sample_workload

EXIT_DONE = 0
PROMPT_MEAN, OUTPUT_MEAN = 256.0, 32.0  # RouterBench-like lengths, docs/latency.md
METHODS = {"simulate": simulated_rows, "analytic": analytic_rows}


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(prog="profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", type=Path, help="instance folder (reads instance.toml only)")
    parser.add_argument("--table", type=Path, required=True, help="MuxServe-format step-time JSON")
    parser.add_argument("--trace", type=Path, required=True, help="Azure-format trace CSV of prompt/output tokens")
    parser.add_argument("--method", choices=sorted(METHODS), default="simulate")
    parser.add_argument("--prompt-mean", type=positive_float, default=PROMPT_MEAN, metavar="TOKENS")
    parser.add_argument("--output-mean", type=positive_float, default=OUTPUT_MEAN, metavar="TOKENS")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--stand-in", action="append", default=[], type=name_pair, metavar="NAME=TABLE_MODEL",
                        help="table model that stands in for an instance model (adds to or overrides the built-in)")
    parser.add_argument("--max-requests", type=positive_int, default=SweepSettings.max_requests,
                        help="longest simulation of one rate (requests); fewer for quick, rougher curves")
    parser.add_argument("--workers", type=positive_int, default=2, help="processes (one curve each at a time)")
    parser.add_argument("--out", type=Path, help="profiles CSV to write (default: the instance's files.profiles)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def name_pair(text: str) -> tuple[str, str]:
    name, _, table_model = text.partition("=")
    if not name or not table_model:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=TABLE_MODEL")
    return name, table_model


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return stop.code
    try:
        return profile(args)
    except InputError as err:
        return error(str(err))
    except OSError as err:
        return error(f"{err.filename}: {err.strerror}")


def error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def profile(args: argparse.Namespace) -> int:
    target = read_target(args.instance)
    table = read_step_table(args.table)
    trace = read_trace(args.trace)
    lengths = LengthModel(args.prompt_mean, args.output_mean)
    found = deployments(target, table, {**STAND_INS, **dict(args.stand_in)})
    if not found:
        return error(f"{target.toml_path}: no model has a measured option that fits")
    settings = SweepSettings(first_requests=min(SweepSettings.first_requests, args.max_requests),
                             max_requests=args.max_requests)
    workload = sample_workload(trace, lengths, settings.max_requests, args.seed)
    jobs = [CurveJob(d, table, workload, lengths.context_window, settings) for d in found]
    for job in jobs:
        check_fits(job.config(), workload, f"{job.deployment.model} at tp {job.deployment.tp}")
    profiles = build_profiles(jobs, METHODS[args.method], workers=args.workers, progress=not args.quiet)
    out = args.out or target.profiles_path
    write_profiles(profiles, out)
    print(f"wrote {len(profiles)} points, {len(jobs)} curves to {out}")
    print(f"each model alone at {target.arrival_rate_rps:g} requests/s:")
    print(best_single_model(profiles, target.arrival_rate_rps).to_string(index=False))
    return EXIT_DONE

if __name__ == "__main__":
    sys.exit(main())
