"""Settings, read from the environment once at start-up.

Tests and embedders pass a mapping to ``create_app(config)`` instead; its keys
override these.
"""
import os

FALSE_WORDS = ("0", "false", "no", "off")


def env_str(name, default=None):
    """The variable's text as set (an empty value stays empty); unset is ``default``."""
    return os.environ.get(name, default)


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_float(name, default):
    return float(os.environ.get(name, default))


def env_bool(name, default: bool):
    """Off for 0/false/no/off (any case), on for anything else; unset is ``default``."""
    value = os.environ.get(name)
    return default if value is None else value.lower() not in FALSE_WORDS


class Config:
    # Serving (python wsgi.py; gunicorn reads gunicorn.conf.py)
    HOST = env_str("HOST", "127.0.0.1")
    PORT = env_int("PORT", 8001)
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
    # Reverse proxies in front of us whose X-Forwarded-* are trusted (0 = none, the default:
    # a caller could otherwise choose the address it is rate-limited and logged as).
    PROXY_FIX_HOPS = env_int("PROXY_FIX_HOPS", 0)

    # Request limits
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    MAX_RUNS_LIMIT = env_int("MAX_RUNS_LIMIT", 1000)
    MAX_HTTP_TIMEOUT = env_float("MAX_HTTP_TIMEOUT", 300)
    # Metric points one /mlflow/runs answer may carry (a 422 beyond, before it is built).
    MAX_RESPONSE_POINTS = env_int("MAX_RESPONSE_POINTS", 5_000_000)
    # Requests per client address to the MLflow routes, e.g. "120/minute" (unset = off).
    RATE_LIMIT = env_str("RATE_LIMIT") or None

    # Operators' controls (docs/operating.md); parsed and checked by app/access.py at start-up.
    # Comma-separated URI prefixes or hosts a caller's tracking_uri must match (unset = any).
    ALLOWED_TRACKING_URIS = env_str("ALLOWED_TRACKING_URIS") or None
    # Named MLflow servers with their credentials: JSON, or a file holding that JSON.
    MLFLOW_PROFILES = env_str("MLFLOW_PROFILES") or None
    MLFLOW_PROFILES_FILE = env_str("MLFLOW_PROFILES_FILE") or None

    # Browsers on other origins (docs/operating.md): comma-separated exact origins, or "*"
    # (then without credentials); unset = no CORS headers, browsers refuse other origins.
    CORS_ALLOWED_ORIGINS = env_str("CORS_ALLOWED_ORIGINS") or None
    CORS_MAX_AGE = env_int("CORS_MAX_AGE", 600)  # seconds a browser may reuse a preflight
    # gzip/zstd answers for clients that accept them (off: a proxy in front compresses)
    COMPRESSION = env_bool("COMPRESSION", True)

    # Talking to MLflow
    MLFLOW_CONCURRENCY = env_int("MLFLOW_CONCURRENCY", 8)  # parallel calls per request
    MLFLOW_MAX_RETRIES = env_int("MLFLOW_MAX_RETRIES", 2)  # for 429/503, within http_timeout
    MLFLOW_HISTORY_PAGE_SIZE = env_int("MLFLOW_HISTORY_PAGE_SIZE", 25000)
    MLFLOW_SEARCH_PAGE_SIZE = env_int("MLFLOW_SEARCH_PAGE_SIZE", 1000)
    # What an MLflow server may send (a 502 naming the setting beyond; docs/operating.md).
    # One answer, as sent and as decoded, and a search's pages together: 64 MB is a page of
    # 1,000 runs at 64 KB each (measured: a worker's peak RSS +64 MB reading a gzip bomb).
    MLFLOW_MAX_ANSWER_MB = env_float("MLFLOW_MAX_ANSWER_MB", 64)
    # Pages one paged read follows (and items: that many full pages): 200 is a metric of
    # 5,000,000 points (MAX_RESPONSE_POINTS) at 25,000 a page, or 200,000 experiments.
    MLFLOW_MAX_PAGES = env_int("MLFLOW_MAX_PAGES", 200)
    # Characters of a text field the service reads (names, ids, params, tags): MLflow's own
    # longest are tag values, 8,000 characters.
    MLFLOW_MAX_FIELD_CHARS = env_int("MLFLOW_MAX_FIELD_CHARS", 65_536)

    # Cache (docs/cache.md). REDIS_URL unset -> an in-process cache per worker.
    REDIS_URL = env_str("REDIS_URL")
    REDIS_SENTINELS = env_str("REDIS_SENTINELS")          # "host:port,host:port"
    REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "mymaster")
    REDIS_CLUSTER = env_str("REDIS_CLUSTER")              # "host:port,host:port"
    REDIS_PASSWORD = env_str("REDIS_PASSWORD")
    REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 0.5)  # connect and read, seconds
    CACHE_RETRY_AFTER = env_float("CACHE_RETRY_AFTER", 5)  # seconds to skip a failed cache
    CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "mlflow-logs:v1:")
    LOCAL_CACHE_MAX_ITEMS = env_int("LOCAL_CACHE_MAX_ITEMS", 500)
    # Each worker's own copies of runs it served recently, in front of Redis (0 = none).
    LOCAL_COPIES_MB = env_int("LOCAL_COPIES_MB", 128)
    LOCAL_COPY_MAX_MB = env_int("LOCAL_COPY_MAX_MB", 16)  # larger runs are read from Redis
    RUN_CACHE_TTL = env_int("RUN_CACHE_TTL", 24 * 3600)  # finished runs' histories
    # Runs that ended less than RECENT_RUN_WINDOW seconds ago are kept RECENT_RUN_CACHE_TTL
    # only: points logged late below a run's latest step are unseen until its entry expires.
    RECENT_RUN_CACHE_TTL = env_int("RECENT_RUN_CACHE_TTL", 300)
    RECENT_RUN_WINDOW = env_int("RECENT_RUN_WINDOW", 24 * 3600)
    # The most one cached value may take; larger runs are answered from MLflow each time.
    CACHE_MAX_ENTRY_MB = env_float("CACHE_MAX_ENTRY_MB", 64)
    RUN_LIST_TTL = env_int("RUN_LIST_TTL", 10)           # which runs a query selects
    AUTH_CACHE_TTL = env_int("AUTH_CACHE_TTL", 60)       # MLflow's yes to credentials+experiment
    # Seconds a live run's shared tail answers polls before one request refreshes it
    # (docs/cache.md: Live runs); 0 = every poll of a live run asks MLflow itself.
    LIVE_REFRESH = env_float("LIVE_REFRESH", 5)
    # Keys the MACs of cached grants and entries; must be the same on every worker and host.
    SECRET_KEY = env_str("SECRET_KEY")

    # Observability (docs/operating.md): GET /metrics and the JSON access log on stdout
    METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
    ACCESS_LOG = env_bool("ACCESS_LOG", True)

    # OpenAPI / Swagger UI (assets served locally: no CDN on many internal networks)
    API_TITLE = "MLflow Logs API"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Relative, so it still resolves behind a proxy that mounts us under a prefix.
    OPENAPI_SWAGGER_UI_URL = "docs-assets/"
