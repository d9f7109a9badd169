"""Each worker's own copies (app/cache/copies.py LocalCopies): an LRU bounded in bytes,
valid for one fingerprint and until the shorter of its own and the entry's TTL. Pure."""
import pytest

from app.cache import copies
from app.cache.copies import LocalCopies


@pytest.fixture
def clock(monkeypatch):
    """A monotonic clock the test moves: ``clock.now``."""
    class Clock:
        now = 1000.0
    monkeypatch.setattr(copies.time, "monotonic", lambda: Clock.now)
    return Clock


def header(fingerprint="f1"):
    return {"fingerprint": fingerprint}


def test_a_copy_is_served_for_its_fingerprint_only(clock):
    local = LocalCopies(max_bytes=100, max_entry=100, ttl=60)
    local.put("k", header("f1"), b"abc")
    assert local.get("k", "f1") == (header("f1"), b"abc")
    assert local.get("k", "f2") is None and local.get("other", "f1") is None


def test_a_copy_lives_until_the_shorter_of_the_two_ttls(clock):
    local = LocalCopies(max_bytes=100, max_entry=100, ttl=60)
    local.put("short", header(), b"a", ttl=5)    # the entry's own TTL is shorter
    local.put("long", header(), b"b", ttl=600)   # the copies' TTL is shorter
    local.put("none", header(), b"c")            # no TTL given: the copies' own
    clock.now = 1005.0
    assert local.get("short", "f1") is not None   # valid up to its expiry instant
    clock.now = 1005.001
    assert local.get("short", "f1") is None and local.get("long", "f1") is not None
    clock.now = 1060.0
    assert local.get("long", "f1") is not None and local.get("none", "f1") is not None
    clock.now = 1060.001
    assert local.get("long", "f1") is None and local.get("none", "f1") is None


def test_size_limits_are_inclusive(clock):
    local = LocalCopies(max_bytes=10, max_entry=4, ttl=60)
    local.put("a", header(), b"1234")             # exactly max_entry: kept
    local.put("b", header(), b"12345")            # over it: not kept
    assert local.get("a", "f1") is not None and local.get("b", "f1") is None
    local.put("c", header(), b"1234")
    local.put("d", header(), b"12")               # 10 bytes in all: exactly max_bytes
    assert all(local.get(k, "f1") is not None for k in "acd")


def test_replacing_a_copy_counts_its_bytes_once_and_evicts_the_oldest(clock):
    local = LocalCopies(max_bytes=10, max_entry=10, ttl=60)
    for _ in range(5):
        local.put("a", header(), b"1234")         # the same key again: 4 bytes, not 20
    local.put("b", header(), b"1234")
    assert local.get("a", "f1") is not None and local.get("b", "f1") is not None
    local.get("a", "f1")                          # a is now the most recently used
    local.put("c", header(), b"1234")             # 12 bytes: the least recent (b) goes
    assert local.get("b", "f1") is None
    assert local.get("a", "f1") is not None and local.get("c", "f1") is not None
