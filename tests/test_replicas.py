"""Replicas (SPEC 4.5): a tiny case where two replicas beat one, worked out by hand; exact = enumerate on seeded
random instances with replicas (and with a tail bound); every plan passes the evaluator and its published routing
reproduces it; bad input in one line; export and router with replicas."""

import subprocess
import sys

import pytest

import solve
from conftest import DATA, edit
from models.evaluation.evaluate import evaluate_plan
from models.methods.brute_force import solve_enumerate
from models.methods.exact import solve_exact
from models.problem.instance import InputError, load_instance
from models.problem.moves import Replanning, running_shards
from models.problem.plan import read_plan, write_plan
from models.output.export import servers, write_export
from models.output.plots import latency_panels, replica_shards
from models.output.router import WeightedSplit, build_router
from models.problem.realized import realized_routing
from random_instances import outcome, write_random_instance
from standin_vllm import serve_in_thread
from test_router import running
from test_tail import add_p99

# Two GPUs of 16 GB, one option tp1/mps50 (two shards fill a GPU's compute). 'cheap' (4 + 1 = 5 GB a shard) is
# optional, flat at 10 ms up to 8 rps; 'strong' (6 + 2 = 8 GB) sustains 4 rps at 20 ms. At 8 rps one replica of
# strong carries at most 4 / 8 = 0.5 of the traffic. Strong beats cheap on every prompt, by 0.4, 0.3, 0.2, 0.1:
# * max_replicas = 1: strong takes p1 and p2 (share 0.5), cheap p3 and p4: Q = (0.9 + 0.8 + 0.5 + 0.5) / 4 = 0.675;
# * max_replicas = 2: two replicas carry up to 1.0: strong takes all, Q = (0.9 + 0.8 + 0.7 + 0.6) / 4 = 0.75, each
#   replica at its capacity 0.5 (they must add up to 1), mean TTFT 2 x 0.5 x 20 = 20 ms <= 100.
TOML = """name = "two-replicas"
[cluster]
gpu_count = 2
gpu_memory_gb = 16
[workload]
arrival_rate_rps = 8.0
slo_mean_ttft_ms = 100.0
[setup_options]
tp = [1]
mps_pct = [50]
[[models]]
name = "cheap"
weights_gb = 4
kv_cache_gb = 1
required = false
[[models]]
name = "strong"
weights_gb = 6
kv_cache_gb = 2
max_replicas = 2
[files]
profiles = "profiles.csv"
scores = "scores.csv"
"""
PROFILES = "model,tp,mps_pct,rate_rps,mean_ttft_ms\ncheap,1,50,2,10\ncheap,1,50,8,10\nstrong,1,50,4,20\n"
SCORES = "prompt_id,cheap,strong\np1,0.5,0.9\np2,0.5,0.8\np3,0.5,0.7\np4,0.5,0.6\n"


@pytest.fixture
def two_replicas(tmp_path):
    (tmp_path / "instance.toml").write_text(TOML)
    (tmp_path / "profiles.csv").write_text(PROFILES)
    (tmp_path / "scores.csv").write_text(SCORES)
    return tmp_path


def assert_returned(instance, plan):
    """What solve.py requires of a plan: the evaluator agrees and the published routing reproduces it."""
    evaluation = evaluate_plan(instance, plan.to_dict())
    assert evaluation.consistent, (evaluation.violations, evaluation.mismatches)
    realized = realized_routing(instance, plan)
    assert realized.reproduces_plan and realized.deployable


@pytest.mark.parametrize("method", [solve_exact, solve_enumerate])
def test_two_replicas_beat_one(two_replicas, method):
    instance = load_instance(two_replicas)
    plan = method(instance)
    assert plan.quality == pytest.approx(0.75, abs=1e-6)
    entry = plan.to_dict()["models"][1]
    assert [r["share"] for r in entry["replicas"]] == pytest.approx([0.5, 0.5], abs=1e-9)
    assert entry["share"] == pytest.approx(1.0) and entry["load_rps"] == pytest.approx(8.0)
    assert (entry["tp"], entry["mps_pct"], entry["gpus"]) == (1, 50, entry["replicas"][0]["gpus"])
    assert plan.mean_ttft_ms == pytest.approx(20.0)
    assert_returned(instance, plan)
    edit(two_replicas / "instance.toml", "max_replicas = 2", "max_replicas = 1")
    single = method(load_instance(two_replicas))
    assert single.quality == pytest.approx(0.675, abs=1e-6)
    assert "replicas" not in single.to_dict()["models"][1]


# ---------------------------------------------------------------- random instances

SEEDS = range(6)


def with_replicas(folder):
    """The first two models may run up to two replicas; the arrival rate 1.5 times as high, so that a second
    one can pay."""
    for name in ("m0", "m1"):
        edit(folder / "instance.toml", f'name = "{name}"\n', f'name = "{name}"\nmax_replicas = 2\n')
    text = (folder / "instance.toml").read_text()
    rate = text.split("arrival_rate_rps = ")[1].split("\n")[0]
    edit(folder / "instance.toml", f"arrival_rate_rps = {rate}", f"arrival_rate_rps = {1.5 * float(rate):.2f}")
    return folder


@pytest.fixture(scope="module")
def random_plans(tmp_path_factory):
    """seed -> (instance, exact's plan or reason, enumerate's), with replicas, and with a p99 bound as well."""
    root = tmp_path_factory.mktemp("replicas")
    found = {}
    for seed in SEEDS:
        for tail in (False, True):
            folder = with_replicas(write_random_instance(root / f"{seed}-{tail}", seed))
            try:
                instance = load_instance(add_p99(folder, seed) if tail else folder)
            except InputError:  # the bound leaves a model no option
                continue
            found[seed, tail] = instance, outcome(solve_exact, instance), outcome(solve_enumerate, instance)
    return found


@pytest.mark.parametrize("tail", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_exact_equals_enumerate_with_replicas(random_plans, seed, tail):
    if (seed, tail) not in random_plans:
        pytest.skip("the bound leaves a model no option (a loader error)")
    instance, plan, reference = random_plans[seed, tail]
    if isinstance(reference, str):
        assert isinstance(plan, str)
        return
    assert plan.quality == pytest.approx(reference.quality, abs=1e-6)
    assert_returned(instance, plan)
    assert_returned(instance, reference)


def test_random_instances_use_replicas(random_plans):
    """Most optimal plans run two replicas of m0 or m1 (seven of the nine feasible, at these seeds)."""
    plans = [plan for _, plan, _ in random_plans.values() if not isinstance(plan, str)]
    assert sum(max(len(plan.replicas[0]), len(plan.replicas[1])) == 2 for plan in plans) >= 6


# ---------------------------------------------------------------- export and router


def test_export_writes_one_server_per_replica(two_replicas, tmp_path):
    instance = load_instance(two_replicas)
    plan = solve_exact(instance)
    found = servers(instance, plan)
    strong = [s for s in found if s.name == "strong"]
    assert [s.label for s in strong] == ["strong#1", "strong#2"]
    assert [s.share for s in strong] == pytest.approx([0.5, 0.5]) and len({s.port for s in found}) == len(found)
    assert sorted(g for s in strong for g in s.gpus) == [0, 1]
    write_export(instance, plan, tmp_path / "export", activation_gb=0)
    script = (tmp_path / "export" / "launch.sh").read_text()
    assert script.count("--served-model-name strong") == 2 and "start 'strong#1'" in script


def test_weighted_split_follows_the_shares():
    """Smooth weighted round-robin: weights 3:1 give a b a a, a b a a, ...; after any n picks a replica has
    n w_r / W of them to within one."""
    split = WeightedSplit(["a", "b"], [0.3, 0.1])
    picks = [split.next() for _ in range(400)]
    assert picks[:8] == ["a", "b", "a", "a", "a", "b", "a", "a"]
    for n in range(1, 401):
        assert abs(picks[:n].count("a") - 0.75 * n) <= 1


def test_router_splits_a_model_over_its_replicas(two_replicas):
    """Every prompt goes to strong (price rule); its requests alternate between its two replicas' servers."""
    instance = load_instance(two_replicas)
    stand_ins = {label: serve_in_thread() for label in ("cheap", "strong#1", "strong#2")}
    try:
        roots = {label: f"http://127.0.0.1:{server.server_address[1]}" for label, server in stand_ins.items()}
        router = build_router(instance, solve_exact(instance), roots)
        with running(router) as client:
            for _ in range(10):
                for prompt_id in instance.prompt_ids:
                    response = client.post("/v1/completions", json={"prompt": "x", "prompt_id": prompt_id})
                    assert response.status_code == 200
        assert [len(stand_ins[label].bodies) for label in ("cheap", "strong#1", "strong#2")] == [0, 20, 20]
        assert {body["model"] for body in stand_ins["strong#2"].bodies} == {"strong"}
    finally:
        for server in stand_ins.values():
            server.shutdown()
            server.server_close()


# ---------------------------------------------------------------- bad input, plan files


@pytest.mark.parametrize("value", ["0", "-1", "1.5", '"two"', "true"])
def test_bad_max_replicas_is_named(two_replicas, value, capsys):
    edit(two_replicas / "instance.toml", "max_replicas = 2", f"max_replicas = {value}")
    assert solve.main([str(two_replicas), "--method", "exact", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "instance.toml: field 'models[1].max_replicas'" in err


def test_a_model_named_as_a_replica_is_named(two_replicas):
    edit(two_replicas / "instance.toml", 'name = "cheap"', 'name = "strong#2"')
    edit(two_replicas / "scores.csv", "prompt_id,cheap", "prompt_id,strong#2")
    edit(two_replicas / "profiles.csv", "cheap,1,50,2", "strong#2,1,50,2")
    edit(two_replicas / "profiles.csv", "cheap,1,50,8", "strong#2,1,50,8")
    with pytest.raises(InputError, match=r"field 'models\[0\].name': 'strong#2' is the name of a replica of model "
                                         r"'strong'"):
        load_instance(two_replicas)


def test_a_plan_file_with_replicas_reads_back(two_replicas, tmp_path):
    """write_plan then read_plan (what --from does): the same replicas, GPUs, shares and numbers."""
    instance = load_instance(two_replicas)
    plan = solve_exact(instance)
    write_plan(plan, tmp_path / "plan.json")
    again = read_plan(tmp_path / "plan.json", instance)
    assert again.replicas == plan.replicas and again.replica_placement == plan.replica_placement
    assert [list(s) for s in again.replica_shares] == [pytest.approx(list(s)) for s in plan.replica_shares]
    assert again.mean_ttft_ms == pytest.approx(plan.mean_ttft_ms)


def test_replanning_keeps_the_replicas_at_a_high_move_cost(two_replicas, tmp_path):
    """From exact's own plan, a move cost of 1 keeps every shard: 0 moves, the same quality."""
    instance = load_instance(two_replicas)
    plan = solve_exact(instance)
    shards = running_shards(instance.model_names, plan.replicas, plan.replica_placement)
    again = solve_exact(instance, replanning=Replanning(shards, 1.0))
    assert again.changes.moves == 0 and again.quality == pytest.approx(0.75, abs=1e-6)
    assert_returned(instance, again)


def test_the_fleet_instances_are_what_their_script_writes(tmp_path):
    """data/make_fleet_instances.py rewrites data/fleet-32xA100 and -drift byte for byte."""
    assert subprocess.run([sys.executable, str(DATA / "make_fleet_instances.py"), "--out", str(tmp_path)],
                          capture_output=True).returncode == 0
    for name in ("fleet-32xA100", "fleet-32xA100-drift"):
        for file in ("instance.toml", "profiles.csv", "scores.csv"):
            assert (tmp_path / name / file).read_bytes() == (DATA / name / file).read_bytes(), (name, file)
    fleet, drift = load_instance(DATA / "fleet-32xA100"), load_instance(DATA / "fleet-32xA100-drift")
    assert drift.name == fleet.name and drift.arrival_rate_rps == pytest.approx(1.3 * fleet.arrival_rate_rps)
    assert fleet.has_replicas and fleet.tail_slo_ms == {"p99": 2500.0}


def test_the_evaluator_checks_each_replica(two_replicas):
    """Moving both replicas' shares onto the first overloads it (8 rps > r_K 4); a third replica is one too many."""
    instance = load_instance(two_replicas)
    plan = solve_exact(instance).to_dict()
    strong = plan["models"][1]
    strong["replicas"][0]["share"], strong["replicas"][1]["share"] = 1.0, 0.0
    rules = {v.rule for v in evaluate_plan(instance, plan).violations}
    assert "(5) capacity" in rules
    strong["replicas"] += [dict(strong["replicas"][1])]
    assert "(4.5) replicas" in {v.rule for v in evaluate_plan(instance, plan).violations}


def test_plots_draw_each_replica(two_replicas):
    """A latency panel per replica of strong, and a GPU-map box per replica shard."""
    instance = load_instance(two_replicas)
    plan = solve_exact(instance)
    assert [p.title for p in latency_panels(plan)] == ["cheap", "strong #1", "strong #2"]
    assert sorted((s.name, s.gpus) for s in replica_shards(plan) if s.name == "strong") == [
        ("strong", (0,)), ("strong", (1,))]


def test_replicas_with_gpu_types_are_refused(tmp_path):
    import shutil
    folder = tmp_path / "mixed"
    shutil.copytree(DATA / "mixed-a100-h100", folder)
    edit(folder / "instance.toml", 'name = "wizardlm-13b"\n', 'name = "wizardlm-13b"\nmax_replicas = 2\n')
    with pytest.raises(InputError, match=r"instance.toml: field 'models\[1\].max_replicas': max_replicas > 1 is not "
                                         r"supported with cluster.gpu_types or the cost objective"):
        load_instance(folder)
