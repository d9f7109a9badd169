import pytest

from app import create_app
from tests.conftest_mlflow import *  # noqa: F401,F403  real MLflow servers


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def as_user(mlflow_server):
    """Request body for ``user`` (admin, alice, bob) against the basic-auth server."""
    def body(user="admin", **fields):
        password = mlflow_server.admin[1] if user == "admin" else mlflow_server.users[user]
        return {"tracking_uri": mlflow_server.uri, "username": user, "password": password,
                "http_timeout": 60, **fields}
    return body


@pytest.fixture
def mlflow_calls(monkeypatch):
    """Every MLflow endpoint the service calls during the test, in order."""
    from app.gateway import MlflowGateway

    calls = []
    original = MlflowGateway.call

    def recording(self, method, endpoint, **kwargs):
        calls.append(endpoint)
        return original(self, method, endpoint, **kwargs)

    monkeypatch.setattr(MlflowGateway, "call", recording)
    return calls
