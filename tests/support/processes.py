"""One server subprocess for the field harness: own process group, log file, no leaks.

``Process(cmd, log_path).start()`` runs ``cmd`` in a new session (so a stop reaches every
child it forks), appends stdout and stderr to ``log_path``, and registers an atexit stop in
case the caller never stops it. ``wait_until(check)`` polls a readiness check and fails with
the log's tail if the process dies or the check never passes.
"""
import atexit
import os
import signal
import subprocess
import time
from pathlib import Path


def log_tail(path, chars=4000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no log: {exc})"


class Process:
    def __init__(self, cmd, log_path, *, name=None, cwd=None, env=None):
        self.cmd = [str(c) for c in cmd]
        self.log_path = Path(log_path)
        self.name = name or Path(self.cmd[0]).name
        self.cwd, self.env = cwd, env
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        assert not self.running, f"{self.name} already running"
        atexit.register(self.stop)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        return self

    def wait_until(self, check, timeout=30.0, what="ready") -> float:
        """Seconds until ``check()`` is true; RuntimeError with the log tail otherwise."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                self.fail(f"exited with code {self.proc.returncode} before {what}")
            try:
                if check():
                    return time.monotonic() - t0
            except Exception:  # noqa: BLE001  not answering yet is the normal case
                pass
            time.sleep(0.05)
        self.fail(f"not {what} after {timeout} s")

    def fail(self, why: str):
        self.stop()
        raise RuntimeError(f"{self.name} ({' '.join(self.cmd[:6])} ...) {why}; "
                           f"log {self.log_path} tail:\n{log_tail(self.log_path)}")

    def signal(self, sig):
        os.killpg(self.proc.pid, sig)

    def kill(self):
        """SIGKILL the whole group at once, as a crash would."""
        self.stop(grace=0)

    def stop(self, grace=10.0):
        """SIGTERM (unless ``grace`` is 0), then SIGKILL whatever is left of the group."""
        if self.proc is None:
            return
        try:
            if grace:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None
        atexit.unregister(self.stop)
