"""ETags on /mlflow/runs answers: derived from what made the answer (app/runs/etag.py),
against the real MLflow and Redis."""
import pytest

from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)


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


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_conditional_get_of_unchanged_finished_runs_is_a_304_without_mlflow(
        cached_app, proxy, mlflow_server):
    client = cached_app(RUN_LIST_TTL=300).test_client()  # the listing outlives a slow first poll
    url = (f"/mlflow/runs?tracking_uri={proxy.uri}&experiment_name=shared-exp"
           "&run_status=FINISHED&http_timeout=60")
    auth = {"Authorization": basic(*mlflow_server.admin)}
    first = client.get(url, headers=dict(auth, **{"Accept-Encoding": "gzip"}))
    assert first.status_code == 200 and first.headers["Content-Encoding"] == "gzip"
    tag = first.headers["ETag"]
    assert tag.endswith('-gzip"')  # each coding its own tag
    proxy.reset()
    again = client.get(url, headers=dict(auth, **{"If-None-Match": tag,
                                                  "Accept-Encoding": "gzip"}))
    assert again.status_code == 304 and again.data == b""
    assert proxy.count() == 0                       # MLflow not asked
    wire = sum(len(k) + len(v) + 4 for k, v in again.headers.items())
    assert wire < 1024, dict(again.headers)         # headers only, under 1 KB
    # the plain representation's tag names the same answer
    plain = client.get(url, headers=dict(auth, **{"If-None-Match": tag.replace("-gzip", "")}))
    assert plain.status_code == 304
    # a POST is never answered 304 (If-None-Match is for GET and HEAD)
    post = client.post("/mlflow/runs", json={"tracking_uri": proxy.uri, "username": mlflow_server.admin[0],
                                              "password": mlflow_server.admin[1],
                                              "experiment_name": "shared-exp",
                                              "run_status": ["FINISHED"], "http_timeout": 60},
                       headers={"If-None-Match": tag})
    assert post.status_code == 200
