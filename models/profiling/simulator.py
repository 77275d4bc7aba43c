"""A vLLM-style continuous-batching server, simulated iteration by iteration.

The server (vLLM v0's default scheduler, simplified; docs/latency.md):

* Requests wait in one first-come-first-served queue.
* Before each iteration the scheduler admits waiting requests in order while
  the batch stays within the token budget (prompt tokens per iteration), the
  running set within `max_batch` requests, and the KV cache within its capacity
  less a watermark; it stops at the first request that does not fit. If it
  admitted any, the iteration is a prefill of exactly those requests; each
  gets its first token at the end of it (that instant minus its arrival is its
  TTFT).
* Otherwise the iteration is a decode step: every running request generates
  one token and its KV cache grows by one token. If the cache cannot hold the
  step, the most recently admitted request is preempted: its cache is freed and
  it goes back to the head of the queue, to be prefilled again over its prompt
  and the tokens it has generated (vLLM's recompute preemption).
* A request leaves when it has generated its output length.

Step times come from the measured table: a prefill of b requests with T tokens
in total takes prefill(b, T / b); a decode step of b requests holding C tokens
of KV cache takes decode(b, C / b) (mean lengths rounded to whole tokens). Both
include the engine's CPU time per iteration at b (`StepTimes.cpu`). A request's
tokens reach its client `request_delay_ms` after the iteration that made them: a
fixed cost per request outside the engine (HTTP, tokenizing, hand-off).

Between events nothing changes but the decode counter, so consecutive decode
steps are advanced as one block (their times summed from a cumulative table)
up to the next event: an arrival (when it can be admitted), a completion, or a
full cache. This is the same server as stepping one iteration at a time, and
several times faster at low load, where most steps are decodes between
arrivals; `tests/test_profiling.py` checks that it agrees with the simpy
reference (`reference.py`), first tokens and last tokens alike.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np

from models.problem.instance import InputError
from models.profiling.server import ServerConfig
from models.profiling.table import StepTimes
from models.profiling.workload import Workload

@dataclass(frozen=True)
class Server:
    """A configured server with dense step-time lookups (ms) indexed [batch size, mean length].

    `decode_cum_ms[b, s]` is the sum of decode_ms[b, :s]: the time of decode steps s0..s1 - 1 of
    b requests, whose mean length grows by one token per step, is decode_cum_ms[b, s1] - decode_cum_ms[b, s0].
    """

    config: ServerConfig
    prefill_ms: np.ndarray
    decode_ms: np.ndarray
    decode_cum_ms: np.ndarray
    request_delay_ms: float = 0.0  # from the iteration that makes a token to its client

    @classmethod
    def from_grids(cls, config: ServerConfig, prefill_ms: np.ndarray, decode_ms: np.ndarray,
                   request_delay_ms: float = 0.0) -> "Server":
        cumulative = np.concatenate([np.zeros((len(decode_ms), 1)), np.cumsum(decode_ms, axis=1)], axis=1)
        return cls(config, prefill_ms, decode_ms, cumulative, request_delay_ms)

    @classmethod
    def build(cls, config: ServerConfig, step_times: StepTimes, context_window: int,
              request_delay_ms: float = 0.0) -> "Server":
        return cls.from_grids(config, *step_times.grids(config.max_batch, context_window), request_delay_ms)

    @property
    def context_window(self) -> int:
        return self.prefill_ms.shape[1] - 1


def check_serves(server: Server, workload: Workload) -> None:
    """Every request must fit an empty server alone, or the queue would block forever."""
    longest = workload.max_request_tokens
    if longest > server.context_window:
        raise InputError(f"a request of {longest} tokens exceeds the context window ({server.context_window})")
    check_fits(server.config, workload, "the server")


def check_fits(config: ServerConfig, workload: Workload, who: str) -> None:
    longest = workload.max_request_tokens
    if longest > min(config.token_budget, config.admission_kv_tokens):
        raise InputError(f"{who}: a request of {longest} tokens does not fit the token budget "
                         f"({config.token_budget}) or the admissible KV cache ({config.admission_kv_tokens} tokens)")


@dataclass(frozen=True)
class Served:
    """What a run gives per request (ms from the run's start)."""

    first_token_ms: np.ndarray  # when its first token reaches the client
    finish_ms: np.ndarray  # when its last token does; NaN if the run stopped before


def serve(server: Server, workload: Workload, arrivals_ms: np.ndarray, until_finished: bool = False) -> Served:
    """Run `workload`'s requests arriving at `arrivals_ms` (ascending) until each has its first token,
    or with `until_finished` its last one."""
    check_serves(server, workload)
    engine = Engine(server, workload, np.asarray(arrivals_ms, dtype=float))
    engine.run(until_finished)
    delay = server.request_delay_ms
    return Served(np.array(engine.first_token_ms) + delay, np.array(engine.finish_ms) + delay)


def simulate(server: Server, workload: Workload, rate_rps: float) -> np.ndarray:
    """Time (ms) at which each request of `workload`, arriving at `rate_rps`, gets its first token."""
    return serve(server, workload, workload.arrivals_ms(rate_rps)).first_token_ms


NOT_YET = -1.0  # first-token time of a request still waiting for it


def mean_length(tokens: int, requests: int) -> int:
    """Tokens per request rounded to the nearest whole token (halves up), in integer arithmetic."""
    return (tokens + requests // 2) // requests


class Engine:
    """The server's state during one run; `run` advances it until every request has its first token
    (or its last one). Times are the engine's: when an iteration ends."""

    def __init__(self, server: Server, workload: Workload, arrivals_ms: np.ndarray):
        count = len(workload)
        self.config = server.config
        self.prefill_ms, self.decode_cum_ms = server.prefill_ms, server.decode_cum_ms
        self.arrivals_ms = arrivals_ms.tolist()
        self.prompt = workload.prompt_tokens.tolist()
        self.output = workload.output_tokens.tolist()
        self.now = 0.0
        self.arrived = 0  # requests with arrival <= now
        self.waiting: deque[int] = deque()
        self.running: dict[int, None] = {}  # in admission order (the preemption victim is the last)
        self.finishes: list[tuple[int, int, int]] = []  # heap of (decode count at finish, request, admission)
        self.decodes = 0  # decode steps run so far
        self.kv_offset = 0  # sum over running of (prefill tokens - decode count at admission)
        self.prefill_tokens = list(self.prompt)  # what an admission prefills: prompt + tokens generated
        self.generated = [0] * count
        self.admitted_at = [0] * count
        self.admissions = [0] * count  # tells a heap entry left behind by a preemption
        self.first_token_ms = [NOT_YET] * count
        self.finish_ms = [np.nan] * count
        self.unserved = count  # requests without a first token yet
        self.preemptions = 0

    @property
    def kv_used(self) -> int:
        return self.kv_offset + len(self.running) * self.decodes

    def run(self, until_finished: bool = False) -> None:
        while self.unserved or (until_finished and (self.running or self.waiting)):
            self.enqueue_arrivals()
            if self.waiting and self.prefill():
                continue
            if self.running:
                self.decode_block()
            else:
                self.now = self.arrivals_ms[self.arrived]  # idle until the next arrival

    def enqueue_arrivals(self) -> None:
        arrivals, count = self.arrivals_ms, len(self.arrivals_ms)
        while self.arrived < count and arrivals[self.arrived] <= self.now:
            self.waiting.append(self.arrived)
            self.arrived += 1

    def prefill(self) -> bool:
        """Admit waiting requests in order while they fit; run their prefill. False if none fits."""
        config = self.config
        room = config.max_batch - len(self.running)
        free = config.admission_kv_tokens - self.kv_used
        batch, tokens = [], 0
        while self.waiting and len(batch) < room:
            need = tokens + self.prefill_tokens[self.waiting[0]]
            if need > config.token_budget or need > free:
                break
            batch.append(self.waiting.popleft())
            tokens = need
        if not batch:
            return False
        self.now += float(self.prefill_ms[len(batch), mean_length(tokens, len(batch))])
        for request in batch:
            self.admit(request)
        return True

    def admit(self, request: int) -> None:
        """After its prefill: the request has one more token, and decodes on if it needs more."""
        if self.first_token_ms[request] == NOT_YET:
            self.first_token_ms[request] = self.now
            self.unserved -= 1
        self.generated[request] += 1
        remaining = self.output[request] - self.generated[request]
        if remaining == 0:
            self.finish_ms[request] = self.now
            return
        self.running[request] = None
        self.admitted_at[request] = self.decodes
        self.admissions[request] += 1
        self.kv_offset += self.prefill_tokens[request] - self.decodes
        heapq.heappush(self.finishes, (self.decodes + remaining, request, self.admissions[request]))

    def decode_block(self) -> None:
        """Run decode steps up to the next event: a completion, a full cache, or an admissible arrival."""
        batch = len(self.running)
        kv_used = self.kv_used
        if kv_used + batch > self.config.kv_tokens:
            self.preempt()
            return
        steps = min(self.steps_to_next_finish(), (self.config.kv_tokens - kv_used) // batch)
        start = mean_length(kv_used, batch)  # one more token per request and step
        elapsed = self.decode_cum_ms[batch]  # elapsed[s1] - elapsed[s0]: steps from mean length s0 to s1
        if not self.waiting and self.arrived < len(self.arrivals_ms):
            # stop at the end of the step during which the next request arrives
            arrival = elapsed[start] + (self.arrivals_ms[self.arrived] - self.now)
            steps = min(steps, int(elapsed.searchsorted(arrival, side="left")) - start)
        self.now += float(elapsed[start + steps] - elapsed[start])
        self.decodes += steps
        self.retire_finished()

    def steps_to_next_finish(self) -> int:
        while True:
            finish, request, admission = self.finishes[0]
            if request in self.running and admission == self.admissions[request]:
                return finish - self.decodes
            heapq.heappop(self.finishes)  # left behind by a preemption

    def retire_finished(self) -> None:
        while self.finishes and self.finishes[0][0] <= self.decodes:
            _, request, admission = heapq.heappop(self.finishes)
            if request in self.running and admission == self.admissions[request]:
                self.release(request)
                self.finish_ms[request] = self.now

    def release(self, request: int) -> None:
        del self.running[request]
        self.kv_offset -= self.prefill_tokens[request] - self.admitted_at[request]

    def preempt(self) -> None:
        """Free the latest admission's cache; it waits at the head of the queue to be prefilled again."""
        request = next(reversed(self.running))
        self.preemptions += 1
        self.release(request)
        self.generated[request] += self.decodes - self.admitted_at[request]
        self.prefill_tokens[request] = self.prompt[request] + self.generated[request]
        self.waiting.appendleft(request)
