"""Searches that cannot finish are refused at once, from counts made without listing setups, and a method that
fails is one row of the comparison; the heuristic honours its time limit; enumerate takes all-optional models."""

import dataclasses
from pathlib import Path

import pytest

import solve
from models.methods.brute_force import solve_enumerate
from models.methods import heuristic
from models.methods.heuristic import solve_heuristic
from models.problem.instance import load_instance
from models.problem.plan import TooLarge
from models.problem.setup import count_within_compute, setups_within_compute

OPTIONS = [(tp, mps) for tp in (1, 2, 4, 8) for mps in (30, 40, 50, 60, 70, 80, 90, 100)]  # 32 per model


def write_seven(folder: Path) -> Path:
    """7 models of 7B on 8 GPUs, each with 32 options: 32^7 = 34 billion setups."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"m{k}" for k in range(7)]
    models = "".join(f'[[models]]\nname = "{n}"\nweights_gb = 14.0\nkv_cache_gb = 2.0\n' for n in names)
    (folder / "instance.toml").write_text(
        'name = "seven"\n[cluster]\ngpu_count = 8\ngpu_memory_gb = 80\n[workload]\narrival_rate_rps = 50.0\n'
        'slo_mean_ttft_ms = 500.0\n[setup_options]\ntp = [1, 2, 4, 8]\nmps_pct = [30, 40, 50, 60, 70, 80, 90, 100]\n'
        + models + '[files]\nprofiles = "profiles.csv"\nscores = "scores.csv"\n')
    rows = [f"{n},{tp},{mps},{tp * mps / 10},{100 + 1000 / (tp * mps)}" for n in names for tp, mps in OPTIONS]
    (folder / "profiles.csv").write_text("model,tp,mps_pct,rate_rps,mean_ttft_ms\n" + "\n".join(rows) + "\n")
    (folder / "scores.csv").write_text("prompt_id," + ",".join(names) + "\n" + "\n".join(
        f"p{x}," + ",".join(f"{((x * 7 + k * 3) % 10) / 10:g}" for k in range(7)) for x in range(20)) + "\n")
    return folder


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    return load_instance(write_seven(tmp_path_factory.mktemp("seven")))


def test_counts_agree_with_the_listing(tiny):
    # tiny's choices: small tp1/50 (50), tp1/100 (100), tp2/50 (100); large tp2/50 (100), tp2/100 (200)
    for low, high in ((0, 200), (0, 150), (200, 200), (201, 300)):
        assert count_within_compute(tiny, low, high) == len(list(setups_within_compute(tiny, low, high)))
    # within 200: small tp1/50 + large tp2/50 (150), small tp1/100 or tp2/50 + large tp2/50 (200); with large
    # tp2/100 (200) every total is over 200
    assert count_within_compute(tiny, 0, 200) == 3


def test_the_heuristic_and_enumerate_refuse_at_once(seven):
    # the bounds are counted without listing the product: the refusal names how many setups pass
    with pytest.raises(TooLarge, match=r"the heuristic.s setup search: .* setups pass its compute"):
        solve_heuristic(seven)
    with pytest.raises(TooLarge, match="enumerate would solve up to"):
        solve_enumerate(seven)


def test_method_all_gives_every_row(seven, capsys):
    assert solve.main([str(seven.folder), "--method", "all", "--time-limit", "60", "--quiet"]) == 0
    out = capsys.readouterr().out
    for method in ("exact", "heuristic", "enumerate", "quality-greedy", "fixed-latency"):
        assert f"\n{method:>17} " in out or f"\n{method} " in out, method
    assert "refused" in out and "error" not in out


def test_enumerate_with_every_model_optional(tiny):
    # the setup with no model deployed routes nothing and is not a setup; the optimum is tiny's
    optional = dataclasses.replace(tiny, models=tuple(dataclasses.replace(m, required=False) for m in tiny.models))
    assert solve_enumerate(optional).quality == pytest.approx(1349 / 1620, abs=1e-9)


def test_the_heuristic_stops_computing_quality_at_its_time_limit(monkeypatch):
    # the limit passes once the setups are searched (as it did after 120 s of a 516 s run): of the candidates'
    # exact qualities only the best bound's is computed, and the published method's prices are not tuned
    instance = load_instance(Path(__file__).resolve().parents[1] / "data" / "paper-4xA100")
    monkeypatch.setattr(heuristic, "past", lambda deadline: deadline is not None)
    plan = solve_heuristic(instance, time_limit=3600)
    assert plan.notes["exact_quality_computed"] == 1
    assert "cut_short" in plan.notes and "heuristic_prices" not in plan.notes


def test_the_heuristic_refuses_above_its_limit_of_packed_setups(tiny, monkeypatch):
    # of tiny's 3 setups within 200% of compute (test_counts_agree_with_the_listing), small tp1/100 + large tp2/50
    # puts 150% on GPU 0 and does not pack: 2 are kept at floor 0, so a limit of 1 refuses and 2 does not
    monkeypatch.setattr(heuristic, "SETUP_LIMIT", 1)
    with pytest.raises(TooLarge, match="more than 1 setups pass its compute and packing bounds"):
        heuristic.prune_setups(tiny, 0.0)
    monkeypatch.setattr(heuristic, "SETUP_LIMIT", 2)
    search = heuristic.prune_setups(tiny, 0.0)
    assert (len(search.kept), search.unpackable) == (2, 1)
