"""Query listings and grants in the cache: who asked what, and whom MLflow said yes to.

* ``list:<MAC of caller and selection>`` - which runs a query selected (RUN_LIST_TTL);
  per caller, since MLflow filters searches by permission; or, for a query scoped to one
  experiment or run, ``list:shared:<MAC of uri, TLS choice and selection>``, shared by
  every caller (served only after the caller's grant: app/runs/listing.py).
* ``exp:<MAC of uri, TLS choice, name or id>`` - an experiment MLflow resolved, so a
  shared listing's refresh is one run search (AUTH_CACHE_TTL; used only by a caller
  holding a grant for it).
* ``grant:<MAC of uri, username, password, TLS verification, experiment>`` - MLflow
  accepted these credentials for this experiment (AUTH_CACHE_TTL); its value is the
  caller's epoch it was recorded under.
* ``epoch:<MAC of uri, username, password>`` - the caller's *epoch*, a random token: a
  grant holds only while its value is the current epoch (read in the same MGET as the
  grant). A refusal of MLflow's deletes the epoch, so every grant of the caller, for
  every experiment and TLS choice, goes at once, and no later epoch is ever the same.
"""
import secrets
from dataclasses import dataclass

import orjson

from app.cache import keys

# An epoch lives this many AUTH_CACHE_TTLs (a grant lives one): when it expires, the
# caller's grants are asked of MLflow again, once.
EPOCH_LIFETIMES = 10


@dataclass(frozen=True)
class GrantCheck:
    """A grant as read from the cache, with the caller's epoch it was read with."""

    held: bool          # MLflow accepted these credentials for the experiment recently
    epoch: str | None   # the caller's current epoch (None: there is none, or no cache)


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

    def forget_experiment(self, target, experiment):
        """An experiment as resolved before MLflow's answer contradicted it (renamed,
        replaced under its name, gone, refused): under its name and its id."""
        if self.auth_ttl > 0 and experiment:
            self.store.delete_many([self.experiment_key(target, "id", experiment["experiment_id"]),
                                    self.experiment_key(target, "name", experiment["name"])])

    def epoch_key(self, target) -> str:
        return "epoch:" + self.seal.mac("epoch", *keys.account(target))

    def check_grant(self, target, experiment_id) -> GrantCheck:
        """The grant and the caller's epoch, in one read."""
        if self.auth_ttl <= 0:
            return GrantCheck(False, None)
        granted, epoch = self.store.get_many([self.grant_key(target, experiment_id),
                                              self.epoch_key(target)])
        epoch = epoch if isinstance(epoch, str) else None
        return GrantCheck(epoch is not None and granted == epoch, epoch)

    def has_grant(self, target, experiment_id) -> bool:
        return self.check_grant(target, experiment_id).held

    def epoch(self, target, check: GrantCheck = None) -> str | None:
        """The epoch to record the grants of an ask under, taken *before* MLflow is
        asked: a refusal seen meanwhile deletes it, and so drops what this ask records
        (MLflow's yes may predate the revocation). As ``check`` read it, else read; made
        if there is none."""
        if self.auth_ttl <= 0:
            return None
        key = self.epoch_key(target)
        current = check.epoch if check else self.store.get_many([key])[0]
        if isinstance(current, str):
            return current
        made = secrets.token_hex(16)
        return made if self.store.set_many({key: made}, self.auth_ttl * EPOCH_LIFETIMES) else None

    def record_grant(self, target, experiment_id, epoch: str | None):
        """MLflow accepted these credentials for this experiment, asked under ``epoch``."""
        if self.auth_ttl > 0 and epoch:
            self.store.set_many({self.grant_key(target, experiment_id): epoch}, self.auth_ttl)

    def drop_grants(self, target):
        """MLflow refused these credentials: every grant they hold goes, at once."""
        if self.auth_ttl > 0:
            self.store.delete_many([self.epoch_key(target)])

    def get_listing(self, key):
        if self.list_ttl <= 0:
            return None
        entry = self.seal.open(key, self.store.get_many([key])[0])
        return orjson.loads(entry[1]) if entry else None

    def set_listing(self, key, listing):
        if self.list_ttl > 0:
            self.store.set_many({key: self.seal.close(key, {}, orjson.dumps(listing))}, self.list_ttl)

