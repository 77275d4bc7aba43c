#!/usr/bin/env python3
"""How long `enumerate` takes against its work measure (setups x distinct prompts x models).

    python bench/enumerate_size.py

Seeded random instances (tests/random_instances.py) with their scores replaced by N random
prompts; prints the work measure, the seconds, and seconds per million units of work, from
which `WORK_LIMIT` in models/methods/brute_force.py (the size enumerate refuses above) is set to about
a minute.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from models.methods.brute_force import WORK_LIMIT, merged_rows, solve_enumerate  # noqa: E402
from models.problem.instance import load_instance  # noqa: E402
from models.problem.plan import Infeasible  # noqa: E402
from models.problem.setup import placeable_setups  # noqa: E402
from random_instances import write_random_instance  # noqa: E402

CASES = ((3, 500), (17, 1000), (18, 2800))  # (seed, prompts), the last just under WORK_LIMIT


def with_prompts(folder: Path, seed: int, prompts: int) -> Path:
    names = load_instance(folder).model_names
    scores = np.random.default_rng(seed).random((prompts, len(names))).round(4)
    lines = [f"x{k}," + ",".join(str(v) for v in row) for k, row in enumerate(scores)]
    (folder / "scores.csv").write_text("prompt_id," + ",".join(names) + "\n" + "\n".join(lines) + "\n")
    return folder


def main() -> int:
    print(f"WORK_LIMIT = {WORK_LIMIT:,}")
    with tempfile.TemporaryDirectory() as root:
        for seed, prompts in CASES:
            folder = with_prompts(write_random_instance(Path(root) / str(seed), seed), seed, prompts)
            instance = load_instance(folder)
            setups = list(placeable_setups(instance))
            work = len(setups) * len(merged_rows(instance.scores)[1]) * len(instance.models)
            start = time.perf_counter()
            try:
                solve_enumerate(instance)
                outcome = "plan"
            except Infeasible:
                outcome = "infeasible"
            seconds = time.perf_counter() - start
            print(f"seed {seed}: {prompts} prompts, {len(setups)} setups, work {work:,}: {outcome} in {seconds:.1f} s "
                  f"({seconds / work * 1e6:.0f} s per million)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
