"""Seeded prompt scores calibrated to RouterBench, and their calibration.

RouterBench (Hu et al. 2024, arXiv:2403.12031) records for every prompt
whether each LLM answered it correctly (0/1). The paper instances need
continuous predicted qualities in [0, 1] that follow it, generated here from a
latent-factor model per task without shipping the data.

The model
---------
Data      tasks t with RouterBench prompt counts n[t] (the mixture weights);
          m[t,i]   mean correctness of model i on task t;
          R[t]     tetrachoric correlations of the models' 0/1 correctness on t.
Latent    a prompt of task t has factors g ~ N(0, I_r) and noise e ~ N(0, I):
              Z[i] = c[t,i] + L[t,i] . g + psi[t,i] e[i],   |L[t,i]|^2 + psi[t,i]^2 = 1,
          with c[t,i] = Phi^-1(m[t,i]); model i answers correctly iff Z[i] > 0.
Score     what a calibrated predictor that knows g says:
              s[x,i] = P(correct | g) = Phi((c[t,i] + L[t,i] . g) / psi[t,i]).

"Correlation structure" here means: Bernoulli draws from the scores,
independent given the scores, reproduce RouterBench's 0/1 correctness. They
do in mean (E s = Phi(c) = m) and in every pair: P(i and j right) is the
bivariate normal orthant at correlation L[t,i] . L[t,j] = R[t,i,j], which by
definition of the tetrachoric correlation is RouterBench's share of prompts
both got right. The task mixture carries this over to the pooled means and
correlations.

0/1 data do not say how much of each latent margin a predictor can know
(|L|^2) and how much is luck (psi^2). We take the least informative
predictor: psi^2 maximizing sum_i log psi[i]^2 subject to R - diag(psi^2)
being positive semidefinite (strictly concave, so unique). Scores are sharp
only where the correlations force it (Winogrande, where WizardLM-13B and
Llama-2-70B agree with tetrachoric correlation 0.88).

`calibrate` fits these parameters from the RouterBench file;
`PAPER_CALIBRATIONS` keeps the fitted numbers so the shipped instances
regenerate without it; `generate_scores` draws the scores.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

from models.problem.instance import InputError, cell, check_columns, numeric_column, read_csv

ROUTERBENCH_COLUMNS = {  # instance model name -> RouterBench correctness column
    "mistral-7b": "mistralai/mistral-7b-chat",
    "wizardlm-13b": "WizardLM/WizardLM-13B-V1.2",
    "yi-34b": "zero-one-ai/Yi-34B-Chat",
    "llama-2-70b": "meta/llama-2-70b-chat",
}
PROMPT_COLUMN = "sample_id"
TASK_COLUMN = "eval_name"
DIGITS = 6  # decimals of the stored parameters and of the written scores
RANK_TOL = 1e-6  # eigenvalues of R - diag(psi^2) below this are the active PSD constraint: zero
NEWTON_TOL = 1e-13  # on the Newton decrement, in units of the barrier objective
MAX_NEWTON_STEPS = 100  # per barrier weight; about 6 are needed
BARRIER_WEIGHTS = 10.0 ** -np.arange(13)  # mu = 1 ... 1e-12: psi^2 is optimal to about K * 1e-12
QUADRATURE = np.polynomial.legendre.leggauss(64)  # error below 1e-14 for |rho| <= 0.95 (tested)


# ---------------------------------------------------------------- normal distribution


def normal_cdf(x) -> np.ndarray:
    """Phi, elementwise (erfc keeps the tails accurate)."""
    return np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2)), otypes=[float])(x)


def bivariate_normal_cdf(a: float, b: float, rho: float) -> float:
    """P(X <= a, Y <= b) for standard normals with correlation rho.

    Plackett's identity d/d(rho) P = phi2(a, b; rho) gives
    P = Phi(a) Phi(b) + integral_0^rho phi2(a, b; r) dr, a smooth integral
    done by Gauss-Legendre quadrature.
    """
    nodes, weights = QUADRATURE
    r = rho * (nodes + 1) / 2
    density = np.exp(-(a * a - 2 * r * a * b + b * b) / (2 * (1 - r * r))) / (2 * math.pi * np.sqrt(1 - r * r))
    return float(normal_cdf(a) * normal_cdf(b) + rho / 2 * np.dot(weights, density))


def tetrachoric(mean_i: float, mean_j: float, both: float) -> float:
    """The latent correlation at which two thresholded normals have these means and P(both = 1).

    P(both) increases with rho, so bisection finds it; it is rho = +-1 when
    `both` sits at a Frechet bound.
    """
    a, b = NormalDist().inv_cdf(mean_i), NormalDist().inv_cdf(mean_j)
    low, high = -1.0, 1.0
    for _ in range(60):  # 2 / 2^60: far below the stored precision
        middle = (low + high) / 2
        if bivariate_normal_cdf(a, b, middle) < both:
            low = middle
        else:
            high = middle
    return (low + high) / 2


# ---------------------------------------------------------------- the factor model


def least_informative_uniqueness(correlation: np.ndarray) -> np.ndarray:
    """psi^2 maximizing sum_i log psi[i]^2 subject to R - diag(psi^2) PSD (module docstring).

    Log-barrier method: for mu = 1, 0.1, ..., 1e-12, Newton's method on
    f(d) = sum_i log d[i] + mu log det(R - diag d), each from the last optimum.
    """
    lowest = np.linalg.eigvalsh(correlation)[0]
    if lowest <= 0:
        raise ValueError(f"correlation matrix is not positive definite (eigenvalue {lowest:.3g})")
    d = np.full(len(correlation), lowest / 2)  # strictly feasible: R - diag d has eigenvalues >= lowest / 2
    for mu in BARRIER_WEIGHTS:
        for _ in range(MAX_NEWTON_STEPS):
            slack_inverse = np.linalg.inv(correlation - np.diag(d))
            gradient = 1 / d - mu * np.diag(slack_inverse)
            hessian = -np.diag(1 / d**2) - mu * slack_inverse**2
            step = np.linalg.solve(hessian, -gradient)
            decrement = gradient @ step
            if decrement < NEWTON_TOL:
                break
            d = d + backtrack(correlation, d, step, mu, decrement)
        else:
            raise RuntimeError(f"uniqueness: Newton's method did not converge at barrier weight {mu:g}")
    return d


def barrier_objective(correlation: np.ndarray, d: np.ndarray, mu: float) -> float:
    """f(d) of `least_informative_uniqueness`; -inf outside the PSD cone or for d <= 0."""
    if np.any(d <= 0):
        return -math.inf
    try:
        cholesky = np.linalg.cholesky(correlation - np.diag(d))
    except np.linalg.LinAlgError:
        return -math.inf
    return float(np.log(d).sum() + 2 * mu * np.log(np.diag(cholesky)).sum())


def backtrack(correlation: np.ndarray, d: np.ndarray, step: np.ndarray, mu: float, decrement: float) -> np.ndarray:
    """The longest step t * step, t = 1, 1/2, ..., with Armijo ascent (and so strictly feasible)."""
    start = barrier_objective(correlation, d, mu)
    t = 1.0
    while barrier_objective(correlation, d + t * step, mu) < start + 0.25 * t * decrement:
        t /= 2
        if t < 1e-12:
            raise RuntimeError("uniqueness: no ascent along the Newton direction")
    return t * step


def factor_loadings(correlation: np.ndarray, uniqueness: np.ndarray) -> np.ndarray:
    """L with L L^T = R - diag(psi^2): its eigenvectors scaled, largest factor first, each
    column's largest entry positive (so the result is unique)."""
    values, vectors = np.linalg.eigh(correlation - np.diag(uniqueness))
    keep = np.flatnonzero(values > RANK_TOL)[::-1]
    loadings = vectors[:, keep] * np.sqrt(values[keep])
    largest = loadings[np.argmax(np.abs(loadings), axis=0), np.arange(len(keep))]
    return loadings * np.sign(largest)


@dataclass(frozen=True)
class TaskFactors:
    """One task's latent-factor model: `prompts` RouterBench prompts, mean correctness per
    model, and loadings L (one row per model, one column per factor)."""

    task: str
    prompts: int
    means: tuple[float, ...]
    loadings: tuple[tuple[float, ...], ...]

    @property
    def loading_matrix(self) -> np.ndarray:
        return np.array(self.loadings, dtype=float)

    @property
    def uniqueness(self) -> np.ndarray:
        """psi^2 = 1 - |L_i|^2: the share of each latent margin no predictor knows."""
        return 1 - (self.loading_matrix**2).sum(axis=1)

    @property
    def latent_correlation(self) -> np.ndarray:
        """L L^T off the diagonal, 1 on it: the tetrachoric correlations the model reproduces."""
        product = self.loading_matrix @ self.loading_matrix.T
        np.fill_diagonal(product, 1.0)
        return product

    def predict(self, factors: np.ndarray) -> np.ndarray:
        """Scores Phi((c + L g) / psi) for factor draws g (one row per prompt)."""
        thresholds = np.array([NormalDist().inv_cdf(m) for m in self.means])
        return normal_cdf((thresholds + factors @ self.loading_matrix.T) / np.sqrt(self.uniqueness))


@dataclass(frozen=True)
class Calibration:
    """The factor models of all tasks for one list of models (instance model names)."""

    models: tuple[str, ...]
    tasks: tuple[TaskFactors, ...]


# ---------------------------------------------------------------- calibration from RouterBench


def read_routerbench(path: str | Path, models: tuple[str, ...]) -> pd.DataFrame:
    """RouterBench's prompts with their task and the 0/1 correctness of `models`: columns
    `prompt_id` (RouterBench's sample id), `task` and the model names."""
    path = Path(path)
    table = read_csv(path, (PROMPT_COLUMN, TASK_COLUMN))
    columns = [ROUTERBENCH_COLUMNS[name] for name in models]
    check_columns(table, [PROMPT_COLUMN, TASK_COLUMN, *columns])
    correctness = pd.DataFrame({"prompt_id": table.text(PROMPT_COLUMN), "task": table.text(TASK_COLUMN)})
    for name, column in zip(models, columns):
        values = numeric_column(table, column)
        for row in np.flatnonzero((values != 0) & (values != 1)):
            raise InputError(f"{cell(table, row, column)}: {values[row]:g} is not 0 or 1")
        correctness[name] = values
    return correctness


def calibrate(correctness: pd.DataFrame, models: tuple[str, ...]) -> Calibration:
    """Fit every task's factor model to 0/1 correctness (columns `task` and `models`)."""
    return Calibration(
        models=tuple(models),
        tasks=tuple(calibrate_task(str(task), rows[list(models)]) for task, rows in
                    correctness.groupby("task", sort=True)),
    )


def calibrate_task(task: str, correctness: pd.DataFrame) -> TaskFactors:
    """Means, tetrachoric correlations, least informative uniqueness, loadings (to DIGITS decimals)."""
    correct = correctness.to_numpy(dtype=float)
    means = correct.mean(axis=0)
    for i in np.flatnonzero((means == 0) | (means == 1)):
        raise ValueError(f"task '{task}': model '{correctness.columns[i]}' is always {means[i]:g}: "
                         "no latent threshold")
    correlation = np.eye(len(means))
    for i, j in itertools.combinations(range(len(means)), 2):
        both = np.mean(correct[:, i] * correct[:, j])
        correlation[i, j] = correlation[j, i] = tetrachoric(means[i], means[j], both)
    try:
        loadings = factor_loadings(correlation, least_informative_uniqueness(correlation))
    except ValueError as err:
        raise ValueError(f"task '{task}': tetrachoric {err}") from None
    return TaskFactors(
        task=task,
        prompts=len(correct),
        means=tuple(round(float(m), DIGITS) for m in means),
        loadings=tuple(tuple(round(float(v), DIGITS) for v in row) for row in loadings),
    )


# ---------------------------------------------------------------- generation


def task_counts(calibration: Calibration, prompt_count: int) -> np.ndarray:
    """Prompts per task in RouterBench's proportions (largest remainder, exact integers)."""
    weights = np.array([t.prompts for t in calibration.tasks])
    counts = prompt_count * weights // weights.sum()
    remainders = prompt_count * weights % weights.sum()
    counts[np.argsort(-remainders, kind="stable")[: prompt_count - counts.sum()]] += 1
    return counts


def generate_scores(calibration: Calibration, prompt_count: int, seed: int) -> pd.DataFrame:
    """Columns `prompt_id` (p00001, ...), `task` and one score per model, rounded to DIGITS decimals.

    The tasks are shuffled over the prompts; then each task's factors are drawn
    in the calibration's task order, all from `default_rng(seed)`.
    """
    rng = np.random.default_rng(seed)
    counts = task_counts(calibration, prompt_count)
    labels = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    scores = np.empty((prompt_count, len(calibration.models)))
    for k, task in enumerate(calibration.tasks):
        factors = rng.standard_normal((counts[k], len(task.loadings[0])))
        scores[labels == k] = task.predict(factors)
    width = max(5, len(str(prompt_count)))
    table = pd.DataFrame(np.round(scores, DIGITS), columns=list(calibration.models))
    table.insert(0, "task", [calibration.tasks[k].task for k in labels])
    table.insert(0, "prompt_id", [f"p{x:0{width}d}" for x in range(1, prompt_count + 1)])
    return table


def write_scores(table: pd.DataFrame, models: tuple[str, ...], path: str | Path) -> None:
    """The SPEC's scores.csv: `prompt_id` and one column per model (the task is not part of it)."""
    table[["prompt_id", *models]].to_csv(path, index=False, float_format=f"%.{DIGITS}f", lineterminator="\n")


# ---------------------------------------------------------------- the fitted numbers

# calibrate(read_routerbench(ROUTERBENCH, models), models) for the paper instances' model lists, with
# ROUTERBENCH = ../shared/data/routerbench-subset/scores.csv (3,150 prompts: RouterBench's 0-shot
# ARC-Challenge, MBPP and Winogrande rows as shuhao02/RouterDC ships them, train and test splits
# together). Means are fractions of prompts answered right, to DIGITS decimals; loadings are the
# scaled eigenvectors of R - diag(psi^2) (`factor_loadings`). tests/test_scoregen.py re-derives them.
PAPER_CALIBRATIONS = {
    ('mistral-7b', 'wizardlm-13b', 'yi-34b'): Calibration(
        models=('mistral-7b', 'wizardlm-13b', 'yi-34b'),
        tasks=(
            TaskFactors('arc-challenge', 1456, means=(0.671016, 0.657967, 0.903159), loadings=(
                (0.841798,),
                (0.803493,),
                (0.675534,),
            )),
            TaskFactors('mbpp', 427, means=(0.344262, 0.370023, 0.386417), loadings=(
                (0.8591,),
                (0.841454,),
                (0.831206,),
            )),
            TaskFactors('winogrande', 1267, means=(0.565904, 0.528808, 0.753749), loadings=(
                (0.779842, -0.052487),
                (-0.337957, 0.404384),
                (0.62174, 0.285644),
            )),
        ),
    ),
    ('mistral-7b', 'wizardlm-13b', 'yi-34b', 'llama-2-70b'): Calibration(
        models=('mistral-7b', 'wizardlm-13b', 'yi-34b', 'llama-2-70b'),
        tasks=(
            TaskFactors('arc-challenge', 1456, means=(0.671016, 0.657967, 0.903159, 0.802885), loadings=(
                (0.769801, -0.264906, 0.216883),
                (0.821901, -0.297417, -0.161882),
                (0.80675, 0.321876, 0.151659),
                (0.863893, 0.218427, -0.180875),
            )),
            TaskFactors('mbpp', 427, means=(0.344262, 0.370023, 0.386417, 0.330211), loadings=(
                (0.859594, 0.000486),
                (0.841058, -0.154595),
                (0.83073, -0.004717),
                (0.804686, 0.165933),
            )),
            TaskFactors('winogrande', 1267, means=(0.565904, 0.528808, 0.753749, 0.502762), loadings=(
                (-0.689426, 0.518067, -0.255424),
                (0.826018, 0.529442, -0.040773),
                (-0.420228, 0.500842, 0.31054),
                (0.979711, 0.133006, -0.012165),
            )),
        ),
    ),
}
