"""Bytes and time of the big /mlflow/runs answer plain, gzip and zstd (issue 12).

    .venv/bin/python bench/bench_compression.py [--repeats 5]

Builds the answer of 10 FINISHED runs x 20 metrics x 1,000 steps in the contract's shape,
with bench_runs.py's values ((r + 1) * (k + 1) / (step + 1)), and measures:

- ``compress``: app.compression.compress_stream over the answer's pieces (one per run,
  as the service writes them), decoded back and checked equal;
- ``served``: a request to an app from ``create_app`` (the Flask test client, in
  process, no network) whose route streams those pieces as routes.runs does, read to the
  end, with ``Accept-Encoding`` none / gzip / zstd: what the after-request hook adds;
- the same with each run as a ``Segment`` carrying its stored gzip/zstd forms (made
  once, at the store levels): what a cache of finished runs' compressed form would give.

No server, no MLflow, no Redis: nothing is started. Medians of ``--repeats`` samples.
"""
import argparse
import gzip
import io
import statistics
import sys
import time
from pathlib import Path

import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from app import compression, create_app  # noqa: E402

RUNS, METRICS, STEPS = 10, 20, 1000
START = 1_700_000_000_000


def answer_pieces() -> list[bytes]:
    pieces = [b'{"success":true,"experiment_name":"bench-exp","total_runs":10,"runs":[']
    for r in range(RUNS):
        start = START + r * 3_600_000
        histories = []
        for k in range(METRICS):
            points = [{"step": s, "value": (r + 1) * (k + 1) / (s + 1), "timestamp": start + s}
                      for s in range(STEPS)]
            values = [p["value"] for p in points]
            histories.append({"metric_name": f"metric_{k:02d}", "history": points,
                              "total_points": STEPS, "min_value": min(values),
                              "max_value": max(values), "last_value": values[-1]})
        run = {"run_id": f"{r:032x}", "run_name": f"run-{r:02d}", "status": "FINISHED",
               "duration_seconds": 1800.0, "parameters": {},
               "metrics_summary": {h["metric_name"]: h["last_value"] for h in histories},
               "metrics_history": histories}
        pieces.append((b"," if r else b"") + orjson.dumps(run))
    pieces.append(b'],"message":"Fetched 10 run(s) with 200 total metric histories"}')
    return pieces


def decode(body: bytes, coding: str | None) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body),
                                                          read_across_frames=True).read()
    return body


def timed(fn, repeats):
    samples, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def _read(response):
    response.get_data()  # the test client streams: read the body inside the timing
    return response


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pieces = answer_pieces()
    plain = b"".join(pieces)

    app = create_app({"TESTING": True, "ACCESS_LOG": False, "METRICS_ENABLED": False,
                      "LOG_LEVEL": "ERROR"})

    # What a cache of finished runs' compressed forms would hand the route (issue 12's
    # "warm poll stays warm"): each run as a Segment with its stored gzip and zstd forms.
    store_seconds = {}
    stored = [pieces[0]]
    for piece in pieces[1:-1]:
        forms = {}
        for coding in ("gzip", "zstd"):
            started = time.perf_counter()
            forms[coding] = compression.stored_form(piece, coding)
            store_seconds[coding] = store_seconds.get(coding, 0) + time.perf_counter() - started
        stored.append(compression.Segment(piece, forms))
    stored.append(pieces[-1])

    @app.get("/bench/runs")
    def bench_runs():
        from flask import request
        body = stored if request.args.get("stored") else pieces
        return app.response_class(iter(body), mimetype="application/json",
                                  headers={"Content-Length": str(len(plain))})

    client = app.test_client()
    print(f"answer: {RUNS} runs x {METRICS} metrics x {STEPS} steps, {len(plain):,} bytes")
    print(f"{'coding':8} {'bytes':>12} {'ratio':>7} {'compress ms':>12} {'served ms':>10}")
    for coding in (None, "gzip", "zstd"):
        if coding:
            seconds, body = timed(lambda: b"".join(compression.compress_stream(pieces, coding)),
                                  args.repeats)
            assert decode(body, coding) == plain
        else:
            seconds, body = 0.0, plain
        headers = {"Accept-Encoding": coding} if coding else {}
        served, response = timed(lambda: _read(client.get("/bench/runs", headers=headers)),
                                 args.repeats)
        assert response.headers.get("Content-Encoding") == coding
        assert decode(response.data, coding) == plain
        print(f"{coding or 'identity':8} {len(body):>12,} {len(body) / len(plain):>7.1%} "
              f"{seconds * 1000:>12.1f} {served * 1000:>10.1f}")
    print("with each run's stored form spliced in (stored once: "
          + ", ".join(f"{c} {t * 1000:.0f} ms" for c, t in store_seconds.items()) + ")")
    for coding in (None, "gzip", "zstd"):
        headers = {"Accept-Encoding": coding} if coding else {}
        served, response = timed(
            lambda: _read(client.get("/bench/runs?stored=1", headers=headers)), args.repeats)
        assert decode(response.data, coding) == plain
        print(f"{coding or 'identity':8} {len(response.data):>12,} "
              f"{len(response.data) / len(plain):>7.1%} {'':>12} {served * 1000:>10.1f}")


if __name__ == "__main__":
    main()
