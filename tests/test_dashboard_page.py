"""The service's dashboard page (issue 21; docs/dashboard.md) in Debian's Chromium, against
the real basic-auth MLflow (its scratch copy: these tests log runs), the service under
gunicorn with Redis, every request of the page routed through Playwright
(tests/support/dashboard.py, dashboard_stack.py): anything asked of another origin is aborted and fails the
test.

Proved: the page loads with the network limited to the service, no console error and no
CSP violation; a wrong password and a refused experiment show their words (401, 403);
the charts hold exactly the points the API answers for the same view; a live run grows
poll by poll with only its new points, a 304 when nothing changed, and no request once
it finished; zoom re-asks the range at full resolution; the URL restores the view in
another browser; credentials stay in sessionStorage and the Authorization header.
Each state is saved as a screenshot ($DASHBOARD_SCREENSHOTS, else a temp dir).

Skips with the reason when Playwright or Chromium cannot run here.
"""
import base64
import hashlib
import json
import math
import time
from pathlib import Path

import pytest
import requests
from mlflow.entities import Metric

from tests.support.chart import mlflow_points
from tests.support.curves import log_curves, unique
from tests.support.dashboard_stack import (  # noqa: F401  (fixtures)
    api_runs, dashboard_browser, dashboard_service, drawn, open_dashboard, screenshots, series,
)
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "app/dashboard/static/vendor/uplot"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
METRICS = ["loss", "accuracy", "learning_rate"]
STEPS = 2000           # more than a chart's pixel width: the first load is thinned
LIVE_REFRESH = 0.5     # the service's live tail: fresh twice a second
POLL = 1               # the page's poll period in these tests (seconds, via the hash)
FIRST = 300            # a live run's points before the page opens (fewer than its pixels)
VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def writer(mlflow_server):
    """An MlflowClient as admin (the module's fixtures outlive ``admin_client``)."""
    from mlflow.tracking import MlflowClient

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_server.admin[0])
        patch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.admin[1])
        yield MlflowClient(tracking_uri=mlflow_server.uri)


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_url, mlflow_server):
    with dashboard_service(tmp_path_factory.mktemp("dashboard"), redis_url, mlflow_server,
                           env={"LIVE_REFRESH": str(LIVE_REFRESH)}) as svc:
        yield svc


@pytest.fixture(scope="module")
def curves(writer):
    """An experiment of four finished runs × three metrics × STEPS points."""
    experiment_id = writer.create_experiment(unique("curves"))
    run_ids = log_curves(writer, experiment_id, METRICS, STEPS, runs=4)
    return experiment_id, run_ids


@pytest.fixture
def bob(mlflow_server):
    """bob (READ on every experiment): the form's fields, and the tuple for the API."""
    password = mlflow_server.users["bob"]
    return {"tracking_uri": mlflow_server.uri, "username": "bob", "password": password}


def as_auth(user: dict) -> tuple:
    return user["username"], user["password"]


def view(service, user, state, metric) -> dict:
    """What the API answers for a chart of the page's state: its runs and metric at its
    ``maxPoints`` (the page's first load), as ``series`` lists it."""
    chart = state["charts"][metric]
    answer = api_runs(service.base, as_auth(user), tracking_uri=user["tracking_uri"],
                      run_ids=list(chart["runs"]), metric_keys=[metric],
                      max_points=chart["maxPoints"])
    return series(answer)[metric]


def choose(page, experiment_id, runs=None, metrics=None):
    """Pick through the UI: the experiment, then ``runs`` (all when None) and ``metrics``
    (all when None); waits for each load."""
    page.page.fill("#experiment-search", "")
    page.page.click(f'#experiments [data-experiment-id="{experiment_id}"]')
    page.wait_for("(s, e) => String(s.experimentId) === e", str(experiment_id))
    page.ready()
    page.page.wait_for_selector("#runs tr[data-run-id] input.pick-run")
    for row in page.page.locator("#runs tr[data-run-id]").all():
        wanted = runs is None or row.get_attribute("data-run-id") in runs
        row.locator("input.pick-run").set_checked(wanted)
        page.ready()
    if metrics is None:
        page.page.locator("#all-metrics").set_checked(True)
        page.ready()
    else:
        for box in page.page.locator("#metrics input.pick-metric").all():
            box.set_checked(box.get_attribute("value") in metrics)
            page.ready()
    return page.ready()


def api_calls(page) -> list:
    """The page's calls that read MLflow through the service (they need credentials)."""
    return [e for e in page.exchanges() if e.path.startswith(("/mlflow/", "/health"))]


def hash_of(**parts) -> str:
    return "#/" + "&".join(f"{k}={v}" for k, v in parts.items())


# --- the page and its assets ----------------------------------------------------------------

def test_the_vendored_chart_library_matches_its_recorded_checksums():
    """uPlot as fetched by `npm pack`: each file's sha256 as VERSION.json records it."""
    record = json.loads((VENDOR / "VERSION.json").read_text())
    assert record["version"] and set(record["sha256"]) >= {
        "uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in record["sha256"].items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name


def test_the_page_loads_with_the_network_limited_to_the_service(open_dashboard, service, bob,
                                                                curves):
    page = open_dashboard(service, viewport=VIEWPORT)
    state = page.open()
    assert state["connected"] is False and state["error"] is None
    page.screenshot("loaded")
    loaded = page.exchanges()
    assert loaded and all(e.url.startswith(service.base + "/dashboard/") for e in loaded), \
        [e.url for e in loaded]
    for exchange in loaded:  # the page and each asset: the contract's headers
        headers = exchange.request.response().all_headers()
        assert exchange.status in (200, 304), exchange.url
        assert headers["content-security-policy"] == CSP, exchange.url
        assert headers["x-content-type-options"] == "nosniff", exchange.url
        assert headers["referrer-policy"] == "no-referrer", exchange.url
    redirect = requests.get(f"{service.base}/dashboard", allow_redirects=False, timeout=30)
    assert redirect.status_code == 308 and redirect.headers["Location"].endswith("/dashboard/")

    page.connect(**bob)
    choose(page, curves[0])
    page.screenshot("connected")
    assert page.state()["connected"] is True
    api = api_calls(page)
    assert api and all(e.url.startswith(service.base + "/") for e in page.exchanges())
    assert not page.offsite and page.errors() == []


def test_a_wrong_password_shows_the_401_in_words(open_dashboard, service, bob):
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open()
    state = page.connect(**dict(bob, password="not-bobs-password"))
    assert state["connected"] is False and "401" in state["error"]
    shown = page.text("#error")
    assert "(401)" in shown and "password" in shown.lower(), shown
    assert page.page.locator("#error").get_attribute("role") == "alert"
    assert page.page.locator("#charts section.chart").count() == 0
    page.screenshot("wrong-password")


def test_a_user_without_permission_sees_the_refusal(open_dashboard, service, mlflow_server):
    """alice may not read secret-exp: a shared link to it shows MLflow's refusal."""
    secret = mlflow_server.ids["experiments"]["secret-exp"]
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open(hash_of(e=secret))
    page.connect(tracking_uri=mlflow_server.uri, username="alice",
                 password=mlflow_server.users["alice"])
    state = page.wait_for("s => s.error")
    shown = page.text("#error")
    assert "403" in state["error"] and "(403)" in shown and "permission" in shown.lower(), shown
    assert not any(chart["runs"] for chart in state["charts"].values())
    page.screenshot("refused")


# --- what the charts hold ------------------------------------------------------------------

def test_the_charts_hold_exactly_the_points_the_api_answered(open_dashboard, service, bob,
                                                             curves):
    experiment_id, run_ids = curves
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open()
    page.connect(**bob)
    state = choose(page, experiment_id)
    assert str(state["experimentId"]) == str(experiment_id)
    assert sorted(state["runIds"]) == sorted(run_ids)
    assert sorted(state["metrics"]) == sorted(METRICS)
    page.screenshot("charts")
    for metric in METRICS:
        chart = state["charts"][metric]
        assert 10 <= chart["maxPoints"] < STEPS and chart["zoom"] is None
        assert sorted(chart["runs"]) == sorted(run_ids)
        expected = view(service, bob, state, metric)
        assert drawn(state)[metric] == expected, metric
        for run_id in run_ids:  # thinned to the width, the extremes kept
            assert 0 < len(expected[run_id]["steps"]) <= chart["maxPoints"]
        section = page.page.locator(f'#charts section.chart[data-metric="{metric}"]')
        rows = section.locator("table.summary tr[data-run-id]")
        assert sorted(r.get_attribute("data-run-id") for r in rows.all()) == sorted(run_ids)
    # Over time: the same points, at their timestamps.
    page.page.select_option("#x-axis", "time")
    state = page.ready()
    answer = api_runs(service.base, as_auth(bob), tracking_uri=bob["tracking_uri"],
                      run_ids=run_ids, metric_keys=["loss"],
                      max_points=state["charts"]["loss"]["maxPoints"])
    for run in answer["runs"]:
        line = state["charts"]["loss"]["runs"][run["run_id"]]
        assert line["timestamps"] == [p["timestamp"] for p in run["metrics_history"][0]["history"]]
    page.screenshot("over-time")
    assert page.errors() == []


# --- a live run ---------------------------------------------------------------------------

def test_a_live_run_grows_with_each_poll_fetching_only_the_new_points(
        open_dashboard, service, bob, writer):
    experiment_id = writer.create_experiment(unique("live"))
    run_id = writer.create_run(experiment_id, run_name="training").info.run_id
    clock = iter(range(1_800_000_000_000, 10**15, 1000))

    def log(steps):  # values that do not compress away: bytes follow the points
        writer.log_batch(run_id, metrics=[Metric("loss", math.sin(s * 12.9898) * 43758.5 % 1,
                                                 next(clock), s) for s in steps])

    log(range(FIRST))
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open(hash_of(e=experiment_id, runs=run_id, metrics="loss", poll=POLL))
    page.connect(**bob)
    state = page.wait_for("(s, [r, n]) => s.charts.loss.runs[r].steps.length === n",
                          [run_id, FIRST])
    assert state["polling"] is True and state["charts"]["loss"]["maxPoints"] > FIRST + 20
    assert "live" in page.text("#poll-state").lower()
    full_bytes = max(e.body_bytes for e in page.exchanges("/mlflow/runs")
                     if e.status == 200 and "cursor" not in e.query)
    live_since = page.mark()
    page.screenshot("live-0")

    for round_ in range(1, 4):  # five new points between polls, three times
        new = range(FIRST + 5 * (round_ - 1), FIRST + 5 * round_)
        log(new)
        state = page.wait_for("(s, [r, n]) => s.charts.loss.runs[r].steps.length === n",
                              [run_id, new[-1] + 1])
        assert state["charts"]["loss"]["runs"][run_id]["steps"] == list(range(new[-1] + 1))
        polls = page.exchanges("/mlflow/runs", since=live_since)
        assert polls and all(e.method == "GET" and e.query.get("cursor") and
                             e.query.get("run_ids") == [run_id] and
                             e.query.get("metric_keys") == ["loss"] for e in polls), \
            [e.url for e in polls]
        answered = [e for e in polls if e.status == 200]
        brought = [p["step"] for e in answered for run in e.json()["runs"]
                   for m in run["metrics_history"] for p in m["history"]]
        assert sorted(brought) == list(range(FIRST, new[-1] + 1))  # each new point once
        assert all(run["since_cursor"] for e in answered for run in e.json()["runs"])
        # Only the new points came: a poll is a small fraction of the first answer.
        assert all(e.body_bytes < full_bytes / 2 for e in polls), \
            [(e.status, e.body_bytes) for e in polls] + [full_bytes]
        page.screenshot(f"live-{round_}")
    print(f"live polls: {len(polls)} requests, {sum(e.body_bytes for e in polls)} bytes "
          f"for 15 points; the first answer {full_bytes} bytes for {FIRST}")

    since = page.mark()  # nothing new: the page's conditional GET is answered 304
    page.wait_for("s => s.lastPoll && s.lastPoll.status === 304")
    unchanged = [e for e in page.exchanges("/mlflow/runs", since=since) if e.status == 304]
    assert unchanged and all(e.headers.get("if-none-match") and e.body_bytes == 0
                             for e in unchanged)

    log(range(FIRST + 15, FIRST + 18))  # the last points, then the run ends: it comes complete
    writer.set_terminated(run_id)
    state = page.wait_for("s => !s.polling")
    assert "finished" in page.text("#poll-state").lower()
    final = state["charts"]["loss"]["runs"][run_id]
    history = mlflow_points(writer, run_id, "loss")  # (step, timestamp, value), by step
    assert final["steps"] == [p[0] for p in history] == list(range(FIRST + 18))
    assert final["values"] == [p[2] for p in history]
    page.screenshot("live-finished")
    since = page.mark()
    page.page.wait_for_timeout(4 * POLL * 1000)  # four poll periods: nothing is asked
    assert [e.url for e in page.exchanges(since=since)] == []
    assert page.state()["polls"] == state["polls"]


def test_every_chart_of_live_runs_loads(open_dashboard, service, bob, writer):
    """The page loads its charts at once, a request per chart: each asks the same live runs
    for another metric, while one request builds the runs' shared tail. Every chart loads,
    with every point."""
    experiment_id = writer.create_experiment(unique("live-charts"))
    run_ids = log_curves(writer, experiment_id, METRICS, 200, runs=2, status="RUNNING")
    try:
        page = open_dashboard(service, viewport=VIEWPORT)
        page.open(hash_of(e=experiment_id, runs=",".join(run_ids), metrics=",".join(METRICS),
                          poll=POLL))
        page.connect(**bob)
        state = page.wait_for("(s, n) => s.error || Object.values(s.charts).filter(c => "
                              "Object.keys(c.runs).length === 2).length === n", len(METRICS))
        page.screenshot("live-charts")
        assert state["error"] is None
        for metric in METRICS:
            for run_id in run_ids:
                assert state["charts"][metric]["runs"][run_id]["steps"] == list(range(200))
        for run_id in run_ids:  # one more point of each metric: every chart shows it
            writer.log_batch(run_id, metrics=[Metric(key, 0.5, int(time.time() * 1000), 200)
                                              for key in METRICS])
        state = page.wait_for("(s, ids) => Object.values(s.charts).every(c => ids.every(id => "
                              "c.runs[id].steps[c.runs[id].steps.length - 1] === 200))", run_ids)
        page.screenshot("live-charts-grown")
    finally:
        for run_id in run_ids:
            writer.set_terminated(run_id)


# --- zoom ------------------------------------------------------------------------------------

def test_zoom_by_dragging_re_asks_the_range_at_full_resolution(open_dashboard, service, bob,
                                                               mlflow_server):
    """The seeded 'long' run: 26,234 points of long_metric, one per step."""
    exp = mlflow_server.ids["experiments"]["shared-exp"]
    run_id = mlflow_server.ids["runs"]["long"]
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open(hash_of(e=exp, runs=run_id, metrics="long_metric"))
    page.connect(**bob)
    state = page.wait_for("(s, r) => s.charts.long_metric && s.charts.long_metric.runs[r]",
                          run_id)
    thinned = state["charts"]["long_metric"]
    assert len(thinned["runs"][run_id]["steps"]) <= thinned["maxPoints"] < 26_234
    since = page.mark()
    overlay = page.page.locator('#charts section.chart[data-metric="long_metric"] .u-over')
    box = overlay.bounding_box()
    y = box["y"] + box["height"] / 2
    page.page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=10)
    page.page.mouse.up()
    state = page.wait_for("s => s.charts.long_metric.zoom")
    state = page.ready()
    zoomed = state["charts"]["long_metric"]
    asked = [e for e in page.exchanges("/mlflow/runs", since=since) if "since_step" in e.query]
    assert asked, [e.url for e in page.exchanges(since=since)]
    low, high = int(asked[-1].query["since_step"][0]), int(asked[-1].query["max_step"][0])
    assert low < zoomed["zoom"][0] <= low + 1 and high >= zoomed["zoom"][1] - 1
    assert high - low > thinned["maxPoints"]  # a range wider than the chart in pixels ...
    # ... and every point of it drawn: no max_points limit reduced it
    assert zoomed["runs"][run_id]["steps"] == list(range(low + 1, high + 1))
    expected = api_runs(service.base, as_auth(bob), tracking_uri=bob["tracking_uri"],
                        run_ids=[run_id], metric_keys=["long_metric"],
                        since_step=low, max_step=high)
    assert drawn(state)["long_metric"] == series(expected)["long_metric"]
    page.screenshot("zoomed")
    page.page.locator('#charts section.chart[data-metric="long_metric"] button.reset-zoom').click()
    state = page.wait_for("s => s.charts.long_metric.zoom === null")
    state = page.ready()
    assert drawn(state)["long_metric"] == view(service, bob, state, "long_metric")


def test_zoom_from_the_url_asks_since_step_and_max_step(open_dashboard, service, bob,
                                                         mlflow_server):
    exp = mlflow_server.ids["experiments"]["shared-exp"]
    run_id = mlflow_server.ids["runs"]["long"]
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open(hash_of(e=exp, runs=run_id, metrics="long_metric", zoom="long_metric:1000:3000"))
    page.connect(**bob)
    state = page.wait_for("(s, r) => s.charts.long_metric && s.charts.long_metric.zoom "
                          "&& s.charts.long_metric.runs[r]", run_id)
    state = page.ready()
    asked = [e.query for e in page.exchanges("/mlflow/runs") if "since_step" in e.query]
    assert asked and asked[-1]["since_step"] == ["999"] and asked[-1]["max_step"] == ["3000"]
    assert int(asked[-1].get("max_points", ["1000000"])[0]) >= 2001
    assert state["charts"]["long_metric"]["zoom"] == [1000, 3000]
    assert state["charts"]["long_metric"]["runs"][run_id]["steps"] == list(range(1000, 3001))


# --- a shared view ---------------------------------------------------------------------------

def test_the_url_restores_the_view_in_another_browser(open_dashboard, service, bob, curves):
    experiment_id, run_ids = curves
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open()
    page.connect(**bob)
    choose(page, experiment_id, runs=run_ids[:2], metrics=["loss", "accuracy"])
    page.page.locator("#log-scale").set_checked(True)
    page.ready()
    overlay = page.page.locator('#charts section.chart[data-metric="loss"] .u-over')
    box = overlay.bounding_box()
    page.page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + 20)
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 20, steps=10)
    page.page.mouse.up()
    page.wait_for("s => s.charts.loss.zoom")
    shown = page.ready()
    assert sorted(shown["runIds"]) == sorted(run_ids[:2])
    assert sorted(shown["metrics"]) == ["accuracy", "loss"]
    url = page.page.url
    page.screenshot("shared-from")

    other = open_dashboard(service, viewport=VIEWPORT)  # another person's browser
    other.open(url=url)
    other.connect(**bob)
    other.wait_for("s => s.charts.loss && s.charts.loss.zoom")
    restored = other.ready()
    for key in ("experimentId", "metrics"):
        assert restored[key] == shown[key], key
    assert sorted(restored["runIds"]) == sorted(shown["runIds"])
    assert restored["charts"]["loss"]["zoom"] == shown["charts"]["loss"]["zoom"]
    assert drawn(restored) == drawn(shown)
    assert other.page.locator("#log-scale").is_checked()
    other.screenshot("shared-to")

    page.page.reload()  # the same tab: credentials in sessionStorage, no form to fill
    page.page.wait_for_function("() => window.dashboard && window.dashboard.ready")
    page.wait_for("s => s.connected && s.charts.loss && s.charts.loss.zoom")
    assert drawn(page.ready()) == drawn(shown)


# --- credentials --------------------------------------------------------------------------

def test_credentials_stay_in_session_storage_and_the_authorization_header(
        open_dashboard, service, bob, curves):
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open()
    page.connect(**bob)
    choose(page, curves[0], runs=curves[1][:1], metrics=["loss"])
    secret = bob["password"]
    token = base64.b64encode(f"bob:{secret}".encode()).decode()
    stored = json.dumps(page.storage("sessionStorage"))
    assert secret in stored or token in stored  # kept for this tab only ...
    assert list(page.storage("sessionStorage")) == ["mlflow-logs-dashboard"]
    assert secret not in json.dumps(page.storage("localStorage"))  # ... and nowhere else
    assert token not in json.dumps(page.storage("localStorage"))
    assert page.context.cookies() == []
    assert secret not in page.page.url and "password" not in page.page.url
    api = api_calls(page)
    assert api
    for exchange in page.exchanges():
        assert secret not in exchange.url and token not in exchange.url, exchange.url
        assert "password" not in exchange.query and "username" not in exchange.query
    for exchange in api:  # each API call carries them in its header, and only there
        assert exchange.headers.get("authorization") == f"Basic {token}", exchange.url
    for exchange in page.exchanges():  # not the page, its assets or the OpenAPI spec
        if exchange not in api:
            assert "authorization" not in exchange.headers, exchange.url
    assert secret not in service.log.read_text()
    page.page.click("#disconnect")
    page.wait_for("s => !s.connected")
    assert secret not in json.dumps(page.storage("sessionStorage"))


def test_a_profile_connects_without_a_password(open_dashboard, service, mlflow_server):
    """The operator's profile 'dash' (bob): the page sends its name, no credentials."""
    exp = mlflow_server.ids["experiments"]["shared-exp"]
    runs = [mlflow_server.ids["runs"][name] for name in ("finished", "failed")]
    page = open_dashboard(service, viewport=VIEWPORT)
    page.open(hash_of(e=exp, runs=",".join(runs), metrics="train_loss"))
    page.connect(profile="dash")
    state = page.wait_for("(s, n) => s.connected && Object.keys(s.charts.train_loss.runs)"
                          ".length === n", len(runs))
    page.screenshot("profile")
    api = api_calls(page)
    assert api and all("authorization" not in e.headers for e in page.exchanges())
    # the GET form names the profile in its query; the POSTs in their JSON body
    assert all(e.query.get("profile") == ["dash"] for e in api if e.method == "GET")
    assert all(json.loads(e.request.post_data)["profile"] == "dash"
               for e in api if e.method == "POST")
    assert sorted(state["charts"]["train_loss"]["runs"]) == sorted(runs)
    assert "bob" not in json.dumps(page.storage("sessionStorage"))
