"""The router on a real port of 127.0.0.1, in front of stand-in vLLM servers (tests/standin_vllm.py)."""

import asyncio
import json
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from conftest import DATA, REPO, wait_for
from models.cli import route as route_cli
from models.methods.exact import solve_exact
from models.output.router import RouteError, build_app, build_router, load_predictor
from models.problem.plan import write_plan
from standin_vllm import free_ports, serve_in_thread

ROUNDS = 100  # replays of tiny's four prompts
BOUND_S = 30  # every wait on a server gives up after this long


@pytest.fixture(scope="module")
def tiny_plan(tiny):
    return solve_exact(tiny)


@pytest.fixture(scope="module")
def upstreams(tiny):
    servers = {name: serve_in_thread() for name in tiny.model_names}
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def roots(servers) -> dict[str, str]:
    return {name: f"http://127.0.0.1:{server.server_address[1]}" for name, server in servers.items()}


@contextmanager
def running(router):
    """The router's app served by uvicorn on a free port, in a thread; stopped on leaving."""
    server = uvicorn.Server(uvicorn.Config(build_app(router), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, BOUND_S)
    try:
        yield httpx.Client(base_url=f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}",
                           timeout=BOUND_S, trust_env=False)
    finally:
        server.should_exit = True
        thread.join(BOUND_S)


@pytest.fixture(scope="module")
def client(tiny, tiny_plan, upstreams):
    with running(build_router(tiny, tiny_plan, roots(upstreams), seed=0)) as client:
        yield client


def error_of(response) -> str:
    message = response.json()["error"]["message"]
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- routing


def test_replayed_prompts_reach_each_model_in_its_planned_share(tiny, tiny_plan, upstreams, client):
    before = {name: len(server.bodies) for name, server in upstreams.items()}
    for _ in range(ROUNDS):
        for prompt_id, row in zip(tiny.prompt_ids, tiny.scores):
            response = client.post("/v1/completions", json={
                "model": "any", "prompt": "x", "prompt_id": prompt_id,
                "scores": dict(zip(tiny.model_names, row.tolist()))})
            assert response.status_code == 200
    counts = np.array([len(upstreams[name].bodies) - before[name] for name in tiny.model_names])
    # Unsplit prompts go where the price rule says, every time; a split prompt is a draw with its fractions,
    # so a model's count is binomial around ROUNDS x N x share, with variance ROUNDS x sum f (1 - f) over the
    # split prompts' fractions f. Four standard deviations bound it (the seed fixes the draws).
    fractions = tiny_plan.routing.fractions(tiny.scores)
    expected = ROUNDS * fractions.sum(axis=0)
    sd = np.sqrt(ROUNDS * (fractions * (1 - fractions)).sum(axis=0))
    assert np.allclose(expected, ROUNDS * tiny.prompt_count * np.array(tiny_plan.shares))
    assert np.all(np.abs(counts - expected) <= 4 * sd) and counts.sum() == ROUNDS * tiny.prompt_count
    sent = upstreams["large"].bodies[-1]
    assert "scores" not in sent and "prompt_id" not in sent and sent["prompt"] == "x"
    assert all(body["model"] == name for name, server in upstreams.items() for body in server.bodies)


def test_unsplit_prompts_follow_the_price_rule(tiny, upstreams, client):
    # tiny's plan: price(large) - price(small) = 0.4; p1 and p4 gain less from large, p3 gains 0.8
    for scores, model in [({"small": 0.9, "large": 1.0}, "small"), ({"small": 0.2, "large": 1.0}, "large")]:
        before = len(upstreams[model].bodies)
        assert client.post("/v1/completions", json={"prompt": "x", "scores": scores}).json()["model"] == model
        assert len(upstreams[model].bodies) == before + 1


def test_streaming_passes_through(client):
    with client.stream("POST", "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "hi"}], "stream": True, "prompt_id": "p3"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert [json.loads(e[len("data: "):])["choices"][0]["delta"]["content"] for e in events[:-1]] == [
        "part0", "part1", "part2"]
    assert json.loads(events[0][len("data: "):])["model"] == "large"  # p3 gains 0.8 > 0.4 on large


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "the body is not JSON"),
    (b"[1, 2]", "the body is not a JSON object"),
    (json.dumps({"prompt": "x", "scores": {"small": 0.5}}).encode(), "misses deployed model(s) large"),
    (json.dumps({"prompt": "x", "scores": {"small": 0.5, "large": 0.5, "huge": 1}}).encode(),
     "names an unknown model 'huge'"),
    (json.dumps({"prompt": "x", "scores": {"small": "high", "large": 0.5}}).encode(), "is 'high', not a number"),
    (json.dumps({"prompt": "x"}).encode(), "no 'scores' in the body, and no 'prompt_id'"),
    (json.dumps({"prompt": "x", "prompt_id": "p99"}).encode(), "prompt_id 'p99' is not a prompt of instance"),
])
def test_a_malformed_request_is_a_400_with_a_one_line_reason(upstreams, client, body, reason):
    before = sum(len(server.bodies) for server in upstreams.values())
    response = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and reason in error_of(response)
    assert sum(len(server.bodies) for server in upstreams.values()) == before


def test_a_dead_upstream_is_a_502_naming_the_model(tiny, tiny_plan, upstreams):
    dead = f"http://127.0.0.1:{free_ports(1)}"
    with running(build_router(tiny, tiny_plan, {**roots(upstreams), "large": dead})) as client:
        response = client.post("/v1/completions", json={"prompt": "x", "prompt_id": "p3"})
        metrics = parsed_metrics(client)
    assert response.status_code == 502 and f"the server of model 'large' at {dead}" in error_of(response)
    assert metrics["routerplan_upstream_errors_total"]["large"] == 1


def parsed_metrics(client) -> dict[str, dict[str, float]]:
    """/metrics as {sample name: {model label: value}}, read by Prometheus's own text parser."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[sample.labels.get("model", "")] = sample.value
    return found


def test_metrics_parse_as_prometheus_text(tiny, tiny_plan, upstreams):
    with running(build_router(tiny, tiny_plan, roots(upstreams))) as client:
        routed = [client.post("/v1/completions", json={"prompt": "x", "prompt_id": prompt_id}).json()["model"]
                  for prompt_id in tiny.prompt_ids]
        client.post("/v1/completions", json={"prompt": "x"})  # a 400
        metrics = parsed_metrics(client)
    tally = {name: routed.count(name) for name in tiny.model_names}
    assert metrics["routerplan_requests_total"] == tally
    assert metrics["routerplan_observed_share"] == {name: tally[name] / len(routed) for name in tally}
    assert metrics["routerplan_planned_share"] == dict(zip(tiny_plan.models.name, tiny_plan.shares))
    assert metrics["routerplan_planned_load_rps"] == dict(zip(tiny_plan.models.name, tiny_plan.models.load_rps))
    assert metrics["routerplan_requests_in_flight"] == {"small": 0, "large": 0}
    assert metrics["routerplan_bad_requests_total"] == {"": 1}
    assert set(metrics["routerplan_observed_load_rps"]) == {"small", "large"}


# ---------------------------------------------------------------- predictors


def test_a_pluggable_predictor_scores_requests_without_scores(tiny, tiny_plan, upstreams):
    def length_predictor(body):  # long prompts to the large model
        if "prompt" not in body:
            raise ValueError("no prompt to predict from")
        return {"small": 0.5, "large": 1.0 if len(body["prompt"]) > 10 else 0.5}

    async def async_predictor(body):
        await asyncio.sleep(0)
        return {"small": 1.0, "large": 0.0}

    with running(build_router(tiny, tiny_plan, roots(upstreams), predictor=length_predictor)) as client:
        assert client.post("/v1/completions", json={"prompt": "a" * 20}).json()["model"] == "large"
        assert client.post("/v1/completions", json={"prompt": "a"}).json()["model"] == "small"
        response = client.post("/v1/chat/completions", json={"messages": []})
        assert response.status_code == 400 and error_of(response) == "no prompt to predict from"
    with running(build_router(tiny, tiny_plan, roots(upstreams), predictor=async_predictor)) as client:
        assert client.post("/v1/completions", json={"prompt": "a" * 20}).json()["model"] == "small"


@pytest.mark.parametrize("spec, reason", [("json", "not of the form module:function"),
                                          ("no_such_module_xyz:f", "No module named"),
                                          ("json:no_such_function", "no attribute"),
                                          ("json:__doc__", "not callable")])
def test_a_bad_predictor_is_refused(spec, reason):
    with pytest.raises(RouteError, match=reason):
        load_predictor(spec)
    assert load_predictor("json:loads") is json.loads


# ---------------------------------------------------------------- the command line


@pytest.fixture
def plan_file(tiny_plan, tmp_path):
    path = tmp_path / "plan.json"
    write_plan(tiny_plan, path)
    return path


def broken_plan(plan_file, case: str):
    text = plan_file.read_text()
    if case == "bad JSON":
        plan_file.write_text(text[:-20])
    elif case == "another instance":
        plan_file.write_text(text.replace('"instance": "tiny"', '"instance": "paper-4xA100"'))
    elif case == "missing file":
        plan_file.unlink()


@pytest.mark.parametrize("case, extra, words", [
    ("missing file", [], "file is missing"),
    ("bad JSON", [], "not valid JSON"),
    ("another instance", [], "the plan is for 'paper-4xA100', not for instance 'tiny'"),
    ("", ["--upstream", "huge=http://127.0.0.1:1"], "'huge' is not a deployed model of the plan"),
    ("", ["--upstream", "large=http://127.0.0.1:1/v1"], "not a server root"),
    ("", ["--upstream", "large"], "is not NAME=URL"),
    ("", ["--predictor", "no_such_module_xyz:f"], "--predictor"),
])
def test_route_exits_2_on_bad_input_in_one_line(plan_file, capsys, case, extra, words):
    broken_plan(plan_file, case)
    assert route_cli.main([str(plan_file), "--instance", str(DATA / "tiny"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_route_refuses_a_plan_whose_routing_breaks_the_target(plan_file, capsys):
    # price gap 0.3 instead of 0.4: p2 wholly to large, 67 ms > 60 ms (tests/test_realized.py)
    plan = json.loads(plan_file.read_text())
    plan["models"][1]["price"] = plan["models"][0]["price"] + 0.3
    plan["routing"]["splits"] = []
    plan_file.write_text(json.dumps(plan))
    assert route_cli.main([str(plan_file), "--instance", str(DATA / "tiny")]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not deployable: its published routing breaks the target" in err


def test_solve_py_route_serves_until_ctrl_c(plan_file, upstreams):
    port = free_ports(1)
    upstream_args = [arg for name, url in roots(upstreams).items() for arg in ("--upstream", f"{name}={url}")]
    route = subprocess.Popen([sys.executable, str(REPO / "solve.py"), "route", str(plan_file), "--instance",
                              str(DATA / "tiny"), "--port", str(port), *upstream_args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=BOUND_S, trust_env=False) as client:
            assert wait_for(lambda: answers(client), BOUND_S)
            assert client.post("/v1/completions", json={"prompt": "x", "prompt_id": "p1"}).json()["model"] == "small"
    finally:
        route.send_signal(signal.SIGINT)
        try:
            route.communicate(timeout=BOUND_S)
        except subprocess.TimeoutExpired:
            route.kill()
            route.communicate()
    assert route.returncode == 0


def answers(client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False
