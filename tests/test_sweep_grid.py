"""The sweep's GPU-count dimension and the cost objective (SPEC 4.4) on tests/typed_tiny.py's instance, and its
marking of plans cut by a time limit.

On typed tiny (types A and B, 2 GPUs of 18 GB each), `large` needs tp2 (tests/test_gpu_types.py), so it fits
only where a type has 2 GPUs: with A=1;B=1 it fits no GPU, and the scenario is one `infeasible` row.
"""

import dataclasses

import pandas as pd
import pytest

from conftest import DATA
from typed_tiny import write_typed_tiny
from models.analysis.sweep import (COLUMNS, COST_COLUMN, format_frontier, frontier, frontier_notes,
                                   gpu_count_grid, run_sweep, time_limited, write_sweep)
from models.cli.main import main as solve_main
from models.methods.exact import solve_exact
from models.methods.registry import METHODS as REGISTRY
from models.output.plots import plot_frontier
from models.problem.instance import BeyondLimits, InputError, load_instance, with_gpu_counts
from models.problem.plan import TooLarge
from test_plots import assert_valid_png

COUNTS = [(("A", 1), ("B", 1)), (("A", 2), ("B", 1))]
COST = '[objective]\nkind = "cost"\nmin_quality = 0.8\n'


@pytest.fixture(scope="module")
def typed_folder(tmp_path_factory):
    return write_typed_tiny(tmp_path_factory.mktemp("typed") / "tiny")


@pytest.fixture(scope="module")
def typed(typed_folder):
    return load_instance(typed_folder)


def test_counts_renumber_type_by_type(typed):
    sized = with_gpu_counts(typed, {"A": 3, "B": 1})  # 3 is more than the file's 2
    assert [(t.name, t.gpus) for t in sized.types] == [("A", range(0, 3)), ("B", range(3, 4))]
    assert sized.gpu_count == 4 and sized.gpu_type == "3 x A + 1 x B"
    assert with_gpu_counts(typed, {"B": 0}).gpu_count == 2  # A keeps its count
    with pytest.raises(InputError, match="model 'large': fits on no GPU"):
        with_gpu_counts(typed, {"A": 1, "B": 1})
    with pytest.raises(BeyondLimits, match="1,025 GPUs, above the planner's limit of 1,024"):
        with_gpu_counts(typed, {"A": 1023})


def test_counts_beyond_the_limits_and_a_refusing_method_are_refused_rows(typed, monkeypatch):
    def too_large(instance, options):
        raise TooLarge("exact: too large on purpose")

    table = run_sweep(typed, (60.0,), ("exact",), progress=False, gpu_counts=[(("A", 1023), ("B", 2))])
    assert table.status.tolist() == ["refused"] and "above the planner's limit" in table.reason.iloc[0]
    monkeypatch.setitem(REGISTRY, "exact", too_large)
    table = run_sweep(typed, (60.0,), ("exact",), progress=False)
    assert table.status.tolist() == ["refused"] and table.reason.tolist() == ["exact: too large on purpose"]


def test_grid_of_counts_is_the_product_in_the_instances_order(typed):
    assert gpu_count_grid(typed, [("B", (0, 1)), ("A", (0, 2))]) == [
        (("A", 0), ("B", 1)), (("A", 2), ("B", 0)), (("A", 2), ("B", 1))]  # (0, 0) has no GPU: left out


def test_counts_are_a_dimension_of_the_grid_and_a_csv_column(typed, tmp_path):
    table = run_sweep(typed, (60.0,), ("exact",), progress=False, gpu_counts=COUNTS)
    assert tuple(table.columns) == COLUMNS + (COST_COLUMN,)
    assert table.gpu_counts.tolist() == ["A=1;B=1", "A=2;B=1"]
    unfit, fit = table.to_dict("records")
    assert unfit["status"] == "infeasible" and "with GPUs A=1;B=1: " in unfit["reason"]
    assert "model 'large': fits on no GPU" in unfit["reason"]
    # large must sit on A's two GPUs, so the optimum is between data/tiny's on A alone and the full 0.875
    assert fit["status"] == "optimal" and 1349 / 1620 - 1e-6 <= fit["quality"] <= 0.875 + 1e-6
    paths = write_sweep(table, tmp_path)
    assert [p.name for p in paths[1:]] == ["tiny-frontier-gpusA-1-B-1-load1-headroom0.png",
                                           "tiny-frontier-gpusA-2-B-1-load1-headroom0.png"]
    assert_valid_png(paths[1])
    written = pd.read_csv(paths[0], keep_default_na=False)
    assert written.gpu_counts.tolist() == ["A=1;B=1", "A=2;B=1"]


def test_resume_with_gpu_counts_solves_only_the_rest(typed, tmp_path, monkeypatch):
    csv_path = tmp_path / "tiny-sweep.csv"
    run_sweep(typed, (60.0,), ("exact",), progress=False, gpu_counts=COUNTS[:1], csv_path=csv_path)
    calls = []
    monkeypatch.setitem(REGISTRY, "exact", lambda instance, options: calls.append(instance.gpu_type)
                        or solve_exact(instance))
    resumed = run_sweep(typed, (60.0,), ("exact",), progress=False, gpu_counts=COUNTS, resume=csv_path)
    assert calls == ["2 x A + 1 x B"] and resumed.gpu_counts.tolist() == ["A=1;B=1", "A=2;B=1"]


def test_the_cost_objective_sweeps_with_its_cost(tmp_path):
    # min_quality 0.8: at 60 ms data/tiny's own optimum 0.8327 on A (cost 2) is enough; at 45 ms A alone has no
    # plan, and one B beside A's two is the cheapest (cost 5)
    instance = load_instance(write_typed_tiny(tmp_path / "tiny", COST))
    table = run_sweep(instance, (45.0, 60.0), ("exact",), progress=False)
    assert table[COST_COLUMN].tolist() == [5.0, 2.0]
    assert table.quality.tolist() == pytest.approx([0.857838, 0.832716], abs=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--gpu-counts", "A=0:1", "--gpu-counts", "C=0:1"], "argument --gpu-counts: unknown GPU type 'C' (the "
                                                          "instance's types: A, B)"),
    (["--gpu-counts", "A=0:1", "--gpu-counts", "A=1:2"], "argument --gpu-counts: GPU type 'A' is given twice"),
    (["--gpu-counts", "A=0:0", "--gpu-counts", "B=0:0"], "argument --gpu-counts: every count is zero"),
    (["--gpu-counts", "A=2:1"], "argument --gpu-counts: 'A=2:1': need a <= b"),
    (["--gpu-counts", "A=0:1:1"], "argument --gpu-counts: 'A=0:1:1' is not TYPE=a:b"),
    (["--gpu-counts", "=0:1"], "argument --gpu-counts: '=0:1' is not TYPE=a:b"),
])
def test_bad_gpu_counts_are_one_line_errors(typed_folder, capsys, extra, message):
    assert solve_main(["sweep", str(typed_folder), "--slo-ms", "60:60:1", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_gpu_counts_on_an_untyped_instance_are_refused(capsys):
    assert solve_main(["sweep", str(DATA / "tiny"), "--slo-ms", "60:60:1", "--gpu-counts", "A=0:1"]) == 2
    assert capsys.readouterr().err == (f"error: argument --gpu-counts: {DATA / 'tiny'}: lists no GPU types (SPEC "
                                       "4.4); GPU counts need [[cluster.gpu_types]]\n")


# ---------------------------------------------------------------- plans cut by a time limit

def cut_at_60_ms(monkeypatch):
    """exact returns, at 60 ms, its 35 ms plan (feasible at 60 ms, and worse) as if a time limit had cut it."""
    def solve(instance, options):
        target = 35.0 if instance.slo_mean_ttft_ms == 60.0 else instance.slo_mean_ttft_ms
        plan = solve_exact(dataclasses.replace(instance, slo_mean_ttft_ms=target))
        if target == instance.slo_mean_ttft_ms:
            return plan
        return dataclasses.replace(plan, slo_ms=instance.slo_mean_ttft_ms,
                                   solver=dataclasses.replace(plan.solver, status="time_limit"))
    monkeypatch.setitem(REGISTRY, "exact", solve)


def test_a_time_limited_plan_is_marked_and_a_better_smaller_target_noted(tiny, monkeypatch):
    cut_at_60_ms(monkeypatch)
    table = run_sweep(tiny, (35.0, 45.0, 60.0), ("exact",), progress=False)
    assert table.status.tolist() == ["optimal", "optimal", "time_limit"]  # the row keeps its plan and status
    q35, q45, q60 = table.quality
    assert q60 == pytest.approx(q35) and q45 > q60
    assert time_limited(table)["exact"].tolist() == [False, False, True]
    assert frontier_notes(table) == [f"exact at 60 ms (time limit, quality {q60:.6g}): a plan of the smaller "
                                     f"target 45 ms is feasible here and better: quality {q45:.6g}"]
    text = format_frontier(table)
    assert f"{q60:.6f}*" in text and "* time limit: not proven optimal" in text
    figure = plot_frontier(table, frontier(table), cut=time_limited(table))
    assert "time limit (not proven)" in [text.get_text() for text in figure.legends[0].get_texts()]


def test_no_mark_and_no_note_without_a_time_limit(tiny):
    table = run_sweep(tiny, (45.0, 60.0), ("exact",), progress=False)
    assert frontier_notes(table) == [] and "*" not in format_frontier(table)
    assert not time_limited(table).to_numpy().any()


def test_under_the_cost_objective_a_cheaper_plan_of_a_smaller_target_is_noted():
    table = pd.DataFrame({"target_ms": [40.0, 50.0, 60.0], "method": ["exact"] * 3,
                          "status": ["optimal", "time_limit", "time_limit"], "quality": [0.80, 0.81, 0.82],
                          "cost_per_hour": [4.0, 5.0, 4.0]})
    assert frontier_notes(table, "cost") == ["exact at 50 ms (time limit, cost_per_hour 5): a plan of the smaller "
                                             "target 40 ms is feasible here and better: cost_per_hour 4"]
    assert frontier_notes(table) == []  # quality only rises with the target here
