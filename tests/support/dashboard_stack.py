"""The stack around the dashboard page for its tests: the service under gunicorn, Chromium,
the pytest fixtures (imported by the modules that use them), and the API called the way
the tests compare the charts with it. The page itself: tests/support/dashboard.py.
"""
import contextlib
import json
import os
import uuid
from pathlib import Path

import pytest
import redis
import requests

from tests.support.browser import chromium_or_skip
from tests.support.calls import basic
from tests.support.dashboard import DashboardPage
from tests.support.gunicorn import REPO, gunicorn

HTTP_TIMEOUT = 60  # what the tests' own API calls allow MLflow


# --- the API as the tests call it (to compare with what the page shows) ------------------

def api_runs(base: str, auth: tuple, **params) -> dict:
    """GET /mlflow/runs with ``params`` (lists repeated), credentials in the header."""
    params.setdefault("http_timeout", HTTP_TIMEOUT)
    response = requests.get(f"{base}/mlflow/runs", params=params, timeout=HTTP_TIMEOUT + 30,
                            headers={"Authorization": basic(*auth),
                                     "Accept-Encoding": "identity"})
    assert response.status_code == 200, response.text[:500]
    return response.json()


def series(answer: dict) -> dict:
    """{metric: {run_id: {"steps": [...], "values": [...]}}} of an answer, in its order."""
    out = {}
    for run in answer["runs"]:
        for metric in run["metrics_history"]:
            out.setdefault(metric["metric_name"], {})[run["run_id"]] = {
                "steps": [p["step"] for p in metric["history"]],
                "values": [p["value"] for p in metric["history"]]}
    return out


def drawn(state: dict) -> dict:
    """The same shape from the page's state: what its charts hold."""
    return {metric: {run_id: {"steps": line["steps"], "values": line["values"]}
                     for run_id, line in chart["runs"].items()}
            for metric, chart in state["charts"].items()}


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard_browser():
    """Chromium for the module; the test is skipped, with the reason, without one."""
    yield from chromium_or_skip()


@contextlib.contextmanager
def dashboard_service(work: Path, redis_url: str, mlflow_server, env: dict | None = None,
                      workers: int = 2):
    """The service under gunicorn, caching in ``redis_url`` under a prefix of its own
    (removed afterwards), with profile ``dash`` (bob on ``mlflow_server``) and ``env``."""
    prefix = f"test-dashboard-{uuid.uuid4().hex[:12]}:"
    profiles = {"dash": {"tracking_uri": mlflow_server.uri, "username": "bob",
                         "password": mlflow_server.users["bob"]}}
    settings = {"CACHE_KEY_PREFIX": prefix, "MLFLOW_PROFILES": json.dumps(profiles),
                **(env or {})}
    # DASHBOARD_SERVICE_REPO: serve another checkout's app (a page being written, or one
    # broken on purpose to see a test fail) with this harness.
    repo = Path(os.environ.get("DASHBOARD_SERVICE_REPO") or REPO)
    try:
        with gunicorn(work, redis_url, workers=workers, env=settings, repo=repo) as svc:
            yield svc
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """$DASHBOARD_SCREENSHOTS if set, else a temp dir: where the page's states are saved."""
    chosen = os.environ.get("DASHBOARD_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("dashboard-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def open_dashboard(request, dashboard_browser, screenshots):
    """``open_dashboard(service, **context_options)``: a DashboardPage of its own context
    named after the test; closed afterwards, and the test fails if any of its pages asked
    anything of another origin."""
    pages = []

    def open_(service, **options):
        name = request.node.name.replace("test_", "", 1)
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60]
        pages.append(DashboardPage(dashboard_browser.new_context(**options), service.base,
                                   screenshots, name=f"{name}-{len(pages) + 1}"))
        return pages[-1]
    yield open_
    offsite = [url for page in pages for url in page.offsite]
    for page in pages:
        page.close()
    assert not offsite, f"the page asked other origins: {offsite}"
