"""Real MLflow tracking servers (optionally basic-auth and/or TLS) on sqlite stores, which
tests/support/seed.py fills before a server starts."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from tests.support.processes import Managed, Process, free_port
from tests.support.seed import DB_NAME

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-password-123"
SECRET_KEY = "test-flask-secret-key-0123456789"
AUTH_DB_NAME = "basic_auth.db"


class MlflowServer(Managed):
    """``mlflow server`` subprocess on 127.0.0.1.

    ``data_dir`` holds mlflow.db, basic_auth.db/.ini, artifacts/, the TLS cert/key and the
    server logs; pass the same ``data_dir`` to two servers to serve the same stores.
    """

    def __init__(self, data_dir=None, *, auth=False, tls=False, port=None, ids=None,
                 admin_password=ADMIN_PASSWORD, workers=1, auth_cache_ttl=0, startup_timeout=90.0,
                 extra_env=None, uvicorn_opts=""):
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="mlflow-server-"))
        self.auth, self.tls = auth, tls
        self.port = port or free_port()
        self.uri = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.admin = (ADMIN_USER, admin_password)
        self.ids = ids
        self.users: dict[str, str] = {}
        self.auth_cache_ttl = auth_cache_ttl
        self.workers = workers  # tests: 1 (memory); benchmarks: MLflow's own default, 4
        self.startup_timeout = startup_timeout
        self.extra_env = extra_env or {}
        # More of uvicorn's options, e.g. "--limit-max-requests 10": with workers >= 2 its
        # supervisor then replaces each worker after that many requests, as under load.
        self.uvicorn_opts = uvicorn_opts
        self.db_uri = f"sqlite:///{self.data_dir / DB_NAME}"
        self.log_path = self.data_dir / f"server-{'https' if tls else 'http'}-{self.port}.log"
        self.cert_path = self.data_dir / "cert.pem" if tls else None
        self.process: Process | None = None  # made by start(): the command writes files
        self.startup_seconds: float | None = None

    # -- lifecycle --------------------------------------------------------------------

    def close(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _command(self) -> list[str]:
        artifacts = self.data_dir / "artifacts"
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
            "--backend-store-uri", self.db_uri,
            "--default-artifact-root", str(artifacts),
            "--artifacts-destination", str(artifacts),
        ]
        if self.auth:
            cmd += ["--app-name", "basic-auth"]
        # Over TLS, uvicorn otherwise waits indefinitely for connections clients left open.
        uvicorn_opts = f"--timeout-graceful-shutdown 2 {self.uvicorn_opts}".strip()
        if self.tls:
            key = self.data_dir / "key.pem"
            if not self.cert_path.exists():
                subprocess.run(
                    ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                     "-subj", "/CN=127.0.0.1",
                     "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                     "-keyout", str(key), "-out", str(self.cert_path)],
                    check=True, capture_output=True,
                )
            # Both the plain and the basic-auth app are ASGI apps run by uvicorn.
            uvicorn_opts += f" --ssl-keyfile {key} --ssl-certfile {self.cert_path}"
        return cmd + ["--uvicorn-opts", uvicorn_opts]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        # Job execution spawns huey consumers the tests never need; it only slows startup.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        if self.auth:
            ini = self.data_dir / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{self.data_dir / AUTH_DB_NAME}\n"
                f"admin_username = {self.admin[0]}\n"
                f"admin_password = {self.admin[1]}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                # >0 skips the ~0.2 s PBKDF2 check on repeated calls (off in MLflow's default)
                f"auth_cache_ttl_seconds = {self.auth_cache_ttl}\n"
            )
            env.update(
                MLFLOW_AUTH_CONFIG_PATH=str(ini),
                MLFLOW_AUTH_ADMIN_PASSWORD=self.admin[1],
                MLFLOW_FLASK_SERVER_SECRET_KEY=SECRET_KEY,
            )
        env.update(self.extra_env)
        return env

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.process.proc if self.process else None

    def start(self):
        assert self.proc is None, "already started"
        self.process = Process(self._command(), self.log_path, cwd=self.data_dir, env=self._env(),
                               name=f"MLflow server at {self.uri}").start()
        self.startup_seconds = self.process.wait_until(
            lambda: self.request("GET", "/health", timeout=2).ok, self.startup_timeout)
        return self

    def stop(self):
        """SIGTERM, then SIGKILL the group: children (uvicorn workers) may outlive the leader."""
        if self.process:
            self.process.stop()

    def restart(self):
        self.stop()
        return self.start()

    # -- admin helpers ----------------------------------------------------------------

    def request(self, method: str, path: str, auth=None, **kwargs) -> requests.Response:
        """HTTP call to the server, as admin unless ``auth`` is given."""
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("verify", str(self.cert_path) if self.tls else True)
        return requests.request(method, self.uri + path, auth=auth or self.admin, **kwargs)

    def create_user(self, username: str, password: str) -> None:
        r = self.request("POST", "/api/2.0/mlflow/users/create",
                         json={"username": username, "password": password})
        r.raise_for_status()
        self.users[username] = password

    def grant(self, username: str, experiment_id: str, permission: str) -> None:
        """Per-experiment permission: READ, USE, EDIT, MANAGE or DENY.

        MLflow 3.17 dropped /experiments/permissions/create and refuses NO_PERMISSIONS
        grants; DENY is its replacement, so NO_PERMISSION(S) is mapped to DENY here.
        """
        if permission in ("NO_PERMISSION", "NO_PERMISSIONS"):
            permission = "DENY"
        r = self.request("POST", "/api/3.0/mlflow/users/permissions/grant", json={
            "username": username, "resource_type": "experiment",
            "resource_id": str(experiment_id), "permission": permission,
        })
        r.raise_for_status()

    def ungrant(self, username: str, experiment_id: str) -> None:
        """Remove the user's own permission on the experiment: the default (READ) applies."""
        r = self.request("POST", "/api/3.0/mlflow/users/permissions/revoke", json={
            "username": username, "resource_type": "experiment", "resource_id": str(experiment_id)})
        r.raise_for_status()

    def set_password(self, username: str, password: str) -> None:
        """As admin (MLflow then asks for no current password)."""
        r = self.request("PATCH", "/api/2.0/mlflow/users/update-password",
                         json={"username": username, "password": password})
        r.raise_for_status()
        self.users[username] = password

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        r = self.request("POST", "/api/2.0/mlflow/experiments/update",
                         json={"experiment_id": str(experiment_id), "new_name": new_name})
        r.raise_for_status()
