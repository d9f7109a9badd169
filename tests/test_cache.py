"""The run cache against a real Redis and a real basic-auth MLflow, MLflow calls counted
by a proxy in front of it. These tests write to MLflow, so they use a server of their own."""
import os
import pickle
import threading
import time

import orjson
import pytest
import redis
from mlflow.tracking import MlflowClient

from app.cache.keys import normalize_uri
from tests.support.calls import poll
from tests.support.redis_server import RedisServer
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)


def all_redis_bytes(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    return [(key, client.get(key) or b"") for key in client.scan_iter(match=prefix + "*")]


def test_second_poll_of_finished_runs_asks_mlflow_nothing(cached_app, body, proxy, mlflow_server):
    client = cached_app(RUN_LIST_TTL=300).test_client()  # the listing outlives a slow first poll
    for selector in ({"run_id": mlflow_server.ids["runs"]["finished"]},
                     {"experiment_name": "secret-exp"}):  # its runs are all finished
        proxy.reset()
        first = poll(client, body(**selector))
        assert first.headers["X-Cache"] != "HIT" and proxy.count() > 0
        proxy.reset()
        second = poll(client, body(**selector))
        assert proxy.count() == 0, proxy.paths
        assert second.headers["X-Cache"] == "HIT"
        assert orjson.loads(second.data) == orjson.loads(first.data)


def test_cache_is_shared_between_apps_but_not_between_callers(cached_app, body, proxy, mlflow_server):
    run_id = mlflow_server.ids["runs"]["finished"]
    poll(cached_app().test_client(), body(run_id=run_id))
    proxy.reset()
    # Another worker (app) with the same Redis and SECRET_KEY: bob still has to be
    # checked by MLflow once, but the histories come from the cache.
    response = poll(cached_app().test_client(), body("bob", run_id=run_id))
    assert response.headers["X-Cache"] == "PARTIAL"
    assert proxy.count("get-history") == 0 and proxy.count() > 0


def test_cached_run_is_never_served_to_a_wrong_password(cached_app, body, proxy, mlflow_server):
    client = cached_app().test_client()
    run_id = mlflow_server.ids["runs"]["finished"]
    poll(client, body(run_id=run_id))
    proxy.reset()
    response = poll(client, dict(body(run_id=run_id), password="not-the-password"), status=401)
    assert response.get_json()["success"] is False
    assert proxy.count() >= 1  # MLflow was asked, and said no


def test_cached_run_is_never_served_without_permission(cached_app, body, mlflow_server):
    client = cached_app().test_client()
    secret = mlflow_server.ids["runs"]["secret"]
    assert poll(client, body("bob", run_id=secret)).get_json()["total_runs"] == 1
    poll(client, body("alice", run_id=secret), status=403)
    poll(client, body("alice", experiment_name="secret-exp"), status=403)


def test_revoked_permission_takes_effect_within_the_grant_ttl(cached_app, body, mlflow_server):
    mlflow_server.create_user("carol", "carol-password-1")
    client = cached_app(AUTH_CACHE_TTL=1, RUN_LIST_TTL=1).test_client()
    secret = mlflow_server.ids["runs"]["secret"]
    poll(client, body("carol", run_id=secret))
    mlflow_server.grant("carol", mlflow_server.ids["experiments"]["secret-exp"], "DENY")
    time.sleep(1.2)
    poll(client, body("carol", run_id=secret), status=403)


def test_running_run_is_fetched_fresh_and_cached_once_finished(cached_app, body, proxy, admin_client):
    experiment_id = admin_client.create_experiment(f"live-{os.getpid()}-{time.time_ns()}")
    run_id = admin_client.create_run(experiment_id).info.run_id
    admin_client.log_metric(run_id, "loss", 1.0, step=0)
    list_ttl = 5  # long enough that two polls under load fall within one listing's life
    # LIVE_REFRESH 0: every poll of the live run asks MLflow (tests/test_live_tail.py: tails)
    client = cached_app(RUN_LIST_TTL=list_ttl, LIVE_REFRESH=0).test_client()

    def history():
        payload = poll(client, body(run_id=run_id)).get_json()
        return [p["value"] for p in payload["runs"][0]["metrics_history"][0]["history"]]

    assert history() == [1.0]
    admin_client.log_metric(run_id, "loss", 0.5, step=1)
    assert history() == [1.0, 0.5]  # RUNNING: new points on the next poll
    admin_client.set_terminated(run_id)
    time.sleep(list_ttl + 0.1)
    assert history() == [1.0, 0.5]
    proxy.reset()
    assert history() == [1.0, 0.5]
    assert proxy.count() == 0  # finished: cached


def test_finished_run_written_again_is_refetched(cached_app, body, proxy, admin_client):
    experiment_id = admin_client.create_experiment(f"reopen-{os.getpid()}-{time.time_ns()}")
    run_id = admin_client.create_run(experiment_id).info.run_id
    admin_client.log_metric(run_id, "loss", 1.0, step=0)
    admin_client.set_terminated(run_id)
    client = cached_app(RUN_LIST_TTL=0).test_client()  # list on every poll
    poll(client, body(run_id=run_id))
    admin_client.log_metric(run_id, "loss", 0.25, step=1)  # MLflow allows it
    payload = poll(client, body(run_id=run_id)).get_json()
    assert payload["runs"][0]["metrics_history"][0]["total_points"] == 2
    admin_client.update_run(run_id, status="RUNNING")
    assert poll(client, body(run_id=run_id)).get_json()["runs"][0]["status"] == "RUNNING"


def test_refresh_asks_mlflow_again(cached_app, body, proxy, mlflow_server):
    client = cached_app().test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    poll(client, query)
    proxy.reset()
    response = poll(client, dict(query, refresh=True))
    assert response.headers["X-Cache"] == "MISS" and proxy.count("get-history") > 0


def test_same_run_id_on_two_servers_keeps_data_apart(cached_app, as_user, mlflow_server,
                                                     mlflow_noauth_server, monkeypatch):
    # The no-auth server holds a copy of the same store: same run ids. Give its copy of
    # the "empty" run a metric the other server's copy does not have.
    run_id = mlflow_server.ids["runs"]["empty"]
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    MlflowClient(tracking_uri=mlflow_noauth_server.uri).log_metric(run_id, "only_here", 7.0)
    client = cached_app().test_client()
    for _ in range(2):  # cold, then from the cache
        auth = poll(client, as_user(run_id=run_id)).get_json()["runs"][0]
        noauth = poll(client, {"tracking_uri": mlflow_noauth_server.uri + "/",
                               "run_id": run_id}).get_json()["runs"][0]
        assert auth["metrics_summary"] == {}
        assert noauth["metrics_summary"] == {"only_here": 7.0}


def test_normalized_uri():
    assert normalize_uri("HTTPS://MLflow.Example.com:443/api/") == "https://mlflow.example.com/api"
    assert normalize_uri("http://h:80") == normalize_uri("http://h/") == "http://h"
    assert normalize_uri("http://h:8080/x") != normalize_uri("http://h/x")
    assert normalize_uri("http://[::1]:5000/") == "http://[::1]:5000"


def test_redis_stopped_and_restarted(body, proxy, mlflow_server, caplog):
    from app import create_app
    with RedisServer() as server:
        # LOCAL_COPIES_MB 0: every run is read from Redis (else the worker's own copy
        # would serve it while Redis is down, which is right, but not what is tested here)
        app = create_app({"TESTING": True, "REDIS_URL": server.url, "SECRET_KEY": "k",
                          "CACHE_RETRY_AFTER": 0.2, "LOCAL_COPIES_MB": 0})
        client = app.test_client()
        query = body(run_id=mlflow_server.ids["runs"]["finished"])
        expected = orjson.loads(poll(client, query).data)
        server.stop()
        for _ in range(2):
            response = poll(client, query)
            assert orjson.loads(response.data) == expected and response.headers["X-Cache"] == "MISS"
        assert "cache:" in caplog.text  # a warning was logged
        health = client.post("/health", json=query | {"run_id": None} and
                             {k: query[k] for k in ("tracking_uri", "username", "password")})
        assert health.get_json()["cache"] == {"backend": "RedisCache", "available": False}
        server.start()  # an empty Redis on the same port
        time.sleep(0.3)
        poll(client, query)
        proxy.reset()
        assert poll(client, query).headers["X-Cache"] == "HIT" and proxy.count() == 0


class Exploit:
    def __reduce__(self):
        return (open, ("/tmp/mlflow-logs-pwned", "w"))


def test_poisoned_values_are_misses_never_executed(cached_app, body, proxy, mlflow_server,
                                                   redis_url, redis_prefix):
    client = cached_app().test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    expected = orjson.loads(poll(client, query).data)
    r = redis.Redis.from_url(redis_url)
    run_keys = [k for k in r.scan_iter(match=redis_prefix + "run:*")]
    assert len(run_keys) == 1
    forged = orjson.dumps({"status": "FINISHED", "fingerprint": "x", "histories": 0,
                           "experiment_id": "1", "mac": "0" * 64}) + b"\n" + b'{"run_id":"forged"}'
    for poison in (b"garbage", b"!" + pickle.dumps(Exploit()), pickle.dumps(Exploit()),
                   b"b" + forged, b"j" + b"{not json"):
        for key in r.scan_iter(match=redis_prefix + "*"):
            r.set(key, poison)
        response = poll(client, query)
        assert orjson.loads(response.data) == expected
        assert not os.path.exists("/tmp/mlflow-logs-pwned")


@pytest.mark.parametrize("view", [{}, {"max_points": 500}], ids=["whole-run", "plot-view"])
def test_single_flight(cached_app, body, proxy, mlflow_server, view):
    app = cached_app()
    query = body(run_id=mlflow_server.ids["runs"]["long"], **view)
    results = []

    def one_poll():
        results.append(app.test_client().post("/mlflow/runs", json=query))

    threads = [threading.Thread(target=one_poll) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 6
    assert len({r.data for r in results}) == 1
    # long_metric spans two get-history pages; asked once, not six times.
    assert proxy.count("get-history") == 2, proxy.paths


def test_requests_for_other_metrics_of_a_run_do_not_wait_for_each_other(
        cached_app, body, proxy, mlflow_server, monkeypatch):
    """A dashboard asks a chart's metric per request, for the same finished runs, at once:
    a fetch of one metric must not hold up a request for another (the charts of a cold
    view were fetched one after another); requests for the same metric still share one."""
    from app.cache.flight import SingleFlight
    waits, real = [], SingleFlight._wait_for

    def counted(flight, item, lock):
        waits.append(lock)
        return real(flight, item, lock)
    monkeypatch.setattr(SingleFlight, "_wait_for", counted)
    app = cached_app()
    proxy.delay = 0.5  # a fetch takes a while: the requests overlap
    run_id = mlflow_server.ids["runs"]["finished"]
    metrics = ["train_loss", "val/acc", "train_loss"]
    results = {}

    def one_poll(i, key):
        query = body(run_id=run_id, metric_keys=[key], max_points=100)
        results[i] = app.test_client().post("/mlflow/runs", json=query)

    threads = [threading.Thread(target=one_poll, args=(i, key)) for i, key in enumerate(metrics)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i].status_code for i in range(3)] == [200] * 3
    series_waits = [lock for lock in waits if ":series" in lock]
    assert len(series_waits) == 1, waits  # the second train_loss request only
    assert proxy.count("metric_key=val%2Facc") + proxy.count("metric_key=val/acc") == 1
    assert proxy.count("metric_key=train_loss") == 1, proxy.paths


def test_no_password_in_redis_or_logs(cached_app, body, mlflow_server, redis_url, redis_prefix, caplog):
    caplog.set_level("DEBUG")
    client = cached_app().test_client()
    poll(client, body(experiment_name="shared-exp"))
    poll(client, body("bob", run_id=mlflow_server.ids["runs"]["secret"]))
    poll(client, dict(body(), password="wrong-password-xyz"), status=401)
    stored = all_redis_bytes(redis_url, redis_prefix)
    assert stored
    passwords = [mlflow_server.admin[1], *mlflow_server.users.values(), "wrong-password-xyz"]
    for password in passwords:
        assert all(password.encode() not in key + value for key, value in stored), password
        assert password not in caplog.text


def test_local_copies_are_bounded_and_checked():
    from app.cache.copies import LocalCopies

    local = LocalCopies(max_bytes=10, max_entry=6, ttl=60)
    local.put("a", {"fingerprint": "f1"}, b"aaaa")
    local.put("big", {"fingerprint": "f1"}, b"x" * 7)      # over max_entry: not kept
    assert local.get("a", "f1") == ({"fingerprint": "f1"}, b"aaaa")
    assert local.get("a", "f2") is None                      # the run changed since
    assert local.get("big", "f1") is None
    local.put("b", {"fingerprint": "f1"}, b"bbbb")
    local.get("a", "f1")                                     # a is now the most recent
    local.put("c", {"fingerprint": "f1"}, b"cccc")           # 12 bytes > 10: b goes
    assert local.get("b", "f1") is None and local.get("a", "f1") and local.get("c", "f1")
    expired = LocalCopies(max_bytes=10, max_entry=6, ttl=0)
    expired.put("a", {"fingerprint": "f1"}, b"a")
    time.sleep(0.01)
    assert expired.get("a", "f1") is None


def test_warm_poll_from_the_workers_copy_reads_no_run_from_redis(cached_app, body, proxy,
                                                                 mlflow_server, monkeypatch):
    from app.cache.run_cache import RunCache

    client = cached_app(RUN_LIST_TTL=300).test_client()  # the listing outlives a slow poll
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    first = poll(client, query)
    reads = []
    original = RunCache.get_entries
    monkeypatch.setattr(RunCache, "get_entries",
                        lambda self, keys: reads.append(keys) or original(self, keys))
    proxy.reset()
    second = poll(client, query)
    assert second.data == first.data and proxy.count() == 0
    assert reads == []   # served from the worker's own copy
    # another app (another worker) has no copy: it reads the shared entry once, then keeps it
    other = cached_app(RUN_LIST_TTL=300).test_client()
    assert poll(other, query).data == first.data
    assert len(reads) == 1
    poll(other, query)
    assert len(reads) == 1


def _concurrent_polls(app, query, n=6):
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        app.test_client().post("/mlflow/runs", json=query))) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * n
    return results


def test_an_expired_listing_is_asked_of_mlflow_once(cached_app, body, proxy):
    app = cached_app(RUN_LIST_TTL=1)
    query = body(experiment_name="shared-exp", include_metric_history=False)
    poll(app.test_client(), query)
    time.sleep(1.2)
    proxy.reset()
    results = _concurrent_polls(app, query)
    assert len({r.data for r in results}) == 1
    # once, not six times (the experiment's name may even be resolved from the cache: the
    # shared experiment resolution of issue 12, for a caller holding a grant)
    assert proxy.count("get-by-name") <= 1 and proxy.count("runs/search") == 1, proxy.paths


def test_an_expired_grant_is_asked_of_mlflow_once(cached_app, body, proxy, mlflow_server):
    app = cached_app(AUTH_CACHE_TTL=1, RUN_LIST_TTL=60)
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    poll(app.test_client(), query)
    time.sleep(1.2)
    proxy.reset()
    _concurrent_polls(app, query)
    assert proxy.paths and all("experiments/get" in path for path in proxy.paths), proxy.paths
    assert proxy.count("experiments/get") == 1
