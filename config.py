"""Settings, read from the environment once at start-up.

Tests and embedders pass a mapping to ``create_app(config)`` instead; its keys
override these.
"""
import os


def _int(name, default):
    return int(os.environ.get(name, default))


def _float(name, default):
    return float(os.environ.get(name, default))


class Config:
    # Serving (python wsgi.py; gunicorn reads gunicorn.conf.py)
    HOST = os.environ.get("HOST", "127.0.0.1")
    PORT = _int("PORT", 8001)
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
    # Reverse proxies in front of us whose X-Forwarded-* are trusted (0 = none, the default:
    # a caller could otherwise choose the address it is rate-limited and logged as).
    PROXY_FIX_HOPS = _int("PROXY_FIX_HOPS", 0)

    # Request limits
    MAX_CONTENT_LENGTH = _int("MAX_CONTENT_LENGTH", 1024 * 1024)
    MAX_RUNS_LIMIT = _int("MAX_RUNS_LIMIT", 1000)
    MAX_HTTP_TIMEOUT = _float("MAX_HTTP_TIMEOUT", 300)
    # Metric points one /mlflow/runs answer may carry (a 422 beyond, before it is built).
    MAX_RESPONSE_POINTS = _int("MAX_RESPONSE_POINTS", 5_000_000)
    # Requests per client address to the MLflow routes, e.g. "120/minute" (unset = off).
    RATE_LIMIT = os.environ.get("RATE_LIMIT") or None

    # Operators' controls (docs/operating.md); parsed and checked by app/access.py at start-up.
    # Comma-separated URI prefixes or hosts a caller's tracking_uri must match (unset = any).
    ALLOWED_TRACKING_URIS = os.environ.get("ALLOWED_TRACKING_URIS") or None
    # Named MLflow servers with their credentials: JSON, or a file holding that JSON.
    MLFLOW_PROFILES = os.environ.get("MLFLOW_PROFILES") or None
    MLFLOW_PROFILES_FILE = os.environ.get("MLFLOW_PROFILES_FILE") or None

    # Browsers on other origins (docs/operating.md): comma-separated exact origins, or "*"
    # (then without credentials); unset = no CORS headers, browsers refuse other origins.
    CORS_ALLOWED_ORIGINS = os.environ.get("CORS_ALLOWED_ORIGINS") or None
    CORS_MAX_AGE = _int("CORS_MAX_AGE", 600)  # seconds a browser may reuse a preflight
    # gzip/zstd answers for clients that accept them (off: a proxy in front compresses)
    COMPRESSION = os.environ.get("COMPRESSION", "true").lower() not in ("0", "false", "no", "off")

    # Talking to MLflow
    MLFLOW_CONCURRENCY = _int("MLFLOW_CONCURRENCY", 8)  # parallel calls per request
    MLFLOW_MAX_RETRIES = _int("MLFLOW_MAX_RETRIES", 2)  # for 429/503, within http_timeout
    MLFLOW_HISTORY_PAGE_SIZE = _int("MLFLOW_HISTORY_PAGE_SIZE", 25000)
    MLFLOW_SEARCH_PAGE_SIZE = _int("MLFLOW_SEARCH_PAGE_SIZE", 1000)

    # Cache (docs/cache.md). REDIS_URL unset -> an in-process cache per worker.
    REDIS_URL = os.environ.get("REDIS_URL")
    REDIS_SENTINELS = os.environ.get("REDIS_SENTINELS")          # "host:port,host:port"
    REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "mymaster")
    REDIS_CLUSTER = os.environ.get("REDIS_CLUSTER")              # "host:port,host:port"
    REDIS_PASSWORD = os.environ.get("REDIS_PASSWORD")
    REDIS_SOCKET_TIMEOUT = _float("REDIS_SOCKET_TIMEOUT", 0.5)  # connect and read, seconds
    CACHE_RETRY_AFTER = _float("CACHE_RETRY_AFTER", 5)  # seconds to skip a failed cache
    CACHE_KEY_PREFIX = os.environ.get("CACHE_KEY_PREFIX", "mlflow-logs:v1:")
    LOCAL_CACHE_MAX_ITEMS = _int("LOCAL_CACHE_MAX_ITEMS", 500)
    # Each worker's own copies of runs it served recently, in front of Redis (0 = none).
    LOCAL_COPIES_MB = _int("LOCAL_COPIES_MB", 128)
    LOCAL_COPY_MAX_MB = _int("LOCAL_COPY_MAX_MB", 16)  # larger runs are read from Redis
    RUN_CACHE_TTL = _int("RUN_CACHE_TTL", 24 * 3600)  # finished runs' histories
    # Runs that ended less than RECENT_RUN_WINDOW seconds ago are kept RECENT_RUN_CACHE_TTL
    # only: points logged late below a run's latest step are unseen until its entry expires.
    RECENT_RUN_CACHE_TTL = _int("RECENT_RUN_CACHE_TTL", 300)
    RECENT_RUN_WINDOW = _int("RECENT_RUN_WINDOW", 24 * 3600)
    # The most one cached value may take; larger runs are answered from MLflow each time.
    CACHE_MAX_ENTRY_MB = _float("CACHE_MAX_ENTRY_MB", 64)
    RUN_LIST_TTL = _int("RUN_LIST_TTL", 10)           # which runs a query selects
    AUTH_CACHE_TTL = _int("AUTH_CACHE_TTL", 60)       # MLflow's yes to credentials+experiment
    # Keys the MACs of cached grants and entries; must be the same on every worker and host.
    SECRET_KEY = os.environ.get("SECRET_KEY")

    # Observability (docs/operating.md): GET /metrics and the JSON access log on stdout
    METRICS_ENABLED = os.environ.get("METRICS_ENABLED", "true").lower() not in ("0", "false", "no", "off")
    ACCESS_LOG = os.environ.get("ACCESS_LOG", "true").lower() not in ("0", "false", "no", "off")

    # OpenAPI / Swagger UI (assets served locally: no CDN on many internal networks)
    API_TITLE = "MLflow Logs API"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Relative, so it still resolves behind a proxy that mounts us under a prefix.
    OPENAPI_SWAGGER_UI_URL = "docs-assets/"
