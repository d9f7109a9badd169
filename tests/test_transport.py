"""TLS, unreachable, slow and misbehaving MLflow servers: 502/504, never a 500 or a hang."""
import json
import os
import socket
import threading
import time

import pytest

from tests.support import hostile_mlflow
from tests.support.calls import mlflow_requests, poll
from tests.support.hostile_mlflow import HostileMlflow


@pytest.fixture
def tls_body(mlflow_tls_server):
    def body(**fields):
        user, password = mlflow_tls_server.admin
        return {"tracking_uri": mlflow_tls_server.uri, "username": user, "password": password,
                "http_timeout": 60, **fields}
    return body


def test_self_signed_tls_with_insecure_tls(client, tls_body):
    response = client.post("/mlflow/runs", json=tls_body(experiment_name="shared-exp", limit=1))
    assert response.status_code == 200, response.get_json()
    health = client.post("/health", json=tls_body()).get_json()
    assert health["status"] == "healthy" and health["ssl_verification"] is False


def test_tls_verification_failure_is_502_with_advice(client, tls_body):
    response = client.post("/mlflow/experiments", json=tls_body(insecure_tls=False))
    assert response.status_code == 502
    message = response.get_json()["message"]
    assert "CERTIFICATE_VERIFY_FAILED" in message and "insecure_tls" in message


def test_a_grant_without_tls_checks_does_not_serve_a_request_with_them(cached_app, mlflow_tls_server):
    user, password = mlflow_tls_server.admin
    query = {"tracking_uri": mlflow_tls_server.uri, "username": user, "password": password,
             "run_id": mlflow_tls_server.ids["runs"]["finished"], "http_timeout": 60}
    client = cached_app().test_client()
    assert poll(client, dict(query, insecure_tls=True)).headers["X-Cache"] == "MISS"
    assert poll(client, dict(query, insecure_tls=True)).headers["X-Cache"] == "HIT"
    refused = poll(client, dict(query, insecure_tls=False), status=502)
    assert "CERTIFICATE_VERIFY_FAILED" in refused.get_json()["message"]


def test_unreachable_is_502(client):
    response = client.post("/mlflow/experiments", json={"tracking_uri": "http://127.0.0.1:9"})
    assert response.status_code == 502
    assert "Cannot reach MLflow" in response.get_json()["message"]


@pytest.mark.parametrize("route", ["/mlflow/experiments", "/mlflow/runs"])
def test_timeout_is_504_within_budget(client, silent_server, route):
    started = time.monotonic()
    response = client.post(route, json={"tracking_uri": silent_server, "http_timeout": 1})
    assert response.status_code == 504
    # Not before the budget is spent; the silent server never answers, so without the
    # deadline this would hang (the upper bound is a hang guard with room for a busy CI).
    assert 1 <= time.monotonic() - started < 1 + 10
    assert "http_timeout" in response.get_json()["message"]


def test_health_reports_timeout(client, silent_server):
    body = client.post("/health", json={"tracking_uri": silent_server, "http_timeout": 0.5}).get_json()
    assert body["status"] == "unhealthy" and body["error_code"] == 504


def test_transient_503_and_429_are_retried(client, scripted):
    ok = b'{"experiments": [{"experiment_id": "1", "name": "e", "lifecycle_stage": "active"}]}'
    mlflow = scripted((503, b"busy"), (429, b"slow down"), (200, ok))
    response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow.uri})
    assert response.status_code == 200
    assert response.get_json()["total_experiments"] == 1
    assert len(mlflow.paths) == 3


def test_persistent_503_is_502(client, scripted):
    mlflow = scripted(*[(503, b"down")] * 10)
    response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow.uri})
    assert response.status_code == 502
    assert "503" in response.get_json()["message"]
    assert len(mlflow.paths) == 3  # MLFLOW_MAX_RETRIES=2


@pytest.mark.parametrize("status, body, expected", [
    (200, b"<html>login page</html>", "not JSON"),
    (500, b'{"error_code": "INTERNAL_ERROR", "message": "db is locked"}', "db is locked"),
    (404, b"<html>nginx 404</html>", "404"),
])
def test_upstream_misbehaviour_is_502(client, scripted, status, body, expected):
    mlflow = scripted((status, body))
    response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow.uri})
    assert response.status_code == 502
    assert expected in response.get_json()["message"]


# --- other servers' bodies are never echoed --------------------------------------------------

ROUTES = ["/health", "/mlflow/experiments", "/mlflow/runs"]
SECRET = "internal-token-7f3a9"


def error_of(response):
    """The error text a caller sees: /health's ``error``, or the error body's message."""
    body = response.get_json()
    return body["error"] if response.request.path == "/health" else body["message"]


@pytest.mark.parametrize("status, body", [
    (404, f"<html><body>admin console, token {SECRET}</body></html>"),
    (404, json.dumps({"detail": "no such route", "token": SECRET})),
    (500, f"Traceback (most recent call last): ... password={SECRET}"),
    (200, f"<html>login page {SECRET}</html>"),
    (401, f"401 from the gateway in front ({SECRET})"),
    (403, json.dumps({"reason": SECRET})),
    (400, json.dumps([SECRET])),
    (302, f"moved to http://{SECRET}.internal/"),
    (503, f"upstream {SECRET} overloaded"),
    (500, json.dumps({"error_code": 42, "message": {"nested": SECRET}})),  # not MLflow's types
])
@pytest.mark.parametrize("route", ROUTES)
def test_another_servers_body_is_never_echoed(client, scripted, route, status, body):
    mlflow = scripted(*[(status, body.encode())] * 3)  # 503 is retried twice
    response = client.post(route, json={"tracking_uri": mlflow.uri, "http_timeout": 5})
    assert response.status_code == (200 if route == "/health" else {401: 401, 403: 403}.get(status, 502))
    assert SECRET not in response.get_data(as_text=True)
    message = error_of(response)
    if status in (401, 403):  # MLflow's auth answers these in text: nothing to say
        assert message.startswith(("MLflow rejected the credentials", "MLflow denied access"))
    elif status == 200:
        assert "not JSON" in message
    else:
        assert f"answered {status} to /api/2.0/mlflow/" in message
        assert message.endswith("with a body that is not an MLflow error.")


@pytest.mark.parametrize("route", ROUTES)
def test_mlflows_own_error_message_is_shown(client, scripted, route):
    body = {"error_code": "INTERNAL_ERROR", "message": "database is locked", "stack_trace": SECRET}
    mlflow = scripted((500, json.dumps(body).encode()))
    response = client.post(route, json={"tracking_uri": mlflow.uri, "http_timeout": 5})
    message = error_of(response)
    assert "database is locked" in message and "500" in message
    assert SECRET not in response.get_data(as_text=True)


def test_a_long_mlflow_message_is_cut(client, scripted):
    mlflow = scripted((500, json.dumps({"error_code": "X", "message": "m" * 5000}).encode()))
    response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow.uri})
    assert response.status_code == 502 and len(response.get_json()["message"]) < 1000


@pytest.fixture
def banner_server():
    """A TCP service that is not HTTP: it sends a banner (holding a secret) and hangs up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(f"SSH-2.0-OpenSSH_{SECRET}\r\n".encode())

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.parametrize("route", ROUTES)
def test_a_non_http_services_banner_is_never_echoed(client, banner_server, route):
    response = client.post(route, json={"tracking_uri": banner_server, "http_timeout": 5})
    assert response.status_code == (200 if route == "/health" else 502)
    assert SECRET not in response.get_data(as_text=True)
    assert "Cannot reach MLflow" in error_of(response)


# --- http_timeout is a deadline, however slowly MLflow sends ----------------------------------

@pytest.mark.parametrize("dribble", ["dribble_headers", "dribble_body", "tls_handshake"])
def test_a_dribbling_answer_is_a_504_at_http_timeout(client, dribble):
    """A byte every 0.2 s never trips a socket timeout; the deadline still ends the call."""
    endpoint = "/api/2.0/mlflow/experiments/search"
    counted = mlflow_requests(client, endpoint, "timeout")
    with HostileMlflow(getattr(hostile_mlflow, dribble, None)) as mlflow:
        if dribble == "tls_handshake":
            mlflow.tls_dribble()
        started = time.monotonic()
        response = client.post("/mlflow/experiments", json={
            "tracking_uri": mlflow.uri, "insecure_tls": True, "http_timeout": 2})
        took = time.monotonic() - started
    assert response.status_code == 504, response.get_json()
    assert "did not answer within http_timeout=2s" in response.get_json()["message"]
    assert 2 <= took < 2 + 0.5  # the deadline, not a socket timeout, ended it
    assert mlflow_requests(client, endpoint, "timeout") == counted + 1


def test_a_forked_workers_calls_have_their_deadline_too():
    """A process forked after its parent's watchdog started (gunicorn forks its workers)
    has a watchdog of its own."""
    from app.mlflow.session import shared_session, watched

    with watched(time.monotonic() + 1):
        pass  # the parent's watchdog runs
    with HostileMlflow(hostile_mlflow.dribble_body) as mlflow:
        child = os.fork()
        if child == 0:  # the child: exit 0 only if its call was cut at its deadline
            started = time.monotonic()
            try:
                with watched(started + 1) as watch:
                    shared_session(8).get(mlflow.uri, timeout=30).content
            except Exception:  # noqa: BLE001  any failure: what matters is when and why
                pass
            os._exit(0 if watch.fired and time.monotonic() - started < 3 else 1)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
