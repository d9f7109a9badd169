"""Everything about the cache: the backend's few failure-proof operations (``store``),
sealed entries (``entries``), keys (``keys``), when a copy is still right
(``freshness``), the run cache the service uses (``run_cache``), each worker's own copies
(``copies``), single flight (``flight``) and the Redis settings (``settings``).

docs/cache.md describes what is stored and why the cache never weakens MLflow's auth.
"""
import logging
import secrets

from app.cache.copies import LocalCopies
from app.cache.run_cache import RunCache
from app.cache.settings import cache_config
from app.cache.store import Store

log = logging.getLogger(__name__)


def init_app(app, cache):
    """flask-caching (``cache``, app/extensions.py) from our settings, wrapped as the
    RunCache the service uses (``app.extensions["run_cache"]``)."""
    config = app.config
    chosen = cache_config(config)
    cache.init_app(app, config=chosen)
    secret = config.get("SECRET_KEY")
    if not secret:
        # Still safe, but each worker then has its own key: cached entries and grants
        # written by one worker or host are misses for the others.
        log.warning("SECRET_KEY is not set; using a random per-process key")
        secret = secrets.token_hex(32)
        config["SECRET_KEY"] = secret
    store = Store(app.extensions["cache"][cache], chosen["CACHE_TYPE"],
                  retry_after=config["CACHE_RETRY_AFTER"],
                  max_value=int(config["CACHE_MAX_ENTRY_MB"] * (1 << 20)))
    app.extensions["run_cache"] = RunCache(
        store, secret=secret.encode(), run_ttl=config["RUN_CACHE_TTL"],
        list_ttl=config["RUN_LIST_TTL"], auth_ttl=config["AUTH_CACHE_TTL"],
        recent_ttl=config["RECENT_RUN_CACHE_TTL"], recent_window=config["RECENT_RUN_WINDOW"],
        local=LocalCopies(config["LOCAL_COPIES_MB"] << 20, config["LOCAL_COPY_MAX_MB"] << 20,
                          ttl=config["RUN_CACHE_TTL"]))
