"""The public routes: /health, /mlflow/experiments and /mlflow/runs, as POST (a JSON body)
and GET (the same fields as query parameters: app/api/queryforms.py). Each reads like the
contract: the schema types the request, the context connects, the layer below answers."""
import marshmallow as ma
from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app import errors, overview
from app.api import delivery, queryforms, responses, schemas
from app.api import errors as api_errors
from app.context import open_context
from app.runs import assembly

blp = Blueprint("mlflow", __name__, description="Read MLflow experiments and runs as JSON")
# Request bodies: strict orjson (app/api/jsonio.py); query strings of the GET forms as they came.
blp.ARGUMENTS_PARSER = queryforms.Parser()


def query_arguments(body_schema):
    """The GET form of a route taking ``body_schema`` (app/api/queryforms.py)."""
    return blp.arguments(queryforms.query_form(body_schema), location="query",
                         unknown=ma.RAISE)  # webargs would drop unknown parameters


@blp.before_request
def require_json_body():
    # Without this, a body sent as form data (curl -d without -H) would be ignored
    # and the caller told that tracking_uri is missing.
    if request.content_length and not request.is_json:
        raise errors.UnsupportedMediaType("Send the request body as JSON "
                                          "with Content-Type: application/json.")


ERROR_MEANINGS = {
    400: "Body is not valid JSON (the message has the position)",
    401: "MLflow rejected the credentials",
    403: "MLflow denied access to the experiment or run, or the operator's allowlist "
         "(ALLOWED_TRACKING_URIS) refused tracking_uri (then no connection is made)",
    404: "Experiment, run or profile not found",
    415: "Body is not JSON",
    429: "More requests from this client than RATE_LIMIT allows; see Retry-After",
    502: "MLflow unreachable, TLS failure, or an MLflow error",
    504: "http_timeout spent before MLflow answered",
}


def documents_errors(*statuses):
    """Document these error statuses, all in the one error shape."""
    def decorate(view):
        for status in statuses:
            view = blp.alt_response(status, schema=api_errors.ErrorSchema,
                                    description=ERROR_MEANINGS[status])(view)
        return view
    return decorate


@blp.route("/health")
class Health(MethodView):
    @blp.arguments(schemas.ConnectionSchema, example=schemas.CONNECTION_EXAMPLE)
    @blp.response(200, responses.HealthSchema)
    @documents_errors(400, 403, 404, 415, 429)
    def post(self, connection):
        """Check that MLflow answers with these credentials.

        Answers 200 even when MLflow is not accessible: `status` is then
        `unhealthy` and `error` / `error_code` say why. What is decided before
        MLflow is asked is still an error: a `tracking_uri` outside the operator's
        allowlist (403), an unknown `profile` (404), a malformed header (422).
        """
        return overview.health(open_context(connection))

    @query_arguments(schemas.ConnectionSchema)
    @blp.response(200, responses.HealthSchema)
    @documents_errors(403, 404, 429)
    def get(self, connection):
        """POST's check as a GET: the body's fields as query parameters; credentials
        only in an `Authorization: Basic` header or through `profile`."""
        return overview.health(open_context(connection))


@blp.route("/mlflow/experiments")
class Experiments(MethodView):
    @blp.arguments(schemas.ConnectionSchema, example=schemas.CONNECTION_EXAMPLE)
    @blp.response(200, responses.ExperimentsSchema)
    @documents_errors(400, 401, 403, 404, 415, 429, 502, 504)
    def post(self, connection):
        """List all active experiments (every page of MLflow's search)."""
        return overview.experiments(open_context(connection))

    @query_arguments(schemas.ConnectionSchema)
    @blp.response(200, responses.ExperimentsSchema)
    @documents_errors(401, 403, 404, 429, 502, 504)
    def get(self, connection):
        """POST's listing as a GET: the body's fields as query parameters; credentials
        only in an `Authorization: Basic` header or through `profile`."""
        return overview.experiments(open_context(connection))


# flask-smorest documents one content type per status: state both here.
RUNS_CONTENT = {"200": {"description": "OK", "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/Runs"}},
    "text/csv": {"schema": {
        "type": "string", "description": "With format csv or Accept: text/csv: a header "
        "row, then run_id, run_name, metric, step, value, timestamp rows, streamed"}}}}}


@blp.route("/mlflow/runs")
class Runs(MethodView):
    @blp.arguments(schemas.RunsQuerySchema, example=schemas.RUNS_EXAMPLE)
    @blp.response(200, responses.RunsSchema)
    @blp.doc(responses=RUNS_CONTENT)
    @documents_errors(400, 401, 403, 404, 415, 429, 502, 504)
    def post(self, asked):
        """Runs with parameters, latest metrics and complete metric histories.

        The `X-Cache` response header says whether MLflow was asked: `HIT` (not
        at all), `MISS` (nothing came from the cache) or `PARTIAL`. Finished runs
        are cached; `"refresh": true` ignores the cache for this request.

        Select with `run_id`, `run_ids`, `experiment_name` or `experiment_id`; when
        several are given they narrow each other (a run outside the named experiment
        is 404, a name and id of different experiments 422). With none, the newest
        runs across all active experiments. Runs are newest first.

        `metric_keys`, `max_points`, `since_step`/`since_timestamp` and `format`
        (or `Accept: text/csv`) shape what is returned of each run's histories.
        """
        return runs(asked)

    @query_arguments(schemas.RunsQuerySchema)
    @blp.response(200, responses.RunsSchema)
    @blp.doc(responses=RUNS_CONTENT)
    @documents_errors(401, 403, 404, 429, 502, 504)
    def get(self, asked):
        """POST's runs as a GET: the body's fields as query parameters, list fields
        repeated (`?metric_keys=loss&metric_keys=acc`); credentials only in an
        `Authorization: Basic` header or through `profile`."""
        return runs(asked)


def runs(asked):
    query = asked.query
    as_csv = wants_csv(query.format)
    if as_csv and query.view.cursor is not None:  # an Accept header the schema cannot see
        raise errors.invalid_fields({"cursor": ["Not with a CSV answer (Accept: text/csv): a "
                                                "cursor is for JSON answers."]})
    context = open_context(asked.connection, refresh=query.refresh)
    coding = None if as_csv else delivery.negotiated_coding()
    # If-None-Match is defined for GET and HEAD: a POST is answered in full.
    held = request.if_none_match if request.method in ("GET", "HEAD") else None
    return respond(assembly.runs(context, query, as_csv=as_csv, coding=coding,
                                 if_none_match=held), as_csv)


def respond(answer, as_csv):
    """The streamed response for a runs answer (its body is written piece by piece), or
    a 304 naming the answer's ETag that the client holds (app/runs/etag.py)."""
    headers = {"X-Cache": answer.cache, **(answer.headers or {})}
    if answer.etag:
        headers["ETag"] = f'"{answer.etag}"'
    if answer.not_modified:
        return current_app.response_class(status=304, headers=headers)
    if as_csv:  # streamed: rows are written while the client reads them
        return current_app.response_class(iter(answer), mimetype="text/csv", headers=headers)
    # Pre-encoded JSON (cached runs are written as stored bytes): no marshmallow dump.
    # Written piece by piece (a large history is not copied into one body).
    headers["Content-Length"] = str(answer.length)
    return current_app.response_class(iter(answer), mimetype="application/json",
                                      headers=headers)


def wants_csv(fmt) -> bool:
    """``format`` decides; without it, an Accept header that prefers text/csv."""
    if fmt is not None:
        return fmt == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
