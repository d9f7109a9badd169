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
