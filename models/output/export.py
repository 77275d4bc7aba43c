"""Deployment export: a plan as vLLM launch lines and a router configuration.

`write_export` writes three files:

* `launch.sh`: one vLLM OpenAI-compatible server per deployed model, on the
  plan's GPUs (`CUDA_VISIBLE_DEVICES`), with its tensor-parallel degree
  (`--tensor-parallel-size`), its MPS compute share
  (`CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`), its planned memory per shard as a
  fraction of the GPU (`--gpu-memory-utilization`, rounded down; vLLM's default
  of 0.9 would not let two shards share a GPU) and a port of its own. A model
  that is not deployed gets no line. MPS shares take effect only while the MPS
  control daemon runs, so the script refuses to start without it.
* `router.json`: the routing rule `argmax_i score[i] - price[i]` over the
  deployed models with their prices and endpoints, ties broken by model order,
  and the score source the prices were computed for.
* `README.md`: the same for people: what to run, in which order, and what to
  map (the instance's model names are names, not checkpoints).

A plan that breaks the mean-TTFT target, or has a deployed model without a
price, is not a deployment: `ExportError`.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from models.problem.instance import Instance
from models.problem.plan import Plan
from models.problem.transport import TIE_TOL

BASE_PORT = 8000
VLLM_SERVER = "python -m vllm.entrypoints.openai.api_server"
RULE = "argmax_i score[i] - price[i]"
TIE_BREAK = f"models within {TIE_TOL:g} of the largest score - price are tied; ties go to the first in 'models'"
MPS_DAEMON = "nvidia-cuda-mps-control -d"
MEMORY_FRACTION_DIGITS = 3


class ExportError(ValueError):
    """The plan cannot be exported as a deployment; the message says why."""


@dataclass(frozen=True)
class Server:
    """One vLLM server: a deployed model on its GPUs."""

    name: str
    tp: int
    mps_pct: int
    gpus: tuple[int, ...]
    port: int
    memory_fraction: float
    share: float
    load_rps: float
    price: float

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self.port}/v1"


def check_exportable(plan: Plan) -> None:
    if plan.solver.status == "infeasible" or not plan.slo_met:
        raise ExportError(
            f"export: the {plan.method} plan breaks the target (predicted mean TTFT {plan.mean_ttft_ms:.2f} ms > "
            f"{plan.slo_ms:g} ms, status {plan.solver.status}); it is a reference, not a deployment")
    for row, price in zip(plan.models.itertuples(), plan.prices):
        if row.deployed and math.isnan(price):
            raise ExportError(f"export: the {plan.method} plan has no routing price for deployed model '{row.name}'")


def servers(instance: Instance, plan: Plan, base_port: int = BASE_PORT) -> list[Server]:
    """The deployed models in the instance's order, on ports base_port, base_port + 1, ..."""
    by_name = {model.name: model for model in instance.models}
    found = []
    for row, price in zip(plan.models.itertuples(), plan.prices):
        if not row.deployed:
            continue
        shard_gb = by_name[row.name].shard_gb(int(row.tp))
        scale = 10 ** MEMORY_FRACTION_DIGITS
        found.append(Server(name=row.name, tp=int(row.tp), mps_pct=int(row.mps_pct),
                            gpus=tuple(int(g) for g in row.gpus), port=base_port + len(found),
                            memory_fraction=math.floor(shard_gb / instance.gpu_memory_gb * scale) / scale,
                            share=float(row.share), load_rps=float(row.load_rps),
                            price=float(price) + 0.0))  # + 0.0 turns -0.0 into 0.0
    return found


def launch_line(server: Server) -> str:
    devices = ",".join(str(g) for g in server.gpus)
    return (f"CUDA_VISIBLE_DEVICES={devices} CUDA_MPS_ACTIVE_THREAD_PERCENTAGE={server.mps_pct} {VLLM_SERVER} "
            f"--model {shlex.quote(server.name)} --tensor-parallel-size {server.tp} "
            f"--gpu-memory-utilization {server.memory_fraction:g} --port {server.port} &")


def launch_script(instance: Instance, plan: Plan, found: list[Server]) -> str:
    lines = [
        "#!/usr/bin/env bash",
        f"# vLLM servers for the {plan.method} plan of instance '{instance.name}' (written by models/output/export.py):",
        f"# quality {plan.quality:.4f}, predicted mean TTFT {plan.mean_ttft_ms:.1f} ms, target {plan.slo_ms:g} ms.",
        "# The --model values are the instance's model names: replace each with the checkpoint it stands for",
        "# (a Hugging Face id or a local path). See README.md in this folder.",
        "#",
        "# The MPS compute shares (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE) take effect only under NVIDIA MPS:",
        "# start its control daemon on this node first (usually as root), and stop it after the servers with",
        "# 'echo quit | nvidia-cuda-mps-control'. Without it, every server would get the whole GPU.",
        f"#     {MPS_DAEMON}",
        "set -euo pipefail",
        "# (-f: the full command line; process names are cut to 15 characters, too short for -x)",
        "if ! pgrep -f nvidia-cuda-mps-control > /dev/null; then",
        f"    echo 'launch.sh: the MPS control daemon is not running; start it with: {MPS_DAEMON}' >&2",
        "    exit 1",
        "fi",
    ]
    for server in found:
        gpus = ", ".join(map(str, server.gpus))
        lines += ["", f"# {server.name}: tp{server.tp}, MPS {server.mps_pct}% on GPUs {gpus}; "
                      f"routing share {server.share:.4f} ({server.load_rps:.2f} requests/s)", launch_line(server)]
    return "\n".join(lines + ["", "wait", ""])


def router_config(instance: Instance, plan: Plan, found: list[Server]) -> dict:
    scores_path = instance.scores_path
    return {
        "instance": instance.name,
        "method": plan.method,
        "rule": RULE,
        "tie_break": TIE_BREAK,
        "score_source": {
            "expected": "for each incoming prompt, one predicted quality in [0, 1] per model below, from the "
                        f"predictor that produced {scores_path}; the prices are calibrated to that predictor's "
                        "scores and must be recomputed (by solving again) for another predictor",
            "scores_file": str(scores_path),
            "instance_description": instance.description,
        },
        "models": [{"name": s.name, "price": s.price, "endpoint": s.endpoint, "port": s.port,
                    "expected_share": s.share, "expected_load_rps": s.load_rps} for s in found],
        "not_deployed": [row.name for row in plan.models.itertuples() if not row.deployed],
        "arrival_rate_rps": instance.arrival_rate_rps,
        "predicted_mean_ttft_ms": plan.mean_ttft_ms,
        "slo_mean_ttft_ms": plan.slo_ms,
        "predicted_quality": plan.quality,
    }


def deployment_note(instance: Instance, plan: Plan, found: list[Server]) -> str:
    table = ["| model | tp | MPS share | GPUs | memory fraction | port | price | share |",
             "|---|---|---|---|---|---|---|---|"]
    table += [f"| {s.name} | {s.tp} | {s.mps_pct}% | {','.join(map(str, s.gpus))} | {s.memory_fraction:g} | {s.port} "
              f"| {s.price:.6f} | {s.share:.4f} |" for s in found]
    skipped = [row.name for row in plan.models.itertuples() if not row.deployed]
    return "\n".join([
        f"# Deployment of the {plan.method} plan for '{instance.name}'",
        "",
        f"Predicted quality {plan.quality:.4f} and mean TTFT {plan.mean_ttft_ms:.1f} ms (target {plan.slo_ms:g} ms) "
        f"at {instance.arrival_rate_rps:g} requests/s on {instance.gpu_count} x {instance.gpu_type or 'GPU'} "
        f"({instance.gpu_memory_gb:g} GB).",
        "",
        *table,
        "",
        f"Not deployed (no server, no traffic): {', '.join(skipped)}." if skipped else "Every model is deployed.",
        "",
        "1. Map each model name to the checkpoint it stands for (the `--model` values in `launch.sh` are the",
        "   instance's names, not checkpoints).",
        f"2. Start the MPS control daemon: `{MPS_DAEMON}` (usually as root). The MPS shares",
        "   (`CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`) only take effect under it; `launch.sh` refuses to start without it.",
        "3. Run `launch.sh`: one vLLM server per deployed model. `--gpu-memory-utilization` is the planned",
        f"   memory of one shard (weights / tp + KV-cache reserve) as a fraction of {instance.gpu_memory_gb:g} GB,",
        "   rounded down; on every GPU the fractions add up to at most 1.",
        f"4. Route each prompt by `router.json`: to `{RULE}` over the deployed models, {TIE_BREAK}.",
        "   `score` must come from the predictor that produced the instance's scores: the prices are",
        "   calibrated to it.",
        "",
    ])


def write_export(instance: Instance, plan: Plan, folder: str | Path, base_port: int = BASE_PORT) -> list[Path]:
    """`launch.sh`, `router.json` and `README.md` in `folder` (created if needed); `ExportError` if not deployable."""
    check_exportable(plan)
    found = servers(instance, plan, base_port)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "launch.sh"
    script.write_text(launch_script(instance, plan, found))
    script.chmod(0o755)
    router = folder / "router.json"
    router.write_text(json.dumps(router_config(instance, plan, found), indent=2) + "\n")
    note = folder / "README.md"
    note.write_text(deployment_note(instance, plan, found))
    return [script, router, note]
