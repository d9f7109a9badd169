"""Two service hosts behind the reference nginx (deploy/nginx.conf), as operators run them.

``with behind_nginx(work, redis_url, env={...}) as site:`` starts two gunicorn masters
(hosts "a" and "b": separate processes, each with its own workers, sharing one Redis, one
SECRET_KEY and one CACHE_KEY_PREFIX, and PROXY_FIX_HOPS=1) and one nginx running
deploy/nginx.conf with only its listen line and upstream servers filled in.

``site.url`` is nginx's ``http://127.0.0.1:<port>/mlflow-logs``; ``site.hosts`` maps
"a"/"b" to ``tests.support.gunicorn.Gunicorn``; ``site.served_by(request_id)`` reads nginx's
access log for the host a request went to; ``site.restart(name)`` is a graceful stop and a
start on the same port (a rolling restart's step).
"""
import contextlib
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.support.gunicorn import STARTUP_TIMEOUT, Gunicorn, gunicorn
from tests.support.nginx import Nginx, reference_template

PREFIX_PATH = "/mlflow-logs"


@dataclass
class Site:
    nginx: Nginx
    hosts: dict = field(default_factory=dict)   # "a" / "b" -> Gunicorn
    workers: int = 2

    @property
    def url(self) -> str:
        return self.nginx.url + PREFIX_PATH

    def host_of(self, address: str) -> str:
        return next(name for name, svc in self.hosts.items() if svc.base.endswith("/" + address))

    def served_by(self, request_id: str) -> list[str]:
        """The hosts nginx sent the request with this X-Request-ID to (several when one
        refused it and nginx tried the next), from its access log."""
        for line in reversed(self.nginx.access_log.read_text().splitlines()):
            if f"xrid={request_id} " in line:
                upstreams = re.search(r"upstream=(\S+(?:, \S+)*)", line)[1]
                return [self.host_of(a) for a in re.findall(r"\d+\.\d+\.\d+\.\d+:\d+", upstreams)]
        raise AssertionError(f"no request {request_id} in nginx's access log")

    def restart(self, name: str) -> float:
        """Stop host ``name`` gracefully (SIGTERM: requests in flight finish), start it
        again on the same port, and wait until nginx sends it requests again; seconds
        from the stop until then. nginx keeps a host that refused a connection out of
        rotation for the upstream's fail_timeout: stopping the other host before that would
        leave nginx no host at all (502), so a rolling restart waits for this."""
        svc: Gunicorn = self.hosts[name]
        t0 = time.monotonic()
        svc.process.stop(grace=35)
        svc.process.start()
        svc.process.wait_until(lambda: svc.serving(self.workers), timeout=STARTUP_TIMEOUT,
                               what="serving after a restart")
        svc.process.wait_until(lambda: name in self._probe(), timeout=STARTUP_TIMEOUT,
                               what="back in nginx's rotation")
        return time.monotonic() - t0

    def _probe(self) -> list[str]:
        request_id = f"rotation-{secrets.token_hex(8)}"
        requests.get(f"{self.url}/healthz", headers={"X-Request-ID": request_id}, timeout=5)
        return self.served_by(request_id)


def print_field(what, value):
    """A figure of a field test, in its output (``pytest -s``) as ``FIELD what: value``."""
    print(f"FIELD {what}: {value}")


@contextlib.contextmanager
def behind_nginx(work: Path, redis_url: str, *, env: dict | None = None, workers: int = 2):
    if not shutil.which("nginx"):
        pytest.skip("not installed: nginx (apt-get install nginx)")
    shared = {"SECRET_KEY": secrets.token_hex(32), "PROXY_FIX_HOPS": "1",
              "CACHE_KEY_PREFIX": f"field-hosts-{secrets.token_hex(4)}:", **(env or {})}
    with contextlib.ExitStack() as stack:
        hosts = {}
        for name in ("a", "b"):
            (Path(work) / name).mkdir(exist_ok=True)
            hosts[name] = stack.enter_context(
                gunicorn(Path(work) / name, redis_url, workers=workers, env=shared))
        addresses = [svc.base.removeprefix("http://") for svc in hosts.values()]
        nginx = stack.enter_context(Nginx(reference_template(), upstreams=addresses))
        yield Site(nginx, hosts, workers)


def session_from(address: str) -> requests.Session:
    """A requests session whose connections come from ``address`` (any of 127.0.0.0/8):
    the service, trusting nginx's X-Forwarded-For, then counts it as its own client."""
    class FromAddress(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["source_address"] = (address, 0)
            super().init_poolmanager(*args, **kwargs)

    session = requests.Session()
    session.mount("http://", FromAddress())
    return session
