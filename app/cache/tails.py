"""Live runs' histories as they grow: the *tail* of a RUNNING run, one for every viewer.

Per tracking URI and run, sealed like every entry (app/cache/entries.py):

* ``tail:<uri digest>:<run id>`` - the tail's state (``TailState``): its *epoch* (a random
  token, new whenever the tail is rebuilt: the live run's generation), its sequence number
  (one more per refresh that found points), the run's status, and per metric what a
  refresh needs to ask MLflow only for what is new (``MetricTail``).
* ``tail:<uri digest>:<run id>:<epoch>:<metric digest>:<n>`` - a chunk: points of one metric
  (steps, timestamps, values, and the sequence number each arrived with), never changed
  once written. A refresh appends one chunk per metric that grew; chunks of one size class
  are merged ``FAN_IN`` at a time (a log-structured merge), so a metric keeps O(log points)
  chunks and each point is rewritten O(log points) times, never the whole history per poll.

The state is written after its chunks, and chunks are never deleted (they expire), so a
state a reader holds never names a chunk that is gone unless it expired or was evicted: a
missing chunk makes the tail unreadable and it is rebuilt under a new epoch.
"""
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import orjson

from app import history
from app.cache import keys

FAN_IN = 8            # chunks of one size class merged at a time
TAIL_TTL = 3600       # seconds; renewed by refreshes, so a tail lives while it is watched


@dataclass
class Chunk:
    id: int
    size: int        # points
    low: int         # lowest sequence number of its points
    high: int        # highest
    written: float   # when it was written or its TTL renewed (wall time)

    @property
    def size_class(self) -> int:
        return int(math.log(max(1, self.size), FAN_IN))


@dataclass
class MetricTail:
    """One metric of a live run as the tail holds it, and what the next refresh compares."""

    chunks: list = field(default_factory=list)  # [Chunk], oldest first
    next_id: int = 0
    size: int = 0                # points held
    max_step: int = None         # the highest step held
    at_max: list = None          # [[timestamp, value]] of the points at max_step; None: too many
    last_read: list = None       # [timestamp, step, value]: the last point in get-history's order
    latest: list = None          # [step, timestamp, value]: MLflow's latest entry when last read
    odd: bool = False            # seen logged out of step order: read by offset (increments.py)
    fresh: float = 0.0           # when the refresh that last read it started (wall time)
    audited: float = 0.0         # when it was last read by offset
    tally: dict = None           # history.tally of every point held

    @classmethod
    def of(cls, data: dict) -> "MetricTail":
        return cls(**dict(data, chunks=[Chunk(*c) for c in data["chunks"]]))


@dataclass
class TailState:
    epoch: str
    seq: int = 0
    status: str = None
    metrics: dict = field(default_factory=dict)  # {metric key: MetricTail}

    @classmethod
    def of(cls, data: dict) -> "TailState":
        return cls(data["epoch"], data["seq"], data["status"],
                   {key: MetricTail.of(m) for key, m in data["metrics"].items()})

    def to_json(self) -> bytes:
        return orjson.dumps({"epoch": self.epoch, "seq": self.seq, "status": self.status,
                             "metrics": {key: dict(asdict(m), chunks=[list(asdict(c).values())
                                                                      for c in m.chunks])
                                         for key, m in self.metrics.items()}})


def chunk_bytes(series: history.Series, seqs: np.ndarray) -> bytes:
    return history.to_bytes(series) + np.ascontiguousarray(seqs, dtype="<i8").tobytes()


def chunk_points(buffer):
    """``chunk_bytes`` read back: (Series, sequence numbers), views of ``buffer``."""
    size = len(buffer) // 32
    if len(buffer) != size * 32:
        raise ValueError(f"{len(buffer)} bytes are not whole points")
    return (history.from_bytes(buffer[:size * 24]),
            np.frombuffer(buffer, dtype="<i8", count=size, offset=size * 24))


class Tails:
    """The tail operations of ``RunCache`` (which provides ``seal`` and ``store``)."""

    def tail_key(self, uri, run_id) -> str:
        return "tail:" + keys.run_key(uri, run_id)[len("run:"):]

    def chunk_key(self, uri, run_id, epoch, metric, chunk_id) -> str:
        digest = keys.series_key(uri, run_id, metric).rsplit(":", 1)[1]
        return f"{self.tail_key(uri, run_id)}:{epoch}:{digest}:{chunk_id}"

    def get_tails(self, uri, run_ids) -> dict | None:
        """{run_id: TailState or None}; None when the cache cannot say (it failed)."""
        names = [self.tail_key(uri, run_id) for run_id in run_ids]
        found = self.store.get_many(names, default=None)
        if found is None:
            return None
        tails = {}
        for run_id, name, value in zip(run_ids, names, found):
            entry = self.seal.open(name, value)
            try:
                tails[run_id] = TailState.of(orjson.loads(entry[1])) if entry else None
            except (KeyError, TypeError, ValueError):  # sealed by us, of another format
                tails[run_id] = None
        return tails

    def read_points(self, uri, wanted) -> dict:
        """{(run_id, metric): Series} for ``wanted`` [(run_id, TailState, metric, after)]:
        a metric's points, only those that arrived after sequence number ``after`` unless it
        is None; in one read. A metric with a chunk gone (its tail must be rebuilt), or that
        the state does not hold, is left out."""
        plan = []
        for run_id, state, metric, after in wanted:
            held = state.metrics.get(metric)
            chunks = [] if held is None else [c for c in held.chunks
                                              if after is None or c.high > after]
            plan.append(([self.chunk_key(uri, run_id, state.epoch, metric, c.id)
                          for c in chunks], after))
        names = [name for chunk_names, _ in plan for name in chunk_names]
        values = iter(self.store.get_many(names) if names else [])
        found = {}
        for (run_id, _, metric, _), (chunk_names, after) in zip(wanted, plan):
            parts = [self._opened(name, next(values)) for name in chunk_names]
            if metric in state.metrics and all(part is not None for part in parts):
                found[(run_id, metric)] = _joined(parts, after)[0]
        return found

    def _opened(self, name, value):
        entry = self.seal.open(name, value)
        try:
            return chunk_points(entry[1]) if entry else None
        except ValueError:  # sealed by us, yet not whole points
            return None

    def put_tail(self, uri, run_id, state: TailState, grown: dict) -> bool:
        """Store ``state`` with the new points of each metric in ``grown`` ({metric: Series},
        all of sequence number ``state.seq``) appended as chunks, merging and renewing
        chunks as needed. False if the cache failed (the tail is then as it was)."""
        now, writes = time.time(), {}
        for metric, points in grown.items():
            tail = state.metrics[metric]
            seqs = np.full(points.size, state.seq, dtype=np.int64)
            self._append(uri, run_id, state, metric, tail, points, seqs, now, writes)
        renew = self._renewals(uri, run_id, state, now)
        if writes and not self.store.set_many(writes, TAIL_TTL):
            return False
        if renew:
            self.store.touch_many(renew, TAIL_TTL)
        name = self.tail_key(uri, run_id)
        return self.store.set_many({name: self.seal.close(name, {}, state.to_json())}, TAIL_TTL)

    def _append(self, uri, run_id, state, metric, tail, points, seqs, now, writes):
        tail.chunks.append(Chunk(tail.next_id, points.size, int(seqs.min()), int(seqs.max()), now))
        tail.next_id += 1
        pending = {tail.chunks[-1].id: (points, seqs)}
        while len(tail.chunks) >= FAN_IN and len(
                {c.size_class for c in tail.chunks[-FAN_IN:]}) == 1:
            merged = tail.chunks[-FAN_IN:]
            points, seqs = _joined(self._chunks(uri, run_id, state, metric, merged, pending))
            del tail.chunks[-FAN_IN:]
            tail.chunks.append(Chunk(tail.next_id, points.size, int(seqs.min()),
                                     int(seqs.max()), now))
            pending[tail.next_id] = (points, seqs)
            tail.next_id += 1
        for chunk in tail.chunks:
            if chunk.id in pending:
                name = self.chunk_key(uri, run_id, state.epoch, metric, chunk.id)
                writes[name] = self.seal.close(name, {}, chunk_bytes(*pending[chunk.id]))

    def _chunks(self, uri, run_id, state, metric, chunks, pending):
        """The points of ``chunks``: from ``pending`` (written by this refresh) or the cache."""
        stored = [c for c in chunks if c.id not in pending]
        names = [self.chunk_key(uri, run_id, state.epoch, metric, c.id) for c in stored]
        found = dict(zip((c.id for c in stored), self.store.get_many(names))) if names else {}
        parts = []
        for chunk in chunks:
            name = self.chunk_key(uri, run_id, state.epoch, metric, chunk.id)
            part = pending.get(chunk.id) or self._opened(name, found.get(chunk.id))
            if part is None:
                raise TailLost(f"chunk {chunk.id} of a tail is gone")
            parts.append(part)
        return parts

    def _renewals(self, uri, run_id, state, now) -> list:
        """Chunks past half their TTL: renewed with the state, so a watched tail lives on."""
        names = []
        for metric, tail in state.metrics.items():
            for chunk in tail.chunks:
                if now - chunk.written > TAIL_TTL / 2:
                    chunk.written = now
                    names.append(self.chunk_key(uri, run_id, state.epoch, metric, chunk.id))
        return names


def _joined(parts, after=None):
    """Chunks' points as one Series with their sequence numbers, those after ``after``."""
    series = history.concat(p[0] for p in parts)
    seqs = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    if after is not None:
        newer = seqs > after
        series, seqs = history.take(series, newer), seqs[newer]
    return series, seqs


class TailLost(Exception):
    """A chunk the tail's state names is gone (expired, evicted): rebuild the tail."""
