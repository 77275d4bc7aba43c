"""Measured step times (MuxServe's A100-80GB table) and their interpolation.

The table (`llama.json`, format in the shared data's UPSTREAM_FORMAT.md) gives,
for a table model, a tensor-parallel degree `tp`, an SM share `sm_pct`, a batch
size `b` and a sequence length `s`, the time (ms) of

* a prefill iteration over `b` prompts of `s` tokens each (b * s input tokens);
* a decode iteration over `b` requests each holding `s` tokens of KV cache.

-1 marks a point the profiler could not run (out of memory); such entries are
dropped on reading and never used.

`StepTimes` turns one (model, tp, sm_pct) slice into a function of (b, s):

* inside the measured grid: bilinear in (b, s) on their natural scales, which
  is exact for the dominant term of both phases (time linear in b * s);
* s beyond a row's last measured length: linear extrapolation along s through
  that row's last two measured points (prefill and decode are both linear in
  s at fixed b there; the quadratic attention term of prefill is neglected);
* b beyond the last row with two measured lengths: linear extrapolation along b
  through the last two such rows;
* s below the first measured length (32): flat (the fixed per-iteration cost
  dominates there);
* extrapolation slopes are clipped at 0, so times never fall outside the grid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import numpy as np

from models.problem.instance import InputError
from models.profiling.gpus import GpuRatios
from models.profiling.overheads import IterationCost

PHASES = ("prefill", "decoding")
OUT_OF_MEMORY = -1.0


class TableError(InputError):
    """Bad step-time table. Its message is one line naming the file, the entry and what is wrong."""


@dataclass(frozen=True)
class Slice:
    """One phase of one (model, tp, sm_pct) slice: measured times, NaN where out of memory."""

    batch_sizes: np.ndarray  # ascending, shape (B,)
    seq_lens: np.ndarray  # ascending, shape (S,)
    times_ms: np.ndarray  # shape (B, S)


@dataclass(frozen=True)
class StepTable:
    """The whole measured table: slices keyed by (table model, tp, sm_pct, phase)."""

    path: Path
    slices: Mapping[tuple[str, int, int, str], Slice]

    def models(self) -> tuple[str, ...]:
        return tuple(sorted({key[0] for key in self.slices}))

    def tps(self, model: str) -> tuple[int, ...]:
        return tuple(sorted({key[1] for key in self.slices if key[0] == model}))

    def sm_pcts(self, model: str, tp: int) -> tuple[int, ...]:
        return tuple(sorted({key[2] for key in self.slices if key[:2] == (model, tp)}))

    def step_times(self, model: str, tp: int, sm_pct: int) -> "StepTimes":
        key = (model, tp, sm_pct)
        if (*key, "prefill") not in self.slices:
            raise TableError(f"{self.path}: no measurements for {model} at tp {tp} and SM share {sm_pct}%")
        return StepTimes(
            prefill=RowInterpolant.of(self.slices[(*key, "prefill")], self.path, f"{model}/{tp}/{sm_pct}/prefill"),
            decode=RowInterpolant.of(self.slices[(*key, "decoding")], self.path, f"{model}/{tp}/{sm_pct}/decoding"),
        )


# ---------------------------------------------------------------- reading


def read_step_table(path: str | Path) -> StepTable:
    """Parse and check a MuxServe-format JSON table; raise `TableError` on the first problem."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: file is missing")
    try:
        tree = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TableError(f"{path}: not valid JSON: {err}") from None
    require_mapping(tree, path, "top level")
    if not tree:
        raise TableError(f"{path}: no models in the table")
    slices = {}
    for model, by_tp in tree.items():
        for tp, by_sm in items_by_int(by_tp, path, model):
            for sm_pct, by_batch in items_by_int(by_sm, path, f"{model}/{tp}"):
                if sm_pct > 100:
                    raise TableError(f"{path}: {model}/{tp}/{sm_pct}: SM share above 100%")
                for phase in PHASES:
                    slices[(model, tp, sm_pct, phase)] = read_slice(by_batch, path, f"{model}/{tp}/{sm_pct}", phase)
    return StepTable(path, slices)


def require_mapping(node, path: Path, where: str) -> None:
    if not isinstance(node, dict):
        raise TableError(f"{path}: {where}: expected an object, found {type(node).__name__}")


def items_by_int(node, path: Path, where: str) -> list[tuple[int, object]]:
    """An object's entries with their keys read as positive integers, in ascending key order."""
    require_mapping(node, path, where)
    if not node:
        raise TableError(f"{path}: {where}: no entries")
    items = []
    for key, value in node.items():
        if not key.strip().isdigit() or int(key) <= 0:
            raise TableError(f"{path}: {where}: key {key!r} is not a positive integer")
        items.append((int(key), value))
    return sorted(items, key=lambda item: item[0])


def read_slice(by_batch, path: Path, where: str, phase: str) -> Slice:
    """One phase of a slice as a (batch, seq) grid; every batch row must list the same lengths."""
    rows = items_by_int(by_batch, path, where)
    seq_lens = [s for s, _ in items_by_int(rows[0][1], path, f"{where}/{rows[0][0]}")]
    times = np.full((len(rows), len(seq_lens)), np.nan)
    for r, (batch, by_seq) in enumerate(rows):
        entries = items_by_int(by_seq, path, f"{where}/{batch}")
        if [s for s, _ in entries] != seq_lens:
            raise TableError(f"{path}: {where}/{batch}: sequence lengths {[s for s, _ in entries]} "
                             f"differ from {seq_lens} of batch size {rows[0][0]}")
        for c, (seq, point) in enumerate(entries):
            times[r, c] = read_time(point, path, f"{where}/{batch}/{seq}", phase)
    return Slice(np.array([b for b, _ in rows], dtype=float), np.array(seq_lens, dtype=float), times)


def read_time(point, path: Path, where: str, phase: str) -> float:
    """A measured time in ms, or NaN for the out-of-memory marker -1."""
    require_mapping(point, path, where)
    if phase not in point:
        raise TableError(f"{path}: {where}: field '{phase}' is missing")
    value = point[phase]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TableError(f"{path}: {where}: field '{phase}': {value!r} is not a number")
    if value == OUT_OF_MEMORY:
        return math.nan
    if value <= 0:
        raise TableError(f"{path}: {where}: field '{phase}': {value!r} is neither a positive time (ms) "
                         f"nor -1 (out of memory)")
    return float(value)


# ---------------------------------------------------------------- interpolation


@dataclass(frozen=True)
class RowInterpolant:
    """Time (ms) as a function of (b, s) for one phase, built from the rows with >= 2 measured lengths."""

    batch_sizes: np.ndarray  # rows kept, ascending
    row_lens: tuple[np.ndarray, ...]  # measured lengths of each kept row
    row_times: tuple[np.ndarray, ...]  # their times

    @classmethod
    def of(cls, grid: Slice, path: Path, where: str) -> "RowInterpolant":
        kept = [r for r in range(len(grid.batch_sizes)) if np.isfinite(grid.times_ms[r]).sum() >= 2]
        if len(kept) < 2:
            raise TableError(f"{path}: {where}: fewer than two batch sizes with two measured lengths; "
                             f"nothing to interpolate")
        measured = [np.isfinite(grid.times_ms[r]) for r in kept]
        return cls(
            batch_sizes=grid.batch_sizes[kept],
            row_lens=tuple(grid.seq_lens[m] for m, r in zip(measured, kept)),
            row_times=tuple(grid.times_ms[r][m] for m, r in zip(measured, kept)),
        )

    def outer(self, batch, seq) -> np.ndarray:
        """Times (ms) on the grid batch x seq: element [i, j] is at b = batch[i] (>= 1), s = seq[j] tokens."""
        seq = np.atleast_1d(np.asarray(seq, dtype=float))
        rows = np.array([along_seq(lens, times, seq) for lens, times in zip(self.row_lens, self.row_times)])
        return along_batch(self.batch_sizes, rows, np.atleast_1d(np.asarray(batch, dtype=float)))


def along_seq(lens: np.ndarray, times: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """One row's time at lengths `seq`: linear between measured points, flat below, extrapolated above."""
    inside = np.interp(seq, lens, times)
    slope = max(0.0, (times[-1] - times[-2]) / (lens[-1] - lens[-2]))
    return np.where(seq > lens[-1], times[-1] + slope * (seq - lens[-1]), inside)


def along_batch(batch_sizes: np.ndarray, rows: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """Linear in b between kept rows (rows[k] holds row k at the query lengths), extrapolated above the last."""
    upper = np.clip(np.searchsorted(batch_sizes, batch, side="left"), 1, len(batch_sizes) - 1)
    b0, b1 = batch_sizes[upper - 1], batch_sizes[upper]
    t0, t1 = rows[upper - 1], rows[upper]
    slope = (t1 - t0) / (b1 - b0)[:, None]
    slope = np.where((batch > batch_sizes[-1])[:, None], np.maximum(slope, 0.0), slope)
    return t0 + slope * (np.maximum(batch, batch_sizes[0]) - b0)[:, None]


@dataclass(frozen=True)
class StepTimes:
    """Prefill and decode iteration times (ms) of one deployment option, as functions of (b, s).

    An iteration of b requests takes the table's GPU time, times the GPU type's ratio `gpu`
    (models/profiling/gpus.py: rho_p(b s) for a prefill, rho_d(b) for a decode; 1 on the table's
    own GPU unless `on_gpu` sets it), plus the engine's CPU time `cpu` at b
    (models/profiling/overheads.py; none unless `with_cpu` adds it).
    """

    prefill: RowInterpolant
    decode: RowInterpolant
    cpu: IterationCost = IterationCost()
    gpu: GpuRatios = GpuRatios()

    def with_cpu(self, cpu: IterationCost) -> "StepTimes":
        return replace(self, cpu=cpu)

    def on_gpu(self, gpu: GpuRatios) -> "StepTimes":
        return replace(self, gpu=gpu)

    def prefill_ms(self, batch, seq) -> np.ndarray:
        """Prefill times on the grid batch x seq (see `RowInterpolant.outer`), GPU ratio and CPU time included."""
        batch, seq = np.atleast_1d(batch), np.atleast_1d(seq)
        gpu_ms = self.prefill.outer(batch, seq) * self.gpu.prefill(np.multiply.outer(batch, seq))
        return gpu_ms + self.cpu.at(batch)[:, None]

    def decode_ms(self, batch, seq) -> np.ndarray:
        """Decode step times on the grid batch x seq, GPU ratio and CPU time included."""
        batch = np.atleast_1d(batch)
        return self.decode.outer(batch, seq) * self.gpu.decode(batch)[:, None] + self.cpu.at(batch)[:, None]

    def grids(self, max_batch: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense lookups `grid[b, s]` for b in 0..max_batch, s in 0..max_len (b = 0 and s = 0 read as 1)."""
        batch = np.maximum(np.arange(max_batch + 1), 1)
        seq = np.maximum(np.arange(max_len + 1), 1)
        return self.prefill_ms(batch, seq), self.decode_ms(batch, seq)
