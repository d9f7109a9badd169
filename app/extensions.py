"""Extension objects, created unbound and attached to the app in ``create_app``."""
import logging
import secrets

from flask_caching import Cache
from flask_smorest import Api as _Api

from app.cache import LocalCopies, RunCache
from app.store import JsonSerializer, Store
from app.errors import ErrorSchema, error_payload

log = logging.getLogger(__name__)


class Api(_Api):
    """flask-smorest's Api with our single error shape for every HTTP error."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        return error_payload(error)


api = Api()
cache = Cache()


def init_cache(app):
    """flask-caching from our settings, wrapped as the RunCache the service uses."""
    config = app.config
    cache.init_app(app, config=cache_config(config))
    secret = config.get("SECRET_KEY")
    if not secret:
        # Still safe, but each worker then has its own key: cached entries and grants
        # written by one worker or host are misses for the others.
        log.warning("SECRET_KEY is not set; using a random per-process key")
        secret = secrets.token_hex(32)
        config["SECRET_KEY"] = secret
    kind = cache_config(config)["CACHE_TYPE"]
    store = Store(app.extensions["cache"][cache], kind, retry_after=config["CACHE_RETRY_AFTER"],
                  max_value=int(config["CACHE_MAX_ENTRY_MB"] * (1 << 20)))
    app.extensions["run_cache"] = RunCache(
        store, secret=secret.encode(), run_ttl=config["RUN_CACHE_TTL"],
        list_ttl=config["RUN_LIST_TTL"], auth_ttl=config["AUTH_CACHE_TTL"],
        recent_ttl=config["RECENT_RUN_CACHE_TTL"], recent_window=config["RECENT_RUN_WINDOW"],
        local=LocalCopies(config["LOCAL_COPIES_MB"] << 20, config["LOCAL_COPY_MAX_MB"] << 20,
                          ttl=config["RUN_CACHE_TTL"]))


def cache_config(config) -> dict:
    timeouts = {"socket_timeout": config["REDIS_SOCKET_TIMEOUT"],
                "socket_connect_timeout": config["REDIS_SOCKET_TIMEOUT"]}
    common = {"CACHE_SERIALIZER": JsonSerializer(),  # never pickle: Redis may be shared
              "CACHE_KEY_PREFIX": config["CACHE_KEY_PREFIX"],
              "CACHE_REDIS_PASSWORD": config["REDIS_PASSWORD"],
              "CACHE_OPTIONS": timeouts}
    if config["REDIS_SENTINELS"]:
        return dict(common, CACHE_TYPE="RedisSentinelCache",
                    CACHE_REDIS_SENTINELS=_hosts(config["REDIS_SENTINELS"]),
                    CACHE_REDIS_SENTINEL_MASTER=config["REDIS_SENTINEL_MASTER"])
    if config["REDIS_CLUSTER"]:
        return dict(common, CACHE_TYPE="RedisClusterCache", CACHE_REDIS_CLUSTER=config["REDIS_CLUSTER"])
    if config["REDIS_URL"]:
        return dict(common, CACHE_TYPE="RedisCache", CACHE_REDIS_URL=config["REDIS_URL"])
    return {"CACHE_TYPE": "SimpleCache", "CACHE_SERIALIZER": JsonSerializer(),
            "CACHE_THRESHOLD": config["LOCAL_CACHE_MAX_ITEMS"]}


def _hosts(text):
    return [(host, int(port)) for host, _, port in (h.strip().rpartition(":") for h in text.split(","))]
