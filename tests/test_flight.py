"""Single flight (app/cache/flight.py), fast: an in-memory store, threads, no servers."""
import threading
import time

from cachelib import SimpleCache

from app.cache import flight
from app.cache.flight import SingleFlight, one_asks
from app.cache.store import Store
from app.mlflow.transport import Deadline


def store():
    return Store(SimpleCache(), "SimpleCache")


class Shelf:
    """Values other requests stored, and the MLflow asks made, per item."""

    def __init__(self, cache, slow=0.0):
        self.cache, self.slow = cache, slow
        self.values, self.asked = {}, []
        self.lock = threading.Lock()

    def cached(self, items):
        return {item: self.values[item] for item in items if item in self.values}

    def fetch(self, items):
        with self.lock:
            self.asked += items
        time.sleep(self.slow)
        self.values.update({item: f"value of {item}" for item in items})
        return {item: f"value of {item}" for item in items}

    def flight(self, *, refresh=False, never_cached=(), seconds=5.0):
        return SingleFlight(self.cache, Deadline(seconds), refresh=refresh, ident=lambda i: i,
                            lock_key=lambda i: None if i in never_cached else f"lock:{i}",
                            cached=self.cached, fetch=self.fetch)


def test_many_requests_for_one_missing_value_ask_mlflow_once():
    shelf = Shelf(store(), slow=0.3)
    results = []

    def one_request():
        results.append(shelf.flight().get(["run-1"]))

    threads = [threading.Thread(target=one_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert shelf.asked == ["run-1"]
    assert all(found.ready == {"run-1": "value of run-1"} for found in results)
    assert sum(found.waited for found in results) == 7  # the others waited for its answer


def test_a_cached_value_is_a_hit_and_mlflow_is_not_asked():
    shelf = Shelf(store())
    shelf.values["run-1"] = "cached"
    found = shelf.flight().get(["run-1", "run-2"])
    assert found.ready == {"run-1": "cached", "run-2": "value of run-2"}
    assert (found.first, found.late, found.hits) == (1, 0, 1)
    assert shelf.asked == ["run-2"]


def test_refresh_asks_mlflow_even_for_a_cached_value():
    shelf = Shelf(store())
    shelf.values["run-1"] = "cached"
    found = shelf.flight(refresh=True).get(["run-1"])
    assert found.ready == {"run-1": "value of run-1"} and found.hits == 0
    assert shelf.asked == ["run-1"]


def test_items_that_are_never_cached_are_always_asked_for():
    shelf = Shelf(store())
    shelf.values["live"] = "stale"
    found = shelf.flight(never_cached={"live"}).get(["live"])
    assert found.ready == {"live": "value of live"} and shelf.asked == ["live"]


def test_a_stuck_lock_holder_costs_a_waiter_half_its_deadline_not_a_timeout(monkeypatch):
    cache = store()
    assert cache.lock("lock:run-1", 60) is not None  # held by a request that never ends
    shelf = Shelf(cache)
    started = time.monotonic()
    found = shelf.flight(seconds=1.0).get(["run-1"])
    waited = time.monotonic() - started
    assert found.ready == {"run-1": "value of run-1"} and found.waited == 0
    assert shelf.asked == ["run-1"]  # it asked MLflow itself
    assert flight.WAIT_SHARE * 1.0 - 0.1 <= waited < 1.0  # gave up at half, not at the end


def test_one_asks_reports_whether_the_answer_came_from_the_cache():
    cache, asked = store(), []
    stored = {}

    def ask():
        asked.append(1)
        stored["v"] = "fresh"
        return "fresh"

    first = one_asks(cache, Deadline(5), "k", lambda: stored.get("v"), ask, kind="listing")
    second = one_asks(cache, Deadline(5), "k", lambda: stored.get("v"), ask, kind="listing")
    assert first == ("fresh", False) and second == ("fresh", True) and len(asked) == 1


def test_a_failed_ask_unlocks_so_the_next_request_asks_for_itself():
    shelf = Shelf(store())

    def failing(items):
        raise RuntimeError("MLflow said no")

    broken = SingleFlight(shelf.cache, Deadline(5), ident=lambda i: i,
                          lock_key=lambda i: f"lock:{i}", cached=shelf.cached, fetch=failing)
    try:
        broken.get(["run-1"])
    except RuntimeError:
        pass
    assert not shelf.cache.is_locked("lock:run-1")
    started = time.monotonic()
    assert shelf.flight().get(["run-1"]).ready == {"run-1": "value of run-1"}
    assert time.monotonic() - started < 1  # no wait for a lock nobody holds
