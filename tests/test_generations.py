"""Within a run's generation every view answers from the same points (issue 19, item 7).

Points logged to a finished run below its latest step change nothing its fingerprint can
see, so a cached copy may stay stale until its TTL. What must never happen is two views
of one generation answering two histories: a fetch that finds a history other than the
one the generation's entries were made from starts a new generation, retiring every
copy of the old one in every worker. Real parts: the scratch basic-auth MLflow (these
tests write runs), the tests' Redis, two apps as two workers with their own copies.
"""
import contextlib
import csv
import io
import uuid

import pytest
from mlflow.entities import Metric

from tests.support.calls import poll
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)
from tests.support.redis_cluster import RedisCluster

LATE = 4242.125  # logged at step 50, below the latest step (99)
BEFORE, AFTER = (100, 99.0), (101, LATE)


@pytest.fixture
def finished_run(admin_client):
    """A finished run: ``loss`` = step and ``acc`` = step / 100 at steps 0..99."""
    experiment_id = admin_client.create_experiment(f"generations-{uuid.uuid4().hex[:12]}")
    run_id = admin_client.create_run(experiment_id).info.run_id
    admin_client.log_batch(run_id, metrics=[
        Metric(key, value, 1_700_000_000_000 + step, step) for step in range(100)
        for key, value in (("loss", float(step)), ("acc", step / 100))])
    admin_client.set_terminated(run_id)
    return run_id


def shown(response, key="loss"):
    """(points, max value) of metric ``key`` in a JSON or CSV answer."""
    if response.mimetype == "text/csv":
        rows = [row for row in csv.DictReader(io.StringIO(response.get_data(as_text=True)))
                if row["metric"] == key]
        return len(rows), max(float(row["value"]) for row in rows)
    [run] = response.get_json()["runs"]
    [metric] = [m for m in run["metrics_history"] if m["metric_name"] == key]
    return len(metric["history"]), metric["max_value"]


VIEWS = {"metric_keys": {"metric_keys": ["loss"]}, "csv": {"format": "csv"},
         "max_points": {"max_points": 500}}


@pytest.mark.parametrize("view", list(VIEWS))
def test_a_view_that_finds_a_late_point_retires_the_cached_whole_run(cached_app, body, admin_client,
                                                                      finished_run, view):
    """The issue's sequence: the whole run cached (and in each worker's own copy), a point
    logged below the latest step, then a view's first poll fetches its columns and finds
    101 points. That is a new generation: the whole run answers 101 too, in every worker."""
    workers = [cached_app().test_client() for _ in range(2)]
    whole = body(run_id=finished_run)
    for worker in workers:
        assert shown(poll(worker, whole)) == BEFORE
        assert shown(poll(worker, whole)) == BEFORE   # this worker's own copy
    admin_client.log_metric(finished_run, "loss", LATE, step=50)
    assert shown(poll(workers[0], whole)) == BEFORE   # the fingerprint cannot see it
    assert shown(poll(workers[0], body(run_id=finished_run, **VIEWS[view]))) == AFTER
    for worker in workers[::-1] * 2:
        assert shown(poll(worker, whole)) == AFTER
        assert shown(poll(worker, body(run_id=finished_run, **VIEWS[view]))) == AFTER


@pytest.mark.parametrize("view", list(VIEWS))
def test_a_whole_run_that_finds_a_late_point_retires_the_cached_columns(cached_app, body, admin_client,
                                                                        finished_run, view):
    """The other order: a view's columns cached, a point logged below the latest step, then
    the whole run's first poll finds 101 points: the view answers 101 from then on too."""
    workers = [cached_app().test_client() for _ in range(2)]
    query = body(run_id=finished_run, **VIEWS[view])
    for worker in workers:
        assert shown(poll(worker, query)) == BEFORE
    admin_client.log_metric(finished_run, "loss", LATE, step=50)
    assert shown(poll(workers[0], query)) == BEFORE   # cached columns
    assert shown(poll(workers[0], body(run_id=finished_run))) == AFTER
    for worker in workers[::-1] * 2:
        assert shown(poll(worker, query)) == AFTER
        assert shown(poll(worker, body(run_id=finished_run))) == AFTER


def test_a_metric_first_fetched_under_a_generation_is_checked_by_later_fetches(cached_app, body,
                                                                              admin_client,
                                                                              finished_run):
    """A generation learns each metric's history as views fetch it: ``acc``, first fetched
    by a second view under the generation ``loss``'s view made, is checked when the whole
    run is fetched after a late ``acc`` point, and the ``acc`` view is retired with it."""
    client = cached_app(LOCAL_COPIES_MB=0, RUN_LIST_TTL=300).test_client()  # HIT even on a slow machine
    by_metric = {key: body(run_id=finished_run, metric_keys=[key]) for key in ("loss", "acc")}
    assert shown(poll(client, by_metric["loss"])) == BEFORE
    assert shown(poll(client, by_metric["acc"]), "acc") == (100, 0.99)
    assert poll(client, by_metric["loss"]).headers["X-Cache"] == "HIT"  # the same generation
    admin_client.log_metric(finished_run, "acc", LATE, step=50)
    assert shown(poll(client, body(run_id=finished_run)), "acc") == (101, LATE)
    assert shown(poll(client, by_metric["acc"]), "acc") == (101, LATE)


@pytest.mark.parametrize("backend", ["in-process", "cluster"])
def test_views_agree_on_every_backend(body, admin_client, finished_run, backend):
    """Without Redis (flask-caching's SimpleCache in the process), and on a Redis Cluster
    (a run's records and entries in different slots: read slot by slot, written without
    a transaction), the same rule holds, both ways round."""
    from app import create_app
    with contextlib.ExitStack() as stack:
        config = {"TESTING": True, "SECRET_KEY": "k", "LOCAL_COPIES_MB": 0}
        if backend == "cluster":
            config["REDIS_CLUSTER"] = stack.enter_context(RedisCluster()).env_value
        client = create_app(config).test_client()
        whole, view = body(run_id=finished_run), body(run_id=finished_run, metric_keys=["loss"])
        assert shown(poll(client, whole)) == BEFORE
        admin_client.log_metric(finished_run, "loss", LATE, step=50)
        assert shown(poll(client, view)) == AFTER
        assert shown(poll(client, whole)) == AFTER
        assert shown(poll(client, body(run_id=finished_run, metric_keys=["acc"])), "acc") == (100, 0.99)
        admin_client.log_metric(finished_run, "acc", LATE, step=50)
        assert shown(poll(client, whole), "acc") == (100, 0.99)  # cached: unseen, as before
        assert shown(poll(client, body(run_id=finished_run, metric_keys=["acc"], refresh=True)),
                     "acc") == (101, LATE)
        assert shown(poll(client, whole), "acc") == (101, LATE)


# --- the rule itself, on the in-process backend (no MLflow) -------------------------------

RUN = {"info": {"run_id": "r1", "status": "FINISHED", "end_time": 1_700_000_000_000},
       "data": {"metrics": [{"key": "loss", "value": 1.0, "step": 9, "timestamp": 1}]}}


@pytest.fixture
def cache():
    from app import create_app
    return create_app({"TESTING": True, "SECRET_KEY": "k"}).extensions["run_cache"]


def generation(cache, histories, run=RUN, renew=False):
    return cache.generations_for("http://mlflow", [(run, histories)], renew=renew)["r1"]


def known(cache):
    [record] = cache.store.get_many([cache.histories_key("http://mlflow", "r1")])
    return record["histories"]


def test_a_fetch_that_agrees_keeps_the_generation_and_teaches_it_new_metrics(cache):
    first = generation(cache, {"loss": "10:a"})
    assert generation(cache, {"loss": "10:a"}) == first
    assert generation(cache, {"acc": "10:b"}) == first
    assert known(cache) == {"loss": "10:a", "acc": "10:b"}
    assert generation(cache, {"loss": "10:a", "acc": "10:b"}) == first
    assert cache.generations("http://mlflow", [RUN]) == {"r1": first}


def test_a_fetch_that_finds_another_history_starts_a_generation_of_its_own(cache):
    first = generation(cache, {"loss": "10:a", "acc": "10:b"})
    second = generation(cache, {"acc": "11:c"})
    assert second != first and known(cache) == {"acc": "11:c"}
    assert cache.generations("http://mlflow", [RUN]) == {"r1": second}
    assert generation(cache, {"loss": "10:a"}) == second  # learned anew under the new one


def test_a_refresh_a_changed_run_or_unknown_histories_start_a_generation(cache):
    first = generation(cache, {"loss": "10:a"})
    assert generation(cache, {"loss": "10:a"}, renew=True) not in (first, None)
    renewed = generation(cache, {"loss": "10:a"})
    changed = dict(RUN, info=dict(RUN["info"], status="FAILED"))
    assert generation(cache, {"loss": "10:a"}, run=changed) != renewed
    # A generation whose histories are not known (an older release's, or its record
    # evicted) cannot tell whether its entries agree: it is replaced.
    current = generation(cache, {"loss": "10:a"})
    cache.store.delete_many([cache.histories_key("http://mlflow", "r1")])
    assert generation(cache, {"loss": "10:a"}) != current


def test_a_fetch_of_several_runs_reads_once_and_writes_nothing_it_knows(cache, monkeypatch):
    """The records of every run a fetch found are read in one round trip; runs that agree
    with their generation keep it, each its own, and nothing is written for them."""
    other = dict(RUN, info=dict(RUN["info"], run_id="r2"))
    fetched = [(RUN, {"loss": "10:a"}), (other, {"loss": "10:b", "acc": "10:c"})]
    first = cache.generations_for("http://mlflow", fetched, renew=False)
    assert len(set(first.values())) == 2
    calls = []
    for name in ("get_many", "set_many"):
        monkeypatch.setattr(cache.store, name, lambda *args, _call=getattr(cache.store, name), _name=name:
                            calls.append(_name) or _call(*args))
    assert cache.generations_for("http://mlflow", fetched, renew=False) == first
    assert calls == ["get_many"]


def test_agrees_compares_the_metrics_both_know():
    from app.cache.freshness import agrees
    assert agrees({"loss": "1:a"}, {"loss": "1:a"}) and agrees({}, {"loss": "1:a"})
    assert agrees({"loss": "1:a", "acc": "1:b"}, {"acc": "1:b"}) and agrees({"loss": "1:a"}, {})
    assert not agrees({"loss": "1:a", "acc": "1:b"}, {"acc": "2:c", "loss": "1:a"})
