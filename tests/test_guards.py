"""Each of the cache's guards, proven by a test that fails when that guard alone is removed.

Real parts: a basic-auth MLflow of the tests' own (the scratch server: these tests write
runs and users), the tests' Redis (or a private one where Redis is stopped), the counting
proxy in front of MLflow. The guards, and the mutation of the code each test was seen to
catch (docs/testing.md, "Guards"):

* the seal (MAC) of every kind of entry: run JSON, metric columns, listing;
* the freshness rule: a run's generation holds the fingerprint it was made for, and
  every copy (JSON, columns, a worker's own) is served only while it is current; a
  worker's own copy also checks the fingerprint itself while Redis cannot be asked;
* grants: a cached run is served only while MLflow's yes for this caller and experiment
  is recent, also while the caller's listing is still cached;
* listings are per caller.
"""
import time
import uuid

import orjson
import pytest
import redis

from app import history
from tests.support.calls import poll
from tests.support.redis_server import RedisServer
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)


def stored(redis_url, prefix, kind, *, series=False):
    """{key: value} of this test's entries of one kind (run, list, gen, grant)."""
    r = redis.Redis.from_url(redis_url)
    keys = [k for k in r.scan_iter(match=f"{prefix}{kind}:*") if (b":series:" in k) == series]
    return {key: r.get(key) for key in keys}


def reseal_with(value: bytes, tamper) -> bytes:
    """The value with its payload changed by ``tamper`` and its MAC and header lines kept."""
    mac_end = value.index(b"\n")
    head_end = value.index(b"\n", mac_end + 1)
    return value[:head_end + 1] + tamper(value[head_end + 1:])


# --- the seal -------------------------------------------------------------------------

def test_a_run_entry_with_another_payload_under_its_seal_is_not_served(cached_app, body, mlflow_server,
                                                                      redis_url, redis_prefix):
    client = cached_app(LOCAL_COPIES_MB=0).test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    expected = poll(client, query).data
    r = redis.Redis.from_url(redis_url)
    [(key, value)] = stored(redis_url, redis_prefix, "run").items()
    tampered = reseal_with(value, lambda payload: payload.replace(b'"0.001"', b'"0.999"'))
    assert tampered != value
    r.set(key, tampered, keepttl=True)
    answer = poll(client, query)
    assert answer.data == expected and b"0.999" not in answer.data


def test_metric_columns_with_other_values_under_their_seal_are_not_served(cached_app, body, mlflow_server,
                                                                         redis_url, redis_prefix):
    client = cached_app().test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"], metric_keys=["val/acc"])
    expected = poll(client, query).data
    r = redis.Redis.from_url(redis_url)
    [(key, value)] = stored(redis_url, redis_prefix, "run", series=True).items()

    def other_values(payload):
        series = history.from_bytes(payload)
        return history.to_bytes(history.Series(series.steps, series.timestamps, series.values + 7))
    r.set(key, reseal_with(value, other_values), keepttl=True)
    assert poll(client, query).data == expected


def test_a_listing_with_another_payload_under_its_seal_is_not_used(cached_app, body, mlflow_server,
                                                                 redis_url, redis_prefix):
    client = cached_app().test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"], include_metric_history=False)
    expected = poll(client, query).data
    r = redis.Redis.from_url(redis_url)
    [(key, value)] = stored(redis_url, redis_prefix, "list").items()
    r.set(key, reseal_with(value, lambda p: p.replace(b'"finished"', b'"tampered"')), keepttl=True)
    answer = poll(client, query)
    assert answer.data == expected and b"tampered" not in answer.data


# --- freshness: generations and fingerprints ---------------------------------------------

@pytest.fixture
def finished_run(admin_client):
    """A finished run: ``loss`` and ``acc`` at steps 0..9, and a parameter."""
    experiment_id = admin_client.create_experiment(f"guards-{uuid.uuid4().hex[:12]}")
    run_id = admin_client.create_run(experiment_id).info.run_id
    for step in range(10):
        admin_client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        admin_client.log_metric(run_id, "acc", step / 10, step=step)
    admin_client.log_param(run_id, "lr", "0.1")
    admin_client.set_terminated(run_id)
    return run_id


VIEWS = {"whole": {}, "metric_keys": {"metric_keys": ["loss"]}, "max_points": {"max_points": 10},
         "since_step": {"since_step": 5}, "csv": {"format": "csv"}}


def loss_steps(response, view):
    """The steps of the ``loss`` points an answer of this view carries."""
    if view == "csv":
        rows = [line.split(b",") for line in response.data.splitlines()[1:]]
        return [int(row[3]) for row in rows if row[2] == b"loss"]
    [run] = response.get_json()["runs"]
    return next([p["step"] for p in m["history"]] for m in run["metrics_history"]
                if m["metric_name"] == "loss")


def test_a_rewritten_finished_run_is_read_anew_through_every_view(cached_app, body, admin_client,
                                                                finished_run):
    """Two workers, every view cached (and each worker's own copy of the whole run); the
    run is written to at a new latest step: once the listing is asked again, every view in
    every worker answers the new history."""
    workers = [cached_app(RUN_LIST_TTL=1).test_client() for _ in range(2)]
    before = {view: list(range(6 if view == "since_step" else 0, 10)) for view in VIEWS}
    for client in workers:
        for view, fields in VIEWS.items():
            for _ in range(2):
                assert loss_steps(poll(client, body(run_id=finished_run, **fields)), view) == before[view]
    admin_client.log_metric(finished_run, "loss", 0.01, step=10)
    time.sleep(1.2)
    for client in workers:
        for view, fields in VIEWS.items():
            steps = loss_steps(poll(client, body(run_id=finished_run, **fields)), view)
            assert steps[-1] == 10  # max_points thins 11 points: the last one is always kept
            assert view == "max_points" or steps == before[view] + [10]
    whole = poll(workers[0], body(run_id=finished_run)).get_json()["runs"][0]
    assert whole["metrics_summary"]["loss"] == 0.01


def test_a_workers_own_copy_follows_the_fingerprint_while_redis_is_down(body, admin_client,
                                                                      finished_run):
    from app import create_app
    with RedisServer() as server:
        client = create_app({"TESTING": True, "REDIS_URL": server.url, "SECRET_KEY": "k",
                             "RUN_LIST_TTL": 1, "CACHE_RETRY_AFTER": 300}).test_client()
        query = body(run_id=finished_run)
        assert loss_steps(poll(client, query), "whole") == list(range(10))
        assert poll(client, query).headers["X-Cache"] in ("HIT", "PARTIAL")  # the run: cached
        admin_client.log_metric(finished_run, "loss", 0.01, step=10)
        server.stop()
        time.sleep(1.2)
        assert loss_steps(poll(client, query), "whole") == list(range(11))


def test_a_workers_own_copy_serves_an_unchanged_run_while_redis_is_down(body, proxy,
                                                                        finished_run):
    """The other half of the rule: while Redis cannot say which generation is current,
    the worker's own copy of an unchanged run is served as it is, without its histories
    from MLflow (only the listing is asked for again)."""
    from app import create_app
    with RedisServer() as server:
        client = create_app({"TESTING": True, "REDIS_URL": server.url, "SECRET_KEY": "k",
                             "RUN_LIST_TTL": 1, "CACHE_RETRY_AFTER": 300}).test_client()
        query = body(run_id=finished_run)
        expected = poll(client, query).data
        server.stop()
        time.sleep(1.2)
        proxy.reset()
        assert poll(client, query).data == expected
        assert proxy.count("get-history") == 0 and proxy.count() > 0


# --- grants --------------------------------------------------------------------------------

def test_a_revoked_permission_is_refused_while_the_listing_is_still_cached(cached_app, body, proxy,
                                                                          mlflow_server):
    user, password = f"dave-{uuid.uuid4().hex[:8]}", "dave-password-1"
    mlflow_server.create_user(user, password)
    client = cached_app(AUTH_CACHE_TTL=1, RUN_LIST_TTL=300).test_client()
    query = dict(body(run_id=mlflow_server.ids["runs"]["secret"]), username=user, password=password)
    assert poll(client, query).get_json()["total_runs"] == 1
    assert poll(client, query).headers["X-Cache"] in ("HIT", "PARTIAL")  # the run: cached
    mlflow_server.grant(user, mlflow_server.ids["experiments"]["secret-exp"], "DENY")
    time.sleep(1.2)
    proxy.reset()
    refused = poll(client, query, status=403).get_json()
    assert refused["code"] == 403 and user in refused["message"]
    # The listing came from the cache; what said no was the grant, asked of MLflow again.
    assert [path.split("?")[0] for path in proxy.paths] == ["GET /api/2.0/mlflow/experiments/get"]


# --- listings --------------------------------------------------------------------------

def test_a_listing_is_never_handed_to_another_caller(cached_app, body, mlflow_server):
    """The same query (every experiment) as admin, who may read secret-exp, then as alice,
    who may not: alice gets her own selection, not admin's (which would hold the secret run)."""
    query = {"include_metric_history": False, "limit": 100}
    client = cached_app(RUN_LIST_TTL=300).test_client()
    as_admin = poll(client, body(**query)).get_json()
    assert mlflow_server.ids["runs"]["secret"] in {run["run_id"] for run in as_admin["runs"]}
    as_alice = poll(client, body("alice", **query))
    own = poll(client, body("alice", refresh=True, **query))
    assert orjson.loads(as_alice.data) == orjson.loads(own.data)
    assert mlflow_server.ids["runs"]["secret"] not in {run["run_id"] for run in own.get_json()["runs"]}


# --- shared listings (issue 12) ---------------------------------------------------------------

def test_a_shared_listing_is_never_served_without_the_callers_own_grant(cached_app, body, proxy,
                                                                      mlflow_server):
    """admin fills the shared listing of secret-exp; alice, whom MLflow denies it, asks the
    same query within RUN_LIST_TTL: 403 from MLflow, never admin's listing."""
    query = {"experiment_name": "secret-exp", "include_metric_history": False}
    client = cached_app(RUN_LIST_TTL=300).test_client()
    secret = mlflow_server.ids["runs"]["secret"]
    assert poll(client, body(**query)).get_json()["runs"][0]["run_id"] == secret
    proxy.reset()
    refused = poll(client, body("alice", **query), status=403)
    assert secret.encode() not in refused.data
    assert any("experiments/get" in path for path in proxy.paths)  # MLflow was asked, for alice


def test_a_shared_listing_serves_another_reader_with_one_grant_call(cached_app, body, proxy,
                                                                  mlflow_server):
    query = {"experiment_name": "shared-exp", "include_metric_history": False}
    client = cached_app(RUN_LIST_TTL=300).test_client()
    as_admin = poll(client, body(**query)).get_json()
    proxy.reset()
    as_bob = poll(client, body("bob", **query))
    assert as_bob.get_json() == as_admin
    assert [path.split("?")[0] for path in proxy.paths] == ["GET /api/2.0/mlflow/experiments/get"]


def test_a_query_across_experiments_never_uses_a_shared_listing(cached_app, body, mlflow_server):
    """alice (denied secret-exp) asks across every experiment first; admin's same query must
    still list the secret run: a shared key would hand him alice's narrower selection."""
    query = {"include_metric_history": False, "limit": 100}
    client = cached_app(RUN_LIST_TTL=300).test_client()
    secret = mlflow_server.ids["runs"]["secret"]
    assert secret not in {run["run_id"] for run in poll(client, body("alice", **query)).get_json()["runs"]}
    assert secret in {run["run_id"] for run in poll(client, body(**query)).get_json()["runs"]}


def test_a_revoked_reader_refreshing_a_shared_listing_stores_no_empty_one(cached_app, body,
                                                                         admin_client, mlflow_server):
    """dave's grant is still cached when MLflow revokes him, and the shared listing expires: his
    refresh's run search comes back empty (MLflow leaves out what he may not read). That is
    a 403 for dave, and nothing stored that would empty the experiment for everyone else."""
    user, password = f"dave-{uuid.uuid4().hex[:8]}", "dave-password-1"
    mlflow_server.create_user(user, password)
    experiment = admin_client.create_experiment(f"guards-{uuid.uuid4().hex[:12]}")
    run_id = admin_client.create_run(experiment).info.run_id
    client = cached_app(AUTH_CACHE_TTL=300, RUN_LIST_TTL=1).test_client()
    query = body(experiment_id=experiment, include_metric_history=False)
    as_dave = dict(query, username=user, password=password)
    assert [run["run_id"] for run in poll(client, as_dave).get_json()["runs"]] == [run_id]
    mlflow_server.grant(user, experiment, "NO_PERMISSION")
    time.sleep(1.2)  # the listing expires; dave's grant does not
    poll(client, as_dave, status=403)
    assert [run["run_id"] for run in poll(client, query).get_json()["runs"]] == [run_id]
