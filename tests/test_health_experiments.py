"""POST /health and /mlflow/experiments against real MLflow servers."""
import pytest

ACTIVE_SEEDED = {"Default", "shared-exp", "secret-exp", "cap-exp"}


def test_health_healthy(client, as_user):
    body = client.post("/health", json=as_user()).get_json()
    assert body == {"status": "healthy", "mlflow_accessible": True,
                    "experiments_found": len(ACTIVE_SEEDED),
                    "authentication": "basic_auth", "ssl_verification": False,
                    "cache": {"backend": "SimpleCache", "available": True}}


def test_health_counts_what_the_user_may_read(client, as_user):
    found = client.post("/health", json=as_user("alice")).get_json()["experiments_found"]
    assert found == len(ACTIVE_SEEDED) - 1  # not secret-exp


def test_health_wrong_password_is_a_diagnostic_not_an_error(client, as_user):
    response = client.post("/health", json=dict(as_user(), password="wrong-password"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "unhealthy" and body["mlflow_accessible"] is False
    assert body["error_code"] == 401 and "credentials" in body["error"]


def test_health_unreachable(client):
    response = client.post("/health", json={"tracking_uri": "http://127.0.0.1:9", "insecure_tls": False})
    body = response.get_json()
    assert response.status_code == 200 and body["error_code"] == 502
    assert body["authentication"] == "none" and body["ssl_verification"] is True
    assert "Cannot reach MLflow" in body["error"]


def test_health_without_auth(client, mlflow_noauth_server):
    body = client.post("/health", json={"tracking_uri": mlflow_noauth_server.uri}).get_json()
    assert body["status"] == "healthy" and body["authentication"] == "none"
    assert body["experiments_found"] == 1005 + len(ACTIVE_SEEDED)


def test_experiments(client, as_user):
    body = client.post("/mlflow/experiments", json=as_user()).get_json()
    assert body["success"] is True
    assert {e["name"] for e in body["experiments"]} == ACTIVE_SEEDED
    assert body["total_experiments"] == len(body["experiments"])
    shared = next(e for e in body["experiments"] if e["name"] == "shared-exp")
    assert set(shared) == {"experiment_id", "name", "artifact_location", "lifecycle_stage"}
    assert shared["lifecycle_stage"] == "active" and shared["artifact_location"].endswith("shared-exp")


def test_experiments_follow_permissions(client, as_user):
    body = client.post("/mlflow/experiments", json=as_user("alice")).get_json()
    assert {e["name"] for e in body["experiments"]} == ACTIVE_SEEDED - {"secret-exp"}


def test_experiments_past_1000(client, mlflow_noauth_server, mlflow_calls):
    body = client.post("/mlflow/experiments", json={"tracking_uri": mlflow_noauth_server.uri}).get_json()
    names = [e["name"] for e in body["experiments"]]
    assert body["total_experiments"] == len(names) == 1005 + len(ACTIVE_SEEDED)
    assert len(set(names)) == len(names)
    assert mlflow_calls.count("/api/2.0/mlflow/experiments/search") == 2


@pytest.mark.parametrize("drop", [(), ("username", "password"), ("password",), ("username",)])
def test_experiments_auth_errors(client, as_user, drop):
    body = dict(as_user(), password="wrong-password") if not drop else as_user()
    for field in drop:
        del body[field]  # a lone username or password is sent as given, not dropped
    response = client.post("/mlflow/experiments", json=body)
    assert response.status_code == 401
    assert response.get_json()["success"] is False
