"""The evaluator on plans for data/tiny whose numbers are worked out by hand.

tiny: lam = 10 requests/s, tau = 60 ms. Shares w map to loads 10 w.
  small tp2/mps50: one point (10 rps, 18 ms)          -> H_S(w) = 18 w on [0, 1]
  large tp2/mps50: points (4, 100), (8, 140)           -> H_L through (0,0), (0.4, 40), (0.8, 112)
  large tp2/mps100: points (4, 60), (8, 80)            -> H_L through (0,0), (0.4, 24), (0.8, 64)
The optimum (see data/tiny/README.md) puts share 37/81 on large:
  H_S = 18 * 44/81 = 9.777..., H_L = 40 + 180 * (37/81 - 0.4) = 50.222..., sum 60 ms;
  quality 1349/1620; L_large(10 * 37/81) = 100 + 10 * (370/81 - 4) = 105.679... ms.
"""

import copy

import pytest

from conftest import edit
from models.evaluation.evaluate import evaluate_plan, transport_value
from models.problem.instance import load_instance

W_LARGE = 37 / 81


def plan(small=(2, 50, [0, 1]), large=(2, 50, [0, 1]), w_large=W_LARGE, quality=1349 / 1620, ttft=60.0):
    def entry(name, option, share):
        if option is None:
            return {"name": name, "deployed": False, "tp": None, "mps_pct": None, "gpus": [], "share": share}
        tp, mps, gpus = option
        return {"name": name, "deployed": True, "tp": tp, "mps_pct": mps, "gpus": gpus, "share": share}

    return {"instance": "tiny", "method": "hand", "quality": quality, "mean_ttft_ms": ttft,
            "models": [entry("small", small, 1 - w_large), entry("large", large, w_large)]}


def rules(evaluation):
    return [(v.rule, v.where, round(v.amount, 9)) for v in evaluation.violations]


def test_feasible_plan_numbers(tiny):
    evaluation = evaluate_plan(tiny, plan())
    assert evaluation.feasible and evaluation.consistent
    assert evaluation.quality == pytest.approx(1349 / 1620, abs=1e-9)
    assert evaluation.mean_ttft_ms == pytest.approx(60.0, abs=1e-9)
    table = evaluation.models.set_index("name")
    assert table.contribution_ms["small"] == pytest.approx(18 * 44 / 81)
    assert table.contribution_ms["large"] == pytest.approx(40 + 180 * (W_LARGE - 0.4))
    assert table.ttft_ms["large"] == pytest.approx(100 + 10 * (370 / 81 - 4))
    assert table.load_rps["large"] == pytest.approx(370 / 81)
    # prices: p2 (gain 0.4 of large over small) is split, so alpha_large - alpha_small = 0.4
    small_price, large_price = evaluation.prices
    assert large_price - small_price == pytest.approx(0.4, abs=1e-9)


def test_slo_violation_amount(tiny):
    # w_large = 0.5: H_S = 9, H_L = 40 + 180 * 0.1 = 58 -> 67 ms, 7 ms over
    evaluation = evaluate_plan(tiny, plan(w_large=0.5, quality=None, ttft=None))
    assert rules(evaluation) == [("(6) SLO", "mean TTFT", 7.0)]


def test_capacity_violation_amount(tiny):
    # large tp2/mps50 sustains 8 rps; share 0.9 is 9 rps
    evaluation = evaluate_plan(tiny, plan(w_large=0.9, quality=None, ttft=None))
    assert ("(5) capacity", "model large", 1.0) in rules(evaluation)


def test_compute_share_violation(tiny):
    # large at mps 100 and small at mps 50 on both GPUs: 150% each
    evaluation = evaluate_plan(tiny, plan(large=(2, 100, [0, 1]), quality=None, ttft=None))
    assert [r for r in rules(evaluation) if r[0] == "(4) compute share"] == [
        ("(4) compute share", "GPU 0", 50.0), ("(4) compute share", "GPU 1", 50.0)]


def test_memory_violation(tiny_copy):
    # with 17 GB GPUs, small tp1 (4 + 2 GB) next to a large tp2 shard (10 + 2 GB) is 18 GB: 1 GB over
    edit(tiny_copy / "instance.toml", "gpu_memory_gb = 18", "gpu_memory_gb = 17")
    instance = load_instance(tiny_copy)
    evaluation = evaluate_plan(instance, plan(small=(1, 50, [0]), quality=None, ttft=None))
    assert [r for r in rules(evaluation) if r[0] == "(3) memory"] == [("(3) memory", "GPU 0", 1.0)]


def test_shard_violations(tiny):
    evaluation = evaluate_plan(tiny, plan(large=(2, 50, [0, 0]), quality=None, ttft=None))
    assert ("(2) shards", "model large", 1.0) in rules(evaluation)
    evaluation = evaluate_plan(tiny, plan(large=(2, 50, [0, 2]), quality=None, ttft=None))
    assert ("(2) shards", "model large", 1.0) in rules(evaluation)


def test_deployment_violations(tiny):
    evaluation = evaluate_plan(tiny, plan(small=None, w_large=1.0, quality=None, ttft=None))
    assert ("(1) deployment", "model small", 1.0) in rules(evaluation)
    # large has no curve at tp1
    evaluation = evaluate_plan(tiny, plan(large=(1, 50, [1]), quality=None, ttft=None))
    assert ("(1) deployment", "model large", 1.0) in rules(evaluation)


def test_shares_must_add_up_to_one(tiny):
    broken = plan()
    broken["models"][0]["share"] = 0.6
    evaluation = evaluate_plan(tiny, broken)
    assert [v.rule for v in evaluation.violations] == ["routing"]
    assert evaluation.quality is None


def test_misreported_numbers_are_flagged(tiny):
    evaluation = evaluate_plan(tiny, plan(quality=0.9, ttft=55.0))
    assert evaluation.feasible and not evaluation.consistent
    assert len(evaluation.mismatches) == 2


def test_missing_and_unknown_models(tiny):
    broken = copy.deepcopy(plan())
    broken["models"][1]["name"] = "medium"
    found = {v.where for v in evaluate_plan(tiny, broken).violations}
    assert {"model medium", "model large"} <= found


def test_transport_value_by_hand():
    # two prompts, shares (1/2, 1/2): best is prompt a -> model 0, prompt b -> model 1: (0.9 + 0.8) / 2
    quality, prices = transport_value([[0.9, 0.1], [0.5, 0.8]], [0.5, 0.5])
    assert quality == pytest.approx(0.85)
