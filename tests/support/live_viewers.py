"""Dashboards polling live runs through the service's GET form, as a browser would
(``Accept-Encoding: gzip``, ``If-None-Match`` of the last ETag), in one of two ways:

- ``cursor``: the first poll without, then the answer's ``cursor`` (docs/api.md "Polling
  a live run: the cursor"); what they hold is a ``Chart``'s;
- ``since_step``: the way before the cursor: ``since_step`` = the lowest last step across
  the series held, then duplicates dropped (the only exact way with misaligned answers).

``watch`` runs viewers on a schedule; ``poll_stats`` sums their polls up; ``mismatches``
compares what each holds with MLflow's own histories (``mlflow_truth``).
"""
import gzip
import statistics
import threading
import time
from typing import NamedTuple

import orjson

from tests.support.calls import get_form
from tests.support.chart import Chart, mlflow_points

POLL_TIMEOUT = 300.0  # a hang guard


class Poll(NamedTuple):
    start: float        # time.monotonic()
    seconds: float      # send to the last byte
    status: int | None  # None: no HTTP answer (``error``)
    wire: int           # body bytes as sent (gzip)
    plain: int          # the same decompressed
    points: int         # metric points in the answer
    new: int            # points the viewer did not hold yet
    error: str | None


def cursor_supported(pool, base: str) -> bool:
    """Does the service's OpenAPI spec know the ``cursor`` field?"""
    return b'"cursor"' in pool.request("GET", f"{base}/openapi.json", timeout=60).data


class Viewer:
    def __init__(self, pool, base: str, fields: dict, user: str, password: str, cursor: bool):
        self.pool, self.base, self.fields = pool, base, fields
        self.user, self.password, self.cursor = user, password, cursor
        self.chart = Chart()   # cursor mode
        self.held = {}         # since_step mode: (run_id, metric) -> {(step, timestamp, value)}
        self.etag = None
        self.polls: list[Poll] = []

    def points(self, run_id, metric) -> list:
        if self.cursor:
            return self.chart.points(run_id, metric)
        return sorted(self.held.get((run_id, metric), ()))

    def _count(self) -> int:
        series = self.chart.series.values() if self.cursor else self.held.values()
        return sum(len(points) for points in series)

    def _query(self) -> dict:
        fields = dict(self.fields, username=self.user, password=self.password)
        if self.cursor and self.chart.cursor:
            fields["cursor"] = self.chart.cursor
        elif not self.cursor and self.held:
            fields["since_step"] = min(max(p[0] for p in pts) for pts in self.held.values())
        return fields

    def poll(self) -> Poll:
        url, headers = get_form(self._query())
        headers["Accept-Encoding"] = "gzip"
        if self.etag:
            headers["If-None-Match"] = self.etag
        t0 = time.monotonic()
        try:
            response = self.pool.request("GET", self.base + url, headers=headers, retries=False,
                                         timeout=POLL_TIMEOUT, decode_content=False)
            wire = response.data
            plain = gzip.decompress(wire) if response.headers.get("Content-Encoding") == "gzip" \
                else wire
            error = None if response.status in (200, 304) else plain[:300].decode(errors="replace")
            poll = Poll(t0, time.monotonic() - t0, response.status, len(wire), len(plain), 0, 0,
                        error)
        except Exception as exc:  # noqa: BLE001  reported, not fatal: the calls it made count
            poll = Poll(t0, time.monotonic() - t0, None, 0, 0, 0, 0, repr(exc)[:300])
        if poll.status == 200:
            before = self._count()
            poll = poll._replace(points=self._take(orjson.loads(plain)))
            poll = poll._replace(new=self._count() - before)
            self.etag = response.headers.get("ETag")
        self.polls.append(poll)
        return poll

    def _take(self, answer: dict) -> int:
        """Fold an answer in; the points it carried."""
        if self.cursor:
            self.chart.take(answer)
        else:
            for run in answer["runs"]:
                for metric in run["metrics_history"]:
                    self.held.setdefault((run["run_id"], metric["metric_name"]), set()).update(
                        (p["step"], p["timestamp"], p["value"]) for p in metric["history"])
        return sum(len(m["history"]) for run in answer["runs"] for m in run["metrics_history"])


def watch(viewers: list[Viewer], seconds: float, interval: float) -> tuple[float, float]:
    """Each viewer polls every ``interval`` s (the first polls spread over one interval,
    a late poll delaying the next) while its next poll falls within ``seconds``; returns
    when it started (``time.monotonic``) and the seconds until the last poll was answered."""
    start = time.monotonic() + 0.2
    end = start + seconds

    def run(i, viewer):
        due = start + i * interval / len(viewers)
        while due < end:
            time.sleep(max(0.0, due - time.monotonic()))
            viewer.poll()
            due = max(due + interval, time.monotonic())

    threads = [threading.Thread(target=run, args=(i, v), daemon=True)
               for i, v in enumerate(viewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 2 * POLL_TIMEOUT)
    return start, time.monotonic() - start


def _latency_bytes(polls: list[Poll]) -> dict:
    answered = [p for p in polls if p.status in (200, 304)]
    full = [p for p in answered if p.status == 200]
    latency = sorted(p.seconds for p in answered) or [0.0]
    mean = lambda values: round(statistics.mean(values)) if values else 0  # noqa: E731
    return {"polls": len(polls), "ok_200": len(full),
            "not_modified_304": len(answered) - len(full),
            "ok_200_nothing_new": sum(p.new == 0 for p in full),
            "latency_s": {"p50": round(statistics.median(latency), 3),
                          "p95": round(latency[min(len(latency) - 1, int(0.95 * len(latency)))], 3),
                          "max": round(latency[-1], 3)},
            "bytes_per_200": {"gzip": mean([p.wire for p in full]),
                              "plain": mean([p.plain for p in full])},
            "points_per_200": mean([p.points for p in full]),
            "new_points_per_200": mean([p.new for p in full])}


def poll_stats(viewers: list[Viewer], seconds: float) -> dict:
    """Polls per viewer per minute (of ``seconds``) and failures over every poll recorded;
    latency, bytes, statuses for all, for the viewers' first polls (their whole
    histories) and for the later ones (what is new)."""
    polls = [p for v in viewers for p in v.polls]
    per_minute = sorted(sum(p.status in (200, 304) for p in v.polls) * 60 / seconds
                        for v in viewers)
    errors = [p.error for p in polls if p.error]
    return {
        **_latency_bytes(polls), "failed": len(errors),
        "first_failure": errors[0] if errors else None,
        "polls_per_viewer_per_minute": {"min": round(per_minute[0], 1),
                                        "median": round(statistics.median(per_minute), 1),
                                        "max": round(per_minute[-1], 1)},
        "first_polls": _latency_bytes([v.polls[0] for v in viewers if v.polls]),
        "later_polls": _latency_bytes([p for v in viewers for p in v.polls[1:]]),
    }


def mismatches(viewers: list[Viewer], truth: dict) -> tuple[list[str], int | None]:
    """Each viewer's series against ``truth`` ({(run_id, metric): mlflow_points}): where
    they differ, and the timestamp (ms) of the earliest point some viewer misses."""
    wrong, earliest = [], None
    for i, viewer in enumerate(viewers):
        for (run_id, metric), points in truth.items():
            held = viewer.points(run_id, metric)
            if held != points:
                missing, extra = set(points) - set(held), set(held) - set(points)
                if missing:
                    first = min(p[1] for p in missing)
                    earliest = first if earliest is None else min(earliest, first)
                wrong.append(f"viewer {i} {run_id[:8]} {metric}: {len(held)} held, "
                             f"{len(points)} in MLflow, {len(missing)} missing, {len(extra)} extra")
    return wrong, earliest


def mlflow_truth(client, run_ids, metrics) -> dict:
    return {(r, m): mlflow_points(client, r, m) for r in run_ids for m in metrics}
