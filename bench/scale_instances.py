"""A seeded family of large instances built from the shipped ones, for the exact method at scale (issue 10).

    python bench/scale_instances.py OUT_DIR [--cases NAME ...]

writes the instances of `FAMILY` (or the named ones) under OUT_DIR. The
benchmark `bench/exact_scale.py` builds them in a temporary folder at run time;
nothing here is committed data.

How an instance is made
-----------------------
* Models. Model k of an M-model instance is a copy of base model
  BASES[k mod 4] (mistral-7b, wizardlm-13b, yi-34b, llama-2-70b), named
  `<base>-c<k div 4>`: `mistral-7b-c0`, ..., `llama-2-70b-c0`, `mistral-7b-c1`, ...
  It takes the base's weights and KV-cache reserve (data/make_paper_instances.py)
  and the base's latency curves, copied row for row from
  data/paper-8xA100/profiles.csv (where all four bases are profiled). The
  description of every instance says so.
* Cluster and load. A100-80GB GPUs, tp in {1, 2, 4}, MPS 10..100 as in the
  paper instances. A model runs one deployment, so the load the cluster can
  carry does not grow with its GPUs alone: C*, the largest total r_K of the
  options of any placeable setup (`carried_load`, a MIP over (1)-(4)), sets
  it. The arrival rate is LOAD_FRACTION x C*, rounded down to 0.1 requests/s
  (paper-4xA100's 60 requests/s is 0.68 of its C* of 87.8). C* takes minutes
  at 12 models on 32 GPUs, so the values are stored in `CARRIED_LOAD`;
  `python bench/scale_instances.py --derive [--time-limit S]` recomputes them
  (with a time limit, from the best setup found: a load that setup carries,
  so the rate stays feasible; the stored values say which).
* Scores. `models.problem.scoregen`'s latent-factor model. The originals
  (k < 4) keep the paper calibration's parameters (the 3-model calibration
  when M = 3, the 4-model one otherwise). A copy j >= 1 of base b is a
  "fine-tune" of it: on every task its loadings are the base's scaled by
  sqrt(1 - PRIVATE) plus a factor of its own carrying the rest of |L_b|^2
  (so its uniqueness psi^2, and so the sharpness of its scores, stay the
  base's), and its threshold Phi^-1(m) moves by a seeded N(0, THRESHOLD_SD^2)
  draw. Two copies of a base then correlate at (1 - PRIVATE) |L_b|^2 in the
  latent scale, and scores stay continuous (6 decimals), so ties are rare.
  With the prompt count N, `generate_scores(calibration, N, seed)` draws them.
* Targets. `slack`: the largest mean TTFT of any profiled point of the
  instance. For any shares, H_i(w) <= w max_k L_k (H interpolates the points
  w_k L_k linearly, and 0 at 0), so sum_i H_i(w_i) <= max L: the SLO can
  never bind. `binding`: BINDING_FACTOR times the lowest mean TTFT any setup
  of the instance reaches (`lowest_mean_ttft`, a MIP over setups and shares
  without quality; with a time limit, the best setup found), rounded up to
  0.1 ms; stored in `LOWEST_TTFT_MS` like C* and recomputed by `--derive`. It is feasible by construction, and it binds
  when the slack optimum's mean TTFT is above it; the benchmark prints each
  plan's mean TTFT next to its target, so that shows.
* The N = 300,000 and 1,000,000 rows are paper-4xA100 itself (its models,
  curves, 60 requests/s and 500 ms target) with scores drawn for N prompts by
  the paper's own generator and calibration (seed 0, as
  data/make_paper_instances.py does for 36,000).
* The symmetric case: SYMMETRIC_MODELS copies of mistral-7b (14.5 GB, all
  the same size) on 8 GPUs at 120 requests/s with tp in {1, 2, 4, 8} and
  SYMMETRIC_PROMPTS prompts, binding target. Scores as above (copies of the
  four bases' calibrations, so qualities differ while sizes do not). Its
  tp 1, 2, 4 curves are mistral-7b's; mistral-7b has no shipped tp 8 curve,
  so it is made at run time by the profile command with the settings that made
  the shipped curves (docs/latency.md: MuxServe's llama-7b step times at
  tp 8, the Azure conversation trace, 256/32 tokens, seed 0), and copied to
  every model. Many identical options are the hard case for placement symmetry.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.problem.instance import Instance, Option, load_instance  # noqa: E402
from models.problem.scoregen import (  # noqa: E402
    PAPER_CALIBRATIONS,
    Calibration,
    TaskFactors,
    generate_scores,
    write_scores,
)

DATA = REPO / "data"
MEASURED = DATA / "measured"
BASES = ("mistral-7b", "wizardlm-13b", "yi-34b", "llama-2-70b")
WEIGHTS_GB = {"mistral-7b": 14.5, "wizardlm-13b": 26.0, "yi-34b": 68.8, "llama-2-70b": 138.0}  # fp16
KV_CACHE_GB = 8.0
GPU_MEMORY_GB = 80
TP_OPTIONS = (1, 2, 4)
MPS_OPTIONS = tuple(range(10, 101, 10))
PROMPTS = 36_000
SEED = 0
PRIVATE = 0.2  # share of a copy's explained latent variance carried by its own factor
THRESHOLD_SD = 0.15  # probit-scale spread of a copy's accuracy around its base's
LOAD_FRACTION = 0.7  # arrival rate = this x C*, the most load any setup carries
BINDING_FACTOR = 1.25  # binding target = this x the lowest reachable mean TTFT
SYMMETRIC_MODELS = 7
SYMMETRIC_PROMPTS = 20_600
SYMMETRIC_GPUS = 8
SYMMETRIC_TP = (1, 2, 4, 8)

# `--derive` output: C* (requests/s) and the lowest mean TTFT (ms) at LOAD_FRACTION x C*, per (kind, models, GPUs)
# with the curves recalibrated for CPU overheads and a sustainable r_K (docs/latency.md), by
# `--derive --time-limit 120`: each MIP at most 120 s, so a value may be the best setup found then (a load
# or target some setup reaches, so the instance stays feasible), not the optimum
CARRIED_LOAD = {("copies", 3, 4): 81.423, ("copies", 4, 8): 114.943, ("copies", 6, 16): 233.205,
                ("copies", 8, 16): 229.886, ("copies", 8, 32): 285.552, ("copies", 12, 32): 389.987,
                ("symmetric", 7, 8): 249.561}
LOWEST_TTFT_MS = {("copies", 3, 4): 107.145751, ("copies", 4, 8): 106.179791, ("copies", 6, 16): 97.761879,
                  ("copies", 8, 16): 105.864908, ("copies", 8, 32): 96.781704, ("copies", 12, 32): 102.175483,
                  ("symmetric", 7, 8): 80.872755}


@dataclass(frozen=True)
class ScaleCase:
    """One instance of the family. `target` is 'slack', 'binding' or a number of ms."""

    name: str
    models: int
    gpus: int
    prompts: int
    target: str | float
    kind: str = "copies"  # copies | paper | symmetric

    @property
    def key(self) -> tuple[str, int, int]:
        return self.kind, self.models, self.gpus


FAMILY = (
    *(ScaleCase(f"scale-{m}m{g}g-{t}", m, g, PROMPTS, t)
      for m, g in ((3, 4), (4, 8), (6, 16), (8, 16), (8, 32), (12, 32)) for t in ("slack", "binding")),
    ScaleCase("paper-4xA100-300k", 3, 4, 300_000, 500.0, "paper"),
    ScaleCase("paper-4xA100-1M", 3, 4, 1_000_000, 500.0, "paper"),
    ScaleCase(f"symmetric-{SYMMETRIC_MODELS}x7b-8g", SYMMETRIC_MODELS, SYMMETRIC_GPUS, SYMMETRIC_PROMPTS, "binding",
              "symmetric"),
)


# ---------------------------------------------------------------- models and scores


def model_names(count: int, bases=BASES) -> list[str]:
    """`<base>-c<copy>` for k = 0..count-1, bases in turn."""
    return [f"{bases[k % len(bases)]}-c{k // len(bases)}" for k in range(count)]


def base_of(name: str) -> str:
    return name.rsplit("-c", 1)[0]


def copied_calibration(count: int, seed: int) -> Calibration:
    """The scores' latent-factor model for `count` models (module docstring, Scores)."""
    base = PAPER_CALIBRATIONS[tuple(BASES[:3])] if count == 3 else PAPER_CALIBRATIONS[BASES]
    n_base = len(base.models)
    rng = np.random.default_rng(seed)
    copies = list(range(n_base, count))
    shifts = rng.normal(0.0, THRESHOLD_SD, size=(len(base.tasks), len(copies)))
    tasks = []
    for t, task in enumerate(base.tasks):
        loadings = task.loading_matrix
        shared = loadings.shape[1]
        rows, means = [], []
        for k in range(count):
            b = k % n_base
            row = np.zeros(shared + len(copies))
            if k < n_base:
                row[:shared] = loadings[b]
                means.append(task.means[b])
            else:
                j = k - n_base
                row[:shared] = math.sqrt(1 - PRIVATE) * loadings[b]
                row[shared + j] = math.sqrt(PRIVATE) * np.linalg.norm(loadings[b])
                means.append(NormalDist().cdf(NormalDist().inv_cdf(task.means[b]) + shifts[t, j]))
            rows.append(tuple(float(v) for v in row))
        tasks.append(TaskFactors(task.task, task.prompts, tuple(float(m) for m in means), tuple(rows)))
    return Calibration(tuple(model_names(count, base.models)), tuple(tasks))


# ---------------------------------------------------------------- writing


def write_folder(folder: Path, name: str, description: str, gpus: int, rate: float, target: float,
                 tp_options, models: list[str], profiles: pd.DataFrame, scores: pd.DataFrame,
                 workload: dict | None = None, max_replicas: dict | None = None,
                 header: str = "# Written by bench/scale_instances.py at run time; see its docstring.") -> Path:
    """instance.toml, profiles.csv and scores.csv in `folder`; `workload` adds fields to [workload] (SPEC 4.6),
    `max_replicas` gives models more than one replica (SPEC 4.5)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        header,
        f'name = "{name}"',
        f'description = "{description}"',
        "",
        "[cluster]",
        f"gpu_count = {gpus}",
        f"gpu_memory_gb = {GPU_MEMORY_GB}",
        'gpu_type = "A100-80GB"',
        "",
        "[workload]",
        f"arrival_rate_rps = {rate!r}",
        f"slo_mean_ttft_ms = {target!r}",
        *(f"{key} = {value!r}" for key, value in (workload or {}).items()),
        "",
        "[setup_options]",
        f"tp = [{', '.join(map(str, tp_options))}]",
        f"mps_pct = [{', '.join(map(str, MPS_OPTIONS))}]",
    ]
    for model in models:
        lines += ["", "[[models]]", f'name = "{model}"', f"weights_gb = {WEIGHTS_GB[base_of(model)]!r}",
                  f"kv_cache_gb = {KV_CACHE_GB!r}", "required = true"]
        lines += [f"max_replicas = {max_replicas[model]}"] if (max_replicas or {}).get(model, 1) > 1 else []
    lines += ["", "[files]", 'profiles = "profiles.csv"', 'scores = "scores.csv"']
    (folder / "instance.toml").write_text("\n".join(lines) + "\n")
    profiles.to_csv(folder / "profiles.csv", index=False, lineterminator="\n")
    write_scores(scores, tuple(models), folder / "scores.csv")
    return folder


def copied_profiles(models: list[str], source: pd.DataFrame) -> pd.DataFrame:
    """Every model's base's rows of `source`, under the model's name."""
    parts = []
    for model in models:
        rows = source[source.model == base_of(model)].copy()
        rows["model"] = model
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def slack_target(profiles: pd.DataFrame) -> float:
    """The largest profiled mean TTFT, rounded up to 0.1 ms: no routing can exceed it (module docstring)."""
    return math.ceil(10 * float(profiles.mean_ttft_ms.max())) / 10


def tp8_profiles(base: str, workdir: Path) -> pd.DataFrame:
    """`base`'s tp 8 curves from the profile command with the shipped curves' settings (docs/latency.md)."""
    from models.cli.profile import main as profile_main  # the profiling layer, needed for this case only

    folder = workdir / f"{base}-tp8"
    empty = pd.DataFrame({"model": [], "tp": [], "mps_pct": [], "rate_rps": [], "mean_ttft_ms": []})
    write_folder(folder, "tp8", "tp 8 curves", SYMMETRIC_GPUS, 120.0, 500.0, (8,), [base], empty,
                 pd.DataFrame({"prompt_id": ["p1"], base: [0.5]}))
    status = profile_main([str(folder), "--table", str(MEASURED / "muxserve-a100" / "llama.json"),
                           "--trace", str(MEASURED / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"),
                           "--out", str(folder / "profiles.csv"), "--force", "--workers", "2", "--quiet"])
    if status != 0:
        raise RuntimeError(f"profiling {base} at tp 8 failed (status {status})")
    return pd.read_csv(folder / "profiles.csv")


@dataclass(frozen=True)
class CaseData:
    """What a case's instance is made of, before its rate and target are set."""

    models: list[str]
    profiles: pd.DataFrame
    scores: pd.DataFrame
    tp_options: tuple[int, ...]
    description: str


def case_data(case: ScaleCase, workdir: Path | None) -> CaseData:
    """Models, curves and scores of a 'copies' or 'symmetric' case (module docstring)."""
    source = pd.read_csv(DATA / "paper-8xA100" / "profiles.csv")
    calibration = copied_calibration(case.models, SEED)
    if case.kind == "symmetric":
        models = [f"mistral-7b-c{k}" for k in range(case.models)]
        workdir = workdir or Path(tempfile.mkdtemp(prefix="tp8-"))
        source = pd.concat([source[source.model == "mistral-7b"], tp8_profiles("mistral-7b", workdir)],
                           ignore_index=True)
        calibration = Calibration(tuple(models), calibration.tasks)
        description = (f"{case.models} copies of mistral-7b under new names (its weights and curves, its tp 8 "
                       f"curves profiled at run time) on {case.gpus} x A100-80GB; scores from copies of the paper "
                       "calibration")
        tp_options = SYMMETRIC_TP
    else:
        models = model_names(case.models)
        copies = ", ".join(f"{m} = {base_of(m)}" for m in models)
        description = (f"{case.models} paper models copied under new names ({copies}): their weights and "
                       f"data/paper-8xA100 curves, on {case.gpus} x A100-80GB; scores from the paper calibration "
                       "with the copies as fine-tunes")
        tp_options = TP_OPTIONS
    return CaseData(models, copied_profiles(models, source), generate_scores(calibration, case.prompts, SEED),
                    tp_options, description + "; bench/scale_instances.py")


def write_case(case: ScaleCase, folder: Path, workdir: Path | None = None) -> Path:
    """Write one case's instance into `folder` (rate and binding target from the stored constants)."""
    if case.kind == "paper":
        return write_paper_size(case, folder)
    if case.key not in CARRIED_LOAD or (case.target == "binding" and case.key not in LOWEST_TTFT_MS):
        raise KeyError(f"{case.name}: no stored C* or lowest mean TTFT; run bench/scale_instances.py --derive")
    data = case_data(case, workdir)
    rate = arrival_rate(CARRIED_LOAD[case.key])
    if case.target == "slack":
        target, rule = slack_target(data.profiles), "target: the largest profiled TTFT (slack)"
    elif case.target == "binding":
        target = binding_target(LOWEST_TTFT_MS[case.key])
        rule = f"target: {BINDING_FACTOR:g} x the lowest mean TTFT, {LOWEST_TTFT_MS[case.key]:.2f} ms (binding)"
    else:
        target, rule = float(case.target), "target: given"
    description = f"{data.description}; {rate:g} requests/s = {LOAD_FRACTION:g} x C*; {rule}"
    return write_folder(folder, case.name, description, case.gpus, rate, target, data.tp_options, data.models,
                        data.profiles, data.scores)


def arrival_rate(carried: float) -> float:
    return math.floor(10 * LOAD_FRACTION * carried) / 10


def binding_target(lowest_ms: float) -> float:
    """BINDING_FACTOR x the lowest reachable mean TTFT, rounded up to 0.1 ms."""
    return math.ceil(10 * BINDING_FACTOR * lowest_ms) / 10


def write_paper_size(case: ScaleCase, folder: Path) -> Path:
    """paper-4xA100 with `case.prompts` prompts drawn by its own generator and calibration."""
    paper = DATA / "paper-4xA100"
    folder.mkdir(parents=True, exist_ok=True)
    text = (paper / "instance.toml").read_text()
    text = text.replace('name = "paper-4xA100"', f'name = "{case.name}"')
    text = text.replace('description = "', f'description = "paper-4xA100 with {case.prompts:,} prompts drawn as '
                        'for its 36,000 (seed 0), bench/scale_instances.py; ', 1)
    (folder / "instance.toml").write_text(text)
    (folder / "profiles.csv").write_text((paper / "profiles.csv").read_text())
    calibration = PAPER_CALIBRATIONS[tuple(BASES[:3])]
    write_scores(generate_scores(calibration, case.prompts, SEED), calibration.models, folder / "scores.csv")
    return folder


# ---------------------------------------------------------------- the stored constants


def placement_mip(instance: Instance):
    """The joint MIP of models/methods/exact.py with its objective, SLO and routing rows switched off."""
    from models.methods.exact import build_joint_mip

    m = build_joint_mip(instance)
    m.objective.deactivate()
    m.slo.deactivate()
    return m


def carried_load(instance: Instance, time_limit: float | None = None) -> float:
    """C*: max sum_c r_K(c) choose[c] over the setups that fit the cluster, (1)-(4) (requests/s); with a
    time limit, the best setup found (a load some setup carries, so the rate made from it is feasible)."""
    import pyomo.environ as pyo

    from models.problem.solver import solve_model

    m = placement_mip(instance)
    m.routed.deactivate()
    rate = {c: instance.curves[(c[0], Option(c[1], c[2]))].max_rate_rps for c in m.CHOICES}
    m.carried = pyo.Objective(expr=sum(rate[c] * m.choose[c] for c in m.CHOICES), sense=pyo.maximize)
    result = solve_model(m, mip_gap=1e-6, time_limit=time_limit)
    if not result.has_solution:
        raise RuntimeError(f"{instance.name}: the carried-load MIP ended {result.status} with no setup")
    return float(result.objective)


def lowest_mean_ttft(instance: Instance, time_limit: float | None = None) -> float:
    """The lowest mean TTFT (ms) a setup and routing reach: (1)-(10) without the SLO, min sum_c contribution[c].
    With a time limit, the best setup found: the target made from it is feasible all the same."""
    import pyomo.environ as pyo

    from models.problem.solver import solve_model

    m = placement_mip(instance)
    m.fastest = pyo.Objective(expr=sum(m.contribution[c] for c in m.CHOICES), sense=pyo.minimize)
    result = solve_model(m, mip_gap=1e-6, time_limit=time_limit)
    if not result.has_solution:
        raise RuntimeError(f"{instance.name}: the lowest-TTFT MIP ended {result.status} with no setup")
    return float(result.objective)


def derive(case: ScaleCase, workdir: Path, time_limit: float | None = None) -> tuple[float, float]:
    """C* and the lowest mean TTFT at the case's arrival rate, from the MIPs above."""
    data = case_data(case, workdir)
    folder = workdir / f"{case.name}-derive"
    slack = slack_target(data.profiles)
    write_folder(folder, case.name, "", case.gpus, 1.0, slack, data.tp_options, data.models, data.profiles,
                 data.scores.head(10))
    carried = carried_load(load_instance(folder), time_limit)
    write_folder(folder, case.name, "", case.gpus, arrival_rate(carried), slack, data.tp_options, data.models,
                 data.profiles, data.scores.head(10))
    return carried, lowest_mean_ttft(load_instance(folder), time_limit)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="folder to write the instances in")
    parser.add_argument("--cases", nargs="*", default=None, help="names of cases (default: all)")
    parser.add_argument("--derive", action="store_true",
                        help="recompute C* and the lowest mean TTFT of every (kind, models, GPUs) and print them")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="per MIP of --derive (default none: to optimality)")
    args = parser.parse_args(argv)
    chosen = [case for case in FAMILY if args.cases is None or case.name in args.cases]
    if args.derive:
        seen = set()
        with tempfile.TemporaryDirectory() as workdir:
            for case in chosen:
                if case.kind == "paper" or case.key in seen:
                    continue
                seen.add(case.key)
                carried, lowest = derive(case, Path(workdir), args.time_limit)
                print(f"{case.key}: C* {carried:.6f} requests/s, lowest mean TTFT {lowest:.6f} ms", flush=True)
        return 0
    if args.out is None:
        parser.error("give the folder to write the instances in")
    for case in chosen:
        write_case(case, args.out / case.name)
        print(f"{case.name}: {args.out / case.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
