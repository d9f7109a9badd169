"""Fake upstreams: in-process HTTP servers on loopback that play an MLflow.

``FakeMlflow`` answers like a tiny MLflow, except where a test scripts otherwise. It plays a
server that is *not* behaving like MLflow: a test sets ``answers[path]`` to the
(status, body) or (status, body, headers) to send for that path (query string ignored), and
every other path gets a valid MLflow answer from a small world of one experiment and three runs.

``ScriptedMlflow(script)`` answers every request, whatever its path, with the next
(status, body) of ``script`` (then 200 ``{}``), and records the paths.
"""
import http.server
import json
import threading
from urllib.parse import parse_qs, urlsplit

API, AJAX = "/api/2.0/mlflow", "/ajax-api/2.0/mlflow"
EXPERIMENT = {"experiment_id": "1", "name": "e", "lifecycle_stage": "active",
              "artifact_location": "mlflow-artifacts:/1"}
POINT = {"key": "loss", "value": 0.5, "step": 0, "timestamp": 1700000000000}


def run(run_id, status="FINISHED"):
    return {"info": {"run_id": run_id, "experiment_id": "1", "status": status, "run_name": run_id,
                     "start_time": 1700000000000, "end_time": 1700000001000,
                     "lifecycle_stage": "active"},
            "data": {"params": [{"key": "lr", "value": "0.1"}], "metrics": [POINT],
                     "tags": [{"key": "mlflow.runName", "value": run_id}]}}


RUNS = {"r1": run("r1"), "r2": run("r2"), "live": run("live", "RUNNING")}


def valid_answer(path, query):
    """What MLflow would answer (200) to ``path``."""
    ids = query.get("run_id", []) + query.get("run_ids", [])
    return {
        f"{API}/experiments/search": {"experiments": [EXPERIMENT]},
        f"{API}/experiments/get": {"experiment": EXPERIMENT},
        f"{API}/experiments/get-by-name": {"experiment": EXPERIMENT},
        f"{API}/runs/search": {"runs": [RUNS["r1"], RUNS["r2"]]},
        f"{API}/runs/get": {"run": RUNS.get(ids[0] if ids else "", RUNS["r1"])},
        f"{API}/metrics/get-history": {"metrics": [POINT]},
        f"{AJAX}/metrics/get-history-bulk": {"metrics": [dict(POINT, run_id=i) for i in ids]},
        f"{AJAX}/metrics/get-history-bulk-interval": {
            "metrics": [dict(POINT, run_id=i, step=5) for i in ids]},
    }.get(path)


class _LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        self.paths = []
        super().__init__(("127.0.0.1", 0), handler)
        # A short poll interval: shutdown() waits for it (0.5 s by default, per test).
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    @property
    def uri(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()


class FakeMlflow(_LoopbackServer):
    def __init__(self):
        self.answers = {}
        super().__init__(_Handler)


class ScriptedMlflow(_LoopbackServer):
    def __init__(self, script):
        self.script = list(script)
        super().__init__(_ScriptedHandler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        self.server.paths.append(parts.path)
        headers = {}
        if parts.path in self.server.answers:
            status, body, *more = self.server.answers[parts.path]
            headers = more[0] if more else {}
        else:
            found = valid_answer(parts.path, parse_qs(parts.query))
            status, body = (200, json.dumps(found).encode()) if found else (404, b"")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)
        status, body = self.server.script.pop(0) if self.server.script else (200, b"{}")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass
