"""The transportation solve, the routing LP and the evaluator's transport_value as rewritten for scale
(issue 10), each against a plain exact method on small seeded instances, and their time limits.

* `best_routing` (window LP with moves between models) against the whole transportation LP;
* the evaluator's `transport_value` (coordinate prices and a trust-region dual LP) against the whole
  dual LP solved by interior point, as the evaluator first did;
* `solve_routing_lp` against the per-prompt MILP of `enumerate` at the same setup.

Instances have 50-200 prompts and 3-6 models, scores rounded to 1-3 decimals in part of them (many
ties and merged rows, the degenerate case) and shares that are whole numbers of prompts in part.
"""

import sys
import time
from pathlib import Path

import highspy
import numpy as np
import pyomo.environ as pyo
import pytest

from models.evaluation.evaluate import transport_value
from models.methods.brute_force import solve_setup_milp
from models.methods.routing import build_routing_lp, nonconvex_segments, solve_routing_lp
from models.methods.window_lp import RoutingWindow
from models.problem.instance import Option, load_instance
from models.problem.latency import option_pieces
from models.problem.solver import DeadlinePassed, solve_model
from models.problem.transport import FixedRows, Prompts, best_at, best_routing, window_lp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from scale_instances import copied_calibration  # noqa: E402


def random_scores(rng) -> np.ndarray:
    scores = rng.random((int(rng.integers(50, 201)), int(rng.integers(3, 7))))
    return scores.round(int(rng.integers(1, 4))) if rng.random() < 0.5 else scores


def random_shares(rng, n_prompts: int, n_models: int) -> np.ndarray:
    shares = rng.dirichlet(np.ones(n_models))
    if rng.random() < 0.3:
        shares[rng.integers(n_models)] = 0.0
    if rng.random() < 0.4:  # whole numbers of prompts: degenerate vertices
        shares = np.round(shares * n_prompts)
        shares[np.argmax(shares)] += n_prompts - shares.sum()
    return shares / shares.sum()


def whole_transport_lp(scores: np.ndarray, shares: np.ndarray) -> float:
    """max (1/N) sum_x,i s[x,i] y[x,i], sum_i y[x,i] = 1, (1/N) sum_x y[x,i] = w[i], y >= 0, prompt by prompt."""
    n, m = scores.shape
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    inf = highspy.kHighsInf
    for value in scores.ravel():
        highs.addVar(0.0, inf)
        highs.changeColCost(highs.getNumCol() - 1, -value / n)
    for x in range(n):
        highs.addRow(1.0, 1.0, m, np.arange(x * m, x * m + m, dtype=np.int32), np.ones(m))
    for i in range(m):
        highs.addRow(shares[i], shares[i], n, np.arange(i, n * m, m, dtype=np.int32), np.full(n, 1.0 / n))
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return -highs.getInfo().objective_function_value


def whole_dual_ipm(scores: np.ndarray, shares: np.ndarray) -> float:
    """min (1/N) sum_x u_x + w . alpha, u_x + alpha_i >= s[x,i], by interior point (the evaluator's former way)."""
    n, m = scores.shape
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("solver", "ipm")
    inf = highspy.kHighsInf
    for cost in np.concatenate([np.full(n, 1.0 / n), shares]):
        highs.addVar(-inf, inf)
        highs.changeColCost(highs.getNumCol() - 1, cost)
    for x in range(n):
        for i in range(m):
            highs.addRow(scores[x, i], inf, 2, np.array([x, n + i], dtype=np.int32), np.ones(2))
    highs.run()
    assert highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return highs.getInfo().objective_function_value


@pytest.mark.parametrize("seed", range(12))
def test_best_routing_matches_the_whole_lp(seed):
    rng = np.random.default_rng(seed)
    scores = random_scores(rng)
    shares = random_shares(rng, *scores.shape)
    prompts = Prompts.merge(scores)
    routing = best_routing(prompts, shares)
    assert routing.quality == pytest.approx(whole_transport_lp(scores, shares), abs=1e-9)
    # the routing has the shares and the quality, and its prices certify it (complementary slackness)
    assert prompts.counts @ routing.fractions / prompts.prompt_count == pytest.approx(shares, abs=1e-9)
    assert prompts.counts @ (routing.fractions * prompts.rows).sum(axis=1) / prompts.prompt_count == \
        pytest.approx(routing.quality, abs=1e-9)
    used = np.flatnonzero(shares > 0)
    for model in used:
        on_it = routing.fractions[:, model] > 1e-9
        assert best_at(prompts.rows[on_it][:, used], np.searchsorted(used, np.full(on_it.sum(), model)),
                       routing.prices[used]).all()


@pytest.mark.parametrize("seed", range(4))
def test_prompts_over_some_models_merges_like_their_scores(seed):
    """Rows that differ only in the dropped columns merge, and their counts add up."""
    scores = np.round(np.random.default_rng(seed).random((3000, 4)), 1)
    models = [0, 2, 3] if seed % 2 else [1]
    over = Prompts.merge(scores).over(models)
    direct = Prompts.merge(scores[:, models])
    assert len(direct.counts) < len(Prompts.merge(scores).counts)
    np.testing.assert_array_equal(over.rows, direct.rows)
    np.testing.assert_array_equal(over.counts, direct.counts)


@pytest.mark.parametrize("seed", range(12))
def test_best_routing_from_other_prices_is_the_same(seed):
    """Start prices only change the window: far-off ones (the setting of the old failure) too."""
    rng = np.random.default_rng(100 + seed)
    scores = random_scores(rng)
    shares = random_shares(rng, *scores.shape)
    prompts = Prompts.merge(scores)
    cold = best_routing(prompts, shares).quality
    assert best_routing(prompts, shares, rng.normal(0, 0.3, scores.shape[1])).quality == pytest.approx(cold, abs=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_evaluator_transport_value_matches_the_whole_dual(seed):
    rng = np.random.default_rng(200 + seed)
    scores = random_scores(rng)
    shares = random_shares(rng, *scores.shape)
    quality, prices = transport_value(scores, shares)
    assert quality == pytest.approx(whole_dual_ipm(scores, shares), abs=1e-8)
    # the prices are optimal: the dual function at them is the quality
    dual = np.max(scores - np.array(prices), axis=1).mean() + np.array(prices) @ shares
    assert dual == pytest.approx(quality, abs=1e-9)


def random_setup_instance(folder: Path, seed: int, prompts: tuple[int, int] = (50, 201), decimals: int = 3):
    """3-6 models on 8 GPUs, curves of 2-4 points at tp1 (some non-convex), 50-200 prompts (or as many as
    `prompts` draws) with scores of `decimals` decimals; a setup."""
    rng = np.random.default_rng(seed)
    n_models = int(rng.integers(3, 7))
    names = [f"m{k}" for k in range(n_models)]
    lam = 10.0
    models, curves = [], []
    for name in names:
        models.append(f'[[models]]\nname = "{name}"\nweights_gb = 10.0\nkv_cache_gb = 2.0\n')
        rate, ttft = 0.0, rng.uniform(10, 40)
        for _ in range(int(rng.integers(2, 5))):
            rate += rng.uniform(1, 5)
            ttft += rng.uniform(0, 40)
            curves.append(f"{name},1,100,{rate:.3f},{ttft:.3f}")
    scores = rng.random((int(rng.integers(*prompts)), n_models)).round(decimals)
    folder.mkdir(parents=True)
    target = rng.uniform(25, 70)
    (folder / "instance.toml").write_text(
        f'name = "setup-{seed}"\n[cluster]\ngpu_count = 8\ngpu_memory_gb = 80\n'
        f"[workload]\narrival_rate_rps = {lam}\nslo_mean_ttft_ms = {target:.1f}\n"
        "[setup_options]\ntp = [1]\nmps_pct = [100]\n" + "".join(models)
        + '[files]\nprofiles = "profiles.csv"\nscores = "scores.csv"\n')
    (folder / "profiles.csv").write_text("model,tp,mps_pct,rate_rps,mean_ttft_ms\n" + "\n".join(curves) + "\n")
    lines = [f"x{x}," + ",".join(f"{v:g}" for v in row) for x, row in enumerate(scores)]
    (folder / "scores.csv").write_text("prompt_id," + ",".join(names) + "\n" + "\n".join(lines) + "\n")
    instance = load_instance(folder)
    return instance, tuple(Option(1, 100) for _ in names)


@pytest.mark.parametrize("seed", range(10))
def test_routing_lp_matches_the_per_prompt_milp(tmp_path, seed):
    """At the MILP's shares as the hint (they pick the segment of non-convex curves), the routing LP's
    optimum is the MILP's; with convex curves any hint gives it."""
    instance, setup = random_setup_instance(tmp_path / "instance", seed)
    result, optimum = solve_setup_milp(instance, setup, time_limit=None)
    prompts = Prompts.merge(instance.scores)
    if optimum is None:
        assert solve_routing_lp(instance, setup, np.full(len(setup), 1 / len(setup)), np.zeros(len(setup))) is None \
            or not all(option_pieces(instance, m, o).is_convex for m, o in zip(instance.models, setup))
        return
    hint = np.array(optimum.shares)
    routing = solve_routing_lp(instance, setup, hint, best_routing(prompts, hint).prices)
    assert routing is not None and routing.quality == pytest.approx(optimum.quality, abs=1e-7)
    if all(option_pieces(instance, m, o).is_convex for m, o in zip(instance.models, setup)):
        cold = solve_routing_lp(instance, setup, np.full(len(setup), 1 / len(setup)), np.zeros(len(setup)))
        assert cold.quality == pytest.approx(optimum.quality, abs=1e-7)


@pytest.mark.parametrize("seed", range(10))
def test_highs_window_lp_is_the_pyomo_statement(tmp_path, seed):
    """The routing LP as HiGHS solves it (`RoutingWindow`, every row in the window) and as Pyomo states it
    (`build_routing_lp`): the same optimum and SLO dual, and prices that differ by a constant at most (the
    shares add up to 1, so only price differences are determined); both infeasible alike."""
    instance, setup = random_setup_instance(tmp_path / "instance", seed)
    prompts = Prompts.merge(instance.scores)
    segments = nonconvex_segments(instance, setup, np.full(len(setup), 1 / len(setup)))
    everything = np.ones(len(prompts.counts), dtype=bool)
    nowhere = np.zeros(len(everything), dtype=int)
    window = RoutingWindow(instance, setup, prompts, segments, nowhere)
    feasible = window.solve(everything, FixedRows.of(prompts, nowhere, ~everything), None)
    m = build_routing_lp(instance, setup, prompts.rows, prompts.counts, np.zeros(len(setup)), 0.0, segments)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    result = solve_model(m, tight_lp=True)
    assert feasible == (result.status == "optimal")
    if feasible:
        assert window.quality() == pytest.approx(pyo.value(m.quality), abs=1e-9)
        assert window.quality_per_ms() == pytest.approx(m.dual[m.slo], abs=1e-9)
        pyomo_prices = np.array([-m.dual[m.share_definition[i]] for i in m.MODELS])
        assert np.ptp(window.prices() - pyomo_prices) == pytest.approx(0, abs=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_a_grown_window_from_a_warm_start_is_the_whole_lp(tmp_path, seed, monkeypatch):
    """3,000-4,000 prompts of continuous scores, from prices far off (all zero): the window grows, each
    time from the last solution (rows that join start at their model), and the optimum is that of the
    Pyomo statement over every row."""
    instance, setup = random_setup_instance(tmp_path / "instance", seed, prompts=(3000, 4001), decimals=6)
    warm_starts = []
    start = RoutingWindow.start_joined_rows_at_their_models
    monkeypatch.setattr(RoutingWindow, "start_joined_rows_at_their_models",
                        lambda self, joining: warm_starts.append(len(joining)) or start(self, joining))
    even = np.full(len(setup), 1 / len(setup))
    routing = solve_routing_lp(instance, setup, even, np.zeros(len(setup)))
    prompts = Prompts.merge(instance.scores)
    segments = nonconvex_segments(instance, setup, even)
    m = build_routing_lp(instance, setup, prompts.rows, prompts.counts, np.zeros(len(setup)), 0.0, segments)
    whole = solve_model(m, tight_lp=True)
    assert (routing is None) == (whole.status != "optimal")
    if routing is not None:
        assert warm_starts and routing.window_rows < len(prompts.counts)
        assert routing.quality == pytest.approx(pyo.value(m.quality), abs=1e-9)


def test_window_lp_takes_share_rows_off_by_round_off():
    """The share rows add up to the routed rows; capacities N w[i] off by round-off beyond the LP's tolerance
    (1.5e-10 prompts at 1,000,000 prompts made HiGHS call the window LP infeasible) give the same optimum."""
    rows = np.random.default_rng(0).random((20, 3))
    counts = np.ones(20)
    no_moves = np.full((3, 3), -np.inf)
    exact = window_lp(rows, counts, np.array([7.0, 7.0, 6.0]), no_moves)
    off = window_lp(rows, counts, np.array([7.0, 7.0, 6.0 + 1e-9]), no_moves)
    assert off[0] == pytest.approx(exact[0], abs=1e-8)
    assert off[1] - off[1][-1] == pytest.approx(exact[1] - exact[1][-1], abs=1e-9)


def test_routing_lp_with_one_model_deployed(tiny):
    """One deployed model has no pairs to move load between (a baseline's restricted instance crashed
    on it): at every profiled option it carries every prompt at its mean score, or, where its capacity is
    below the whole load, the setup has no routing."""
    names = [model.name for model in tiny.models]
    for name, option in tiny.curves:
        k = names.index(name)
        setup = tuple(option if j == k else None for j in range(len(names)))
        routing = solve_routing_lp(tiny, setup, [0.5, 0.5], [0.0, 0.0])
        if option_pieces(tiny, tiny.models[k], option).max_share < 1:
            assert routing is None
        else:
            assert routing.shares[k] == pytest.approx(1.0)
            assert routing.quality == pytest.approx(tiny.scores[:, k].mean(), abs=1e-12)


def test_a_passed_deadline_raises(tiny):
    prompts = Prompts.merge(np.random.default_rng(0).random((100, 3)))
    with pytest.raises(DeadlinePassed):
        best_routing(prompts, [0.2, 0.3, 0.5], deadline=time.perf_counter() - 1)
    setup = (Option(2, 50), Option(2, 50))
    with pytest.raises(DeadlinePassed):
        solve_routing_lp(tiny, setup, [0.5, 0.5], [0.0, 0.0], deadline=time.perf_counter() - 1)
    assert solve_routing_lp(tiny, setup, [0.5, 0.5], [0.0, 0.0], deadline=time.perf_counter() + 60) is not None


def test_copied_models_keep_their_base_uniqueness():
    """A copy's loadings carry the base's explained variance (so its scores are as sharp) and differ
    from the base's (so their scores are not tied)."""
    calibration = copied_calibration(12, seed=0)
    assert calibration.models[4] == "mistral-7b-c1" and calibration.models[11] == "llama-2-70b-c2"
    for task in calibration.tasks:
        explained = (task.loading_matrix ** 2).sum(axis=1)
        assert explained[4:] == pytest.approx(np.tile(explained[:4], 2), abs=1e-12)
        assert np.all(np.linalg.eigvalsh(task.latent_correlation) > 0)
