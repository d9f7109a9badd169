"""A Docker engine for tests and benchmarks: the machine's own, else a dockerd of ours.

``with DockerEngine() as engine:`` uses an engine that already answers ``docker info``
(DOCKER_HOST or the default socket); otherwise it starts Debian's ``dockerd`` as root with
``--storage-driver vfs --iptables=false --bridge=none`` (containers then need
``--network host``; builds ``--network host``) and its data root, exec root, pid file, unix
socket and log under ``STATE_DIR`` (default /var/lib/mlflow-logs-test-docker, or
MLFLOW_LOGS_DOCKER_DIR) -- a stable place, so images built by one run are reused by the
next. A dockerd we started is stopped at the end, by the last user of it: every user holds a
shared flock on ``STATE_DIR/lock`` and whoever can take it exclusively on leaving stops it.

``engine.docker(*args)`` runs the CLI against that engine; ``engine.env`` is the
environment for other tools (docker-compose). ``missing_packages()`` names the apt packages
a fresh machine lacks; ``why_not()`` says why no engine can start here (then skip).
"""
import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support.processes import Managed, Process, log_tail

STATE_DIR = Path(os.environ.get("MLFLOW_LOGS_DOCKER_DIR", "/var/lib/mlflow-logs-test-docker"))
DOCKERD_FLAGS = ["--storage-driver", "vfs", "--iptables=false", "--bridge=none"]
# The legacy builder: Debian's engine (20.10) has no BuildKit unless buildx is installed,
# and the legacy builder is the one that honours `docker build --network host` there.
CLI_ENV = {"DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}


def missing_packages() -> list[str]:
    """apt packages to install for the image tests (docker.io, debootstrap)."""
    missing = []
    if not (shutil.which("dockerd") and shutil.which("docker")):
        missing.append("docker.io")
    if not shutil.which("debootstrap"):
        missing.append("debootstrap")
    return missing


def _answers(env) -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], env=env,
                              capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def why_not() -> str | None:
    """None if an engine answers or we can start one; else the reason (for pytest.skip)."""
    if _answers(dict(os.environ, **CLI_ENV)):
        return None
    if "docker.io" in missing_packages():
        return "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "no Docker engine answers and dockerd needs root"
    return None


class DockerEngine(Managed):
    def __init__(self, state_dir=STATE_DIR, start_timeout=60.0):
        self.dir = Path(state_dir)
        self.socket = self.dir / "docker.sock"
        self.pidfile = self.dir / "dockerd.pid"
        self.log_path = self.dir / "dockerd.log"
        self.start_timeout = start_timeout
        self.env = dict(os.environ, **CLI_ENV)
        self.started_here = False   # True if this object started dockerd
        self.start_seconds = 0.0
        self._lock = None
        self._process = None

    def close(self):
        self.stop()

    def start(self):
        if _answers(self.env):          # the machine's own engine: use it, never stop it
            return self
        reason = why_not()
        if reason:
            raise RuntimeError(reason)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)   # one starter at a time
        try:
            self.env["DOCKER_HOST"] = f"unix://{self.socket}"
            if not _answers(self.env):
                self._start_dockerd()
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_SH)  # in use until stop()
        return self

    def _start_dockerd(self):
        self._clear_stale_pidfile()
        cmd = ["dockerd", *DOCKERD_FLAGS, "--data-root", self.dir / "data",
               "--exec-root", self.dir / "exec", "--pidfile", self.pidfile,
               "--host", f"unix://{self.socket}"]
        self._process = Process(cmd, self.log_path, name="dockerd").start()
        self.start_seconds = self._process.wait_until(lambda: _answers(self.env),
                                                      self.start_timeout, "answering docker info")
        self.started_here = True

    def _clear_stale_pidfile(self):
        """A dockerd killed hard leaves its pid file; a live one there would be a bug of ours."""
        try:
            pid = int(self.pidfile.read_text())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pidfile.unlink(missing_ok=True)
            return
        raise RuntimeError(f"dockerd pid {pid} holds {self.pidfile} but does not answer on "
                           f"{self.socket}; log tail:\n{log_tail(self.log_path)}")

    def stop(self):
        """Stop a dockerd of ours if nobody else (another test session) is using it."""
        if self._lock is None:
            return
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass                        # still in use elsewhere: its last user stops it
        else:
            self._stop_dockerd()
        self._lock.close()
        self._lock = None

    def _stop_dockerd(self):
        if self._process is not None:   # ours: SIGTERM lets it stop containerd too
            self._process.stop(grace=30)
            self._process = None
            return
        try:                            # started by an earlier session that has gone
            pid = int(self.pidfile.read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    # -- CLI ---------------------------------------------------------------------------

    def docker(self, *args, check=True, timeout=600, input=None) -> subprocess.CompletedProcess:
        """``docker ARGS`` against this engine; stdout/stderr captured as text."""
        cmd = ["docker", *map(str, args)]
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                                timeout=timeout, input=input)
        if check and result.returncode:
            raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}:\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def image_exists(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def image_size(self, tag: str) -> int:
        """Bytes, as ``docker images`` counts them (all layers)."""
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
