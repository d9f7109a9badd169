"""The harness's pytest fixtures (a plugin: tests/conftest.py lists it in ``pytest_plugins``,
next to tests/support/mlflow_fixtures.py for the MLflow servers).

The app in-process (``app``, ``client``, ``module_client``, ``cached_app``), request bodies
(``as_user``, ``body``), the counting proxy (``proxy``), Redis (``redis_url``,
``redis_prefix``), MLflow call recording (``mlflow_calls``), cache read recording
(``cache_reads``), an MLflow writer (``admin_client``) and the fakes (``fake_mlflow``,
``scripted``, ``silent_server``).
"""
import os
import socket
import uuid

import pytest
import redis

from app import create_app
from tests.support.calls import user_body
from tests.support.fake_mlflow import FakeMlflow, ScriptedMlflow
from tests.support.proxy import MlflowProxy


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def module_client():
    """One test client of a default app for the whole module (its in-process state too)."""
    return create_app({"TESTING": True}).test_client()


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


@pytest.fixture
def cache_reads(monkeypatch):
    """Every cache key the service reads during the test, in order: from the shared cache
    (``Store.get_many``, keys without the prefix) and from a worker's own copies
    (``LocalCopies.get``, as ``("local", key)``). Clear it to watch one request."""
    from app.cache.copies import LocalCopies
    from app.cache.store import Store

    reads = []
    get_many, local_get = Store.get_many, LocalCopies.get

    def recording_get_many(self, keys, *args, **kwargs):
        keys = list(keys)
        reads.extend(keys)
        return get_many(self, keys, *args, **kwargs)

    def recording_local_get(self, key, *args, **kwargs):
        reads.append(("local", key))
        return local_get(self, key, *args, **kwargs)

    monkeypatch.setattr(Store, "get_many", recording_get_many)
    monkeypatch.setattr(LocalCopies, "get", recording_local_get)
    return reads


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


# --- fakes: in-process stand-ins for an MLflow that misbehaves ---------------------------

@pytest.fixture
def fake_mlflow():
    """A ``FakeMlflow``: a tiny valid MLflow unless ``answers[path]`` says otherwise."""
    server = FakeMlflow()
    yield server
    server.close()


@pytest.fixture
def scripted():
    """``scripted((status, body), ...)``: a ``ScriptedMlflow`` answering in that order."""
    servers = []

    def make(*script):
        servers.append(ScriptedMlflow(script))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


@pytest.fixture
def silent_server():
    """Accepts connections (kernel backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
