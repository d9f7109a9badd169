"""Fixture overrides a test module opts into by importing them (not a plugin: only the
modules that import one are affected)::

    from tests.support.overrides import scratch_mlflow_server  # noqa: F401

``scratch_mlflow_server``: ``mlflow_server`` in that module (and so ``as_user``, ``body``,
``proxy`` and ``admin_client`` there) is the scratch server, a copy of the seed data of its
own, so that the read-only server the other modules share never sees the module's writes.

``module_wide_client``: ``client`` in that module is ``module_client``, one test client for
the whole module, instead of a new app for each test.
"""
import pytest


@pytest.fixture(name="mlflow_server", scope="session")  # module fixtures may use it
def scratch_mlflow_server(mlflow_scratch_server):
    return mlflow_scratch_server


@pytest.fixture(name="client")
def module_wide_client(module_client):
    return module_client
