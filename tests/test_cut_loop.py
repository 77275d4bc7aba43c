"""The exact method's cut loop and placement forms: patterns = per-GPU = enumerate, a stall ends with its true gap,
a bound below a known plan is a solver failure, the reported gap is honest, and plans are the same run to run."""

import dataclasses

import numpy as np
import pytest

from models.methods import cut_loop
from models.methods.brute_force import solve_enumerate
from models.methods.exact import build_joint_mip, solve_exact
from models.problem.instance import load_instance
from models.problem.plan import Infeasible
from models.problem.solver import SolveResult, SolverError
from models.problem.tolerances import GAP_FLOOR
from random_instances import write_random_instance

LARGER_SEEDS = (0, 1, 4, 5, 6, 7)  # 5 models on 8 GPUs, 68-167 prompts, all feasible
ENUMERATED = (0, 5, 6)  # the quicker of them for enumerate (a few seconds each)


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    root = tmp_path_factory.mktemp("larger")
    return {seed: load_instance(write_random_instance(root / str(seed), seed, larger=True)) for seed in LARGER_SEEDS}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    return [load_instance(write_random_instance(root / str(seed), seed)) for seed in range(20)]


def outcome(solve, instance):
    try:
        return round(solve(instance).quality, 7)
    except Infeasible:
        return "infeasible"


def test_patterns_equal_per_gpu_equal_enumerate(larger, small):
    for instance in small:
        assert outcome(solve_exact, instance) == outcome(lambda i: solve_exact(i, placement="per-gpu"), instance) \
            == outcome(solve_enumerate, instance), instance.name
    windows = []
    for seed, instance in larger.items():
        patterns, per_gpu = solve_exact(instance), solve_exact(instance, placement="per-gpu")
        assert patterns.quality == pytest.approx(per_gpu.quality, abs=1e-7), seed
        windows.append(patterns.notes["routing_window_rows"] < instance.prompt_count)
        if seed in ENUMERATED:
            assert patterns.quality == pytest.approx(solve_enumerate(instance).quality, abs=1e-7), seed
    assert any(windows)  # the routing LP's window, not every row, on some of them


def test_pattern_placement_is_a_valid_placement(larger):
    # the GPUs read back from pattern counts hold each deployed model's tp shards within memory and compute
    for instance in larger.values():
        plan = solve_exact(instance)
        memory, compute = np.zeros(instance.gpu_count), np.zeros(instance.gpu_count)
        for model, option, gpus in zip(instance.models, plan.setup, plan.models.gpus):
            if option is None:
                continue
            assert len(set(gpus)) == option.tp
            memory[list(gpus)] += model.shard_gb(option.tp)
            compute[list(gpus)] += option.mps_pct
        assert memory.max() <= instance.gpu_memory_gb + 1e-9 and compute.max() <= 100


def test_a_stall_ends_with_its_true_gap(tiny, monkeypatch):
    # with no cut ever added, the MIP's quality is only bounded by the best model's mean score, 0.875: after
    # its first candidate every round is the same, so the loop must stop, reporting that bound and the gap to it
    monkeypatch.setattr(cut_loop, "add_quality_cut", lambda m, prompts, prices: None)
    plan = solve_exact(tiny)
    assert plan.solver.status == "time_limit"
    assert "stalled" in plan.notes["stopped"]
    assert plan.solver.bound == pytest.approx(0.875, abs=1e-9)
    assert plan.solver.gap == pytest.approx((0.875 - plan.quality) / plan.quality, rel=1e-9)
    assert plan.quality <= 1349 / 1620 + 1e-9


def test_a_bound_below_a_known_plan_is_a_solver_failure(tiny, monkeypatch):
    real = cut_loop.solve_model
    calls = []

    def low_bound_after_the_first(m, solver, **options):
        result = real(m, solver, **options)
        calls.append(result)
        if len(calls) == 1:
            return result
        return SolveResult(result.status, result.objective, 0.5, result.seconds)  # tiny's optimum is 0.8327

    monkeypatch.setattr(cut_loop, "solve_model", low_bound_after_the_first)
    # a second round is needed: make the first round's candidate not close the gap by a loose tolerance
    monkeypatch.setattr(cut_loop, "GAP_FLOOR", 0.0)
    with pytest.raises(SolverError, match="below the quality"):
        loop_to_second_round(tiny)


def loop_to_second_round(instance):
    """Run the loop on an instance whose first round cannot already close the gap: seed no cut."""
    m = build_joint_mip(instance)
    from models.problem.solver import make_solver
    from models.problem.transport import Prompts

    loop = cut_loop.CutLoop(m, make_solver(), instance, Prompts.merge(instance.scores), 0.0, None)
    loop.run()


def test_auto_placement_is_per_gpu_up_to_four_gpus_and_patterns_above(tiny, larger):
    assert solve_exact(tiny).notes["placement"] == "per-gpu (auto: 2 GPUs)"
    assert solve_exact(larger[0]).notes["placement"] == "patterns (auto: 8 GPUs)"


def test_every_round_after_the_first_starts_from_the_incumbent(larger, capfd):
    """HiGHS completes the start (the incumbent's integers) by its LP and takes it, round after round."""
    plan = solve_exact(larger[0], tee=True)
    log = capfd.readouterr().out
    assert plan.notes["mip_rounds"] >= 2
    assert log.count("MIP start solution is feasible") == plan.notes["mip_rounds"] - 1


def test_the_reported_gap_is_never_below_the_mips_tolerance(tiny):
    plan = solve_exact(tiny)
    assert plan.solver.status == "optimal"
    assert plan.solver.gap == GAP_FLOOR
    assert plan.solver.bound >= plan.quality - GAP_FLOOR * plan.quality


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_same_plan_twice(larger, seed):
    first, second = (solve_exact(larger[seed]).to_dict() for _ in range(2))
    for plan in (first, second):
        plan["solver"].pop("seconds")
    assert first == second


def test_exact_equals_enumerate_at_every_target_of_tiny(tiny):
    # 60 targets from the lowest reachable mean TTFT, 18 ms (data/tiny/README.md), to 80 ms, boundary included
    for target in np.linspace(18.0, 80.0, 60):
        at = dataclasses.replace(tiny, slo_mean_ttft_ms=float(target))
        exact, enumerated = solve_exact(at), solve_enumerate(at)
        assert exact.quality == pytest.approx(enumerated.quality, abs=1e-7), target
        assert exact.slo_met and exact.solver.status == "optimal", target


def test_an_infeasible_instance_gets_its_reason_within_a_time_limit(tiny):
    # a 10 ms target is below the lowest mean TTFT any setup reaches, 18 ms (data/tiny/README.md)
    with pytest.raises(Infeasible, match="lowest mean TTFT any setup reaches is 18.00 ms"):
        solve_exact(dataclasses.replace(tiny, slo_mean_ttft_ms=10.0), time_limit=30)
