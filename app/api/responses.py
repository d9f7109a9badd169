"""Response schemas: the JSON the three routes answer (and so the OpenAPI spec). The runs
answer is written from pre-encoded pieces (app/runs/encoding.py); ``RunsSchema``
documents it."""
import marshmallow as ma
from marshmallow import fields


class CacheStatusSchema(ma.Schema):
    backend = fields.String(metadata={"description": "RedisCache, RedisSentinelCache, "
                                                     "RedisClusterCache or SimpleCache"})
    available = fields.Boolean(metadata={"description": "The cache answered just now"})


class HealthSchema(ma.Schema):
    status = fields.String(metadata={"description": "healthy or unhealthy"})
    mlflow_accessible = fields.Boolean()
    experiments_found = fields.Integer(allow_none=True)
    authentication = fields.String(metadata={"description": "basic_auth or none"})
    ssl_verification = fields.Boolean()
    error = fields.String(metadata={"description": "Why MLflow is not accessible"})
    error_code = fields.Integer(metadata={"description": "The status /mlflow/* would answer"})
    cache = fields.Nested(CacheStatusSchema)


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
    downsampled = fields.Boolean(metadata={
        "description": "Only with max_points: true if points were dropped for plotting "
                       "(total_points still counts them all)"})


class RunSchema(ma.Schema):
    run_id = fields.String()
    run_name = fields.String(allow_none=True)
    status = fields.String()
    duration_seconds = fields.Float(allow_none=True, metadata={"description": "null without end time"})
    start_time = fields.Integer(allow_none=True, metadata={
        "description": "When the run started, ms since the epoch"})
    end_time = fields.Integer(allow_none=True, metadata={
        "description": "When the run ended, ms since the epoch; null while it runs"})
    experiment_id = fields.String()
    user_id = fields.String(allow_none=True, metadata={"description": "Who created the run"})
    parameters = fields.Dict(keys=fields.String(), values=fields.String())
    metrics_summary = fields.Dict(keys=fields.String(), values=fields.Float(allow_none=True),
                                  metadata={"description": "Each metric's latest value: its "
                                            "history's last_value unless max_step cuts it"})
    since_cursor = fields.Boolean(metadata={
        "description": "Only with a `cursor` in the request: true when each history holds only "
                       "the points logged since it (append them; the stats are the whole "
                       "history's), false when the histories are whole (replace)"})
    metrics_history = fields.List(fields.Nested(MetricHistorySchema))
    tags = fields.Dict(keys=fields.String(), values=fields.String(), metadata={
        "description": "Only with include_tags: the run's MLflow tags"})


class RunErrorSchema(ma.Schema):
    run_id = fields.String()
    code = fields.Integer(metadata={"description": "403 or 404"})
    status = fields.String()
    message = fields.String()


class RunsSchema(ma.Schema):
    success = fields.Boolean()
    experiment_name = fields.String(allow_none=True)
    total_runs = fields.Integer()
    runs = fields.List(fields.Nested(RunSchema))
    message = fields.String()
    unknown_metric_keys = fields.List(fields.String(), metadata={
        "description": "Only with metric_keys: those that none of the runs has"})
    run_errors = fields.List(fields.Nested(RunErrorSchema), metadata={
        "description": "Only with run_ids: the runs that could not be read, and why"})
    cursor = fields.String(metadata={
        "description": "With histories: send it back as `cursor` to get only what is new "
                       "(how a live chart polls: docs/api.md)"})
