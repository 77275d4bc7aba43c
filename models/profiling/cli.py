"""The profile command: latency curves (`profiles.csv`) for an instance from measured step times.

    profile INSTANCE_DIR --table llama.json --trace AzureLLMInferenceTrace_conv.csv
            [--method analytic] [--prompt-mean 256] [--output-mean 32] [--seed 0]
            [--stand-in NAME=TABLE_MODEL ...] [--workers 2] [--out PATH] [--quiet]

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

from models.instance import InputError
from models.profiling.deployments import deployments, read_target
from models.profiling.profiles import CurveJob, analytic_rows, best_single_model, build_profiles, write_profiles
from models.profiling.standins import STAND_INS
from models.profiling.table import read_step_table
from models.profiling.workload import LengthModel, read_trace, sample_workload

EXIT_DONE, EXIT_USAGE = 0, 2
PROMPT_MEAN, OUTPUT_MEAN = 256.0, 32.0  # RouterBench-like lengths, docs/latency.md
ANALYTIC_SAMPLE = 20_000  # requests whose lengths the analytic model averages over
METHODS = {"analytic": analytic_rows}


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(prog="profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instance", type=Path, help="instance folder (reads instance.toml only)")
    parser.add_argument("--table", type=Path, required=True, help="MuxServe-format step-time JSON")
    parser.add_argument("--trace", type=Path, required=True, help="Azure-format trace CSV of prompt/output tokens")
    parser.add_argument("--method", choices=sorted(METHODS), default="analytic")
    parser.add_argument("--prompt-mean", type=positive_float, default=PROMPT_MEAN, metavar="TOKENS")
    parser.add_argument("--output-mean", type=positive_float, default=OUTPUT_MEAN, metavar="TOKENS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stand-in", action="append", default=[], type=name_pair, metavar="NAME=TABLE_MODEL",
                        help="table model that stands in for an instance model (adds to or overrides the built-in)")
    parser.add_argument("--workers", type=positive_int, default=2, help="processes (one curve each at a time)")
    parser.add_argument("--out", type=Path, help="profiles CSV to write (default: the instance's files.profiles)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not positive")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def name_pair(text: str) -> tuple[str, str]:
    name, _, table_model = text.partition("=")
    if not name or not table_model:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=TABLE_MODEL")
    return name, table_model


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        target = read_target(args.instance)
        table = read_step_table(args.table)
        trace = read_trace(args.trace)
        lengths = LengthModel(args.prompt_mean, args.output_mean)
        found = deployments(target, table, {**STAND_INS, **dict(args.stand_in)})
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not found:
        print(f"error: {target.toml_path}: no model has a measured option that fits", file=sys.stderr)
        return EXIT_USAGE
    workload = sample_workload(trace, lengths, ANALYTIC_SAMPLE, args.seed)
    jobs = [CurveJob(d, table, workload, lengths.context_window) for d in found]
    profiles = build_profiles(jobs, METHODS[args.method], workers=args.workers, progress=not args.quiet)
    out = args.out or target.profiles_path
    write_profiles(profiles, out)
    print(f"wrote {len(profiles)} points, {len(jobs)} curves to {out}")
    print(f"each model alone at {target.arrival_rate_rps:g} requests/s:")
    print(best_single_model(profiles, target.arrival_rate_rps).to_string(index=False))
    return EXIT_DONE


if __name__ == "__main__":
    sys.exit(main())
