"""orjson for every JSON response: ~10x faster than the stdlib on large histories."""
import orjson
from flask.json.provider import JSONProvider

from app.gateway import parse_json


class OrjsonProvider(JSONProvider):
    # NaN and +-Infinity become null (orjson's rule), so browsers can JSON.parse us.
    def dumps(self, obj, **kwargs):
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s, **kwargs):
        return parse_json(s)

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS),
                                        mimetype="application/json")
