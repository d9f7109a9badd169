"""Cross-origin requests from browser dashboards (flask-cors), off unless
``CORS_ALLOWED_ORIGINS`` is set.

``CORS_ALLOWED_ORIGINS`` is a comma-separated list of exact origins
(``https://dash.example.com,http://127.0.0.1:8090``), or ``*`` alone. Exact origins are
echoed back with ``Access-Control-Allow-Credentials: true`` (a page behind an SSO cookie
still works); ``*`` is answered as ``*`` without it, so browsers send no cookies or
stored credentials with it. A page sends its own ``Authorization`` header, or names a
profile, in either case.

Only the API routes (and the spec) get the headers. flask-cors adds them in an
after-request hook, so error answers (401, 422, 429 ...) carry them too: a page can read
its own error. Preflights (``OPTIONS``) are answered by Flask's automatic OPTIONS, with
``Access-Control-Max-Age`` so a browser asks once per ``CORS_MAX_AGE`` seconds, not
before every poll; they are not counted by the rate limiter (app/api/ratelimit.py).
"""
import re

from flask_cors import CORS

# The routes a page may call, anchored (flask-cors matches from the start only).
RESOURCES = re.compile(r"^/(?:health|mlflow/experiments|mlflow/runs|openapi\.json)\Z")
ALLOW_HEADERS = ["Authorization", "Content-Type", "X-Request-ID", "If-None-Match"]
EXPOSE_HEADERS = ["X-Cache", "X-Request-ID", "X-Run-Errors", "X-Run-Errors-Count",
                  "X-Unknown-Metric-Keys", "X-Unknown-Metric-Keys-Count",
                  "Content-Disposition", "ETag", "Retry-After"]
METHODS = ["GET", "HEAD", "POST", "OPTIONS"]
# scheme://host[:port], nothing after: what a browser sends in Origin.
ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def allowed_origins(setting: str | None) -> list[str] | None:
    """The setting as a list of origins (``["*"]`` for any), None when CORS is off;
    a ValueError at start-up for what would never match a browser's Origin header."""
    if setting is None or not setting.strip():
        return None
    origins = [item.strip() for item in setting.split(",") if item.strip()]
    if "*" in origins:
        if len(origins) > 1:
            raise ValueError("CORS_ALLOWED_ORIGINS: '*' allows every origin; list exact "
                             "origins instead, or '*' alone.")
        return ["*"]
    wrong = [o for o in origins if not ORIGIN.fullmatch(o)]
    if wrong:
        raise ValueError(f"CORS_ALLOWED_ORIGINS: {', '.join(map(repr, wrong))} is not an "
                         "origin such as https://dash.example.com or http://127.0.0.1:8090 "
                         "(scheme, host and port only: no path, not even a final '/').")
    return origins


def init_app(app):
    """Attach flask-cors when ``CORS_ALLOWED_ORIGINS`` is set (else nothing changes)."""
    origins = allowed_origins(app.config.get("CORS_ALLOWED_ORIGINS"))
    if origins is None:
        return None
    anyone = origins == ["*"]
    # Compiled, escaped patterns: flask-cors would take a string holding '[' (an IPv6
    # host) for a regular expression.
    patterns = "*" if anyone else [re.compile(re.escape(o) + r"\Z", re.IGNORECASE)
                                   for o in origins]
    return CORS(app, resources={RESOURCES: {}}, origins=patterns,
                supports_credentials=not anyone, allow_headers=ALLOW_HEADERS,
                expose_headers=EXPOSE_HEADERS, methods=METHODS,
                send_wildcard=anyone, max_age=app.config["CORS_MAX_AGE"], vary_header=True)
