"""Content-Encoding for answers: which coding a client accepts, and stream compressors.

Pure (no Flask): ``negotiate`` reads an ``Accept-Encoding`` header, ``compress_stream``
turns an iterable of body chunks into the compressed body, chunk by chunk, so a streamed
answer (the runs JSON, the CSV export) is never held whole in memory. app/delivery.py
applies them to responses.

Pre-compressed segments (for the cache of finished runs' compressed form)
-------------------------------------------------------------------------
Both codings may be concatenated: a gzip body may be several gzip *members* (RFC 1952
§2.2) and a zstd body several *frames* (RFC 8878 §3.1), each decoded in turn into one
body. So a run compressed once, stored, can be spliced into any later answer::

    stored = compress_whole(run_json_bytes, "gzip")            # keep this in the cache
    body = compress_stream([head, Segment(run_json_bytes, {"gzip": stored}), tail], "gzip")

A route may put ``Segment``s in a streamed JSON or CSV body as it is: app/delivery.py
compresses it with ``compress_stream`` or, for a client that takes no coding, writes
each segment's ``raw`` bytes (``plain``). Its Content-Length is the raw body's length.

``compress_stream`` ends the member/frame it is writing (if it wrote anything), copies
the segment's compressed bytes for this coding as they are, and starts a fresh
member/frame for what follows; a ``Segment`` without this coding's form is compressed
like any chunk (its ``raw`` bytes). The decoded body is byte for byte the concatenation
of the raw chunks and the segments' ``raw`` bytes: callers must store a form made by
``compress_whole`` from exactly those bytes. Each segment costs a member/frame header
and a fresh dictionary (a few dozen bytes and some ratio), so segments should be
large (a whole run's histories), not single values.
"""
import zlib
from dataclasses import dataclass, field

import zstandard

# Preferred first when a client accepts both equally (browsers send "gzip, deflate, br,
# zstd"): zstd is smaller and several times faster to compress at these levels.
CODINGS = ("zstd", "gzip")
# Levels. An answer compressed as it is written costs every poll its compression time:
# the fastest levels (10 runs x 20 metrics x 1,000 steps, 13.2 MB: gzip 1 -> 23 % in
# ~0.4 s, zstd 1 -> 15 % in ~0.1 s; gzip 6 -> 20 % took ~1.7 s on the shared test machine).
# A form made once to be stored (compress_whole) can afford the libraries' defaults.
STREAM_LEVELS = {"gzip": 1, "zstd": 1}
STORE_LEVELS = {"gzip": 6, "zstd": 3}
ALIASES = {"x-gzip": "gzip"}  # RFC 9110 §8.4.1.3
WRITE_SIZE = 1 << 20  # bytes of a large raw segment written at a time


def parse_accept_encoding(header: str | None) -> dict[str, float]:
    """{coding: q} from an Accept-Encoding value (names lower-cased, malformed entries
    skipped, the highest q kept when a coding is listed twice)."""
    accepted = {}
    for item in (header or "").split(","):
        name, *params = (part.strip() for part in item.split(";"))
        name = ALIASES.get(name.lower(), name.lower())
        if not name:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0 <= q <= 1:
            accepted[name] = max(q, accepted.get(name, 0.0))
    return accepted


def negotiate(header: str | None, available=CODINGS) -> str | None:
    """The coding to answer with, or None for the body as it is (identity).

    A coding is acceptable with q > 0, named or through ``*`` (which stands for codings
    not named); ``q=0`` refuses it. The highest q wins, ties go to ``available``'s
    order; identity wins only if named with a higher q. An absent or empty header means
    identity (RFC 9110 §12.5.3). Identity is always still possible: a client that refuses
    it too (``identity;q=0``) gets it anyway when nothing else fits, rather than a 406.
    """
    accepted = parse_accept_encoding(header)
    best, best_q = None, 0.0
    for coding in available:
        q = accepted.get(coding, accepted.get("*", 0.0))
        if q > best_q:
            best, best_q = coding, q
    if best is not None and accepted.get("identity", 0.0) > best_q:
        return None  # the client named identity and prefers it
    return best


@dataclass
class Segment:
    """A piece of body with, possibly, its compressed forms already made
    ({coding: compress_whole(raw, coding)})."""
    raw: bytes
    compressed: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.raw)


class _Member:
    """One gzip member or zstd frame being written."""

    def __init__(self, coding: str, level: int):
        if coding == "gzip":
            self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip wrapper
            self._finish = lambda: self._obj.flush(zlib.Z_FINISH)
        elif coding == "zstd":
            # write_content_size off: a streamed frame does not know its size up front.
            self._obj = zstandard.ZstdCompressor(level=level, write_checksum=True,
                                                 write_content_size=False).compressobj()
            self._finish = lambda: self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
        else:
            raise ValueError(f"unknown coding {coding!r}")
        self.written = False

    def compress(self, data) -> bytes:
        self.written = True
        return self._obj.compress(data)

    def finish(self) -> bytes:
        return self._finish()


def compress_stream(chunks, coding: str, level: int = None):
    """Yield ``chunks`` (bytes, memoryviews or ``Segment``s) compressed with ``coding``
    (at ``level``, default ``STREAM_LEVELS``), a piece whenever the compressor has output."""
    if coding not in STREAM_LEVELS:
        raise ValueError(f"unknown coding {coding!r}")
    level = STREAM_LEVELS[coding] if level is None else level
    member, spliced = _Member(coding, level), False
    for chunk in chunks:
        if isinstance(chunk, Segment):
            ready = chunk.compressed.get(coding)
            if ready is None:
                chunk = chunk.raw
            else:
                if member.written:  # end the member/frame in progress, start another after
                    yield member.finish()
                    member = _Member(coding, level)
                if ready:
                    spliced = True
                    # A form read from Redis is a memoryview; WSGI servers write bytes
                    # only (gunicorn cut the answer with a TypeError).
                    yield ready if isinstance(ready, bytes) else bytes(ready)
                continue
        if chunk:
            out = member.compress(chunk)
            if out:
                yield out
    if member.written or not spliced:  # an empty body is still one valid member/frame
        yield member.finish()


def plain(chunks):
    """``chunks`` uncompressed: each ``Segment`` as its ``raw`` bytes (for a client that
    takes no coding, or a body too small to compress)."""
    for chunk in chunks:
        if not isinstance(chunk, Segment):
            yield chunk
        elif isinstance(chunk.raw, memoryview):  # a cached run: a megabyte at a time
            yield from (bytes(chunk.raw[i:i + WRITE_SIZE])
                        for i in range(0, len(chunk.raw), WRITE_SIZE))
        else:
            yield chunk.raw


def compress_whole(data: bytes, coding: str, level: int = None) -> bytes:
    """``data`` as one gzip member or zstd frame (at ``level``, default ``STORE_LEVELS``):
    a form to store for a ``Segment``, or a small answer's whole body."""
    return b"".join(compress_stream([data], coding,
                                    STORE_LEVELS[coding] if level is None else level))
