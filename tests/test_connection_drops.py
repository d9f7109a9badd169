"""A kept-alive connection MLflow reset or closed before answering is tried once more, on a
fresh connection: what a real MLflow does to the service's pooled connections when its
server restarts a worker (uvicorn does under load), played exactly by a fake
(tests/support/hostile_mlflow.py), then by a real MLflow whose workers restart."""
import concurrent.futures
import collections
import time

import pytest

from app import create_app
from app.mlflow import session, transport
from app.mlflow.errors import Unreachable
from app.mlflow.target import MlflowTarget
from app.mlflow.transport import CallCounter, Deadline, Transport
from tests.support import hostile_mlflow
from tests.support.hostile_mlflow import HostileMlflow
from tests.support.mlflow_fixtures import copy_of_seeded
from tests.support.mlflow_server import MlflowServer

SEARCH = "/api/2.0/mlflow/experiments/search"
OK = hostile_mlflow.answer(b'{"experiments": [{"experiment_id": "1", "name": "e"}]}')


def search(mlflow, seconds=5.0):
    """experiments/search through a request's own transport (the process's shared pool):
    the answer, and how many MLflow requests the request counted."""
    calls = CallCounter()
    transport = Transport(MlflowTarget(mlflow.uri), Deadline(seconds), calls)
    return transport.call("POST", SEARCH, body={}), calls.count


@pytest.mark.parametrize("how", ["reset", "close"])
def test_a_dropped_kept_alive_connection_is_tried_again_on_a_fresh_one(how):
    with HostileMlflow(OK) as mlflow:
        assert search(mlflow)[1] == 1  # the connection is now in the pool, kept alive
        mlflow.drop_next = how         # ... and the server drops it at the next request
        answer, calls = search(mlflow)
    assert answer["experiments"][0]["name"] == "e"
    assert calls == 2                  # both attempts count (X-Cache, the access log)
    assert (mlflow.connections, mlflow.requests) == (2, 3)


def test_the_second_try_asks_for_a_fresh_connection(monkeypatch):
    """After a dropped connection the next pooled one may be as stale (the same worker
    restart). Which one a try gets depends on other threads returning theirs at that
    instant, so what is checked here is that the second try asks for a fresh one; that
    such a call takes no pooled connection is the next test."""
    asked = []

    def recording(expires, *, fresh=False):
        asked.append(fresh)
        return session.watched(expires, fresh=fresh)

    monkeypatch.setattr(transport, "watched", recording)
    with HostileMlflow(OK) as mlflow:
        search(mlflow)
        mlflow.drop_next = "reset"
        search(mlflow)
    assert asked == [False, False, True]


def test_a_fresh_call_takes_no_pooled_connection():
    pool = session.shared_session(8)
    with HostileMlflow(OK) as mlflow:
        for fresh in (False, False, True, False):
            with session.watched(time.monotonic() + 5, fresh=fresh):
                assert pool.post(mlflow.uri + SEARCH, json={}).status_code == 200
        # kept alive, a new one for the fresh call, which is kept alive in turn
        assert (mlflow.connections, mlflow.requests) == (2, 4)


@pytest.mark.parametrize("behaviour", [hostile_mlflow.hang_up, hostile_mlflow.reset])
def test_tried_once_more_only(client, behaviour):
    """A server that drops every connection: two tries, then the 502 of today."""
    with HostileMlflow(behaviour) as mlflow:
        response = client.post("/mlflow/experiments", json={"tracking_uri": mlflow.uri})
        assert mlflow.requests == 2
    assert response.status_code == 502
    # (RemoteDisconnected, a clean close, is a ConnectionResetError: the wording says reset)
    assert response.get_json()["message"] == (
        f"Cannot reach MLflow at {mlflow.uri}: the connection was reset.")


def test_a_connection_dropped_midway_through_an_answer_is_not_tried_again():
    with HostileMlflow(hostile_mlflow.cut_short) as mlflow:
        with pytest.raises(Unreachable) as raised:
            search(mlflow)
        assert mlflow.requests == 1
    assert type(raised.value) is Unreachable  # not ConnectionDropped: nothing to try again


def test_a_refused_connection_is_not_tried_again(client):
    with HostileMlflow(OK) as mlflow:
        uri = mlflow.uri
    response = client.post("/mlflow/experiments", json={"tracking_uri": uri, "http_timeout": 5})
    assert response.status_code == 502
    assert response.get_json()["message"] == (
        f"Cannot reach MLflow at {uri}: the connection was refused.")


# --- a real MLflow whose workers restart ---------------------------------------------------

POLLERS, POLLS = 3, 12


@pytest.fixture(scope="module")
def restarting_mlflow(tmp_path_factory, _mlflow_seeded_db):
    """MLflow (no auth) with two uvicorn workers, each replaced after 10 requests."""
    data = copy_of_seeded(tmp_path_factory, "mlflow-restarting", _mlflow_seeded_db)
    with MlflowServer(data.path, ids=data.ids, workers=2,
                      uvicorn_opts="--limit-max-requests 10") as server:
        yield server


def test_polls_go_on_while_mlflow_restarts_its_workers(restarting_mlflow):
    """3 dashboards poll a running run (refresh: MLflow is asked each time) while MLflow's
    workers are replaced every 10 requests: no poll fails."""
    client = create_app({"TESTING": True}).test_client()
    body = {"tracking_uri": restarting_mlflow.uri, "refresh": True, "http_timeout": 60,
            "run_id": restarting_mlflow.ids["runs"]["finished"]}

    def poll(_):
        return [client.post("/mlflow/runs", json=body) for _ in range(POLLS)]

    with concurrent.futures.ThreadPoolExecutor(POLLERS) as pool:
        answers = [r for polls in pool.map(poll, range(POLLERS)) for r in polls]
    failed = collections.Counter(r.get_json()["message"] for r in answers if r.status_code != 200)
    assert not failed, failed
    assert len(answers) == POLLERS * POLLS
