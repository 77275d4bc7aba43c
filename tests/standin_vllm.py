"""A stand-in for a vLLM OpenAI server, for tests on machines without a GPU.

As a program, `standin_vllm.py serve CHECKPOINT ... --served-model-name NAME --port N ...` (the
arguments `launch.sh` gives `vllm serve`) records its arguments, the environment variables a launch sets
and which other stand-ins had answered /health before it started, in $VLLM_STANDIN_DIR/NAME.json. It
then exits with status 3 if NAME is $VLLM_STANDIN_EXIT, or prints one line and serves on 127.0.0.1:N:

* GET /health: 503 for the first $VLLM_STANDIN_UNHEALTHY_POLLS requests (default 1), then 200, and the
  first 200 leaves NAME.healthy in $VLLM_STANDIN_DIR; always 503 if NAME is $VLLM_STANDIN_NEVER_HEALTHY;
* POST /v1/completions and /v1/chat/completions: a JSON answer naming the model, or with "stream": true
  three server-sent events and `data: [DONE]`.

It stops by itself after $VLLM_STANDIN_LIFETIME_S seconds (default 60). In-process, `serve_in_thread`
starts the same server on a free port and keeps the bodies of the requests it answers.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RECORDED_ENV = ("CUDA_VISIBLE_DEVICES", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "CUDA_MPS_PIPE_DIRECTORY", "VLLM_USE_V1")
STREAM_CHUNKS = 3


class StandInServer(ThreadingHTTPServer):
    """Keeps the bodies of the completions it answers; `unhealthy_polls` 503s before /health answers 200."""

    daemon_threads = True

    def __init__(self, port: int, unhealthy_polls: int = 0, on_healthy=None):
        super().__init__(("127.0.0.1", port), StandIn)
        self.unhealthy_polls = unhealthy_polls
        self.on_healthy = on_healthy
        self.lock = threading.Lock()
        self.bodies: list[dict] = []


class StandIn(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # the test output stays quiet
        pass

    def do_GET(self):
        if self.path != "/health":
            return self.answer(404, {"error": "not found"})
        with self.server.lock:
            healthy = self.server.unhealthy_polls <= 0
            self.server.unhealthy_polls -= 1
        if healthy and self.server.on_healthy:
            self.server.on_healthy()
        self.answer(200 if healthy else 503, {})

    def do_POST(self):
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            return self.answer(404, {"error": "not found"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
        if not body.get("stream"):
            return self.answer(200, {"object": "text_completion", "model": body.get("model"),
                                     "choices": [{"index": 0, "text": "ok"}]})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for k in range(STREAM_CHUNKS):
            chunk = {"model": body.get("model"), "choices": [{"index": 0, "delta": {"content": f"part{k}"}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_in_thread() -> StandInServer:
    """A stand-in on a free port of 127.0.0.1, served by a daemon thread; `shutdown()` stops it."""
    server = StandInServer(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def main(argv: list[str]) -> None:
    record_dir = Path(os.environ["VLLM_STANDIN_DIR"])
    name = flag(argv, "--served-model-name")
    record = {"argv": argv, "env": {k: os.environ.get(k) for k in RECORDED_ENV}, "pid": os.getpid(),
              "healthy_before": sorted(p.stem for p in record_dir.glob("*.healthy"))}
    (record_dir / f"{name}.json").write_text(json.dumps(record))
    if os.environ.get("VLLM_STANDIN_EXIT") == name:
        sys.exit(3)
    print(f"stand-in vllm: {name} on port {flag(argv, '--port')}", flush=True)
    never = os.environ.get("VLLM_STANDIN_NEVER_HEALTHY") == name
    polls = int(os.environ.get("VLLM_STANDIN_UNHEALTHY_POLLS", "1"))
    server = StandInServer(int(flag(argv, "--port")), unhealthy_polls=10**9 if never else polls,
                           on_healthy=lambda: (record_dir / f"{name}.healthy").touch())
    threading.Timer(float(os.environ.get("VLLM_STANDIN_LIFETIME_S", "60")), server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])


def free_ports(count: int, tries: int = 50) -> int:
    """A port p of 127.0.0.1 such that p, ..., p + count - 1 are free now (the first of them)."""
    for _ in range(tries):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count <= 65536 and all(port_is_free(first + k) for k in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports in {tries} tries")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
