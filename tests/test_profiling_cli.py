"""The profile command on a toy instance, table and trace: output, determinism, and one-line errors."""

import json
from pathlib import Path

import pandas as pd
import pytest

from models.problem.instance import load_instance
from models.cli.profile import main

INSTANCE = """
name = "toy"
[cluster]
gpu_count = 2
gpu_memory_gb = 40
[workload]
arrival_rate_rps = 5.0
slo_mean_ttft_ms = 500.0
[setup_options]
tp = [1, 2]
mps_pct = [20, 50, 100]
[[models]]
name = "small"
weights_gb = 14.5
kv_cache_gb = 8.0
[[models]]
name = "large"
weights_gb = 60.0
kv_cache_gb = 8.0
[files]
profiles = "profiles.csv"
scores = "scores.csv"
"""


def step_tree():
    """llama-7b and llama-13b at tp 1 and 2, SM 50 and 100 %: time 5 + 0.01 b s / share (ms)."""
    def grid(share):
        return {str(b): {str(s): {"prefill": 5 + 0.01 * b * s / share, "decoding": 5 + 0.0001 * b * s / share}
                         for s in (32, 128, 512)} for b in (1, 4, 16, 64)}
    return {m: {str(tp): {str(sm): grid(sm / 100) for sm in (50, 100)} for tp in (1, 2)}
            for m in ("llama-7b", "llama-13b")}


@pytest.fixture
def toy(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "instance.toml").write_text(INSTANCE)
    pd.DataFrame({"prompt_id": ["a", "b"], "small": [0.5, 0.4], "large": [0.9, 0.8]}).to_csv(
        folder / "scores.csv", index=False)
    table = tmp_path / "table.json"
    table.write_text(json.dumps(step_tree()))
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nt,100,10\nt,300,30\nt,800,5\n")
    return folder, table, trace


def args(folder: Path, table: Path, trace: Path, *extra) -> list[str]:
    return [str(folder), "--table", str(table), "--trace", str(trace),
            "--stand-in", "small=llama-7b", "--stand-in", "large=llama-13b",
            "--max-requests", "2000", "--workers", "1", "--quiet", *extra]


def test_profiles_cover_the_measured_options_that_fit_and_load(toy, capsys):
    folder, table, trace = toy
    assert main(args(folder, table, trace)) == 0
    profiles = pd.read_csv(folder / "profiles.csv")
    options = set(profiles[["model", "tp", "mps_pct"]].itertuples(index=False, name=None))
    # large needs 60 + 8 = 68 GB > 40 GB at tp 1; MPS 20 % was not measured
    assert options == {("small", 1, 50), ("small", 1, 100), ("small", 2, 50), ("small", 2, 100),
                       ("large", 2, 50), ("large", 2, 100)}
    assert {"p50_ttft_ms", "p95_ttft_ms", "p99_ttft_ms", "ci95_ttft_ms", "requests"} <= set(profiles.columns)
    instance = load_instance(folder)
    assert len(instance.curves) == 6
    assert "each model alone at 5 requests/s" in capsys.readouterr().out


def test_same_seed_same_file(toy, tmp_path):
    folder, table, trace = toy
    first, second = tmp_path / "1.csv", tmp_path / "2.csv"
    assert main(args(folder, table, trace, "--out", str(first), "--seed", "7")) == 0
    assert main(args(folder, table, trace, "--out", str(second), "--seed", "7", "--workers", "2")) == 0
    assert first.read_bytes() == second.read_bytes()


def test_analytic_method_writes_curves(toy, tmp_path):
    folder, table, trace = toy
    out = tmp_path / "analytic.csv"
    assert main(args(folder, table, trace, "--method", "analytic", "--out", str(out))) == 0
    assert len(pd.read_csv(out).groupby(["model", "tp", "mps_pct"])) == 6


@pytest.mark.parametrize("break_input, message", [
    (lambda f, t, r: t.write_text("{}"), "table.json: no models in the table"),
    (lambda f, t, r: t.write_text('{"llama-7b": {"1": {"100": {"1": {"32": {"prefill": "x"}}}}}}'),
     "table.json: llama-7b/1/100/1/32: field 'prefill': 'x' is not a number"),
    (lambda f, t, r: r.write_text("ContextTokens\n5\n"), "trace.csv: column 'GeneratedTokens' is missing"),
    (lambda f, t, r: (f / "instance.toml").unlink(), "instance.toml: file is missing"),
    (lambda f, t, r: (f / "instance.toml").write_text(INSTANCE.replace("gpu_count = 2", "gpu_count = 0")),
     "field 'cluster.gpu_count'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(toy, capsys, break_input, message):
    folder, table, trace = toy
    break_input(folder, table, trace)
    assert main(args(folder, table, trace)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_usage_errors_return_2(toy, capsys):
    folder, table, trace = toy
    assert main([str(folder), "--table", str(table)]) == 2
    assert main(args(folder, table, trace, "--seed", "-1")) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_model_without_stand_in_is_named(toy, capsys):
    folder, table, trace = toy
    argv = [str(folder), "--table", str(table), "--trace", str(trace), "--stand-in", "small=llama-7b", "--quiet"]
    assert main(argv) == 2
    assert "models[1].name': no table model stands in for 'large'" in capsys.readouterr().err
