"""POST /mlflow/runs against a real basic-auth MLflow server."""
import math

import pytest
from mlflow.tracking import MlflowClient

from tests.support import seed
from tests.support.calls import expected_history, post_runs, user_body

SHARED_ACTIVE = {"finished", "running", "empty", "long", "failed"}


def run_by_name(payload, name):
    return next(r for r in payload["runs"] if r["run_name"] == name)


@pytest.fixture(scope="module")
def shared_runs(module_client, mlflow_server):
    return post_runs(module_client, user_body(mlflow_server, experiment_name="shared-exp"))


def test_contract_fields_and_default_selection(shared_runs):
    assert shared_runs["success"] is True
    assert shared_runs["experiment_name"] == "shared-exp"
    assert {r["run_name"] for r in shared_runs["runs"]} == SHARED_ACTIVE  # no deleted run
    assert shared_runs["total_runs"] == len(SHARED_ACTIVE)
    histories = sum(len(r["metrics_history"]) for r in shared_runs["runs"])
    assert shared_runs["message"] == f"Fetched {len(SHARED_ACTIVE)} run(s) with {histories} total metric histories"
    for run in shared_runs["runs"]:
        # the contract's fields, and issue 12's dashboard fields beside them (additive)
        assert set(run) == {"run_id", "run_name", "status", "duration_seconds", "parameters",
                            "metrics_summary", "metrics_history"} | {
                            "start_time", "end_time", "experiment_id", "user_id"}


def test_finished_run_matches_what_was_logged(shared_runs, mlflow_server):
    run = run_by_name(shared_runs, "finished")
    assert run["run_id"] == mlflow_server.ids["runs"]["finished"]
    assert run["status"] == "FINISHED"
    assert run["duration_seconds"] == seed.FINISHED_DURATION_S
    assert run["parameters"] == seed.PARAMS
    by_name = {m["metric_name"]: m for m in run["metrics_history"]}
    assert list(by_name) == sorted(seed.FINISHED_METRICS)
    for name, logged in seed.FINISHED_METRICS.items():
        stored = seed.NAN_METRIC_AS_STORED if name == "nan_metric" else logged
        metric = by_name[name]
        assert metric["history"] == expected_history(stored), name
        finite = [p.value for p in stored if math.isfinite(p.value)]
        assert metric["total_points"] == len(stored)
        assert (metric["min_value"], metric["max_value"]) == (min(finite), max(finite))
        assert metric["last_value"] == metric["history"][-1]["value"]


def test_steps_out_of_order_and_duplicates_are_ordered(shared_runs):
    by_name = {m["metric_name"]: m for m in run_by_name(shared_runs, "finished")["metrics_history"]}
    assert [p["step"] for p in by_name["out_of_order"]["history"]] == sorted(seed.OUT_OF_ORDER_STEPS)
    assert [p["value"] for p in by_name["dup_step"]["history"]] == [1.0, 10.0, 11.0, 12.0, 20.0]


def test_nan_becomes_null_and_summary_is_latest(shared_runs):
    run = run_by_name(shared_runs, "finished")
    nan = next(m for m in run["metrics_history"] if m["metric_name"] == "nan_metric")
    assert nan["history"][1]["value"] is None  # logged NaN
    assert run["metrics_summary"]["train_loss"] == seed.TRAIN_LOSS[-1].value
    assert run["metrics_summary"]["out_of_order"] == 90.0  # value at the highest step
    assert set(run["metrics_summary"]) == set(seed.FINISHED_METRICS)


def test_history_past_one_mlflow_page(shared_runs):
    long = run_by_name(shared_runs, "long")["metrics_history"][0]
    assert long["total_points"] == seed.LONG_METRIC_POINTS > 25_000
    assert [p["step"] for p in long["history"]] == list(range(seed.LONG_METRIC_POINTS))
    assert long["last_value"] == (seed.LONG_METRIC_POINTS - 1) / 1000


def test_running_empty_and_failed_runs(shared_runs):
    running = run_by_name(shared_runs, "running")
    assert running["status"] == "RUNNING" and running["duration_seconds"] is None
    empty = run_by_name(shared_runs, "empty")
    assert empty["metrics_history"] == [] and empty["metrics_summary"] == {} and empty["parameters"] == {}
    assert run_by_name(shared_runs, "failed")["status"] == "FAILED"


def test_same_answer_as_mlflow_client(shared_runs, mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_server.admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.admin[1])
    mlflow = MlflowClient(tracking_uri=mlflow_server.uri)
    run = run_by_name(shared_runs, "long")
    theirs = mlflow.get_metric_history(run["run_id"], "long_metric")
    ours = run["metrics_history"][0]["history"]
    assert [(p["step"], p["value"], p["timestamp"]) for p in ours] == \
        sorted((m.step, m.value, m.timestamp) for m in theirs)


def test_by_run_id(client, as_user, mlflow_server):
    run_id = mlflow_server.ids["runs"]["finished"]
    payload = post_runs(client, as_user(run_id=run_id))
    assert [r["run_id"] for r in payload["runs"]] == [run_id]
    assert payload["experiment_name"] == "shared-exp"


def test_by_experiment_id(client, as_user, mlflow_server):
    exp_id = mlflow_server.ids["experiments"]["shared-exp"]
    payload = post_runs(client, as_user(experiment_id=exp_id, include_metric_history=False))
    assert {r["run_name"] for r in payload["runs"]} == SHARED_ACTIVE


def test_limit_and_paging(app, as_user, mlflow_calls):
    app.config["MLFLOW_SEARCH_PAGE_SIZE"] = 2  # forces three runs/search pages for 5 runs
    payload = post_runs(app.test_client(), as_user(experiment_name="shared-exp", limit=5,
                                                   include_deleted=True, include_metric_history=False))
    assert payload["total_runs"] == 5
    assert mlflow_calls.count("/api/2.0/mlflow/runs/search") == 3
    limited = post_runs(app.test_client(), as_user(experiment_name="shared-exp", limit=2,
                                                   include_metric_history=False))
    assert limited["total_runs"] == 2


def test_without_history_makes_no_history_calls(client, as_user, mlflow_calls):
    payload = post_runs(client, as_user(experiment_name="shared-exp", include_metric_history=False))
    assert all(r["metrics_history"] == [] for r in payload["runs"])
    assert run_by_name(payload, "finished")["metrics_summary"]["train_loss"] == seed.TRAIN_LOSS[-1].value
    assert not [c for c in mlflow_calls if "get-history" in c]


def test_include_deleted(client, as_user, mlflow_server):
    payload = post_runs(client, as_user(experiment_name="shared-exp", include_deleted=True,
                                        include_metric_history=False))
    assert {r["run_name"] for r in payload["runs"]} == SHARED_ACTIVE | {"deleted"}
    deleted_id = mlflow_server.ids["runs"]["deleted"]
    post_runs(client, as_user(run_id=deleted_id), status=404)
    assert post_runs(client, as_user(run_id=deleted_id, include_deleted=True))["total_runs"] == 1


def test_no_selector_returns_newest_runs_across_experiments(client, as_user):
    payload = post_runs(client, as_user(limit=100, include_metric_history=False))
    assert payload["experiment_name"] is None
    assert {r["run_name"] for r in payload["runs"]} == SHARED_ACTIVE | {"secret"} | set(seed.CAP_RUNS)


def test_permissions_decide_what_is_visible(client, as_user, mlflow_server):
    # alice is denied secret-exp: it is left out of the cross-experiment listing ...
    payload = post_runs(client, as_user("alice", limit=100, include_metric_history=False))
    assert "secret" not in {r["run_name"] for r in payload["runs"]}
    # ... and asking for it directly is a 403, for bob it works.
    secret = mlflow_server.ids["runs"]["secret"]
    body = post_runs(client, as_user("alice", run_id=secret), status=403)
    assert "alice" in body["message"]
    post_runs(client, as_user("alice", experiment_name="secret-exp"), status=403)
    assert post_runs(client, as_user("bob", run_id=secret))["runs"][0]["run_name"] == "secret"


def test_wrong_password_is_401(client, as_user):
    body = post_runs(client, dict(as_user(experiment_name="shared-exp"), password="wrong"), status=401)
    assert body["success"] is False and "credentials" in body["message"]


def test_no_credentials_on_auth_server_is_401(client, mlflow_server):
    body = post_runs(client, {"tracking_uri": mlflow_server.uri, "experiment_name": "shared-exp"},
                     status=401)
    assert body["code"] == 401 and "no username/password were sent" in body["message"]


@pytest.mark.parametrize("selector", [
    {"experiment_name": "no-such-experiment"}, {"experiment_id": "987654"},
    {"run_id": "0123456789abcdef0123456789abcdef"},
])
def test_unknown_experiment_or_run_is_404(client, as_user, selector):
    body = post_runs(client, as_user(**selector), status=404)
    assert "not found" in body["message"]


def test_deleted_experiment_is_404_unless_asked(client, as_user):
    body = post_runs(client, as_user(experiment_name="deleted-exp"), status=404)
    assert "include_deleted" in body["message"]
    assert post_runs(client, as_user(experiment_name="deleted-exp", include_deleted=True))["runs"] == []


def test_selectors_must_agree(client, as_user, mlflow_server):
    ids = mlflow_server.ids
    post_runs(client, as_user(experiment_name="shared-exp",
                              experiment_id=ids["experiments"]["secret-exp"]), status=422)
    post_runs(client, as_user(experiment_name="secret-exp", run_id=ids["runs"]["finished"]), status=404)
    both = post_runs(client, as_user(experiment_name="shared-exp", run_id=ids["runs"]["finished"],
                                     experiment_id=ids["experiments"]["shared-exp"]))
    assert both["total_runs"] == 1


def test_no_auth_server(client, mlflow_noauth_server):
    payload = post_runs(client, {"tracking_uri": mlflow_noauth_server.uri,
                                 "experiment_name": "shared-exp", "include_metric_history": False})
    assert {r["run_name"] for r in payload["runs"]} == SHARED_ACTIVE


def test_password_is_never_logged(client, as_user, caplog):
    caplog.set_level("DEBUG")
    body = as_user(experiment_name="shared-exp", include_metric_history=False)
    client.post("/mlflow/runs", json=body)
    client.post("/mlflow/runs", json=dict(body, password="wrong-secret-pw"))
    client.post("/health", json=dict(body, experiment_name=None) | {"tracking_uri": "http://127.0.0.1:9"})
    assert caplog.records  # the requests were logged at all
    assert body["password"] not in caplog.text and "wrong-secret-pw" not in caplog.text


def test_non_ascii_credentials_are_sent_as_utf8(client, as_user, mlflow_server):
    mlflow_server.create_user("zoë", "pässwörd-ünïcode-✓")
    body = dict(as_user(experiment_name="shared-exp", include_metric_history=False),
                username="zoë", password="pässwörd-ünïcode-✓")
    assert post_runs(client, body)["total_runs"] == len(SHARED_ACTIVE)
    post_runs(client, dict(body, password="pässwörd-ünïcode-✗"), status=401)


def test_filter_string_and_order_by_go_to_mlflow(client, as_user, mlflow_server):
    def names(**fields):
        body = as_user(experiment_name="shared-exp", include_metric_history=False, **fields)
        return [r["run_name"] for r in post_runs(client, body)["runs"]]

    assert names(filter_string="params.learning_rate = '0.001'") == ["finished"]
    assert set(names(filter_string="metrics.train_loss < 0.3")) == {"finished", "running", "failed"}
    assert names(order_by=["attributes.run_name ASC"]) == sorted(SHARED_ACTIVE)
    assert names(order_by=["attributes.run_name DESC"], limit=2) == sorted(SHARED_ACTIVE)[::-1][:2]
    across = post_runs(client, as_user(filter_string="params.batch_size = '16'",
                                       include_metric_history=False))
    assert [r["run_name"] for r in across["runs"]] == ["finished"]


def test_filter_string_with_run_id_narrows(client, as_user, mlflow_server):
    run_id = mlflow_server.ids["runs"]["finished"]
    body = as_user(run_id=run_id, include_metric_history=False)
    assert post_runs(client, dict(body, filter_string="params.batch_size = '16'"))["total_runs"] == 1
    assert post_runs(client, dict(body, filter_string="params.batch_size = '32'"))["total_runs"] == 0


@pytest.mark.parametrize("fields, field", [
    ({"filter_string": "metrics.val_acc >>> 2"}, "filter_string"),
    ({"order_by": ["metrics.train_loss SIDEWAYS"]}, "order_by"),
    # run_status is written into MLflow's filter by the service, always well formed: the
    # caller's filter_string is what MLflow refused (found by the live fuzz: filter "0")
    ({"filter_string": "0", "run_status": ["KILLED"]}, "filter_string"),
])
def test_filters_mlflow_rejects_are_422(client, as_user, fields, field):
    body = post_runs(client, as_user(experiment_name="shared-exp", **fields), status=422)
    assert "MLflow rejected" in body["message"] and field in body["message"]
    assert list(body["errors"]) == [field]


@pytest.mark.parametrize("experiment_id", ["abc", "-"])
def test_an_experiment_id_mlflow_cannot_parse_is_not_found(module_client, mlflow_server,
                                                           experiment_id):
    body = post_runs(module_client, user_body(mlflow_server, experiment_id=experiment_id),
                     status=404)
    assert experiment_id in body["message"]
