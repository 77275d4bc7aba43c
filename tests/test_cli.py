"""Every exit status of solve.py: 0 plan, 2 bad input or usage, 3 infeasible, 4 time limit without a plan."""

import json
import subprocess
import sys

import pytest

from conftest import REPO, edit
from models.evaluation.evaluate import evaluate_plan
from test_instance import BAD_INPUTS
import solve


def run(*args):
    return subprocess.run([sys.executable, str(REPO / "solve.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_plan_found_and_written(tmp_path, tiny):
    out = tmp_path / "p.json"
    done = run(REPO / "data" / "tiny", "--method", "enumerate", "--out", out)
    assert done.returncode == 0, done.stderr
    plan = json.loads(out.read_text())
    assert plan["quality"] == pytest.approx(1349 / 1620, abs=1e-6)
    assert plan["solver"]["status"] == "optimal"
    assert evaluate_plan(tiny, plan).consistent
    assert "quality 0.832716" in done.stdout


def test_bad_input_exits_2_in_one_line(tiny_copy):
    edit(tiny_copy / "profiles.csv", "mean_ttft_ms", "ttft")
    done = run(tiny_copy, "--method", "enumerate")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "profiles.csv" in done.stderr and "mean_ttft_ms" in done.stderr


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_every_bad_input_exits_2(tiny_copy, capsys, case):
    filename, old, new, words = BAD_INPUTS[case]
    edit(tiny_copy / filename, old, new)
    assert solve.main([str(tiny_copy), "--method", "quality-greedy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words[0] in err


@pytest.mark.parametrize("args", [["--method", "nonsense"], ["--time-limit", "-3"], ["--time-limit", "soon"]])
def test_usage_errors_exit_2(args):
    done = run(REPO / "data" / "tiny", *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_infeasible_exits_3_with_reason(tiny_copy):
    edit(tiny_copy / "instance.toml", "slo_mean_ttft_ms = 60.0", "slo_mean_ttft_ms = 10.0")
    done = run(tiny_copy, "--method", "enumerate")
    assert done.returncode == 3
    assert "18.00 ms" in done.stderr


def test_quality_greedy_breaking_the_slo_exits_3(tmp_path):
    # greedy sends p1, p2, p3 to large (share 0.75): on setup C, 18 * 0.25 + 40 + 180 * 0.35 = 107.5 ms > 60 ms
    out = tmp_path / "p.json"
    done = run(REPO / "data" / "tiny", "--method", "quality-greedy", "--out", out)
    assert done.returncode == 3
    assert "107.50 ms" in done.stdout and "BROKEN" in done.stdout
    assert not out.exists()


def test_time_limit_without_plan_exits_4():
    done = run(REPO / "data" / "tiny", "--method", "enumerate", "--time-limit", "1e-9")
    assert done.returncode == 4
    assert "time limit" in done.stderr


def test_plot_and_export_of_a_plan(tmp_path, tiny_copy):
    # 22 GB GPUs hold tiny's plan (setup C, 4 + 12 GB per GPU) with a 2 GB activation allowance per shard
    edit(tiny_copy / "instance.toml", "gpu_memory_gb = 18", "gpu_memory_gb = 22")
    done = run(tiny_copy, "--method", "exact", "--plot", tmp_path / "plots", "--export", tmp_path / "deploy")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["tiny-exact-gpu-map.png", "tiny-exact-latency.png"]
    assert {p.name for p in (tmp_path / "deploy").iterdir()} == {"launch.sh", "plan.json", "litellm-config.yaml",
                                                                 "README.md"}
    assert json.loads((tmp_path / "deploy" / "plan.json").read_text())["routing"]["rule"] == "price"


def test_a_reference_that_breaks_the_slo_is_not_exported(tmp_path):
    done = run(REPO / "data" / "tiny", "--method", "quality-greedy", "--export", tmp_path / "deploy")
    assert done.returncode == 3
    assert not (tmp_path / "deploy").exists()


def test_sweep_subcommand(tmp_path):
    done = run("sweep", REPO / "data" / "tiny", "--slo-ms", "10:60:25", "--methods", "exact", "--plot", tmp_path)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"tiny-sweep.csv", "tiny-frontier.png"}


def test_unwritable_output_exits_2_in_one_line(tmp_path):
    done = run(REPO / "data" / "tiny", "--method", "exact", "--out", tmp_path / "missing" / "plan.json")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "plan.json" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["sweep", "data/tiny", "--slo-ms", "60:10:5"],
                                  ["sweep", "data/tiny", "--slo-ms", "10:60:5", "--methods", "enumerate"],
                                  ["profile", "data/tiny"],
                                  ["data/tiny", "--method", "all", "--plot", "somewhere"],
                                  ["data/tiny", "--utilization-floor", "1.5"]])
def test_subcommand_usage_errors_exit_2(args):
    done = run(*args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
