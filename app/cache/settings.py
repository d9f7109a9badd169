"""The Redis settings, parsed once, for both users of Redis: flask-caching (the cache)
and flask-limiter (the rate-limit counters), so they always talk to the same Redis."""
from dataclasses import dataclass

from app.cache.store import JsonSerializer


@dataclass(frozen=True)
class RedisSettings:
    url: str | None
    sentinels: tuple   # ((host, port), ...)
    sentinel_master: str
    cluster: str | None
    password: str | None
    socket_timeout: float
    key_prefix: str

    @classmethod
    def of(cls, config) -> "RedisSettings":
        return cls(config.get("REDIS_URL"), _hosts(config.get("REDIS_SENTINELS")),
                   config.get("REDIS_SENTINEL_MASTER", "mymaster"), config.get("REDIS_CLUSTER"),
                   config.get("REDIS_PASSWORD"), config["REDIS_SOCKET_TIMEOUT"],
                   config["CACHE_KEY_PREFIX"])

    @property
    def configured(self) -> bool:
        return bool(self.url or self.sentinels or self.cluster)


def _hosts(text):
    if not text:
        return ()
    return tuple((host, int(port)) for host, _, port in
                 (h.strip().rpartition(":") for h in text.split(",")))


def cache_config(config) -> dict:
    """flask-caching's settings: Sentinel, Cluster or one Redis; else in-process."""
    redis = RedisSettings.of(config)
    timeouts = {"socket_timeout": redis.socket_timeout,
                "socket_connect_timeout": redis.socket_timeout}
    common = {"CACHE_SERIALIZER": JsonSerializer(),  # never pickle: Redis may be shared
              "CACHE_KEY_PREFIX": redis.key_prefix,
              "CACHE_REDIS_PASSWORD": redis.password,
              "CACHE_OPTIONS": timeouts}
    if redis.sentinels:
        return dict(common, CACHE_TYPE="RedisSentinelCache",
                    CACHE_REDIS_SENTINELS=list(redis.sentinels),
                    CACHE_REDIS_SENTINEL_MASTER=redis.sentinel_master)
    if redis.cluster:
        return dict(common, CACHE_TYPE="RedisClusterCache", CACHE_REDIS_CLUSTER=redis.cluster)
    if redis.url:
        return dict(common, CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis.url)
    return {"CACHE_TYPE": "SimpleCache", "CACHE_SERIALIZER": JsonSerializer(),
            "CACHE_THRESHOLD": config["LOCAL_CACHE_MAX_ITEMS"]}


def limiter_storage(config) -> tuple[str, dict]:
    """flask-limiter's storage URI and options: the cache's Redis, else process memory."""
    redis = RedisSettings.of(config)
    if not redis.configured:
        return "memory://", {}
    # Keys next to the cache's, so one prefix (and one ACL rule) covers the service.
    options = {"key_prefix": redis.key_prefix + "ratelimit",
               "socket_timeout": redis.socket_timeout,
               "socket_connect_timeout": redis.socket_timeout}
    if redis.password and not redis.url:
        options["password"] = redis.password
    if redis.sentinels:
        hosts = ",".join(f"{host}:{port}" for host, port in redis.sentinels)
        return f"redis+sentinel://{hosts}/{redis.sentinel_master}", options
    if redis.cluster:
        hosts = ",".join(h.strip() for h in redis.cluster.split(","))
        return f"redis+cluster://{hosts}", options
    return redis.url, options
