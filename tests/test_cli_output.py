"""The command line's output and interrupts: Ctrl-C, output errors, paths checked before solving,
file names from instance names, warnings for options a method ignores, tables written as CSV or JSON."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import solve
from conftest import DATA, REPO, edit


def start(*args):
    return subprocess.Popen([sys.executable, str(REPO / "solve.py"), *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("seconds", [1.0, 6.0])  # in Python (loading, building), then inside HiGHS
def test_sigint_stops_a_solve_with_exit_130_and_one_line(tmp_path, seconds):
    # the per-prompt form of paper-4xA100 runs for minutes (bench/exact_speed.py), so it is still solving
    out = tmp_path / "plan.json"
    solving = start(DATA / "paper-4xA100", "--formulation", "per-prompt", "--quiet", "--out", out)
    time.sleep(seconds)
    solving.send_signal(signal.SIGINT)
    stdout, stderr = solving.communicate(timeout=5)
    assert solving.returncode == 130
    assert stderr.startswith("interrupted") and stderr.count("\n") == 1, stderr
    assert not out.exists()


def test_a_full_disk_names_the_file():
    done = subprocess.run([sys.executable, str(REPO / "solve.py"), DATA / "tiny", "--out", "/dev/full", "--quiet"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "error: /dev/full: No space left on device"


def test_a_closed_pipe_exits_quietly():
    piped = subprocess.run(f"{sys.executable} solve.py data/tiny --quiet | head -c 10", shell=True, cwd=REPO,
                           capture_output=True, text=True)
    assert piped.stdout.startswith("tiny") and len(piped.stdout.encode()) == 10  # head keeps 10 bytes
    assert piped.stderr == ""


@pytest.mark.parametrize("flag, target, message", [
    ("--out", "missing/plan.json", "missing/plan.json: its folder missing does not exist"),
    ("--plot", "data/tiny/instance.toml", "data/tiny/instance.toml: is a file, not a folder"),
    ("--table-out", "table.txt", "'table.txt': the file name must end in .csv or .json"),
])
def test_output_paths_are_checked_before_solving(flag, target, message, capsys):
    args = [str(DATA / "tiny"), flag, target] + (["--method", "all"] if flag == "--table-out" else [])
    assert solve.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_instance_names_cannot_send_files_out_of_the_folder(tiny_copy, tmp_path):
    edit(tiny_copy / "instance.toml", 'name = "tiny"', 'name = "../escape/a b"')
    plots = tmp_path / "plots"
    assert solve.main([str(tiny_copy), "--plot", str(plots), "--quiet"]) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["escape-a-b-exact-gpu-map.png", "escape-a-b-exact-latency.png"]
    assert not (tmp_path / "escape").exists()


def test_an_option_the_method_ignores_is_one_warning(capsys):
    assert solve.main([str(DATA / "tiny"), "--method", "heuristic", "--mip-gap", "0.01", "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: --mip-gap does not apply to method heuristic; ignored"]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_the_comparison_table_is_written(tmp_path, suffix, capsys):
    path = tmp_path / f"table{suffix}"
    assert solve.main([str(DATA / "tiny"), "--method", "all", "--table-out", str(path), "--quiet"]) == 0
    table = pd.read_csv(path) if suffix == ".csv" else pd.DataFrame(json.loads(path.read_text()))
    assert list(table.method)[:3] == ["exact", "heuristic", "enumerate"]
    assert "nan" not in capsys.readouterr().out.lower()


def test_help_loads_no_solver():
    # `--help` and usage errors import neither Pyomo, HiGHS nor pandas, so they answer at once
    code = ("import sys, solve\nsys.argv = ['solve.py', '--help']\ntry: solve.main()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('pyomo', 'highspy', 'pandas', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_plan_json_has_no_negative_zero(tmp_path):
    out = tmp_path / "plan.json"
    assert solve.main([str(DATA / "tiny"), "--out", str(out), "--quiet"]) == 0
    numbers = []
    json.loads(out.read_text(), parse_float=lambda text: numbers.append(text) or float(text),
               parse_constant=lambda text: numbers.append(text))
    assert numbers and not [n for n in numbers if n in ("-0.0", "NaN", "Infinity", "-Infinity")]


def test_highs_warnings_on_rows_added_between_solves_stay_off_stdout(capfd):
    # HiGHS warns on stdout, at the C level, of coefficients below its 1e-9 threshold when rows reach it; the
    # cut loop adds rows to a persistent model between solves, and a cut may hold such a coefficient
    import pyomo.environ as pyo

    from models.problem.solver import make_solver, solve_model

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 1))
    m.y = pyo.Var(bounds=(0, 1))
    m.objective = pyo.Objective(expr=m.x + m.y, sense=pyo.maximize)
    solver = make_solver()
    solve_model(m, solver)
    m.cut = pyo.Constraint(expr=m.x + 1e-12 * m.y <= 0.5)
    result = solve_model(m, solver)
    assert result.objective == pytest.approx(1.5)
    assert capfd.readouterr().out == ""
