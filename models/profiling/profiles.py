"""Latency curves for a set of deployments, as SPEC `profiles.csv` rows, built in parallel: in local
processes or as Ray tasks (`models/problem/tasks.py`).

Models that share a stand-in, an option and a KV-cache size would get the same
curve: `curve_jobs` makes one job for each such group, and the job's rows are
written once per model of the group.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from models.problem.instance import PROFILE_COLUMNS, Curve, InputError
from models.problem.latency import latency_ms
from models.problem.tasks import Engine, Failure, attempt, run_tasks
from models.profiling.analytic import analytic_curve
from models.profiling.deployments import Deployment
from models.profiling.gpus import GpuRatios
from models.profiling.overheads import IterationCost
from models.profiling.server import ServerConfig
from models.profiling.simulator import Server
from models.profiling.sweep import SweepSettings, sweep
from models.profiling.table import StepTable, StepTimes
from models.profiling.workload import Workload

KEY_COLUMNS = ["model", "tp", "mps_pct"]
PROGRESS_EVERY_S = 5.0  # at most one plain progress line per this many seconds


@dataclass(frozen=True)
class CurveJob:
    """Everything one worker needs to build one curve, and the models that get it."""

    models: tuple[str, ...]
    table_model: str
    tp: int
    mps_pct: int
    kv_tokens: int
    table: StepTable
    workload: Workload
    context_window: int
    cpu: IterationCost = IterationCost()
    gpu: GpuRatios = GpuRatios()
    request_delay_ms: float = 0.0
    settings: SweepSettings = SweepSettings()

    def config(self) -> ServerConfig:
        return ServerConfig(kv_tokens=self.kv_tokens, token_budget=self.context_window)

    def step_times(self) -> StepTimes:
        return self.table.step_times(self.table_model, self.tp, self.mps_pct).with_cpu(self.cpu).on_gpu(self.gpu)

    def for_each_model(self, curve: pd.DataFrame) -> pd.DataFrame:
        """The curve's rows once per model, with their option."""
        return pd.concat([curve.assign(model=model, tp=self.tp, mps_pct=self.mps_pct) for model in self.models],
                         ignore_index=True)


def curve_jobs(found: tuple[Deployment, ...], cpu_by_tp: dict[int, IterationCost], gpu_by_tp: dict[int, GpuRatios],
               **common) -> list[CurveJob]:
    """One job per distinct (stand-in, tp, MPS share, KV tokens), in order of first appearance, with the
    CPU time per iteration and the GPU type's ratios of its tp; `common` are the remaining CurveJob fields."""
    groups: dict[tuple, list[str]] = {}
    for d in found:
        groups.setdefault((d.table_model, d.tp, d.mps_pct, d.kv_tokens), []).append(d.model)
    return [CurveJob(tuple(models), *key, cpu=cpu_by_tp[key[1]], gpu=gpu_by_tp[key[1]], **common)
            for key, models in groups.items()]


def analytic_rows(job: CurveJob) -> pd.DataFrame:
    """The analytic model's curve (models/profiling/analytic.py), SPEC columns only."""
    points = analytic_curve(job.step_times(), job.config(), job.workload)
    return job.for_each_model(pd.DataFrame({
        "rate_rps": [rate for rate, _ in points],
        "mean_ttft_ms": [ttft + job.request_delay_ms for _, ttft in points],
    }))


def simulated_rows(job: CurveJob) -> pd.DataFrame:
    """The stable points of a simulated sweep, with percentiles, the interval and the run length."""
    server = Server.build(job.config(), job.step_times(), job.context_window, job.request_delay_ms)
    stable = [point for point in sweep(server, job.workload, job.settings) if not point.saturated]
    if not stable:
        raise InputError(f"{', '.join(job.models)} at tp{job.tp}/mps{job.mps_pct}: the queue grows already at "
                         f"the lowest rate (5 % of its capacity estimate); the step times cannot make a curve")
    return job.for_each_model(pd.DataFrame([vars(point) for point in stable]).drop(columns="saturated"))


def build_profiles(jobs: list[CurveJob], build, workers: int = 1, progress: bool = True,
                   engine: Engine = Engine()) -> tuple[pd.DataFrame, list[str]]:
    """`build` (analytic_rows or simulated_rows) on every job: the curves built, sorted by model, tp, mps_pct,
    rate, and one line per job that failed (its models, option and error; in the jobs' order), the others
    built all the same.

    The local engine runs `workers` processes (one: in this process); the Ray engine one task per job,
    the jobs put in the object store once. Progress on stderr counts finished curves (`progress_meter`).
    Each curve depends only on its job, so the result is the same for any engine and number of workers.
    """
    meter = progress_meter(len(jobs), progress)
    frames, failed = [], {}
    with closing(curve_outcomes(jobs, build, workers, engine)) as outcomes:
        for position, outcome in outcomes:
            if isinstance(outcome, Failure):
                job = jobs[position]
                failed[position] = f"{', '.join(job.models)} at tp{job.tp}/mps{job.mps_pct}: {outcome.reason}"
            else:
                frames.append(outcome)
            meter.update()
    meter.close()
    profiles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(PROFILE_COLUMNS))
    return profiles.sort_values(KEY_COLUMNS + ["rate_rps"], ignore_index=True), [failed[k] for k in sorted(failed)]


def curve_outcomes(jobs: list[CurveJob], build, workers: int, engine: Engine) -> Iterator[tuple[int, object]]:
    """(position of the job, its curve's rows or `Failure`), as each curve is finished."""
    if engine.name == "ray":
        yield from run_tasks(job_rows, (build, tuple(jobs)), range(len(jobs)), engine)
    elif workers > 1:
        with multiprocessing.Pool(workers) as pool:
            yield from pool.imap_unordered(partial(numbered_rows, build), enumerate(jobs))
    else:
        yield from map(partial(numbered_rows, build), enumerate(jobs))


def numbered_rows(build, numbered: tuple[int, CurveJob]) -> tuple[int, object]:
    """A local worker's task: the job's position, and its curve's rows or `Failure`."""
    position, job = numbered
    return position, attempt(build, job)


def job_rows(shared: tuple, position: int) -> pd.DataFrame:
    """A Ray task: the rows of the curve of job `position` of the shared (build, jobs)."""
    build, jobs = shared
    return build(jobs[position])


def progress_meter(total: int, enabled: bool):
    """A bar on a terminal; otherwise plain timestamped lines (`PlainProgress`); nothing if not enabled."""
    if enabled and not sys.stderr.isatty():
        return PlainProgress(total)
    return tqdm(total=total, desc="latency curves", unit="curve", disable=not enabled)


class PlainProgress:
    """Lines 'YYYY-MM-DD HH:MM:SS latency curves: k/n, about S s left' on stderr (the time left at the mean pace
    so far; the last line without it), at most one per PROGRESS_EVERY_S and the last."""

    def __init__(self, total: int):
        self.total, self.done, self.last_line = total, 0, -np.inf
        self.started = time.monotonic()

    def update(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.done == self.total or now - self.last_line >= PROGRESS_EVERY_S:
            left = "" if self.done == self.total else \
                f", about {(now - self.started) / self.done * (self.total - self.done):.0f} s left"
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} latency curves: {self.done}/{self.total}{left}",
                  file=sys.stderr, flush=True)
            self.last_line = now

    def close(self) -> None:
        pass


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
