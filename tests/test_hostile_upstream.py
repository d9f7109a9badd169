"""What a hostile MLflow can cost the service as deployed: gunicorn (one worker of 8
threads, so its memory is the one measured, /proc/<pid>/status) against a misbehaving
HTTP server the test starts (tests/support/hostile_mlflow.py), with the default limits.

Each test states its bound on time or memory; the figures are printed (pytest -s).
"""
import concurrent.futures
import time

import pytest
import requests

from tests.support import hostile_mlflow
from tests.support.gunicorn import gunicorn
from tests.support.hostile_mlflow import HostileMlflow
from tests.support.memory import MB, measure

pytestmark = pytest.mark.server
THREADS = 8  # gunicorn.conf.py's default GUNICORN_THREADS
# Measured: +91 MB (endless pages), +64, +64, +30; before the limits +400, +856, +801, +30.
PEAK = 160 * MB


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with gunicorn(tmp_path_factory.mktemp("hostile"), None, workers=1, threads=THREADS) as svc:
        yield svc


def ask(service, mlflow, http_timeout, route="/mlflow/experiments"):
    """The service's answer and how long it took."""
    started = time.monotonic()
    response = requests.post(f"{service.base}{route}", timeout=http_timeout + 60, json={
        "tracking_uri": mlflow.uri, "insecure_tls": True, "http_timeout": http_timeout})
    return response, time.monotonic() - started


def test_dribbling_servers_hold_no_thread_past_http_timeout(service):
    """Every thread of the worker on a dribbling MLflow at once: each is freed with a 504
    at http_timeout (not after the dribble, 30 s), and the worker answers again."""
    [worker] = service.workers()
    with HostileMlflow(hostile_mlflow.dribble_body) as mlflow, measure(worker) as usage, \
            concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda _: ask(service, mlflow, 2), range(THREADS)))
    print(f"\n{THREADS} dribbles: {usage.describe()}; took "
          f"{min(t for _, t in answers):.2f}-{max(t for _, t in answers):.2f} s")
    for response, took in answers:
        assert response.status_code == 504, response.text
        assert 2 <= took < 2 + 1.0, took
    assert requests.get(f"{service.base}/healthz", timeout=5).status_code == 200
    assert usage.grew < 20 * MB


# (what the server sends, the setting the 502 names): each made when its test runs.
SENDERS = {
    "endless pages": (lambda: hostile_mlflow.endless_pages, "MLFLOW_MAX_PAGES=200"),
    "gzip bomb": (lambda: hostile_mlflow.gzip_bomb(300), "MLFLOW_MAX_ANSWER_MB=64"),
    "200 MB name": (lambda: hostile_mlflow.huge_name(200, length=False), "MLFLOW_MAX_ANSWER_MB=64"),
    "10 MB name": (lambda: hostile_mlflow.huge_name(10), "MLFLOW_MAX_FIELD_CHARS=65536"),
}


@pytest.mark.parametrize("sender", list(SENDERS))
def test_what_a_server_sends_costs_a_worker_bounded_memory(service, sender):
    """Endless experiment pages (1,000 a page), 300 MB of spaces gzipped to 300 KB, a 200 MB
    experiment name (no Content-Length: only reading tells), a 10 MB one: each a 502 naming
    the limit it passed, the worker's peak RSS at most PEAK above where it was."""
    make, setting = SENDERS[sender]
    [worker] = service.workers()
    with HostileMlflow(make()) as mlflow, measure(worker) as usage:
        response, took = ask(service, mlflow, 8)
    print(f"\n{sender}: {usage.describe()}; {response.status_code} in {took:.2f} s")
    assert response.status_code == 502, response.text[:300]
    assert setting in response.json()["message"]
    assert usage.grew < PEAK
