"""The cache under a slow network, garbage, a full Redis and refreshes: real Redis (often
behind a TCP proxy that delays or swallows replies), real basic-auth MLflow (this module
writes runs, so it uses the scratch server)."""
import os
import time

import orjson
import pytest
import redis

from tests.support.calls import poll
from tests.support.redis_server import RedisServer
from tests.support.tcp_proxy import TcpProxy
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)


@pytest.fixture
def redis_proxy(redis_url):
    parts = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    with TcpProxy(parts["host"], parts["port"]) as proxy:
        proxy.db = parts.get("db", 0)
        yield proxy


def keys_without_ttl(redis_url, prefix):
    client = redis.Redis.from_url(redis_url)
    return [key for key in client.scan_iter(match=prefix + "*") if client.pttl(key) < 0]


@pytest.mark.parametrize("slow", [b"lock:list:", b"lock:run:"])
def test_a_slow_reply_to_a_lock_never_wedges_the_run(cached_app, body, mlflow_server, redis_url,
                                                     redis_prefix, redis_proxy, slow):
    """The lock's reply is later than REDIS_SOCKET_TIMEOUT: the lock landed in Redis, the
    service gave up on it. It must expire by itself, and the next poll must not wait for
    it until its own http_timeout (504): after a bounded wait it asks MLflow itself."""
    # The back-off outlasts the first request, so its unlock is skipped (the cache is down).
    app = cached_app(REDIS_URL=redis_proxy.url(redis_proxy.db), REDIS_SOCKET_TIMEOUT=0.2,
                     CACHE_RETRY_AFTER=5, LOCAL_COPIES_MB=0)
    client = app.test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"], http_timeout=8)
    redis_proxy.slow_reply_to, redis_proxy.reply_delay = slow, 0.6
    started = time.monotonic()
    expected = orjson.loads(poll(client, query).data)
    redis_proxy.reply_delay = 0
    time.sleep(max(0.0, started + 5.2 - time.monotonic()))  # the back-off is over
    assert keys_without_ttl(redis_url, redis_prefix) == []
    started = time.monotonic()
    response = client.post("/mlflow/runs", json=query)
    assert response.status_code == 200, response.get_json()
    assert orjson.loads(response.data) == expected
    assert time.monotonic() - started < 7  # not the whole http_timeout (a hang guard)


def test_no_key_is_ever_written_without_a_ttl(cached_app, body, mlflow_server, redis_url, redis_prefix):
    client = cached_app(RATE_LIMIT="1000/minute").test_client()
    runs = mlflow_server.ids["runs"]
    for fields in ({"experiment_name": "shared-exp"}, {"run_id": runs["finished"], "max_points": 10},
                   {"run_ids": [runs["finished"], runs["failed"]], "metric_keys": ["train_loss"]},
                   {"run_id": runs["finished"], "format": "csv"}, {"run_id": runs["secret"]}):
        poll(client, body(**fields))
    poll(client, body("alice", run_id=runs["secret"]), status=403)
    stored = redis.Redis.from_url(redis_url).keys(redis_prefix + "*")
    kinds = {key.decode()[len(redis_prefix):].split(":")[0] for key in stored}
    assert {"run", "gen", "list", "grant", "ratelimit"} <= kinds, kinds
    assert keys_without_ttl(redis_url, redis_prefix) == []


def test_with_run_list_ttl_0_no_listing_is_stored(cached_app, body, mlflow_server, redis_url,
                                                  redis_prefix):
    """RUN_LIST_TTL=0 lists on every poll: no listing is written (not one without expiry,
    which Redis would keep for ever), and runs are still cached."""
    client = cached_app(RUN_LIST_TTL=0).test_client()
    for _ in range(2):
        poll(client, body(experiment_name="shared-exp"))
    kinds = {key.decode()[len(redis_prefix):].split(":")[0]
             for key in redis.Redis.from_url(redis_url).keys(redis_prefix + "*")}
    assert "run" in kinds and "list" not in kinds, kinds
    assert keys_without_ttl(redis_url, redis_prefix) == []


def test_fetching_a_views_columns_leaves_the_whole_run_cached(cached_app, body, proxy,
                                                              mlflow_server):
    """A view's first poll fetches the run's metric columns under the run's current
    generation; it must not retire the whole run another poll cached (no new generation
    without a refresh or a changed run)."""
    client = cached_app(LOCAL_COPIES_MB=0).test_client()
    whole = body(run_id=mlflow_server.ids["runs"]["finished"])
    poll(client, whole)
    columns = poll(client, dict(whole, metric_keys=["train_loss"]))
    assert columns.headers["X-Cache"] == "PARTIAL"   # the listing cached, the columns fetched
    proxy.reset()
    assert poll(client, whole).headers["X-Cache"] == "HIT" and proxy.count("get-history") == 0


def test_fetching_the_whole_run_leaves_a_views_columns_cached(cached_app, body, proxy,
                                                              mlflow_server):
    """The other way round: the whole run fetched after a view cached its columns is
    stored under the same generation, so the view's columns stay current."""
    client = cached_app(LOCAL_COPIES_MB=0).test_client()
    whole = body(run_id=mlflow_server.ids["runs"]["finished"])
    view = dict(whole, metric_keys=["train_loss"])
    poll(client, view)
    assert poll(client, whole).headers["X-Cache"] == "PARTIAL"   # the whole run fetched
    proxy.reset()
    assert poll(client, view).headers["X-Cache"] == "HIT" and proxy.count("get-history") == 0


GARBAGE = [b"\xff\xfe\n\xff\n\x00", b"b\xff\n\xfe\n" + os.urandom(64), b"b" + b"0" * 64 + b"\n\xff\xff\n",
           b"j[1,2", b"b" + os.urandom(4000), b"j" + b"[" * 5000]


@pytest.mark.parametrize("view", [{}, {"metric_keys": ["train_loss"]}, {"max_points": 10},
                                  {"format": "csv"}], ids=["whole", "metric_keys", "max_points", "csv"])
def test_garbage_in_every_key_is_a_miss(cached_app, body, mlflow_server, redis_url, redis_prefix, view):
    client = cached_app(LOCAL_COPIES_MB=0).test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"], **view)
    expected = poll(client, query).data
    poll(client, query)  # every kind of entry is written by now (grant, listing, run or columns)
    r = redis.Redis.from_url(redis_url)
    for garbage in GARBAGE:
        for key in r.scan_iter(match=redis_prefix + "*"):
            r.set(key, garbage, keepttl=True)
        assert poll(client, query).data == expected


@pytest.fixture
def finished_run(admin_client):
    """A finished run with ``loss`` at steps 0..9 (ended just now: a recent run)."""
    experiment_id = admin_client.create_experiment(f"copies-{os.getpid()}-{time.time_ns()}")
    run_id = admin_client.create_run(experiment_id).info.run_id
    for step in range(10):
        admin_client.log_metric(run_id, "loss", float(step), step=step)
    admin_client.set_terminated(run_id)
    return run_id


def points(response):
    return [len(m["history"]) for run in response.get_json()["runs"] for m in run["metrics_history"]]


def test_a_refresh_retires_every_copy(cached_app, body, admin_client, finished_run):
    """Two workers (apps) with their own copies, and the metric columns of a view: after
    a point is logged below the latest step (invisible to the run's fingerprint) and one
    poll asks for a refresh, every later poll of every view answers the new history."""
    worker_a, worker_b = cached_app().test_client(), cached_app().test_client()
    whole, columns = body(run_id=finished_run), body(run_id=finished_run, metric_keys=["loss"])
    for client in (worker_a, worker_b):
        assert points(poll(client, whole)) == [10] and points(poll(client, whole)) == [10]
        assert points(poll(client, columns)) == [10]
    admin_client.log_metric(finished_run, "loss", 4.5, step=4)
    assert points(poll(worker_a, dict(whole, refresh=True))) == [11]
    for client in (worker_a, worker_b, worker_a, worker_b):
        assert points(poll(client, whole)) == [11]
        assert points(poll(client, columns)) == [11]
    assert points(poll(worker_b, dict(columns, refresh=True))) == [11]


def test_a_refresh_through_a_view_of_columns_retires_the_whole_runs_too(cached_app, body,
                                                                        admin_client, finished_run):
    """A refresh asked through a view served from metric columns renews the run's
    generation, so the other worker's whole-run copy and the stored whole run are retired
    too: after it, no view of the run answers the old history."""
    worker_a, worker_b = cached_app().test_client(), cached_app().test_client()
    whole, columns = body(run_id=finished_run), body(run_id=finished_run, metric_keys=["loss"])
    for client in (worker_a, worker_b):
        assert points(poll(client, whole)) == [10] and points(poll(client, columns)) == [10]
    admin_client.log_metric(finished_run, "loss", 4.5, step=4)
    assert points(poll(worker_a, dict(columns, refresh=True))) == [11]
    for client in (worker_b, worker_a):
        assert points(poll(client, whole)) == [11]
        assert points(poll(client, columns)) == [11]


def test_late_points_of_a_recent_run_show_within_recent_run_cache_ttl(cached_app, body, admin_client,
                                                                      finished_run, redis_url,
                                                                      redis_prefix, mlflow_server):
    recent_ttl = 4  # seconds: a loaded machine's write and poll fit well inside it
    client = cached_app(RECENT_RUN_CACHE_TTL=recent_ttl).test_client()
    whole = body(run_id=finished_run)
    assert points(poll(client, whole)) == [10]
    admin_client.log_metric(finished_run, "loss", 4.5, step=4)
    assert points(poll(client, whole)) == [10]  # cached: the fingerprint cannot see it
    time.sleep(recent_ttl + 0.2)
    assert points(poll(client, whole)) == [11]
    r = redis.Redis.from_url(redis_url)

    def ttl_of(run_id):
        return max(r.pttl(key) for key in r.scan_iter(match=redis_prefix + "run:*" + run_id))

    assert 0 < ttl_of(finished_run) <= recent_ttl * 1000
    # A run that ended long ago (the seeded ones) is kept RUN_CACHE_TTL.
    poll(client, body(run_id=mlflow_server.ids["runs"]["finished"]))
    assert ttl_of(mlflow_server.ids["runs"]["finished"]) > 3600_000


def test_values_over_cache_max_entry_mb_are_not_stored(cached_app, body, mlflow_server, redis_url,
                                                       redis_prefix):
    client = cached_app(CACHE_MAX_ENTRY_MB=0.1).test_client()
    long_run, small_run = mlflow_server.ids["runs"]["long"], mlflow_server.ids["runs"]["finished"]
    assert len(poll(client, body(run_id=long_run)).data) > 1 << 20
    poll(client, body(run_id=small_run))
    r = redis.Redis.from_url(redis_url)
    stored = [key.decode() for key in r.scan_iter(match=redis_prefix + "run:*")]
    assert any(key.endswith(small_run) for key in stored)
    assert not any(key.endswith(long_run) for key in stored)
    assert max(len(r.get(key)) for key in r.scan_iter(match=redis_prefix + "*")) <= 0.1 * (1 << 20)


def test_a_full_redis_refusing_writes_is_a_miss_and_reads_go_on(body, mlflow_server):
    """maxmemory reached with noeviction: writes answer OOM. That write is a miss; what is
    cached is still served (no back-off as if Redis were down)."""
    from app import create_app
    with RedisServer() as server:
        app = create_app({"TESTING": True, "REDIS_URL": server.url, "SECRET_KEY": "k",
                          "CACHE_RETRY_AFTER": 300, "LOCAL_COPIES_MB": 0,
                          "RUN_LIST_TTL": 300, "AUTH_CACHE_TTL": 300})
        client = app.test_client()
        first = body(run_id=mlflow_server.ids["runs"]["finished"])
        poll(client, first)
        assert poll(client, first).headers["X-Cache"] == "HIT"
        r = redis.Redis.from_url(server.url)
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", r.info("memory")["used_memory"] + 1024)
        poll(client, body(run_id=mlflow_server.ids["runs"]["long"]))  # its writes: OOM
        assert poll(client, first).headers["X-Cache"] == "HIT"


def test_readyz_does_not_undo_the_back_off(redis_proxy):
    """Redis swallows every command (socket timeouts): /readyz says 503, and neither it
    nor a poll touches Redis again until CACHE_RETRY_AFTER has passed."""
    from app import create_app
    redis_proxy.silent = True
    app = create_app({"TESTING": True, "REDIS_URL": redis_proxy.url(), "SECRET_KEY": "k",
                      "REDIS_SOCKET_TIMEOUT": 0.2, "CACHE_RETRY_AFTER": 60})
    client = app.test_client()
    assert client.get("/readyz").status_code == 503
    connections = len(redis_proxy._sockets)
    for _ in range(5):
        assert client.get("/readyz").status_code == 503
        client.post("/health", json={"tracking_uri": "http://127.0.0.1:9", "http_timeout": 1})
    assert len(redis_proxy._sockets) == connections  # no new connection: the back-off held
