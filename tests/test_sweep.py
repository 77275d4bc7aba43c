"""The target sweep: its parser, its table on data/tiny, and its files."""

import argparse
import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.methods.exact import solve_exact
from models.methods.registry import METHODS as REGISTRY
from models.analysis.sweep import COLUMNS, frontier, run_sweep, write_sweep
from models.cli.args import parse_targets
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
