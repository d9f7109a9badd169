"""A real browser (Debian's Chromium, driven by Playwright) against the service as deployed
(gunicorn, Redis, the basic-auth test MLflow): /docs "Try it out" works; a dashboard page
on another origin reads runs with a profile (CORS, compression decoded by the browser,
conditional GET polls), a page on an origin not allowed is blocked; a live chart polling
with since_step grows. One gunicorn and one Chromium for the module.

Skips with the reason when Playwright or Chromium cannot run here (tests/support/browser.py).
"""
import json
import os
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from tests.support.browser import chromium_or_skip, static_site
from tests.support.gunicorn import gunicorn
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)

pytestmark = pytest.mark.server

PROFILE = "dash"  # the operator's profile the pages name: bob (default READ) on the test MLflow
# A loaded machine (load 20 on 2 cores seen) makes MLflow slow: each request may take this long.
HTTP_TIMEOUT = 60
# What the dashboard pages ask for: a profile, no password; not the long run's 26k points.
SHARED_EXP = {"profile": PROFILE, "experiment_name": "shared-exp", "http_timeout": HTTP_TIMEOUT,
              "metric_keys": ["train_loss", "val/acc"]}
PAGE = (Path(__file__).parent / "support" / "dashboard_page.html").read_text()
UI_TIMEOUT_MS = 90_000  # beyond HTTP_TIMEOUT; each wait ends as soon as the page is ready


@pytest.fixture(scope="module")
def browser():
    yield from chromium_or_skip()


@pytest.fixture(scope="module")
def sites():
    """Two origins serving the dashboard page: one the service allows, one it does not."""
    with static_site({"/": PAGE}) as allowed, static_site({"/": PAGE}) as other:
        yield SimpleNamespace(allowed=allowed, other=other)


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_url, mlflow_server, sites):
    prefix = f"test-browser-{uuid.uuid4().hex[:12]}:"
    profiles = {PROFILE: {"tracking_uri": mlflow_server.uri, "username": "bob",
                          "password": mlflow_server.users["bob"]}}
    # LIVE_REFRESH 1 ms: the live chart's next poll refreshes the run's tail (it logs points
    # between polls and expects them in the next one)
    env = {"CACHE_KEY_PREFIX": prefix, "CORS_ALLOWED_ORIGINS": sites.allowed,
           "MLFLOW_PROFILES": json.dumps(profiles), "LIVE_REFRESH": "0.001"}
    with gunicorn(tmp_path_factory.mktemp("browser"), redis_url, workers=1, env=env) as svc:
        yield svc
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


@pytest.fixture
def open_page(browser):
    """``open_page(**context_options)``: a fresh page in a context of its own (no cache or
    cookies from another test), closed after the test."""
    contexts = []

    def open_(**options):
        contexts.append(browser.new_context(**options))
        contexts[-1].set_default_timeout(UI_TIMEOUT_MS)
        return contexts[-1].new_page()
    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page):
    return open_page()


def dashboard(page, origin, service):
    page.goto(f"{origin}/?service={service.base}")
    return page


def runs_answer(service, method="POST"):
    """Matches the service's own answer to /mlflow/runs (not the preflight, not the page)."""
    return lambda r: (r.url.startswith(f"{service.base}/mlflow/runs")
                      and r.request.method == method)


# --- /docs -------------------------------------------------------------------

def test_docs_try_it_out_runs_the_prefilled_example_against_mlflow(page, service, mlflow_server):
    """The prefilled example with only the URI and credentials filled in shows a 200."""
    page.goto(f"{service.base}/docs")
    operation = page.locator(".opblock.opblock-post").filter(
        has=page.locator('.opblock-summary-path[data-path="/mlflow/runs"]'))
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    textarea = operation.locator("textarea.body-param__text")
    example = json.loads(textarea.input_value())
    example.update(tracking_uri=mlflow_server.uri, username=mlflow_server.admin[0],
                   password=mlflow_server.admin[1], http_timeout=HTTP_TIMEOUT)
    textarea.fill(json.dumps(example))
    operation.locator(".execute").click()
    live = operation.locator(".live-responses-table tr.response")  # not the header row
    live.locator(".response-col_status").wait_for()
    assert live.locator(".response-col_status").inner_text().strip() == "200"
    shown = json.loads(live.locator(".response-col_description pre").first.inner_text())
    assert shown["success"] is True and "runs" in shown


# --- a dashboard on another origin ---------------------------------------------

# Chromium offers "gzip, deflate, br, zstd" and the service prefers zstd; a context whose
# requests offer gzip alone shows that the browser decodes the gzip answer too.
@pytest.mark.parametrize("offered, codings", [(None, ("zstd", "gzip")), ("gzip", ("gzip",))])
def test_a_page_on_an_allowed_origin_reads_runs_with_a_profile(open_page, service, sites,
                                                               offered, codings):
    """No password in the page; the answer comes compressed and the browser decodes it."""
    headers = {"Accept-Encoding": offered} if offered else None
    page = dashboard(open_page(extra_http_headers=headers), sites.allowed, service)
    with page.expect_response(runs_answer(service)) as wire:
        answer = page.evaluate("body => postRuns(body)", SHARED_EXP)
        assert answer["status"] == 200, answer  # here: a failure stops the wait at once
    assert answer["json"]["experiment_name"] == "shared-exp"
    assert {"finished", "running", "long"} <= {run["run_name"] for run in answer["json"]["runs"]}
    assert wire.value.header_value("content-encoding") in codings
    # Fewer bytes came over the wire than the page read: the browser decoded them.
    assert wire.value.request.sizes()["responseBodySize"] < len(answer["text"].encode())
    assert answer["cache"] in ("HIT", "MISS", "PARTIAL")  # an exposed header reads


def test_a_page_on_an_origin_not_allowed_is_blocked(page, service, sites):
    dashboard(page, sites.other, service)
    answer = page.evaluate("body => postRuns(body)", SHARED_EXP)
    assert answer.get("error") == "TypeError", answer  # "Failed to fetch": CORS refused it


def test_a_page_polls_the_get_form_conditionally(page, service, sites):
    """A GET poll's ETag sent back as If-None-Match: a 304 with no body reaches the page."""
    dashboard(page, sites.allowed, service)
    params = dict(SHARED_EXP, run_status="FINISHED")
    first = page.evaluate("p => getRuns(p)", params)
    assert first["status"] == 200 and first["etag"], first
    assert {"finished", "long"} <= {run["run_name"] for run in first["json"]["runs"]}
    with page.expect_response(runs_answer(service, "GET")) as wire:
        again = page.evaluate("([p, tag]) => getRuns(p, tag)", [params, first["etag"]])
        assert (again["status"], again["text"]) == (304, ""), again
    assert wire.value.status == 304


# --- a live chart ---------------------------------------------------------------

def test_a_live_run_polled_with_since_step_grows_in_the_page(page, service, sites, admin_client):
    from mlflow.entities import Metric

    experiment_id = admin_client.create_experiment(f"browser-live-{os.getpid()}-{time.time_ns()}")
    run_id = admin_client.create_run(experiment_id).info.run_id
    dashboard(page, sites.allowed, service)
    poll = {"profile": PROFILE, "runId": run_id, "metric": "loss", "timeout": HTTP_TIMEOUT}
    sizes, step = [], 0
    try:
        for _ in range(3):  # log four more points between polls
            now = int(time.time() * 1000)
            admin_client.log_batch(run_id, metrics=[
                Metric("loss", 1 / (s + 1), now, s) for s in range(step, step + 4)])
            step += 4
            sizes.append(page.evaluate("args => pollLive(args)", poll))
        live = page.evaluate("() => live")
    finally:
        admin_client.set_terminated(run_id)
    assert sizes == [4, 8, 12]
    assert live["received"] == [4, 4, 4]  # each poll brought only the new steps
    assert [point["step"] for point in live["history"]] == list(range(12))
    assert page.locator("#log").inner_text() == "12 points"
