"""Latency curves: the step-time table, the CPU overheads, the workload, the simulated server, the sweep,
the analytic model, and the shipped curves.

Toy tables keep these fast; the tests on the real table use short runs.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import DATA, MEASURED

from models.problem.instance import InputError
from models.profiling.analytic import QueueModel
from models.profiling.overheads import IterationCost, read_cpu_overheads
from models.profiling.reference import serve_reference
from models.profiling.server import ServerConfig
from models.profiling.simulator import Engine, Server, serve, simulate
from models.profiling.standins import kv_capacity_tokens
from models.profiling.sweep import SweepSettings, capacity_rps, measure, queue_grows, sweep
from models.profiling.table import TableError, read_step_table
from models.profiling.workload import LengthModel, Trace, Workload, read_trace, sample_workload

REAL_TABLE = MEASURED / "muxserve-a100" / "llama.json"
REAL_TRACE = MEASURED / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
BATCHES = (1, 2, 4, 8, 16)
SEQS = (32, 64, 128, 256, 512)


def linear_time(b, s):
    """A time the interpolation must reproduce exactly: affine in b * s (ms)."""
    return 5.0 + 0.01 * b * s


def table_tree(prefill=linear_time, decode=linear_time, slices=(("llama-7b", 1, 100),)):
    tree = {}
    for model, tp, sm in slices:
        grid = {str(b): {str(s): {"prefill": prefill(b, s), "decoding": decode(b, s)} for s in SEQS} for b in BATCHES}
        tree.setdefault(model, {}).setdefault(str(tp), {})[str(sm)] = grid
    return tree


def write_json(path: Path, tree) -> Path:
    path.write_text(json.dumps(tree))
    return path


# ---------------------------------------------------------------- table


def test_interpolation_is_exact_for_time_affine_in_tokens(tmp_path):
    # bilinear in (b, s) reproduces 5 + 0.01 b s inside the grid, and the linear
    # extrapolations along s (beyond 512) and along b (beyond 16) continue it exactly
    table = read_step_table(write_json(tmp_path / "t.json", table_tree()))
    prefill = table.step_times("llama-7b", 1, 100).prefill
    batch, seq = np.array([1, 3, 16, 40]), np.array([32, 100, 512, 2000])
    assert np.allclose(prefill.outer(batch, seq), linear_time(batch[:, None], seq[None, :]), rtol=1e-12)


def test_out_of_memory_entries_are_never_used(tmp_path):
    # -1 at (16, 512) and (16, 256): row 16 keeps three lengths, and (16, 512) is
    # extrapolated from them, so it still equals the affine time, not -1
    tree = table_tree()
    for s in ("256", "512"):
        tree["llama-7b"]["1"]["100"]["16"][s]["prefill"] = -1
    table = read_step_table(write_json(tmp_path / "t.json", tree))
    prefill = table.step_times("llama-7b", 1, 100).prefill
    assert prefill.outer([16], [512])[0, 0] == pytest.approx(linear_time(16, 512), rel=1e-12)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["llama-7b"]["1"]["100"]["4"]["64"].pop("decoding"), "llama-7b/1/100/4/64: field 'decoding' is missing"),
    (lambda t: t["llama-7b"]["1"]["100"]["4"]["64"].update(prefill="fast"), "'fast' is not a number"),
    (lambda t: t["llama-7b"]["1"]["100"]["4"]["64"].update(prefill=0), "neither a positive time"),
    (lambda t: t["llama-7b"]["1"]["100"]["4"]["64"].update(prefill=-2), "neither a positive time"),
    (lambda t: t["llama-7b"]["1"]["100"]["4"].pop("64"), "llama-7b/1/100/4: sequence lengths"),
    (lambda t: t["llama-7b"]["1"].update({"x": {}}), "llama-7b/1: key 'x' is not a positive integer"),
    (lambda t: t["llama-7b"]["1"].update({"120": t["llama-7b"]["1"]["100"]}), "SM share above 100%"),
    (lambda t: t["llama-7b"]["1"].update({"100": {"1": t["llama-7b"]["1"]["100"]["1"]}}),
     "fewer than two batch sizes"),
])
def test_bad_table_entries_are_rejected_with_their_path(tmp_path, edit, message):
    tree = table_tree()
    edit(tree)
    path = write_json(tmp_path / "t.json", tree)
    with pytest.raises(TableError, match="t.json") as err:
        read_step_table(path).step_times("llama-7b", 1, 100)
    assert message in str(err.value)


def test_unreadable_table_files_are_rejected(tmp_path):
    with pytest.raises(TableError, match="file is missing"):
        read_step_table(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TableError, match="bad.json: not valid JSON"):
        read_step_table(tmp_path / "bad.json")


# ---------------------------------------------------------------- CPU overheads

VIDUR_HEADER = ("model_name,batch_size,tensor_parallel_degree,schedule_mean,sampler_e2e_mean,"
                "prepare_inputs_e2e_mean,process_model_outputs_mean,ray_comm_time_mean")


def write_overheads(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([VIDUR_HEADER, *rows]) + "\n")
    return path


def test_iteration_time_adds_the_cpu_overheads_by_hand(tmp_path):
    # Per component, the line through batch 8 and 16 (two models at tp 1, averaged by least squares):
    #   schedule 0.1 + 0.0125 b, sampler 0.6, prepare inputs 0.4, process outputs 0.1 + 0.0125 b,
    #   ray communication 0.1 + 0.0125 b.
    # At scale 2: 2 (1.2 + 0.025 b) + (0.1 + 0.0125 b) = 2.5 + 0.0625 b; at b = 4: 2.75 ms.
    # A prefill of 4 prompts of 100 tokens: the table's 5 + 0.01 * 4 * 100 = 9 ms, plus 2.75 ms = 11.75 ms.
    path = write_overheads(tmp_path / "cpu.csv", [
        "a,8,1,0.2,0.6,0.4,0.2,0.2", "a,16,1,0.3,0.6,0.4,0.3,0.3",
        "b,8,1,0.2,0.6,0.4,0.2,0.2", "b,16,1,0.3,0.6,0.4,0.3,0.3",
        "c,8,2,1,1,1,1,6", "c,16,2,1,1,1,1,6"])
    overheads = read_cpu_overheads(path)
    cost = overheads.iteration_cost(1, scale=2.0)
    assert cost.fixed_ms == pytest.approx(2.5, abs=1e-12) and cost.per_request_ms == pytest.approx(0.0625, abs=1e-12)
    # tp 4 was not measured: tp 2's lines, and the Ray communication (6 ms) is not scaled
    assert overheads.iteration_cost(4, scale=2.0).at(8) == pytest.approx(2 * 4 + 6, abs=1e-12)
    table = read_step_table(write_json(tmp_path / "t.json", table_tree()))
    server = Server.build(ServerConfig(kv_tokens=10_000, token_budget=512),
                          table.step_times("llama-7b", 1, 100).with_cpu(cost), 512, request_delay_ms=3.0)
    assert server.prefill_ms[4, 100] == pytest.approx(11.75, abs=1e-12)
    workload = Workload(np.zeros(4), np.full(4, 100), np.ones(4, dtype=np.int64))
    assert np.allclose(simulate(server, workload, 1.0), 11.75 + 3.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rows, message", [
    (["a,8,1,0.2,0.6,0.4,0.2,0.2"], "tensor-parallel degree 1: fewer than two batch sizes"),
    (["a,8,1,0.2,0.6,0.4,0.2,0.2", "a,16,1,0.3,x,0.4,0.3,0.3"], "line 3: column 'sampler_e2e_mean': 'x'"),
    (["a,8,0,0.2,0.6,0.4,0.2,0.2", "a,16,0,0.3,0.6,0.4,0.3,0.3"], "line 2: batch size and tensor-parallel"),
    ([], "no measurements"),
])
def test_bad_overheads_are_rejected_in_one_line(tmp_path, rows, message):
    with pytest.raises(InputError, match="cpu.csv") as err:
        read_cpu_overheads(write_overheads(tmp_path / "cpu.csv", rows))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_overhead_column_is_named(tmp_path):
    path = tmp_path / "cpu.csv"
    path.write_text(VIDUR_HEADER.replace(",ray_comm_time_mean", "") + "\na,8,1,0.2,0.6,0.4,0.2\n")
    with pytest.raises(InputError, match="column 'ray_comm_time_mean' is missing"):
        read_cpu_overheads(path)


# ---------------------------------------------------------------- workload


def test_rescaled_lengths_keep_the_trace_shape_and_hit_the_target_means():
    # trace means 400 (prompt) and 20 (output); factors 0.5 and 2 are exact, so
    # the population is (100, 40), (300, 40), (200, 10), (200, 40) and its means are 200 and 32.5
    trace = Trace(Path("toy"), np.array([200, 600, 400, 400]), np.array([20, 20, 5, 35]))
    workload = sample_workload(trace, LengthModel(prompt_mean=200, output_mean=40), 40_000, seed=3)
    assert set(workload.prompt_tokens) == {100, 300, 200}
    assert workload.prompt_tokens.mean() == pytest.approx(200, rel=0.02)
    assert workload.output_tokens.mean() == pytest.approx(40, rel=0.02)
    again = sample_workload(trace, LengthModel(prompt_mean=200, output_mean=40), 40_000, seed=3)
    assert np.array_equal(again.prompt_tokens, workload.prompt_tokens) and np.array_equal(again.gaps, workload.gaps)


def test_lengths_are_cut_to_the_context_window():
    trace = Trace(Path("toy"), np.array([5000, 10]), np.array([100, 10]))
    workload = sample_workload(trace, LengthModel(2505, 55, context_window=4096), 100, seed=0)
    assert workload.max_request_tokens <= 4096


def test_bad_trace_is_rejected(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nt,12,0\n")
    with pytest.raises(InputError, match="trace.csv: line 2: column 'GeneratedTokens'"):
        read_trace(path)
    path.write_text("TIMESTAMP,ContextTokens\nt,12\n")
    with pytest.raises(InputError, match="column 'GeneratedTokens' is missing"):
        read_trace(path)


# ---------------------------------------------------------------- simulator


def constant_server(service_ms: float, max_batch: int = 1, window: int = 64) -> Server:
    """Every prefill and decode step takes `service_ms`, whatever its size."""
    grid = np.full((max_batch + 1, window + 1), service_ms)
    return Server.from_grids(ServerConfig(kv_tokens=10**6, token_budget=window, max_batch=max_batch), grid, grid)


def single_token_workload(count: int, seed: int) -> Workload:
    """Requests of 16 prompt tokens that need only their first token: one prefill each."""
    rng = np.random.default_rng(seed)
    return Workload(rng.exponential(size=count), np.full(count, 16), np.ones(count, dtype=np.int64))


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_batch_of_one_with_fixed_service_time_is_md1(rho):
    # Batch size 1 and a fixed service time D make the server an M/D/1 queue:
    # mean wait rho D / (2 (1 - rho)) (Pollaczek-Khinchine), and TTFT = wait + D.
    service_ms = 10.0
    rate_rps = rho * 1000.0 / service_ms
    expected = service_ms + rho * service_ms / (2 * (1 - rho))
    settings = SweepSettings(first_requests=40_000, max_requests=40_000)
    point = measure(constant_server(service_ms), single_token_workload(40_000, seed=1), rate_rps, settings)
    assert not point.saturated
    assert point.ci95_ttft_ms <= 0.05 * point.mean_ttft_ms  # a few percent: the check below has teeth
    assert abs(point.mean_ttft_ms - expected) <= point.ci95_ttft_ms


def test_saturation_is_detected_and_ends_the_curve():
    # One request per D = 10 ms is the most the server can do (capacity 100/s,
    # exactly what the all-at-once run measures); M/D/1 is unstable at rho >= 1.
    server, workload = constant_server(10.0), single_token_workload(8_000, seed=2)
    assert capacity_rps(server, workload) == pytest.approx(100.0, rel=1e-9)
    settings = SweepSettings(first_requests=2_000, max_requests=8_000)
    assert measure(server, workload, 110.0, settings).saturated
    points = sweep(server, workload, settings)
    assert points[-1].saturated and not any(p.saturated for p in points[:-1])
    assert all(p.rate_rps < 100.0 for p in points[:-1])
    assert len(points) >= 10


@pytest.mark.parametrize("rho, grows", [(0.9, False), (1.1, True)])
def test_queue_growth_test_tells_a_stable_from_an_overloaded_run(rho, grows):
    # M/D/1 (D = 10 ms): at rho = 0.9 the backlog is stationary (mean queue 4.05 by Pollaczek-Khinchine);
    # at rho = 1.1 it climbs by 1 - 1/1.1 = 0.09 requests per arrival, about 650 over the 7,200
    # requests after warm-up, far above the 1 % (80 requests) the test needs.
    server, workload = constant_server(10.0), single_token_workload(8_000, seed=5)
    rate_rps = rho * 100.0
    arrivals = workload.arrivals_ms(rate_rps)
    assert queue_grows(arrivals, simulate(server, workload, rate_rps)) is grows


def test_fast_engine_equals_the_simpy_reference_with_preemptions(tmp_path):
    # A small KV cache (2,000 tokens) and long outputs force recompute preemptions; CPU time per
    # iteration and a request delay are on. First and last tokens must agree, run to the end.
    table = read_step_table(write_json(tmp_path / "t.json", table_tree()))
    step_times = table.step_times("llama-7b", 1, 100).with_cpu(IterationCost(3.0, 0.25))
    server = Server.build(ServerConfig(kv_tokens=2_000, token_budget=1_024, max_batch=16), step_times, 1_024,
                          request_delay_ms=7.0)
    trace = Trace(Path("toy"), np.array([50, 200, 400]), np.array([5, 60, 200]))
    workload = sample_workload(trace, LengthModel(200, 80, context_window=1_024), 600, seed=4)
    for rate_rps in (2.0, 20.0, 80.0):
        arrivals = workload.arrivals_ms(rate_rps)
        engine = Engine(server, workload, arrivals)
        engine.run()
        fast, reference = serve(server, workload, arrivals, True), serve_reference(server, workload, arrivals, True)
        assert np.allclose(fast.first_token_ms, reference.first_token_ms, rtol=1e-9, atol=1e-6)
        assert np.allclose(fast.finish_ms, reference.finish_ms, rtol=1e-9, atol=1e-6)
        assert np.allclose(np.array(engine.first_token_ms) + 7.0, reference.first_token_ms, rtol=1e-9, atol=1e-6)
    assert engine.preemptions > 0 and not np.isnan(fast.finish_ms).any()


def test_request_longer_than_the_kv_cache_is_rejected(tmp_path):
    server = Server.from_grids(ServerConfig(kv_tokens=50, token_budget=64), np.ones((257, 65)), np.ones((257, 65)))
    workload = Workload(np.ones(2), np.array([50, 50]), np.array([5, 5]))  # 55 tokens > 49 admissible
    with pytest.raises(InputError, match="does not fit"):
        simulate(server, workload, 1.0)


# ---------------------------------------------------------------- real table


@pytest.fixture(scope="module")
def real_case():
    table = read_step_table(REAL_TABLE)
    workload = sample_workload(read_trace(REAL_TRACE), LengthModel(256, 32), 8_000, seed=0)
    config = ServerConfig(kv_capacity_tokens("llama-7b", 2, 8.0), token_budget=4096)
    step_times = table.step_times("llama-7b", 2, 100)
    return step_times, config, Server.build(config, step_times, 4096), workload


def test_real_curve_is_nondecreasing_within_its_intervals(real_case):
    _, _, server, workload = real_case
    points = sweep(server, workload, SweepSettings(first_requests=2_000, max_requests=8_000))
    stable = [p for p in points if not p.saturated]
    assert len(stable) >= 8
    for low, high in zip(stable, stable[1:]):
        assert high.mean_ttft_ms >= low.mean_ttft_ms - (low.ci95_ttft_ms + high.ci95_ttft_ms)


def test_analytic_model_agrees_with_the_simulator_at_light_load(real_case):
    # Below 60 % of capacity the queueing approximation and the simulation differ
    # by -7.9 to +10.3 % over all paper-4xA100 curves (docs/latency.md, cross-check);
    # 12 % leaves room for the noise of these shorter runs.
    step_times, config, server, workload = real_case
    queue = QueueModel.of(step_times, config, workload)
    top = queue.max_rate_rps()
    for fraction in (0.1, 0.3):
        point = measure(server, workload, fraction * top, SweepSettings(first_requests=8_000, max_requests=8_000))
        assert queue.mean_ttft_ms(fraction * top) == pytest.approx(point.mean_ttft_ms, rel=0.12)


# ---------------------------------------------------------------- shipped curves


@pytest.mark.parametrize("instance", ["paper-4xA100", "paper-8xA100", "paper-4xA100-binding"])
def test_shipped_curves_are_nondecreasing_within_their_intervals(instance):
    # consecutive points may fall by at most the sum of their 95 % half-widths
    profiles = pd.read_csv(DATA / instance / "profiles.csv")
    for _, curve in profiles.groupby(["model", "tp", "mps_pct"]):
        mean, half = curve.mean_ttft_ms.to_numpy(), curve.ci95_ttft_ms.to_numpy()
        assert np.all(np.diff(curve.rate_rps) > 0)
        assert np.all(np.diff(mean) >= -(half[1:] + half[:-1]))
