"""Histories through MLflow's bulk endpoint, its fallbacks, and the deadline, against a
real MLflow behind a proxy that counts calls (and can refuse routes or be slow)."""
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.support import seed

BULK = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
PER_RUN = "/api/2.0/mlflow/metrics/get-history?"


@pytest.fixture(scope="module")
def mlflow_client(mlflow_server):
    with pytest.MonkeyPatch.context() as env:  # module-scoped: the fixture's own monkeypatch
        env.setenv("MLFLOW_TRACKING_USERNAME", mlflow_server.admin[0])
        env.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.admin[1])
        yield MlflowClient(tracking_uri=mlflow_server.uri)


def histories(client, body):
    # refresh: each call must reach MLflow, not the cache filled by the previous one.
    response = client.post("/mlflow/runs", json=dict(body, refresh=True))
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return {(run["run_name"], m["metric_name"]): m for run in response.get_json()["runs"]
            for m in run["metrics_history"]}


def as_mlflow_says(mlflow_client, run_id, key):
    points = mlflow_client.get_metric_history(run_id, key)
    return sorted((p.step, p.timestamp, p.value) for p in points)


def ours(metric):
    return [(p["step"], p["timestamp"], p["value"]) for p in metric["history"]]


@pytest.mark.parametrize("experiment", ["shared-exp", "cap-exp"])
def test_bulk_and_per_run_paths_agree_with_mlflow_client(client, as_user, proxy, mlflow_server,
                                                         mlflow_client, experiment):
    query = dict(as_user(experiment_name=experiment), tracking_uri=proxy.uri)
    bulk = histories(client, query)
    assert proxy.count(BULK) > 0
    proxy.refuse = {"/ajax-api/": 404}  # a server or proxy without the ajax routes
    per_run = histories(client, query)
    assert bulk == per_run
    runs = mlflow_server.ids["runs"]
    for (run_name, key), metric in bulk.items():
        expected = as_mlflow_says(mlflow_client, runs[run_name], key)
        got = ours(metric)
        if key == "nan_metric":  # NaN != NaN: compare where MLflow has numbers
            assert [p[:2] for p in got] == [p[:2] for p in expected]
            assert [v is None for *_, v in got] == [v != v for *_, v in expected]
        else:
            assert got == expected, (run_name, key)


def test_bulk_cap_is_detected_and_the_cut_runs_refetched(client, as_user, proxy, mlflow_server):
    query = dict(as_user(experiment_name="cap-exp"), tracking_uri=proxy.uri)
    got = histories(client, query)
    for name, points in seed.CAP_RUNS.items():
        assert got[(name, "m")]["total_points"] == seed.CAP_RUN_POINTS
        assert ours(got[(name, "m")]) == [(p.step, p.timestamp, p.value) for p in points]
    assert proxy.count(BULK) == 2  # "m" and "val/acc", each one call for all three runs
    # 30,000 points of "m" > the 25,000 cap: the runs ordered after the cut are refetched
    # per run; the ones before it are complete in the bulk answer.
    refetched = proxy.count(PER_RUN + "run_id=")
    assert 1 <= refetched <= 2
    ordered = sorted(mlflow_server.ids["runs"][n] for n in seed.CAP_RUNS)
    assert not any(f"run_id={ordered[0]}" in p for p in proxy.paths if PER_RUN in p)


def test_fewer_calls_than_per_run(client, as_user, proxy):
    histories(client, dict(as_user(experiment_name="shared-exp"), tracking_uri=proxy.uri))
    with_bulk = proxy.count()
    proxy.reset()
    proxy.refuse = {"/ajax-api/": 405}
    histories(client, dict(as_user(experiment_name="shared-exp"), tracking_uri=proxy.uri))
    assert proxy.count(PER_RUN) > proxy.count(BULK) == 1  # one refused try, then per run
    assert with_bulk < proxy.count()


def test_bulk_403_falls_back_to_per_run(client, as_user, proxy):
    proxy.refuse = {"/ajax-api/": 403}
    got = histories(client, dict(as_user(experiment_name="cap-exp"), tracking_uri=proxy.uri))
    assert got[("cap-a", "m")]["total_points"] == seed.CAP_RUN_POINTS
    assert proxy.count(PER_RUN) == 6  # 3 runs x 2 metrics, each its own answer


@pytest.mark.parametrize("timeout", [1, 2.5])
def test_slow_mlflow_ends_in_504_within_the_budget(client, as_user, proxy, timeout):
    proxy.delay = timeout + 30  # far beyond the budget: waiting for it would be plain
    started = time.monotonic()
    response = client.post("/mlflow/runs", json=dict(as_user(experiment_name="shared-exp"),
                                                     tracking_uri=proxy.uri, http_timeout=timeout))
    elapsed = time.monotonic() - started
    # Not before the budget is spent, and well before the proxy would answer.
    assert response.status_code == 504 and timeout <= elapsed < timeout + 10
