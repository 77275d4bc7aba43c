"""`solve.py route`: serve a plan's routing as an OpenAI-compatible proxy (models/output/router.py).

    python solve.py route PLAN.json --instance DIR [--host 127.0.0.1] [--port 9000]
                          [--upstream NAME=URL ...] [--predictor module:function] [--seed 0] [--window-s 60]

`--upstream NAME=URL` points model NAME at a server root other than the one the export's launch.sh
starts (http://127.0.0.1:8000 + k for the k-th deployed model). It serves until Ctrl-C.

Exit status: 0 after a clean stop; 2 bad input (a missing or malformed plan file, a plan for another
instance, an unknown --upstream name or a URL that is not a server root, a --predictor that cannot be
loaded), one line on stderr; 3 a plan that is not a deployment (it breaks the target, or its published
routing does), as with `--export`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.cli.args import EXIT_USAGE, OneLineParser, non_negative_int, positive_float, positive_int, program
from models.output.export import HOST, ROUTER_PORT, ExportError
from models.output.router import WINDOW_S, RouteError, build_router, load_predictor, serve
from models.problem.instance import InputError, load_instance
from models.problem.plan import PlanError, read_plan

EXIT_NOT_DEPLOYABLE = 3


def upstream(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=URL")
    return name, url


def parse_args(argv) -> argparse.Namespace:
    parser = OneLineParser(prog=program("route"), description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path, metavar="PLAN.json", help="a plan (SPEC 3 and 4.3), e.g. from --out")
    parser.add_argument("--instance", type=Path, required=True, metavar="DIR", help="the plan's instance folder")
    parser.add_argument("--host", default=HOST, help=f"address to listen on (default {HOST})")
    parser.add_argument("--port", type=positive_int, default=ROUTER_PORT, help=f"port (default {ROUTER_PORT})")
    parser.add_argument("--upstream", type=upstream, action="append", default=[], metavar="NAME=URL",
                        help="the root URL of model NAME's server (repeatable)")
    parser.add_argument("--predictor", metavar="module:function",
                        help="scores for requests without 'scores': function(body) -> {model: score} "
                             "(default: the instance's scores of the body's prompt_id)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the split prompts' draws")
    parser.add_argument("--window-s", type=positive_float, default=WINDOW_S, metavar="SECONDS",
                        help=f"/metrics: observed shares over this many recent seconds (default {WINDOW_S:g})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return stop.code
    try:
        instance = load_instance(args.instance)
        plan = read_plan(args.plan, instance)
        predictor = load_predictor(args.predictor) if args.predictor else None
        router = build_router(instance, plan, dict(args.upstream), predictor, args.seed, args.window_s)
    except (InputError, PlanError, RouteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NOT_DEPLOYABLE
    serve(router, args.host, args.port)
    return 0
