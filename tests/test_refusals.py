"""MLflow's refusals and what the cache remembers (issue 19, items 4 and 5).

* A 401 or 403 of MLflow's to a caller drops every grant of that caller (URI, username,
  password) at once: after one refused request, no form of any answer is served to them
  from the cache, until MLflow says yes again.
* An experiment's name as the cache resolved it goes when MLflow's answer contradicts
  it: a renamed experiment's name serves the new experiment of that name at once.

Real parts: a basic-auth MLflow of the tests' own (the scratch server: these tests create
users, experiments and runs, revoke permissions, change passwords and rename experiments
as admin) and the tests' Redis. AUTH_CACHE_TTL and RUN_LIST_TTL are 600 s: nothing here
can pass by a grant or a listing expiring.
"""
import uuid

import pytest
from mlflow.entities import Metric

from tests.support.calls import get_form, poll
from tests.support.overrides import scratch_mlflow_server  # noqa: F401  (writes to MLflow)

LONG = {"AUTH_CACHE_TTL": 600, "RUN_LIST_TTL": 600}
VIEW = {"metric_keys": ["loss"], "max_points": 10}
# Every form a cached answer takes: POST and GET; whole runs, a view, CSV; and a
# conditional GET naming the ETag its answer had while the caller was allowed (a 304).
FORMS = {"POST json": ("POST", {}), "GET json": ("GET", {}),
         "POST view": ("POST", VIEW), "GET view": ("GET", VIEW),
         "POST csv": ("POST", {"format": "csv"}), "GET csv": ("GET", {"format": "csv"}),
         "GET if-none-match": ("GET", {})}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_user(mlflow_server):
    name = unique("erin")
    mlflow_server.create_user(name, "erin-password-1")
    return name


def finished_experiment(admin_client, name=None):
    """(experiment id, run id) of a new experiment with one finished run."""
    experiment_id = admin_client.create_experiment(name or unique("refusals"))
    run_id = admin_client.create_run(experiment_id).info.run_id
    admin_client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (step + 1), 0, step)
                                            for step in range(10)])
    admin_client.set_terminated(run_id)
    return experiment_id, run_id


def ask(client, form, query, etag):
    method, fields = FORMS[form]
    query = dict(query, **fields)
    if method == "POST":
        return client.post("/mlflow/runs", json=query)
    url, headers = get_form(query)
    if form == "GET if-none-match":
        headers["If-None-Match"] = etag
    return client.get(url, headers=headers)


def refused_once(client, mlflow_server, query, where):
    """One request of the caller that MLflow is asked for, and refuses."""
    if where == "runs":
        return client.post("/mlflow/runs", json=dict(query, refresh=True))
    connection = {k: query[k] for k in ("tracking_uri", "username", "password", "http_timeout")}
    if where == "experiments":
        return client.post("/mlflow/experiments", json=connection)
    health = client.post("/health", json=connection)  # a diagnostic: 200, saying why
    assert health.get_json()["mlflow_accessible"] is False
    health.status_code = health.get_json()["error_code"]
    return health


@pytest.mark.parametrize("change, where", [("revoked", "runs"), ("password changed", "runs"),
                                           ("password changed", "experiments"),
                                           ("password changed", "health")])
def test_after_one_refusal_no_form_is_served_from_the_cache(cached_app, body, mlflow_server,
                                                            admin_client, change, where):
    experiment_id, _ = finished_experiment(admin_client)
    user = new_user(mlflow_server)
    client = cached_app(**LONG).test_client()
    query = dict(body(experiment_id=experiment_id), username=user, password="erin-password-1")
    etag = ask(client, "GET json", query, None).headers["ETag"]
    for _ in range(2):
        for form in FORMS:
            answer = ask(client, form, query, etag)
            assert answer.status_code == (304 if form == "GET if-none-match" else 200), form
    assert answer.headers["X-Cache"] == "HIT"  # the second round: served from the cache
    if change == "revoked":
        mlflow_server.grant(user, experiment_id, "DENY")
        status = 403
    else:
        mlflow_server.set_password(user, "erin-password-2")
        status = 401
    assert refused_once(client, mlflow_server, query, where).status_code == status
    for _ in range(3):  # every form, every time: MLflow's answer, no flapping
        for form in FORMS:
            assert ask(client, form, query, etag).status_code == status, form
    # Once MLflow says yes again, the caller is served again.
    if change == "revoked":
        mlflow_server.ungrant(user, experiment_id)
    else:
        query["password"] = "erin-password-2"
    assert ask(client, "GET if-none-match", query, etag).status_code == 304


def test_a_renamed_experiments_name_serves_the_new_experiment_at_once(cached_app, body,
                                                                      mlflow_server, admin_client):
    """Issue 19's scenario: E2 read by A (its listing and resolution cached); E2 renamed
    and a new E2 made that only B may read (B may not read the old one). B gets the new
    E2's runs at once, not 403; A is refused the new E2, never shown the old one's runs
    under its name; a caller who may read both gets the new one's."""
    name = unique("e2")
    old_id, old_run = finished_experiment(admin_client, name)
    a, b = new_user(mlflow_server), new_user(mlflow_server)
    mlflow_server.grant(b, old_id, "DENY")
    client = cached_app(**LONG).test_client()
    query = body(experiment_name=name, include_metric_history=False)
    as_a, as_b = (dict(query, username=user, password="erin-password-1") for user in (a, b))

    def runs(answer):
        return [run["run_id"] for run in answer.get_json()["runs"]]
    assert runs(poll(client, as_a)) == [old_run]
    mlflow_server.rename_experiment(old_id, name + "-old")
    new_id, new_run = finished_experiment(admin_client, name)
    mlflow_server.grant(a, new_id, "DENY")
    assert runs(poll(client, as_b)) == [new_run]
    for _ in range(3):
        assert old_run.encode() not in poll(client, as_a, status=403).data
        assert runs(poll(client, as_b)) == [new_run]
    assert runs(poll(client, body(experiment_name=name, include_metric_history=False))) == [new_run]


def test_a_reader_of_both_is_shown_the_new_experiment_under_the_name(cached_app, body,
                                                                     mlflow_server, admin_client):
    """C may read the old and the new experiment, and holds no grant yet: MLflow's answer
    to C's grant check names the cached listing's experiment otherwise (renamed), so the
    name is resolved again, not answered with the old experiment's runs."""
    name = unique("e2")
    old_id, old_run = finished_experiment(admin_client, name)
    a, c = new_user(mlflow_server), new_user(mlflow_server)
    client = cached_app(**LONG).test_client()
    query = body(experiment_name=name, include_metric_history=False)
    as_a, as_c = (dict(query, username=user, password="erin-password-1") for user in (a, c))
    assert [run["run_id"] for run in poll(client, as_a).get_json()["runs"]] == [old_run]
    mlflow_server.rename_experiment(old_id, name + "-old")
    _, new_run = finished_experiment(admin_client, name)
    answer = poll(client, as_c).get_json()
    assert [run["run_id"] for run in answer["runs"]] == [new_run]
    assert [run["run_id"] for run in poll(client, as_a).get_json()["runs"]] == [new_run]
