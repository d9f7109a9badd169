"""One request's context: everything the layers below the route share for it.

Made by the route from the typed connection (app/access/connection.py) once the
operator's controls have chosen the target; passed down instead of flags and
positional arguments. The MLflow call counter is set up here, by the request, so the
access log and ``X-Cache`` read the same count.
"""
from dataclasses import dataclass

from flask import current_app, g, request

from app.cache.run_cache import RunCache
from app.mlflow.answers import MB, AnswerLimits
from app.mlflow.api import MlflowApi
from app.mlflow.target import MlflowTarget
from app.mlflow.transport import CallCounter, Deadline, Transport
from app.runs.budget import PointBudget


@dataclass
class RequestContext:
    target: MlflowTarget
    deadline: Deadline
    mlflow: MlflowApi
    cache: RunCache
    calls: CallCounter
    budget: PointBudget
    concurrency: int      # parallel MLflow calls this request may make
    refresh: bool = False  # ask MLflow even for what is cached
    live_refresh: float = 0.0  # LIVE_REFRESH: how old a live run's tail may be

    @property
    def asked_mlflow(self) -> bool:
        return self.calls.count > 0


def open_context(connection, *, refresh: bool = False) -> RequestContext:
    """The context of the current request, connecting as ``connection`` says."""
    config = current_app.config
    # The allowlist, a profile or the Authorization header decide here, before any I/O.
    target = current_app.extensions["access"].target_for(
        connection, request.headers.get("Authorization"))
    deadline, calls = Deadline(connection.http_timeout), CallCounter()
    g.mlflow_calls = calls  # for the access log (app/observability.py)
    limits = AnswerLimits(max_bytes=int(config["MLFLOW_MAX_ANSWER_MB"] * MB),
                          max_pages=config["MLFLOW_MAX_PAGES"],
                          max_field_chars=config["MLFLOW_MAX_FIELD_CHARS"])
    transport = Transport(target, deadline, calls, max_retries=config["MLFLOW_MAX_RETRIES"],
                          pool_size=config["MLFLOW_CONCURRENCY"], limits=limits)
    api = MlflowApi(transport, search_page_size=config["MLFLOW_SEARCH_PAGE_SIZE"],
                    history_page_size=config["MLFLOW_HISTORY_PAGE_SIZE"])
    return RequestContext(target, deadline, api, current_app.extensions["run_cache"], calls,
                          PointBudget(config["MAX_RESPONSE_POINTS"]),
                          concurrency=config["MLFLOW_CONCURRENCY"], refresh=refresh,
                          live_refresh=config["LIVE_REFRESH"])
