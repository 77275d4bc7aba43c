"""Step times on another GPU type: the A100 table times the H100/A100 ratios Splitwise measured.

Splitwise (Patel et al., ISCA 2024; `perf_model.csv` of Mutinifni/splitwise-sim, MIT) timed
Llama-2-70B at tensor-parallel degrees 2, 4 and 8 on both A100-80GB and H100-80GB, five
repetitions a point: the prompt (prefill) time of one prompt of n = 128, 256, ..., 8,192 tokens,
and the time per output token of a batch of b = 1, 2, ..., 64 requests (512-token prompts, 128
output tokens). For a GPU type G the ratios at Splitwise's degree t are the ratios of the means

    rho_p(n_k) = prompt_time_G(n_k) / prompt_time_A100(n_k)      (batch 1, 128 output tokens)
    rho_d(b_k) = token_time_G(b_k) / token_time_A100(b_k)        (prompt 512, 128 output tokens)

and between measured points each ratio is linear in log2 n (log2 b), the measured sizes being
powers of two; outside them it is the nearest end's value (flat: no trend is extrapolated).

The table's A100 step times P (prefill of b prompts of s tokens) and D (decode step of b requests
holding s tokens each) become, for a deployment at degree tp,

    P_G(b, s) = rho_p(b s) P(b, s)        a prefill's ratio is that of one prompt as long as the
                                          iteration's b s tokens (prefill time follows its tokens)
    D_G(b, s) = rho_d(b) D(b, s)          a decode step's ratio is that of its batch, whatever
                                          the context (Splitwise varied context at batch 1 only)

with the ratios of the measured degree nearest tp (ties: the larger; tp 1 uses tp 2's), and the
engine's CPU time per iteration added unchanged afterwards (the host does not change with the
GPU). Every MPS SM share m is scaled by the same ratios, so P_G(b, s; m) / P_G(b, s; 100) =
P(b, s; m) / P(b, s; 100): on H100 a share slows a model down as it does on A100.

The served models are not Llama-2-70B: their ratios are Llama-2-70B's at the same degree, an
assumption that `bench/validate_h100.py` measures on the Splitwise rows the ratios do not use
(another degree, another model, the sizes between, batched prefills, longer contexts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.problem.instance import InputError, check_columns, check_positive, numeric_column, read_csv

TABLE_GPU = "A100-80GB"  # the GPU the step-time table measured
HARDWARE = {TABLE_GPU: "a100-80gb", "H100-80GB": "h100-80gb"}  # GPU type -> Splitwise's `hardware`
RATIO_MODEL = "llama2-70b"  # the Splitwise model measured at several degrees
PREFILL_ROWS = {"batch_size": 1, "token_size": 128}  # the prompt-size sweep, by prompt_size
DECODE_ROWS = {"prompt_size": 512, "token_size": 128}  # the batch sweep, by batch_size
KEYS = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
TIMES = ["prompt_time", "token_time"]


@dataclass(frozen=True)
class Ratio:
    """rho(x): measured at the ascending points `at`; linear in log2 x between them, flat outside."""

    at: tuple[float, ...] = (1.0,)
    ratio: tuple[float, ...] = (1.0,)

    def __call__(self, x) -> np.ndarray:
        return np.interp(np.log2(np.asarray(x, dtype=float)), np.log2(self.at), self.ratio)

    @classmethod
    def of(cls, points: pd.Series) -> "Ratio":
        """From measured ratios indexed by size (or batch)."""
        points = points.sort_index()
        return cls(tuple(float(x) for x in points.index), tuple(float(r) for r in points))


@dataclass(frozen=True)
class GpuRatios:
    """Time on a GPU type over time on the table's A100: rho_p by a prefill's tokens, rho_d by a decode's batch.

    The default is the table's own GPU: both ratios 1.
    """

    prefill: Ratio = Ratio()
    decode: Ratio = Ratio()


def read_splitwise(path: str | Path) -> pd.DataFrame:
    """`perf_model.csv` as the mean prompt and token times (ms) of each measured point, indexed by KEYS;
    `InputError` naming the cell if a size is not a whole number or a time is not positive."""
    table = read_csv(Path(path), ("model", "hardware"))
    check_columns(table, KEYS + TIMES)
    frame = pd.DataFrame({key: table.text(key) if key in KEYS[:2] else numeric_column(table, key, integer=key in KEYS)
                          for key in KEYS + TIMES})
    for column in TIMES:
        check_positive(frame[column].to_numpy(), column, table)
    return frame.groupby(KEYS)[TIMES].mean()


def measured_ratios(means: pd.DataFrame, model: str, tp: int, hardware: str) -> tuple[pd.Series, pd.Series]:
    """rho_p by prompt size and rho_d by batch size of `model` at degree `tp` (Splitwise's names); empty if
    not measured on both GPUs."""
    rows = means.reset_index()
    rows = rows[(rows.model == model) & (rows.tensor_parallel == tp)].set_index(KEYS[3:])
    ratio = (rows[rows.hardware == hardware][TIMES] / rows[rows.hardware == HARDWARE[TABLE_GPU]][TIMES]).dropna()
    return sweep(ratio, PREFILL_ROWS).prompt_time, sweep(ratio, DECODE_ROWS).token_time


def sweep(ratio: pd.DataFrame, fixed: dict[str, int]) -> pd.DataFrame:
    """The rows with the `fixed` levels at their values, indexed by the one level left."""
    kept = np.logical_and.reduce([ratio.index.get_level_values(k) == v for k, v in fixed.items()])
    return ratio[kept].droplevel(list(fixed))


def gpu_ratios(path: str | Path, gpu: str, tps) -> dict[int, GpuRatios]:
    """The ratios of GPU type `gpu` for each degree in `tps`, from Splitwise's file at `path`: those of
    RATIO_MODEL at its measured degree nearest each (ties: the larger). The table's own GPU needs no file."""
    if gpu == TABLE_GPU:
        return {tp: GpuRatios() for tp in tps}
    means = read_splitwise(path)
    by_tp = {int(t): measured_ratios(means, RATIO_MODEL, int(t), HARDWARE[gpu])
             for t in means.reset_index().tensor_parallel.unique()}
    measured = sorted(t for t, (prefill, decode) in by_tp.items() if not (prefill.empty or decode.empty))
    if not measured:
        raise InputError(f"{path}: no {RATIO_MODEL} prompt-size and batch sweeps on both "
                         f"'{HARDWARE[gpu]}' and '{HARDWARE[TABLE_GPU]}'; no ratios for {gpu}")
    chosen = {tp: min(measured, key=lambda t: (abs(t - tp), -t)) for tp in tps}
    return {tp: GpuRatios(Ratio.of(by_tp[t][0]), Ratio.of(by_tp[t][1])) for tp, t in chosen.items()}
