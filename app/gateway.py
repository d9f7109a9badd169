"""The MLflow gateway: every byte this service exchanges with MLflow goes through here.

A gateway is made per request, holding that caller's credentials (never the
process environment, which threads would share) and the request's deadline.
It speaks MLflow's REST API with one pooled ``requests.Session`` per process and
turns every failure into one of the service's HTTP errors.
"""
import base64
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy

import requests
import urllib3
from requests.adapters import HTTPAdapter

from app import errors, history, observability, upstream
from app import mlflow_shapes as shapes

log = logging.getLogger(__name__)

# insecure_tls is the caller's explicit choice; a warning per request would only flood the log.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

API = "/api/2.0/mlflow"
BULK_HISTORY = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
BULK_MAX_POINTS = 25000  # the endpoint's cap on the total of all runs' points
BULK_MAX_RUNS = 100
BULK_INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
INTERVAL_MAX_PER_RUN = 2500  # the endpoint samples a run's range down to this many points
MAX_STEP = 2**63 - 1         # MLflow steps are int64
RETRY_STATUSES = {429, 503}


@dataclass(frozen=True)
class MlflowTarget:
    """Where and as whom to talk to MLflow, for one request."""

    uri: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    profile: str | None = field(default=None, compare=False)  # the operator's name for it

    @property
    def label(self) -> str:
        """How error messages name it: the caller's own URI, or for a profile only its
        name (where it points, and as whom, are the operator's: they map the network)."""
        return f"MLflow of profile {self.profile!r}" if self.profile else f"MLflow at {self.uri}"

    @property
    def uses_auth(self) -> bool:
        return self.username is not None or self.password is not None

    @property
    def headers(self) -> dict:
        if not self.uses_auth:
            return {}
        # UTF-8 as RFC 7617 and MLflow's server (werkzeug) expect; requests' own basic
        # auth encodes latin-1 and fails on other characters. A lone username or
        # password is still sent (MLflow then says 401), never dropped.
        pair = f"{self.username or ''}:{self.password or ''}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


class Declined(Exception):
    """MLflow answered a status the caller asked to handle itself."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(status, message)
        self.status, self.message = status, message


class Deadline:
    """The caller's ``http_timeout``, shared by every MLflow call of one request."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._expires = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._expires - time.monotonic()

    def check(self) -> float:
        left = self.remaining()
        if left <= 0:
            raise errors.UpstreamTimeout(
                f"MLflow did not answer within http_timeout={self.seconds:g}s; "
                "raise http_timeout or ask for fewer runs."
            )
        return left


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
            adapter = HTTPAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[pool_size] = session
        return session


def _by_run(run_ids, points) -> dict:
    """{run id: Series} of a bulk answer's points (every asked run, maybe empty)."""
    records = {run_id: [] for run_id in run_ids}
    for point in points:
        records.setdefault(point["run_id"], []).append(point)
    try:
        return {run_id: history.from_records(found) for run_id, found in records.items()}
    except shapes.NotMlflow:
        shapes.points(points, "metrics", run_id=True)  # names the record in the answer's order
        raise


def reads(endpoint):
    """Last resort around a method reading ``endpoint``'s answer: an error a shape check
    missed (a KeyError, TypeError ...) is MLflow's answer being wrong, so a 502, not a 500."""
    def decorate(method):
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except shapes.NotMlflow as exc:  # found while converting (history.from_records)
                raise upstream.shape_error(self.target, endpoint, exc) from None
            except (KeyError, IndexError, TypeError, ValueError, AttributeError,
                    OverflowError) as exc:
                raise upstream.shape_error(self.target, endpoint,
                                           f"it could not be read ({type(exc).__name__})") from None
        return guarded
    return decorate


class MlflowGateway:
    def __init__(self, target: MlflowTarget, deadline: Deadline, *, session=None,
                 max_retries: int = 2, search_page_size: int = 1000,
                 history_page_size: int = 25000, pool_size: int = 8):
        self.target = target
        self.deadline = deadline
        self.session = session or shared_session(pool_size)
        self.max_retries = max_retries
        self.search_page_size = search_page_size
        self.history_page_size = history_page_size
        self.concurrency = pool_size  # parallel calls a request may make
        self.calls = 0  # MLflow requests made, for logs and tests
        self._calls_lock = threading.Lock()
        observability.track_gateway(self)

    # --- transport -------------------------------------------------------

    def call(self, method: str, endpoint: str, *, params=None, body=None, decline=(),
             shape=None):
        """One MLflow REST call, retried on 429/503 while the deadline allows: its JSON
        object, checked by ``shape`` (app/mlflow_shapes.py), or a 502 saying what is wrong.

        A status in ``decline`` raises ``Declined`` for the caller to handle
        instead of the service error it would map to.
        """
        for attempt in range(self.max_retries + 1):
            response = self._send(method, endpoint, params, body)
            if response.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                break
            pause = upstream.retry_after(response, default=0.25 * 2**attempt)
            if pause >= self.deadline.remaining():
                break
            time.sleep(pause)
        if response.status_code in decline:
            raise Declined(response.status_code, upstream.declined_message(response))
        data = self._decode(response)
        try:
            if not isinstance(data, dict):
                raise shapes.NotMlflow("it is not a JSON object")
            return shape(data) if shape else data
        except shapes.NotMlflow as exc:
            raise upstream.shape_error(self.target, endpoint, exc) from None

    def _send(self, method, endpoint, params, body):
        url = self.target.uri.rstrip("/") + endpoint
        timeout = self.deadline.check()
        with self._calls_lock:
            self.calls += 1
        try:
            return observability.observe_mlflow(
                endpoint, self.session.request,
                method, url, params=params, json=body, headers=self.target.headers,
                verify=self.target.verify_tls, timeout=timeout, allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise upstream.tls_error(self.target, exc) from None
        except requests.exceptions.Timeout:  # each call waits what is left of the deadline
            raise errors.UpstreamTimeout(
                f"{self.target.label} did not answer within "
                f"http_timeout={self.deadline.seconds:g}s; raise http_timeout or ask for "
                "fewer runs."
            ) from None
        except requests.exceptions.RequestException as exc:
            raise upstream.connection_error(self.target, exc) from None

    def _decode(self, response):
        status = response.status_code
        if status == 200:
            try:
                return upstream.parse_json(response.content)
            except ValueError:
                raise upstream.not_json_error(self.target) from None
        raise upstream.status_error(self.target, response)

    # --- MLflow API ------------------------------------------------------
    # Each method checks the shape of what it reads (``shape=``); ``reads`` is the last
    # resort for anything a check missed.

    @reads(f"{API}/experiments/search")
    def search_experiments(self, view_type="ACTIVE_ONLY"):
        """Every experiment, across as many pages as MLflow needs."""
        body = {"max_results": self.search_page_size, "view_type": view_type}
        pages = self._pages("POST", f"{API}/experiments/search", "experiments", body,
                            shape=shapes.experiments_page)
        return [experiment for page in pages for experiment in page]

    @reads(f"{API}/experiments/get")
    def get_experiment(self, experiment_id: str, *, decline=()):
        data = self.call("GET", f"{API}/experiments/get", params={"experiment_id": experiment_id},
                         decline=decline, shape=shapes.experiment_answer)
        return data["experiment"]

    @reads(f"{API}/experiments/get-by-name")
    def get_experiment_by_name(self, name: str):
        data = self.call("GET", f"{API}/experiments/get-by-name", params={"experiment_name": name},
                         shape=shapes.experiment_answer)
        return data["experiment"]

    @reads(f"{API}/runs/get")
    def get_run(self, run_id: str):
        return self.call("GET", f"{API}/runs/get", params={"run_id": run_id},
                         shape=shapes.run_answer)["run"]

    @reads(f"{API}/runs/search")
    def search_runs(self, experiment_ids, limit: int, view_type="ACTIVE_ONLY", *,
                    filter_string=None, order_by=None):
        """Up to ``limit`` runs (newest first unless ``order_by``), paging as MLflow requires.

        A caller's filter or ordering that MLflow rejects (400) raises ``Declined``.
        """
        body = {"experiment_ids": list(experiment_ids), "run_view_type": view_type,
                "order_by": order_by or ["attributes.start_time DESC"]}
        if filter_string:
            body["filter"] = filter_string
        decline = (400,) if filter_string or order_by else ()
        pages = self._pages("POST", f"{API}/runs/search", "runs", body, limit=limit,
                            decline=decline, shape=shapes.runs_page)
        return [run for page in pages for run in page]

    @reads(BULK_HISTORY)
    def get_metric_history_bulk(self, run_ids, key: str):
        """One metric of up to 100 runs in one call: MLflow's ajax bulk endpoint.

        Returns (Series by run id, complete run ids): the endpoint caps the *total* at
        25,000 points without a page token, so when the cap is hit only the runs
        ordered before the last one returned are known to be complete. Raises
        ``Declined`` on 403/404/405 (a forbidden or unknown run, or a server or
        proxy without the ajax routes): the caller falls back to per-run calls.
        """
        params = {"run_id": list(run_ids), "metric_key": key, "max_results": BULK_MAX_POINTS}
        data = self.call("GET", BULK_HISTORY, params=params, decline=(403, 404, 405),
                         shape=shapes.bulk_history)
        points = data.get("metrics") or []
        by_run = _by_run(run_ids, points)
        if len(points) < BULK_MAX_POINTS:
            return by_run, set(run_ids)
        returned = [p["run_id"] for p in points]
        if returned != sorted(returned):  # not MLflow's known order: trust nothing
            return by_run, set()
        last = returned[-1]
        return by_run, {run_id for run_id in run_ids if run_id < last}

    @reads(BULK_INTERVAL)
    def get_metric_history_since(self, run_ids, key: str, since_step: int):
        """One metric of up to 100 runs, only the points after ``since_step``: MLflow's
        ajax bulk-interval endpoint, for a live run's poll.

        Returns (Series by run id, complete run ids). The endpoint *samples* a run's
        range down to 2,500 points; a run with fewer points than that came back whole
        (so its answer is provably complete), any other must be fetched in full.
        Raises ``Declined`` on 403/404/405, as ``get_metric_history_bulk``.
        """
        params = {"run_ids": list(run_ids), "metric_key": key, "start_step": since_step + 1,
                  "end_step": MAX_STEP, "max_results": INTERVAL_MAX_PER_RUN}
        data = self.call("GET", BULK_INTERVAL, params=params, decline=(403, 404, 405),
                         shape=shapes.bulk_history)
        by_run = _by_run(run_ids, data.get("metrics") or [])
        return by_run, {run_id for run_id in run_ids
                        if by_run[run_id].size < INTERVAL_MAX_PER_RUN}

    @reads(f"{API}/metrics/get-history")
    def get_metric_history(self, run_id: str, key: str):
        """Every point of one metric, following MLflow's page tokens, as a Series.

        Each page becomes compact columns before the next is fetched.
        """
        params = {"run_id": run_id, "metric_key": key, "max_results": self.history_page_size}
        pages = self._pages("GET", f"{API}/metrics/get-history", "metrics", params,
                            shape=shapes.history_page)
        return history.concat(history.from_records(page) for page in pages)

    def _pages(self, method, endpoint, items_key, request, *, limit=None, decline=(), shape=None):
        """Yield each page's items, following ``next_page_token`` (until ``limit`` items)."""
        seen, token = 0, None
        while True:
            page = dict(request, page_token=token) if token else dict(request)
            if limit is not None:
                page["max_results"] = min(limit - seen, self.search_page_size)
            where = {"params": page} if method == "GET" else {"body": page}
            data = self.call(method, endpoint, decline=decline, shape=shape, **where)
            items = data.get(items_key) or []
            yield items
            seen += len(items)
            token = data.get("next_page_token")
            if not token or (limit is not None and seen >= limit):
                return
