"""The cursor of a /mlflow/runs answer: what the caller holds of each run, so the next poll
gets exactly what is new (docs/api.md: Polling a live run).

Per run it names the state its histories were read at: a live run's tail epoch and
sequence number (app/cache/tails.py), or a finished run's fingerprint (what runs/get
shows: app/cache/freshness.py), so the same finished runs give the same cursor whatever
the cache holds; and, for the whole cursor, the metric_keys it was made for.
Opaque to callers (compressed JSON in URL-safe base64) and not secret: it holds run ids
and tokens, never credentials, and a forged one only changes which points the caller is
sent of runs it may read anyway.
"""
import base64
import hashlib
import zlib
from dataclasses import dataclass

import orjson

from app.cache.freshness import fingerprint, terminal

PREFIX = "c1."
MAX_LENGTH = 8192
LIVE, FINISHED = "t", "g"


@dataclass(frozen=True)
class Cursor:
    keys: str       # keys_digest of the metric_keys the answer showed
    runs: tuple     # ((run_id, kind, token, seq), ...)

    def of(self, run_id):
        """(kind, token, seq) held for ``run_id``, or None."""
        for entry in self.runs:
            if entry[0] == run_id:
                return entry[1:]
        return None

    def encode(self) -> str:
        packed = zlib.compress(orjson.dumps([self.keys, [list(e) for e in self.runs]]), 9)
        return PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def keys_digest(metric_keys) -> str:
    """Which metrics an answer showed: None (all of each run's) or the sorted keys."""
    named = None if metric_keys is None else sorted(metric_keys)
    return hashlib.blake2b(orjson.dumps(named), digest_size=6).hexdigest()


def decode(text: str) -> Cursor:
    """The cursor ``text`` names; ValueError for anything this service did not write."""
    if not text.startswith(PREFIX) or len(text) > MAX_LENGTH:
        raise ValueError("not a cursor of this service")
    try:
        payload = text[len(PREFIX):]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        keys, runs = orjson.loads(zlib.decompressobj().decompress(raw, 1 << 20))
        entries = tuple((str(r), str(k), str(t), int(s)) for r, k, t, s in runs)
    except (ValueError, TypeError, zlib.error):
        raise ValueError("not a cursor of this service") from None
    if not isinstance(keys, str) or any(kind not in (LIVE, FINISHED) for _, kind, _, _ in entries):
        raise ValueError("not a cursor of this service")
    return Cursor(keys, entries)


def answer_cursor(view, runs, live) -> str:
    """The cursor of an answer: each live run's tail as read (``live``, a LiveRead), each
    finished run's fingerprint; a live run read without a tail comes whole next time."""
    entries = []
    for run in runs:
        run_id = run["info"]["run_id"]
        if live is not None and run_id in live.states:
            state = live.states[run_id]
            entries.append((run_id, LIVE, state.epoch, state.seq))
        elif terminal(run):
            entries.append((run_id, FINISHED, fingerprint(run), 0))
    return Cursor(keys_digest(view.metric_keys), tuple(entries)).encode()
