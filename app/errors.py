"""The errors the service raises, by meaning (werkzeug's HTTP exceptions), and
the one mapping of a failed MLflow call to them. Their JSON shape and handlers:
app/api/errors.py."""
import logging

from flask import current_app
from werkzeug import exceptions as http

from app.mlflow import errors as mlflow
from app.mlflow.wording import as_user

log = logging.getLogger(__name__)


# The statuses the service answers with, by meaning.
InvalidInput = http.UnprocessableEntity        # 422
BadRequest = http.BadRequest                   # 400 body that is not JSON
UnsupportedMediaType = http.UnsupportedMediaType  # 415 body that is not JSON
Unauthorized = http.Unauthorized               # 401 MLflow rejected the credentials
Forbidden = http.Forbidden                     # 403 MLflow denied access
NotFound = http.NotFound                       # 404 experiment / run
UpstreamError = http.BadGateway                # 502 TLS, unreachable, MLflow error
UpstreamTimeout = http.GatewayTimeout          # 504 http_timeout spent
ServiceUnavailable = http.ServiceUnavailable   # 503 GET /readyz: the cache does not answer


def invalid_fields(messages: dict) -> http.UnprocessableEntity:
    """A 422 that names its fields, like a schema validation error does."""
    error = InvalidInput()
    error.data = {"errors": messages}
    return error


def for_mlflow(exc: mlflow.MlflowError) -> http.HTTPException:
    """The service's answer to a failed MLflow call: the one mapping, at the edge."""
    if isinstance(exc, mlflow.DeadlineSpent):
        return UpstreamTimeout(exc.message)
    if not isinstance(exc, mlflow.Rejected):  # unreachable, TLS, not MLflow's answer
        return UpstreamError(exc.message)
    said = f": {exc.said}" if exc.said else "."  # MLflow's auth itself answers these in text
    if exc.status == 401:
        return Unauthorized(f"MLflow rejected the credentials{as_user(exc.target)}{said}")
    if exc.status == 403:
        return Forbidden(f"MLflow denied access{as_user(exc.target)}{said}")
    if exc.not_found:
        return NotFound(exc.said)
    if exc.said:
        return UpstreamError(f"{exc.target.label} answered {exc.status} to {exc.endpoint}: "
                             f"{exc.said}")
    return UpstreamError(f"{exc.target.label} answered {exc.status} to {exc.endpoint} "
                         f"with {mlflow.NOT_AN_MLFLOW_ERROR}.")


def refused(exc: mlflow.MlflowError):
    """What a failed MLflow call of a request means for the cache: MLflow refusing these
    credentials (401, 403) drops every grant they hold, at once, so that no cached answer
    is served to them until MLflow says yes again (docs/cache.md, the auth guarantee)."""
    if isinstance(exc, mlflow.Rejected) and exc.status in (401, 403):
        current_app.extensions["run_cache"].drop_grants(exc.target)
