"""Extension objects, created unbound and attached to the app in ``create_app``."""
from flask_caching import Cache
from flask_smorest import Api as _Api

from app.api.errors import ErrorSchema, error_payload


class Api(_Api):
    """flask-smorest's Api with our single error shape for every HTTP error."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        return error_payload(error)


smorest = Api()
cache = Cache()
