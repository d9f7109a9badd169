"""Dashboards polling the service from a few threads, recording every answer.

The fault tests start one, break something underneath the service, and then read the
records: what each request got, and when it was sent and answered (``time.monotonic``),
so each can be placed before, during or after the fault.
"""
import threading
import time
from typing import NamedTuple

import requests


class Record(NamedTuple):
    start: float
    end: float
    status: int | None        # None: no HTTP answer at all (see ``error``)
    body: object              # the parsed JSON answer, or None
    cache: str | None         # the X-Cache header
    error: str | None         # the exception a request raised instead of an answer


class Poller:
    """``with Poller(url, body, threads=4) as poller:`` ... ``poller.records``.

    Each thread sends ``body`` to ``url`` back to back (after ``pause`` seconds), each
    time on a new connection, so no request rides on a connection an earlier fault broke.
    """

    def __init__(self, url: str, body: dict, *, threads: int = 4, pause: float = 0.0,
                 timeout: float = 60.0):
        self.url, self.body, self.pause, self.timeout = url, body, pause, timeout
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        assert not any(t.is_alive() for t in self._threads), "a poller thread hung"

    def _poll(self):
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                response = requests.post(self.url, json=self.body, timeout=self.timeout)
                try:
                    body = response.json()
                except ValueError:
                    body = None
                record = Record(start, time.monotonic(), response.status_code, body,
                                response.headers.get("X-Cache"), None)
            except requests.RequestException as exc:
                record = Record(start, time.monotonic(), None, None, None,
                                f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.records.append(record)
            self._stop.wait(self.pause)

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def started_after(self, t: float) -> list[Record]:
        return [r for r in self.snapshot() if r.start > t]

    def wait_for(self, predicate, what: str, timeout: float = 60.0):
        """Block until ``predicate(records)`` holds; a hang guard, not a timing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return
            time.sleep(0.05)
        raise AssertionError(f"gave up after {timeout:g} s waiting for {what}; "
                             f"last records: {self.snapshot()[-5:]}")
