"""Latency curves for a set of deployments, as SPEC `profiles.csv` rows, built in parallel."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from models.problem.instance import PROFILE_COLUMNS, Curve, InputError
from models.problem.latency import latency_ms
from models.profiling.analytic import analytic_curve
from models.profiling.deployments import Deployment
from models.profiling.server import ServerConfig
from models.profiling.simulator import Server
from models.profiling.sweep import SweepSettings, sweep
from models.profiling.table import StepTable
from models.profiling.workload import Workload

KEY_COLUMNS = ["model", "tp", "mps_pct"]


@dataclass(frozen=True)
class CurveJob:
    """Everything one worker needs to build one deployment's curve."""

    deployment: Deployment
    table: StepTable
    workload: Workload
    context_window: int
    settings: SweepSettings = SweepSettings()

    def config(self) -> ServerConfig:
        return ServerConfig(kv_tokens=self.deployment.kv_tokens, token_budget=self.context_window)


def analytic_rows(job: CurveJob) -> pd.DataFrame:
    """The analytic model's curve (models/profiling/analytic.py), SPEC columns only."""
    d = job.deployment
    step_times = job.table.step_times(d.table_model, d.tp, d.mps_pct)
    points = analytic_curve(step_times, job.config(), job.workload)
    return pd.DataFrame({
        "model": d.model, "tp": d.tp, "mps_pct": d.mps_pct,
        "rate_rps": [rate for rate, _ in points],
        "mean_ttft_ms": [ttft for _, ttft in points],
    })


def simulated_rows(job: CurveJob) -> pd.DataFrame:
    """The stable points of a simulated sweep, with percentiles, the interval and the run length."""
    d = job.deployment
    server = Server.build(job.config(), job.table.step_times(d.table_model, d.tp, d.mps_pct), job.context_window)
    stable = [point for point in sweep(server, job.workload, job.settings) if not point.saturated]
    if not stable:
        raise InputError(f"{d.model} at tp{d.tp}/mps{d.mps_pct}: saturated already at the lowest rate "
                         f"(5 % of its capacity estimate); the step times cannot make a curve")
    frame = pd.DataFrame([vars(point) for point in stable]).drop(columns="saturated")
    return frame.assign(model=d.model, tp=d.tp, mps_pct=d.mps_pct)


def build_profiles(jobs: list[CurveJob], build, workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """`build` (analytic_rows or simulated_rows) on every job, sorted by model, tp, mps_pct, rate.

    A progress bar on stderr counts finished curves. Each curve depends only on its job, so the
    result is the same for any number of workers.
    """
    bar = tqdm(total=len(jobs), desc="latency curves", unit="curve", disable=not progress)
    frames = []
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            for frame in pool.imap_unordered(build, jobs):
                frames.append(frame)
                bar.update()
    else:
        for job in jobs:
            frames.append(build(job))
            bar.update()
    bar.close()
    return pd.concat(frames, ignore_index=True).sort_values(KEY_COLUMNS + ["rate_rps"], ignore_index=True)


def write_profiles(profiles: pd.DataFrame, path: Path) -> None:
    """SPEC columns first, then any optional ones; times rounded to 0.01 ms, rates to 0.001 requests/s."""
    rounded = profiles.round({"rate_rps": 3}).round({c: 2 for c in profiles.columns if c.endswith("_ms")})
    columns = list(PROFILE_COLUMNS) + sorted(c for c in profiles.columns if c not in PROFILE_COLUMNS)
    rounded[columns].to_csv(path, index=False)


def best_single_model(profiles: pd.DataFrame, rate_rps: float) -> pd.DataFrame:
    """Per model, its lowest mean TTFT over options if it alone took all traffic at `rate_rps`.

    `ttft_ms` is the SPEC's interpolated latency L(rate_rps), infinite when no option
    sustains the rate; `max_rate_rps` is the highest load any option of the model sustains.
    """
    rows = []
    for (model, tp, mps), points in profiles.groupby(KEY_COLUMNS, sort=True):
        curve = Curve(tuple(points.rate_rps), tuple(points.mean_ttft_ms))
        rows.append({"model": model, "option": f"tp{tp}/mps{mps}", "ttft_ms": latency_ms(curve, rate_rps),
                     "max_rate_rps": curve.max_rate_rps})
    options = pd.DataFrame(rows)
    best = options.sort_values("ttft_ms", kind="stable").groupby("model", sort=True).head(1).set_index("model")
    best["max_rate_rps"] = options.groupby("model").max_rate_rps.max()
    best.loc[~np.isfinite(best.ttft_ms), "option"] = "-"
    return best.reset_index()
