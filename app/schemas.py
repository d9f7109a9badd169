"""Request and response schemas: the JSON contract of the original MLflow Logs API.

Unknown request fields are rejected (marshmallow's default RAISE), so a typo
such as ``experiment_nme`` is a 422 naming it rather than silently ignored.
"""
from urllib.parse import urlsplit

import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate


def _http_uri(value: str):
    # file:, sqlite:, databricks ... would make this service read its own disk
    # or credentials; only a remote MLflow over HTTP(S) is allowed.
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ma.ValidationError("Must be an http:// or https:// URL of an MLflow server.")
    if parts.username or parts.password:
        raise ma.ValidationError("Put credentials in username/password, not in the URL.")
    if parts.query or parts.fragment:
        raise ma.ValidationError("Must not have a query string or fragment.")


class IdString(fields.String):
    """An id that clients send as a string or a bare integer."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class ConnectionSchema(ma.Schema):
    tracking_uri = fields.String(
        required=True, validate=[validate.Length(max=2048), _http_uri],
        metadata={"description": "MLflow server URL (http or https)",
                  "example": "https://mlflow.example.com/mlflow-api"})
    username = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=256),
        metadata={"description": "MLflow username; omit (with password) for a server without auth"})
    password = fields.String(
        load_default=None, allow_none=True, load_only=True, validate=validate.Length(max=1024),
        metadata={"description": "MLflow password"})
    insecure_tls = fields.Boolean(
        load_default=True, metadata={"description": "Skip TLS verification (self-signed certs)"})
    http_timeout = fields.Float(
        load_default=15.0, metadata={"description": "Seconds the whole request may take"})

    @ma.validates("http_timeout")
    def _timeout_in_range(self, value, **_):
        top = current_app.config["MAX_HTTP_TIMEOUT"]
        if not 0 < value <= top:
            raise ma.ValidationError(f"Must be greater than 0 and at most {top:g}.")

    @ma.validates_schema
    def _credentials_together(self, data, **_):
        if (data.get("username") is None) != (data.get("password") is None):
            missing = "password" if data.get("password") is None else "username"
            raise ma.ValidationError("username and password go together.", missing)


class RunsQuerySchema(ConnectionSchema):
    experiment_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=500),
        metadata={"description": "Experiment to read runs from"})
    experiment_id = IdString(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=100),
        metadata={"description": "Experiment to read runs from (by id)"})
    run_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=100),
        metadata={"description": "One run, by id"})
    limit = fields.Integer(
        load_default=10, strict=True,
        metadata={"description": "Maximum number of runs (newest first)"})
    include_metric_history = fields.Boolean(
        load_default=True, metadata={"description": "Include every step of every metric"})
    include_deleted = fields.Boolean(
        load_default=False, metadata={"description": "Also return deleted runs"})

    @ma.validates("limit")
    def _limit_in_range(self, value, **_):
        top = current_app.config["MAX_RUNS_LIMIT"]
        if not 1 <= value <= top:
            raise ma.ValidationError(f"Must be between 1 and {top}.")


# --- responses --------------------------------------------------------------

class HealthSchema(ma.Schema):
    status = fields.String(metadata={"description": "healthy or unhealthy"})
    mlflow_accessible = fields.Boolean()
    experiments_found = fields.Integer(allow_none=True)
    authentication = fields.String(metadata={"description": "basic_auth or none"})
    ssl_verification = fields.Boolean()
    error = fields.String(metadata={"description": "Why MLflow is not accessible"})
    error_code = fields.Integer(metadata={"description": "The status /mlflow/* would answer"})


class ExperimentSchema(ma.Schema):
    experiment_id = fields.String()
    name = fields.String()
    artifact_location = fields.String(allow_none=True)
    lifecycle_stage = fields.String()


class ExperimentsSchema(ma.Schema):
    success = fields.Boolean()
    total_experiments = fields.Integer()
    experiments = fields.List(fields.Nested(ExperimentSchema))


class PointSchema(ma.Schema):
    step = fields.Integer()
    value = fields.Float(allow_none=True, metadata={"description": "null for NaN/Infinity"})
    timestamp = fields.Integer()


class MetricHistorySchema(ma.Schema):
    metric_name = fields.String()
    history = fields.List(fields.Nested(PointSchema))
    total_points = fields.Integer()
    min_value = fields.Float(allow_none=True)
    max_value = fields.Float(allow_none=True)
    last_value = fields.Float(allow_none=True)


class RunSchema(ma.Schema):
    run_id = fields.String()
    run_name = fields.String(allow_none=True)
    status = fields.String()
    duration_seconds = fields.Float(allow_none=True, metadata={"description": "null without end time"})
    parameters = fields.Dict(keys=fields.String(), values=fields.String())
    metrics_summary = fields.Dict(keys=fields.String(), values=fields.Float(allow_none=True))
    metrics_history = fields.List(fields.Nested(MetricHistorySchema))


class RunsSchema(ma.Schema):
    success = fields.Boolean()
    experiment_name = fields.String(allow_none=True)
    total_runs = fields.Integer()
    runs = fields.List(fields.Nested(RunSchema))
    message = fields.String()
