"""Settings and branches that ordinary requests seldom take, each exercised once: caching
switched off piece by piece, the masked 500, the gateway's retry near the deadline, the bulk
endpoint's answer out of MLflow's order or cut at its cap, a cached series that is not whole
points. A fake upstream (a real HTTP server) plays MLflow where MLflow cannot be made to
misbehave; the real basic-auth MLflow and Redis everywhere else."""
import json
import time
import uuid

import pytest
import redis

from tests.support.calls import poll
from tests.support.fake_mlflow import AJAX, API, POINT

BULK = f"{AJAX}/metrics/get-history-bulk"
PER_RUN = f"{API}/metrics/get-history"


# --- caching switched off, one setting at a time (real MLflow and Redis) -------------------

@pytest.mark.parametrize("setting", ["AUTH_CACHE_TTL", "RUN_CACHE_TTL", "RUN_LIST_TTL"])
def test_each_cache_setting_at_zero_asks_mlflow_for_that_part_only(cached_app, body, proxy,
                                                                   mlflow_server, redis_url,
                                                                   redis_prefix, setting):
    client = cached_app(**{setting: 0}).test_client()
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    expected = poll(client, query).data
    proxy.reset()
    second = poll(client, query)
    assert second.data == expected and second.headers["X-Cache"] == "PARTIAL"
    asked = {"/".join(path.split("?")[0].split("/")[-2:]) for path in proxy.paths}
    kinds = {key.decode()[len(redis_prefix):].split(":")[0]
             for key in redis.Redis.from_url(redis_url).scan_iter(match=redis_prefix + "*")}
    if setting == "AUTH_CACHE_TTL":   # the grant is asked every time; listing and run cached
        assert asked == {"experiments/get"} and "grant" not in kinds
    elif setting == "RUN_CACHE_TTL":  # histories every time; listing and grant cached
        assert asked == {"metrics/get-history"} and not kinds & {"run", "gen"}
    else:                             # the run is looked up every time; its histories cached
        # (its experiment as resolved within AUTH_CACHE_TTL: the shared resolution, issue 12)
        assert asked == {"runs/get"} and "list" not in kinds


def test_without_grants_a_revocation_takes_effect_at_once(cached_app, body, mlflow_scratch_server):
    server = mlflow_scratch_server
    user, password = f"erin-{uuid.uuid4().hex[:8]}", "erin-password-1"
    server.create_user(user, password)
    client = cached_app(AUTH_CACHE_TTL=0, RUN_LIST_TTL=300).test_client()
    query = {"tracking_uri": server.uri, "username": user, "password": password,
             "run_id": server.ids["runs"]["secret"], "http_timeout": 60}
    assert poll(client, query).get_json()["total_runs"] == 1
    server.grant(user, server.ids["experiments"]["secret-exp"], "DENY")
    assert poll(client, query, status=403).get_json()["code"] == 403


# --- the masked 500 ----------------------------------------------------------------------

def test_an_unexpected_error_is_a_500_that_tells_nothing(app, monkeypatch, caplog):
    from app.runs import assembly as service

    app.config["PROPAGATE_EXCEPTIONS"] = False  # as deployed (TESTING would re-raise it)
    client = app.test_client()
    def broken(*args, **kwargs):
        raise RuntimeError("internal-detail-7d1e password=hunter2")
    monkeypatch.setattr(service, "runs", broken)
    response = client.post("/mlflow/runs", json={"tracking_uri": "http://127.0.0.1:9"})
    body = response.get_json()
    assert response.status_code == 500 and body["code"] == 500 and body["success"] is False
    assert body["message"] == body["detail"] == "Internal server error; the service log has the details."
    assert "internal-detail" not in response.get_data(as_text=True)
    assert "internal-detail-7d1e" in caplog.text  # the operator still learns what happened


# --- the gateway's retries near the deadline ------------------------------------------------

def test_a_retry_after_beyond_the_deadline_is_not_waited_for(client, fake_mlflow):
    fake_mlflow.answers[f"{API}/experiments/search"] = (503, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}',
                                                 {"Retry-After": "30"})
    started = time.monotonic()
    response = client.post("/mlflow/experiments", json={"tracking_uri": fake_mlflow.uri, "http_timeout": 5})
    assert response.status_code == 502 and "503" in response.get_json()["message"]
    assert fake_mlflow.paths.count(f"{API}/experiments/search") == 1  # given up, not retried
    assert time.monotonic() - started < 5  # the 30 s pause was not slept


# --- the bulk endpoint's cap and order --------------------------------------------------------

def bulk_answer(run_ids):
    points = [dict(POINT, run_id=run_id, step=i) for i, run_id in enumerate(run_ids)]
    return 200, json.dumps({"metrics": points}).encode()


@pytest.mark.parametrize("order, refetched", [
    (["r1"] * 12_500 + ["r2"] * 12_500, ["r2"]),     # MLflow's order: r1 is complete
    (["r2", "r1"] * 12_500, ["r1", "r2"]),           # not MLflow's order: trust nothing
])
def test_a_bulk_answer_at_its_cap_is_trusted_only_in_mlflows_order(client, fake_mlflow, order, refetched):
    fake_mlflow.answers[BULK] = bulk_answer(order)
    response = client.post("/mlflow/runs", json={"tracking_uri": fake_mlflow.uri, "experiment_id": "1"})
    assert response.status_code == 200
    assert fake_mlflow.paths.count(BULK) == 1 and fake_mlflow.paths.count(PER_RUN) == len(refetched)
    points = {run["run_id"]: run["metrics_history"][0]["total_points"]
              for run in response.get_json()["runs"]}
    # A refetched run has the fake's one-point history; a complete one keeps its bulk points.
    assert points == {"r1": 1 if "r1" in refetched else 12_500, "r2": 1}


# --- a cached series that is not whole points -----------------------------------------------------

def test_a_cached_series_that_is_not_whole_points_is_a_miss(cached_app, fake_mlflow, redis_url, redis_prefix):
    app = cached_app()
    client = app.test_client()
    query = {"tracking_uri": fake_mlflow.uri, "run_id": "r1", "metric_keys": ["loss"]}
    expected = poll(client, query).data
    cache = app.extensions["run_cache"]
    [key] = [k.decode()[len(redis_prefix):] for k in
             redis.Redis.from_url(redis_url).scan_iter(match=redis_prefix + "run:*:series:*")]
    header, payload = cache.get_entries([key])[key]
    cache.set_entry(key, header, bytes(payload)[:-5])  # sealed by us, cut short
    fetched = fake_mlflow.paths.count(PER_RUN)
    assert poll(client, query).data == expected
    assert fake_mlflow.paths.count(PER_RUN) == fetched + 1  # a miss: asked again
