"""What the proxies in front may tell us: ``X-Forwarded-*``, trusted for ``PROXY_FIX_HOPS``
proxies only (0, the default: none, so a caller cannot pick the address its rate-limit
budget and access-log line are counted under).

Even from a trusted proxy, ``X-Forwarded-Prefix`` is only taken as a plain path prefix:
it becomes SCRIPT_NAME, which the docs page puts in front of the spec's URL, so
``//evil.example`` would make a browser load the spec from another host.
"""
import re

from werkzeug.middleware.proxy_fix import ProxyFix

PREFIX_HEADER = "HTTP_X_FORWARDED_PREFIX"
PREFIX_MAX = 256
# One "/" and then RFC 3986 path characters (unreserved, %XX, sub-delims, ":" and "@").
_PREFIX = re.compile(r"(?:/(?:[A-Za-z0-9._~!$&'()*+;=:@-]|%[0-9A-Fa-f]{2})+)+/?")


def plain_prefix(value: str) -> bool:
    """A path prefix such as ``/mlflow-logs``: no host (``//``), backslash, control
    character, ``.``/``..`` segment, query or fragment; at most PREFIX_MAX characters."""
    if len(value) > PREFIX_MAX or not _PREFIX.fullmatch(value):
        return False
    return not any(segment in (".", "..") for segment in value.split("/"))


class PlainPrefixOnly:
    """WSGI middleware in front of ProxyFix: drops an ``X-Forwarded-Prefix`` any of whose
    comma-separated values is not a plain path prefix (ProxyFix picks one by position)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        value = environ.get(PREFIX_HEADER)
        if value is not None and not all(plain_prefix(v.strip(" ")) for v in value.split(",")):
            del environ[PREFIX_HEADER]
        return self.app(environ, start_response)


def trust_proxies(app):
    """Apply ``PROXY_FIX_HOPS`` to ``app``: without proxies in front, no header is trusted."""
    hops = app.config["PROXY_FIX_HOPS"]
    if hops:
        app.wsgi_app = PlainPrefixOnly(ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,
                                                x_host=hops, x_prefix=hops))
