"""ETags on /mlflow/runs answers: derived from what made the answer (app/runs/etag.py),
against the real MLflow and Redis."""
import pytest


@pytest.fixture
def client(cached_app):
    return cached_app().test_client()


def poll(client, query, **headers):
    answer = client.post("/mlflow/runs", json=query, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer


def test_finished_runs_have_a_stable_etag_until_something_changes(client, body, mlflow_server):
    query = body(run_id=mlflow_server.ids["runs"]["finished"])
    first = poll(client, query)
    tag = first.headers["ETag"]
    assert tag.startswith('"') and len(tag) == 34
    assert poll(client, query).headers["ETag"] == tag       # a warm poll: the same answer
    other_view = poll(client, dict(query, max_points=10)).headers["ETag"]
    csv = poll(client, dict(query, format="csv")).headers["ETag"]
    no_history = poll(client, dict(query, include_metric_history=False)).headers["ETag"]
    assert len({tag, other_view, csv, no_history}) == 4      # each answer its own tag
    refreshed = poll(client, dict(query, refresh=True)).headers["ETag"]
    assert refreshed != tag                                  # a refresh is a new generation
    assert poll(client, query).headers["ETag"] == refreshed


def test_an_answer_with_a_live_run_has_no_etag(client, body, admin_client):
    experiment_id = admin_client.create_experiment("etag-live-" + __name__.replace(".", "-")
                                                   + str(id(client)))
    run_id = admin_client.create_run(experiment_id).info.run_id
    admin_client.log_metric(run_id, "loss", 1.0, step=0)
    assert "ETag" not in poll(client, body(run_id=run_id)).headers
