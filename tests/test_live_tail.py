"""Live runs' shared tails against a real basic-auth MLflow, a real Redis and real gunicorn
(issue 20): polls within LIVE_REFRESH ask MLflow nothing, a refresh asks only for what
changed, once for every viewer and worker, and a chart following the cursor holds exactly
MLflow's points whatever the logging pattern; a refused caller fills no tail, a run that
finishes comes complete, and Redis stopped is MLflow per request. The refresh's rules
call by call: tests/test_live_refresh.py."""
import base64
import gzip
import threading
import time
import uuid

import numpy as np
import orjson
import pytest
import redis
import requests
from mlflow.entities import Metric

from app import create_app
from app.runs import increments
from tests.support.calls import post_runs, user_body
from tests.support.chart import Chart, mlflow_points
from tests.support.gunicorn import gunicorn
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)
from tests.support.proxy import MlflowProxy
from tests.support.redis_server import RedisServer


@pytest.fixture
def live(admin_client):
    """(log, run_id, experiment_id): a RUNNING run of an experiment of its own."""
    experiment_id = admin_client.create_experiment(f"live-{uuid.uuid4().hex[:8]}")
    run_id = admin_client.create_run(experiment_id).info.run_id
    clock = iter(range(int(time.time() * 1000), 10**15))

    def log(steps, key="loss", values=None):
        values = values if values is not None else [1.0 / (s + 1) for s in steps]
        metrics = [Metric(key, float(v), next(clock), int(s)) for s, v in zip(steps, values)]
        for start in range(0, len(metrics), 1000):
            admin_client.log_batch(run_id, metrics=metrics[start:start + 1000])
    return log, run_id, experiment_id


def basic_auth(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def calls(proxy):
    """The MLflow endpoints asked since the proxy's last reset, by their last path parts."""
    return ["/".join(p.split("?")[0].split("/")[-2:]) for p in proxy.paths]


def test_polls_within_live_refresh_ask_nothing_and_a_refresh_asks_only_what_changed(
        cached_app, body, proxy, live, admin_client):
    log, run_id, _ = live
    log(range(200))
    log(range(0, 200, 50), key="val")
    client = cached_app(LIVE_REFRESH=60).test_client()
    chart = Chart()
    chart.take(post_runs(client, body(run_id=run_id)))
    proxy.reset()
    again = client.post("/mlflow/runs", json=body(run_id=run_id, cursor=chart.cursor))
    assert again.headers["X-Cache"] == "HIT" and proxy.count() == 0
    assert all(run["since_cursor"] for run in again.get_json()["runs"])
    log(range(200, 205))
    # The same Redis, a LIVE_REFRESH already past (a loaded machine makes sleeping unreliable)
    client = cached_app(LIVE_REFRESH=0.01).test_client()
    proxy.reset()
    chart.take(post_runs(client, body(run_id=run_id, cursor=chart.cursor)))
    # one run search (the latest entries), one range read for the metric that grew; the
    # listing (runs/get) when RUN_LIST_TTL ran out; no history read whole
    assert sorted(c for c in calls(proxy) if c not in ("runs/get", "experiments/get")) == [
        "metrics/get-history-bulk-interval", "runs/search"]
    assert chart.points(run_id, "loss") == mlflow_points(admin_client, run_id, "loss")
    assert chart.points(run_id, "val") == mlflow_points(admin_client, run_id, "val")
    metrics = client.get("/metrics").get_data(as_text=True)
    for counted in ('mlflow_logs_live_tail_total{result="hit"}',
                    'mlflow_logs_live_tail_total{result="refreshed"}',
                    'mlflow_logs_live_reads_total{kind="range"}',
                    'mlflow_logs_live_reads_total{kind="skipped"}',
                    "mlflow_logs_live_points_total"):
        assert counted in metrics


def test_an_unchanged_live_poll_with_the_cursor_is_a_304_without_mlflow(
        cached_app, body, proxy, live, mlflow_server):
    log, run_id, _ = live
    log(range(50))
    client = cached_app(LIVE_REFRESH=600).test_client()
    url = f"/mlflow/runs?tracking_uri={proxy.uri}&run_id={run_id}&http_timeout=60"
    auth = {"Authorization": basic_auth(*mlflow_server.admin), "Accept-Encoding": "gzip"}
    first = client.get(url, headers=auth)
    cursor = first.get_json(force=True) if first.headers.get("Content-Encoding") != "gzip" \
        else orjson.loads(gzip.decompress(first.data))
    url += "&cursor=" + cursor["cursor"]
    second = client.get(url, headers=auth)  # nothing new since the cursor: its own answer
    assert second.status_code == 200
    proxy.reset()
    third = client.get(url, headers=dict(auth, **{"If-None-Match": second.headers["ETag"]}))
    assert (third.status_code, third.data, proxy.count()) == (304, b"", 0)
    log(range(50, 55))
    later = cached_app(LIVE_REFRESH=0.001).test_client()  # the same Redis, past LIVE_REFRESH
    fourth = later.get(url, headers=dict(auth, **{"If-None-Match": second.headers["ETag"]}))
    assert fourth.status_code == 200  # new points: a new tag


def test_a_new_viewer_is_served_from_the_tail(cached_app, body, proxy, live):
    log, run_id, _ = live
    log(range(3000))
    first = cached_app(LIVE_REFRESH=60).test_client()
    post_runs(first, body(run_id=run_id, metric_keys=["loss"], max_points=500))
    proxy.reset()
    other = cached_app(LIVE_REFRESH=60).test_client()  # another worker, same Redis
    answer = post_runs(other, body(run_id=run_id, metric_keys=["loss"], max_points=500))
    assert "metrics/get-history" not in calls(proxy)
    assert answer["runs"][0]["metrics_history"][0]["total_points"] == 3000


@pytest.mark.parametrize("pattern", ["step_0", "same_step", "out_of_order", "backfill"])
def test_a_chart_following_the_cursor_holds_exactly_mlflows_points(
        cached_app, body, live, admin_client, monkeypatch, pattern):
    monkeypatch.setattr(increments, "AUDIT_AGE", 0.0)  # audit every refresh: no waiting here
    log, run_id, _ = live
    rng = np.random.default_rng(11)
    steps = {"step_0": [0] * 120, "same_step": [s // 4 for s in range(120)],
             "out_of_order": [int(s) for s in rng.permutation(120)],
             "backfill": list(range(80)) + list(range(20, 60))}[pattern]
    client = cached_app(LIVE_REFRESH=0.01).test_client()
    chart = Chart()
    for start in range(0, len(steps), 15):
        chunk = steps[start:start + 15]
        log(chunk, values=rng.random(len(chunk)))
        chart.take(post_runs(client, body(run_id=run_id, cursor=chart.cursor)))
    for _ in range(2):
        chart.take(post_runs(client, body(run_id=run_id, cursor=chart.cursor)))
    assert chart.points(run_id, "loss") == mlflow_points(admin_client, run_id, "loss")


def test_a_caller_without_permission_gets_403_and_fills_no_tail(
        cached_app, as_user, mlflow_server, admin_client, redis_url, redis_prefix):
    secret = mlflow_server.ids["experiments"]["secret-exp"]  # alice: NO_PERMISSION
    run_id = admin_client.create_run(secret).info.run_id
    admin_client.log_metric(run_id, "loss", 1.0, step=0)
    client = cached_app(LIVE_REFRESH=60).test_client()
    tails = lambda: list(redis.Redis.from_url(redis_url).scan_iter(match=redis_prefix + "tail:*"))  # noqa: E731
    post_runs(client, as_user("alice", run_id=run_id), status=403)
    assert tails() == []
    post_runs(client, as_user(run_id=run_id))  # the admin's poll makes the tail
    made = tails()
    assert made
    for form in ({}, {"metric_keys": ["loss"]}, {"max_points": 100}):
        post_runs(client, as_user("alice", run_id=run_id, **form), status=403)
    assert tails() == made


def test_a_run_that_finishes_mid_poll_comes_complete_and_then_from_the_cache(
        cached_app, body, proxy, live, admin_client):
    log, run_id, _ = live
    client = cached_app(LIVE_REFRESH=0.01, RUN_LIST_TTL=1).test_client()
    chart = Chart()
    log(range(50))
    chart.take(post_runs(client, body(run_id=run_id, cursor=chart.cursor)))
    log([10, 20])         # below the latest step...
    log(range(50, 60))
    admin_client.set_terminated(run_id)  # ...and the run ends
    for _ in range(20):
        chart.take(post_runs(client, body(run_id=run_id, cursor=chart.cursor)))
        if chart.status[run_id] == "FINISHED":
            break
        time.sleep(0.5)
    assert chart.status[run_id] == "FINISHED"
    assert chart.points(run_id, "loss") == mlflow_points(admin_client, run_id, "loss")
    proxy.reset()
    time.sleep(1.1)  # the listing expires; the finished run itself stays cached
    answer = client.post("/mlflow/runs", json=body(run_id=run_id, cursor=chart.cursor))
    assert "metrics/get-history" not in calls(proxy)
    assert answer.get_json()["runs"][0]["since_cursor"] is True


def test_redis_stopped_mid_poll_means_mlflow_per_request(body, live, admin_client):
    log, run_id, _ = live
    log(range(20))
    with RedisServer() as server:
        client = create_app({"TESTING": True, "REDIS_URL": server.url, "SECRET_KEY": "k",
                             "CACHE_RETRY_AFTER": 0.2, "LIVE_REFRESH": 60}).test_client()
        chart = Chart()
        chart.take(post_runs(client, body(run_id=run_id)))
        server.stop()
        log(range(20, 25))
        answer = client.post("/mlflow/runs", json=body(run_id=run_id, cursor=chart.cursor))
        assert answer.status_code == 200 and answer.headers["X-Cache"] == "MISS"
        chart.take(answer.get_json())
        assert chart.points(run_id, "loss") == mlflow_points(admin_client, run_id, "loss")
        server.start()
        time.sleep(0.3)
        log(range(25, 30))
        chart.take(post_runs(client, body(run_id=run_id, cursor=chart.cursor)))
        assert chart.points(run_id, "loss") == mlflow_points(admin_client, run_id, "loss")


LIVE_REFRESH = 2.0


def test_viewers_polling_through_two_workers_cost_one_read_per_metric_per_live_refresh(
        tmp_path, redis_url, mlflow_server, live, admin_client):
    """5 charts poll a run that keeps logging, through gunicorn's two workers: MLflow sees
    one run search per LIVE_REFRESH at most and each metric read at most once per search,
    and every chart ends with exactly MLflow's points."""
    log, run_id, _ = live
    log(range(100))
    log(range(100), key="acc")
    env = {"LIVE_REFRESH": str(LIVE_REFRESH), "CACHE_KEY_PREFIX": f"test-live-{uuid.uuid4().hex[:8]}:"}
    with MlflowProxy(mlflow_server.uri) as proxy, \
            gunicorn(tmp_path, redis_url, workers=2, env=env) as service:
        query = dict(user_body(mlflow_server, "admin", run_id=run_id), tracking_uri=proxy.uri)
        charts, stop = [Chart() for _ in range(5)], threading.Event()
        failures = []

        def view(chart):
            while not stop.is_set():
                answer = requests.post(f"{service.base}/mlflow/runs", timeout=60,
                                       json=dict(query, cursor=chart.cursor))
                if answer.status_code != 200:
                    failures.append(answer.text[:200])
                else:
                    chart.take(answer.json())
                stop.wait(0.3)

        def train():
            step = 100
            while not stop.is_set():
                log([step])
                log([step], key="acc")
                step += 1
                stop.wait(0.2)
        threads = [threading.Thread(target=view, args=(c,)) for c in charts]
        trainer = threading.Thread(target=train)
        for thread in [trainer, *threads]:
            thread.start()
        time.sleep(12)
        stop.set()
        for thread in [trainer, *threads]:
            thread.join(90)
        time.sleep(LIVE_REFRESH + 0.1)
        for chart in charts:  # one more poll each, past LIVE_REFRESH: everything logged
            chart.take(requests.post(f"{service.base}/mlflow/runs", timeout=60,
                                     json=dict(query, cursor=chart.cursor)).json())
    assert not failures
    for chart in charts:
        for key in ("loss", "acc"):
            assert chart.points(run_id, key) == mlflow_points(admin_client, run_id, key)
    searches = [t for t, p in zip(proxy.times, proxy.paths) if "/runs/search" in p]
    assert len(searches) >= 3
    gaps = np.diff(searches)
    assert gaps.min() >= LIVE_REFRESH - 0.1, gaps  # one refresh per LIVE_REFRESH, all workers
    for key in ("loss", "acc"):
        reads = sum(f"metric_key={key}" in p for p in proxy.paths)
        assert reads <= len(searches) + 1  # the first whole read, then at most one a refresh


def test_charts_loading_a_metric_each_at_once_each_get_their_points(
        tmp_path, redis_url, mlflow_server, live, admin_client):
    """The dashboard's first load: one request per metric of the same live run, all at once,
    on a cold cache. The request that takes the tail's lock reads its own metric; the others
    wait for it, then read theirs (not a 500 for a metric the tail did not hold yet)."""
    log, run_id, _ = live
    keys = ["m0", "m1", "m2", "m3"]
    for key in keys:
        log(range(50), key=key)
    env = {"LIVE_REFRESH": "30", "CACHE_KEY_PREFIX": f"test-live-{uuid.uuid4().hex[:8]}:"}
    answers = {}
    with MlflowProxy(mlflow_server.uri) as proxy, \
            gunicorn(tmp_path, redis_url, workers=2, env=env) as service:
        proxy.delay = 0.3  # a refresh outlasts the others' arrival: they wait for its lock
        query = dict(user_body(mlflow_server, "admin", run_ids=[run_id]), tracking_uri=proxy.uri)

        def load(key):
            answers[key] = requests.post(f"{service.base}/mlflow/runs", timeout=120,
                                         json=dict(query, metric_keys=[key]))
        threads = [threading.Thread(target=load, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(150)
    for key in keys:
        assert answers[key].status_code == 200, (key, answers[key].text[:300])
        chart = Chart()
        chart.take(answers[key].json())
        assert chart.points(run_id, key) == mlflow_points(admin_client, run_id, key)
