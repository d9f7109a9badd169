import os
import subprocess
import uuid

import pytest
import redis

from app import create_app
from tests.conftest_mlflow import *  # noqa: F401,F403  real MLflow servers
from tests.support.proxy import MlflowProxy


# Fixtures that start or reach a real server (MLflow, Redis, gunicorn, Docker, nginx ...):
# a test that uses one, directly or through another fixture, is marked ``server``, so
# that ``pytest -m "not server"`` runs the pure tests alone, in seconds.
SERVER_FIXTURES = {"_mlflow_seeded_db", "redis_url", "engine"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def _servers_only_when_marked(request, monkeypatch):
    """A test not marked ``server`` may not start a process: the fast run stays fast and
    the marking stays complete (mark such a test, or give it a server fixture)."""
    if request.node.get_closest_marker("server"):
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} starts a process ({args[:1]}) but is not "
                             "marked server: add @pytest.mark.server or use a server fixture")
    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)  # however Popen was imported


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def user_body(server, user="admin", **fields):
    """Request body for ``user`` (admin, alice, bob) against a basic-auth ``server``."""
    password = server.admin[1] if user == "admin" else server.users[user]
    return {"tracking_uri": server.uri, "username": user, "password": password,
            "http_timeout": 60, **fields}


@pytest.fixture
def as_user(mlflow_server):
    """``user_body`` for the module's ``mlflow_server``."""
    return lambda user="admin", **fields: user_body(mlflow_server, user, **fields)


@pytest.fixture
def mlflow_calls(monkeypatch):
    """Every MLflow endpoint the service calls during the test, in order."""
    from app.mlflow.transport import Transport

    calls = []
    original = Transport.call

    def recording(self, method, endpoint, **kwargs):
        calls.append(endpoint)
        return original(self, method, endpoint, **kwargs)

    monkeypatch.setattr(Transport, "call", recording)
    return calls


@pytest.fixture(scope="session")
def redis_url():
    """TEST_REDIS_URL (set by .ci/run), else a private redis-server for this session."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    from tests.support.redis_server import RedisServer
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix of this test's own; its keys are removed afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


@pytest.fixture
def cached_app(redis_url, redis_prefix):
    """An app caching in the tests' Redis; pass overrides with ``cached_app(**config)``."""
    def make(**config):
        return create_app({"TESTING": True, "REDIS_URL": redis_url, "SECRET_KEY": "test-secret",
                           "CACHE_KEY_PREFIX": redis_prefix, **config})
    return make


@pytest.fixture
def proxy(mlflow_server):
    """A counting proxy in front of the module's ``mlflow_server``: every call shows."""
    with MlflowProxy(mlflow_server.uri) as proxy:
        yield proxy


@pytest.fixture
def body(as_user, proxy):
    """``as_user`` with the calls going through ``proxy``."""
    def make(user="admin", **fields):
        return dict(as_user(user, **fields), tracking_uri=proxy.uri)
    return make


@pytest.fixture
def admin_client(mlflow_server, monkeypatch):
    """An MlflowClient as the module's ``mlflow_server`` admin, for tests that write runs."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", mlflow_server.admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", mlflow_server.admin[1])
    return MlflowClient(tracking_uri=mlflow_server.uri)
