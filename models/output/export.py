"""Deployment export: a plan as a script that starts its vLLM servers, a LiteLLM configuration, and a README.

`write_export` writes into one folder:

* `launch.sh`: one vLLM OpenAI-compatible server per deployed model, and per replica of a model with
  several (SPEC 4.5; the server of replica r >= 1 is labelled NAME#r and serves the model's name too)
  (`vllm serve CHECKPOINT
  --served-model-name NAME`, SPEC 4.2), on the plan's GPUs (`CUDA_VISIBLE_DEVICES`) with its
  tensor-parallel degree and MPS compute share (`CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`), its memory
  fraction (below), the scheduler settings the latency curves were made with (docs/latency.md: a
  4,096-token budget per iteration, 256 sequences, no chunked prefill, a 4,096-token context) and a
  port of its own, BASE_PORT + k for the k-th server. It checks that the MPS control daemon
  answers in `CUDA_MPS_PIPE_DIRECTORY`, starts the servers one at a time, each after the one before
  answers `/health` (engines profiling one GPU's memory at once mis-size their KV caches, vLLM
  issue #9198), logs each server to its own file, and on a failure or Ctrl-C stops the servers it
  started.
* `plan.json`: the plan (SPEC 3 and 4.3), for the router: `python solve.py route plan.json --instance DIR`
  serves it on ROUTER_PORT (`models/output/router.py`).
* `litellm-config.yaml`: the deployed models and their servers for a LiteLLM proxy, which can route by
  model name only, not by the plan's per-prompt prices.
* `README.md`: the same for people.

Memory. vLLM's `--gpu-memory-utilization` is the fraction of a GPU's memory one server may use for
its model executor (weights, activations, KV cache), a limit per server (vLLM 0.7.3 engine
arguments). A shard of model i at degree tp gets

    f = (weights_gb / tp + kv_cache_gb + activation_gb) / gpu_memory_gb,   rounded down to 3 decimals,

where activation_gb (ACTIVATION_GB by default) is an allowance for activations, the CUDA context and
CUDA graphs that the planner's memory constraint (3) does not count. On every GPU the shards' needs
must add up to at most gpu_memory_gb, or the export names the GPU and refuses; an instance whose
kv_cache_gb already includes the allowance is exported with activation_gb=0. Rounding down takes at
most 0.001 of the GPU from the allowance. With GPU types (SPEC 4.4) gpu_memory_gb is the memory of the
type the model's option names, and the GPU indices in launch.sh are the plan's global numbering (type by
type in the listed order): on one machine with mixed GPUs they must match the order nvidia-smi shows,
else each index is replaced by its GPU's UUID (docs/deploy.md).

A plan that breaks the mean-TTFT target, has a deployed model without a price, or whose published
routing breaks the target or a capacity on the instance's own prompts is not a deployment:
`ExportError`, raised by `check_deployable`, which the router uses too.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from models.problem.instance import Instance
from models.problem.plan import Plan, write_plan
from models.problem.realized import check_priced, realized_routing

VLLM_VERSION = "0.7.3"  # the last release whose default engine is V0, the scheduler the curves model
BASE_PORT = 8000  # the k-th deployed model's server listens on BASE_PORT + k
ROUTER_PORT = 9000  # `solve.py route` listens here by default, clear of the servers' ports
HOST = "127.0.0.1"  # where the servers listen and the router finds them
ACTIVATION_GB = 2.0  # per shard: activations, CUDA context and CUDA graphs, beyond weights and KV cache
FRACTION_DIGITS = 3
# The scheduler the latency curves assume (docs/latency.md; models/profiling/server.py and workload.py)
MAX_NUM_BATCHED_TOKENS = 4096  # prompt tokens per iteration
MAX_NUM_SEQS = 256  # requests per batch
MAX_MODEL_LEN = 4096  # context window
MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"  # NVIDIA's default for CUDA_MPS_PIPE_DIRECTORY
HEALTH_TIMEOUT_S = 1800  # launch.sh waits this long for a server's /health (loading 140 GB of weights is slow)


class ExportError(ValueError):
    """The plan cannot be deployed; the message (one line) says why."""


@dataclass(frozen=True)
class ModelServer:
    """One vLLM server: a deployed model on its GPUs."""

    name: str
    checkpoint: str
    tp: int
    mps_pct: int
    gpu_type: str  # "" without GPU types
    gpus: tuple[int, ...]
    port: int
    need_gb: float  # per shard: weights / tp + KV-cache reserve + activation allowance
    memory_fraction: float
    share: float
    load_rps: float
    price: float
    replica: int = 0  # SPEC 4.5: 1, 2, ... for the replicas of a model with several; 0 for a model with one

    @property
    def label(self) -> str:
        """The server's name in logs, the launch script and the router's upstreams: NAME, or NAME#r for replica r."""
        return f"{self.name}#{self.replica}" if self.replica else self.name

    @property
    def url(self) -> str:
        """The server's root; its OpenAI API is under /v1."""
        return f"http://{HOST}:{self.port}"


def check_deployable(instance: Instance, plan: Plan) -> None:
    """`ExportError` unless the plan meets the target with a price for every deployed model and its published
    routing (SPEC 4.3), applied to the instance's prompts, keeps the target and every capacity."""
    if plan.solver.status == "infeasible" or not plan.slo_met:
        raise ExportError(
            f"the {plan.method} plan breaks the target (predicted mean TTFT {plan.mean_ttft_ms:.2f} ms > "
            f"{plan.slo_ms:g} ms, status {plan.solver.status}); it is a reference, not a deployment")
    try:
        check_priced(plan)
    except ValueError as err:
        raise ExportError(str(err)) from None
    refusal = realized_routing(instance, plan).refusal()
    if refusal:
        raise ExportError(f"the {plan.method} plan is not deployable: {refusal}")


def servers(instance: Instance, plan: Plan, activation_gb: float = ACTIVATION_GB,
            base_port: int = BASE_PORT) -> list[ModelServer]:
    """A server per replica (SPEC 4.5) of the deployed models, in the instance's order, on ports base_port,
    base_port + 1, ..."""
    found = []
    scale = 10 ** FRACTION_DIGITS
    for model, options, held, shares, price in zip(instance.models, plan.replicas, plan.replica_placement,
                                                   plan.replica_shares, plan.prices):
        for r, (option, gpus, share) in enumerate(zip(options, held, shares)):
            need_gb = model.shard_gb(option.tp) + activation_gb
            memory_gb = instance.gpu_type_named(option.gpu_type).memory_gb
            found.append(ModelServer(name=model.name, checkpoint=model.served_checkpoint, tp=option.tp,
                                     mps_pct=option.mps_pct, gpu_type=option.gpu_type,
                                     gpus=tuple(int(g) for g in gpus),
                                     port=base_port + len(found), need_gb=need_gb,
                                     memory_fraction=math.floor(need_gb / memory_gb * scale) / scale,
                                     share=float(share), load_rps=instance.arrival_rate_rps * float(share),
                                     price=float(price) + 0.0,  # + 0.0 turns -0.0 into 0.0
                                     replica=r + 1 if len(options) > 1 else 0))
    return found


def check_memory(instance: Instance, found: list[ModelServer], activation_gb: float) -> None:
    """On every GPU the shards' needs, allowance included, add up to at most the GPU's memory."""
    for gpu in range(instance.gpu_count):
        on_gpu = [s for s in found if gpu in s.gpus]
        total = sum(s.need_gb for s in on_gpu)
        memory_gb = instance.type_of_gpu(gpu).memory_gb
        if total > memory_gb * (1 + 1e-12):
            names = ", ".join(s.label for s in on_gpu)
            raise ExportError(
                f"GPU {gpu}: the shards of {names} need {total:.2f} GB with a {activation_gb:g} GB activation "
                f"allowance each, more than its {memory_gb:g} GB (the planner's memory constraint "
                "(3) counts weights and KV-cache reserve only): raise kv_cache_gb by the allowance and plan "
                "again, then export with activation_gb=0, or export with a smaller allowance")


def serve_flags(server: ModelServer) -> list[list[str]]:
    """`vllm serve` with the plan's setup and the curves' scheduler (flags of vLLM VLLM_VERSION), by line."""
    return [["vllm", "serve", server.checkpoint, "--served-model-name", server.name,
             "--tensor-parallel-size", str(server.tp), "--host", "$HOST", "--port", str(server.port)],
            ["--gpu-memory-utilization", f"{server.memory_fraction:g}",
             "--max-num-batched-tokens", str(MAX_NUM_BATCHED_TOKENS), "--max-num-seqs", str(MAX_NUM_SEQS)],
            ["--enable-chunked-prefill=False", "--max-model-len", str(MAX_MODEL_LEN)]]


def start_line(server: ModelServer) -> str:
    """`start NAME PORT setsid env GPUS MPS vllm serve ...` over a few lines of shell."""
    lines = [["start", server.label, str(server.port), "setsid", "env",
              f"CUDA_VISIBLE_DEVICES={','.join(map(str, server.gpus))}",
              f"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={server.mps_pct}"], *serve_flags(server)]
    return " \\\n    ".join(" ".join('"$HOST"' if w == "$HOST" else shlex.quote(w) for w in line) for line in lines)


LAUNCH_BODY = r"""set -euo pipefail

HOST=__HOST__  # where the servers listen (0.0.0.0 to serve other machines)
HEALTH_TIMEOUT_S="${HEALTH_TIMEOUT_S:-__TIMEOUT__}"  # per server, seconds
HEALTH_POLL_S="${HEALTH_POLL_S:-2}"
STOP_GRACE_S="${STOP_GRACE_S:-30}"  # SIGTERM, then SIGKILL after this long
LOG_DIR="${LOG_DIR:-$(cd "$(dirname "$0")" && pwd)/logs}"
export CUDA_MPS_PIPE_DIRECTORY="${CUDA_MPS_PIPE_DIRECTORY:-__PIPE__}"
export VLLM_USE_V1=0  # the V0 engine and scheduler

names=()
pids=()  # each server runs in a session of its own (setsid): its pid is its process group

stop_servers() {
    local pid deadline=$((SECONDS + STOP_GRACE_S))
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        while kill -0 -- "-$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
}

fail() {
    echo "launch.sh: $1; stopping the servers it started" >&2
    stop_servers
    exit 1
}

trap 'echo "launch.sh: interrupted; stopping the servers" >&2; stop_servers; exit 130' INT TERM HUP

# The MPS compute shares hold only under the MPS control daemon; it listens on the socket `control` in
# CUDA_MPS_PIPE_DIRECTORY and answers get_server_list.
mps_answers() {
    [ -S "$CUDA_MPS_PIPE_DIRECTORY/control" ] && echo get_server_list | nvidia-cuda-mps-control > /dev/null 2>&1
}
if ! mps_answers; then
    echo "launch.sh: no MPS control daemon answers in $CUDA_MPS_PIPE_DIRECTORY (CUDA_MPS_PIPE_DIRECTORY);" \
        "start it with: CUDA_MPS_PIPE_DIRECTORY=$CUDA_MPS_PIPE_DIRECTORY nvidia-cuda-mps-control -d" >&2
    exit 1
fi
for tool in vllm curl setsid; do
    command -v "$tool" > /dev/null || { echo "launch.sh: '$tool' is not on PATH" >&2; exit 1; }
done
mkdir -p "$LOG_DIR"

# start NAME PORT COMMAND...: run COMMAND in the background, log to LOG_DIR/NAME.log, and wait until
# http://HOST:PORT/health answers 200, at most HEALTH_TIMEOUT_S seconds.
start() {
    local name=$1 port=$2
    shift 2
    local log="$LOG_DIR/$name.log" status=0
    "$@" > "$log" 2>&1 &
    local pid=$!
    names+=("$name")
    pids+=("$pid")
    echo "launch.sh: started $name (pid $pid, port $port, log $log)"
    local deadline=$((SECONDS + HEALTH_TIMEOUT_S))
    until curl -sf -o /dev/null --max-time 5 "http://$HOST:$port/health"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || status=$?
            fail "server $name exited with status $status before it answered /health (log $log)"
        fi
        [ "$SECONDS" -lt "$deadline" ] ||
            fail "server $name did not answer /health within $HEALTH_TIMEOUT_S s (log $log)"
        sleep "$HEALTH_POLL_S"
    done
    echo "launch.sh: $name is healthy"
}
"""

WATCH = r"""
echo "launch.sh: all ${#pids[@]} servers are healthy; Ctrl-C stops them"
while true; do
    sleep "$HEALTH_POLL_S"
    for k in "${!pids[@]}"; do
        if ! kill -0 "${pids[$k]}" 2>/dev/null; then
            status=0
            wait "${pids[$k]}" || status=$?
            fail "server ${names[$k]} exited with status $status (log $LOG_DIR/${names[$k]}.log)"
        fi
    done
done
"""


def launch_script(instance: Instance, plan: Plan, found: list[ModelServer], activation_gb: float) -> str:
    lines = [
        "#!/usr/bin/env bash",
        f"# The vLLM servers of the {plan.method} plan for instance '{instance.name}' (models/output/export.py):",
        f"# quality {plan.quality:.4f}, predicted mean TTFT {plan.mean_ttft_ms:.1f} ms (target {plan.slo_ms:g} ms) "
        f"at {instance.arrival_rate_rps:g} requests/s.",
        "#",
        f"# Flags of vLLM {VLLM_VERSION} (pip install vllm=={VLLM_VERSION}), checked against its documentation",
        "# (engine arguments of `vllm serve`). It is the last release whose default engine is V0, whose scheduler",
        "# the latency curves model (docs/latency.md); VLLM_USE_V1=0 keeps V0. The curves' scheduler: a",
        f"# {MAX_NUM_BATCHED_TOKENS:,}-token budget per iteration, {MAX_NUM_SEQS} sequences, no chunked prefill, "
        f"a {MAX_MODEL_LEN:,}-token context.",
        f"# Memory per shard: weights / tp + KV-cache reserve + {activation_gb:g} GB for activations and CUDA graphs,",
        f"# as a fraction of {memory_described(instance)} (--gpu-memory-utilization, a limit per server).",
        "#",
        "# It checks that the NVIDIA MPS control daemon answers in CUDA_MPS_PIPE_DIRECTORY (default",
        f"# {MPS_PIPE_DIRECTORY}), starts the servers one at a time, each once the one before answers /health, logs",
        "# each to LOG_DIR/<model>.log (default: logs/ beside this script), then watches them. If a server exits",
        "# or does not answer /health within HEALTH_TIMEOUT_S seconds, it stops the servers it started and exits 1",
        "# naming it; Ctrl-C stops them all.",
        "#",
        "# GPUs are the indices nvidia-smi shows. If the MPS control daemon was started with CUDA_VISIBLE_DEVICES",
        "# set, MPS renumbers the GPUs it was given; NVIDIA recommends GPU UUIDs (nvidia-smi -L) in",
        "# CUDA_VISIBLE_DEVICES then: replace each index below by its GPU's UUID.",
        *gpu_numbering_note(instance),
        LAUNCH_BODY.replace("__HOST__", HOST).replace("__TIMEOUT__", str(HEALTH_TIMEOUT_S))
        .replace("__PIPE__", MPS_PIPE_DIRECTORY).rstrip("\n"),
    ]
    for server in found:
        gpus = ", ".join(map(str, server.gpus))
        on = f"{server.gpu_type} " if server.gpu_type else ""
        lines += ["", f"# {server.label}: tp{server.tp}, MPS {server.mps_pct}% on {on}GPU(s) {gpus}; "
                      f"share {server.share:.4f} ({server.load_rps:.2f} requests/s); {server.need_gb:.2f} GB per shard",
                  start_line(server)]
    return "\n".join(lines) + "\n" + WATCH


def memory_described(instance: Instance) -> str:
    """The GPUs' memory: one size, or one per GPU type (SPEC 4.4)."""
    if not instance.typed:
        return f"{instance.gpu_memory_gb:g} GB"
    return "the GPU type's memory (" + ", ".join(f"{t.name} {t.memory_gb:g} GB" for t in instance.gpu_types) + ")"


def gpu_numbering_note(instance: Instance) -> list[str]:
    """launch.sh's comment on the global GPU numbering of an instance with GPU types."""
    if not instance.typed:
        return []
    blocks = ", ".join(f"{t.gpus.start}-{t.gpus.stop - 1} {t.name}" for t in instance.gpu_types)
    return ["#",
            f"# GPU types: the indices are the plan's global numbering, type by type as listed ({blocks}). On one",
            "# machine with mixed GPUs they must be the order nvidia-smi shows, else use the UUIDs as above; on",
            "# several machines, start each server on the machine with its type and renumber its GPUs there."]


def litellm_config(instance: Instance, plan: Plan, found: list[ModelServer]) -> str:
    """LiteLLM proxy `config.yaml`: one entry per deployed model (JSON strings are YAML scalars)."""
    lines = [
        f"# LiteLLM proxy configuration for the {plan.method} plan of '{instance.name}' (models/output/export.py):",
        "#     litellm --config litellm-config.yaml",
        "# It lists the deployed models and their vLLM servers, and routes a request to the model the client",
        "# names. It cannot apply the plan's routing: per-prompt prices (argmax of score - price over the models)",
        "# and the split prompts' fractions. Clients that send every prompt to the plan's model keep the plan;",
        "# others change the loads the latency target was planned for. `solve.py route` applies the rule.",
        "model_list:",
    ]
    for server in found:
        lines += [f"  - model_name: {json.dumps(server.name)}",
                  "    litellm_params:",
                  f"      model: {json.dumps('hosted_vllm/' + server.name)}",
                  f"      api_base: {json.dumps(server.url + '/v1')}"]
    return "\n".join(lines) + "\n"


def route_command(instance: Instance, found: list[ModelServer], folder: Path) -> str:
    """`solve.py route` for the exported plan.json, naming the servers it would not find by default."""
    moved = [f"--upstream {s.label}={s.url}" for k, s in enumerate(found) if s.port != BASE_PORT + k]
    return " ".join(["python solve.py route", shlex.quote(str(folder / "plan.json")), "--instance",
                     shlex.quote(str(instance.folder)), *moved])


def cluster_described(instance: Instance, plan: Plan) -> str:
    """The cluster for the README: N x type (memory), or with GPU types each type's GPUs and the plan's cost."""
    if not instance.typed:
        return f"{instance.gpu_count} x {instance.gpu_type or 'GPU'} ({instance.gpu_memory_gb:g} GB)"
    types = " + ".join(f"{t.count} x {t.name} ({t.memory_gb:g} GB, GPUs {t.gpus.start}-{t.gpus.stop - 1})"
                       for t in instance.gpu_types)
    cost = "" if plan.cost_per_hour is None else f"; the GPUs in use cost {plan.cost_per_hour:g} per hour"
    return types + cost


def gpus_cell(server: ModelServer) -> str:
    gpus = ",".join(map(str, server.gpus))
    return f"{gpus} ({server.gpu_type})" if server.gpu_type else gpus


def deployment_note(instance: Instance, plan: Plan, found: list[ModelServer], activation_gb: float,
                    folder: Path) -> str:
    table = ["| model | checkpoint | tp | MPS share | GPUs | memory fraction | port | price | share |",
             "|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {s.label} | {s.checkpoint} | {s.tp} | {s.mps_pct}% | {gpus_cell(s)} | "
              f"{s.memory_fraction:g} | {s.port} | {s.price:.6f} | {s.share:.4f} |" for s in found]
    skipped = [row.name for row in plan.models.itertuples() if not row.deployed]
    return "\n".join([
        f"# Deployment of the {plan.method} plan for '{instance.name}'",
        "",
        f"Predicted quality {plan.quality:.4f} and mean TTFT {plan.mean_ttft_ms:.1f} ms (target {plan.slo_ms:g} ms) "
        f"at {instance.arrival_rate_rps:g} requests/s on {cluster_described(instance, plan)}.",
        "",
        *table,
        "",
        f"Not deployed (no server, no traffic): {', '.join(skipped)}." if skipped else "Every model is deployed.",
        "",
        f"1. Install vLLM {VLLM_VERSION} on the GPU node (`pip install vllm=={VLLM_VERSION}`).",
        "2. Start the NVIDIA MPS control daemon, usually as root: `nvidia-cuda-mps-control -d` (with the same",
        "   `CUDA_MPS_PIPE_DIRECTORY` as `launch.sh`, if you set one). The MPS shares hold only under it.",
        "3. Run `./launch.sh`. It starts one server at a time and waits for its `/health`; logs go to `logs/`.",
        f"   Memory fraction = (weights / tp + KV-cache reserve + {activation_gb:g} GB) / "
        f"{memory_described(instance)}, rounded down;",
        "   the allowance covers activations, the CUDA context and CUDA graphs.",
        f"4. Route: `{route_command(instance, found, folder)}`",
        f"   serves an OpenAI-compatible API on http://{HOST}:{ROUTER_PORT} (`/v1/completions`,",
        "   `/v1/chat/completions`) that sends each request where the plan's rule says, given per-model scores",
        "   in the body (`\"scores\"`) or from a predictor; the prices are calibrated to the predictor that",
        "   produced the instance's scores.",
        f"5. Watch http://{HOST}:{ROUTER_PORT}/metrics: each model's observed share next to its planned one.",
        "",
        "`litellm-config.yaml` lists the same servers for a LiteLLM proxy. LiteLLM routes by the model name",
        "the client sends: it cannot apply the plan's per-prompt prices or split prompts.",
        "",
        "docs/deploy.md describes the whole path.",
        "",
    ])


def write_export(instance: Instance, plan: Plan, folder: str | Path, activation_gb: float = ACTIVATION_GB,
                 base_port: int = BASE_PORT) -> list[Path]:
    """`launch.sh`, `plan.json`, `litellm-config.yaml` and `README.md` in `folder` (created if needed);
    `ExportError`, before anything is written, if the plan is not deployable or a GPU's shards do not fit."""
    check_deployable(instance, plan)
    found = servers(instance, plan, activation_gb, base_port)
    check_memory(instance, found, activation_gb)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "launch.sh"
    script.write_text(launch_script(instance, plan, found, activation_gb))
    script.chmod(0o755)
    plan_file = folder / "plan.json"
    write_plan(plan, plan_file)
    litellm = folder / "litellm-config.yaml"
    litellm.write_text(litellm_config(instance, plan, found))
    note = folder / "README.md"
    note.write_text(deployment_note(instance, plan, found, activation_gb, folder))
    return [script, plan_file, litellm, note]
