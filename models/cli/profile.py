"""The profile command: latency curves (`profiles.csv`) for an instance from measured step times.

    solve.py profile INSTANCE_DIR --table llama.json --trace AzureLLMInferenceTrace_conv.csv --out PROFILES.csv
            [--force] [--method simulate|analytic] [--overheads cpu_overheads.csv] [--overhead-scale K]
            [--request-delay-ms D] [--prompt-mean 256] [--output-mean 32] [--seed 0]
            [--stand-in NAME=TABLE_MODEL ...] [--max-requests 40000] [--workers 2]
            [--engine local|ray] [--ray-address ADDRESS] [--quiet]
            [--gpu A100-80GB|H100-80GB] [--gpu-ratios perf_model.csv]

Builds a curve for every model, tp and MPS share of the instance's
setup_options that the table measured and whose shard fits a GPU, on the
calibrated simulated server (docs/latency.md), writes them to --out (an
existing file only with --force), and prints, per model, the best mean TTFT it
reaches alone at the instance's arrival rate. With --gpu, the curves are those
of that GPU type: the table's A100 step times scaled by the H100/A100 ratios
Splitwise measured (models/profiling/gpus.py), every row with a gpu_type
column (SPEC 4.4). Models with the same stand-in, option and KV-cache size
share one simulation. The curves are the same, byte for byte, with either
engine and any number of workers. A curve that fails is one line on stderr;
the others are built and written all the same. Exit status: 0 done; 2 bad
input or usage (one line on stderr naming the file and field), or a curve
failed (one line each).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from models.cli.args import (EXIT_USAGE, OneLineParser, add_engine_arguments, chosen_engine, non_negative_float,
                             non_negative_int, positive_float, positive_int, program)
from models.problem.instance import InputError
from models.problem.tasks import EngineError
from models.profiling.calibration import DEFAULT
from models.profiling.deployments import deployments, read_target
from models.profiling.gpus import HARDWARE, TABLE_GPU, gpu_ratios
from models.profiling.overheads import read_cpu_overheads
from models.profiling.profiles import (
    analytic_rows,
    best_single_model,
    build_profiles,
    curve_jobs,
    simulated_rows,
    write_profiles,
)
from models.profiling.simulator import check_fits
from models.profiling.standins import STAND_INS
from models.profiling.sweep import MIN_REQUESTS, SweepSettings
from models.profiling.table import read_step_table
from models.profiling.workload import LengthModel, read_trace, sample_workload

EXIT_DONE = 0
PROMPT_MEAN, OUTPUT_MEAN = 256.0, 32.0  # RouterBench-like lengths, docs/latency.md
METHODS = {"simulate": simulated_rows, "analytic": analytic_rows}
SHIPPED_OVERHEADS = Path("data") / "measured" / "vidur-a100-cpu-overheads" / "cpu_overheads.csv"
SHIPPED_RATIOS = Path("data") / "measured" / "splitwise-a100-h100" / "perf_model.csv"
REPO = Path(__file__).resolve().parents[2]


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(prog=program("profile"), description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", type=Path, help="instance folder (reads instance.toml only)")
    parser.add_argument("--table", type=Path, required=True, help="MuxServe-format step-time JSON (required)")
    parser.add_argument("--trace", type=Path, required=True,
                        help="Azure-format trace CSV of prompt and output tokens (required)")
    parser.add_argument("--out", type=Path, required=True, help="profiles CSV to write (required)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists (default: refuse)")
    parser.add_argument("--method", choices=sorted(METHODS), default="simulate",
                        help="simulate the server, or its closed-form queueing model (default: %(default)s)")
    parser.add_argument("--overheads", type=Path, default=REPO / SHIPPED_OVERHEADS, metavar="CSV",
                        help=f"Vidur-format CPU overheads per iteration (default: the shipped {SHIPPED_OVERHEADS})")
    parser.add_argument("--overhead-scale", type=non_negative_float, default=DEFAULT.overhead_scale, metavar="K",
                        help="times the engine's CPU overheads are charged; 8.5 fits DistServe's vLLM runs "
                             "(default: %(default)s, as Vidur measured them)")
    parser.add_argument("--request-delay-ms", type=non_negative_float, default=DEFAULT.request_delay_ms,
                        metavar="MS", help="delay per request outside the engine (default: %(default)s, fitted)")
    parser.add_argument("--prompt-mean", type=positive_float, default=PROMPT_MEAN, metavar="TOKENS",
                        help="mean prompt length the trace's lengths are rescaled to (default: %(default)s)")
    parser.add_argument("--output-mean", type=positive_float, default=OUTPUT_MEAN, metavar="TOKENS",
                        help="mean output length the trace's lengths are rescaled to (default: %(default)s)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the sampled requests and arrivals (default: %(default)s)")
    parser.add_argument("--stand-in", action="append", default=[], type=name_pair, metavar="NAME=TABLE_MODEL",
                        help="table model that stands in for an instance model, repeatable; adds to or overrides "
                             f"the built-in ones (default: {', '.join(f'{k}={v}' for k, v in STAND_INS.items())})")
    parser.add_argument("--max-requests", type=at_least_min_requests, default=SweepSettings.max_requests,
                        help=f"longest simulation of one rate, in requests, at least {MIN_REQUESTS}; fewer give "
                             f"quicker, rougher curves (default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="local engine: processes, one curve each at a time (default: %(default)s)")
    parser.add_argument("--gpu", choices=sorted(HARDWARE), metavar="GPU_TYPE",
                        help=f"GPU type of the curves, one of {', '.join(sorted(HARDWARE))}; adds a gpu_type "
                             "column (default: the table's A100-80GB, no column)")
    parser.add_argument("--gpu-ratios", type=Path, default=REPO / SHIPPED_RATIOS, metavar="CSV",
                        help=f"Splitwise-format times on both GPUs, for --gpu H100-80GB (default: the shipped "
                             f"{SHIPPED_RATIOS})")
    add_engine_arguments(parser, "curve")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress on stderr (default: a bar on a terminal, else a timestamped line "
                             "every few seconds)")
    args = parser.parse_args(argv)
    args.engine = chosen_engine(args, parser)
    return args


def name_pair(text: str) -> tuple[str, str]:
    name, _, table_model = text.partition("=")
    if not name or not table_model:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=TABLE_MODEL")
    return name, table_model


def at_least_min_requests(text: str) -> int:
    value = positive_int(text)
    if value < MIN_REQUESTS:
        raise argparse.ArgumentTypeError(f"{value} is too few requests: the smallest allowed is {MIN_REQUESTS}")
    return value


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return stop.code
    try:
        return profile(args)
    except InputError as err:
        return error(str(err))
    except EngineError as err:
        return error(f"--engine ray: {err}")
    except OSError as err:
        return error(f"{err.filename or args.out}: {err.strerror or err}")


def error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def failed_curves(failed: list[str], profiles, out: Path, jobs: int) -> int:
    """One line per failed curve; the curves built are written all the same (if any)."""
    for line in failed:
        print(f"error: curve {line}", file=sys.stderr)
    if len(profiles):
        write_profiles(profiles, out)
        print(f"wrote the {jobs - len(failed)} of {jobs} curve builds that succeeded to {out}", file=sys.stderr)
    return EXIT_USAGE


def check_writable(out: Path, force: bool) -> None:
    """Before any simulation: --out can be written, and is not an existing file unless --force."""
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"{out}: folder {folder} does not exist")
    if out.is_dir():
        raise InputError(f"{out}: is a folder, not a file")
    if out.exists() and not force:
        raise InputError(f"{out}: file exists (give --force to overwrite it)")
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"{out}: not writable")


def check_stand_ins(stand_ins: list[tuple[str, str]], names: set[str], toml_path: Path) -> None:
    for name, table_model in stand_ins:
        if name not in names:
            raise InputError(f"--stand-in {name}={table_model}: {toml_path} has no model '{name}'")


def profile(args: argparse.Namespace) -> int:
    check_writable(args.out, args.force)
    target = read_target(args.instance)
    check_stand_ins(args.stand_in, {m.name for m in target.models}, target.toml_path)
    table = read_step_table(args.table)
    trace = read_trace(args.trace)
    overheads = read_cpu_overheads(args.overheads)
    lengths = LengthModel(args.prompt_mean, args.output_mean)
    found = deployments(target, table, {**STAND_INS, **dict(args.stand_in)})
    if not found:
        return error(f"{target.toml_path}: no model has a measured option that fits")
    settings = SweepSettings(first_requests=min(SweepSettings.first_requests, args.max_requests),
                             max_requests=args.max_requests)
    workload = sample_workload(trace, lengths, settings.max_requests, args.seed)
    cpu_by_tp = {d.tp: overheads.iteration_cost(d.tp, args.overhead_scale) for d in found}
    gpu_by_tp = gpu_ratios(args.gpu_ratios, args.gpu or TABLE_GPU, {d.tp for d in found})
    jobs = curve_jobs(found, cpu_by_tp, gpu_by_tp, table=table, workload=workload,
                      context_window=lengths.context_window, request_delay_ms=args.request_delay_ms, settings=settings)
    for job in jobs:
        check_fits(job.config(), workload, f"{', '.join(job.models)} at tp {job.tp}")
    profiles, failed = build_profiles(jobs, METHODS[args.method], workers=args.workers, progress=not args.quiet,
                                      engine=args.engine)
    if args.gpu:
        profiles = profiles.assign(gpu_type=args.gpu)
    if failed:
        return failed_curves(failed, profiles, args.out, len(jobs))
    write_profiles(profiles, args.out)
    print(f"wrote {len(profiles)} points, {len(profiles.groupby(['model', 'tp', 'mps_pct']))} curves "
          f"({len(jobs)} simulated) to {args.out}")
    print(f"each model alone at {target.arrival_rate_rps:g} requests/s:")
    print(best_single_model(profiles, target.arrival_rate_rps).to_string(index=False))
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main())
