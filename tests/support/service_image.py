"""The repository's Dockerfile, built and run on a DockerEngine (tests/support/docker_engine.py).

``build_service_image(engine)`` builds ``SERVICE_TAG`` from the repo root on a local base
image (``--build-arg BASE_IMAGE=...``, ``--network host``: the engine has no bridge) and
returns the seconds it took; the legacy builder's layer cache makes a rebuild with unchanged
requirements.txt take seconds.

``with ServiceContainer(engine, env={...}) as box:`` runs it with ``--network host`` and
``GUNICORN_BIND=127.0.0.1:<free port>``: the container shares the machine's loopback, so the
service reaches a test MLflow or Redis at 127.0.0.1:<port> and tests reach it at ``box.url``.
Docker's HEALTHCHECK is run every second (``--health-interval``) instead of the image's 30 s
so ``wait_healthy()`` does not wait half a minute. The container is removed at exit (also at
interpreter exit, if a test forgets).

``ensure_redis_image(engine)`` and ``ensure_nginx_image(engine)`` build stand-ins for
``redis:7`` and ``nginx:1.27`` (Debian's packages on the base image), and ``ComposeStack(engine, env)`` runs the repo's compose.yaml with
Debian's ``docker-compose`` (v1) under a project name of its own: ``up()`` builds and
starts, ``down()`` removes containers (not the images).
"""
import atexit
import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import requests

from tests.support.base_image import BASE_TAG
from tests.support.processes import Managed, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICE_TAG = "mlflow-logs:test"
REDIS_TAG = "mlflow-logs-redis:bookworm"
REDIS_DOCKERFILE = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/*
USER redis
CMD ["redis-server", "--bind", "127.0.0.1", "--save", ""]
"""
# A stand-in for the official nginx image as compose.yaml uses it: Debian's nginx with the
# official image's layout (a main nginx.conf including /etc/nginx/conf.d/*.conf, gzip off,
# logs to the container's stdout/stderr, no default site of Debian's).
NGINX_TAG = "mlflow-logs-nginx:bookworm"
NGINX_DOCKERFILE = r"""ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled /etc/nginx/conf.d/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log \
 && printf '%s\n' 'worker_processes auto;' 'error_log /var/log/nginx/error.log notice;' \
    'events { worker_connections 1024; }' \
    'http { include /etc/nginx/mime.types; default_type application/octet-stream;' \
    '  access_log /var/log/nginx/access.log; sendfile on; keepalive_timeout 65;' \
    '  include /etc/nginx/conf.d/*.conf; }' > /etc/nginx/nginx.conf
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
"""
LABEL = "mlflow-logs-test=1"   # every container the harness runs carries it


def build_service_image(engine, tag=SERVICE_TAG, base=BASE_TAG, context=ROOT) -> float:
    t0 = time.monotonic()
    engine.docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
                  "-t", tag, context, timeout=1800)
    return time.monotonic() - t0


def ensure_redis_image(engine, tag=REDIS_TAG, base=BASE_TAG) -> float:
    """Seconds spent building ``tag`` (0 if it exists): apt-get through --network host."""
    return _ensure_image(engine, tag, base, REDIS_DOCKERFILE)


def ensure_nginx_image(engine, tag=NGINX_TAG, base=BASE_TAG) -> float:
    """Seconds spent building the nginx stand-in ``tag`` (0 if it exists)."""
    return _ensure_image(engine, tag, base, NGINX_DOCKERFILE)


def _ensure_image(engine, tag, base, dockerfile) -> float:
    if engine.image_exists(tag):
        return 0.0
    t0 = time.monotonic()
    engine.docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", "-t", tag,
                  "-", input=dockerfile, timeout=900)
    return time.monotonic() - t0


class ComposeStack(Managed):
    """``docker-compose -p <project> -f compose.yaml``; ``env`` fills its variables."""

    def __init__(self, engine, env, project=None, compose_file=ROOT / "compose.yaml"):
        self.project = project or f"mlflow-logs-test-{uuid.uuid4().hex[:8]}"
        self.cmd = ["docker-compose", "-p", self.project, "-f", str(compose_file)]
        self.env = {**engine.env, **{k: str(v) for k, v in env.items()}}

    def close(self):
        self.down()

    def run(self, *args, timeout=1800) -> str:
        result = subprocess.run([*self.cmd, *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode:
            raise RuntimeError(f"{' '.join(self.cmd + list(args))} exited {result.returncode}:"
                               f"\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout + result.stderr

    def up(self) -> float:
        atexit.register(self.down)
        t0 = time.monotonic()
        self.run("up", "-d", "--build")
        return time.monotonic() - t0

    def logs(self) -> str:
        return self.run("logs", "--no-color")

    def down(self):
        subprocess.run([*self.cmd, "down", "--timeout", "40"], env=self.env, capture_output=True,
                       timeout=300)
        atexit.unregister(self.down)


def compose_available() -> bool:
    return shutil.which("docker-compose") is not None


class ServiceContainer(Managed):
    def __init__(self, engine, image=SERVICE_TAG, *, env=None, port=None, name=None,
                 health_interval="1s", run_args=()):
        self.engine, self.image = engine, image
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name or f"mlflow-logs-test-{uuid.uuid4().hex[:8]}"
        self.env = {"GUNICORN_BIND": f"127.0.0.1:{self.port}", **(env or {})}
        self.health_interval = health_interval
        self.run_args = list(run_args)
        self.started_at = None

    def close(self):
        self.remove()

    def start(self):
        atexit.register(self.remove)
        env_args = [arg for k, v in self.env.items() for arg in ("-e", f"{k}={v}")]
        health = ["--health-interval", self.health_interval, "--health-start-period", "60s"]
        self.started_at = time.monotonic()
        self.engine.docker("run", "-d", "--name", self.name, "--label", LABEL, "--network",
                           "host", *health, *env_args, *self.run_args, self.image)
        return self

    def inspect(self) -> dict:
        return json.loads(self.engine.docker("inspect", self.name).stdout)[0]

    def health(self) -> str:
        """Docker's HEALTHCHECK status: starting, healthy or unhealthy."""
        return self.inspect()["State"]["Health"]["Status"]

    def _wait(self, check, timeout, what) -> float:
        while time.monotonic() - self.started_at < timeout:
            state = self.inspect()["State"]
            if not state["Running"]:
                raise RuntimeError(f"container {self.name} exited ({state['ExitCode']}) before "
                                   f"{what}; logs:\n{self.logs()[-4000:]}")
            if check():
                return time.monotonic() - self.started_at
            time.sleep(0.1)
        raise RuntimeError(f"container {self.name} not {what} after {timeout} s; "
                           f"logs:\n{self.logs()[-4000:]}")

    def wait_http(self, path="/healthz", timeout=90.0) -> float:
        """Seconds from `docker run` until GET ``path`` answers 200."""
        def answers():
            try:
                return requests.get(self.url + path, timeout=2).status_code == 200
            except requests.RequestException:
                return False
        return self._wait(answers, timeout, f"answering GET {path}")

    def wait_healthy(self, timeout=90.0) -> float:
        """Seconds from `docker run` until Docker reports the container healthy."""
        return self._wait(lambda: self.health() == "healthy", timeout, "healthy")

    def exec(self, *cmd) -> str:
        return self.engine.docker("exec", self.name, *cmd).stdout

    def top(self) -> list[dict]:
        """The container's processes as ``docker top`` sees them (UID, PID, PPID, CMD, ...)."""
        out = self.engine.docker("top", self.name, "-eo", "uid,pid,ppid,args").stdout.splitlines()
        keys = out[0].split()
        return [dict(zip(keys, line.split(None, len(keys) - 1))) for line in out[1:]]

    def logs(self) -> str:
        result = self.engine.docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self, grace=10) -> tuple[int, float]:
        """``docker stop -t grace``: (exit code, seconds it took)."""
        t0 = time.monotonic()
        self.engine.docker("stop", "-t", grace, self.name, timeout=grace + 60)
        return self.inspect()["State"]["ExitCode"], time.monotonic() - t0

    def remove(self):
        self.engine.docker("rm", "-f", "-v", self.name, check=False)
        atexit.unregister(self.remove)
