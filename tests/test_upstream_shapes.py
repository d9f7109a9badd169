"""An upstream that answers 200 with JSON that is not MLflow's is a 502 naming the endpoint and
what was wrong, on every route, never a 500: a fake upstream (a real HTTP server) answers
valid MLflow JSON everywhere except on the endpoint under test."""
import json

import pytest

from app import create_app, errors
from app.mlflow.api import reads
from app.mlflow.errors import NotMlflow
from app.mlflow.target import MlflowTarget
from tests.support.fake_mlflow import AJAX, API, EXPERIMENT, POINT, RUNS


@pytest.fixture
def client():
    """LIVE_REFRESH 0: the live run's poll is the per-poll read of what follows since_step
    (bulk-interval); with a tail its first poll reads the history whole. A tail's reads are
    these endpoints, checked the same way (app/mlflow/api.py)."""
    return create_app({"TESTING": True, "LIVE_REFRESH": 0}).test_client()


def with_run(**changes):
    """r1 with ``changes`` applied, e.g. info__run_id=5 or data__params="x"."""
    found = json.loads(json.dumps(RUNS["r1"]))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = found
        for parent in parents:
            target = target[parent]
        target[last] = value
    return found


# Each endpoint, and the requests that make the service read it.
READERS = {
    f"{API}/experiments/search": [("/health", {}), ("/mlflow/experiments", {}), ("/mlflow/runs", {})],
    f"{API}/experiments/get": [("/mlflow/runs", {"experiment_id": "1"}),
                               ("/mlflow/runs", {"run_id": "r1"})],
    f"{API}/experiments/get-by-name": [("/mlflow/runs", {"experiment_name": "e"})],
    f"{API}/runs/search": [("/mlflow/runs", {"experiment_id": "1"}), ("/mlflow/runs", {})],
    f"{API}/runs/get": [("/mlflow/runs", {"run_id": "r1"}),
                        # run_ids are found by a run search; one it did not return is looked up
                        ("/mlflow/runs", {"run_ids": ["r1", "live"]})],
    f"{API}/metrics/get-history": [("/mlflow/runs", {"run_id": "r1"})],
    f"{AJAX}/metrics/get-history-bulk": [("/mlflow/runs", {"experiment_id": "1"})],
    f"{AJAX}/metrics/get-history-bulk-interval": [("/mlflow/runs", {"run_id": "live",
                                                                     "since_step": 0})],
}

ANY_ENDPOINT = [[1, 2, 3], "text", None, 42, True]
EXPERIMENT_ANSWERS = [{"totally": "not mlflow"}, {"experiment": None}, {"experiment": [1]},
                      {"experiment": {"name": "e"}},
                      {"experiment": {"experiment_id": ["1"], "name": "e"}},
                      {"experiment": {"experiment_id": "1", "name": None}},
                      {"experiment": dict(EXPERIMENT, lifecycle_stage=5)}]
RUN_SHAPES = [None, [], {}, {"data": {}}, with_run(info=None), with_run(info__run_id=5),
              with_run(info__experiment_id=None), with_run(info__status=["FINISHED"]),
              with_run(info__start_time="abc"), with_run(info__end_time=2**70),
              with_run(data=[]), with_run(data__params="x"), with_run(data__params=[{"value": "1"}]),
              with_run(data__params=[{"key": "lr", "value": 0.1}]),
              with_run(data__metrics=[dict(POINT, step="abc")]),
              with_run(data__metrics=[dict(POINT, key=None)]),
              with_run(data__tags=[{"key": 1, "value": "x"}])]
POINTS = [{"metrics": "x"}, {"metrics": [None]}, {"metrics": [dict(POINT, step="abc")]},
          {"metrics": [dict(POINT, step=2**70)]}, {"metrics": [dict(POINT, timestamp=1.5)]},
          {"metrics": [dict(POINT, value="abc")]}, {"metrics": [dict(POINT, value=None)]},
          {"metrics": [dict(POINT, value=[1])]}]
BULK_POINTS = [{"metrics": {"r1": []}}, {"metrics": [POINT]}, {"metrics": [dict(POINT, run_id=5)]},
               {"metrics": [dict(POINT, run_id="r1", step="abc")]}]

WRONG = {
    f"{API}/experiments/search": [{"experiments": {"a": 1}}, {"experiments": [1]},
                                  {"experiments": [{"name": "x"}]},
                                  {"experiments": [dict(EXPERIMENT, name=5)]},
                                  {"experiments": [EXPERIMENT], "next_page_token": 5}],
    f"{API}/experiments/get": EXPERIMENT_ANSWERS,
    f"{API}/experiments/get-by-name": EXPERIMENT_ANSWERS,
    f"{API}/runs/search": [{"runs": {"a": 1}}] + [{"runs": [shape]} for shape in RUN_SHAPES],
    f"{API}/runs/get": [{"totally": "not mlflow"}] + [{"run": shape} for shape in RUN_SHAPES],
    f"{API}/metrics/get-history": POINTS,
    f"{AJAX}/metrics/get-history-bulk": POINTS[:2] + BULK_POINTS,
    f"{AJAX}/metrics/get-history-bulk-interval": POINTS[:2] + BULK_POINTS,
}
CASES = [(endpoint, answer) for endpoint in READERS for answer in ANY_ENDPOINT + WRONG[endpoint]]


def test_the_fake_world_is_valid(client, fake_mlflow):
    """Every reader's request succeeds while the fake answers like MLflow."""
    for readers in READERS.values():
        for route, fields in readers:
            response = client.post(route, json={"tracking_uri": fake_mlflow.uri, **fields})
            assert response.status_code == 200, (route, fields, response.get_json())
            assert response.get_json().get("status") != "unhealthy"


@pytest.mark.parametrize("endpoint, answer", CASES,
                         ids=[f"{e.rsplit('/', 1)[1]}-{json.dumps(a)[:60]}" for e, a in CASES])
def test_an_answer_that_is_not_mlflows_is_a_502(client, fake_mlflow, endpoint, answer):
    fake_mlflow.answers[endpoint] = (200, json.dumps(answer).encode())
    for route, fields in READERS[endpoint]:
        response = client.post(route, json={"tracking_uri": fake_mlflow.uri, **fields})
        body = response.get_json()
        assert endpoint in fake_mlflow.paths, (route, fields)
        if route == "/health":
            assert response.status_code == 200
            assert body["status"] == "unhealthy" and body["error_code"] == 502
            message = body["error"]
        else:
            assert response.status_code == 502, (route, fields, body)
            assert body["success"] is False and body["code"] == 502
            message = body["message"]
        assert f"MLflow at {fake_mlflow.uri} answered 200 to {endpoint}" in message
        assert "with a body that is not MLflow's: " in message


@pytest.mark.parametrize("endpoint", list(READERS))
def test_json_nested_too_deep_is_a_502(client, fake_mlflow, endpoint):
    fake_mlflow.answers[endpoint] = (200, b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}")
    for route, fields in READERS[endpoint]:
        response = client.post(route, json={"tracking_uri": fake_mlflow.uri, **fields})
        body = response.get_json()
        message = body["error"] if route == "/health" else body["message"]
        assert "not JSON" in message and (body.get("code") or body.get("error_code")) == 502


@pytest.mark.parametrize("endpoint, answer, fields, what", [
    (f"{API}/experiments/search", [1, 2, 3], {}, "it is not a JSON object"),
    (f"{API}/experiments/get", {"experiment": None}, {"experiment_id": "1"},
     "'experiment' is not an object"),
    (f"{API}/runs/search", {"runs": [{"data": {}}]}, {}, "'runs[0].info' is not an object"),
    (f"{API}/runs/get", {"run": with_run(data__metrics=[dict(POINT, step="abc")])}, {"run_id": "r1"},
     "'run.data.metrics[0].step' is not a 64-bit integer"),
    (f"{API}/metrics/get-history", {"metrics": [POINT, dict(POINT, step="abc")]}, {"run_id": "r1"},
     "'metrics[1].step' is not a 64-bit integer"),
    (f"{AJAX}/metrics/get-history-bulk",
     {"metrics": [dict(POINT, run_id="r1"), dict(POINT, run_id="r2"), dict(POINT, run_id="r2", value="x")]},
     {"experiment_id": "1"}, "'metrics[2].value' is not a number"),
])
def test_the_502_says_what_was_wrong(client, fake_mlflow, endpoint, answer, fields, what):
    fake_mlflow.answers[endpoint] = (200, json.dumps(answer).encode())
    message = client.post("/mlflow/runs", json={"tracking_uri": fake_mlflow.uri, **fields}).get_json()["message"]
    assert message.endswith(f"with a body that is not MLflow's: {what}."), message


def test_numbers_written_as_strings_are_still_read(client, fake_mlflow):
    """protobuf's JSON writes int64 as strings and NaN as "NaN": those are MLflow's too."""
    fake_mlflow.answers[f"{API}/metrics/get-history"] = (200, json.dumps({"metrics": [
        dict(POINT, step="3", timestamp="1700000000000", value="NaN"), dict(POINT, step=4)]}).encode())
    body = client.post("/mlflow/runs", json={"tracking_uri": fake_mlflow.uri, "run_id": "r1"}).get_json()
    [loss] = body["runs"][0]["metrics_history"]
    assert [(p["step"], p["value"]) for p in loss["history"]] == [(3, None), (4, 0.5)]


def test_a_reading_error_no_check_foresaw_is_a_502():
    """The last resort around every endpoint method (pure logic: no answer is needed)."""
    class Reader:
        target = MlflowTarget("http://mlflow.internal")

        @reads("/api/2.0/mlflow/x")
        def read(self):
            return {}["experiment"]

    with pytest.raises(NotMlflow) as raised:
        Reader().read()
    answer = errors.for_mlflow(raised.value)  # the one mapping, at the edge
    assert isinstance(answer, errors.UpstreamError)
    assert answer.description == (
        "MLflow at http://mlflow.internal answered 200 to /api/2.0/mlflow/x with a body that is "
        "not MLflow's: it could not be read (KeyError).")
