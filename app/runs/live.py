"""Live runs' histories from their shared tails (app/cache/tails.py): a poll of a RUNNING
run is answered from the tail while it is at most LIVE_REFRESH seconds old, and one
request, across every worker and host, refreshes it when it is older (app/runs/increments.py).

Who may read a tail is decided before it is read: the listing the runs came from was
checked against the caller's grants (app/runs/listing.py), and a refresh asks MLflow with
the caller's own credentials, so a refused caller raises MLflow's refusal and writes
nothing. Without a cache to share (it failed), or with LIVE_REFRESH 0, ``read`` answers
None and the caller asks MLflow for this request alone, as before tails existed.
"""
import time
from dataclasses import dataclass

from app import observability
from app.cache.tails import TailLost
from app.runs.increments import Refresh

WAIT_STEP = 0.05
LIVE_WAIT = 2.0     # seconds a poll waits for a refresh in flight before taking the tail as it is
ROUNDS = 3          # attempts to get a tail when its builders keep giving up


@dataclass
class LiveRead:
    """What a request gets of its live runs: each wanted metric's points (after the
    cursor's sequence number where ``since`` names one), as of each run's ``states``."""

    series: dict   # {(run_id, key): Series}
    states: dict   # {run_id: TailState}
    since: dict    # {run_id: sequence number the series start after, or None: whole}


class LiveHistories:
    """One request's live runs. ``states`` first (what an answer's ETag is made of: a
    conditional poll is decided before any point is read), then ``read``."""

    def __init__(self, ctx):
        self.ctx, self.cache, self.uri = ctx, ctx.cache, ctx.target.uri
        self.every = ctx.live_refresh
        self._states = None  # (the run ids asked, {run_id: TailState} or None)

    def states(self, runs, keys_of) -> dict | None:
        """{run_id: TailState}: the live ``runs``' tails, fresh (refreshed here if need
        be) for their wanted metrics (``keys_of(run)``); None when there are no tails to
        share (LIVE_REFRESH 0, or the cache failed): ask MLflow for this request."""
        ids = tuple(_id(run) for run in runs)
        if self._states is None or self._states[0] != ids:
            fresh = None
            if self.every > 0 and runs:
                fresh = self._fresh_states(runs, {_id(run): list(keys_of(run)) for run in runs})
            self._states = (ids, fresh)
        return self._states[1]

    def read(self, runs, keys_of, after=None) -> LiveRead | None:
        """The wanted metrics (``keys_of(run)``) of live ``runs``; ``after(run_id, state)``
        gives the sequence number a cursor holds for a run's tail, or None."""
        if not runs:
            return None
        states = self.states(runs, keys_of)
        wanted = {_id(run): list(keys_of(run)) for run in runs}
        found = states and self._points(runs, dict(states), wanted, after)
        if not found:
            if self.every > 0:
                observability.live_tail("fallback", len(runs))
            return None
        return LiveRead(*found)

    # --- fresh tails, one refresh for everybody --------------------------------------

    def _fresh_states(self, runs, wanted):
        states = self.cache.get_tails(self.uri, [_id(run) for run in runs])
        if states is None:
            return None
        if self.ctx.refresh:  # "refresh": true rebuilds the tails, under new epochs
            states = dict.fromkeys(states)
        stale = [run for run in runs if not self._fresh(states[_id(run)], wanted[_id(run)])]
        observability.live_tail("hit", len(runs) - len(stale))
        for _ in range(ROUNDS):
            if not stale:
                return states
            stale = self._refresh_or_wait(stale, states, wanted)
            if stale is None:
                return None
        return None if stale else states

    def _refresh_or_wait(self, stale, states, wanted):
        """Refresh the stale runs whose lock this request takes; wait for the others.
        The runs still without a tail of their wanted metrics (their refresher gave up, or
        read other metrics), or None: no cache."""
        remaining = self.ctx.deadline.remaining()
        locks = {_id(run): self.cache.lock(self._lock(run), remaining) for run in stale}
        mine = [run for run in stale if locks[_id(run)] is not None]
        try:
            if mine and self._refresh_mine(mine, states, wanted) is None:
                return None
        finally:
            for held in locks.values():
                self.cache.unlock(held)
        left = []
        for run in stale:
            if locks[_id(run)] is None:
                keys = wanted[_id(run)]
                states[_id(run)] = state = self._wait(run, states.get(_id(run)), keys)
                # Another request's refresh reads its own metrics: a metric this request
                # wants and the tail does not hold yet (charts loading a metric each, at
                # once) is still to be read, by this request in the next round.
                if state is None or any(key not in state.metrics for key in keys):
                    left.append(run)
        return left

    def _refresh_mine(self, runs, states, wanted):
        if not self.ctx.refresh:  # another request may have refreshed them since we looked
            again = self.cache.get_tails(self.uri, [_id(run) for run in runs])
            if again is None:
                return None
            states.update(again)
            runs = [run for run in runs if not self._fresh(states[_id(run)], wanted[_id(run)])]
        if not runs:
            return states
        refreshed = self._refresh(runs, {_id(run): states.get(_id(run)) for run in runs}, wanted)
        if refreshed is not None:
            states.update(refreshed)
        return refreshed

    def _refresh(self, runs, states, wanted):
        """Refresh ``runs``' tails and store them: {run_id: TailState}, or None when the
        cache would not take them."""
        started = time.time()
        refresh = Refresh(self.ctx, held=self._held)
        try:
            done = self._store(refresh, refresh.run(runs, states, wanted, started))
        except TailLost:  # a chunk the refresh needed is gone (expired, evicted): rebuild
            refresh = Refresh(self.ctx, held=self._held)
            done = self._store(refresh, refresh.run(runs, dict.fromkeys(states), wanted, started))
        if refresh.failure is not None:  # what was read is stored: the next poll goes on
            raise refresh.failure
        return done

    def _store(self, refresh, done):
        observability.live_refresh(refresh.reads, sum(
            points.size for _, grown in done.values() for points in grown.values()))
        for run_id, (state, grown) in done.items():
            if not self.cache.put_tail(self.uri, run_id, state, grown):
                return None
        return {run_id: state for run_id, (state, _) in done.items()}

    def _wait(self, run, state, keys):
        """The tail once the refresh in flight stored it; the tail as it is after LIVE_WAIT
        (a poll is answered from the previous tail rather than queueing); None when there
        is none and its builder let go (the caller tries to build it)."""
        wait = min(LIVE_WAIT, self.ctx.deadline.remaining() / 2) if state else \
            self.ctx.deadline.remaining() / 2
        give_up = time.monotonic() + wait
        while True:
            time.sleep(WAIT_STEP)
            found = self.cache.get_tails(self.uri, [_id(run)])
            state = (found or {}).get(_id(run)) or state
            if self._fresh(state, keys) or not self.cache.is_locked(self._lock(run)):
                return state
            if time.monotonic() >= give_up:
                observability.live_tail("stale" if state else "timeout", 1)
                return state

    def _fresh(self, state, keys) -> bool:
        """Every wanted metric read by a refresh that started at most LIVE_REFRESH ago."""
        if state is None:
            return False
        horizon = time.time() - self.every
        return all(key in state.metrics and state.metrics[key].fresh > horizon for key in keys)

    def _lock(self, run):
        return self.cache.tail_key(self.uri, _id(run))

    # --- reading ------------------------------------------------------------------------

    def _points(self, runs, states, wanted, after):
        """(series, states, since) of the runs' wanted metrics, in one read of the cache; a
        tail with a chunk gone (expired, evicted) is rebuilt once; None if that fails."""
        for attempt in range(2):
            since = {_id(run): after(_id(run), states[_id(run)]) if after else None
                     for run in runs}
            asked = [(_id(run), states[_id(run)], key, since[_id(run)])
                     for run in runs for key in wanted[_id(run)]]
            found = self.cache.read_points(self.uri, asked)
            broken = [run for run in runs if any((_id(run), key) not in found
                                                 for key in wanted[_id(run)])]
            if not broken:
                return found, states, since
            rebuilt = None if attempt else self._refresh(
                broken, dict.fromkeys(map(_id, broken)), wanted)
            if rebuilt is None:
                return None
            states.update(rebuilt)
        return None

    def _held(self, run_id, state, key):
        found = self.cache.read_points(self.uri, [(run_id, state, key, None)])
        if (run_id, key) not in found:
            raise TailLost(f"a chunk of {key!r} is gone")
        return found[(run_id, key)]


def _id(run):
    return run["info"]["run_id"]
