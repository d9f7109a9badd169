"""Request and response schemas: the JSON contract of the original MLflow Logs API.

Bounds set by the operator (MAX_RUNS_LIMIT, MAX_HTTP_TIMEOUT) are the app's settings,
read when a request is validated and when the spec is made (app/api/fields.py), so the
published OpenAPI spec states the limits the service enforces. Unknown request fields
are rejected (marshmallow's default RAISE), so a typo such as ``experiment_nme`` is a
422 naming it rather than silently ignored.
"""
import marshmallow as ma
from marshmallow import fields, validate

from app.access.connection import Connection
from app.access.profiles import PROFILE_NAME
from app.runs import cursor
from app.runs.query import RUN_STATUSES, RunsQuery, RunsRequest
from app.api.fields import SettingLength, SettingRange
from app.uris import http_uri

# Fields a connection profile sets; a request naming a profile may not send them.
PROFILE_REPLACES = ("tracking_uri", "username", "password", "insecure_tls")


class StrictBoolean(fields.Boolean):
    """JSON true/false only: 0, "yes" or "off" are errors, as the schema says."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictFloat(fields.Float):
    """A JSON number, not a numeric string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class CursorField(fields.String):
    """The ``cursor`` of a previous answer (app/runs/cursor.py), typed into a ``Cursor``."""

    default_error_messages = {"not_cursor": "Not a cursor of this service: send back the "
                                            "`cursor` of a previous answer as it came."}

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return cursor.decode(text)
        except ValueError:
            raise self.make_error("not_cursor") from None


MIN_MAX_POINTS = 10  # room for the first and last point and a few buckets' extremes


def _unique(items):
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ma.ValidationError(f"Listed more than once: {', '.join(repeated)}.")


class ConnectionSchema(ma.Schema):
    tracking_uri = fields.String(
        load_default=None, allow_none=False, validate=[validate.Length(max=2048), http_uri],
        metadata={"description": "MLflow server URL (http or https); required unless "
                                 "`profile` is given",
                  "example": "https://mlflow.example.com/mlflow-api"})
    profile = fields.String(
        load_default=None, allow_none=False,
        validate=validate.Regexp(PROFILE_NAME, error="Not a profile name."),
        metadata={"description": "A connection profile configured by the operator, instead of "
                                 "tracking_uri, username, password and insecure_tls"})
    username = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=256),
        metadata={"description": "MLflow username; omit (with password) for a server without auth"})
    password = fields.String(
        load_default=None, allow_none=True, load_only=True, validate=validate.Length(max=1024),
        metadata={"description": "MLflow password"})
    insecure_tls = StrictBoolean(
        load_default=True, metadata={"description": "Skip TLS verification (self-signed certs)"})
    http_timeout = StrictFloat(
        load_default=15.0,
        validate=SettingRange(min=0.001, max_setting="MAX_HTTP_TIMEOUT"),
        metadata={"description": "Seconds the whole request may take"})

    @ma.validates_schema(pass_original=True)
    def one_way_to_connect(self, data, original, **kwargs):
        """A profile replaces the connection fields; without one, tracking_uri is required."""
        if data.get("profile") is None:
            if data.get("tracking_uri") is None:
                raise ma.ValidationError("Missing data for required field.", "tracking_uri")
            return
        clashing = [f for f in PROFILE_REPLACES if isinstance(original, dict) and f in original]
        if clashing:
            raise ma.ValidationError({f: ["Not allowed with profile: the profile sets it."]
                                      for f in clashing})

    @ma.post_load(pass_original=True)
    def typed(self, data, original, **kwargs):
        return Connection.of(data)


def document_connection_rule(spec):
    """Publish ``one_way_to_connect`` in the OpenAPI spec (marshmallow cannot express it):
    tracking_uri without profile, or profile without the fields it sets. Clients and
    fuzzers then see the rule the service applies."""
    rule = {"anyOf": [
        {"required": ["tracking_uri"], "not": {"required": ["profile"]}},
        {"required": ["profile"],
         "not": {"anyOf": [{"required": [field]} for field in PROFILE_REPLACES]}},
    ]}
    for component in spec.components.schemas.values():
        if "profile" in component.get("properties", {}):
            component.update(rule)


def prepare_spec(api):
    """Before the routes are registered: no ``"default": null`` on a field that refuses
    null (Swagger UI's "Try it out" would send it: ``"profile": null`` was a 422) nor on
    a query parameter, and
    no PaginationMetadata schema (flask-smorest's own; no route is paginated)."""
    api.ma_plugin.converter.add_attribute_function(_no_null_default)
    api.ma_plugin.converter.add_parameter_attribute_function(_no_null_parameter_default)
    api.spec.components.schemas.pop("PaginationMetadata", None)


def _no_null_default(converter, field, ret, **kwargs):
    if ret.get("default", 0) is None and not field.allow_none:
        del ret["default"]
    return {}


def _no_null_parameter_default(converter, field, ret, **kwargs):
    # A query parameter is absent or a text: null is no value it can have.
    schema = ret.get("schema", {})
    if schema.get("default", 0) is None:
        del schema["default"]
    schema.pop("nullable", None)
    return {}


# The prefilled bodies of /docs "Try it out": the fields a first call needs; fill in the
# URL and credentials of a real MLflow (or replace all three with "profile").
CONNECTION_EXAMPLE = {"tracking_uri": "http://127.0.0.1:5000", "username": "admin",
                      "password": "password1234", "http_timeout": 15}
RUNS_EXAMPLE = {**CONNECTION_EXAMPLE, "experiment_name": "Default", "limit": 3,
                "max_points": 500}


class RunsQuerySchema(ConnectionSchema):
    experiment_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=500),
        metadata={"description": "Experiment to read runs from"})
    experiment_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=100),
        metadata={"description": "Experiment to read runs from (by id)"})
    run_id = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=100),
        metadata={"description": "One run, by id"})
    limit = fields.Integer(
        load_default=10, strict=True, validate=SettingRange(min=1, max_setting="MAX_RUNS_LIMIT"),
        metadata={"description": "Maximum number of runs (newest first); with run_ids, "
                                 "every listed run unless limit is sent"})
    include_metric_history = StrictBoolean(
        load_default=True, metadata={"description": "Include every step of every metric"})
    include_deleted = StrictBoolean(
        load_default=False, metadata={"description": "Also return deleted runs"})
    filter_string = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=4000),
        metadata={"description": "MLflow run search filter, e.g. \"metrics.val_acc > 0.9 "
                                 "and params.lr = '0.001'\"; with run_id, the run only if it matches"})
    order_by = fields.List(
        fields.String(validate=validate.Length(min=1, max=300)), load_default=None,
        allow_none=True, validate=validate.Length(min=1, max=10),
        metadata={"description": "MLflow run search order, e.g. [\"metrics.val_acc DESC\"]; "
                                 "default newest first"})
    refresh = StrictBoolean(
        load_default=False, metadata={"description": "Ask MLflow even if the runs are cached"})
    # --- dashboard views: each optional; without them the answer is the contract's ---
    run_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)), load_default=None,
        allow_none=True, validate=[SettingLength(min=1, max_setting="MAX_RUNS_LIMIT"), _unique],
        metadata={"uniqueItems": True, "description": "Several runs, answered in this order (or by order_by); a "
                                 "run that is missing, forbidden, deleted or filtered out is "
                                 "reported in `run_errors` instead of failing the request. All "
                                 "are answered unless limit is sent too"})
    run_status = fields.List(
        fields.String(validate=validate.OneOf(RUN_STATUSES)), load_default=None, allow_none=True,
        validate=[validate.Length(min=1, max=len(RUN_STATUSES)), _unique],
        metadata={"uniqueItems": True, "description": "Only runs in these statuses, e.g. [\"RUNNING\"]"})
    metric_keys = fields.List(
        fields.String(validate=validate.Length(min=1, max=250)), load_default=None,
        allow_none=True, validate=[validate.Length(min=1, max=1000), _unique],
        metadata={"uniqueItems": True, "description": "Only these metrics (in histories and metrics_summary); keys "
                                 "no selected run has are listed in `unknown_metric_keys`"})
    max_points = fields.Integer(
        load_default=None, allow_none=True, strict=True,
        validate=validate.Range(min=MIN_MAX_POINTS, max=1_000_000),
        metadata={"description": "At most this many points per history, for plotting: first and "
                                 "last points and every bucket's min, max and first NaN are kept; "
                                 "the stats stay exact and `downsampled` says if points were dropped"})
    since_step = fields.Integer(
        load_default=None, allow_none=True, strict=True,
        validate=validate.Range(min=-(2**63), max=2**63 - 2),
        metadata={"description": "Only points with a step greater than this (a live run's poll)"})
    max_step = fields.Integer(
        load_default=None, allow_none=True, strict=True,
        validate=validate.Range(min=-(2**63), max=2**63 - 1),
        metadata={"description": "Only points with a step at most this (a zoom); with "
                                 "since_step, the points with since_step < step <= max_step. "
                                 "Must be greater than since_step"})
    since_timestamp = fields.Integer(
        load_default=None, allow_none=True, strict=True,
        validate=validate.Range(min=-(2**63), max=2**63 - 1),
        metadata={"description": "Only points logged after this time (ms since the epoch)"})
    cursor = CursorField(
        load_default=None, allow_none=True,
        metadata={"maxLength": cursor.MAX_LENGTH, "description": "The `cursor` of the previous answer to this query: each run "
                                 "the cursor holds comes with only the points logged since "
                                 "(`since_cursor` true: append them) or whole (`since_cursor` "
                                 "false: replace). How a live chart polls: docs/api.md. Not "
                                 "with since_step, since_timestamp, max_step or format csv"})
    include_tags = StrictBoolean(
        load_default=False,
        metadata={"description": "Add each run's MLflow tags as `tags` {key: value}, all of "
                                 "them (mlflow.* included, as MLflow's API returns them)"})
    format = fields.String(
        load_default=None, allow_none=True, validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "csv: the selected histories as CSV rows (run_id, run_name, "
                                 "metric, step, value, timestamp), streamed; also chosen by "
                                 "`Accept: text/csv`. Default json"})

    @ma.validates_schema
    def step_range(self, data, **kwargs):
        since, most = data.get("since_step"), data.get("max_step")
        if since is not None and most is not None and most <= since:
            raise ma.ValidationError(f"Must be greater than since_step ({since}).", "max_step")

    @ma.validates_schema
    def cursor_alone(self, data, **kwargs):
        """A cursor says which points are new: a window or a CSV would contradict it."""
        if data.get("cursor") is None:
            return
        clashing = [f for f in ("since_step", "since_timestamp", "max_step")
                    if data.get(f) is not None]
        if data.get("format") == "csv":
            clashing.append("format")
        if data.get("include_metric_history") is False:
            clashing.append("include_metric_history false")
        if clashing:
            raise ma.ValidationError(f"Not with {', '.join(clashing)}: a cursor already says "
                                     "which points are new (JSON answers only).", "cursor")

    @ma.post_load(pass_original=True)
    def typed(self, data, original, **kwargs):
        return RunsRequest(Connection.of(data), RunsQuery.of(data, set(original)))
