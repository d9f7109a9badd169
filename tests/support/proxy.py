"""A reverse proxy in front of a real MLflow server that records every request.

Tests and benchmarks use it to count the calls the service makes to MLflow, and to
play the parts of a misbehaving network: routes a proxy does not forward (404, 403),
a slow upstream (delay), or MLflow going away.
"""
import http.server
import threading
import time

import requests

from tests.support.processes import Managed

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length", "host"}


class MlflowProxy(Managed):
    """``with MlflowProxy(server.uri) as proxy:`` then point the service at ``proxy.uri``."""

    def __init__(self, upstream: str, *, verify=False):
        self.upstream = upstream.rstrip("/")
        self.verify = verify
        self.paths: list[str] = []          # "GET /api/2.0/mlflow/runs/get?..." in order
        self.times: list[float] = []        # time.monotonic() each of ``paths`` arrived
        self.answers: list[tuple[float, str, int]] = []  # (time, line, bytes) of MLflow's answers
        self.refuse: dict[str, int] = {}    # path prefix -> status answered without forwarding
        self.delay = 0.0                    # seconds before forwarding each request
        self._lock = threading.Lock()
        self._session = requests.Session()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: shutdown() waits for it (0.5 s by default, per test).
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()

    def count(self, contains: str = "") -> int:
        with self._lock:
            return sum(contains in p for p in self.paths)

    def reset(self):
        with self._lock:
            self.paths.clear()
            self.times.clear()
            self.answers.clear()

    def _answered(self, line: str, size: int):
        with self._lock:
            self.answers.append((time.monotonic(), line, size))

    def _record(self, line: str):
        with self._lock:
            self.paths.append(line)
            self.times.append(time.monotonic())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self):
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        proxy._record(f"{self.command} {self.path}")
        if proxy.delay:
            time.sleep(proxy.delay)
        refused = next((status for prefix, status in proxy.refuse.items()
                        if self.path.startswith(prefix)), None)
        if refused:
            return self._reply(refused, {"Content-Type": "text/html"},
                               f"<html>{refused} from the proxy</html>".encode())
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            upstream = proxy._session.request(
                self.command, proxy.upstream + self.path, headers=headers, data=body,
                verify=proxy.verify, allow_redirects=False, timeout=300)
        except requests.RequestException as exc:
            return self._reply(502, {"Content-Type": "text/plain"}, f"proxy: {exc}".encode())
        proxy._answered(f"{self.command} {self.path}", len(upstream.content))
        kept = {k: v for k, v in upstream.headers.items()
                if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
        self._reply(upstream.status_code, kept, upstream.content)

    def _reply(self, status, headers, body):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):
        pass
