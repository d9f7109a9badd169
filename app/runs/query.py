"""A /mlflow/runs request, typed: made by the schema (app/api/schemas.py), read everywhere
after it. Frozen, so no layer can rewrite what the caller asked for on its way.

* ``Selection`` - which runs: everything that decides the *listing*. The listing's
  cache key is made from every field of it (app/cache/run_cache.py), so a field added
  here can never let two different queries share one cached listing.
* ``View`` (app/runs/views.py) - what of each run's histories is shown.
* ``RunsQuery`` - both, and how the answer is made (histories or not, refresh, CSV).
"""
from dataclasses import dataclass, field, fields, replace

from app.access.connection import Connection
from app.runs.views import View

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class Selection:
    experiment_name: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None
    run_ids: tuple | None = None       # answered in this order (or order_by's)
    limit: int = 10
    include_deleted: bool = False
    filter_string: str | None = None
    order_by: tuple | None = None
    run_status: tuple | None = None
    # Not which runs, but what the listing keeps of them: their tags only when asked
    # (so a listing with tags never serves a query without, nor the reverse).
    include_tags: bool = False

    @classmethod
    def of(cls, data: dict, sent: set) -> "Selection":
        """From the schema's fields; ``sent`` names the fields the caller wrote."""
        values = {f.name: data.get(f.name, f.default) for f in fields(cls)}
        for name in ("run_ids", "order_by", "run_status"):
            values[name] = tuple(values[name]) if values[name] else None
        # The default limit (10) must not cut a list of runs the caller wrote out;
        # a limit sent with run_ids applies.
        if values["run_ids"] and "limit" not in sent:
            values["limit"] = len(values["run_ids"])
        return cls(**values)

    @property
    def shared(self) -> bool:
        """Scoped to one experiment or run: which runs it selects is the same for everyone
        MLflow lets read that experiment, so its cached listing is shared by them (each
        caller's grant is still checked: app/runs/listing.py). Queries across every
        experiment (MLflow answers each caller with what they may read) and run_ids
        queries (each run checked for each caller) stay per caller."""
        scoped = (self.experiment_name, self.experiment_id, self.run_id)
        return any(value is not None for value in scoped) and not self.run_ids

    def but(self, **changes) -> "Selection":
        """This selection with some fields changed (a search of our own, narrower)."""
        return replace(self, **changes)

    def key_parts(self) -> list:
        """Every field, in order, as JSON-able values: what the listing's key is made of."""
        return [list(value) if isinstance(value, tuple) else value
                for value in (getattr(self, f.name) for f in fields(self))]


@dataclass(frozen=True)
class RunsQuery:
    selection: Selection
    view: View = field(default_factory=View)
    include_metric_history: bool = True
    refresh: bool = False
    format: str | None = None  # json, csv, or None: the Accept header decides

    # How the answer is made, not what it says: a refresh asks MLflow again, and the
    # refreshed runs are a new generation, which the ETag holds already (app/runs/etag.py).
    NOT_IN_ANSWER = frozenset({"refresh"})

    @classmethod
    def of(cls, data: dict, sent: set) -> "RunsQuery":
        return cls(Selection.of(data, sent), View.of(data),
                   include_metric_history=data["include_metric_history"],
                   refresh=data["refresh"], format=data["format"])

    def answer_parts(self) -> list:
        """Every field that can change the answer's bytes, as JSON-able values (the
        selection's and the view's whole), in order: the query's share of the ETag.
        Made from the fields themselves, so a field added later is in it."""
        return [value.key_parts() if isinstance(value, (Selection, View)) else value
                for value in (getattr(self, f.name) for f in fields(self)
                              if f.name not in self.NOT_IN_ANSWER)]


@dataclass(frozen=True)
class RunsRequest:
    """A whole /mlflow/runs request: how to connect, and what to answer."""

    connection: Connection
    query: RunsQuery
