"""Replay: a recorded run's exact arrivals and lengths through the simulated server.

A sweep offers Poisson loads with resampled lengths; a replay instead runs
the requests of a measured run as they came (arrival times, prompt and output
tokens) and runs the server until every request has its last token, so that
each request's simulated TTFT and time per output token (TPOT) can be set
beside the measured ones:

    TTFT = first token - arrival,    TPOT = (last token - first token) / (output tokens - 1)

(TPOT is undefined, NaN, for one output token.)

Recorded runs are read from a CSV with one row per request and the columns
`run, nominal_rate_rps, arrival_s, prompt_tokens, output_tokens, ttft_ms,
tpot_ms` (the format of `data/measured/distserve-vllm-opt13b/`); arrival times
are seconds from the run's start, ascending within a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.problem.instance import InputError, check_columns, numeric_column, read_csv
from models.profiling.simulator import Server, serve
from models.profiling.workload import Workload

RUN_COLUMNS = ("run", "nominal_rate_rps", "arrival_s", "prompt_tokens", "output_tokens", "ttft_ms", "tpot_ms")


@dataclass(frozen=True)
class RecordedRun:
    """One measured run: its requests in arrival order and what the real server gave them (ms)."""

    name: str
    nominal_rate_rps: float
    arrival_ms: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_ms)

    @property
    def workload(self) -> Workload:
        """The requests as a workload (gaps in seconds, so arrivals_ms(1.0) is the recording up to rounding)."""
        return Workload(np.diff(self.arrival_ms, prepend=0.0) / 1000.0, self.prompt_tokens, self.output_tokens)

    @property
    def first_token_ms(self) -> np.ndarray:
        return self.arrival_ms + self.ttft_ms


@dataclass(frozen=True)
class Replayed:
    """The simulated server's answer to a recorded run, per request (ms)."""

    first_token_ms: np.ndarray
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray


def replay(server: Server, run: RecordedRun) -> Replayed:
    """Serve the run's requests at their recorded arrival times until each has its last token."""
    served = serve(server, run.workload, run.arrival_ms, until_finished=True)
    decode_steps = run.output_tokens - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(decode_steps > 0, (served.finish_ms - served.first_token_ms) / decode_steps, np.nan)
    return Replayed(served.first_token_ms, served.first_token_ms - run.arrival_ms, tpot)


def read_recorded_runs(path: str | Path) -> tuple[RecordedRun, ...]:
    """The runs of a recorded-requests CSV, in the order they first appear; `InputError` if unusable."""
    path = Path(path)
    table = read_csv(path, ("run",))
    check_columns(table, RUN_COLUMNS)
    if table.frame.empty:
        raise InputError(f"{path}: no requests (the file has a header and no rows)")
    values = {c: numeric_column(table, c, integer=c.endswith("tokens")) for c in RUN_COLUMNS[1:]}
    for column in ("prompt_tokens", "output_tokens"):
        for row in np.flatnonzero(values[column] < 1):
            raise InputError(f"{path}: line {table.line_of(row)}: column '{column}': {values[column][row]:g} is not "
                             f"a positive number of tokens")
    runs = []
    names = table.text("run")
    for name in dict.fromkeys(names):
        rows = np.flatnonzero(names == name)
        arrivals = values["arrival_s"][rows]
        for k in np.flatnonzero(np.diff(arrivals) < 0):
            raise InputError(f"{path}: line {table.line_of(rows[k + 1])}: column 'arrival_s': {arrivals[k + 1]:g} is "
                             f"earlier than the run's previous arrival ({arrivals[k]:g})")
        runs.append(RecordedRun(
            name=name,
            nominal_rate_rps=float(values["nominal_rate_rps"][rows[0]]),
            arrival_ms=arrivals * 1000.0,
            prompt_tokens=values["prompt_tokens"][rows].astype(np.int64),
            output_tokens=values["output_tokens"][rows].astype(np.int64),
            ttft_ms=values["ttft_ms"][rows],
            tpot_ms=values["tpot_ms"][rows],
        ))
    return tuple(runs)
