"""One server subprocess for the harness (tests and benchmarks): own process group, log
file, no leaks.

``Process(cmd, log_path).start()`` runs ``cmd`` in a new session (so a stop reaches every
child it forks), appends stdout and stderr to ``log_path`` (stdout to ``out_path`` instead
when given), and registers an atexit stop in case the caller never stops it.
``wait_until(check)`` polls a readiness check and raises ``HarnessError`` with the log's tail
if the process dies or the check never passes.
"""
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path


class HarnessError(RuntimeError):
    """A process of the harness did not start, or died."""


def free_port() -> int:
    """A loopback port free right now (for a server about to bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a gunicorn master's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def wait_for(check, timeout, what, processes, errors=(Exception,)) -> float:
    """Seconds until ``check()`` is true (``errors`` count as not yet); ``HarnessError``
    with the log tail of each of ``processes`` otherwise."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if check():
                return time.monotonic() - t0
        except errors:
            pass
        time.sleep(0.05)
    logs = "\n".join(f"--- {p.name}:\n{log_tail(p.log_path, 1500)}" for p in processes)
    raise HarnessError(f"not {what} after {timeout} s\n{logs}")


class Managed:
    """``with Server() as server``: ``start()``, and ``close()`` on the way out, also when
    ``start()`` fails halfway (``__exit__`` does not run when ``__enter__`` fails).
    A server that already runs once made keeps the default ``start``."""

    def start(self):
        return self

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()


def log_tail(path, chars=4000) -> str:
    try:
        return Path(path).read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"(no log: {exc})"


class Process:
    def __init__(self, cmd, log_path, *, name=None, cwd=None, env=None, out_path=None):
        self.cmd = [str(c) for c in cmd]
        self.log_path = Path(log_path)
        self.out_path = Path(out_path) if out_path else None
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
        # Files, not pipes nobody reads (a full pipe would block the server).
        with open(self.log_path, "ab") as log, \
                open(self.out_path or os.devnull, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env,
                                         stdout=out if self.out_path else log,
                                         stderr=log, stdin=subprocess.DEVNULL,
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
        raise HarnessError(f"{self.name} ({' '.join(self.cmd[:6])} ...) {why}; "
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


def group(pgid: int) -> set[int]:
    """The processes of process group ``pgid`` (a server started in its own session:
    its workers and theirs)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[2]) == pgid:
                found.add(int(stat.parent.name))
    return found


class GroupWatch:
    """Samples a process group's pids every ``every`` s until ``stop()``: ``new`` are those
    that appeared after the start (e.g. workers a supervisor restarted), ``gone`` those
    that went away."""

    def __init__(self, pgid: int, every=0.5):
        self.pgid, self.every = pgid, every
        self.first = group(pgid)
        self.seen = set(self.first)
        self.last = set(self.first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.wait(self.every):
            self.last = group(self.pgid)
            self.seen |= self.last

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"at_start": len(self.first), "at_end": len(self.last),
                "new": len(self.seen - self.first), "gone": len(self.first - self.last)}
