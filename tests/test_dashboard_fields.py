"""Issue 12's dashboard fields of /mlflow/runs: start_time, end_time, experiment_id, user_id
on every run (cached finished runs too), include_tags, max_step, and metrics_summary
agreeing with the histories of the same answer. Real parts: the scratch basic-auth MLflow
(these tests write runs), the tests' Redis, the counting proxy."""
import csv
import io
import json
import time
import uuid

import pytest
import redis
from mlflow.entities import Metric

from tests.support.calls import poll
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)

DASHBOARD = ("start_time", "end_time", "experiment_id", "user_id")
START_MS, END_MS = 1_700_000_000_000, 1_700_000_360_000
# A live run's shared tail refreshed by every poll (LIVE_REFRESH already past when the next
# poll comes): these tests log points between two polls and read them in the second.
EVERY_POLL = 1e-3


@pytest.fixture
def mlflow_server(mlflow_scratch_server):
    return mlflow_scratch_server


@pytest.fixture
def experiment(admin_client):
    return admin_client.create_experiment(f"fields-{uuid.uuid4().hex[:12]}")


def make_run(admin_client, experiment, steps=range(10), *, finish=True, tags=None):
    """A run with ``loss`` at ``steps``, started at START_MS (and ended at END_MS)."""
    run_id = admin_client.create_run(experiment, start_time=START_MS,
                                     tags={"mlflow.user": "carol", **(tags or {})}).info.run_id
    log(admin_client, run_id, steps)
    if finish:
        admin_client.set_terminated(run_id, end_time=END_MS)
    return run_id


def log(admin_client, run_id, steps):
    admin_client.log_batch(run_id, metrics=[Metric("loss", s / 100, START_MS + s, s) for s in steps])


def runs_of(response):
    return json.loads(response.data)["runs"]


def loss(run):
    return next(m for m in run["metrics_history"] if m["metric_name"] == "loss")


# --- start_time, end_time, experiment_id, user_id -----------------------------------------

@pytest.mark.parametrize("view", [{}, {"max_points": 10}, {"include_metric_history": False}],
                         ids=["whole-run", "columns", "no-history"])
def test_every_run_carries_the_dashboard_fields_cached_or_not(cached_app, body, admin_client,
                                                              experiment, view):
    finished = make_run(admin_client, experiment)
    running = make_run(admin_client, experiment, finish=False)
    client = cached_app().test_client()
    query = body(experiment_id=experiment, **view)
    for expected_cache in ("MISS", "HIT" if view.get("include_metric_history", True) else None):
        response = poll(client, query)
        if expected_cache:
            assert response.headers["X-Cache"] in {expected_cache, "PARTIAL"}
        by_id = {run["run_id"]: run for run in runs_of(response)}
        assert {k: by_id[finished][k] for k in DASHBOARD} == {
            "start_time": START_MS, "end_time": END_MS, "experiment_id": experiment, "user_id": "carol"}
        assert {k: by_id[running][k] for k in DASHBOARD} == {
            "start_time": START_MS, "end_time": None, "experiment_id": experiment, "user_id": "carol"}


def test_a_cached_run_of_the_former_format_is_a_miss(cached_app, body, admin_client, experiment,
                                                    redis_url, redis_prefix):
    """An entry written before the dashboard fields (no ``format`` in its header) is never
    served: it would answer runs without them."""
    run_id = make_run(admin_client, experiment)
    app = cached_app(LOCAL_COPIES_MB=0)
    client, cache = app.test_client(), app.extensions["run_cache"]
    expected = poll(client, body(run_id=run_id)).data
    key = cache.run_key(body()["tracking_uri"], run_id)
    [(header, payload)] = cache.get_entries([key]).values()
    old = json.loads(bytes(payload))
    for field in DASHBOARD:
        del old[field]
    former = {k: v for k, v in header.items() if k != "format"}
    cache.set_entry(key, former, json.dumps(old).encode())
    assert redis.Redis.from_url(redis_url).exists(redis_prefix + key)
    again = poll(client, body(run_id=run_id))
    assert again.data == expected and again.headers["X-Cache"] != "HIT"


# --- include_tags -------------------------------------------------------------------------

def test_include_tags_adds_every_tag_and_the_cached_run_holds_none(cached_app, body, admin_client,
                                                                   experiment, redis_url, redis_prefix):
    run_id = make_run(admin_client, experiment, tags={"team": "vision-🦉", "seed": "7"})
    client = cached_app(LOCAL_COPIES_MB=0).test_client()
    plain = poll(client, body(run_id=run_id))
    tagged = poll(client, body(run_id=run_id, include_tags=True))
    assert tagged.headers["X-Cache"] == "PARTIAL"  # the run's JSON from the cache, tags spliced in
    [run] = runs_of(tagged)
    mlflow_tags = admin_client.get_run(run_id).data.tags
    assert run["tags"] == mlflow_tags and run["tags"]["team"] == "vision-🦉"
    assert "mlflow.user" in run["tags"] and "mlflow.runName" in run["tags"]
    # without include_tags: no tags, and the rest of the run is the same object
    [without] = runs_of(plain)
    assert "tags" not in without and dict(run, tags=None) == dict(without, tags=None)
    assert b"vision" not in plain.data
    # the cached whole-run JSON holds no tag (they are kept in include_tags listings only)
    r = redis.Redis.from_url(redis_url)
    stored = [r.get(k) for k in r.scan_iter(match=f"{redis_prefix}run:*{run_id}")]
    assert stored and not any(b"vision" in value for value in stored)
    # polled again: the same bytes, MLflow not asked
    again = poll(client, body(run_id=run_id, include_tags=True))
    assert again.headers["X-Cache"] == "HIT" and again.data == tagged.data


def test_include_tags_with_a_view_and_without_histories(client, body, admin_client, experiment):
    run_id = make_run(admin_client, experiment, tags={"team": "nlp"})
    for view in ({"metric_keys": ["loss"], "max_points": 10}, {"include_metric_history": False}):
        [run] = runs_of(poll(client, body(experiment_id=experiment, include_tags=True, **view)))
        assert run["run_id"] == run_id and run["tags"]["team"] == "nlp"


# --- max_step -----------------------------------------------------------------------------

def test_max_step_closes_the_range_on_finished_runs_and_csv(client, body, admin_client, experiment):
    run_id = make_run(admin_client, experiment)
    [run] = runs_of(poll(client, body(run_id=run_id, since_step=2, max_step=5)))
    assert [p["step"] for p in loss(run)["history"]] == [3, 4, 5]
    assert loss(run)["total_points"] == 3 and loss(run)["last_value"] == 0.05
    [run] = runs_of(poll(client, body(run_id=run_id, max_step=1)))
    assert [p["step"] for p in loss(run)["history"]] == [0, 1]
    rows = list(csv.DictReader(io.StringIO(poll(client, body(
        run_id=run_id, since_step=6, max_step=8, format="csv")).get_data(as_text=True))))
    assert [int(row["step"]) for row in rows] == [7, 8]


def test_max_step_on_a_live_run(cached_app, body, admin_client, experiment):
    run_id = make_run(admin_client, experiment, steps=range(5), finish=False)
    client = cached_app(LIVE_REFRESH=EVERY_POLL).test_client()
    query = body(run_id=run_id, since_step=1, max_step=6)
    assert [p["step"] for p in loss(runs_of(poll(client, query))[0])["history"]] == [2, 3, 4]
    log(admin_client, run_id, range(5, 10))
    assert [p["step"] for p in loss(runs_of(poll(client, query))[0])["history"]] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("steps", [{"since_step": 5, "max_step": 5}, {"since_step": 5, "max_step": 4}])
def test_max_step_not_above_since_step_is_422_naming_it(client, body, steps):
    response = client.post("/mlflow/runs", json=body(experiment_name="Default", **steps))
    assert response.status_code == 422
    assert "max_step" in response.get_json()["errors"]


def test_the_spec_documents_the_new_fields(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    run = next(s for name, s in schemas.items() if name.startswith("Run") and "metrics_history"
               in s.get("properties", {}))
    assert set(DASHBOARD) | {"tags"} <= set(run["properties"])
    query = next(s for s in schemas.values() if "since_step" in s.get("properties", {}))
    assert {"max_step", "include_tags"} <= set(query["properties"])


# --- metrics_summary agrees with the histories --------------------------------------------

@pytest.mark.parametrize("view", [{}, {"max_points": 10}, {"since_step": 3}],
                         ids=["whole-run", "columns", "since_step"])
def test_a_live_runs_summary_is_its_histories_last_value(cached_app, body, admin_client,
                                                         experiment, view):
    """The listing (and its latest values) is cached for RUN_LIST_TTL while a live run's
    histories are read anew: the summary follows the histories of the same answer."""
    run_id = make_run(admin_client, experiment, steps=range(5), finish=False)
    client = cached_app(RUN_LIST_TTL=300, LIVE_REFRESH=EVERY_POLL).test_client()
    query = body(run_id=run_id, **view)
    [run] = runs_of(poll(client, query))
    assert run["metrics_summary"]["loss"] == loss(run)["last_value"] == 0.04
    log(admin_client, run_id, range(5, 8))
    [run] = runs_of(poll(client, query))  # listing from the cache: its latest is still 0.04
    assert loss(run)["last_value"] == 0.07
    assert run["metrics_summary"]["loss"] == 0.07


# --- a shared listing's refresh -------------------------------------------------------------

@pytest.mark.parametrize("scope", ["experiment_id", "experiment_name", "run_id"])
def test_a_shared_listings_refresh_is_one_mlflow_call(cached_app, body, proxy, admin_client,
                                                     experiment, scope):
    """Once RUN_LIST_TTL is over, a scoped query's listing is asked again with one call (the
    run search, or runs/get), its experiment as MLflow resolved it within AUTH_CACHE_TTL."""
    run_id = make_run(admin_client, experiment)
    value = {"experiment_id": experiment, "run_id": run_id,
             "experiment_name": admin_client.get_experiment(experiment).name}[scope]
    client = cached_app(RUN_LIST_TTL=1).test_client()
    query = body("bob", include_metric_history=False, **{scope: value})
    expected = poll(client, query).get_json()
    time.sleep(1.2)
    proxy.reset()
    assert poll(client, query).get_json() == expected
    assert len(proxy.paths) == 1 and ("runs/get" if scope == "run_id" else "runs/search") in proxy.paths[0]
