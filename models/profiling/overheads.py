"""CPU time per iteration of a vLLM-style engine, from Vidur's measurements on A100.

Besides the GPU step (the MuxServe table), every iteration of vLLM's engine
spends CPU time that the GPU does not overlap. Vidur (microsoft/vidur, MIT)
measured it per iteration, by model, batch size b (8..128) and tensor-parallel
degree tp (1, 2, 4), as components; its simulator charges their sum on every
iteration:

* schedule (choosing the batch), sampler (end to end), prepare inputs (end to
  end), process model outputs: the engine's own CPU work;
* Ray communication: handing the iteration to the tensor-parallel workers
  (0.2-1 ms at tp 1, about 6 ms at tp 2 and 4).

Per tp and component, a least-squares line t_c(b) = a_c + s_c b through the
measured points of every model at that tp (docs/latency.md lists a_c, s_c).
A tp that was not measured uses the largest measured tp below it (tp 8 uses tp 4).

The time charged to an iteration of b requests (prefill or decode) is

    T_cpu(b) = k * sum_{c in engine} t_c(b) + t_ray(b)

with k the overhead scale (1: as Vidur measured; `calibration` fits it). It is
linear in b, so an `IterationCost` holds just its two coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from models.problem.instance import InputError, check_columns, numeric_column, read_csv

ENGINE_COMPONENTS = {  # component -> Vidur's column (mean over the iterations it measured)
    "schedule": "schedule_mean",
    "sampler": "sampler_e2e_mean",
    "prepare inputs": "prepare_inputs_e2e_mean",
    "process outputs": "process_model_outputs_mean",
}
RAY_COMPONENT = ("ray communication", "ray_comm_time_mean")
BATCH_COLUMN, TP_COLUMN = "batch_size", "tensor_parallel_degree"


@dataclass(frozen=True)
class IterationCost:
    """CPU time (ms) of an iteration of b requests: fixed_ms + per_request_ms * b."""

    fixed_ms: float = 0.0
    per_request_ms: float = 0.0

    def at(self, batch) -> np.ndarray:
        return self.fixed_ms + self.per_request_ms * np.asarray(batch, dtype=float)

    def plus(self, other: "IterationCost", scale: float = 1.0) -> "IterationCost":
        """This cost plus `scale` times `other`."""
        return IterationCost(self.fixed_ms + scale * other.fixed_ms,
                             self.per_request_ms + scale * other.per_request_ms)


@dataclass(frozen=True)
class CpuOverheads:
    """Fitted lines per tp and component (component names of ENGINE_COMPONENTS and RAY_COMPONENT)."""

    path: Path
    lines: Mapping[int, Mapping[str, IterationCost]]

    def measured_tp(self, tp: int) -> int:
        """The tp whose measurements stand for `tp`: the largest measured one not above it."""
        below = [t for t in self.lines if t <= tp]
        if not below:
            raise InputError(f"{self.path}: no measurements at tensor-parallel degree {tp} or below")
        return max(below)

    def iteration_cost(self, tp: int, scale: float = 1.0) -> IterationCost:
        """T_cpu(b) at degree tp: `scale` times the engine components plus the Ray communication."""
        lines = self.lines[self.measured_tp(tp)]
        engine = IterationCost()
        for component in ENGINE_COMPONENTS:
            engine = engine.plus(lines[component])
        return lines[RAY_COMPONENT[0]].plus(engine, scale)


def read_cpu_overheads(path: str | Path) -> CpuOverheads:
    """Vidur's `cpu_overheads.csv`, one line per tp and component; `InputError` if unusable."""
    path = Path(path)
    table = read_csv(path)
    columns = {**ENGINE_COMPONENTS, RAY_COMPONENT[0]: RAY_COMPONENT[1]}
    check_columns(table, [BATCH_COLUMN, TP_COLUMN, *columns.values()])
    if table.frame.empty:
        raise InputError(f"{path}: no measurements (the file has a header and no rows)")
    batch = numeric_column(table, BATCH_COLUMN, integer=True)
    tp = numeric_column(table, TP_COLUMN, integer=True)
    for row in np.flatnonzero((batch < 1) | (tp < 1)):
        raise InputError(f"{path}: line {table.line_of(row)}: batch size and tensor-parallel degree must be at least 1")
    times = {name: numeric_column(table, column) for name, column in columns.items()}
    lines = {}
    for degree in np.unique(tp).astype(int):
        rows = tp == degree
        if len(np.unique(batch[rows])) < 2:
            raise InputError(f"{path}: tensor-parallel degree {degree}: fewer than two batch sizes; no line to fit")
        lines[int(degree)] = {name: fit_line(batch[rows], values[rows]) for name, values in times.items()}
    return CpuOverheads(path, lines)


def fit_line(batch: np.ndarray, times_ms: np.ndarray) -> IterationCost:
    """Least-squares a + s b through the measured (batch size, time) points."""
    slope, intercept = np.polyfit(batch, times_ms, 1)
    return IterationCost(float(intercept), float(slope))
