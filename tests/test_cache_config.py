"""Which flask-caching backend each setting picks (unit tests, no Redis needed)."""
import pytest

from app.cache.entries import Seal
from app.cache.settings import cache_config
from app.cache.store import JsonSerializer
from config import Config


def settings(**overrides):
    return {key: getattr(Config, key) for key in dir(Config) if key.isupper()} | overrides


@pytest.mark.parametrize("overrides, backend", [
    ({}, "SimpleCache"),
    ({"REDIS_URL": "redis://r:6379/0"}, "RedisCache"),
    ({"REDIS_SENTINELS": "s1:26379, s2:26379"}, "RedisSentinelCache"),
    ({"REDIS_CLUSTER": "c1:7000,c2:7000"}, "RedisClusterCache"),
])
def test_backend_choice(overrides, backend):
    chosen = cache_config(settings(**overrides))
    assert chosen["CACHE_TYPE"] == backend
    assert isinstance(chosen["CACHE_SERIALIZER"], JsonSerializer)  # never pickle


def test_redis_settings_carry_timeouts_and_sentinel_hosts():
    chosen = cache_config(settings(REDIS_SENTINELS="s1:26379, s2:26380", REDIS_SOCKET_TIMEOUT=0.25))
    assert chosen["CACHE_REDIS_SENTINELS"] == [("s1", 26379), ("s2", 26380)]
    assert chosen["CACHE_OPTIONS"] == {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}


def test_serializer_round_trips_and_refuses_pickle():
    serializer = JsonSerializer()
    assert serializer.loads(serializer.dumps({"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}
    assert bytes(serializer.loads(serializer.dumps(b"raw\nbytes"))) == b"raw\nbytes"
    import pickle
    assert serializer.loads(pickle.dumps({"x": 1})) is None
    assert serializer.loads(b"!" + pickle.dumps({"x": 1})) is None


def test_macs_keep_fields_apart():
    cache = Seal(b"k")
    assert cache.mac("u", "a\0b", "c") != cache.mac("u", "a", "b\0c")
    assert cache.mac(None, "p") != cache.mac("", "p")
    assert cache.mac("u", "p") == cache.mac("u", "p")
