"""The service as it is deployed: gunicorn with gunicorn.conf.py, behind a path prefix."""
import uuid

import pytest
import requests

from tests.support.gunicorn import gunicorn as start_gunicorn


@pytest.fixture(scope="module")
def gunicorn(redis_url, tmp_path_factory):
    env = {"CACHE_KEY_PREFIX": f"gunicorn-test-{uuid.uuid4().hex[:12]}:", "PROXY_FIX_HOPS": "1"}
    with start_gunicorn(tmp_path_factory.mktemp("gunicorn"), redis_url, workers=2, env=env) as svc:
        yield svc.base


def test_cached_runs_through_gunicorn(gunicorn, as_user, mlflow_server):
    body = as_user(run_id=mlflow_server.ids["runs"]["long"])
    first = requests.post(f"{gunicorn}/mlflow/runs", json=body, timeout=60)
    answers = [requests.post(f"{gunicorn}/mlflow/runs", json=body, timeout=60) for _ in range(3)]
    assert first.status_code == 200
    assert {a.headers["X-Cache"] for a in answers} <= {"HIT", "PARTIAL"}
    assert all(a.json() == first.json() for a in answers)
    assert first.json()["runs"][0]["metrics_history"][0]["total_points"] > 25_000


def test_errors_and_docs_behind_a_prefix(gunicorn):
    response = requests.post(f"{gunicorn}/mlflow/runs", json={"tracking_uri": "file:///etc"}, timeout=5)
    assert response.status_code == 422 and response.json()["success"] is False
    page = requests.get(f"{gunicorn}/docs", headers={"X-Forwarded-Prefix": "/logs"}, timeout=5).text
    assert "/logs/openapi.json" in page


def test_a_forwarded_prefix_is_only_ever_a_path(gunicorn):
    for prefix in ("//evil.example", "/logs, //evil.example", "https://evil.example"):
        page = requests.get(f"{gunicorn}/docs", headers={"X-Forwarded-Prefix": prefix},
                            timeout=5).text
        assert 'url: "/openapi.json"' in page and "evil" not in page
