#!/usr/bin/env python3
"""Benchmark: the setup spread, best and worst achievable quality across the setups pruning keeps.

    python bench/setup_spread.py [--floor 1.0] [--show 5] [INSTANCE ...]

The RouterWise paper reports that the choice of setup changes the achievable
quality by up to 87%. For each instance (default: data/paper-4xA100 and
data/paper-8xA100), the heuristic's inner solver runs on every setup that
pruning keeps at the given utilization floor; each setup's quality is Q of the
inner solver's shares, computed exactly. Printed: setups kept, how many reach
the target, the best and the worst quality among those, the spread
best / worst - 1, the seconds, and the best and worst setups.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.problem.defaults import DEFAULT_UTILIZATION_FLOOR  # noqa: E402
from models.methods.heuristic import format_spread, setup_spread  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402

DEFAULT_INSTANCES = (REPO / "data" / "paper-4xA100", REPO / "data" / "paper-8xA100")


def report(folder: Path, floor: float, show: int) -> None:
    spread = setup_spread(load_instance(folder), utilization_floor=floor)
    print(format_spread(spread, floor))
    within = spread.setups.dropna(subset=["quality"]).sort_values("quality", ascending=False)
    if len(within) <= 2 * show:
        print(within.to_string(index=False))
    elif show:
        print(within.head(show).to_string(index=False))
        print("...")
        print(within.tail(show).to_string(index=False, header=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("instances", nargs="*", type=Path, default=list(DEFAULT_INSTANCES))
    parser.add_argument("--floor", type=float, default=DEFAULT_UTILIZATION_FLOOR, help="utilization floor")
    parser.add_argument("--show", type=int, default=5, help="best and worst setups to list")
    args = parser.parse_args()
    for folder in args.instances:
        report(folder, args.floor, args.show)


if __name__ == "__main__":
    main()
