"""Query listings and grants in the cache: who asked what, and whom MLflow said yes to.

* ``list:<MAC of caller and selection>`` - which runs a query selected (RUN_LIST_TTL);
  per caller, since MLflow filters searches by permission; or, for a query scoped to one
  experiment or run, ``list:shared:<MAC of uri, TLS choice and selection>``, shared by
  every caller (served only after the caller's grant: app/runs/listing.py).
* ``exp:<MAC of uri, TLS choice, name or id>`` - an experiment MLflow resolved, so a
  shared listing's refresh is one run search (AUTH_CACHE_TTL; used only by a caller
  holding a grant for it).
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
        """Made of *every* field of the typed selection (app/runs/query.py): two
        different queries never share a listing. Per caller, except for a selection
        scoped to one experiment or run (``Selection.shared``): then per MLflow server
        and TLS choice only, never with credentials."""
        if selection.shared:
            return "list:shared:" + self.seal.mac("shared", *keys.server(target),
                                                  *selection.key_parts())
        return "list:" + self.seal.mac(*keys.caller(target), *selection.key_parts())

    def experiment_key(self, target, by: str, value: str) -> str:
        return "exp:" + self.seal.mac("experiment", *keys.server(target), by, value)

    def get_experiment(self, target, by, value):
        """An experiment MLflow resolved by ``by`` (name or id) within AUTH_CACHE_TTL."""
        if self.auth_ttl <= 0:
            return None
        key = self.experiment_key(target, by, value)
        entry = self.seal.open(key, self.store.get_many([key])[0])
        return orjson.loads(entry[1]) if entry else None

    def set_experiment(self, target, experiment):
        """What MLflow just answered for this experiment, under its id and its name."""
        if self.auth_ttl <= 0:
            return
        kept = {k: experiment.get(k) for k in ("experiment_id", "name", "lifecycle_stage")}
        payload = orjson.dumps(kept)
        self.store.set_many({key: self.seal.close(key, {}, payload) for key in (
            self.experiment_key(target, "id", kept["experiment_id"]),
            self.experiment_key(target, "name", kept["name"]))}, self.auth_ttl)

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

