"""The MLflow server fixtures work: data is seeded, auth and TLS behave as the tests expect."""

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.support.mlflow_fixtures import BULK_EXPERIMENTS
from tests.support.seed import TRAIN_LOSS


def _client(monkeypatch, server, user, password):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    # Keep a failing call from retrying for minutes.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(tracking_uri=server.uri)


def test_admin_reads_history(monkeypatch, mlflow_server):
    client = _client(monkeypatch, mlflow_server, *mlflow_server.admin)
    history = client.get_metric_history(mlflow_server.ids["runs"]["finished"], "train_loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == TRAIN_LOSS


def test_denied_user_gets_permission_denied(monkeypatch, mlflow_server):
    client = _client(monkeypatch, mlflow_server, "alice", mlflow_server.users["alice"])
    with pytest.raises(MlflowException) as exc:
        client.get_run(mlflow_server.ids["runs"]["secret"])
    assert exc.value.error_code == "PERMISSION_DENIED"


def test_default_read_user_sees_secret(monkeypatch, mlflow_server):
    client = _client(monkeypatch, mlflow_server, "bob", mlflow_server.users["bob"])
    assert client.get_run(mlflow_server.ids["runs"]["secret"]).info.run_name == "secret"


def test_wrong_password_is_unauthenticated(monkeypatch, mlflow_server):
    client = _client(monkeypatch, mlflow_server, "alice", "wrong-password")
    with pytest.raises(MlflowException) as exc:
        client.get_experiment("0")
    assert exc.value.error_code == "UNAUTHENTICATED"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_server(monkeypatch, mlflow_tls_server):
    assert mlflow_tls_server.uri.startswith("https://")
    run_id = mlflow_tls_server.ids["runs"]["finished"]
    client = _client(monkeypatch, mlflow_tls_server, "bob", mlflow_tls_server.users["bob"])
    with pytest.raises(MlflowException):
        client.get_run(run_id)  # self-signed cert is not trusted
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    assert client.get_run(run_id).info.status == "FINISHED"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{mlflow_tls_server.uri}/health", timeout=10)
    assert mlflow_tls_server.request("GET", "/health").ok  # verifies against .cert_path


def test_noauth_server_lists_bulk_experiments(mlflow_noauth_server):
    client = MlflowClient(tracking_uri=mlflow_noauth_server.uri)
    experiments = client.search_experiments(max_results=5000)
    names = {e.name for e in experiments}
    assert {f"bulk-exp-{i:04d}" for i in range(BULK_EXPERIMENTS)} <= names
    assert "shared-exp" in names and len(experiments) > 1000
