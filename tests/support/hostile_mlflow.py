"""An MLflow that misbehaves on the wire, for the transport's deadline, size and retry rules.

``with HostileMlflow(behaviour) as server:`` then point the service at ``server.uri``.
Each behaviour is a function ``(handler) -> None`` answering one request on a real socket
(``handler`` is an ``http.server.BaseHTTPRequestHandler``, keep-alive on). The ones here:

* ``dribble_headers`` / ``dribble_body``: a 200 whose status line and then headers, or
  whose headers and then body, come one byte per ``DRIBBLE_SECONDS`` for ``DRIBBLE_FOR``
  seconds (then it hangs up: a client without a deadline gets a broken answer by then).
* ``endless_pages``: experiments/search pages of 1,000 experiments, each with a page token.
* ``gzip_bomb(mb)``: a 200 in ``Content-Encoding: gzip``: ``{"experiments": []`` then
  ``mb`` MB of spaces (about 1/1000 of that on the wire).
* ``huge_name(mb)``: experiments/search with one experiment named by ``mb`` MB of ``x``.
* ``answer(body, headers)``: a valid 200 with ``body`` (bytes).
* ``hang_up`` / ``reset``: read the request, then close the connection (FIN) or reset it
  (RST), answering nothing; ``cut_short``: headers and part of the body, then a reset.

``server.tls_dribble()`` instead plays a TLS server whose handshake dribbles (one byte of
a 16 KB record per ``DRIBBLE_SECONDS``): use ``https://`` with ``insecure_tls``.

A behaviour may read ``handler.body`` (the request's body, parsed as JSON if it is) and
``handler.path``; ``server.seen`` keeps each request's headers.

``server.drop_next`` makes the next requests on connections that already answered one
(kept-alive, pooled by the service) fail before any answer: ``"reset"`` (RST) or
``"close"`` (FIN after reading the request); ``server.connections`` counts accepted
connections and ``server.requests`` the requests read.
"""
import http.server
import json
import socket
import struct
import threading
import time
import zlib

from tests.support.fake_mlflow import EXPERIMENT
from tests.support.processes import Managed

DRIBBLE_SECONDS = 0.2
DRIBBLE_FOR = 30.0
MB = 1024 * 1024


def _head(handler, length=None, headers=()):
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    if length is not None:
        handler.send_header("Content-Length", str(length))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()


def _dribble(handler, data: bytes):
    until = time.monotonic() + DRIBBLE_FOR
    for byte in data:
        if time.monotonic() > until:
            handler.close_connection = True
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(DRIBBLE_SECONDS)


def dribble_headers(handler):
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    _dribble(handler, b"X-Padding: " + b"a" * 60_000)  # under http.client's 64 KB line limit


def dribble_body(handler):
    _head(handler, length=1_000_000)
    _dribble(handler, b'{"experiments": [' + b" " * 1_000_000)


def answer(body: bytes, headers=()):
    def behaviour(handler):
        _head(handler, len(body), headers)
        handler.wfile.write(body)
    return behaviour


def hang_up(handler):
    handler.close_connection = True


def reset(handler):
    _reset(handler)


def cut_short(handler):
    _head(handler, length=1000)
    handler.wfile.write(b'{"experiments": [')
    handler.wfile.flush()
    _reset(handler)


def _reset(handler):
    """RST at once: SO_LINGER with a zero timeout, then close."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


PAGE = json.dumps({"experiments": [dict(EXPERIMENT, experiment_id=str(i), name=f"e{i}")
                                   for i in range(1000)],
                   "next_page_token": "more"}).encode()
endless_pages = answer(PAGE)


def gzip_bomb(mb: int):
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [packer.compress(b'{"experiments": []')]
    spaces = b" " * MB
    parts += [packer.compress(spaces) for _ in range(mb)]
    body = b"".join(parts + [packer.compress(b"}"), packer.flush()])
    return answer(body, [("Content-Encoding", "gzip")])


def huge_name(mb: int, *, length=True):
    """``length=False``: without Content-Length (the body ends when the connection does),
    so that only reading it tells how large it is."""
    start = b'{"experiments": [{"experiment_id": "1", "lifecycle_stage": "active", "name": "'
    end = b'"}]}'

    def behaviour(handler):
        if length:
            _head(handler, len(start) + mb * MB + len(end))
        else:
            _head(handler, headers=[("Connection", "close")])
            handler.close_connection = True
        handler.wfile.write(start)
        chunk = b"x" * MB
        for _ in range(mb):
            handler.wfile.write(chunk)
        handler.wfile.write(end)
    return behaviour


class HostileMlflow(Managed):
    def __init__(self, behaviour=None):
        self.behaviour = behaviour
        self.drop_next: str | None = None  # "reset" or "close": see the module's docstring
        self.connections = 0
        self.requests = 0
        self.seen = []  # each request's headers
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hostile = self
        self.port = self._server.server_address[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits for it (0.5 s by default).
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def tls_dribble(self):
        """From now on, every connection is a TLS handshake that dribbles."""
        self.behaviour = _TLS_DRIBBLE
        self.uri = f"https://127.0.0.1:{self.port}"
        return self

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def _count(self, what):
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)


_TLS_DRIBBLE = object()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the service hung up on it: what these servers are for


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the service pools the connection

    def setup(self):
        super().setup()
        self.server.hostile._count("connections")
        self.answered = 0

    def handle(self):
        if self.server.hostile.behaviour is _TLS_DRIBBLE:
            # A handshake record header announcing 16 KB, then its bytes one at a time.
            self.wfile.write(b"\x16\x03\x03" + struct.pack(">H", 16384))
            try:
                _dribble(self, b"\x00" * 16384)
            except OSError:
                pass
            return
        super().handle()

    def _answer(self):
        hostile = self.server.hostile
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.body = json.loads(raw or b"null")
        except ValueError:
            self.body = raw
        hostile._count("requests")
        hostile.seen.append(self.headers)
        if self.answered and hostile.drop_next:
            return self._drop(hostile.drop_next)
        self.answered += 1
        try:
            hostile.behaviour(self)
        except OSError:  # the service gave up and closed the connection
            self.close_connection = True

    def _drop(self, how):
        (reset if how == "reset" else hang_up)(self)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass
