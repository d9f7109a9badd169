"""One request's HTTP calls to MLflow: its deadline, retries, and what MLflow may send.

A transport is made per request, holding that caller's credentials (never the process
environment, which threads would share) and the request's deadline, which bounds each
call whole, however slowly MLflow sends (app/mlflow/session.py watches its sockets). It
speaks HTTP with one pooled ``requests.Session`` per process, reads each answer within
the operator's limits (app/mlflow/answers.py), retries a 429/503 while the deadline
allows and once a connection dropped before any answer, and raises the small family of
``app.mlflow.errors``: what *our* answer is, is decided at the edge (app/errors.py).
"""
import threading
import time
from dataclasses import dataclass

import requests
import urllib3

from app import observability
from app.mlflow import answers, shapes, wording
from app.mlflow.answers import AnswerLimits, SizeBudget
from app.mlflow.errors import ConnectionDropped, DeadlineSpent
from app.mlflow.session import shared_session, watched
from app.mlflow.shapes import WrongShape

# insecure_tls is the caller's explicit choice; a warning per request would only flood the log.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

RETRY_STATUSES = {429, 503}


class Deadline:
    """The caller's ``http_timeout``, shared by every MLflow call of one request."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def check(self, target=None) -> float:
        left = self.remaining()
        if left <= 0:
            raise DeadlineSpent(target, f"MLflow did not answer within http_timeout="
                                        f"{self.seconds:g}s; raise http_timeout or ask for "
                                        "fewer runs.")
        return left


class CallCounter:
    """MLflow requests made for one request (each retry counts): for X-Cache, the access
    log and tests. Set up by the request (app/context.py); shared by its threads."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def add(self):
        with self._lock:
            self.count += 1


@dataclass(frozen=True)
class _Call:
    """One MLflow REST call as asked, sent once or again (a 429/503, a dropped connection)."""

    method: str
    endpoint: str
    params: dict | None
    body: dict | None
    budget: SizeBudget | None  # shared by a search's pages; else each answer has its own


class Transport:
    def __init__(self, target, deadline: Deadline, calls: CallCounter, *, max_retries: int = 2,
                 pool_size: int = 8, limits: AnswerLimits = AnswerLimits(), session=None):
        self.target, self.deadline, self.calls = target, deadline, calls
        self.max_retries, self.limits = max_retries, limits
        self.session = session or shared_session(pool_size)

    def call(self, method: str, endpoint: str, *, params=None, body=None, shape=None,
             budget: SizeBudget | None = None) -> dict:
        """One MLflow REST call, retried on 429/503 while the deadline allows: its JSON
        object, checked by ``shape`` (app/mlflow/shapes.py). Raises ``Rejected`` for any
        other status, ``NotMlflow`` for a body that is not MLflow's answer, ``Oversized``
        past ``budget`` (shared by a search's pages; by default the answer's own)."""
        asked = _Call(method, endpoint, params, body, budget)
        for attempt in range(self.max_retries + 1):
            answer = self._send(asked)
            if answer.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                break
            pause = wording.retry_after(answer, default=0.25 * 2**attempt)
            if pause >= self.deadline.remaining():
                break
            time.sleep(pause)
        if answer.status_code != 200:
            raise wording.rejected(self.target, answer)
        try:
            data = wording.parse_json(answer.content)
        except ValueError:
            raise wording.not_json_error(self.target) from None
        try:
            if not isinstance(data, dict):
                raise WrongShape("it is not a JSON object")
            with shapes.fields_at_most(self.limits.max_field_chars):
                return shape(data) if shape else data
        except WrongShape as exc:
            raise wording.shape_error(self.target, endpoint, exc) from None

    def _send(self, asked: _Call) -> answers.Answer:
        """One HTTP request, sent once more on a fresh connection if the first was dropped
        before any answer (a kept-alive connection a restarting MLflow worker closed or
        reset). Every call of this service only reads, so sending it twice is harmless."""
        try:
            return self._attempt(asked, fresh=False)
        except ConnectionDropped:
            if self.deadline.remaining() <= 0:
                raise
            return self._attempt(asked, fresh=True)

    def _attempt(self, asked: _Call, *, fresh: bool) -> answers.Answer:
        timeout = self.deadline.check()
        self.calls.add()
        # Socket timeouts bound each read, not the call: the watch shuts the call's sockets
        # down when the deadline passes (app/mlflow/session.py).
        with watched(self.deadline.expires, fresh=fresh) as watch:
            return observability.observe_mlflow(asked.endpoint, self._exchange, asked, watch,
                                                timeout)

    def _exchange(self, asked: _Call, watch, timeout: float) -> answers.Answer:
        try:
            response = self.session.request(
                asked.method, self.target.uri.rstrip("/") + asked.endpoint, params=asked.params,
                json=asked.body, headers=self.target.headers, verify=self.target.verify_tls,
                timeout=timeout, allow_redirects=False, stream=True)  # read below, within limits
        except requests.exceptions.RequestException as exc:
            raise self._failure(watch, exc, answered=False) from None
        budget = asked.budget or self.limits.budget()
        try:
            answer = answers.read(response, asked.endpoint, budget)
        except answers.TooLarge:
            raise wording.too_large(self.target, asked.endpoint, budget.limit,
                                    budget.answers) from None
        except answers.Undecodable as exc:
            raise wording.undecodable(self.target, asked.endpoint, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._failure(watch, exc) from None
        finally:
            response.close()  # a no-op once read whole; else the connection is not reused
        if watch.fired:  # cut short by the watch: what came may look whole, yet is not
            raise self._failure(watch, None)
        return answer

    def _failure(self, watch, exc, *, answered=True):
        """The MLflow error for ``exc``, a call's failure; ``answered``: after MLflow's
        status and headers came (a connection dropped before is ``ConnectionDropped``)."""
        if watch.fired or isinstance(exc, (requests.exceptions.Timeout, TimeoutError,
                                           urllib3.exceptions.TimeoutError)):
            return DeadlineSpent(self.target, f"{self.target.label} did not answer within "
                                 f"http_timeout={self.deadline.seconds:g}s; raise http_timeout "
                                 "or ask for fewer runs.")
        if isinstance(exc, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
            return wording.tls_error(self.target, exc)
        if not answered and wording.dropped(exc):
            return wording.connection_error(self.target, exc, kind=ConnectionDropped)
        return wording.connection_error(self.target, exc)
