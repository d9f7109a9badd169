"""The marking of server tests. The fixtures are the harness's, in tests/support: the
plugins below (MLflow servers; the app, Redis, the counting proxy, request bodies, fakes)."""
import subprocess

import pytest

pytest_plugins = ["tests.support.mlflow_fixtures", "tests.support.fixtures"]


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
