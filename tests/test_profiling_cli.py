"""The profile command on a toy instance, table and trace: output, determinism, shared simulations,
progress, help, and one-line errors before any simulation."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from models.cli.profile import METHODS, main
from models.problem.instance import load_instance
from models.profiling.calibration import DEFAULT
from models.profiling.profiles import simulated_rows

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


QUICK = ("--max-requests", "1000")  # the shortest runs allowed, for tests that need curves but not their values


def args(folder: Path, table: Path, trace: Path, *extra, out: Path | None = None) -> list[str]:
    return [str(folder), "--table", str(table), "--trace", str(trace), "--out", str(out or folder / "profiles.csv"),
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
    assert main(args(folder, table, trace, "--seed", "7", out=first)) == 0
    assert main(args(folder, table, trace, "--seed", "7", "--workers", "2", out=second)) == 0
    assert first.read_bytes() == second.read_bytes()


def test_analytic_method_writes_curves(toy, tmp_path):
    folder, table, trace = toy
    out = tmp_path / "analytic.csv"
    assert main(args(folder, table, trace, "--method", "analytic", out=out)) == 0
    assert len(pd.read_csv(out).groupby(["model", "tp", "mps_pct"])) == 6


def test_models_with_one_stand_in_share_one_simulation(toy, tmp_path, monkeypatch):
    # both models on llama-7b with the same KV size: the 4 options they share (tp 2, MPS 50 and 100 %,
    # and small's tp 1) are simulated once each, and both models get the same rows
    folder, table, trace = toy
    calls = []
    monkeypatch.setitem(METHODS, "simulate", lambda job: calls.append(job) or simulated_rows(job))
    out = tmp_path / "shared.csv"
    assert main(args(folder, table, trace, "--stand-in", "large=llama-7b", *QUICK, out=out)) == 0
    assert sorted((job.tp, job.mps_pct, job.models) for job in calls) == [
        (1, 50, ("small",)), (1, 100, ("small",)), (2, 50, ("small", "large")), (2, 100, ("small", "large"))]
    profiles = pd.read_csv(out)
    shared = [profiles[(profiles.model == name) & (profiles.tp == 2)].drop(columns="model").reset_index(drop=True)
              for name in ("small", "large")]
    pd.testing.assert_frame_equal(*shared)


def test_existing_output_is_kept_without_force(toy, capsys):
    folder, table, trace = toy
    out = folder / "profiles.csv"
    out.write_text("shipped\n")
    assert main(args(folder, table, trace)) == 2
    assert capsys.readouterr().err == f"error: {out}: file exists (give --force to overwrite it)\n"
    assert out.read_text() == "shipped\n"
    assert main(args(folder, table, trace, "--force", *QUICK)) == 0
    assert out.read_text().startswith("model,tp,mps_pct,rate_rps,mean_ttft_ms")


def test_progress_lines_when_stderr_is_not_a_terminal(toy, tmp_path, capsys):
    # capsys' stderr is not a terminal: plain timestamped lines, the last one counting every curve
    folder, table, trace = toy
    argv = [a for a in args(folder, table, trace, *QUICK, out=tmp_path / "p.csv") if a != "--quiet"]
    assert main(argv) == 0
    lines = capsys.readouterr().err.splitlines()
    line_format = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d latency curves: \d/6(, about \d+ s left)?"
    assert lines and all(re.fullmatch(line_format, line) for line in lines)
    assert lines[-1].endswith("6/6")


def test_help_names_the_command_and_every_default(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: solve.py profile")
    for flag, default in [("--prompt-mean", "256.0"), ("--output-mean", "32.0"), ("--seed", "0"),
                          ("--max-requests", "40000"), ("--workers", "2"), ("--method", "simulate"),
                          ("--overhead-scale", str(DEFAULT.overhead_scale))]:
        help_of_flag = text.split(f"  {flag}", 1)[1].split("\n  -", 1)[0]
        assert f"(default: {default}" in " ".join(help_of_flag.split()), flag


@pytest.mark.parametrize("break_input, message", [
    (lambda f, t, r: t.write_text("{}"), "table.json: no models in the table"),
    (lambda f, t, r: t.write_text('{"llama-7b": {"1": {"100": {"1": {"32": {"prefill": "x"}}}}}}'),
     "table.json: llama-7b/1/100/1/32: field 'prefill': 'x' is not a number"),
    (lambda f, t, r: r.write_text("ContextTokens\n5\n"), "trace.csv: column 'GeneratedTokens' is missing"),
    (lambda f, t, r: r.write_text("ContextTokens,GeneratedTokens\n5,0\n"),
     "trace.csv: line 2: column 'GeneratedTokens': 0 is not a positive whole number of tokens"),
    (lambda f, t, r: (f / "instance.toml").unlink(), "instance.toml: file is missing"),
    (lambda f, t, r: (f / "instance.toml").write_text(INSTANCE.replace("gpu_count = 2", "gpu_count = 0")),
     "field 'cluster.gpu_count'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(toy, capsys, break_input, message):
    folder, table, trace = toy
    break_input(folder, table, trace)
    assert main(args(folder, table, trace)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err and "np." not in err


@pytest.mark.parametrize("edit, message", [
    (lambda a, f: a + ["--out", str(f / "missing" / "p.csv")], "p.csv: folder {f}/missing does not exist"),
    (lambda a, f: a + ["--out", str(f)], "{f}: is a folder, not a file"),
    (lambda a, f: a + ["--max-requests", "1"], "argument --max-requests: 1 is too few requests: "
                                               "the smallest allowed is 1000 (see --help)"),
    (lambda a, f: a + ["--max-requests", "5"], "argument --max-requests: 5 is too few requests"),
    (lambda a, f: a + ["--max-requests", "20"], "argument --max-requests: 20 is too few requests"),
    (lambda a, f: a + ["--stand-in", "medium=llama-7b"],
     "--stand-in medium=llama-7b: {f}/instance.toml has no model 'medium'"),
])
def test_refused_before_any_simulation_in_one_line(toy, capsys, monkeypatch, edit, message):
    folder, table, trace = toy
    monkeypatch.setitem(METHODS, "simulate", lambda job: pytest.fail("simulated before refusing"))
    assert main(edit(args(folder, table, trace), folder)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(f=folder) in err and err.count("\n") == 1


def test_usage_errors_return_2(toy, capsys):
    folder, table, trace = toy
    assert main([str(folder), "--table", str(table)]) == 2
    assert main(args(folder, table, trace, "--seed", "-1")) == 2
    assert capsys.readouterr().err.count("\n") == 2


def test_model_without_stand_in_is_named(toy, capsys):
    folder, table, trace = toy
    argv = [str(folder), "--table", str(table), "--trace", str(trace), "--out", str(folder / "p.csv"),
            "--stand-in", "small=llama-7b", "--quiet"]
    assert main(argv) == 2
    assert "models[1].name': no table model stands in for 'large'" in capsys.readouterr().err


def test_a_curve_that_fails_is_one_line_and_the_others_are_written(toy, tmp_path, monkeypatch, capsys):
    folder, table, trace = toy

    def broken_at_tp2_mps50(job):
        if (job.tp, job.mps_pct) == (2, 50):
            raise RuntimeError("broken on purpose")
        return simulated_rows(job)

    monkeypatch.setitem(METHODS, "simulate", broken_at_tp2_mps50)
    out = tmp_path / "partial.csv"
    assert main(args(folder, table, trace, *QUICK, out=out)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: curve small at tp2/mps50: RuntimeError: broken on purpose",
                   "error: curve large at tp2/mps50: RuntimeError: broken on purpose",
                   f"wrote the 4 of 6 curve builds that succeeded to {out}"]
    options = set(pd.read_csv(out)[["model", "tp", "mps_pct"]].itertuples(index=False, name=None))
    assert options == {("small", 1, 50), ("small", 1, 100), ("small", 2, 100), ("large", 2, 100)}
