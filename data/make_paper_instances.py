#!/usr/bin/env python3
"""Write the paper instances' `instance.toml` and `scores.csv`, deterministically.

    python data/make_paper_instances.py [--out DIR] [--h100-profiles H100.csv]

writes DIR/paper-4xA100/, DIR/paper-4xA100-binding/, DIR/paper-8xA100/ and
DIR/mixed-a100-h100/ (DIR defaults to this folder).
The numbers and their sources are in each instance's README.md. Scores come
from `models.problem.scoregen` with its stored RouterBench calibration, so no
non-redistributable data is needed. `profiles.csv` is written separately (see
docs/latency.md); the README files are written by hand. With --h100-profiles
(the output of `solve.py profile data/paper-4xA100 --gpu H100-80GB`),
mixed-a100-h100/profiles.csv is also written: paper-4xA100's A100 curves and
those H100 curves, each row with its gpu_type.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import pandas as pd  # noqa: E402

from models.problem.scoregen import PAPER_CALIBRATIONS, generate_scores, write_scores  # noqa: E402
from models.profiling.profiles import write_profiles  # noqa: E402

PROMPTS = 36_000  # N, as in the RouterWise paper
SEED = 0
TP_OPTIONS = (1, 2, 4)
MPS_OPTIONS = tuple(range(10, 101, 10))
GPU_MEMORY_GB = 80
KV_CACHE_GB = 8.0  # a stated KV-cache reserve per shard


@dataclass(frozen=True)
class GpuType:
    name: str
    count: int
    cost_per_hour: float | None = None  # USD per GPU and hour, on-demand list price (the instance's README.md)


A100_PRICE, H100_PRICE = 2.79, 3.99  # Lambda on-demand, 8-GPU SXM instances, per GPU (mixed-a100-h100/README.md)


@dataclass(frozen=True)
class PaperModel:
    name: str
    weights_gb: float  # fp16: 2 bytes per parameter
    checkpoint: str  # the public model id a server loads (SPEC 4.2)


MISTRAL_7B = PaperModel("mistral-7b", 14.5, "mistralai/Mistral-7B-Instruct-v0.2")  # 7.24B parameters
WIZARDLM_13B = PaperModel("wizardlm-13b", 26.0, "WizardLMTeam/WizardLM-13B-V1.2")  # 13.0B
YI_34B = PaperModel("yi-34b", 68.8, "01-ai/Yi-34B-Chat")  # 34.4B
LLAMA_2_70B = PaperModel("llama-2-70b", 138.0, "meta-llama/Llama-2-70b-chat-hf")  # 69.0B


@dataclass(frozen=True)
class PaperInstance:
    name: str
    description: str
    gpus: tuple[GpuType, ...]
    arrival_rate_rps: float
    slo_mean_ttft_ms: float
    models: tuple[PaperModel, ...]

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)


PAPER_INSTANCES = (
    PaperInstance(
        "paper-4xA100",
        "Mistral-7B, WizardLM-13B-V1.2 and Yi-34B on 4 x A100-80GB at 60 requests/s, 500 ms mean TTFT "
        "(the RouterWise paper's default); scores calibrated to RouterBench; see README.md",
        gpus=(GpuType("A100-80GB", 4),), arrival_rate_rps=60.0, slo_mean_ttft_ms=500.0,
        models=(MISTRAL_7B, WIZARDLM_13B, YI_34B),
    ),
    PaperInstance(
        "paper-4xA100-binding",
        "paper-4xA100 at 70 requests/s, where RouterWise measured 565 ms against the 500 ms target, and where "
        "the target binds the plan; see README.md",
        gpus=(GpuType("A100-80GB", 4),), arrival_rate_rps=70.0, slo_mean_ttft_ms=500.0,
        models=(MISTRAL_7B, WIZARDLM_13B, YI_34B),
    ),
    PaperInstance(
        "paper-8xA100",
        "Mistral-7B, WizardLM-13B-V1.2, Yi-34B and Llama-2-70B on 8 x A100-80GB at 110 requests/s, "
        "500 ms mean TTFT; scores calibrated to RouterBench; see README.md",
        gpus=(GpuType("A100-80GB", 8),), arrival_rate_rps=110.0, slo_mean_ttft_ms=500.0,
        models=(MISTRAL_7B, WIZARDLM_13B, YI_34B, LLAMA_2_70B),
    ),
    PaperInstance(
        "mixed-a100-h100",
        "Mistral-7B, WizardLM-13B-V1.2 and Yi-34B on 2 x A100-80GB and 2 x H100-80GB at 60 requests/s, 500 ms "
        "mean TTFT; H100 curves from A100 step times and Splitwise's H100/A100 ratios; see README.md",
        gpus=(GpuType("A100-80GB", 2, A100_PRICE), GpuType("H100-80GB", 2, H100_PRICE)),
        arrival_rate_rps=60.0, slo_mean_ttft_ms=500.0,
        models=(MISTRAL_7B, WIZARDLM_13B, YI_34B),
    ),
)
MIXED, MIXED_BASE = "mixed-a100-h100", "paper-4xA100"  # the mixed instance takes its A100 curves from the base


def toml_list(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def cluster_toml(gpus: tuple[GpuType, ...]) -> list[str]:
    """[cluster] of one GPU type (gpu_count, gpu_memory_gb, gpu_type) or of several (SPEC 4.4 gpu_types)."""
    if len(gpus) == 1:
        (gpu,) = gpus
        return ["[cluster]", f"gpu_count = {gpu.count}", f"gpu_memory_gb = {GPU_MEMORY_GB}",
                f'gpu_type = "{gpu.name}"']
    lines = ["[cluster]"]
    for gpu in gpus:
        lines += ["", "[[cluster.gpu_types]]", f'name = "{gpu.name}"', f"count = {gpu.count}",
                  f"memory_gb = {GPU_MEMORY_GB}", f"cost_per_hour = {gpu.cost_per_hour!r}"]
    return lines


def instance_toml(instance: PaperInstance) -> str:
    """The SPEC's instance.toml for one paper instance."""
    lines = [
        "# Written by data/make_paper_instances.py; README.md says where every number comes from.",
        f'name = "{instance.name}"',
        f'description = "{instance.description}"',
        "",
        *cluster_toml(instance.gpus),
        "",
        "[workload]",
        f"arrival_rate_rps = {instance.arrival_rate_rps!r}",
        f"slo_mean_ttft_ms = {instance.slo_mean_ttft_ms!r}",
        "",
        "[setup_options]",
        f"tp = {toml_list(TP_OPTIONS)}",
        f"mps_pct = {toml_list(MPS_OPTIONS)}",
    ]
    for model in instance.models:
        lines += [
            "",
            "[[models]]",
            f'name = "{model.name}"',
            f'checkpoint = "{model.checkpoint}"',
            f"weights_gb = {model.weights_gb!r}",
            f"kv_cache_gb = {KV_CACHE_GB!r}",
            "required = true",
        ]
    lines += ["", "[files]", 'profiles = "profiles.csv"', 'scores = "scores.csv"']
    return "\n".join(lines) + "\n"


def write_instance(instance: PaperInstance, folder: Path) -> None:
    """instance.toml and scores.csv of one paper instance in `folder` (created if needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instance.toml").write_text(instance_toml(instance))
    calibration = PAPER_CALIBRATIONS[instance.model_names]
    write_scores(generate_scores(calibration, PROMPTS, SEED), instance.model_names, folder / "scores.csv")


def write_mixed_profiles(a100: Path, h100: Path, out: Path) -> None:
    """Both GPU types' curves in one profiles.csv: `a100` (no gpu_type column) and `h100` (written by
    `solve.py profile --gpu H100-80GB`), sorted by gpu_type, model, tp, mps_pct and rate."""
    h100_curves = pd.read_csv(h100)
    if set(h100_curves.get("gpu_type", ())) != {"H100-80GB"}:
        sys.exit(f"error: {h100}: its gpu_type column is not H100-80GB throughout (made without --gpu H100-80GB?)")
    curves = pd.concat([pd.read_csv(a100).assign(gpu_type="A100-80GB"), h100_curves], ignore_index=True)
    write_profiles(curves.sort_values(["gpu_type", "model", "tp", "mps_pct", "rate_rps"], ignore_index=True), out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, metavar="DIR")
    parser.add_argument("--h100-profiles", type=Path, metavar="CSV",
                        help=f"H100 curves of {MIXED_BASE}: also write {MIXED}/profiles.csv")
    args = parser.parse_args(argv)
    for instance in PAPER_INSTANCES:
        write_instance(instance, args.out / instance.name)
    if args.h100_profiles:
        here = Path(__file__).resolve().parent
        write_mixed_profiles(here / MIXED_BASE / "profiles.csv", args.h100_profiles, args.out / MIXED / "profiles.csv")


if __name__ == "__main__":
    main()
