"""Issue 5's dashboard views of /mlflow/runs (metric_keys, max_points, since_step /
since_timestamp, run_ids, run_status, CSV) against a real basic-auth MLflow and Redis."""
import csv
import io
import os
import time

import pytest
from mlflow.tracking import MlflowClient

from app import create_app
from tests.support import seed
from tests.support.calls import expected_history, post_runs, strict_json, user_body
from tests.support.overrides import module_wide_client  # noqa: F401  (client: one per module)
from tests.support.proxy import MlflowProxy

NEW_FIELDS = {"unknown_metric_keys", "run_errors"}


def one_run(payload):
    assert payload["total_runs"] == 1
    return payload["runs"][0]


def history_of(run, key):
    return next(m for m in run["metrics_history"] if m["metric_name"] == key)


# --- metric_keys -------------------------------------------------------------

def test_metric_keys_only_those_in_the_order_asked(client, as_user, mlflow_server, mlflow_calls):
    finished = mlflow_server.ids["runs"]["finished"]
    payload = post_runs(client, as_user(run_id=finished,
                                        metric_keys=["val/acc", "métrica_ñ", "no_such_metric"]))
    run = one_run(payload)
    assert [m["metric_name"] for m in run["metrics_history"]] == ["val/acc", "métrica_ñ"]
    assert set(run["metrics_summary"]) == {"val/acc", "métrica_ñ"}
    assert history_of(run, "val/acc")["history"] == expected_history(seed.FINISHED_METRICS["val/acc"])
    assert payload["unknown_metric_keys"] == ["no_such_metric"]
    assert payload["message"] == "Fetched 1 run(s) with 2 total metric histories"
    # only the two asked-for metrics were fetched (the run has seven)
    assert sum("get-history" in call for call in mlflow_calls) == 2


def test_without_the_new_fields_the_answer_has_none_of_them(client, as_user, mlflow_server):
    payload = post_runs(client, as_user(run_id=mlflow_server.ids["runs"]["finished"]))
    assert not NEW_FIELDS & set(payload)
    for metric in one_run(payload)["metrics_history"]:
        assert "downsampled" not in metric


# --- max_points --------------------------------------------------------------

def test_max_points_thins_a_long_history_and_keeps_exact_stats(client, as_user, mlflow_server):
    long_id = mlflow_server.ids["runs"]["long"]
    full = history_of(one_run(post_runs(client, as_user(run_id=long_id))), "long_metric")
    thin = history_of(one_run(post_runs(client, as_user(run_id=long_id, max_points=100))),
                      "long_metric")
    assert thin["downsampled"] is True and len(thin["history"]) <= 100
    assert full["total_points"] == thin["total_points"] == seed.LONG_METRIC_POINTS
    for field in ("min_value", "max_value", "last_value"):
        assert thin[field] == full[field]
    assert thin["history"][0] == full["history"][0] and thin["history"][-1] == full["history"][-1]
    assert all(point in full["history"] for point in thin["history"])


def test_max_points_above_the_length_changes_nothing(client, as_user, mlflow_server):
    finished = mlflow_server.ids["runs"]["finished"]
    run = one_run(post_runs(client, as_user(run_id=finished, max_points=1000)))
    for key, points in seed.FINISHED_METRICS.items():
        if key == "nan_metric":
            continue  # +-Inf are stored as +-float max by sqlite; covered in test_runs
        metric = history_of(run, key)
        assert metric["downsampled"] is False
        assert metric["history"] == expected_history(points)


# --- since_step / since_timestamp ---------------------------------------------

def test_since_timestamp_on_a_finished_run(client, as_user, mlflow_server):
    cut = seed.BASE_TIME_MS + 94_000   # train_loss point i has timestamp BASE + i s
    run = one_run(post_runs(client, as_user(run_id=mlflow_server.ids["runs"]["finished"],
                                            metric_keys=["train_loss"], since_timestamp=cut)))
    metric = history_of(run, "train_loss")
    assert [p["step"] for p in metric["history"]] == [95, 96, 97, 98, 99]
    assert metric["total_points"] == 5 and metric["last_value"] == 1 / 100


@pytest.fixture
def live_run(mlflow_scratch_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_scratch_server.admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_scratch_server.admin[1])
    mlflow = MlflowClient(tracking_uri=mlflow_scratch_server.uri)
    experiment_id = mlflow.create_experiment(f"live-{os.getpid()}-{time.time_ns()}")
    return mlflow, mlflow.create_run(experiment_id).info.run_id


def log_steps(mlflow, run_id, steps, key="loss"):
    from mlflow.entities import Metric
    metrics = [Metric(key, 1.0 / (s + 1), seed.BASE_TIME_MS + s, s) for s in steps]
    for start in range(0, len(metrics), 1000):
        mlflow.log_batch(run_id, metrics=metrics[start:start + 1000])


@pytest.fixture
def per_poll_client():
    """LIVE_REFRESH=0: every poll of a live run asks MLflow (no shared tail)."""
    return create_app({"TESTING": True, "LIVE_REFRESH": 0}).test_client()


def test_since_step_on_a_live_run_returns_exactly_the_new_points(per_poll_client,
                                                                 mlflow_scratch_server,
                                                                 live_run, mlflow_calls):
    client = per_poll_client
    mlflow, run_id = live_run
    log_steps(mlflow, run_id, range(10))
    body = user_body(mlflow_scratch_server, run_id=run_id)

    def poll(since):
        metric = one_run(post_runs(client, dict(body, since_step=since)))["metrics_history"][0]
        return [p["step"] for p in metric["history"]]

    assert poll(4) == [5, 6, 7, 8, 9]
    log_steps(mlflow, run_id, range(10, 15))
    assert poll(9) == [10, 11, 12, 13, 14]
    assert poll(14) == []
    # MLflow was asked for the range only (bulk-interval), not for the whole history
    assert any("get-history-bulk-interval" in call for call in mlflow_calls)
    assert not any(call.endswith("/metrics/get-history") for call in mlflow_calls)


def test_since_step_past_the_interval_sample_size_is_still_complete(
        per_poll_client, mlflow_scratch_server, live_run, mlflow_calls):
    """More than 2,500 new points: MLflow's interval answer would be sampled, so the
    run is fetched in full and cut."""
    client = per_poll_client
    mlflow, run_id = live_run
    log_steps(mlflow, run_id, range(3000))
    body = user_body(mlflow_scratch_server, run_id=run_id, since_step=10)
    metric = one_run(post_runs(client, body))["metrics_history"][0]
    assert [p["step"] for p in metric["history"]] == list(range(11, 3000))
    assert metric["total_points"] == 2989
    assert any(call.endswith("/metrics/get-history") for call in mlflow_calls)


def test_since_step_on_a_cached_finished_run_asks_mlflow_nothing(cached_app, as_user,
                                                                 mlflow_server):
    with MlflowProxy(mlflow_server.uri) as proxy:
        client = cached_app().test_client()
        body = dict(as_user(run_id=mlflow_server.ids["runs"]["long"], since_step=26_000,
                            max_points=50), tracking_uri=proxy.uri)
        first = client.post("/mlflow/runs", json=body)
        assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
        proxy.reset()
        second = client.post("/mlflow/runs", json=body)
        assert second.headers["X-Cache"] == "HIT" and proxy.count() == 0
        assert second.data == first.data
        metric = one_run(strict_json(second.data))["metrics_history"][0]
        assert metric["total_points"] == seed.LONG_METRIC_POINTS - 26_001
        assert metric["history"][0]["step"] == 26_001 and len(metric["history"]) <= 50
        # the full columns are cached: another view of the same run needs no MLflow call
        other = client.post("/mlflow/runs", json=dict(body, since_step=None, max_points=1000))
        assert other.headers["X-Cache"] == "HIT"
        assert one_run(strict_json(other.data))["metrics_history"][0]["total_points"] == \
            seed.LONG_METRIC_POINTS


# --- run_ids / run_status --------------------------------------------------

def test_run_ids_in_the_given_order_with_errors_per_run(client, as_user, mlflow_server):
    ids = mlflow_server.ids["runs"]
    asked = [ids["long"], ids["secret"], "0" * 32, ids["finished"], ids["deleted"]]
    payload = post_runs(client, as_user("alice", run_ids=asked, include_metric_history=False))
    assert [r["run_id"] for r in payload["runs"]] == [ids["long"], ids["finished"]]
    errors = {e["run_id"]: e for e in payload["run_errors"]}
    assert [e["run_id"] for e in payload["run_errors"]] == [ids["secret"], "0" * 32, ids["deleted"]]
    assert errors[ids["secret"]]["code"] == 403          # alice may not read secret-exp
    assert errors[ids["deleted"]]["code"] == 404
    assert "include_deleted" in errors[ids["deleted"]]["message"]
    # MLflow answers 403 to a non-admin asking for an unknown run; 404 to the admin
    assert errors["0" * 32]["code"] == 403
    admin = post_runs(client, as_user(run_ids=["0" * 32, ids["finished"]]))
    assert admin["run_errors"][0]["code"] == 404 and admin["total_runs"] == 1
    assert admin["experiment_name"] == "shared-exp"


def test_run_status_filters_searches_and_run_ids(client, as_user, mlflow_server):
    running = post_runs(client, as_user(experiment_name="shared-exp", run_status=["RUNNING"],
                                        include_metric_history=False))
    assert [r["run_name"] for r in running["runs"]] == ["running"]
    done = post_runs(client, as_user(experiment_name="shared-exp",
                                     run_status=["FINISHED", "FAILED"], include_metric_history=False))
    assert {r["run_name"] for r in done["runs"]} == {"finished", "empty", "long", "failed"}
    ids = mlflow_server.ids["runs"]
    mixed = post_runs(client, as_user(run_ids=[ids["running"], ids["failed"]],
                                      run_status=["FAILED"], include_metric_history=False))
    assert [r["run_name"] for r in mixed["runs"]] == ["failed"]
    assert mixed["run_errors"][0]["run_id"] == ids["running"]
    assert mixed["run_errors"][0]["code"] == 404


def test_run_ids_with_order_by_limit_and_run_id(client, as_user, mlflow_server):
    ids = mlflow_server.ids["runs"]
    three = [ids["failed"], ids["finished"], ids["long"]]
    # long_metric's latest value is 26.233, failed's and finished's train_loss differ
    ordered = post_runs(client, as_user(run_ids=three, order_by=["metrics.train_loss DESC"],
                                        include_metric_history=False))
    losses = [r["metrics_summary"].get("train_loss") for r in ordered["runs"]]
    assert [l for l in losses if l is not None] == sorted([l for l in losses if l is not None],
                                                          reverse=True)
    assert {r["run_id"] for r in ordered["runs"]} == set(three)
    # all listed runs are answered without a limit (default 10 does not apply)...
    listed = list(ids.values()) + ["0" * 32]
    assert len(listed) == 11
    many = post_runs(client, as_user(run_ids=listed, include_metric_history=False,
                                     include_deleted=True))
    assert [r["run_id"] for r in many["runs"]] == listed[:-1]
    assert [e["run_id"] for e in many["run_errors"]] == ["0" * 32]
    # ...and a limit sent with them does
    two = post_runs(client, as_user(run_ids=three, limit=2, include_metric_history=False))
    assert [r["run_id"] for r in two["runs"]] == three[:2]
    # run_id narrows run_ids
    assert post_runs(client, as_user(run_ids=three, run_id=ids["long"]))["runs"][0]["run_id"] == ids["long"]
    post_runs(client, as_user(run_ids=three, run_id=ids["empty"]), status=404)


# --- CSV ---------------------------------------------------------------------

def read_csv(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_round_trips_every_point(client, as_user, mlflow_server):
    ids = mlflow_server.ids["runs"]
    query = as_user(run_ids=[ids["finished"], ids["failed"]])
    payload = post_runs(client, query)
    rows = read_csv(client.post("/mlflow/runs", json=dict(query, format="csv")))
    expected = [(run["run_id"], run["run_name"], metric["metric_name"], point["step"],
                 point["value"], point["timestamp"])
                for run in payload["runs"] for metric in run["metrics_history"]
                for point in metric["history"]]
    got = [(r["run_id"], r["run_name"], r["metric"], int(r["step"]),
            float(r["value"]) if r["value"] else None, int(r["timestamp"])) for r in rows]
    assert got == expected
    assert len(got) == sum(len(points) for points in seed.FINISHED_METRICS.values()) + 5


def test_csv_by_accept_header_with_views(client, as_user, mlflow_server):
    query = as_user(run_id=mlflow_server.ids["runs"]["finished"],
                    metric_keys=["metric with space", "gone"], since_step=1)
    response = client.post("/mlflow/runs", json=query, headers={"Accept": "text/csv"})
    rows = read_csv(response)
    assert [(r["metric"], r["step"]) for r in rows] == [("metric with space", "2"),
                                                        ("metric with space", "3"),
                                                        ("metric with space", "4")]
    assert response.headers["X-Unknown-Metric-Keys"] == '["gone"]'
    assert "attachment" in response.headers["Content-Disposition"]
    # format wins over Accept
    json_answer = client.post("/mlflow/runs", json=dict(query, format="json"),
                              headers={"Accept": "text/csv"})
    assert json_answer.mimetype == "application/json"


def test_csv_reports_run_errors_in_headers(client, as_user, mlflow_server):
    ids = mlflow_server.ids["runs"]
    response = client.post("/mlflow/runs", json=as_user(
        run_ids=[ids["failed"], "0" * 32], format="csv"))
    assert {r["run_id"] for r in read_csv(response)} == {ids["failed"]}
    assert response.headers["X-Run-Errors"] == '[{"run_id": "' + "0" * 32 + '", "code": 404}]'
    assert response.headers["X-Run-Errors-Count"] == "1"


def test_csv_without_histories_is_the_header_only(client, as_user, mlflow_server, mlflow_calls):
    response = client.post("/mlflow/runs", json=as_user(
        run_id=mlflow_server.ids["runs"]["finished"], format="csv", include_metric_history=False))
    assert read_csv(response) == []
    assert response.get_data(as_text=True).startswith("run_id,run_name,metric,step,value,timestamp")
    assert not any("history" in call for call in mlflow_calls)


# --- validation ------------------------------------------------------------

@pytest.mark.parametrize("fields, named", [
    ({"max_points": 5}, "max_points"),
    ({"max_points": "100"}, "max_points"),
    ({"since_step": 1.5}, "since_step"),
    ({"since_timestamp": "yesterday"}, "since_timestamp"),
    ({"metric_keys": []}, "metric_keys"),
    ({"metric_keys": ["a", "a"]}, "metric_keys"),
    ({"run_ids": ["x", "x"]}, "run_ids"),
    ({"run_ids": []}, "run_ids"),
    ({"run_status": []}, "run_status"),
    ({"run_status": ["DONE"]}, "run_status"),
    ({"format": "xml"}, "format"),
])
def test_bad_view_fields_are_422_naming_the_field(client, fields, named):
    body = {"tracking_uri": "http://127.0.0.1:9", **fields}
    response = client.post("/mlflow/runs", json=body)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert named in response.get_json()["errors"]


def test_openapi_documents_the_view_fields(client):
    spec = client.get("/openapi.json").get_json()
    fields = spec["components"]["schemas"]["RunsQuery"]["properties"]
    for name in ("metric_keys", "max_points", "since_step", "since_timestamp", "run_ids",
                 "run_status", "format"):
        assert fields[name]["description"]
    content = spec["paths"]["/mlflow/runs"]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/csv"}


def test_max_response_points_counts_what_the_view_returns(as_user, mlflow_server):
    from app import create_app
    client = create_app({"TESTING": True, "MAX_RESPONSE_POINTS": 1000}).test_client()
    query = as_user(run_id=mlflow_server.ids["runs"]["long"])
    too_big = client.post("/mlflow/runs", json=query)
    assert too_big.status_code == 422 and "max_points" in too_big.get_json()["message"]
    assert client.post("/mlflow/runs", json=dict(query, format="csv")).status_code == 422
    thin = post_runs(client, dict(query, max_points=500))
    assert one_run(thin)["metrics_history"][0]["total_points"] == seed.LONG_METRIC_POINTS
    tail = post_runs(client, dict(query, since_step=seed.LONG_METRIC_POINTS - 10))
    assert len(one_run(tail)["metrics_history"][0]["history"]) == 9
