"""GET forms of the API routes: the body's fields as query parameters.

``GET /mlflow/runs?experiment_name=e&metric_keys=loss&metric_keys=acc&limit=5`` is the
POST body ``{"experiment_name": "e", "metric_keys": ["loss", "acc"], "limit": 5}``: the
same schema checks the same rules once the text values are typed (``true``/``false``
(or ``1``/``0``) for booleans, integers and numbers parsed, list fields repeated).

Credentials are never taken from a URL (URLs end up in proxy logs, browser history and
Referer headers): ``username`` or ``password`` in a query string is a 422 naming it.
A GET form connects with a ``profile``, or ``tracking_uri`` and an ``Authorization:
Basic`` header. Unknown parameters are a 422 naming them, as unknown body fields are; a
scalar parameter given twice is a 422 too (which one was meant?).
"""
import math
import re

import marshmallow as ma
from marshmallow import fields

from app.api.jsonio import StrictJsonParser

CREDENTIALS = ("username", "password")
NEVER_IN_URL = ("Never in a URL: send credentials in an Authorization: Basic header, "
                "or use a profile.")
INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class Parser(StrictJsonParser):
    """Hands the schema the query string as it came (a MultiDict): the form's
    ``pre_load`` sees repeated parameters, which webargs' proxy would hide."""

    def load_querystring(self, req, schema):
        return req.args


class QueryForm(ma.Schema):
    """Mixed in before a body schema: types the query string's text, then the body
    schema's own fields and validators apply unchanged."""

    @ma.pre_load
    def text_typed(self, data, **kwargs):
        if not hasattr(data, "getlist"):  # not a query string: nothing to type
            return data
        problems = {f: [NEVER_IN_URL] for f in CREDENTIALS if f in data}
        values = {}
        for name in data.keys():
            given = data.getlist(name)
            field = self.fields.get(name)
            if field is None:
                values[name] = given[0]  # unknown: the schema names it
            elif isinstance(field, fields.List):
                values[name] = given
            elif len(given) > 1:
                problems[name] = ["Given more than once; a list field takes repeats, "
                                  "this one takes one value."]
            else:
                values[name] = typed_value(field, given[0])
        if problems:
            raise ma.ValidationError(problems)
        return values



def typed_value(field, text: str):
    """``text`` as the JSON value ``field`` takes, or ``text`` as it is (the field
    then refuses it with its own message)."""
    if isinstance(field, fields.Boolean):
        return BOOLEANS.get(text.lower(), text)
    if isinstance(field, fields.Integer) and INTEGER.fullmatch(text):
        return int(text)
    if isinstance(field, fields.Float) and NUMBER.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else text
    return text


def query_form(body_schema: type) -> type:
    """``body_schema``'s GET form: its fields less the credentials, from a query string."""
    meta = type("Meta", (getattr(body_schema, "Meta", object),), {"exclude": CREDENTIALS})
    name = body_schema.__name__.removesuffix("Schema") + "ParametersSchema"
    return type(name, (QueryForm, body_schema), {"Meta": meta})
