"""Each baseline's setup follows its rule, its plan passes the evaluator, and it never beats exact."""

import pytest

from models.methods.baselines import solve_baseline
from models.methods.registry import BASELINES
from models.evaluation.evaluate import evaluate_plan
from models.methods.exact import solve_exact
from models.problem.instance import Option, load_instance
from models.problem.plan import Infeasible
from random_instances import write_random_instance


def test_tiny_equal_split_is_setup_c(tiny):
    # common compute levels: small {50, 100} and large {100, 200} share only 100 (2 x 100 <= 200);
    # small at 100 is tp1/mps100 or tp2/mps50; tp1/mps100 next to large's mps50 shard is 150%, so setup C
    plan = solve_baseline(tiny, "equal-split")
    assert plan.setup == (Option(2, 50), Option(2, 50))
    assert plan.quality == pytest.approx(1349 / 1620, abs=1e-6)


def test_tiny_size_proportional_is_setup_a(tiny):
    # proportional parts of 200%: small 200 * 4/24 = 33.3 (below every option: its smallest, 50),
    # large 200 * 20/24 = 166.7 -> 100 (tp2/mps50): setup A, whose optimum is 0.827143 (data/tiny/README.md)
    plan = solve_baseline(tiny, "size-proportional")
    assert plan.setup == (Option(1, 50), Option(2, 50))
    assert plan.quality == pytest.approx(0.4 * (62 / 140 - 0.25) + 0.75, abs=1e-6)


def test_tiny_isolated_needs_three_gpus(tiny):
    # small tp1/mps100 takes a GPU, large tp2/mps100 two more: 3 > 2
    with pytest.raises(Infeasible, match="isolated"):
        solve_baseline(tiny, "isolated")


def follows_rule(name, plan, instance) -> bool:
    deployed = [o for o in plan.setup if o is not None]
    if name == "isolated":
        gpus = [g for row in plan.models.gpus for g in row]
        return all(o.mps_pct == 100 for o in deployed) and len(gpus) == len(set(gpus))
    amounts = [o.compute_pct for o in deployed]
    if name == "equal-split":
        return len(set(amounts)) == 1 and len(deployed) * amounts[0] <= 100 * instance.gpu_count
    # size-proportional: at or below the model's part of the cluster, or its smallest option
    total_weights = sum(m.weights_gb for m in instance.models)
    return all(o.compute_pct <= 100 * instance.gpu_count * m.weights_gb / total_weights
               or o.compute_pct == min(p.compute_pct for p in instance.options(m))
               for m, o in zip(instance.models, plan.setup) if o is not None)


@pytest.mark.parametrize("seed", range(0, 36, 3))
def test_baselines_on_random_instances(tmp_path, seed):
    instance = load_instance(write_random_instance(tmp_path / str(seed), seed))
    try:
        best = solve_exact(instance).quality
    except Infeasible:
        best = None
    for name in BASELINES:
        try:
            plan = solve_baseline(instance, name)
        except Infeasible:
            continue
        assert best is not None and plan.quality <= best + 1e-7
        assert plan.solver.status == "heuristic"
        assert follows_rule(name, plan, instance)
        assert evaluate_plan(instance, plan.to_dict()).consistent
