"""Seeded random small instances in SPEC format, for comparing methods against `enumerate`.

2-3 models (some optional, every one fitting a 40 GB GPU at tp1), 2-4 GPUs, 4-8 prompts, options tp in
{1, 2} x MPS in {50, 100} with a random subset profiled; or, with `larger=True`, 5 models on 8 GPUs with
50-200 prompts of continuous scores and at most two options per model (enough for the windowed routing LP,
few enough setups for `enumerate`). Curves have 1-3 points with increasing latency; a steep first rise
followed by a flat stretch makes H non-convex, which about a third of the curves get.
Targets and rates are drawn so that some instances are infeasible.
"""

from pathlib import Path

import numpy as np

TP = (1, 2)
MPS = (50, 100)


def curve_points(rng, tp: int, mps: int) -> list[tuple[float, float]]:
    base = rng.uniform(10, 60) * (100 / mps) ** 0.5 / tp ** 0.5
    rate = rng.uniform(2, 6) * tp * mps / 100
    points = [(rate, base)]
    nonconvex = rng.random() < 0.35
    for k in range(rng.integers(0, 3)):
        rate += rng.uniform(1, 4)
        rise = rng.uniform(20, 60) if nonconvex and k == 0 else rng.uniform(0, 15)
        points.append((rate, points[-1][1] + rise))
    return [(round(r, 3), round(t, 3)) for r, t in points]


def write_random_instance(folder: Path, seed: int, larger: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_models = 5 if larger else int(rng.integers(2, 4))
    names = [f"m{k}" for k in range(n_models)]
    models, profile_rows = [], []
    for k, name in enumerate(names):
        required = k == 0 or rng.random() < 0.6
        models.append(f'[[models]]\nname = "{name}"\nweights_gb = {rng.uniform(5, 35):.1f}\n'
                      f'kv_cache_gb = {rng.uniform(1, 5):.1f}\nrequired = {str(required).lower()}\n')
        options = [(tp, mps) for tp in TP for mps in MPS if rng.random() < 0.7] or [(2, 100)]
        if larger:
            options = [options[k] for k in sorted(rng.choice(len(options), min(2, len(options)), replace=False))]
        for tp, mps in options:
            profile_rows += [f"{name},{tp},{mps},{r},{t}" for r, t in curve_points(rng, tp, mps)]
    n_prompts = int(rng.integers(50, 201) if larger else rng.integers(4, 9))
    scores = rng.random((n_prompts, n_models)).round(2)
    if not larger and rng.random() < 0.3:
        scores = (scores > 0.5).astype(float)  # 0/1 scores: merged rows
    (folder / "instance.toml").write_text(
        f'name = "random-{seed}"\n[cluster]\ngpu_count = {8 if larger else int(rng.integers(2, 5))}\ngpu_memory_gb = 40\n'
        f"[workload]\narrival_rate_rps = {rng.uniform(4, 12) * (3 if larger else 1):.2f}\n"
        f"slo_mean_ttft_ms = {rng.uniform(15, 90):.1f}\n"
        f"[setup_options]\ntp = [1, 2]\nmps_pct = [50, 100]\n" + "".join(models)
        + '[files]\nprofiles = "profiles.csv"\nscores = "scores.csv"\n')
    (folder / "profiles.csv").write_text("model,tp,mps_pct,rate_rps,mean_ttft_ms\n" + "\n".join(profile_rows) + "\n")
    lines = [f"x{x}," + ",".join(f"{v:g}" for v in row) for x, row in enumerate(scores)]
    (folder / "scores.csv").write_text("prompt_id," + ",".join(names) + "\n" + "\n".join(lines) + "\n")
    return folder


SPEEDUP = (1.5, 0.6)  # type B's profiled loads and TTFTs over type A's


def write_random_typed_instance(folder: Path, seed: int, min_quality: float | None = None) -> Path:
    """`write_random_instance`'s small instance on two GPU types (SPEC 4.4): A, 1-3 GPUs of 40 GB at 1 per hour,
    and B, 1-2 GPUs of 48 GB at 1.5-3.5 per hour, whose curves are A's with SPEEDUP applied to each point.
    With `min_quality`, the cost objective with that quality floor."""
    write_random_instance(folder, seed)
    rng = np.random.default_rng(seed + 10_000)
    toml = (folder / "instance.toml").read_text()
    start, end = toml.index("[cluster]"), toml.index("[workload]")
    cluster = (f'[cluster]\n[[cluster.gpu_types]]\nname = "A"\ncount = {int(rng.integers(1, 4))}\nmemory_gb = 40\n'
               f'cost_per_hour = 1.0\n[[cluster.gpu_types]]\nname = "B"\ncount = {int(rng.integers(1, 3))}\n'
               f'memory_gb = 48\ncost_per_hour = {rng.uniform(1.5, 3.5):.2f}\n')
    objective = "" if min_quality is None else f'[objective]\nkind = "cost"\nmin_quality = {min_quality}\n'
    (folder / "instance.toml").write_text(toml[:start] + cluster + toml[end:] + objective)
    header, *rows = (folder / "profiles.csv").read_text().split()
    typed = [f"{row},A" for row in rows]
    for row in rows:
        model, tp, mps, rate, ttft = row.split(",")
        typed.append(f"{model},{tp},{mps},{float(rate) * SPEEDUP[0]:.3f},{float(ttft) * SPEEDUP[1]:.3f},B")
    (folder / "profiles.csv").write_text(header + ",gpu_type\n" + "\n".join(typed) + "\n")
    return folder


def outcome(method, instance, **options):
    """A method's plan on the instance, or its infeasibility message (to compare methods that may both fail)."""
    from models.problem.plan import Infeasible

    try:
        return method(instance, **options)
    except Infeasible as err:
        return str(err)
