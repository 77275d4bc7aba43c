"""enumerate, the brute-force reference, against the hand-derived optimum of data/tiny (see its README)."""

import pytest

from conftest import edit
from models.methods.brute_force import check_size, solve_enumerate
from models.problem.plan import TooLarge
from models.evaluation.evaluate import evaluate_plan
from models.problem.instance import Option, load_instance
from models.problem.plan import Infeasible

TINY_OPTIMUM = 1349 / 1620  # setup C, share 37/81 on large (data/tiny/README.md)


def test_tiny_optimum(tiny):
    plan = solve_enumerate(tiny)
    assert plan.quality == pytest.approx(TINY_OPTIMUM, abs=1e-6)
    assert plan.setup == (Option(2, 50), Option(2, 50))
    assert plan.shares[1] == pytest.approx(37 / 81, abs=1e-6)
    assert plan.solver.status == "optimal"
    assert plan.notes["setups_evaluated"] == 2  # setups A and C
    evaluation = evaluate_plan(tiny, plan.to_dict())
    assert evaluation.consistent
    small_price, large_price = plan.prices
    assert large_price - small_price == pytest.approx(0.4, abs=1e-6)


def test_infeasible_target_reports_lowest_ttft(tiny_copy):
    edit(tiny_copy / "instance.toml", "slo_mean_ttft_ms = 60.0", "slo_mean_ttft_ms = 10.0")
    with pytest.raises(Infeasible, match="lowest mean TTFT any setup reaches is 18.00 ms"):
        solve_enumerate(load_instance(tiny_copy))


def test_no_placement_is_infeasible(tiny_copy):
    # 12 GB GPUs: large's 12 GB shard fills a GPU, and small (4 GB at tp2, 6 GB at tp1) fits nowhere beside it
    edit(tiny_copy / "instance.toml", "gpu_memory_gb = 18", "gpu_memory_gb = 12")
    with pytest.raises(Infeasible, match="cannot all be placed"):
        solve_enumerate(load_instance(tiny_copy))


def test_refuses_large_instances(tiny):
    with pytest.raises(TooLarge, match="use --method exact"):
        check_size(tiny, 200_000)
