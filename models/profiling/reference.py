"""The simulated server written plainly, one iteration per simpy event: the reference for the fast engine.

Same server as `models.profiling.simulator` (its docstring states the rules),
but with the obvious state: request objects, a waiting deque, a running list,
one simpy timeout per prefill iteration or decode step, and a simpy process of
arrivals that wakes an idle server. It is slow: every decode step is an event
and touches every running request. Tests check that the engine's first- and
last-token times equal these; `bench/profile_speed.py` measures how much
faster the engine is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import simpy

from models.profiling.simulator import Served, Server, check_serves, mean_length
from models.profiling.workload import Workload


@dataclass
class Request:
    arrival_ms: float
    prompt: int
    output: int
    generated: int = 0
    cached: int = 0  # tokens in the KV cache while running
    to_prefill: int = 0  # tokens the next admission prefills
    first_token_ms: float | None = None
    finish_ms: float = np.nan


def serve_reference(server: Server, workload: Workload, arrivals_ms: np.ndarray,
                    until_finished: bool = False) -> Served:
    """As `models.profiling.simulator.serve` returns it."""
    check_serves(server, workload)
    requests = [Request(float(a), int(p), int(o), to_prefill=int(p)) for a, p, o in
                zip(arrivals_ms, workload.prompt_tokens, workload.output_tokens)]
    env = simpy.Environment()
    state = ReferenceServer(server, env, len(requests), until_finished)
    env.process(state.arrivals(requests))
    env.run(until=env.process(state.serve()))
    return Served(np.array([r.first_token_ms for r in requests]) + server.request_delay_ms,
                  np.array([r.finish_ms for r in requests]) + server.request_delay_ms)


def simulate_reference(server: Server, workload: Workload, rate_rps: float) -> np.ndarray:
    """First-token times (ms), as `models.profiling.simulator.simulate` returns them."""
    return serve_reference(server, workload, workload.arrivals_ms(rate_rps)).first_token_ms


class ReferenceServer:
    def __init__(self, server: Server, env: simpy.Environment, count: int, until_finished: bool):
        self.server, self.config, self.env = server, server.config, env
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # in admission order
        self.unserved = count
        self.until_finished = until_finished
        self.wakeup: simpy.Event | None = None

    def arrivals(self, requests: list[Request]):
        for request in requests:
            yield self.env.timeout(request.arrival_ms - self.env.now)
            self.waiting.append(request)
            if self.wakeup is not None and not self.wakeup.triggered:
                self.wakeup.succeed()

    def serve(self):
        while self.unserved or (self.until_finished and (self.running or self.waiting)):
            batch = self.admit()
            if batch:
                tokens = sum(r.to_prefill for r in batch)
                yield self.env.timeout(float(self.server.prefill_ms[len(batch), mean_length(tokens, len(batch))]))
                self.after_prefill(batch)
            elif self.running:
                cached = sum(r.cached for r in self.running)
                if cached + len(self.running) > self.config.kv_tokens:
                    self.preempt()
                    continue
                batch_size = len(self.running)
                yield self.env.timeout(float(self.server.decode_ms[batch_size, mean_length(cached, batch_size)]))
                self.after_decode()
            else:
                self.wakeup = self.env.event()
                yield self.wakeup

    def admit(self) -> list[Request]:
        free = self.config.admission_kv_tokens - sum(r.cached for r in self.running)
        room = self.config.max_batch - len(self.running)
        batch, tokens = [], 0
        while self.waiting and len(batch) < room:
            need = tokens + self.waiting[0].to_prefill
            if need > self.config.token_budget or need > free:
                break
            batch.append(self.waiting.popleft())
            tokens = need
        return batch

    def after_prefill(self, batch: list[Request]) -> None:
        for request in batch:
            if request.first_token_ms is None:
                request.first_token_ms = self.env.now
                self.unserved -= 1
            request.generated += 1
            if request.generated < request.output:
                request.cached = request.to_prefill
                self.running.append(request)
            else:
                request.finish_ms = self.env.now

    def after_decode(self) -> None:
        for request in self.running:
            request.generated += 1
            request.cached += 1
            if request.generated == request.output:
                request.finish_ms = self.env.now
        self.running = [r for r in self.running if r.generated < r.output]

    def preempt(self) -> None:
        request = self.running.pop()
        request.cached = 0
        request.to_prefill = request.prompt + request.generated
        self.waiting.appendleft(request)
