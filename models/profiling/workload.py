"""The offered workload: Poisson arrivals and per-request prompt and output lengths from a trace.

Lengths are (prompt, output) pairs drawn with replacement from a trace (Azure
LLM inference trace 2023, CC-BY-4.0), each coordinate rescaled by one factor so
that its trace-wide mean becomes the requested mean (docs/latency.md says why),
rounded to whole tokens (at least 1) and cut so prompt + output fits the context
window. Interarrival gaps are unit-rate exponentials, scaled by 1/rate: every
rate sees the same requests in the same order (common random numbers), so
curves compare rates, not samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.problem.instance import InputError

TRACE_COLUMNS = ("ContextTokens", "GeneratedTokens")
CONTEXT_WINDOW = 4096  # tokens, Llama-2's (and Yi-34B's, WizardLM-13B-V1.2's)


@dataclass(frozen=True)
class Trace:
    """Prompt and output token counts of a recorded request stream."""

    path: Path
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray


@dataclass(frozen=True)
class LengthModel:
    """How sampled lengths are rescaled: the target means (tokens) and the context window."""

    prompt_mean: float
    output_mean: float
    context_window: int = CONTEXT_WINDOW


@dataclass(frozen=True)
class Workload:
    """A seeded request stream: unit-rate interarrival gaps and token counts, in arrival order."""

    gaps: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.gaps)

    def arrivals_ms(self, rate_rps: float) -> np.ndarray:
        return np.cumsum(self.gaps) * (1000.0 / rate_rps)

    def head(self, count: int) -> "Workload":
        return Workload(self.gaps[:count], self.prompt_tokens[:count], self.output_tokens[:count])

    @property
    def max_request_tokens(self) -> int:
        return int((self.prompt_tokens + self.output_tokens).max())


def read_trace(path: str | Path) -> Trace:
    """An Azure-format trace (columns ContextTokens, GeneratedTokens); raise `InputError` if unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file is missing")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV file: {str(err).strip()}") from None
    columns = []
    for column in TRACE_COLUMNS:
        if column not in table.columns:
            raise InputError(f"{path}: column '{column}' is missing")
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~(values >= 1) | (values != np.round(values)))
        if bad.size:
            raise InputError(f"{path}: line {bad[0] + 2}: column '{column}': "
                             f"{plain(table[column].iloc[bad[0]])!r} is not a positive whole number of tokens")
        columns.append(values.astype(np.int64))
    if not len(table):
        raise InputError(f"{path}: no requests (the file has a header and no rows)")
    return Trace(path, columns[0], columns[1])


def plain(value):
    """A cell as Python shows it (0, 1.5, 'x'), not numpy's repr (np.int64(0))."""
    return value.item() if isinstance(value, np.generic) else value


def sample_workload(trace: Trace, lengths: LengthModel, count: int, seed: int) -> Workload:
    """`count` requests: trace pairs drawn with replacement, rescaled, cut to the context window."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(trace.prompt_tokens), size=count)
    gaps = rng.exponential(size=count)
    prompt = rescale(trace.prompt_tokens, lengths.prompt_mean)[picks]
    output = rescale(trace.output_tokens, lengths.output_mean)[picks]
    prompt = np.minimum(prompt, lengths.context_window - 1)
    output = np.minimum(output, lengths.context_window - prompt)
    return Workload(gaps, prompt, output)


def rescale(tokens: np.ndarray, mean: float) -> np.ndarray:
    """Token counts multiplied by mean / their mean, rounded, at least 1."""
    return np.maximum(1, np.round(tokens * (mean / tokens.mean()))).astype(np.int64)
