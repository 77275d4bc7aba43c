"""The score generator: its numerics against closed forms, its stored calibration against the
RouterBench file, its scores against RouterBench's means and correlations, and determinism."""

import math
import runpy

import numpy as np
import pandas as pd
import pytest

from conftest import DATA
from models.problem.instance import InputError
from models.problem.scoregen import (
    PAPER_CALIBRATIONS,
    bivariate_normal_cdf,
    calibrate,
    generate_scores,
    least_informative_uniqueness,
    normal_cdf,
    read_routerbench,
    task_counts,
    tetrachoric,
    write_scores,
)
from realdata import ROUTERBENCH_SCORES

MAKE = runpy.run_path(str(DATA / "make_paper_instances.py"), run_name="make_paper_instances")
PROMPTS, SEED = MAKE["PROMPTS"], MAKE["SEED"]
ALL_MODELS = max(PAPER_CALIBRATIONS, key=len)
needs_routerbench = pytest.mark.skipif(not ROUTERBENCH_SCORES.is_file(),
                                       reason=f"RouterBench scores are not shipped and {ROUTERBENCH_SCORES} is absent")


@pytest.fixture(scope="module")
def routerbench():
    return read_routerbench(ROUTERBENCH_SCORES, ALL_MODELS)


@pytest.fixture(scope="module", params=list(PAPER_CALIBRATIONS), ids=lambda models: f"{len(models)}models")
def generated(request):
    """The shipped scores of one paper model list, with their tasks."""
    return generate_scores(PAPER_CALIBRATIONS[request.param], PROMPTS, SEED)


# ---------------------------------------------------------------- numerics


@pytest.mark.parametrize("rho", [-0.95, -0.6, 0.0, 0.3, 0.88, 0.95])
def test_bivariate_normal_cdf_closed_forms(rho):
    # Sheppard: P(X <= 0, Y <= 0) = 1/4 + asin(rho) / (2 pi); at rho = 0 the two are independent.
    assert bivariate_normal_cdf(0.0, 0.0, rho) == pytest.approx(0.25 + math.asin(rho) / (2 * math.pi), abs=1e-14)
    assert bivariate_normal_cdf(-1.2, 0.7, 0.0) == pytest.approx(float(normal_cdf(-1.2) * normal_cdf(0.7)), abs=1e-15)


@pytest.mark.parametrize("rho", [-0.6, 0.2, 0.88])
def test_tetrachoric_inverts_the_orthant_probability(rho):
    a, b = -0.4, 1.1  # thresholds of means Phi(a), Phi(b)
    both = bivariate_normal_cdf(a, b, rho)
    assert tetrachoric(float(normal_cdf(a)), float(normal_cdf(b)), both) == pytest.approx(rho, abs=1e-9)


def test_uniqueness_two_models_by_hand():
    # R - diag(d) is PSD iff (1 - d1)(1 - d2) >= rho^2; log d1 + log d2 is symmetric and strictly
    # concave, so the optimum is d1 = d2 = d on the boundary: (1 - d)^2 = rho^2, d = 1 - |rho|.
    for rho in (-0.7, 0.88):
        uniqueness = least_informative_uniqueness(np.array([[1.0, rho], [rho, 1.0]]))
        np.testing.assert_allclose(uniqueness, [1 - abs(rho)] * 2, atol=1e-9)


def test_uniqueness_equicorrelated_by_hand():
    # R = (1 - rho) I + rho 11^T minus d I has eigenvalues 1 + 2 rho - d and 1 - rho - d (twice):
    # PSD iff d <= 1 - rho; by symmetry and strict concavity the optimum is d = 1 - rho for all three.
    rho = 0.4
    correlation = (1 - rho) * np.eye(3) + rho
    np.testing.assert_allclose(least_informative_uniqueness(correlation), [1 - rho] * 3, atol=1e-9)


# ---------------------------------------------------------------- calibration


@needs_routerbench
@pytest.mark.parametrize("models", list(PAPER_CALIBRATIONS), ids=lambda models: f"{len(models)}models")
def test_stored_calibration_rederives_from_routerbench(routerbench, models):
    fitted, stored = calibrate(routerbench, models), PAPER_CALIBRATIONS[models]
    assert fitted.models == stored.models
    for fresh, kept in zip(fitted.tasks, stored.tasks, strict=True):
        assert (fresh.task, fresh.prompts) == (kept.task, kept.prompts)
        np.testing.assert_allclose(fresh.means, kept.means, atol=1e-12)  # both rounded to 6 decimals
        # Loadings are kept to 6 decimals: each product L_i . L_j with at most 3 factors of size < 1
        # moves by at most 3 * 2 * 5e-7 = 3e-6 from rounding, the same for psi^2 = 1 - |L_i|^2.
        np.testing.assert_allclose(fresh.latent_correlation, kept.latent_correlation, atol=1e-5)
        np.testing.assert_allclose(fresh.uniqueness, kept.uniqueness, atol=1e-5)


def test_calibration_rejects_a_model_that_is_always_right():
    table = pd.DataFrame({"task": ["a"] * 4, "x": [1.0, 1, 1, 1], "y": [0.0, 1, 0, 1]})
    with pytest.raises(ValueError, match="task 'a': model 'x' is always 1"):
        calibrate(table, ("x", "y"))


def test_routerbench_reader_names_a_value_that_is_not_0_or_1(tmp_path):
    path = tmp_path / "routerbench.csv"
    path.write_text("sample_id,eval_name,mistralai/mistral-7b-chat\nq1,mbpp,1.0\nq2,mbpp,0.5\n")
    with pytest.raises(InputError, match=r"routerbench.csv: line 3: column 'mistralai/mistral-7b-chat': 0.5 is not 0 or 1"):
        read_routerbench(path, ("mistral-7b",))


# ---------------------------------------------------------------- generated scores against RouterBench


def test_tasks_in_routerbench_proportions(generated):
    # 36,000 / 3,150 = 80 / 7 and every task count is a multiple of 7: the split is exact.
    counts = generated.task.value_counts().sort_index()
    assert counts.to_dict() == {"arc-challenge": 1456 * 80 // 7, "mbpp": 427 * 80 // 7, "winogrande": 1267 * 80 // 7}


def test_task_counts_split_remainders_by_size():
    calibration = PAPER_CALIBRATIONS[ALL_MODELS]  # prompts 1456, 427, 1267 of 3150
    # 10 prompts: exact shares 4.62, 1.36, 4.02 -> floors 4, 1, 4; the one left goes to the largest remainder.
    assert task_counts(calibration, 10).tolist() == [5, 1, 4]


@needs_routerbench
def test_means_follow_routerbench(generated, routerbench):
    models = list(generated.columns[2:])
    # The scores are calibrated probabilities: their mean is the model's RouterBench accuracy in
    # expectation. The standard error of a mean of N values in [0, 1] is at most 0.5 / sqrt(N)
    # (0.0026 at N = 36,000); allow 4 of them.
    np.testing.assert_allclose(generated[models].mean(), routerbench[models].mean(), atol=4 * 0.5 / math.sqrt(PROMPTS))


@needs_routerbench
def test_bernoulli_draws_reproduce_routerbench_correlations(generated, routerbench):
    models = list(generated.columns[2:])
    scores = generated[models].to_numpy()
    draws = pd.DataFrame(np.random.default_rng(1).random(scores.shape) < scores, columns=models, dtype=float)
    draws["task"] = generated.task.to_numpy()
    # A correlation of n draws from the calibrated model has standard error at most about 1 / sqrt(n)
    # (the largest error over 30 seeds and both model lists was 3.6 of those); allow 4.
    pooled = draws[models].corr() - routerbench[models].corr()
    assert np.abs(pooled.to_numpy()).max() <= 4 / math.sqrt(len(draws))
    for task, rows in draws.groupby("task"):
        by_task = rows[models].corr() - routerbench.loc[routerbench.task == task, models].corr()
        assert np.abs(by_task.to_numpy()).max() <= 4 / math.sqrt(len(rows)), task


# ---------------------------------------------------------------- the written files


def test_scores_are_in_the_unit_interval_with_spec_ids(generated):
    models = generated.columns[2:]
    assert ((generated[models] >= 0) & (generated[models] <= 1)).all().all()
    assert generated.prompt_id.iloc[[0, -1]].tolist() == ["p00001", f"p{PROMPTS:05d}"]
    assert generated.prompt_id.is_unique


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    calibration = PAPER_CALIBRATIONS[ALL_MODELS]
    files = []
    for k, seed in enumerate((7, 7, 8)):
        files.append(tmp_path / f"scores{k}.csv")
        write_scores(generate_scores(calibration, 500, seed), calibration.models, files[-1])
    assert files[0].read_bytes() == files[1].read_bytes() != files[2].read_bytes()


@pytest.mark.parametrize("instance", MAKE["PAPER_INSTANCES"], ids=lambda instance: instance.name)
def test_shipped_files_equal_a_regeneration(instance, tmp_path):
    MAKE["write_instance"](instance, tmp_path)
    for name in ("instance.toml", "scores.csv"):
        assert (tmp_path / name).read_bytes() == (DATA / instance.name / name).read_bytes(), name
