"""A live tail's refresh: what MLflow holds that the tail lacks, asked for as cheaply as
completeness can be proven.

One ``runs/search`` tells each live run's status and its latest entry per metric (MLflow's
"latest" is the greatest step, then timestamp, then value). Then, per run and metric:

* new to the tail: read **whole** (bulk: 100 runs a call);
* latest entry as the tail last saw it: **no call** (validation metrics logged every N
  steps cost nothing most refreshes);
* grown: the **steps from the highest the tail holds** (inclusive: more values may come
  at that step), bulk-interval, 100 runs a call per metric. A run's answer that may have
  been sampled (2,500 points) is read by offset instead;
* logged out of step order before (``odd``), or due for an **audit**: read **by offset**,
  get-history from the tail's last point on in MLflow's own order (timestamp, step,
  value), one call that sees new points at *any* step (a step range cannot see points
  logged below the highest step, nor tell the thousandth value at step 0 from the first).
  It is verified by its first point, which must be the tail's last: else, or when the
  server refuses the token, the metric is read whole.

A whole read is diffed against the tail (MLflow stores a point once, so the difference is
exactly what is new). ``AUDITS`` metric a refresh, not read by offset for ``AUDIT_AGE``
seconds, least recently first, is *audited* (read by offset), so a point logged below a
metric's highest step is found within max(AUDIT_AGE, metrics x LIVE_REFRESH) seconds even
when its latest entry stays the same; a metric found so is ``odd`` from then on.
A run found finished is read whole once more: its tail is then complete.
"""
import secrets
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from app import history
from app.cache.freshness import TERMINAL
from app.cache.tails import MetricTail, TailState
from app.mlflow.api import BULK_MAX_RUNS
from app.mlflow.errors import MlflowError, Rejected
from app.mlflow.histories import fetch_histories
from app.runs import tailbook

AUDITS = 1          # metrics a refresh reads by offset that it would read by range or not at all
AUDIT_AGE = 30.0    # seconds between two audits of a metric
GROUP_SPAN = 1000   # runs whose highest steps differ by more are asked in separate range reads
_no_offsets = set()  # tracking URIs whose MLflow refused an offset token (then: whole reads)


def new_tail() -> TailState:
    return TailState(secrets.token_hex(8))


class Refresh:
    """One refresh of several live runs' tails, for one request's credentials."""

    def __init__(self, ctx, held):
        self.ctx, self.mlflow = ctx, ctx.mlflow
        self.held = held  # held(run_id, state, key) -> Series: the tail's points, for a diff
        self.reads = {"runs": 0, "range": 0, "offset": 0, "whole": 0, "skipped": 0}
        self.exact = set()  # (run_id, key) read by offset or whole: as good as an audit
        # The first read that failed (the deadline, MLflow): what the others read is kept
        # (a slow first read of a big run makes progress poll by poll), then it is raised.
        self.failure = None

    def run(self, runs, states: dict, wanted: dict, started: float) -> dict:
        """{run_id: (TailState, {key: new points})}; ``states`` {run_id: TailState or None},
        ``wanted`` {run_id: [metric key]}; ``started``: when this refresh began."""
        latest = self._latest(runs)
        self.reads["runs"] = len(runs)
        plans = {}
        for run in runs:
            run_id = _id(run)
            state = states.get(run_id) or new_tail()
            status, entries = latest[run_id]
            # A run seen finished for the first time is read whole once more: complete.
            finishing = status in TERMINAL and state.status not in TERMINAL
            keys = set(wanted[run_id]) | (set(state.metrics) if finishing else set())
            plans[run_id] = (state, status, entries, {k: self._action(state, k, entries, finishing)
                                                      for k in sorted(keys)})
        self._audit(plans, started)
        found = self._read(plans)
        out = {}
        for run_id, (state, status, entries, actions) in plans.items():
            grown = {}
            for key, action in actions.items():
                if action and (run_id, key) not in found:
                    continue  # its read failed: as it was, still stale
                tail = state.metrics.setdefault(key, MetricTail())
                new = found.get((run_id, key))
                if new is not None and new.size:
                    tailbook.absorb(tail, new)
                    grown[key] = new
                # Read, or unchanged: the tail holds what MLflow showed at ``started``.
                tail.latest, tail.fresh = tailbook.entry(entries.get(key)), started
                if (run_id, key) in self.exact:
                    tail.audited = started
            if grown:
                state.seq += 1
            state.status = status
            out[run_id] = (state, grown)
        return out

    def _latest(self, runs) -> dict:
        """{run_id: (status, {key: latest entry})} from one run search (MLflow filters it by
        the caller's permission: a run it leaves out is asked for alone, for MLflow's reason)."""
        ids = [_id(run) for run in runs]
        experiments = sorted({run["info"]["experiment_id"] for run in runs})
        clause = "attributes.run_id IN ({})".format(", ".join(f"'{i}'" for i in ids))
        found = {_id(run): run for run in self.mlflow.search_runs(
            experiments, len(ids), "ALL", filter_string=clause)}
        for run_id in ids:
            if run_id not in found:  # 403/404 raised for this caller; nothing is stored
                found[run_id] = self.mlflow.get_run(run_id)
        return {run_id: (run["info"].get("status"),
                         {m["key"]: m for m in run.get("data", {}).get("metrics", [])})
                for run_id, run in found.items()}

    def _action(self, state, key, entries, finishing):
        tail = state.metrics.get(key)
        if tail is None or tail.size == 0 or finishing:
            return "whole"
        if tailbook.entry(entries.get(key)) == tail.latest:
            return None
        return "offset" if tail.odd or tail.at_max is None else "range"

    def _audit(self, plans, started):
        """At most AUDITS metrics not read by offset for AUDIT_AGE seconds, the least
        recently first, are read by offset this time: a step range cannot see a point
        logged below the highest step, whether the latest entry changed or not."""
        due = []
        for run_id, (state, _, _, actions) in plans.items():
            self.reads["skipped"] += sum(action is None for action in actions.values())
            due += [(state.metrics[key].audited, run_id, key) for key, action in actions.items()
                    if action in (None, "range")
                    and state.metrics[key].audited < started - AUDIT_AGE]
        for _, run_id, key in sorted(due)[:AUDITS]:
            self.reads["skipped"] -= plans[run_id][3][key] is None
            plans[run_id][3][key] = "offset"

    def _read(self, plans) -> dict:
        """{(run_id, key): new points} for every planned read."""
        by_kind = {"range": [], "offset": [], "whole": []}
        for run_id, (state, _, _, actions) in plans.items():
            for key, action in actions.items():
                if action:
                    by_kind[action].append((run_id, key))
        found = self._ranges(plans, by_kind["range"], by_kind["offset"])
        if self.ctx.target.uri in _no_offsets:  # this MLflow refused an offset token
            by_kind["whole"] += by_kind["offset"]
            by_kind["offset"] = []
        self.reads["offset"] += len(by_kind["offset"])
        offsets = self._each(lambda pair: self._by_offset(plans[pair[0]][0], *pair),
                             by_kind["offset"])
        for pair, new in offsets.items():
            if new is None:
                by_kind["whole"].append(pair)
            else:
                found[pair] = new
        found.update(self._whole(plans, by_kind["whole"]))
        self.exact = set(by_kind["offset"]) | set(by_kind["whole"])
        return found

    def _each(self, call, items) -> dict:
        """{item: call(item)}, several at a time, for the items whose call succeeded; the
        first failure is kept in ``failure`` (every call ends by the request's deadline)."""
        done = {}
        with ThreadPoolExecutor(max_workers=max(1, self.ctx.concurrency)) as pool:
            futures = {pool.submit(call, item): item for item in items}
            for future, item in futures.items():
                try:
                    done[item] = future.result()
                except MlflowError as exc:
                    self.failure = self.failure or exc
        return done

    def _ranges(self, plans, pairs, fallback) -> dict:
        """Range reads, batched per metric; a run whose answer may be sampled goes to
        ``fallback`` (read by offset)."""
        found, batches, by_key = {}, [], {}
        for run_id, key in pairs:
            by_key.setdefault(key, []).append((plans[run_id][0].metrics[key].max_step, run_id))
        for key, starts in by_key.items():
            batches += [(key, tuple(group)) for group in _groups(sorted(starts))]
        answers = self._each(lambda batch: self.mlflow.get_metric_history_since(
            [run_id for _, run_id in batch[1]], batch[0], batch[1][0][0] - 1), batches)
        self.reads["range"] += len(batches)
        for (key, group), (by_run, complete) in answers.items():
            for start, run_id in group:
                if run_id not in complete:
                    fallback.append((run_id, key))
                    continue
                tail = plans[run_id][0].metrics[key]
                points = by_run[run_id]
                points = history.take(points, points.steps >= start)
                found[(run_id, key)] = history.without(points, tailbook.at_max(tail))
        return found

    def _by_offset(self, state, run_id, key):
        """New points of one metric read by offset, or None: read it whole."""
        tail = state.metrics[key]
        try:
            points = self.mlflow.get_metric_history_from(run_id, key, max(0, tail.size - 1))
        except Rejected as refused:
            if refused.status != 400:
                raise
            _no_offsets.add(self.ctx.target.uri)
            return None
        if tail.size == 0:
            return points
        if not points.size or not tailbook.is_last_read(tail, points):
            return None  # the tail is not MLflow's prefix: something came in below it
        return history.take(points, np.arange(points.size) > 0)

    def _whole(self, plans, pairs) -> dict:
        if not pairs:
            return {}
        self.reads["whole"] += len(pairs)
        by_key = {}
        for run_id, key in pairs:
            by_key.setdefault(key, []).append((run_id, key))
        whole = {}
        for read in self._each(lambda key: fetch_histories(self.mlflow, by_key[key], 1),
                               list(by_key)).values():
            whole.update(read)
        found = {}
        for run_id, key in whole:
            state = plans[run_id][0]
            tail = state.metrics.get(key)
            if tail is None or tail.size == 0:
                found[(run_id, key)] = whole[(run_id, key)]
                continue
            found[(run_id, key)] = history.without(whole[(run_id, key)],
                                                   self.held(run_id, state, key))
        return found


def _groups(starts):
    """[(start, run_id)] sorted, cut into batches of at most 100 runs whose starts lie
    within GROUP_SPAN of the batch's first (its range read starts there)."""
    group = []
    for start, run_id in starts:
        if group and (start - group[0][0] > GROUP_SPAN or len(group) == BULK_MAX_RUNS):
            yield group
            group = []
        group.append((start, run_id))
    if group:
        yield group


def _id(run):
    return run["info"]["run_id"]
