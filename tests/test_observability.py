"""Metrics at /metrics and the JSON access log, against a real basic-auth MLflow and a
real Redis; multiprocess metrics through a real gunicorn with two workers.

Metrics are process globals, so every in-process test compares before and after."""
import base64
import collections
import logging
import os
import re
import signal
import subprocess
import threading
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gunicorn import gunicorn
from tests.support.processes import children, free_port
from tests.support.proxy import MlflowProxy

ROOT = Path(__file__).resolve().parent.parent
ACCESS = "mlflow_logs.access"


def scrape(get):
    """{(sample name, sorted label pairs): value} of one /metrics answer."""
    response = get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def deltas_by(before, after, name, label, **fixed):
    """{value of ``label``: change} for the samples of ``name`` that match ``fixed``."""
    found = collections.Counter()
    for (sample, pairs), value in after.items():
        labels = dict(pairs)
        if sample == name and all(labels.get(k) == v for k, v in fixed.items()):
            change = value - before.get((sample, pairs), 0)
            if change:
                found[labels[label]] += change
    return dict(found)


@pytest.fixture
def logs(caplog):
    """Every log record (the access log included, which does not propagate)."""
    caplog.set_level(logging.DEBUG)
    access = logging.getLogger(ACCESS)
    access.addHandler(caplog.handler)
    yield caplog
    access.removeHandler(caplog.handler)


def access_lines(logs):
    return [orjson.loads(r.getMessage()) for r in logs.records if r.name == ACCESS]


@pytest.fixture
def client(cached_app):
    return cached_app().test_client()


def test_requests_counted_and_timed_per_route_and_status(client):
    before = scrape(client.get)
    client.post("/mlflow/runs", json={"tracking_uri": "file:///etc"})
    client.post("/mlflow/runs", json={"tracking_uri": "file:///etc"})
    client.post("/health", data="x", content_type="text/plain")
    client.get("/no/such/path/abc123")
    after = scrape(client.get)
    runs_422 = dict(route="/mlflow/runs", method="POST", status="422")
    assert delta(before, after, "mlflow_logs_http_requests_total", **runs_422) == 2
    assert delta(before, after, "mlflow_logs_http_request_duration_seconds_count", **runs_422) == 2
    assert delta(before, after, "mlflow_logs_http_request_duration_seconds_bucket",
                 le="+Inf", **runs_422) == 2
    assert delta(before, after, "mlflow_logs_http_request_duration_seconds_sum", **runs_422) > 0
    assert delta(before, after, "mlflow_logs_http_requests_total",
                 route="/health", method="POST", status="415") == 1
    # An unknown path is counted under one label, never as itself.
    assert delta(before, after, "mlflow_logs_http_requests_total",
                 route="unmatched", method="GET", status="404") == 1
    assert "abc123" not in client.get("/metrics").get_data(as_text=True)


def test_mlflow_requests_per_endpoint_match_the_calls_made(client, as_user, mlflow_server,
                                                           mlflow_calls):
    before = scrape(client.get)
    answer = client.post("/mlflow/runs", json=as_user(experiment_name="shared-exp", refresh=True))
    assert answer.status_code == 200
    calls = collections.Counter(mlflow_calls)
    after = scrape(client.get)
    assert len(calls) >= 3  # search, get-by-name, histories: several endpoints
    assert deltas_by(before, after, "mlflow_logs_mlflow_requests_total", "endpoint") == calls
    assert deltas_by(before, after, "mlflow_logs_mlflow_requests_total", "status") == \
        {"200": sum(calls.values())}
    assert deltas_by(before, after, "mlflow_logs_mlflow_request_duration_seconds_count",
                     "endpoint") == calls
    text = client.get("/metrics").get_data(as_text=True)
    assert not [run_id for run_id in mlflow_server.ids["runs"].values() if run_id in text]


def test_mlflow_retries_and_failures_counted_by_status(client, as_user, mlflow_server):
    run_id = mlflow_server.ids["runs"]["finished"]
    with MlflowProxy(mlflow_server.uri) as proxy:
        proxy.refuse["/api/2.0/mlflow/runs/get"] = 503
        before = scrape(client.get)
        body = dict(as_user(run_id=run_id), tracking_uri=proxy.uri)
        assert client.post("/mlflow/runs", json=body).status_code == 502
        after = scrape(client.get)
    # Each attempt (one call, MLFLOW_MAX_RETRIES=2 retries) is an MLflow request.
    assert delta(before, after, "mlflow_logs_mlflow_requests_total",
                 endpoint="/api/2.0/mlflow/runs/get", status="503") == 3
    closed = f"http://127.0.0.1:{free_port()}"
    before = after
    assert client.post("/mlflow/experiments", json=as_user(tracking_uri=closed)).status_code == 502
    after = scrape(client.get)
    assert delta(before, after, "mlflow_logs_mlflow_requests_total",
                 endpoint="/api/2.0/mlflow/experiments/search", status="unreachable") == 1
    assert delta(before, after, "mlflow_logs_http_requests_total",
                 route="/mlflow/experiments", method="POST", status="502") == 1


def test_cache_counters_move_on_a_repeated_poll(client, as_user, mlflow_server):
    body = as_user(run_id=mlflow_server.ids["runs"]["finished"])
    before = scrape(client.get)
    assert client.post("/mlflow/runs", json=body).headers["X-Cache"] == "MISS"
    middle = scrape(client.get)
    assert client.post("/mlflow/runs", json=body).headers["X-Cache"] == "HIT"
    after = scrape(client.get)
    lookups = "mlflow_logs_cache_lookups_total"
    assert deltas_by(before, middle, lookups, "result", kind="run") == {"miss": 1}
    assert deltas_by(before, middle, lookups, "result", kind="listing") == {"miss": 1}
    assert deltas_by(middle, after, lookups, "result", kind="run") == {"hit": 1}
    assert deltas_by(middle, after, lookups, "result", kind="listing") == {"hit": 1}
    assert deltas_by(middle, after, lookups, "result", kind="grant") == {"hit": 1}
    assert deltas_by(before, after, "mlflow_logs_cache_responses_total", "outcome") == \
        {"MISS": 1, "HIT": 1}
    assert not deltas_by(before, after, "mlflow_logs_cache_errors_total", "operation")


def test_redis_errors_counted_when_redis_is_down(cached_app, as_user, mlflow_server):
    # The back-off outlasts the request, however slow the machine is.
    client = cached_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                        CACHE_RETRY_AFTER=300).test_client()
    before = scrape(client.get)
    answer = client.post("/mlflow/runs", json=as_user(run_id=mlflow_server.ids["runs"]["finished"]))
    after = scrape(client.get)
    assert answer.status_code == 200 and answer.headers["X-Cache"] == "MISS"
    assert answer.get_json()["total_runs"] == 1
    # The first failure (reading the query's listing) parks the cache for CACHE_RETRY_AFTER.
    assert deltas_by(before, after, "mlflow_logs_cache_errors_total", "operation") == {"get": 1}


@pytest.fixture
def proxied_client(cached_app):
    """The service behind one proxy (PROXY_FIX_HOPS=1), which sets X-Forwarded-For."""
    return cached_app(PROXY_FIX_HOPS=1).test_client()


def test_access_log_line_has_every_field(proxied_client, as_user, mlflow_server, mlflow_calls,
                                         logs):
    client = proxied_client
    body = as_user(run_id=mlflow_server.ids["runs"]["finished"])
    answer = client.post("/mlflow/runs", json=body, headers={
        "X-Request-ID": "dash-42.poll_7", "X-Forwarded-For": "10.1.2.3"})
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "dash-42.poll_7"
    [line] = access_lines(logs)
    assert set(line) == {"time", "request_id", "method", "route", "path", "status",
                         "duration_ms", "bytes", "cache", "mlflow_calls", "client"}
    assert line["request_id"] == "dash-42.poll_7"
    assert (line["method"], line["route"], line["path"]) == ("POST", "/mlflow/runs", "/mlflow/runs")
    assert line["status"] == 200 and line["bytes"] == len(answer.data)
    assert line["cache"] == "MISS" and line["mlflow_calls"] == len(mlflow_calls) > 0
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert line["client"] == "10.1.2.3"  # after ProxyFix (PROXY_FIX_HOPS=1)
    # The id is on the service's other log lines of this request too (those of its
    # thread: histories are fetched on a pool's threads, which show "-").
    mine = [r for r in logs.records if r.name != ACCESS and r.thread == threading.get_ident()]
    assert mine and {r.request_id for r in mine} == {"dash-42.poll_7"}


def test_request_id_generated_or_replaced_and_returned_on_errors(client, logs):
    hex_id = re.compile(r"[0-9a-f]{32}")
    cases = [({}, 422), ({"X-Request-ID": "two words"}, 422), ({"X-Request-ID": "x" * 129}, 422),
             ({"X-Request-ID": "id;drop=1"}, 422), ({"X-Request-ID": ""}, 422)]
    answers = [client.post("/mlflow/runs", json={"tracking_uri": "file:///etc"}, headers=h)
               for h, _ in cases]
    answers.append(client.get("/nowhere", headers={"X-Request-ID": "ok-" + "y" * 125}))
    answers.append(client.post("/health", data="x", content_type="text/plain"))
    ids = [a.headers["X-Request-ID"] for a in answers]
    assert [a.status_code for a in answers] == [422] * 5 + [404, 415]
    assert all(hex_id.fullmatch(i) for i in ids[:5] + ids[6:])
    assert ids[5] == "ok-" + "y" * 125  # 128 characters: kept
    assert len(set(ids)) == len(ids)
    assert [line["request_id"] for line in access_lines(logs)] == ids
    assert [line["status"] for line in access_lines(logs)] == [422] * 5 + [404, 415]


def test_no_secret_in_logs_or_metrics(client, as_user, mlflow_server, logs):
    body = as_user(run_id=mlflow_server.ids["runs"]["finished"])
    password = body["password"]
    basic = base64.b64encode(f"admin:{password}".encode()).decode()
    secrets = [password, basic, "query-secret-token"]
    for attempt in (body, dict(body, password="wrong-" + password),
                    dict(body, filter_string="params.note = 'body-marker-7f3a'"),
                    dict(body, experiment_name="body-marker-7f3a")):
        client.post("/mlflow/runs?token=query-secret-token", json=attempt)
    # the credentials in the Authorization header instead of the body
    in_header = {k: v for k, v in body.items() if k not in ("username", "password")}
    assert client.post("/mlflow/runs?token=query-secret-token", json=in_header,
                       headers={"Authorization": f"Basic {basic}"}).status_code == 200
    client.post("/mlflow/runs", data=b'{"password": "' + password.encode() + b'", "x"',
                content_type="application/json")  # broken JSON: 400
    text = client.get("/metrics").get_data(as_text=True)
    lines = [r.getMessage() for r in logs.records] + [str(r.__dict__) for r in logs.records]
    assert len(access_lines(logs)) == 7  # 6 POSTs and the GET /metrics
    assert {line["status"] for line in access_lines(logs)} >= {200, 401, 400}
    for secret in secrets:  # at any level, DEBUG included
        assert secret not in text
        assert not [line for line in lines if secret in line], secret
    # Body fields reach the log only in urllib3's DEBUG lines of the URLs sent to MLflow.
    assert "body-marker-7f3a" not in text
    assert not [r for r in logs.records if r.levelno >= logging.INFO
                and "body-marker-7f3a" in str(r.__dict__)]


def test_metrics_can_be_switched_off(cached_app):
    client = cached_app(METRICS_ENABLED=False).test_client()
    answer = client.get("/metrics")
    assert answer.status_code == 404 and answer.get_json()["success"] is False


# --- several gunicorn workers -------------------------------------------------

def _stale_metrics(directory):
    """A worker's metric file as an earlier run would have left it: 1000 requests."""
    code = ("from app import observability as o\n"
            "o.HTTP_REQUESTS.labels('/health', 'POST', '422').inc(1000)\n")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(directory))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    assert list(directory.glob("counter_*.db"))


@pytest.fixture
def gunicorn_metrics(redis_url, tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    _stale_metrics(directory)
    env = {"CACHE_KEY_PREFIX": f"gunicorn-obs-test-{uuid.uuid4().hex[:12]}:",
           "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    with gunicorn(tmp_path, redis_url, workers=2, env=env, access_log=tmp_path / "stdout") as svc:
        yield svc.base, svc.master, tmp_path / "stdout"


def _replace_workers(master):
    """Kill every worker and wait for gunicorn to start as many new ones."""
    old = children(master)
    assert len(old) == 2
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        now = children(master)
        if len(now) == 2 and not set(now) & set(old):
            return now
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not replace workers {old}: {children(master)}")


def test_metrics_add_up_across_gunicorn_workers(gunicorn_metrics):
    base, proc, stdout = gunicorn_metrics
    first, second = 15, 25

    def health_422s(n):
        for _ in range(n):  # a new connection each: either worker may take it
            assert requests.post(f"{base}/health", json={}, timeout=10).status_code == 422

    def total():
        return scrape(lambda path: requests.get(base + path, timeout=10)).get(
            ("mlflow_logs_http_requests_total",
             (("method", "POST"), ("route", "/health"), ("status", "422"))), 0)

    health_422s(first)
    # Workers that answered those are gone: the remaining counts live only in their files.
    _replace_workers(proc.pid)
    health_422s(second)
    # Every scrape, whichever new worker answers, sees all of them (and not the 1000 of
    # the stale file gunicorn removed at start).
    assert [total() for _ in range(6)] == [first + second] * 6
    lines = [orjson.loads(line) for line in stdout.read_bytes().splitlines()]
    assert sum(1 for line in lines if line["route"] == "/health") == first + second
