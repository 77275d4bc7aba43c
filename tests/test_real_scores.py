"""The real-score instance (RouterBench's 0/1 correctness on paper-4xA100's cluster and curves)
loads, and quality-greedy's plan on it is what the data say and what the evaluator finds."""

import tomllib

import numpy as np
import pandas as pd
import pytest

from models.evaluation.evaluate import evaluate_plan
from models.methods.exact import solve_exact
from models.methods.greedy import solve_quality_greedy
from models.problem.tolerances import GAP_FLOOR
from models.problem.instance import load_instance
from models.problem.scoregen import ROUTERBENCH_COLUMNS
from realdata import PAPER_4XA100, ROUTERBENCH_SCORES, build_real_score_instance

pytestmark = pytest.mark.skipif(not ROUTERBENCH_SCORES.is_file(),
                                reason=f"RouterBench scores are not shipped and {ROUTERBENCH_SCORES} is absent")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return load_instance(build_real_score_instance(tmp_path_factory.mktemp("real")))


@pytest.fixture(scope="module")
def correct(real) -> np.ndarray:
    """The 0/1 correctness read straight from the RouterBench file, in the instance's model order."""
    table = pd.read_csv(ROUTERBENCH_SCORES)
    return table[[ROUTERBENCH_COLUMNS[name] for name in real.model_names]].to_numpy()


def test_instance_has_paper_numbers_and_every_routerbench_prompt(real, correct):
    paper = tomllib.loads((PAPER_4XA100 / "instance.toml").read_text())
    assert real.name == "routerbench-real-paper-4xA100"
    assert real.model_names == tuple(model["name"] for model in paper["models"])
    assert [(m.weights_gb, m.kv_cache_gb) for m in real.models] == [
        (model["weights_gb"], model["kv_cache_gb"]) for model in paper["models"]]
    assert (real.gpu_count, real.gpu_memory_gb, real.arrival_rate_rps, real.slo_mean_ttft_ms) == (
        paper["cluster"]["gpu_count"], paper["cluster"]["gpu_memory_gb"],
        paper["workload"]["arrival_rate_rps"], paper["workload"]["slo_mean_ttft_ms"])
    assert real.prompt_count == len(correct) == 3150
    np.testing.assert_array_equal(real.scores, correct)


def test_quality_greedy_plan_matches_the_data_and_the_evaluator(real, correct):
    plan = solve_quality_greedy(real)
    # With 0/1 scores every prompt goes to its first model that answers it right, or to the first model
    # when none does (greedy breaks ties by model order). So quality is the share of prompts some
    # model answers right, and model k's share is that of prompts models 0..k-1 miss and k gets.
    some_right = correct.max(axis=1) == 1
    first_right = np.where(some_right, np.argmax(correct, axis=1), 0)
    assert plan.quality == pytest.approx(some_right.mean(), abs=1e-12)
    np.testing.assert_allclose(plan.shares, np.bincount(first_right, minlength=len(real.models)) / len(correct),
                               atol=1e-12)

    evaluation = evaluate_plan(real, plan.to_dict())
    # At the greedy shares no routing beats every prompt's best model, so the transportation value is
    # the greedy quality; the mean TTFT and the SLO verdict are recomputed from the curves.
    assert evaluation.quality == pytest.approx(plan.quality, abs=1e-6)
    assert evaluation.mean_ttft_ms == pytest.approx(plan.mean_ttft_ms, rel=1e-9)
    assert evaluation.feasible == plan.slo_met == (plan.solver.status == "optimal")
    if plan.slo_met:
        assert evaluation.consistent
    else:
        assert any(v.rule in ("(5) capacity", "(6) SLO") for v in evaluation.violations)


def test_exact_plan_on_real_scores(real):
    """The exact optimum on the real 0/1 scores (8 distinct score rows): proven, accepted by the
    evaluator, and no better than every prompt's best model (equal when that meets the SLO)."""
    plan = solve_exact(real)
    greedy = solve_quality_greedy(real)
    assert plan.solver.status == "optimal" and plan.solver.gap <= GAP_FLOOR  # the MIP tolerance bounds the gap claimed
    assert plan.solver.bound >= plan.quality - 1e-9
    assert evaluate_plan(real, plan.to_dict()).consistent
    assert plan.quality <= greedy.quality + 1e-9
    if greedy.slo_met:
        assert plan.quality == pytest.approx(greedy.quality, abs=1e-6)
