"""The service as it is deployed: gunicorn with gunicorn.conf.py, behind a path prefix."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.mlflow_server import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gunicorn(redis_url, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = dict(os.environ, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="2",
               REDIS_URL=redis_url, SECRET_KEY="gunicorn-test-secret",
               CACHE_KEY_PREFIX=f"gunicorn-test-{port}:", PROXY_FIX_HOPS="1")
    with open(log, "wb") as out:  # a file, not a pipe nobody reads (it would fill and block)
        proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c",
                                 "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                                start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a busy machine boots workers slowly
    while True:
        try:
            requests.post(f"{base}/health", json={}, timeout=1)
            break
        except requests.RequestException:  # a worker still booting may time out the read
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError(f"gunicorn did not answer at {base}: "
                                   f"{log.read_text(errors='replace')[-4000:]}") from None
            time.sleep(0.1)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


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
