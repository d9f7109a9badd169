"""Debian's nginx as a reverse proxy of ours: a foreground master with its own prefix dir.

``with Nginx(template, upstreams=["127.0.0.1:8001", ...]) as proxy:`` renders ``template``
(a Path in the repo, e.g. deploy/nginx/..., or the text itself) into an http-level config
file, wraps it in a main nginx.conf whose pid file, logs and temp paths all lie in a fresh
prefix dir, checks it with ``nginx -t`` (clear error, with the rendered file), starts
``nginx -g 'daemon off;'`` and waits until ``proxy.url`` accepts connections.

Placeholders in the template are ``@NAME@`` (nginx itself uses ``$`` and braces):
  ``@LISTEN@``            127.0.0.1:<free port> (``proxy.port``)
  ``@UPSTREAM_SERVERS@``  one ``server host:port;`` line per upstream
  any ``@KEY@`` of the ``values`` mapping; one left unfilled is an error.
``full=True`` takes the template as the whole nginx.conf (then it must set ``pid`` and logs
itself; ``@PREFIX@`` is the prefix dir).

``reload(upstreams=..., values=...)`` renders again and sends SIGHUP to the master, returning
once new workers replaced the old ones; ``stop()``; ``access_log`` / ``error_log`` paths.
The access log format (``field``) names the request id, the upstream and its timings.

``reference_template()`` is deploy/nginx.conf, the documented reference, as such a template.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import free_port
from tests.support.processes import Managed, Process

REFERENCE_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"

MAIN_CONF = """worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format field '$remote_addr "$request" $status $body_bytes_sent rid=$request_id '
                     'xrid=$http_x_request_id upstream=$upstream_addr '
                     'rt=$request_time urt=$upstream_response_time';
    access_log {prefix}/access.log field;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


def reference_template(path=REFERENCE_CONF) -> str:
    """The reference config with its one ``listen`` line as @LISTEN@ and its upstream's
    ``server`` lines as @UPSTREAM_SERVERS@: all else runs as written. ValueError when the
    file no longer has that shape (the tests would then not run what the docs show)."""
    text = path.read_text()
    text, listens = re.subn(r"(?m)^(\s*)listen\s+[^;]+;", r"\1listen @LISTEN@;", text)
    servers = re.findall(r"(?m)^\s*server\s+[^;{]+;\n", text)
    if listens != 1 or not servers:
        raise ValueError(f"{path}: expected one listen line and upstream server lines, "
                         f"found {listens} and {len(servers)}")
    first = text.index(servers[0])
    for line in servers:
        text = text.replace(line, "", 1)
    return text[:first] + "    @UPSTREAM_SERVERS@\n" + text[first:]


class Nginx(Managed):
    def __init__(self, template, *, upstreams=(), values=None, port=None, full=False):
        self.template = Path(template).read_text() if isinstance(template, Path) else template
        self.upstreams, self.values, self.full = list(upstreams), dict(values or {}), full
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = Path(tempfile.mkdtemp(prefix="nginx-"))
        # Workers run as nobody (nginx's default under root): they must reach the temp dirs.
        self.prefix.chmod(0o755)
        self.conf = self.prefix / "nginx.conf"
        self.site = self.prefix / "site.conf"
        self.access_log, self.error_log = self.prefix / "access.log", self.prefix / "error.log"
        self.process = Process(["nginx", "-p", self.prefix, "-c", self.conf, "-g", "daemon off;"],
                               self.prefix / "stderr.log", name="nginx")
        self.start_seconds = 0.0

    def render(self):
        values = {"LISTEN": f"127.0.0.1:{self.port}", "PREFIX": str(self.prefix),
                  "UPSTREAM_SERVERS": "\n    ".join(f"server {u};" for u in self.upstreams),
                  **self.values}
        text = re.sub(r"@([A-Z_][A-Z0-9_]*)@",
                      lambda m: str(values.get(m[1], m[0])), self.template)
        left = sorted(set(re.findall(r"@[A-Z_][A-Z0-9_]*@", text)))
        if left:
            raise ValueError(f"nginx template placeholders without a value: {left}")
        if self.full:
            self.conf.write_text(text)
        else:
            self.site.write_text(text)
            self.conf.write_text(MAIN_CONF.format(prefix=self.prefix, site=self.site))
        check = subprocess.run(["nginx", "-t", "-p", self.prefix, "-c", self.conf],
                               capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"nginx -t refused the config:\n{check.stderr}\n--- {self.conf}:\n"
                               f"{self.conf.read_text()}\n--- {self.site}:\n{text}")

    def _accepts(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def start(self):
        t0 = time.monotonic()
        self.render()
        self.process.start()
        self.process.wait_until(self._accepts, 20, f"accepting on port {self.port}")
        self.start_seconds = time.monotonic() - t0
        return self

    def worker_pids(self) -> set[int]:
        """The master's children, from /proc (no ps needed)."""
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:   # fields: state, ppid, ...
                pids.add(int(stat.parent.name))
        return pids

    def reload(self, upstreams=None, values=None, timeout=20.0) -> float:
        """Render again and SIGHUP the master; seconds until only new workers remain."""
        if upstreams is not None:
            self.upstreams = list(upstreams)
        self.values.update(values or {})
        self.render()
        old = self.worker_pids()
        os.kill(self.process.pid, signal.SIGHUP)
        # Old workers finish their requests and exit; new ones start at once.
        return self.process.wait_until(lambda: (pids := self.worker_pids()) and not pids & old,
                                       timeout, "reloaded (new workers only)")

    def stop(self):
        self.process.stop()

    def close(self):
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)
