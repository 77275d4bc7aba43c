"""Argument parsing shared by the command lines: one-line usage errors and typed values."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from models.problem.tasks import ENGINES, Engine, ray_installed

EXIT_USAGE = 2
TARGET_DIGITS = 9  # targets a + k * step are rounded to this many decimals, so 0.1 steps print as typed


def program(subcommand: str = "") -> str:
    """The name the command line was run under, `routerplan` or else `solve.py`, with a subcommand."""
    name = "routerplan" if sys.argv and Path(sys.argv[0]).name == "routerplan" else "solve.py"
    return f"{name} {subcommand}".strip()


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


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


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative finite number")
    return value


def non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def headroom_fraction(text: str) -> float:
    """A fraction in [0, 1) (SPEC 4.1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1)")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1]")
    return value


def table_file(text: str) -> Path:
    """A table's output file: .csv or .json."""
    path = Path(text)
    if path.suffix not in (".csv", ".json"):
        raise argparse.ArgumentTypeError(f"{text!r}: the file name must end in .csv or .json")
    return path


def check_writable_file(path: Path) -> None:
    """The file can be created or replaced: its folder exists and is writable, and it is not a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a folder, not a file")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: its folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{path}: cannot be written (permission denied)")


def check_writable_dir(path: Path) -> None:
    """The folder exists and is writable, or can be created in a writable parent."""
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot be created or written in {existing} (permission denied)")


def parse_targets(text: str) -> tuple[float, ...]:
    """`a:b:step` (ms) as the targets a, a + step, ..., up to b inclusive; for argparse's `type=`."""
    return parse_range(text, "in ms", "100:500:50")


def parse_load_scales(text: str) -> tuple[float, ...]:
    """`a:b:step` as the arrival-rate factors a, a + step, ..., up to b inclusive; for argparse's `type=`."""
    return parse_range(text, "factors of the arrival rate", "0.5:1.5:0.25")


def parse_range(text: str, unit: str, example: str) -> tuple[float, ...]:
    """`a:b:step` as a, a + step, ..., up to b inclusive (0 < a <= b, step > 0), rounded to TARGET_DIGITS."""
    parts = text.split(":")
    try:
        start, stop, step = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a:b:step (three numbers {unit}, e.g. {example})") from None
    if not all(math.isfinite(v) for v in (start, stop, step)) or not 0 < start <= stop or not step > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < a <= b and step > 0 (a:b:step {unit})")
    return steps(start, stop, step)


def parse_gpu_counts(text: str) -> tuple[str, tuple[int, ...]]:
    """`TYPE=a:b` as the GPU type and the counts a, a + 1, ..., b (0 <= a <= b); for argparse's `type=`."""
    name, _, span = text.rpartition("=")
    parts = span.split(":")
    if not name.strip() or len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not TYPE=a:b (a GPU type and two counts, e.g. A100-80GB=0:4)")
    start, stop = int(parts[0]), int(parts[1])
    if start > stop:
        raise argparse.ArgumentTypeError(f"{text!r}: need a <= b (TYPE=a:b)")
    return name.strip(), tuple(range(start, stop + 1))


def parse_qualities(text: str) -> tuple[float, ...]:
    """`a:b:step` as the qualities a, a + step, ..., up to b inclusive, in [0, 1]; for argparse's `type=`."""
    try:
        start, stop, step = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a:b:step (three qualities, e.g. 0.70:0.80:0.01)") from None
    if not 0 <= start <= stop <= 1 or not step > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= a <= b <= 1 and step > 0 (a:b:step of qualities)")
    return steps(start, stop, step)


def steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    """start, start + step, ..., up to stop inclusive (to rounding), each rounded to TARGET_DIGITS decimals."""
    count = math.floor((stop - start) / step * (1 + 1e-12)) + 1
    return tuple(round(start + k * step, TARGET_DIGITS) for k in range(count))


def headroom_list(text: str) -> tuple[float, ...]:
    """Comma-separated fractions in [0, 1) (SPEC 4.1), each once."""
    values = tuple(headroom_fraction(part.strip()) for part in text.split(","))
    if len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: a headroom is given twice")
    return values


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    return path


def add_engine_arguments(parser: argparse.ArgumentParser, tasks: str) -> None:
    """--engine and --ray-address; `tasks` names what one task is (for the help)."""
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help=f"where the {tasks}s run: local, in this process, or ray, one Ray task per {tasks} "
                             "(pip install 'routerplan[ray]'; default: %(default)s)")
    parser.add_argument("--ray-address", metavar="ADDRESS",
                        help="--engine ray: join the Ray cluster at ADDRESS, e.g. auto or HOST:6379 "
                             "(default: start a local Ray on this machine)")


def chosen_engine(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Engine:
    """The engine of --engine and --ray-address; a usage error if Ray is asked for and not installed."""
    if args.ray_address and args.engine != "ray":
        parser.error("--ray-address needs --engine ray")
    if args.engine == "ray" and not ray_installed():
        parser.error("argument --engine: ray is not installed (pip install 'routerplan[ray]')")
    return Engine(args.engine, args.ray_address)
