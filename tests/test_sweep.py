"""The scenario sweep on data/tiny, in process: its parsers, its table, its files, streaming, Ctrl-C and resume
(the Ray engine: tests/test_sweep_engines.py)."""

import argparse
import dataclasses

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from models.methods.exact import solve_exact
from models.methods.registry import METHODS as REGISTRY
from models.analysis.sweep import COLUMNS, SweepCsv, frontier, run_sweep, write_sweep
from models.cli import args as cli_args
from models.cli.args import parse_targets
from models.cli.main import main as solve_main
from models.problem import tasks
from models.problem.instance import InputError
from test_plots import assert_valid_png

# Targets on tiny (data/tiny/README.md): no setup goes below 18 ms, so 10 ms has no plan; the
# optimum at 60 ms is 1349/1620. Size-Proportional (small tp1 mps50, large tp2 mps50) starts at
# 30 ms; at exactly 18 and 30 ms no plan keeps the plans' 1e-9 margin (tests/test_exact.py).
TARGETS = (10.0, 20.0, 35.0, 45.0, 60.0, 75.0)
SWEPT = ("exact", "heuristic", "equal-split", "size-proportional")


@pytest.fixture(scope="module")
def table(tiny):
    return run_sweep(tiny, TARGETS, SWEPT, progress=False)


@pytest.mark.parametrize("text, targets", [
    ("10:30:10", (10.0, 20.0, 30.0)),
    ("0.1:0.3:0.1", (0.1, 0.2, 0.3)),
    ("50:50:5", (50.0,)),
    ("100:120:15", (100.0, 115.0)),
])
def test_parse_targets(text, targets):
    assert parse_targets(text) == targets


@pytest.mark.parametrize("text", ["10:30", "a:b:c", "10:5:1", "10:30:0", "-5:10:5", "0:10:5", "10:inf:5", ""])
def test_bad_targets_are_one_line_errors_naming_the_flag(text):
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--slo-ms", type=parse_targets)
    with pytest.raises(argparse.ArgumentError) as error:
        parser.parse_args([f"--slo-ms={text}"])
    message = str(error.value)
    assert message.startswith("argument --slo-ms: ") and "a:b:step" in message and "\n" not in message


def test_table_has_one_row_per_target_and_method(table):
    assert tuple(table.columns) == COLUMNS
    assert len(table) == len(TARGETS) * len(SWEPT)
    assert list(frontier(table).columns) == list(SWEPT)
    assert list(frontier(table).index) == list(TARGETS)


def test_exact_is_nondecreasing_and_never_below_the_others(table):
    qualities = frontier(table)
    exact = qualities["exact"].to_numpy()
    feasible = ~np.isnan(exact)
    assert np.all(np.diff(exact[feasible]) >= -1e-9)
    for method in SWEPT[1:]:
        found = qualities[method].notna()
        assert found.any()
        assert (qualities.loc[found, method] <= qualities.loc[found, "exact"] + 1e-9).all()
    assert (exact[feasible] <= table.quality_best_model.iloc[0] + 1e-12).all()


def test_exact_matches_the_hand_derived_optimum(table):
    assert frontier(table).loc[60.0, "exact"] == pytest.approx(1349 / 1620, abs=1e-6)


def test_targets_below_the_feasible_range_are_infeasible_rows(table):
    lowest = table[table.target_ms == 10.0]
    assert (lowest.status == "infeasible").all()
    assert lowest.quality.isna().all() and lowest.mean_ttft_ms.isna().all()
    assert lowest[lowest.method == "exact"].reason.iloc[0] == (
        "the lowest mean TTFT any setup reaches is 18.00 ms, above the target 10 ms")
    below_rule = table[(table.method == "size-proportional") & (table.target_ms == 20.0)]
    assert below_rule.status.iloc[0] == "infeasible" and "30.00 ms" in below_rule.reason.iloc[0]


def test_plans_meet_their_targets(table):
    plans = table[table.quality.notna()]
    assert (plans.mean_ttft_ms <= plans.target_ms * (1 + 1e-9)).all()
    assert set(plans.status) <= {"optimal", "heuristic"}


def test_unknown_method_is_refused(tiny):
    with pytest.raises(ValueError, match="unknown enumerate"):
        run_sweep(tiny, (60.0,), ("exact", "enumerate"), progress=False)


def test_a_solver_error_is_one_row_not_a_crash(tiny, monkeypatch):
    def broken(instance, options):
        raise RuntimeError("exact: broken on purpose")

    monkeypatch.setitem(REGISTRY, "exact", broken)
    rows = run_sweep(tiny, (60.0,), ("exact", "equal-split"), progress=False).set_index("method")
    assert rows.loc["exact", "status"] == "error" and rows.loc["exact", "reason"] == "RuntimeError: exact: broken on purpose"
    assert np.isnan(rows.loc["exact", "quality"])
    assert rows.loc["equal-split", "quality"] == pytest.approx(1349 / 1620, abs=1e-6)


def test_a_plan_the_evaluator_rejects_has_no_quality(tiny, monkeypatch):
    def overstated(instance, options):
        plan = solve_exact(instance, time_limit=options.time_limit)
        return dataclasses.replace(plan, quality=plan.quality + 0.01)

    monkeypatch.setitem(REGISTRY, "exact", overstated)
    row = run_sweep(tiny, (60.0,), ("exact",), progress=False).iloc[0]
    assert row.status == "rejected" and np.isnan(row.quality)
    assert row.reason == "the independent evaluator rejects the plan"


def test_write_sweep_writes_the_table_and_the_frontier(table, tmp_path):
    csv_path, png_path = write_sweep(table, tmp_path / "sweep")
    assert csv_path.name == "tiny-sweep.csv" and png_path.name == "tiny-frontier.png"
    read = pd.read_csv(csv_path)
    assert len(read) == len(table)
    assert np.allclose(read.quality, table.quality, equal_nan=True)
    assert_valid_png(png_path)


# ---------------------------------------------------------------- the scenario grid, streaming and resume

def test_the_grid_nests_load_headroom_target_method(tiny):
    table = run_sweep(tiny, (45.0, 60.0), ("exact",), progress=False, load_scales=(1.0, 1.2), headrooms=(0.0, 0.1))
    assert list(zip(table.load_scale, table.headroom, table.target_ms)) == [
        (1.0, 0.0, 45.0), (1.0, 0.0, 60.0), (1.0, 0.1, 45.0), (1.0, 0.1, 60.0),
        (1.2, 0.0, 45.0), (1.2, 0.0, 60.0), (1.2, 0.1, 45.0), (1.2, 0.1, 60.0)]
    assert list(table.arrival_rate_rps) == [tiny.arrival_rate_rps * scale for scale in table.load_scale]
    at_instance = table[(table.load_scale == 1.0) & (table.headroom == 0.0)]
    assert at_instance.quality.tolist() == run_sweep(tiny, (45.0, 60.0), ("exact",), progress=False).quality.tolist()
    # more load at the same target never helps
    assert (table[table.load_scale == 1.2].quality.to_numpy() <= table[table.load_scale == 1.0].quality.to_numpy()
            + 1e-9).all()


def counting_methods(monkeypatch, calls: list, stop_at: int | None = None):
    """Every swept method counts its solves in `calls`; the solve numbered `stop_at` (0-based) is a Ctrl-C."""
    for name in SWEPT:
        def counted(instance, options, solve=REGISTRY[name]):
            if len(calls) == stop_at:
                raise KeyboardInterrupt
            calls.append(instance.slo_mean_ttft_ms)
            return solve(instance, options)
        monkeypatch.setitem(REGISTRY, name, counted)


def test_resume_after_ctrl_c_solves_only_the_scenarios_left(tiny, tmp_path, monkeypatch, table):
    csv_path = tmp_path / "tiny-sweep.csv"
    calls = []
    counting_methods(monkeypatch, calls, stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny, TARGETS, SWEPT, progress=False, csv_path=csv_path)
    assert len(pd.read_csv(csv_path)) == 5  # the finished rows are kept
    monkeypatch.undo()
    calls.clear()
    counting_methods(monkeypatch, calls)
    resumed = run_sweep(tiny, TARGETS, SWEPT, progress=False, csv_path=csv_path, resume=csv_path)
    assert len(calls) == len(TARGETS) * len(SWEPT) - 5
    assert resumed.drop(columns="seconds").equals(table.drop(columns="seconds"))
    written = pd.read_csv(csv_path, keep_default_na=False, na_values={"quality": [""], "mean_ttft_ms": [""]})
    assert written.drop(columns="seconds").to_csv() == table.drop(columns="seconds").to_csv()
    calls.clear()
    run_sweep(tiny, TARGETS, SWEPT, progress=False, resume=csv_path)
    assert calls == []  # nothing left to solve


def test_error_rows_are_solved_again_on_resume(tiny, tmp_path, monkeypatch):
    csv_path = tmp_path / "tiny-sweep.csv"
    def broken(instance, options):
        raise RuntimeError("exact: broken on purpose")
    monkeypatch.setitem(REGISTRY, "exact", broken)
    run_sweep(tiny, (60.0,), ("exact", "equal-split"), progress=False, csv_path=csv_path)
    monkeypatch.undo()
    calls = []
    counting_methods(monkeypatch, calls)
    resumed = run_sweep(tiny, (60.0,), ("exact", "equal-split"), progress=False, resume=csv_path)
    assert len(calls) == 1 and set(resumed.status) == {"optimal", "heuristic"}


def test_rows_stream_into_the_csv_in_scenario_order(tiny, tmp_path):
    csv_path = tmp_path / "stream.csv"
    stream = SweepCsv(csv_path, {})
    rows = run_sweep(tiny, (45.0, 60.0), ("exact",), progress=False).to_dict("records")
    stream.add(1, rows[1])
    assert len(pd.read_csv(csv_path)) == 0  # scenario 0 is not done: row 1 waits
    stream.add(0, rows[0])
    assert pd.read_csv(csv_path).target_ms.tolist() == [45.0, 60.0]


@pytest.mark.parametrize("edit_csv, message", [
    (lambda t: t.assign(instance="other"), "line 2: instance 'other', not 'tiny'"),
    (lambda t: t.assign(target_ms=t.target_ms + 1), "line 2: not a scenario of this sweep's grid (target 46.0 ms"),
    (lambda t: t.drop(columns="headroom"), "not a sweep CSV of this version: column headroom missing"),
])
def test_a_csv_that_does_not_fit_is_refused_before_solving(tiny, tmp_path, monkeypatch, edit_csv, message):
    csv_path = tmp_path / "old.csv"
    edit_csv(run_sweep(tiny, (45.0,), ("exact",), progress=False)).to_csv(csv_path, index=False)
    monkeypatch.setitem(REGISTRY, "exact", lambda instance, options: pytest.fail("solved before refusing"))
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        run_sweep(tiny, (45.0, 60.0), ("exact",), progress=False, resume=csv_path)


# ---------------------------------------------------------------- the command line

def test_sweep_command_ctrl_c_names_the_csv_to_resume(tmp_path, monkeypatch, capsys):
    calls = []
    counting_methods(monkeypatch, calls, stop_at=1)
    argv = [str(DATA / "tiny"), "--slo-ms", "45:60:15", "--methods", "exact", "--plot", str(tmp_path), "--quiet"]
    assert solve_main(["sweep", *argv]) == 130
    csv_path = tmp_path / "tiny-sweep.csv"
    assert capsys.readouterr().err == (f"interrupted: the finished scenarios are in {csv_path}; "
                                       f"--resume {csv_path} solves the rest\n")
    monkeypatch.undo()
    calls.clear()
    counting_methods(monkeypatch, calls)
    assert solve_main(["sweep", *argv] + ["--resume", str(csv_path)]) == 0
    assert calls == [60.0] and len(pd.read_csv(csv_path)) == 2


@pytest.mark.parametrize("extra, message", [
    (["--load-scale", "1:0.5:0.1"], "argument --load-scale: '1:0.5:0.1': need 0 < a <= b and step > 0"),
    (["--load-scale", "x"], "argument --load-scale: 'x' is not a:b:step"),
    (["--headroom", "0,1"], "argument --headroom: '1' is not a fraction in [0, 1)"),
    (["--headroom", "0.1,0.1"], "argument --headroom: '0.1,0.1': a headroom is given twice"),
    (["--engine", "spark"], "argument --engine: invalid choice: 'spark'"),
    (["--ray-address", "auto"], "--ray-address needs --engine ray"),
    (["--resume", "missing.csv"], "argument --resume: missing.csv: no such file"),
])
def test_sweep_usage_errors_are_one_line(capsys, extra, message):
    assert solve_main(["sweep", str(DATA / "tiny"), "--slo-ms", "45:60:15", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_ray_not_installed_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr(cli_args, "ray_installed", lambda: False)
    assert solve_main(["sweep", str(DATA / "tiny"), "--slo-ms", "45:60:15", "--engine", "ray"]) == 2
    assert capsys.readouterr().err == ("error: argument --engine: ray is not installed (pip install "
                                       "'routerplan[ray]') (see --help)\n")


def test_an_unreachable_ray_address_is_one_line_at_once():
    with pytest.raises(tasks.EngineError, match=r"^cannot reach the Ray cluster at 127.0.0.1:1: "):
        tasks.check_reachable("127.0.0.1:1")
    with pytest.raises(tasks.EngineError, match=r"^the Ray address 'ray://head:' is not HOST:PORT$"):
        tasks.check_reachable("ray://head:")
