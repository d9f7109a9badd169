"""Issue 10, item 12: many ``run_ids`` cost MLflow a few run searches, not a call per run,
and RATE_LIMIT counts such a request by its size. Real basic-auth MLflow (the scratch
server, with a few hundred runs written straight into its store) behind a counting proxy."""
import math
import os
import time

import pytest

from tests.support import seed
from tests.support.calls import post_runs
from tests.support.overrides import module_wide_client, scratch_mlflow_server  # noqa: F401

MANY = 300
LOOKUPS = 20  # app.runs.by_ids.RUN_LOOKUPS


@pytest.fixture(scope="module")
def many_runs(mlflow_scratch_server):
    """(experiment id, run ids) of MANY finished runs; run i has metric m = i + step / 10."""
    return seed.seed_many_runs(mlflow_scratch_server.db_uri,
                               f"many-{os.getpid()}-{time.time_ns()}", MANY)


@pytest.fixture
def body(body):
    """The harness's ``body`` (here: the scratch server through a counting proxy of the
    test's own), with time for hundreds of runs."""
    return lambda user="admin", **fields: body(user, **{**fields, "http_timeout": 120})


def test_many_run_ids_take_a_few_searches(client, body, proxy, many_runs, mlflow_scratch_server):
    _, run_ids = many_runs
    seeded = mlflow_scratch_server.ids["runs"]
    special = [seeded["secret"], "0" * 32, seeded["deleted"]]  # forbidden, unknown, deleted
    asked = run_ids[:100] + special[:1] + run_ids[100:200] + special[1:] + run_ids[200:297]
    payload = post_runs(client, body("alice", run_ids=asked, metric_keys=["m"]))
    found = [run_id for run_id in asked if run_id not in special]
    assert [r["run_id"] for r in payload["runs"]] == found  # in the order asked
    for run in payload["runs"]:
        i = run_ids.index(run["run_id"])
        assert run["run_name"] == f"many-{i:04d}" and run["status"] == "FINISHED"
        assert run["metrics_summary"] == {"m": i + 0.2}
        assert run["metrics_history"][0]["history"] == [
            {"step": s, "value": i + s / 10, "timestamp": seed.BASE_TIME_MS + s} for s in range(3)]
    # MLflow's precise answer for each run it did not return, as with few run_ids
    assert [(e["run_id"], e["code"]) for e in payload["run_errors"]] == [
        (seeded["secret"], 403), ("0" * 32, 403), (seeded["deleted"], 404)]
    assert "include_deleted" in payload["run_errors"][2]["message"]
    # one experiment search, one run search and one saying why three were left out (the
    # deleted one), two lookups, the experiment's name, the histories 100 runs per call
    assert proxy.count("/experiments/search") == 1
    assert proxy.count("/runs/search") == 2
    assert proxy.count("/runs/get") == 2
    assert proxy.count("get-history-bulk") == math.ceil(len(found) / 100)
    assert proxy.count() == 1 + 2 + 2 + 1 + math.ceil(len(found) / 100)


def test_lookups_of_missing_runs_are_bounded(client, body, proxy, many_runs):
    _, run_ids = many_runs
    unknown = [f"{i:032x}" for i in range(1, 31)]
    payload = post_runs(client, body("alice", run_ids=[run_ids[0], *unknown],
                                     include_metric_history=False))
    assert [r["run_id"] for r in payload["runs"]] == [run_ids[0]]
    assert [e["run_id"] for e in payload["run_errors"]] == unknown
    assert proxy.count("/runs/get") == LOOKUPS
    looked_up, rest = payload["run_errors"][:LOOKUPS], payload["run_errors"][LOOKUPS:]
    assert {e["code"] for e in looked_up} == {403}  # what MLflow tells a non-admin
    assert {e["code"] for e in rest} == {404}
    assert all("not looked up one by one" in e["message"] for e in rest)


def test_run_ids_that_cannot_be_mlflow_ids_are_404_without_a_call(client, body, proxy,
                                                                   many_runs):
    _, run_ids = many_runs
    odd = ["x' OR attributes.run_id != 'y", "../../etc/passwd", "a b", "ünïcode"]
    payload = post_runs(client, body(run_ids=[*odd, run_ids[5]], include_metric_history=False))
    assert [r["run_id"] for r in payload["runs"]] == [run_ids[5]]  # nothing else leaks in
    assert [(e["run_id"], e["code"]) for e in payload["run_errors"]] == [(i, 404) for i in odd]
    assert proxy.count("/runs/get") == 0


def test_filter_status_and_order_apply_to_many_run_ids(client, body, proxy, many_runs):
    _, run_ids = many_runs
    asked = run_ids[:150]
    payload = post_runs(client, body(run_ids=asked, filter_string="metrics.m >= 100",
                                     order_by=["metrics.m DESC"], run_status=["FINISHED"],
                                     include_metric_history=False))
    assert [r["run_id"] for r in payload["runs"]] == asked[100:][::-1]
    # every filtered-out run is named precisely, without a lookup per run
    assert [e["run_id"] for e in payload["run_errors"]] == asked[:100]
    assert all(e["code"] == 404 and "filter_string/run_status" in e["message"]
               for e in payload["run_errors"])
    assert proxy.count("/runs/get") == 0 and proxy.count("/runs/search") <= 3
    none = post_runs(client, body(run_ids=asked, run_status=["RUNNING"],
                                  include_metric_history=False))
    assert none["runs"] == [] and len(none["run_errors"]) == 150


def test_rate_limit_counts_a_request_by_the_runs_it_may_select(cached_app, body, many_runs):
    experiment_id, run_ids = many_runs
    client = cached_app(RATE_LIMIT="10/hour").test_client()
    cheap = body(run_ids=run_ids[:3], include_metric_history=False)
    costly = body(run_ids=run_ids[:250], include_metric_history=False)  # 3 units
    for request in (costly, costly, costly, cheap):   # 3 + 3 + 3 + 1
        assert client.post("/mlflow/runs", json=request).status_code == 200
    assert client.post("/mlflow/runs", json=cheap).status_code == 429   # one request each: 5
    # a request larger than the whole budget still gets through an unused one
    tiny = cached_app(RATE_LIMIT="2/hour").test_client()
    elsewhere = {"environ_base": {"REMOTE_ADDR": "10.9.8.7"}}  # another client's address
    assert tiny.post("/mlflow/runs", json=costly, **elsewhere).status_code == 200
    assert tiny.post("/mlflow/runs", json=cheap, **elsewhere).status_code == 429
    # so does a limit
    newest = body(experiment_id=experiment_id, limit=MANY, include_metric_history=False)
    third = {"environ_base": {"REMOTE_ADDR": "10.9.8.6"}}
    assert client.post("/mlflow/runs", json=newest, **third).status_code == 200  # 3
    for _ in range(7):
        assert client.post("/mlflow/runs", json=cheap, **third).status_code == 200
    assert client.post("/mlflow/runs", json=cheap, **third).status_code == 429
