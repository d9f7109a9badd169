"""Query listings and grants in the cache: who asked what, and whom MLflow said yes to.

* ``list:<MAC of caller and selection>`` - which runs a query selected (RUN_LIST_TTL);
  per caller, since MLflow filters searches by permission.
* ``grant:<MAC of uri, username, password, TLS verification, experiment>`` - MLflow
  accepted these credentials for this experiment (AUTH_CACHE_TTL).
"""
import orjson

from app.cache import keys


class Listings:
    """The listing and grant operations of ``RunCache`` (which provides ``seal``,
    ``store``, ``list_ttl`` and ``auth_ttl``)."""

    def grant_key(self, target, experiment_id) -> str:
        return "grant:" + self.seal.mac(*keys.caller(target), experiment_id)

    def list_key(self, target, selection) -> str:
        """Per caller, and made of *every* field of the typed selection
        (app/runs/query.py): two different queries never share a listing."""
        return "list:" + self.seal.mac(*keys.caller(target), *selection.key_parts())

    def has_grant(self, target, experiment_id) -> bool:
        if self.auth_ttl <= 0:
            return False
        return self.store.get_many([self.grant_key(target, experiment_id)]) == [1]

    def record_grant(self, target, experiment_id):
        if self.auth_ttl > 0:
            self.store.set_many({self.grant_key(target, experiment_id): 1}, self.auth_ttl)

    def get_listing(self, key):
        if self.list_ttl <= 0:
            return None
        entry = self.seal.open(key, self.store.get_many([key])[0])
        return orjson.loads(entry[1]) if entry else None

    def set_listing(self, key, listing):
        if self.list_ttl > 0:
            self.store.set_many({key: self.seal.close(key, {}, orjson.dumps(listing))}, self.list_ttl)

