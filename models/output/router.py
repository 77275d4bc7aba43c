"""A router that serves a plan: an OpenAI-compatible HTTP proxy in front of the plan's vLLM servers.

    python solve.py route PLAN.json --instance DIR      (models/cli/route.py)

or, from Python, `serve(build_router(instance, read_plan(path, instance)))`. For every request to
`/v1/completions` or `/v1/chat/completions` (a JSON object, streaming or not):

1. Scores. The body may carry per-model predicted scores, `"scores": {"model": score, ...}`, one for
   every deployed model; otherwise the predictor is called, `predictor(body) -> {model: score}`. The
   default predictor replays the instance: the scores row of the body's `"prompt_id"`. A predictor
   rejects a request by raising ValueError (a 400 with its message).
2. The plan's published rule (SPEC 4.3). A prompt listed in the plan's splits (by `prompt_id`) goes to
   model i with the listed fraction, drawn from a generator seeded once (`seed`), so that a replay in
   the same order routes the same way. Every other request goes to argmax_i s_i - alpha_i over the
   deployed models, exact ties to the model listed first: `price_choices` of the published routing.
3. The body, less `scores` and `prompt_id` and with `model` set to the chosen model's served name
   (SPEC 4.2), goes to that model's server; its status, content type and body, streamed as they
   come, go back to the client. A model with several replicas (SPEC 4.5) has a server per replica,
   and its requests are split over them in proportion to the replicas' planned shares by smooth
   weighted round-robin (`WeightedSplit`): deterministic, and after any n requests each replica has
   had its proportion of them to within one request.

Errors: 400 with a one-line reason (OpenAI's error object) for a body that is not a JSON object, scores
that miss a deployed model, name an unknown one or are not numbers, or a prompt id the replay does not
know; 502 naming the model when its server cannot be reached.

`/metrics` is Prometheus text: per deployed model the requests routed (counter), the requests in flight,
the planned share and load, and the observed share and load over the last `window_s` seconds.

The router refuses a plan that is not a deployment (`check_deployable`, as the export does).

Stack: Starlette (ASGI routes, streaming responses, lifespan) served by uvicorn, and an httpx
AsyncClient to the servers; prometheus_client writes the exposition format.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import time
from collections import Counter, deque
from contextlib import asynccontextmanager
from typing import Callable, Mapping
from urllib.parse import urlsplit

import httpx
import numpy as np
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from models.output.export import HOST, ROUTER_PORT, check_deployable, servers
from models.problem.instance import Instance
from models.problem.plan import Plan
from models.problem.published import price_choices

ROUTER_FIELDS = ("scores", "prompt_id")  # read by the router, not sent on
ENDPOINTS = ("/v1/completions", "/v1/chat/completions")
WINDOW_S = 60.0  # the observed share and load are over this many recent seconds
UPSTREAM_TIMEOUT = httpx.Timeout(600.0, connect=10.0)  # a generation may take minutes; a connection may not
PASSED_HEADERS = ("authorization",)  # from the client to the server (vLLM's --api-key)
RETURNED_HEADERS = ("content-type", "content-encoding")  # from the server to the client

Predictor = Callable[[dict], Mapping[str, float]]


class RouteError(ValueError):
    """The router cannot start as asked (an upstream or predictor); one line."""


class BadRequest(ValueError):
    """A request the router cannot route; its message is the 400's one-line reason."""


class ReplayPredictor:
    """The instance's scores row of the request's `prompt_id`: replays of the instance's prompts."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self.rows = {prompt_id: x for x, prompt_id in enumerate(instance.prompt_ids)}

    def __call__(self, body: dict) -> dict[str, float]:
        prompt_id = body.get("prompt_id")
        if prompt_id is None:
            raise BadRequest("no 'scores' in the body, and no 'prompt_id' for the replay predictor")
        if prompt_id not in self.rows:
            raise BadRequest(f"prompt_id {prompt_id!r} is not a prompt of instance '{self.instance.name}'")
        return dict(zip(self.instance.model_names, self.instance.scores[self.rows[prompt_id]].tolist()))


def load_predictor(spec: str) -> Predictor:
    """The callable `module:function` names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise RouteError(f"--predictor {spec!r}: not of the form module:function")
    try:
        predictor = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise RouteError(f"--predictor {spec!r}: {err}") from None
    if not callable(predictor):
        raise RouteError(f"--predictor {spec!r}: not callable")
    return predictor


def server_root(name: str, url: str) -> str:
    """A server's root URL (the router appends /v1/...), without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise RouteError(f"--upstream {name}={url}: not a server root such as http://127.0.0.1:8000")
    return url.rstrip("/")


class WeightedSplit:
    """Smooth weighted round-robin over a model's replicas (nginx's upstream balancing): each pick adds every
    replica's weight w_r to its credit c_r and takes the replica of the largest credit (the first on ties),
    whose credit then drops by W = sum_r w_r. Credits stay within (-W, W], so after n picks replica r has had
    n w_r / W of them to within one."""

    def __init__(self, labels: list[str], weights: list[float]):
        self.labels, self.weights = labels, np.asarray(weights, dtype=float)
        self.credit = np.zeros(len(labels))

    def next(self) -> str:
        self.credit += self.weights
        k = int(np.argmax(self.credit))
        self.credit[k] -= self.weights.sum()
        return self.labels[k]


class Router:
    """The plan's rule applied request by request, the servers it forwards to, and what it did."""

    def __init__(self, instance: Instance, plan: Plan, upstreams: Mapping[str, str], predictor: Predictor,
                 seed: int = 0, window_s: float = WINDOW_S):
        self.names = instance.model_names
        self.deployed = [k for k, option in enumerate(plan.setup) if option is not None]
        self.prices = plan.prices
        self.splits = {split.prompt_id: split.fractions / split.fractions.sum() for split in plan.routing.splits}
        self.planned_share = dict(zip(self.names, plan.models.share))
        self.planned_load = dict(zip(self.names, plan.models.load_rps))
        self.upstreams = dict(upstreams)
        by_model: dict[str, list] = {}
        for server in servers(instance, plan):
            by_model.setdefault(server.name, []).append(server)
        self.replicas = {name: WeightedSplit([s.label for s in group], [s.share for s in group])
                         for name, group in by_model.items()}  # SPEC 4.5: a model's servers, by share
        self.predictor = predictor
        self.rng = np.random.default_rng(seed)
        self.window_s = window_s
        self.started = time.monotonic()
        self.recent: deque[tuple[float, str]] = deque()  # (time, model) of the requests routed lately
        self.routed: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.bad_requests = 0
        self.client: httpx.AsyncClient | None = None  # open while the app runs

    async def choose(self, body: dict) -> str:
        """The model the rule sends this request to."""
        prompt_id = body.get("prompt_id")
        if prompt_id is not None and not isinstance(prompt_id, str):
            raise BadRequest(f"prompt_id {prompt_id!r} is not a string")
        if prompt_id in self.splits:
            fractions = self.splits[prompt_id]
            return self.names[self.rng.choice(len(fractions), p=fractions)]
        scores = body["scores"] if "scores" in body else self.predictor(body)
        if inspect.isawaitable(scores):
            scores = await scores
        return self.names[int(price_choices(self.score_row(scores)[None, :], self.prices)[0])]

    def score_row(self, scores) -> np.ndarray:
        """Scores by model name as a row over the instance's models (0 where not deployed, unused)."""
        if not isinstance(scores, Mapping):
            raise BadRequest("'scores' is not an object of per-model scores")
        row = np.zeros(len(self.names))
        for name, score in scores.items():
            if name not in self.names:
                raise BadRequest(f"'scores' names an unknown model '{name}' (models: {', '.join(self.names)})")
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise BadRequest(f"'scores' of model '{name}' is {score!r}, not a number")
            row[self.names.index(name)] = score
        missing = [self.names[k] for k in self.deployed if self.names[k] not in scores]
        if missing:
            raise BadRequest(f"'scores' misses deployed model(s) {', '.join(missing)}")
        return row

    def record(self, name: str) -> None:
        now = time.monotonic()
        self.routed[name] += 1
        self.recent.append((now, name))
        self.forget(now)

    def forget(self, now: float) -> None:
        while self.recent and self.recent[0][0] < now - self.window_s:
            self.recent.popleft()

    async def forward(self, request: Request) -> Response:
        """Route one OpenAI request and relay the server's answer."""
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return self.reject(f"the body is not JSON: {err}")
        if not isinstance(body, dict):
            return self.reject("the body is not a JSON object")
        try:
            name = await self.choose(body)
        except ValueError as err:  # BadRequest, or a predictor's own rejection
            return self.reject(str(err).splitlines()[0] if str(err) else type(err).__name__)
        self.record(name)
        sent = {key: value for key, value in body.items() if key not in ROUTER_FIELDS} | {"model": name}
        server = self.replicas[name].next()
        url = self.upstreams[server] + request.url.path
        headers = {h: request.headers[h] for h in PASSED_HEADERS if h in request.headers}
        self.in_flight[name] += 1
        try:
            upstream = await self.client.send(self.client.build_request("POST", url, json=sent, headers=headers),
                                              stream=True)
        except httpx.TransportError as err:
            self.in_flight[name] -= 1
            self.failed[name] += 1
            return error_response(502, f"the server of model '{name}' at {self.upstreams[server]} did not answer "
                                       f"({type(err).__name__})", "upstream_error")
        return StreamingResponse(self.relay(upstream, name), status_code=upstream.status_code,
                                 headers={h: upstream.headers[h] for h in RETURNED_HEADERS if h in upstream.headers})

    async def relay(self, upstream: httpx.Response, name: str):
        """The server's body as it comes; then the connection is released and the request no longer in flight.
        A server that fails mid-answer is counted, and the client's connection is cut."""
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.TransportError:
            self.failed[name] += 1
            raise
        finally:
            await upstream.aclose()
            self.in_flight[name] -= 1

    def reject(self, reason: str) -> Response:
        self.bad_requests += 1
        return error_response(400, reason, "invalid_request_error")

    def collect(self):
        """The Prometheus metric families (prometheus_client's collector protocol)."""
        now = time.monotonic()
        self.forget(now)
        span = min(self.window_s, now - self.started) or math.inf
        recent = Counter(name for _, name in self.recent)
        total = sum(recent.values())
        families = {
            "requests": CounterMetricFamily("routerplan_requests", "Requests routed to the model", labels=["model"]),
            "failed": CounterMetricFamily("routerplan_upstream_errors", "Requests whose server did not answer "
                                          "(502) or failed mid-answer", labels=["model"]),
            "in_flight": GaugeMetricFamily("routerplan_requests_in_flight", "Requests routed to the model and not "
                                           "yet answered in full", labels=["model"]),
            "planned_share": GaugeMetricFamily("routerplan_planned_share", "The model's share in the plan",
                                               labels=["model"]),
            "observed_share": GaugeMetricFamily("routerplan_observed_share", "The model's share of the requests "
                                                f"routed in the last {self.window_s:g} s (NaN: none)",
                                                labels=["model"]),
            "planned_load": GaugeMetricFamily("routerplan_planned_load_rps", "The model's load in the plan, "
                                              "requests/s", labels=["model"]),
            "observed_load": GaugeMetricFamily("routerplan_observed_load_rps", "Requests/s routed to the model "
                                               f"over the last {self.window_s:g} s", labels=["model"]),
        }
        for name in (self.names[k] for k in self.deployed):
            families["requests"].add_metric([name], self.routed[name])
            families["failed"].add_metric([name], self.failed[name])
            families["in_flight"].add_metric([name], self.in_flight[name])
            families["planned_share"].add_metric([name], float(self.planned_share[name]))
            families["observed_share"].add_metric([name], recent[name] / total if total else math.nan)
            families["planned_load"].add_metric([name], float(self.planned_load[name]))
            families["observed_load"].add_metric([name], recent[name] / span)
        bad = CounterMetricFamily("routerplan_bad_requests", "Requests rejected with a 400")
        bad.add_metric([], self.bad_requests)
        return [*families.values(), bad]


def error_response(status: int, message: str, kind: str) -> JSONResponse:
    """OpenAI's error object with a one-line message."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def build_router(instance: Instance, plan: Plan, upstreams: Mapping[str, str] | None = None,
                 predictor: Predictor | None = None, seed: int = 0, window_s: float = WINDOW_S) -> Router:
    """A router for a deployable plan (`ExportError` otherwise). `upstreams` overrides, by model name, the
    root URL of a model's server (of a replica's, by its label NAME#r, SPEC 4.5); the others are where
    `launch.sh` of the export starts them."""
    check_deployable(instance, plan)
    roots = {server.label: server.url for server in servers(instance, plan)}
    for name, url in (upstreams or {}).items():
        if name not in roots:
            raise RouteError(f"--upstream {name}={url}: '{name}' is not a deployed model of the plan "
                             f"(deployed: {', '.join(roots)})")
        roots[name] = server_root(name, url)
    return Router(instance, plan, roots, predictor or ReplayPredictor(instance), seed, window_s)


def build_app(router: Router) -> Starlette:
    """The ASGI app: the OpenAI endpoints, /metrics and /health; its lifespan holds the client to the servers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(router)

    @asynccontextmanager
    async def lifespan(app):
        async with httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, trust_env=False,
                                     limits=httpx.Limits(max_connections=None)) as client:
            router.client = client
            yield
        router.client = None

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    routes = [Route(path, router.forward, methods=["POST"]) for path in ENDPOINTS]
    routes += [Route("/metrics", metrics), Route("/health", health)]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(router: Router, host: str = HOST, port: int = ROUTER_PORT) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn finishes the requests in flight, then stops)."""
    uvicorn.run(build_app(router), host=host, port=port)
