"""How answers leave: caching headers on the API routes, and Content-Encoding.

One after-request hook (registered before flask-cors, so it runs after it and sees its
``Vary: Origin``; before observability's, which runs last of all):

- the three API routes get ``Cache-Control: private, no-cache`` and
  ``Vary: Authorization, Accept, Accept-Encoding, Origin``: an answer depends on who asks
  and how, so no shared cache may hand it to someone else, and a browser revalidates
  before reusing it;
- JSON and CSV answers are compressed when the client accepts gzip or zstd
  (app/compression.py) and the answer is at least ``MIN_SIZE`` bytes; a streamed body
  (the runs answer, the CSV export) is compressed as it is written, never held whole.

A compressed answer's ETag, if it has one, gets the coding appended inside the quotes
(``"abc"`` -> ``"abc-gzip"``): each representation has its own tag, so a conditional
request (the lead's ETag/304 work) must compare ``If-None-Match`` against the tag of the
representation it would send.
"""
from flask import current_app, request

from app import compression

API_PATHS = frozenset({"/health", "/mlflow/experiments", "/mlflow/runs"})
CACHE_CONTROL = "private, no-cache"
VARY = ("Authorization", "Accept", "Accept-Encoding", "Origin")
COMPRESSIBLE = frozenset({"application/json", "text/csv"})
# Smaller answers go plain: a gzip header and trailer are ~20 bytes, and small bodies
# hardly shrink while still costing both ends a compressor.
MIN_SIZE = 1024


def init_app(app):
    app.after_request(deliver)


def deliver(response):
    if request.path in API_PATHS and request.method != "OPTIONS":
        response.headers["Cache-Control"] = CACHE_CONTROL
        _vary(response, *VARY)
    if response.mimetype not in COMPRESSIBLE:
        return response
    if current_app.config["COMPRESSION"]:
        _vary(response, "Accept-Encoding")
    coding = negotiated_coding()
    if coding and _may_compress(response):
        _compress(response, coding)
    if response.is_streamed and not isinstance(response.response, _Closing):
        # Not compressed: pre-compressed segments (app/compression.py) go out raw.
        response.response = _Closing(compression.plain(response.response), response.response)
    return response


def negotiated_coding():
    """The content coding this request's answer goes out in if it is compressed (None:
    plain). The runs route asks too, to fetch finished runs' stored forms in it."""
    if not current_app.config["COMPRESSION"]:
        return None
    return compression.negotiate(request.headers.get("Accept-Encoding"))


def _vary(response, *names):
    """Add ``names`` to Vary, as one header line (flask-cors may have added its own)."""
    present = [v.strip() for line in response.headers.getlist("Vary") for v in line.split(",")]
    merged = list(dict.fromkeys(v for v in [*present, *names] if v))
    response.headers["Vary"] = ", ".join(merged)


def _may_compress(response) -> bool:
    return (200 <= response.status_code and response.status_code not in (204, 206, 304)
            and "Content-Encoding" not in response.headers
            and not response.direct_passthrough)


def _compress(response, coding):
    if response.is_sequence:  # the body is already whole in memory (small JSON answers)
        body = response.get_data()
        if len(body) < MIN_SIZE:
            return
        response.set_data(compression.compress_whole(body, coding))
    else:
        length = response.headers.get("Content-Length", type=int)
        if length is not None and length < MIN_SIZE:
            return
        head, rest, done = _peek(response.response, MIN_SIZE)
        if done and sum(map(_size, head)) < MIN_SIZE:
            # A short stream: sent plain, its length now known.
            response.response = list(compression.plain(head))
            response.headers["Content-Length"] = str(sum(map(_size, head)))
            return
        response.response = _Closing(compression.compress_stream(_chain(head, rest), coding),
                                     response.response)
        response.headers.pop("Content-Length", None)  # unknown until written: chunked
    response.headers["Content-Encoding"] = coding
    tag, weak = response.get_etag()
    if tag:
        response.set_etag(f"{tag}-{coding}", weak)


def _peek(body, size):
    """Read ``body`` until ``size`` bytes or its end: (chunks read, iterator, ended)."""
    rest = iter(body)
    head, seen = [], 0
    for chunk in rest:
        chunk = chunk.encode() if isinstance(chunk, str) else chunk
        head.append(chunk)
        seen += _size(chunk)
        if seen >= size:
            return head, rest, False
    return head, rest, True


def _size(chunk) -> int:
    return len(chunk.raw if isinstance(chunk, compression.Segment) else chunk)


def _chain(head, rest):
    yield from head
    for chunk in rest:
        yield chunk.encode() if isinstance(chunk, str) else chunk


class _Closing:
    """``stream`` as a WSGI body that, when closed (written, or abandoned by a client that
    hung up), also closes the body it replaced: its generators release what they hold."""

    def __init__(self, stream, original):
        self.stream, self.original = stream, original

    def __iter__(self):
        return self.stream

    def close(self):
        self.stream.close()
        close = getattr(self.original, "close", None)
        if close is not None:
            close()
