"""Single flight: when many requests want the same value that the cache lacks, one of
them asks MLflow (under a lock in the cache) and the others wait for its answer there.

One implementation for every kind of value: finished runs' JSON, their metric
columns, query listings and grants. A lock's holder that is stuck or gone never becomes
a waiter's 504: a waiter waits at most ``WAIT_SHARE`` of what is left of its deadline,
then asks MLflow itself. A failed ask leaves the others to ask for themselves (and get
the same error).
"""
import time
from dataclasses import dataclass, field

from app import observability

WAIT_STEP = 0.05  # seconds between looks while another request asks MLflow
WAIT_SHARE = 0.5  # of what is left of its http_timeout, a request waits for another's ask


def wait_while_locked(cache, deadline, lock, look):
    """What the request holding ``lock`` stored (``look()`` not None), once it has; None
    if it let go without storing anything (its ask failed) or is taking longer than this
    request can wait. The caller then asks MLflow itself."""
    give_up = time.monotonic() + deadline.remaining() * WAIT_SHARE
    while True:
        found = look()
        if found is not None:
            return found
        if not cache.is_locked(lock):
            return look()  # stored between our look and the unlock
        if time.monotonic() >= give_up:
            return None
        time.sleep(WAIT_STEP)


@dataclass
class Flight:
    """What ``SingleFlight.get`` found: every item's value, and where they came from."""

    ready: dict = field(default_factory=dict)  # {item id: value}
    first: int = 0   # found in the cache at the first look
    late: int = 0    # stored by another request between that look and our lock
    waited: int = 0  # stored by the request we waited for

    @property
    def hits(self) -> int:
        """Values that came from the cache without waiting for another request."""
        return self.first + self.late


class SingleFlight:
    """Values for ``items`` from the cache, else from MLflow, one asker per key.

    ``ident(item)`` names an item; ``lock_key(item)`` is the key to lock while asking,
    or None for an item that is never cached (a live run: always asked for);
    ``cached(items)`` -> {id: value} of those the cache has and that are current;
    ``fetch(items)`` -> {id: value} from MLflow (storing what may be cached).
    """

    def __init__(self, cache, deadline, *, ident, lock_key, cached, fetch, refresh=False,
                 kind="run"):
        self.cache, self.deadline, self.refresh, self.kind = cache, deadline, refresh, kind
        self.ident, self.lock_key, self.cached, self.fetch = ident, lock_key, cached, fetch

    def get(self, items) -> Flight:
        ident = self.ident
        locks = {ident(item): key for item in items if (key := self.lock_key(item)) is not None}
        flight = Flight()
        if not self.refresh:
            flight.ready = self.cached([item for item in items if ident(item) in locks])
            flight.first = len(flight.ready)
            if self.kind == "run":  # one_asks counts its own kinds, once per call
                observability.cache_lookups("run", hits=flight.first,
                                            misses=len(locks) - flight.first)
        missing = [item for item in items if ident(item) not in flight.ready]
        held = {ident(item): self.cache.lock(locks[ident(item)], self.deadline.remaining())
                for item in missing if ident(item) in locks}
        mine = [item for item in missing if held.get(ident(item), True) is not None]
        try:
            if not self.refresh:  # another request may have stored it since we looked
                late = self.cached([item for item in mine if ident(item) in locks])
                flight.ready.update(late)
                flight.late = len(late)
            flight.ready.update(self.fetch([item for item in mine
                                            if ident(item) not in flight.ready]))
        finally:
            for lock in held.values():
                self.cache.unlock(lock)
        for item in missing:  # the ones another request is fetching right now
            if held.get(ident(item), True) is None:
                found = self._wait_for(item, locks[ident(item)])
                flight.waited += found is not None
                flight.ready[ident(item)] = (found if found is not None
                                             else self.fetch([item])[ident(item)])
        return flight

    def _wait_for(self, item, lock):
        def look():
            return self.cached([item]).get(self.ident(item))
        if self.kind != "run":
            return wait_while_locked(self.cache, self.deadline, lock, look)
        return observability.single_flight_wait(wait_while_locked)(
            self.cache, self.deadline, lock, look)


def one_asks(cache, deadline, key, look, ask, *, kind):
    """(``look()``, True) if the cache has it, else (``ask()``, False), with one request
    at a time asking for ``key``. Counted once per call as a ``kind`` cache lookup: a
    hit if the answer came from the cache, however long it waited."""
    flight = SingleFlight(
        cache, deadline, kind=kind, ident=lambda item: item, lock_key=lambda item: item,
        cached=lambda items: {item: found for item in items if (found := look()) is not None},
        fetch=lambda items: {item: ask() for item in items}).get([key])
    cached = bool(flight.hits or flight.waited)
    observability.cache_lookups(kind, hits=int(cached), misses=int(not cached))
    return flight.ready[key], cached
