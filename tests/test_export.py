"""Deployment export: launch.sh run for real with stand-ins for vLLM and the MPS control daemon, the memory
fractions, the LiteLLM configuration, and the plans it refuses."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest
import yaml

from conftest import DATA, REPO, edit, wait_for
from models.methods.exact import solve_exact
from models.methods.greedy import solve_quality_greedy
from models.output.export import (MAX_MODEL_LEN, MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS, ExportError,
                                  check_deployable, write_export)
from models.problem.instance import InputError, Option, load_instance
from models.problem.plan import SolverReport, build_plan, read_plan
from models.problem.published import PublishedRouting
from models.profiling.server import MAX_BATCH
from models.profiling.workload import CONTEXT_WINDOW
from standin_vllm import free_ports

# tiny's toy GPUs have 18 GB and setup C fills 16 GB of each (data/tiny/README.md): a 1 GB allowance
# per shard fits exactly, the default 2 GB does not.
TINY_ALLOWANCE_GB = 1.0
CHECKPOINTS = {"small": "org/small-chat-v1", "large": "org/large-chat-v2"}
BOUND_S = 60  # every wait on a process or a file gives up after this long (a loaded 2-core machine took over 30)


@pytest.fixture(scope="module")
def tiny_plan(tiny):
    return solve_exact(tiny)


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """data/tiny with a checkpoint for each model (SPEC 4.2), and its exact plan (setup C)."""
    folder = tmp_path_factory.mktemp("named") / "tiny"
    subprocess.run(["cp", "-r", str(DATA / "tiny"), str(folder)], check=True)
    for name, checkpoint in CHECKPOINTS.items():
        edit(folder / "instance.toml", f'name = "{name}"\n', f'name = "{name}"\ncheckpoint = "{checkpoint}"\n')
    instance = load_instance(folder)
    return instance, solve_exact(instance)


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """A folder with stand-ins for `vllm` (tests/standin_vllm.py) and `nvidia-cuda-mps-control` (which, like
    the real one, answers only when the daemon's socket is in CUDA_MPS_PIPE_DIRECTORY), and a pipe
    directory holding such a socket."""
    folder = tmp_path_factory.mktemp("standins")
    bin_dir, pipe_dir = folder / "bin", folder / "mps"
    bin_dir.mkdir()
    pipe_dir.mkdir()
    (bin_dir / "vllm").write_text(f'#!/bin/sh\nexec {sys.executable} {REPO / "tests" / "standin_vllm.py"} "$@"\n')
    (bin_dir / "nvidia-cuda-mps-control").write_text(
        '#!/bin/sh\n[ -S "$CUDA_MPS_PIPE_DIRECTORY/control" ] || '
        '{ echo "Cannot find MPS control daemon process"; exit 1; }\ncat > /dev/null\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(str(pipe_dir / "control"))
    yield bin_dir, pipe_dir
    daemon.close()


@contextmanager
def launched(script, standins, records, **env):
    """launch.sh running with the stand-ins; on leaving, stopped if it still runs (SIGTERM, then SIGKILL)."""
    bin_dir, pipe_dir = standins
    records.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir),
           "VLLM_STANDIN_DIR": str(records), "HEALTH_POLL_S": "0.1", "STOP_GRACE_S": "5", **env}
    run = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.terminate()
            try:
                run.communicate(timeout=BOUND_S)
            except subprocess.TimeoutExpired:
                run.kill()
                run.communicate()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def records_of(folder) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# ---------------------------------------------------------------- launch.sh, run


def test_launch_starts_the_servers_one_at_a_time_and_ctrl_c_stops_them(named, standins, tmp_path):
    instance, plan = named
    base = free_ports(2)
    script = write_export(instance, plan, tmp_path / "export", TINY_ALLOWANCE_GB, base_port=base)[0]
    records = tmp_path / "records"
    with launched(script, standins, records) as run:
        assert wait_for(lambda: len(list(records.glob("*.healthy"))) == 2, BOUND_S)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=BOUND_S)
    assert run.returncode == 130 and "interrupted" in err
    started = records_of(records)
    # setup C of data/tiny/README.md: both models tp2 at MPS 50% on GPUs 0 and 1, in the instance's order
    # on consecutive ports; (4 + 1) / 18 and (12 + 1) / 18 of each GPU, rounded down
    for k, (name, fraction) in enumerate([("small", "0.277"), ("large", "0.722")]):
        argv, env = started[name]["argv"], started[name]["env"]
        assert argv[:2] == ["serve", CHECKPOINTS[name]] and flag(argv, "--served-model-name") == name
        assert flag(argv, "--tensor-parallel-size") == "2" and flag(argv, "--port") == str(base + k)
        assert flag(argv, "--gpu-memory-utilization") == fraction
        assert flag(argv, "--max-num-batched-tokens") == "4096" and flag(argv, "--max-num-seqs") == "256"
        assert flag(argv, "--max-model-len") == "4096" and "--enable-chunked-prefill=False" in argv
        assert env == {"CUDA_VISIBLE_DEVICES": "0,1", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50",
                       "CUDA_MPS_PIPE_DIRECTORY": str(standins[1]), "VLLM_USE_V1": "0"}
        assert f"{name} on port {base + k}" in (script.parent / "logs" / f"{name}.log").read_text()
    # one at a time: large started only after small had answered /health
    assert started["small"]["healthy_before"] == [] and started["large"]["healthy_before"] == ["small"]
    assert wait_for(lambda: not any(alive(r["pid"]) for r in started.values()), BOUND_S)


def test_a_server_that_never_becomes_healthy_stops_the_others(named, standins, tmp_path):
    instance, plan = named
    script = write_export(instance, plan, tmp_path / "export", TINY_ALLOWANCE_GB, base_port=free_ports(2))[0]
    records = tmp_path / "records"
    with launched(script, standins, records, VLLM_STANDIN_NEVER_HEALTHY="large", HEALTH_TIMEOUT_S="2") as run:
        out, err = run.communicate(timeout=BOUND_S)
    assert run.returncode == 1
    assert "server large did not answer /health within 2 s" in err
    assert (records / "small.healthy").exists()  # small had started and was healthy; it is stopped
    assert wait_for(lambda: not any(alive(r["pid"]) for r in records_of(records).values()), BOUND_S)


def test_a_server_that_exits_is_named_with_its_status(named, standins, tmp_path):
    instance, plan = named
    script = write_export(instance, plan, tmp_path / "export", TINY_ALLOWANCE_GB, base_port=free_ports(2))[0]
    records = tmp_path / "records"
    with launched(script, standins, records, VLLM_STANDIN_EXIT="small") as run:
        out, err = run.communicate(timeout=BOUND_S)
    assert run.returncode == 1 and "server small exited with status 3 before it answered /health" in err
    assert set(records_of(records)) == {"small"}  # large never started


def test_launch_refuses_to_start_without_the_mps_daemon(named, standins, tmp_path):
    instance, plan = named
    script = write_export(instance, plan, tmp_path / "export", TINY_ALLOWANCE_GB, base_port=free_ports(2))[0]
    empty = tmp_path / "no-daemon"
    empty.mkdir()
    records = tmp_path / "records"
    with launched(script, standins, records, CUDA_MPS_PIPE_DIRECTORY=str(empty)) as run:
        out, err = run.communicate(timeout=BOUND_S)
    assert run.returncode == 1
    assert f"no MPS control daemon answers in {empty}" in err and "nvidia-cuda-mps-control -d" in err
    assert records_of(records) == {}


def test_scheduler_flags_are_those_of_the_latency_curves():
    # docs/latency.md: the token budget is the context window, 256 sequences
    assert (MAX_NUM_BATCHED_TOKENS, MAX_NUM_SEQS, MAX_MODEL_LEN) == (CONTEXT_WINDOW, MAX_BATCH, CONTEXT_WINDOW)


# ---------------------------------------------------------------- memory


def test_the_default_activation_allowance_overflows_tinys_gpus(tiny, tiny_plan, tmp_path):
    # GPU 0 holds a 4 GB and a 12 GB shard: 16 + 2 x 2 = 20 GB > 18 GB
    with pytest.raises(ExportError, match=r"^GPU 0: the shards of small, large need 20.00 GB .* 18 GB"):
        write_export(tiny, tiny_plan, tmp_path / "export")
    assert not (tmp_path / "export").exists()


# ---------------------------------------------------------------- the other files


def test_litellm_config_lists_the_servers(tiny, tiny_plan, tmp_path):
    base = free_ports(2)
    files = {p.name: p for p in write_export(tiny, tiny_plan, tmp_path, TINY_ALLOWANCE_GB, base_port=base)}
    config = yaml.safe_load(files["litellm-config.yaml"].read_text())
    assert config["model_list"] == [
        {"model_name": name, "litellm_params": {"model": f"hosted_vllm/{name}",
                                                "api_base": f"http://127.0.0.1:{base + k}/v1"}}
        for k, name in enumerate(["small", "large"])]
    assert "cannot apply the plan's routing" in files["litellm-config.yaml"].read_text()
    assert "per-prompt prices" in files["README.md"].read_text()


def test_the_exported_plan_reads_back_with_its_routing(tiny, tiny_plan, tmp_path):
    plan_file = write_export(tiny, tiny_plan, tmp_path, TINY_ALLOWANCE_GB)[1]
    back = read_plan(plan_file, tiny)
    assert back.shares == pytest.approx(tiny_plan.shares, abs=1e-12)
    assert list(back.prices) == list(tiny_plan.prices)
    assert [(s.prompt_id, list(s.fractions)) for s in back.routing.splits] == \
        [(s.prompt_id, list(s.fractions)) for s in tiny_plan.routing.splits]


def test_an_undeployed_model_gets_no_server(tiny, tmp_path):
    # With `large` optional, everything on `small` tp1 mps100 on GPU 0 is a plan: H = 1 x 15 = 15 ms
    # <= 60 ms, quality (0.9 + 0.5 + 0.2 + 0.6) / 4 = 0.55 (data/tiny/README.md); 6 + 2 GB of 18.
    models = (tiny.models[0], dataclasses.replace(tiny.models[1], required=False))
    instance = dataclasses.replace(tiny, models=models)
    plan = build_plan(instance, "by-hand", (Option(1, 100), None), ((0,), ()), (1.0, 0.0), 0.55,
                      SolverReport("heuristic", 0.0))
    files = {p.name: p for p in write_export(instance, plan, tmp_path)}
    assert "start small " in files["launch.sh"].read_text() and "start large " not in files["launch.sh"].read_text()
    assert [m["model_name"] for m in yaml.safe_load(files["litellm-config.yaml"].read_text())["model_list"]] == [
        "small"]
    assert "Not deployed (no server, no traffic): large." in files["README.md"].read_text()


# ---------------------------------------------------------------- plans that are not deployments


def test_a_plan_that_breaks_the_target_is_not_exported(tiny, tmp_path):
    # quality-greedy on tiny sends p1-p3 to `large` (share 0.75), which only mps50 can place next to
    # `small`: H_L(0.75) = 40 + 72 x 0.35 / 0.4 = 103 ms, plus 18 x 0.25 = 4.5 ms for `small`: 107.5 ms > 60 ms.
    plan = solve_quality_greedy(tiny)
    assert plan.solver.status == "infeasible" and plan.mean_ttft_ms == pytest.approx(107.5)
    with pytest.raises(ExportError, match="breaks the target"):
        write_export(tiny, plan, tmp_path / "export", TINY_ALLOWANCE_GB)
    assert not (tmp_path / "export").exists()


def test_a_plan_whose_published_routing_breaks_the_target_is_not_deployable(tiny, tiny_plan):
    # price gap 0.3 instead of 0.4 sends p2 (gain 0.4) wholly to large: shares 1/2, 1/2 and a mean TTFT of
    # 18 x 0.5 + 40 + 180 x (0.5 - 0.4) = 67 ms > 60 ms (tests/test_realized.py)
    corrupted = dataclasses.replace(tiny_plan, routing=PublishedRouting.of_prices([0.0, 0.3], tiny.scores))
    with pytest.raises(ExportError, match="not deployable: its published routing breaks the target"):
        check_deployable(tiny, corrupted)


# ---------------------------------------------------------------- checkpoints (SPEC 4.2)


def test_the_paper_instances_name_public_checkpoints():
    models = {m.name: m.served_checkpoint for m in load_instance(DATA / "paper-8xA100").models}
    assert models == {"mistral-7b": "mistralai/Mistral-7B-Instruct-v0.2",
                      "wizardlm-13b": "WizardLMTeam/WizardLM-13B-V1.2",
                      "yi-34b": "01-ai/Yi-34B-Chat", "llama-2-70b": "meta-llama/Llama-2-70b-chat-hf"}


def test_a_checkpoint_that_is_not_a_string_is_rejected(tiny_copy):
    edit(tiny_copy / "instance.toml", 'name = "small"\n', 'name = "small"\ncheckpoint = 7\n')
    with pytest.raises(InputError, match=r"instance.toml: field 'models\[0\].checkpoint': missing or not a "):
        load_instance(tiny_copy)
