"""The one HTTP session per process, and the deadline's hold on the sockets it uses.

requests' and urllib3's timeouts bound each socket operation, not a call: a server that
sends a byte a second (in a TLS handshake, its headers or its body) never trips them and
holds the call for as long as it likes. So every MLflow call is made inside ``watched``:
the connections it uses hand their socket to the call's ``Watch`` (kept per thread), and
when the request's deadline passes a watchdog thread shuts those sockets down. That wakes
a read blocked on them at once (shutdown, unlike close, is safe from another thread); the
transport then sees ``Watch.fired`` and answers 504.
"""
import heapq
import itertools
import os
import socket
import threading
import time
from contextlib import contextmanager
from http.cookiejar import DefaultCookiePolicy

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_calls = threading.local()  # .watch: the call this thread is making, if any


class Watch:
    """One MLflow call's sockets, shut down if its deadline passes before it ends.

    It holds duplicates of the sockets (a second descriptor of each): the connection may
    close or TLS-wrap its own meanwhile, and a duplicate still reaches the socket, never
    another one that reused a closed descriptor's number.
    """

    def __init__(self, expires: float, *, fresh: bool = False):
        self.expires = expires  # time.monotonic()
        self.fresh = fresh      # take no pooled connection (a retry after a dropped one)
        self.fired = False
        self.ended = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def attach(self, sock):
        try:
            duplicate = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:  # already closed: nothing left to wait on
            return
        with self._lock:
            if not self.ended:
                self._sockets.append(duplicate)
                if self.fired:  # the deadline passed while it connected
                    _shut(duplicate)
                return
        duplicate.close()

    def fire(self):
        with self._lock:
            if self.ended:
                return
            self.fired = True
            for sock in self._sockets:
                _shut(sock)

    def end(self):
        with self._lock:
            self.ended = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # the peer or the connection closed it first
        pass


class _Watchdog:
    """One thread per process firing each watch whose deadline has passed."""

    def __init__(self):
        self._heap: list = []  # (expires, n, watch)
        self._count = itertools.count()
        self._wake = threading.Condition()
        self._started = False

    def add(self, watch: Watch):
        with self._wake:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="mlflow-deadlines", daemon=True).start()
            if len(self._heap) > 256:  # ended watches wait for their expiry otherwise
                self._heap = [entry for entry in self._heap if not entry[2].ended]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (watch.expires, next(self._count), watch))
            self._wake.notify()

    def _run(self):
        while True:
            watch = self._next_due()
            watch.fire()  # a no-op for one that ended

    def _next_due(self) -> Watch:
        """The first watch whose deadline has passed (or that ended: it is dropped)."""
        with self._wake:
            while True:
                if not self._heap:
                    self._wake.wait()
                    continue
                expires, _, watch = self._heap[0]
                wait = expires - time.monotonic()
                if wait <= 0 or watch.ended:
                    heapq.heappop(self._heap)
                    return watch
                self._wake.wait(wait)


_watchdog = _Watchdog()


def _forked():
    """A forked process (a gunicorn worker) has none of its parent's threads: a watchdog
    of its own, started by its first call."""
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_forked)


@contextmanager
def watched(expires: float, *, fresh: bool = False):
    """The MLflow call made in this block, this thread: its sockets are shut down at
    ``expires`` (time.monotonic()); ``fresh``: on a new connection, not a pooled one."""
    watch = Watch(expires, fresh=fresh)
    _calls.watch = watch
    _watchdog.add(watch)
    try:
        yield watch
    finally:
        _calls.watch = None
        watch.end()


def _attach(connection, sock):
    watch = getattr(_calls, "watch", None)
    if watch is not None and getattr(connection, "watched_by", None) is not watch:
        connection.watched_by = watch
        watch.attach(sock)


class _Watched:
    """urllib3's connections, handing each socket they use to this thread's watch: a new
    one as soon as it is connected (before any TLS handshake), a pooled one when a
    request is sent on it."""

    def _new_conn(self):
        sock = super()._new_conn()
        _attach(self, sock)
        return sock

    def request(self, *args, **kwargs):
        if self.sock is not None:
            _attach(self, self.sock)
        return super().request(*args, **kwargs)


class _Connection(_Watched, HTTPConnection):
    pass


class _TlsConnection(_Watched, HTTPSConnection):
    pass


class _Fresh:
    """Pools that close the connection they hand out when this thread's watch asks for
    a fresh one: after a pooled connection was dropped, the next may be as stale."""

    def _get_conn(self, timeout=None):
        connection = super()._get_conn(timeout)
        watch = getattr(_calls, "watch", None)
        if watch is not None and watch.fresh:
            connection.close()  # urllib3 connects it again before sending
        return connection


class _Pool(_Fresh, HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(_Fresh, HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


_session_lock = threading.Lock()
_sessions: dict[int, requests.Session] = {}


def shared_session(pool_size: int) -> requests.Session:
    """One keep-alive session per process (and pool size), reused by every request."""
    with _session_lock:
        session = _sessions.get(pool_size)
        if session is None:
            session = requests.Session()
            # A cookie MLflow (or a proxy) sets for one caller must never ride along
            # with another caller's request on this shared session.
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            session.trust_env = False  # no ~/.netrc credentials or proxy surprises
            # The one coding app/mlflow/answers.py decodes, a step at a time.
            session.headers["Accept-Encoding"] = "gzip"
            adapter = _Adapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[pool_size] = session
        return session
