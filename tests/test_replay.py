"""Replay of recorded runs: a hand-checked 20-request trace, the reader's one-line errors, and the
calibration's inputs (the measured runs and the measured server) as the bench uses them."""

from pathlib import Path

import numpy as np
import pytest

from conftest import MEASURED

from models.problem.instance import InputError
from models.profiling.calibration import OPT13B_SERVER
from models.profiling.replay import RUN_COLUMNS, read_recorded_runs, replay
from models.profiling.server import ServerConfig
from models.profiling.simulator import Server

# Prefill takes 10 ms and a decode step 4 ms whatever their size; every prompt has 16 tokens, so a
# prefill holds at most 4 of them (token budget 64). Waiting requests are prefilled before the
# running ones decode; a request arriving when an iteration ends joins the next one.
#   (arrival ms, output tokens) -> engine times of first token (and last, when output > 1)
HAND_TRACE = [
    (0, 1),  # idle: prefill 0-10, first token 10
    (2, 3), (5, 1),  # wait for it; prefilled together 10-20 -> 20; request 1 then decodes
    (21, 1),  # at 20 nobody waits: decode 20-24; then its prefill 24-34 -> 34; request 1 decodes 34-38, done
    (40, 1),  # idle: 40-50 -> 50
    (41, 1), (42, 1), (43, 1), (44, 1),  # 4 x 16 tokens fill the budget: 50-60 -> 60
    (51, 2), (52, 2), (53, 2), (54, 2), (55, 2),  # 4 of them 60-70 -> 70, the fifth 70-80 -> 80; decode 80-84
    (90, 1),  # idle: 90-100 -> 100
    (100, 1),  # arrives as that prefill ends: 100-110 -> 110
    (200, 1), (200, 1), (200, 1), (200, 1),  # arrive together: 200-210 -> 210
]
FIRST_TOKENS = [10, 20, 20, 34, 50, 60, 60, 60, 60, 70, 70, 70, 70, 80, 100, 110, 210, 210, 210, 210]
LAST_TOKENS = {1: 38, 9: 84, 10: 84, 11: 84, 12: 84, 13: 84}
DELAY_MS = 1.5


def write_runs(path: Path, rows: list[tuple], run: str = "hand") -> Path:
    lines = [",".join(RUN_COLUMNS)]
    lines += [f"{run},5,{arrival / 1000},16,{output},100,20" for arrival, output in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def flat_server(prefill_ms: float, decode_ms: float) -> Server:
    shape = (9, 65)  # batches up to 8, lengths up to 64
    return Server.from_grids(ServerConfig(kv_tokens=10_000, token_budget=64, max_batch=8),
                             np.full(shape, prefill_ms), np.full(shape, decode_ms), request_delay_ms=DELAY_MS)


def test_replay_of_a_hand_made_trace_gives_the_hand_checked_times(tmp_path):
    (run,) = read_recorded_runs(write_runs(tmp_path / "runs.csv", HAND_TRACE))
    replayed = replay(flat_server(10.0, 4.0), run)
    arrivals = np.array([arrival for arrival, _ in HAND_TRACE], dtype=float)
    assert np.array_equal(replayed.first_token_ms, np.array(FIRST_TOKENS) + DELAY_MS)
    assert np.array_equal(replayed.ttft_ms, np.array(FIRST_TOKENS) + DELAY_MS - arrivals)
    # TPOT = (last token - first token) / (output - 1): request 1 (38 - 20) / 2 = 9, request 9 (84 - 70) / 1
    expected_tpot = np.full(len(HAND_TRACE), np.nan)
    for request, last in LAST_TOKENS.items():
        expected_tpot[request] = (last - FIRST_TOKENS[request]) / (HAND_TRACE[request][1] - 1)
    assert np.array_equal(replayed.tpot_ms, expected_tpot, equal_nan=True)


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("tpot_ms", "tpot"), "column 'tpot_ms' is missing"),
    (lambda text: text.replace("hand,5,0.002,16,3", "hand,5,0.002,16,0"),
     "line 3: column 'output_tokens': 0 is not a positive number of tokens"),
    (lambda text: text.replace("hand,5,0.005,", "hand,5,0.001,"),
     "line 4: column 'arrival_s': 0.001 is earlier than the run's previous arrival (0.002)"),
    (lambda text: text.replace("hand,5,0.04,16", "hand,5,0.04,many"), "line 6: column 'prompt_tokens': 'many'"),
])
def test_bad_recorded_runs_are_one_line_errors(tmp_path, edit, message):
    path = write_runs(tmp_path / "runs.csv", HAND_TRACE)
    path.write_text(edit(path.read_text()))
    with pytest.raises(InputError, match="runs.csv") as err:
        read_recorded_runs(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_measured_runs_load_as_the_bench_uses_them():
    # data/measured/distserve-vllm-opt13b/README of data/measured: 8 runs, 1,850 requests, 1 to 4 requests/s
    runs = read_recorded_runs(MEASURED / "distserve-vllm-opt13b" / "measured_requests.csv")
    assert [run.nominal_rate_rps for run in runs] == [1, 2, 1.5, 2, 2.5, 3, 3.5, 4]
    assert sum(len(run) for run in runs) == 1_850
    # the simulated server holds every request: the longest is 2,045 tokens of OPT's 2,048
    assert max(int((run.prompt_tokens + run.output_tokens).max()) for run in runs) <= OPT13B_SERVER.context_window
    # 46 GB of llama-13b's 819,200 bytes per token
    assert OPT13B_SERVER.config().kv_tokens == 56_152
