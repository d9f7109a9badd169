"""The service's own dashboard page (app/dashboard, issue 21) in a real browser, for the
tests and the bench: the service under gunicorn, Chromium, and a page whose every request
goes through Playwright, so that the network is limited to the service and counted.

    with chromium() as browser:                                  # tests/support/browser.py
        page = DashboardPage(browser.new_context(), service.base, shots)
        page.open("#/e=1&poll=1")                                # /dashboard/#/e=1&poll=1
        page.connect(tracking_uri=..., username=..., password=...)
        page.state()["charts"]; page.wait_for("s => s.polls > 2")
        page.exchanges("/mlflow/runs")                           # what went over the wire
        page.offsite                               # requests aborted: not the service's

The page's test hook (docs/dashboard.md): ``window.dashboard.state()`` (what the charts
hold) and ``window.dashboard.ready()`` (a Promise: the current load or poll finished).
The stack around it (the service, the browser, the fixtures) and the API calls the tests
compare the charts with: tests/support/dashboard_stack.py.
"""
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

UI_TIMEOUT_MS = 120_000  # a loaded 2-core machine: each wait ends as soon as the page is ready
# CSP violations reach the page as events; collected before any of the page's own script.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample}));
"""


@dataclass
class Exchange:
    """One request of the page and what came back (filled in as the browser goes on)."""
    request: object                 # Playwright's Request
    done: bool = False
    failure: str | None = None

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def url(self) -> str:
        return self.request.url

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict:
        return parse_qs(urlsplit(self.url).query, keep_blank_values=True)

    @property
    def headers(self) -> dict:
        return self.request.all_headers()

    @property
    def status(self) -> int | None:
        response = self.request.response()
        return response.status if response else None

    def wait(self):
        """Block until the answer came in full (or the request failed); self."""
        response = self.request.response()
        if response is not None:
            response.finished()
        return self

    @property
    def body_bytes(self) -> int:
        """Bytes of the body as they came over the wire (compressed when it was), once
        the whole body arrived."""
        self.request.response().finished()
        return self.request.sizes()["responseBodySize"]

    def json(self):
        return json.loads(self.request.response().body())


@dataclass
class DashboardPage:
    """A page of its own context (no cache, cookies or storage shared with another)."""
    context: object
    base: str                        # the service's origin: http://127.0.0.1:<port>
    shots: Path | None = None        # screenshots go here when set
    limit_network: bool = True       # abort (and record) every request to another origin
    name: str = "dashboard"
    exchanges_: list = field(default_factory=list)
    offsite: list = field(default_factory=list)
    console: list = field(default_factory=list)

    def __post_init__(self):
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        if self.limit_network:
            self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.add_init_script(CSP_LISTENER)
        self.page.on("request", lambda r: self.exchanges_.append(Exchange(r)))
        self.page.on("requestfinished", lambda r: self._finish(r, None))
        self.page.on("requestfailed", lambda r: self._finish(r, r.failure or "failed"))
        self.page.on("console", lambda m: self.console.append((m.type, m.text)))
        self.page.on("pageerror", lambda e: self.console.append(("pageerror", str(e))))
        self._shot = itertools.count(1)

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base + "/") or url == self.base:
            route.continue_()
        else:
            self.offsite.append(url)
            route.abort("blockedbyclient")

    def _finish(self, request, failure):
        for exchange in reversed(self.exchanges_):
            if exchange.request is request:
                exchange.done, exchange.failure = True, failure
                return

    # -- driving the page ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.base}/dashboard/"

    def open(self, fragment: str = "", url: str | None = None):
        """Load the page (``fragment``: the view's hash, e.g. ``#/e=3&poll=1``) and wait
        until the hook is there and the first load finished."""
        self.page.goto((url or self.url) + fragment)
        self.page.wait_for_function("() => window.dashboard && window.dashboard.ready")
        return self.ready()

    def ready(self):
        """Wait for the page's current load or poll; its state then."""
        self.page.evaluate("() => window.dashboard.ready()")
        return self.state()

    def state(self) -> dict:
        return self.page.evaluate("() => window.dashboard.state()")

    def wait_for(self, predicate: str, arg=None):
        """Wait until ``predicate`` (JS taking the state and ``arg``) holds; the state. A
        predicate that throws (a chart not there yet) counts as not yet."""
        self.page.wait_for_function(
            f"arg => {{ try {{ return ({predicate})(window.dashboard.state(), arg); }} "
            f"catch (e) {{ return false; }} }}", arg=arg, polling=100)
        return self.state()

    def connect(self, tracking_uri="", username="", password="", profile=""):
        """Fill #connect and press #connect-button; wait until that load finished."""
        for selector, value in (("#profile", profile), ("#tracking-uri", tracking_uri),
                                ("#username", username), ("#password", password)):
            if value or self.page.locator(selector).count():
                self.page.fill(selector, value)
        self.page.click("#connect-button")
        self.wait_for("s => s.connected || s.error")
        return self.ready()

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def screenshot(self, state: str) -> Path | None:
        """Save the page as ``<name>-<n>-<state>.png`` in ``shots``; its path."""
        if self.shots is None:
            return None
        path = self.shots / f"{self.name}-{next(self._shot):02d}-{state}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    # -- what went over the wire ---------------------------------------------------------

    def exchanges(self, path: str = "", since: int = 0) -> list[Exchange]:
        """The page's requests (from the ``since``-th on) whose path ends with ``path``,
        each answered in full (this waits for those still under way)."""
        return [e.wait() for e in self.exchanges_[since:] if e.path.endswith(path)]

    def mark(self) -> int:
        """A place in the request log, for ``exchanges(since=...)``."""
        return len(self.exchanges_)

    def errors(self) -> list:
        """Console errors, uncaught exceptions and CSP violations of the page so far."""
        violations = self.page.evaluate("() => window.__cspViolations || []")
        return [m for m in self.console if m[0] in ("error", "pageerror")] + violations

    def storage(self, kind: str) -> dict:
        """``localStorage`` or ``sessionStorage`` as a dict."""
        return self.page.evaluate(f"() => Object.fromEntries(Object.entries({kind}))")

    def close(self):
        self.context.close()
