#!/usr/bin/env python3
"""Write data/fleet-32xA100 and data/fleet-32xA100-drift, deterministically (issue 15, item 4).

    python data/make_fleet_instances.py [--out DIR]

The models, curves and scores are made exactly as bench/scale_instances.py makes its 8-model
instances (its functions are imported, not copied): the four paper models of data/paper-8xA100 named
`<base>-c0` and one "fine-tuned copy" of each named `<base>-c1`, with the base's weights and measured
curves (every column, p99 included) and scores from the paper calibration with the copies as
fine-tunes (`copied_calibration`, `generate_scores`, 36,000 prompts, seed 0). What is added here:

* max_replicas = MAX_REPLICAS for the small models (mistral-7b and wizardlm-13b, and their copies);
* a p99 bound of P99_BOUND_MS (SPEC 4.6);
* the arrival rate RATE_RPS and the mean-TTFT target TARGET_MS; README.md says how they were chosen.

The drifted copy keeps the instance's name (so that `solve.py --from` accepts the fleet's plan), with
the load DRIFT_LOAD times as high and a different prompt mix: scores drawn from the same calibration
with seed DRIFT_SEED.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from bench.scale_instances import PROMPTS, SEED, ScaleCase, case_data, copied_calibration, write_folder  # noqa: E402
from models.problem.scoregen import generate_scores  # noqa: E402

NAME = "fleet-32xA100"
MODELS, GPUS = 8, 32
MAX_REPLICAS = 3
SMALL = ("mistral-7b", "wizardlm-13b")
P99_BOUND_MS = 2500.0
RATE_RPS = 250.0
TARGET_MS = 800.0
DRIFT_LOAD = 1.3
DRIFT_SEED = 1
HEADER = "# Written by data/make_fleet_instances.py; README.md says where every number comes from."


def write_fleet(folder: Path, rate: float, seed: int, note: str) -> Path:
    """The fleet instance at `rate` with scores drawn with `seed`."""
    data = case_data(ScaleCase(NAME, MODELS, GPUS, PROMPTS, TARGET_MS), None)
    scores = data.scores if seed == SEED else generate_scores(copied_calibration(MODELS, SEED), PROMPTS, seed)
    replicas = {model: MAX_REPLICAS for model in data.models if model.rsplit("-c", 1)[0] in SMALL}
    description = (f"{data.description}; max_replicas {MAX_REPLICAS} for the mistral-7b and wizardlm-13b "
                   f"models; {rate:g} requests/s, {TARGET_MS:g} ms mean and {P99_BOUND_MS:g} ms p99 TTFT{note}; "
                   "data/make_fleet_instances.py")
    return write_folder(folder, NAME, description, GPUS, rate, TARGET_MS, data.tp_options, data.models,
                        data.profiles, scores, {"slo_p99_ttft_ms": P99_BOUND_MS}, replicas, HEADER)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="default: data/")
    args = parser.parse_args(argv)
    write_fleet(args.out / NAME, RATE_RPS, SEED, "")
    write_fleet(args.out / f"{NAME}-drift", round(DRIFT_LOAD * RATE_RPS, 1), DRIFT_SEED,
                f" (drift: {DRIFT_LOAD:g} x the load of {NAME}, scores drawn with seed {DRIFT_SEED})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
