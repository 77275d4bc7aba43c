"""Deployment export: the files parse and carry the plan's values; broken plans are refused."""

import dataclasses
import json
import os
import shlex
import subprocess

import pytest

from models.methods.exact import solve_exact
from models.output.export import RULE, ExportError, write_export
from models.methods.greedy import solve_quality_greedy
from models.problem.instance import Option
from models.problem.plan import SolverReport, build_plan


@pytest.fixture(scope="module")
def tiny_plan(tiny):
    return solve_exact(tiny)


def launch_lines(script: str) -> dict[str, dict]:
    """Per model, the environment and flags of its launch line."""
    lines = {}
    for line in script.splitlines():
        if not line.startswith("CUDA_VISIBLE_DEVICES="):
            continue
        words = shlex.split(line)
        assert words[-1] == "&"
        env = dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("--"))
        flags = {words[k]: words[k + 1] for k in range(len(words) - 1) if words[k].startswith("--")}
        lines[flags["--model"]] = {**env, **flags}
    return lines


def test_launch_script_is_valid_bash_with_the_plans_setup(tiny, tiny_plan, tmp_path):
    script, router, note = write_export(tiny, tiny_plan, tmp_path / "export")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    lines = launch_lines(script.read_text())
    assert set(lines) == {"small", "large"}
    for row in tiny_plan.models.itertuples():
        line = lines[row.name]
        assert line["CUDA_VISIBLE_DEVICES"] == ",".join(str(g) for g in row.gpus)
        assert int(line["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"]) == row.mps_pct
        assert int(line["--tensor-parallel-size"]) == row.tp
    assert len({line["--port"] for line in lines.values()}) == 2
    assert "nvidia-cuda-mps-control -d" in script.read_text() and "nvidia-cuda-mps-control -d" in note.read_text()


def stub(folder, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize("daemon_running", [True, False])
def test_launch_script_starts_each_server_only_under_mps(tiny, tiny_plan, tmp_path, daemon_running):
    # Run launch.sh with stand-ins for pgrep (the daemon check) and python (the servers), which
    # record the environment and arguments each server would get.
    script = write_export(tiny, tiny_plan, tmp_path / "export")[0]
    stubs, calls = tmp_path / "bin", tmp_path / "calls"
    stubs.mkdir()
    calls.mkdir()
    stub(stubs, "pgrep", "exit 0" if daemon_running else "exit 1")
    stub(stubs, "python", f'echo "$CUDA_VISIBLE_DEVICES $CUDA_MPS_ACTIVE_THREAD_PERCENTAGE $*" > {calls}/$$')
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    started = sorted(path.read_text().split() for path in calls.iterdir())
    if not daemon_running:
        assert run.returncode == 1 and "nvidia-cuda-mps-control -d" in run.stderr and started == []
        return
    assert run.returncode == 0
    # setup C of data/tiny/README.md: both models tp2 at MPS 50% on GPUs 0 and 1
    assert [(s[0], s[1], s[s.index("--model") + 1], s[s.index("--tensor-parallel-size") + 1]) for s in started] == [
        ("0,1", "50", "large", "2"), ("0,1", "50", "small", "2")]


def test_memory_fractions_are_the_shards_and_fit_each_gpu(tiny, tiny_plan, tmp_path):
    # Setup C of data/tiny/README.md: shards of 4 GB (small) and 12 GB (large) on 18 GB GPUs,
    # 0.2222 and 0.6667 rounded down to 0.222 and 0.666.
    script = write_export(tiny, tiny_plan, tmp_path)[0]
    lines = launch_lines(script.read_text())
    assert float(lines["small"]["--gpu-memory-utilization"]) == 0.222
    assert float(lines["large"]["--gpu-memory-utilization"]) == 0.666


def test_router_json_carries_the_plans_prices_and_rule(tiny, tiny_plan, tmp_path):
    router = json.loads(write_export(tiny, tiny_plan, tmp_path)[1].read_text())
    assert router["rule"] == RULE == "argmax_i score[i] - price[i]"
    assert [m["name"] for m in router["models"]] == ["small", "large"]
    for entry, row, price in zip(router["models"], tiny_plan.models.itertuples(), tiny_plan.prices):
        assert entry["price"] == price
        assert entry["expected_share"] == row.share
    assert "scores.csv" in router["score_source"]["scores_file"]
    assert router["not_deployed"] == []


def test_an_undeployed_model_gets_no_launch_line(tiny, tmp_path):
    # With `large` optional, everything on `small` tp1 mps100 on GPU 0 is a plan: H = 1 x 15 = 15 ms
    # <= 60 ms, quality (0.9 + 0.5 + 0.2 + 0.6) / 4 = 0.55 (data/tiny/README.md).
    models = (tiny.models[0], dataclasses.replace(tiny.models[1], required=False))
    instance = dataclasses.replace(tiny, models=models)
    plan = build_plan(instance, "by-hand", (Option(1, 100), None), ((0,), ()), (1.0, 0.0), 0.55,
                      SolverReport("heuristic", 0.0))
    script, router, note = write_export(instance, plan, tmp_path)
    assert set(launch_lines(script.read_text())) == {"small"}
    config = json.loads(router.read_text())
    assert [m["name"] for m in config["models"]] == ["small"]
    assert config["not_deployed"] == ["large"]
    assert "Not deployed (no server, no traffic): large." in note.read_text()


def test_a_plan_that_breaks_the_target_is_not_exported(tiny, tmp_path):
    # quality-greedy on tiny sends p1-p3 to `large` (share 0.75), which only mps50 can place next to
    # `small`: H_L(0.75) = 40 + 72 x 0.35 / 0.4 = 103 ms, plus 18 x 0.25 = 4.5 ms for `small`: 107.5 ms > 60 ms.
    plan = solve_quality_greedy(tiny)
    assert plan.solver.status == "infeasible" and plan.mean_ttft_ms == pytest.approx(107.5)
    with pytest.raises(ExportError, match="breaks the target"):
        write_export(tiny, plan, tmp_path / "export")
    assert not (tmp_path / "export").exists()
