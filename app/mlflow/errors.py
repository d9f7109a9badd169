"""What can go wrong talking to MLflow, in MLflow's terms.

The transport and the endpoints raise these; they know nothing of *our* HTTP statuses.
``app.errors.for_mlflow`` is the one place that turns each kind into the service's
answer (401, 403, 404, 502, 504). Code that needs MLflow's own status (a bulk endpoint
refused, a filter MLflow rejected) catches ``Rejected`` and looks at ``status``.

Every message is already in the service's words: it never quotes a body that is not
MLflow's own error (app/mlflow/wording.py).
"""

NOT_AN_MLFLOW_ERROR = "a body that is not an MLflow error"


class MlflowError(Exception):
    """A call to the MLflow at ``target`` failed; ``message`` says why, for the caller."""

    def __init__(self, target, message: str):
        super().__init__(message)
        self.target, self.message = target, message


class Unreachable(MlflowError):
    """No HTTP answer: refused, reset, unresolvable, not HTTP at all."""


class ConnectionDropped(Unreachable):
    """The connection was reset or closed before any answer: what a kept-alive connection
    gets when MLflow restarts a worker. The transport tries once more on a fresh one."""


class TlsFailure(MlflowError):
    """The TLS handshake or the certificate check failed."""


class DeadlineSpent(MlflowError):
    """The request's http_timeout ran out before MLflow answered."""


class NotMlflow(MlflowError):
    """A 200 whose body is not what MLflow answers (not JSON, or JSON of another shape)."""


class Oversized(MlflowError):
    """An answer larger than the operator lets a server send (MLFLOW_MAX_ANSWER_MB), or
    a paged read longer (MLFLOW_MAX_PAGES)."""


class Rejected(MlflowError):
    """MLflow (or something in its place) answered a status other than 200.

    ``said`` is MLflow's own error message (or error code) when the body was an MLflow
    error, else None; ``endpoint`` the path that was asked.
    """

    def __init__(self, target, status: int, error_code: str | None, said: str | None,
                 endpoint: str):
        self.status, self.error_code, self.said, self.endpoint = status, error_code, said, endpoint
        super().__init__(target, said or f"it answered {status} with {NOT_AN_MLFLOW_ERROR}")

    @property
    def not_found(self) -> bool:
        """MLflow's own "no such experiment/run" (a 404 from anything else is not)."""
        return self.status == 404 and self.error_code == "RESOURCE_DOES_NOT_EXIST"
