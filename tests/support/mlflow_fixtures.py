"""Session fixtures running real MLflow servers (a pytest plugin: tests/conftest.py lists it
in ``pytest_plugins``).

All servers are ``tests.support.mlflow_server.MlflowServer`` objects (``.uri``, ``.admin``,
``.users``, ``.ids``, ``.log_path``, ``.proc``, ``.cert_path``, ``request()``, ``stop()``,
``start()``); ``.ids`` is the dict returned by ``seed_store`` (tests/support/seed.py).
"""

import shutil
from types import SimpleNamespace

import pytest

from tests.support.mlflow_server import MlflowServer
from tests.support.seed import DB_NAME, seed_many_experiments, seed_store

USERS = {"alice": "alice-password-1", "bob": "bob-password-12"}
BULK_EXPERIMENTS = 1005


@pytest.fixture(scope="session")
def _mlflow_seeded_db(tmp_path_factory):
    """One seeded sqlite file that each data dir copies (seeding takes ~5 s)."""
    d = tmp_path_factory.mktemp("mlflow-seed")
    ids = seed_store(f"sqlite:///{d / DB_NAME}")
    return d / DB_NAME, ids


def copy_of_seeded(tmp_path_factory, name, seeded):
    """A data dir of its own holding a copy of the seeded store (``seeded``: the value of
    ``_mlflow_seeded_db``): ``.path``, ``.db_uri``, ``.ids``."""
    d = tmp_path_factory.mktemp(name)
    shutil.copy(seeded[0], d / DB_NAME)
    return SimpleNamespace(path=d, db_uri=f"sqlite:///{d / DB_NAME}", ids=seeded[1])


@pytest.fixture(scope="session")
def mlflow_data_dir(tmp_path_factory, _mlflow_seeded_db):
    """``.path`` (data dir), ``.db_uri``, ``.ids`` of the store the auth servers share."""
    return copy_of_seeded(tmp_path_factory, "mlflow-data", _mlflow_seeded_db)


def _auth_server(data):
    """Basic-auth server over HTTP; alice is denied ``secret-exp``, bob has default READ."""
    server = MlflowServer(data.path, auth=True, ids=data.ids).start()
    for user, password in USERS.items():
        server.create_user(user, password)
    server.grant("alice", server.ids["experiments"]["secret-exp"], "NO_PERMISSION")
    return server


@pytest.fixture(scope="session")
def mlflow_server(mlflow_data_dir):
    """The seeded basic-auth server; tests only read from it."""
    server = _auth_server(mlflow_data_dir)
    yield server
    server.close()


@pytest.fixture(scope="session")
def mlflow_scratch_server(tmp_path_factory, _mlflow_seeded_db):
    """Like ``mlflow_server`` (own copy of the data), for tests that write to MLflow."""
    server = _auth_server(copy_of_seeded(tmp_path_factory, "mlflow-scratch", _mlflow_seeded_db))
    yield server
    server.close()


@pytest.fixture(scope="session")
def mlflow_tls_server(mlflow_server, mlflow_data_dir):
    """Same stores (data and users) as ``mlflow_server``, served over HTTPS with a
    self-signed cert at ``.cert_path``."""
    with MlflowServer(mlflow_data_dir.path, auth=True, tls=True, ids=mlflow_data_dir.ids) as server:
        server.users.update(mlflow_server.users)
        yield server


@pytest.fixture(scope="session")
def mlflow_noauth_server(tmp_path_factory, _mlflow_seeded_db):
    """Plain server on its own copy of the seed data plus experiments bulk-exp-0000..1004."""
    data = copy_of_seeded(tmp_path_factory, "mlflow-noauth", _mlflow_seeded_db)
    seed_many_experiments(data.db_uri, BULK_EXPERIMENTS)
    with MlflowServer(data.path, ids=data.ids) as server:
        yield server
