"""Several GPU types (SPEC 4.4): loading, every method, the evaluator, plots and export, on data/tiny over two
types (tests/typed_tiny.py) and on seeded random two-type instances.

Hand derivation (the quality objective). Type A is data/tiny's GPU; B has the same 18 GB and half of every
TTFT. With every prompt on its best model (large, except p4 where both score 0.6) Q = (1.0 + 0.9 + 1.0 + 0.6) / 4
= 0.875, which no plan exceeds; it needs w_large >= 0.75 (p1, p2, p3). large runs at tp2 (22 GB at tp1 fits
no GPU), so r_K = 8 and w_large <= 0.8. With large on B at mps100 (H: (0.4, 12), (0.8, 32) ms) and small alone on
A at tp1 mps100 (H = 15 w_small), the mean TTFT at w_large = 0.8 is 32 + 15 * 0.2 = 35 ms <= 60: the optimum is
0.875. On A alone (data/tiny itself) the best is 1349/1620 = 0.832716 < 0.875, so the optimum uses B.
"""

import dataclasses
import json

import pytest

from conftest import REPO
from random_instances import write_random_typed_instance
from typed_tiny import write_typed_tiny
from models.evaluation.evaluate import evaluate_plan
from models.methods.baselines import solve_baseline
from models.methods.brute_force import solve_enumerate
from models.methods.exact import build_joint_mip, solve_exact
from models.methods.heuristic import prune_setups, solve_heuristic
from models.problem.setup import first_fit_decreasing
from models.output.export import write_export
from models.output.plots import plot_gpu_map
from models.problem.instance import InputError, Option, load_instance
from models.problem.plan import Infeasible, read_plan, write_plan
import solve

BEST = 0.875  # every prompt to its best model (module docstring)


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    return load_instance(write_typed_tiny(tmp_path_factory.mktemp("typed") / "tiny"))


@pytest.fixture
def typed_copy(tmp_path):
    return write_typed_tiny(tmp_path / "tiny")


def test_types_are_numbered_type_by_type(typed):
    assert [(t.name, t.gpus) for t in typed.types] == [("A", range(0, 2)), ("B", range(2, 4))]
    assert typed.gpu_count == 4 and typed.typed
    assert typed.type_of_gpu(3).cost_per_hour == 3.0
    large = typed.models[1]
    assert typed.options(large) == (Option(2, 50, "A"), Option(2, 100, "A"), Option(2, 50, "B"), Option(2, 100, "B"))
    assert typed.curve(large, Option(2, 100, "B")).ttfts_ms == (30.0, 40.0)  # A's (60, 80) halved


@pytest.mark.parametrize("placement", ["patterns", "per-gpu"])
def test_hand_derived_quality_optimum(typed, placement):
    plan = solve_exact(typed, placement=placement)
    assert plan.quality == pytest.approx(BEST, abs=1e-6) and plan.solver.status == "optimal"
    assert any(option.gpu_type == "B" for option in plan.setup)
    assert evaluate_plan(typed, plan.to_dict()).consistent


def test_enumerate_agrees_by_hand(typed):
    plan = solve_enumerate(typed)
    assert plan.quality == pytest.approx(BEST, abs=1e-6)
    assert evaluate_plan(typed, plan.to_dict()).consistent


def test_plan_names_each_models_type_and_its_gpus(typed, tmp_path):
    plan = solve_exact(typed)
    entries = plan.to_dict()["models"]
    for entry, option in zip(entries, plan.setup):
        assert entry["gpu_type"] == option.gpu_type
        assert set(entry["gpus"]) <= set(typed.gpu_type_named(option.gpu_type).gpus)
    assert plan.to_dict()["cost_per_hour"] == evaluate_plan(typed, plan.to_dict()).cost_per_hour
    again = read_plan(write_plan(plan, tmp_path / "plan.json"), typed)
    assert again.setup == plan.setup and again.cost_per_hour == plan.cost_per_hour


def test_an_untyped_plan_is_unchanged(tiny):
    plan = solve_exact(tiny).to_dict()
    assert "cost_per_hour" not in plan and "objective" not in plan
    assert all("gpu_type" not in entry for entry in plan["models"])


def test_mip_places_shards_only_on_their_type(typed):
    m = build_joint_mip(typed, placement="per-gpu")
    assert all(g in typed.gpu_type_named(slot[3]).gpus for slot in m.PLACES for g in [slot[4]])
    assert len(m.gpu_order) == 2  # one per pair of neighbouring GPUs of one type
    patterns = build_joint_mip(typed)
    assert len(patterns.gpu_count) == 2  # (3p) per type
    assert {t.name for t in patterns.pattern_types} == {"A", "B"}


@pytest.mark.parametrize("seed", [0, 1, 3, 5, 6, 7, 8, 9, 10, 11])
def test_exact_equals_enumerate_on_random_typed_instances(tmp_path, seed):
    instance = load_instance(write_random_typed_instance(tmp_path / "r", seed))
    try:
        reference = solve_enumerate(instance)
    except Infeasible:
        with pytest.raises(Infeasible):
            solve_exact(instance)
        return
    for placement in ("patterns", "per-gpu"):
        plan = solve_exact(instance, placement=placement)
        assert plan.quality == pytest.approx(reference.quality, rel=1e-6, abs=1e-6)
        assert evaluate_plan(instance, plan.to_dict()).consistent
    assert evaluate_plan(instance, reference.to_dict()).consistent


def test_heuristic_prunes_and_packs_per_type(typed):
    search = prune_setups(typed, 0.0)
    assert search.considered == search.over_compute + search.under_floor + search.unpackable + len(search.kept)
    for setup, placement in search.kept:
        for option, gpus in zip(setup, placement):
            assert set(gpus) <= set(typed.gpu_type_named(option.gpu_type).gpus)
    # both models at tp2 on A: first-fit decreasing puts each model's two shards on A's GPUs 0 and 1
    assert first_fit_decreasing(typed, (Option(2, 50, "A"), Option(2, 50, "A"))) == ((0, 1), (0, 1))
    plan = solve_heuristic(typed, utilization_floor=0.0, progress=False)
    assert plan.quality <= BEST + 1e-9 and evaluate_plan(typed, plan.to_dict()).consistent


@pytest.mark.parametrize("name", ["equal-split", "size-proportional", "isolated"])
def test_baselines_on_types(typed, name):
    plan = solve_baseline(typed, name)
    assert plan.quality <= BEST + 1e-9 and evaluate_plan(typed, plan.to_dict()).consistent


def test_evaluator_checks_the_type_of_every_gpu(typed):
    plan = solve_exact(typed).to_dict()
    large = plan["models"][1]
    wrong = "A" if large["gpu_type"] == "B" else "B"
    moved = json.loads(json.dumps(plan))
    moved["models"][1]["gpus"] = list(typed.gpu_type_named(wrong).gpus)
    assert any(v.rule == "(2) shards" for v in evaluate_plan(typed, moved).violations)
    untyped = json.loads(json.dumps(plan))
    del untyped["models"][1]["gpu_type"]
    assert any(v.rule == "(1) deployment" for v in evaluate_plan(typed, untyped).violations)


def test_evaluator_memory_is_the_gpus_types(typed):
    # B with 12 GB: large's 12 GB shard fits alone; small's 6 GB beside it breaks (3) on B only
    small = typed.gpu_type_named("B")
    tight = dataclasses.replace(typed, gpu_types=(typed.gpu_types[0], dataclasses.replace(small, memory_gb=12.0)))
    plan = {"models": [{"name": "small", "deployed": True, "tp": 1, "mps_pct": 50, "gpu_type": "B", "gpus": [2],
                        "share": 0.5},
                       {"name": "large", "deployed": True, "tp": 2, "mps_pct": 50, "gpu_type": "B", "gpus": [2, 3],
                        "share": 0.5}]}
    memory = [v for v in evaluate_plan(tight, plan).violations if v.rule == "(3) memory"]
    assert [v.where for v in memory] == ["GPU 2"] and memory[0].amount == pytest.approx(6.0)


def test_gpu_map_groups_gpus_by_type(typed):
    memory, compute = plot_gpu_map(typed, solve_exact(typed)).axes
    assert [label.get_text() for label in memory.get_xticklabels()] == ["0\nA", "1\nA", "2\nB", "3\nB"]
    assert len(memory.collections) == 2  # a capacity line per type


def test_export_names_types_and_the_global_numbering(typed, tmp_path):
    plan = solve_exact(typed)
    script = write_export(typed, plan, tmp_path / "export")[0].read_text()
    assert "global numbering, type by type as listed (0-1 A, 2-3 B)" in script
    for option, gpus in zip(plan.setup, plan.models.gpus):
        assert f"on {option.gpu_type} GPU(s) {', '.join(map(str, gpus))}" in script


BAD_TYPES = {
    "unknown type in profiles": ("profiles.csv", "small,1,50,5,10,B", "small,1,50,5,10,C",
                                 ["profiles.csv: line 10: column 'gpu_type'", "unknown GPU type 'C'"]),
    "count 0": ("instance.toml", "count = 2\nmemory_gb = 18\ncost_per_hour = 3.0",
                "count = 0\nmemory_gb = 18\ncost_per_hour = 3.0", ["field 'cluster.gpu_types[1].count'",
                                                                      "0 is not a positive integer"]),
    "duplicate type name": ("instance.toml", 'name = "B"', 'name = "A"',
                            ["field 'cluster.gpu_types[1].name'", "listed twice"]),
    "missing gpu_type column": ("profiles.csv", "mean_ttft_ms,gpu_type", "mean_ttft_ms,type",
                                ["profiles.csv: column 'gpu_type' is missing", "2 GPU types"]),
    "gpu_count with types": ("instance.toml", "[cluster]\n", "[cluster]\ngpu_count = 4\n",
                             ["field 'cluster.gpu_count'", "not given with cluster.gpu_types"]),
    "memory not a number": ("instance.toml", "memory_gb = 18\ncost_per_hour = 1.0", 'memory_gb = "a lot"\n'
                            "cost_per_hour = 1.0", ["field 'cluster.gpu_types[0].memory_gb'", "not a number"]),
    "negative cost": ("instance.toml", "cost_per_hour = 3.0", "cost_per_hour = -3.0",
                      ["field 'cluster.gpu_types[1].cost_per_hour'", "not a non-negative"]),
    "unknown key in a type": ("instance.toml", "cost_per_hour = 3.0", "cost_per_hour = 3.0\nprice = 2",
                              ["field 'cluster.gpu_types[1].price'", "unknown key"]),
    "misspelt gpu_types": ("instance.toml", "[[cluster.gpu_types]]", "[[cluster.gpu_typs]]",
                           ["field 'cluster.gpu_typs'", "did you mean 'gpu_types'?"]),
    "types not tables": ("instance.toml", "[cluster]\n", '[cluster]\ngpu_types = "A100"\n', []),
}


@pytest.mark.parametrize("case", sorted(BAD_TYPES))
def test_bad_gpu_types_are_named_in_one_line(typed_copy, capsys, case):
    filename, old, new, words = BAD_TYPES[case]
    path = typed_copy / filename
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(InputError) as err:
        load_instance(typed_copy)
    message = str(err.value)
    assert "\n" not in message and filename in message
    assert all(word in message for word in words), message
    assert solve.main([str(typed_copy), "--method", "exact", "--quiet"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "Traceback" not in stderr


def test_the_shipped_mixed_instance_loads_with_its_types():
    instance = load_instance(REPO / "data" / "mixed-a100-h100")
    assert [(t.name, t.gpus, t.cost_per_hour) for t in instance.types] == [
        ("A100-80GB", range(0, 2), 2.79), ("H100-80GB", range(2, 4), 3.99)]
    assert {o.gpu_type for m in instance.models for o in instance.options(m)} == {"A100-80GB", "H100-80GB"}
