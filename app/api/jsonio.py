"""JSON in and out: orjson for every response (~10x faster than the stdlib on large
histories), and strict orjson for request bodies.

MLflow's answers are read elsewhere (``upstream.parse_json``), with the stdlib as a
fallback for MLflow's bare NaN tokens; a request gets no such leniency: NaN, nesting
deeper than orjson's 1,024 levels, integers of more than 4,300 digits and invalid UTF-8
are a 400. Valid JSON that no field can take (a lone surrogate escape, ``"\\ud800"``,
which is not Unicode; a number beyond a double) is a 422 naming the field holding it.
"""
import json
import math

import orjson
from flask.json.provider import JSONProvider
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from app import errors


class OrjsonProvider(JSONProvider):
    # NaN and +-Infinity become null (orjson's rule), so browsers can JSON.parse us.
    def dumps(self, obj, **kwargs):
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s, **kwargs):
        return parse_request(s)

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS),
                                        mimetype="application/json")


class StrictJsonParser(FlaskParser):
    """webargs' parser with request bodies read by ``parse_request`` (webargs' own
    ``json.loads`` let a 2,000-deep nesting or a 5,000-digit integer become a 500)."""

    def load_json(self, req, schema):
        if not is_json_request(req):
            return core.missing
        body = req.get_data(cache=True)
        return parse_request(body) if body else core.missing  # no body: no fields


def parse_request(body):
    """A request body as JSON, or a 400 (malformed) / 422 (a field no value can fill)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        unreadable = _unreadable_fields(body)
        if unreadable:
            raise errors.invalid_fields(unreadable) from None
        raise errors.BadRequest(f"Malformed JSON: {exc}.") from None


def _refuse_constant(token):
    raise ValueError(f"{token} is not JSON")


def _unreadable_fields(body) -> dict:
    """{field: [why]} when ``body`` is valid JSON that orjson still refused: a lone
    surrogate or a number beyond a double. The stdlib parses it, guarded: it has its own
    limits (nesting, 4,300 digits), and what it cannot read is simply malformed."""
    try:  # strict UTF-8 first: the stdlib would let encoded surrogates through
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return {}
    if not isinstance(data, dict):
        why = _problem(data)
        return {"_schema": [why]} if why else {}
    found = {}
    for key, value in data.items():
        why = _problem(key) or _problem(value)
        if why:
            found[json.dumps(key)[1:-1] if _problem(key) else key] = [why]
    return found


def _problem(value):
    """Why some string or number inside ``value`` fits no field, or None."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return ("Not valid Unicode: holds a lone surrogate (a \\ud800-\\udfff escape "
                        "without its pair).")
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and not -2**63 <= item < 2**63:
            return "Integer out of range: no field takes more than 64 bits."
        elif isinstance(item, float) and not math.isfinite(item):
            return "Number out of range: no field takes a number beyond a double."
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return None
