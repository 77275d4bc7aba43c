#!/usr/bin/env python3
"""Hold-out validation of the H100 step times: Splitwise's H100/A100 ratios on rows they were not derived from.

    python bench/validate_h100.py [--data data/measured]

The H100 curves (`solve.py profile --gpu H100-80GB`) scale the A100 table by ratios that
Splitwise measured on Llama-2-70B (models/profiling/gpus.py): rho_p by the tokens of a prefill,
rho_d by the batch of a decode step, linear in log2 between measured points, flat outside, taken
from the nearest measured tensor-parallel degree. Each check below derives the ratios from some
of Splitwise's rows (`perf_model.csv`, means over repetitions) and predicts the H100 time of
other rows as their measured A100 time times the ratio at that row: a prompt time times
rho_p(prompt size x batch), a time per output token times rho_d(batch). The error is predicted
over measured H100 time, minus 1.

* sizes between: ratios from each (model, tp) at prompt sizes 128, 512, 2048, 8192 and batches
  1, 4, 16, 64; predicted at 256, 1024, 4096 tokens and batches 2, 8, 32 of the same (model, tp);
* another degree: ratios of Llama-2-70B at one tp, predicted on its sweeps at another (tp 1 of
  the shipped curves uses tp 2's ratios);
* another model: ratios of Llama-2-70B at tp 8 (the same degree; also at 4 and 2), predicted on
  BLOOM-176B's sweeps at tp 8 (the served models are not Llama-2-70B);
* batched prefill: prompt times of 2 to 64 prompts of 512 tokens, which no ratio uses, with rho_p
  at 512 x batch tokens of the same (model, tp);
* longer contexts: times per output token at batch 1 with 256 to 8,192 output tokens, which no
  ratio uses, with rho_d(1) of the same (model, tp).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.profiling.gpus import (  # noqa: E402
    DECODE_ROWS,
    HARDWARE,
    PREFILL_ROWS,
    GpuRatios,
    Ratio,
    measured_ratios,
    read_splitwise,
)

H100 = HARDWARE["H100-80GB"]
SERVED = [("llama2-70b", 2), ("llama2-70b", 4), ("llama2-70b", 8), ("bloom-176b", 8)]
PHASES = {"prefill": ("prompt_time", lambda rows, r: r.prefill(rows.prompt_size * rows.batch_size)),
          "decode": ("token_time", lambda rows, r: r.decode(rows.batch_size))}


def paired(means: pd.DataFrame, model: str, tp: int) -> pd.DataFrame:
    """One row per measured point of (model, tp) with its A100 and H100 mean times."""
    rows = means.reset_index()
    rows = rows[(rows.model == model) & (rows.tensor_parallel == tp)]
    keys = ["prompt_size", "batch_size", "token_size"]
    return rows[rows.hardware == HARDWARE["A100-80GB"]].merge(rows[rows.hardware == H100], on=keys,
                                                              suffixes=("_a100", "_h100"))


def in_sweep(rows: pd.DataFrame, fixed: dict[str, int]) -> pd.DataFrame:
    return rows[np.logical_and.reduce([rows[k] == v for k, v in fixed.items()])]


def errors_pct(rows: pd.DataFrame, ratios: GpuRatios, phase: str) -> np.ndarray:
    """100 (A100 time x ratio / H100 time - 1) of every row, for the phase's time."""
    column, ratio_at = PHASES[phase]
    predicted = rows[f"{column}_a100"] * ratio_at(rows, ratios)
    return (100 * (predicted / rows[f"{column}_h100"] - 1)).to_numpy()


def sweeps(pairs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {"prefill": in_sweep(pairs, PREFILL_ROWS), "decode": in_sweep(pairs, DECODE_ROWS)}


def ratios_of(means: pd.DataFrame, model: str, tp: int, every: int = 1) -> GpuRatios:
    """The ratios of (model, tp), from every `every`-th measured size and batch."""
    prefill, decode = measured_ratios(means, model, tp, H100)
    return GpuRatios(Ratio.of(prefill.iloc[::every]), Ratio.of(decode.iloc[::every]))


def checks(means: pd.DataFrame):
    """(check, ratios from, predicted rows, phase, errors in %) for every hold-out."""
    for model, tp in SERVED:
        pairs, alternate = paired(means, model, tp), ratios_of(means, model, tp, every=2)
        for phase, rows in sweeps(pairs).items():
            key = "prompt_size" if phase == "prefill" else "batch_size"
            between = rows[~rows[key].isin(getattr(alternate, phase).at)]
            yield "sizes between", f"{model} tp{tp}, alternate sizes", "the others", phase, \
                errors_pct(between, alternate, phase)
    for source in (2, 4, 8):
        for target in (2, 4, 8):
            if source != target:
                for phase, rows in sweeps(paired(means, "llama2-70b", target)).items():
                    yield "another degree", f"llama2-70b tp{source}", f"llama2-70b tp{target}", phase, \
                        errors_pct(rows, ratios_of(means, "llama2-70b", source), phase)
    for source in (8, 4, 2):
        for phase, rows in sweeps(paired(means, "bloom-176b", 8)).items():
            yield "another model", f"llama2-70b tp{source}", "bloom-176b tp8", phase, \
                errors_pct(rows, ratios_of(means, "llama2-70b", source), phase)
    for model, tp in SERVED:
        pairs, ratios = paired(means, model, tp), ratios_of(means, model, tp)
        batched = in_sweep(pairs, DECODE_ROWS)
        yield "batched prefill", f"{model} tp{tp}", "batch 2-64 x 512 tokens", "prefill", \
            errors_pct(batched[batched.batch_size > 1], ratios, "prefill")
        longer = in_sweep(pairs, {"prompt_size": 512, "batch_size": 1})
        yield "longer contexts", f"{model} tp{tp}", "batch 1, 256-8192 output", "decode", \
            errors_pct(longer[longer.token_size > 128], ratios, "decode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "measured")
    args = parser.parse_args()
    means = read_splitwise(args.data / "splitwise-a100-h100" / "perf_model.csv")
    rows = [{"check": check, "ratios from": source, "predicted": target, "phase": phase, "rows": len(errors),
             "mean error %": errors.mean(), "mean |error| %": np.abs(errors).mean(),
             "max |error| %": np.abs(errors).max()}
            for check, source, target, phase, errors in checks(means)]
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print("H100 time predicted as measured A100 time x Splitwise's H100/A100 ratio, on rows the ratio does "
          "not use (error = predicted / measured H100 - 1)")
    print(table.round(1).to_string(index=False))
    print("\nper check and phase, over its rows:")
    print(table.groupby(["check", "phase"], sort=False).apply(summary, include_groups=False).round(1)
          .astype({"rows": int}).to_string())


def summary(group: pd.DataFrame) -> pd.Series:
    weights = group["rows"]
    return pd.Series({"rows": weights.sum(),
                      "mean |error| %": (group["mean |error| %"] * weights).sum() / weights.sum(),
                      "max |error| %": group["max |error| %"].max()})


if __name__ == "__main__":
    main()
