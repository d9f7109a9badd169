"""Content-Encoding for answers: which coding a client accepts, and stream compressors.

Pure (no Flask): ``negotiate`` reads an ``Accept-Encoding`` header, ``compress_stream``
turns an iterable of body chunks into the compressed body, chunk by chunk, so a streamed
answer (the runs JSON, the CSV export) is never held whole in memory. app/api/delivery.py
applies them to responses.

Pre-compressed segments (for the cache of finished runs' compressed form)
-------------------------------------------------------------------------
A run compressed once and stored can be spliced into any later answer, with no
compression work for it::

    stored = stored_form(run_json_bytes, "gzip")               # keep this in the cache
    body = compress_stream([head, Segment(run_json_bytes, {"gzip": stored}), tail], "gzip")

zstd: the stored form is a whole frame, copied between the frames of the rest (a zstd
stream may hold several frames, RFC 8878 §3.1). gzip: the answer stays ONE gzip member
(curl --compressed and browsers read only the first member of several, though RFC 1952
allows them): the stored form is a raw deflate fragment ending on a byte boundary,
spliced between the compressor's own sync-flushed output; the member's CRC-32 is run
over the raw bytes of everything (~1 GB/s, so a stored run still costs a CRC pass of
its raw bytes; storing the CRC and combining would avoid it).

The decoded body is byte for byte the concatenation of the raw chunks and the segments'
``raw`` bytes: callers must store a form made by ``stored_form`` from exactly those
bytes. A ``Segment`` without this coding's form is compressed like any chunk. Each
splice costs a few bytes and the compressor's history (some ratio), so segments should
be large (a whole run's histories), not single values.

A route may put ``Segment``s in a streamed JSON or CSV body as it is: app/api/delivery.py
compresses it with ``compress_stream`` or, for a client that takes no coding, writes
each segment's ``raw`` bytes (``plain``). Its Content-Length is the raw body's length.
"""
import struct
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
    """A piece of body with, possibly, its stored forms ({coding: stored_form(raw, coding)})."""
    raw: bytes
    compressed: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.raw)


def stored_form(data, coding: str, level: int = None) -> bytes:
    """The form of ``data`` to keep for a ``Segment`` (at ``level``, default
    ``STORE_LEVELS``). zstd: one whole frame. gzip: a raw deflate fragment that starts
    and ends on a byte boundary without a final block (a sync flush), so that it splices
    into the middle of one gzip member."""
    level = STORE_LEVELS[coding] if level is None else level
    if coding == "gzip":
        deflate = zlib.compressobj(level, zlib.DEFLATED, -15)  # -15: raw deflate
        return deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return compress_whole(data, coding, level)


class _GzipWriter:
    """One gzip member: our header, deflate output (the compressor's, and stored
    fragments spliced in), an empty final block, and our trailer (CRC-32 and length of
    the raw body). One member because clients stop at the first (curl --compressed
    fails, browsers stop: curl issue #22156), though RFC 1952 allows several."""
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name/mtime, OS unknown

    def __init__(self, level: int):
        self.level, self.crc, self.size, self.deflate = level, 0, 0, None
        self.pending = self.HEADER

    def _out(self, data: bytes) -> bytes:
        data, self.pending = self.pending + data, b""
        return data

    def _count(self, raw):
        self.crc = zlib.crc32(raw, self.crc)
        self.size += len(raw)

    def compress(self, data) -> bytes:
        if self.deflate is None:
            self.deflate = zlib.compressobj(self.level, zlib.DEFLATED, -15)
        self._count(data)
        return self._out(self.deflate.compress(data))

    def splice(self, fragment: bytes, raw) -> bytes:
        # Byte-align what came before; the next compressor starts without history, since
        # its back-references must not reach across the fragment.
        before = self.deflate.flush(zlib.Z_SYNC_FLUSH) if self.deflate is not None else b""
        self.deflate = None
        self._count(raw)
        return self._out(before + fragment)

    def finish(self) -> bytes:
        end = self.deflate.flush(zlib.Z_FINISH) if self.deflate is not None else b"\x03\x00"
        return self._out(end + struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))


class _ZstdWriter:
    """zstd frames (RFC 8878 §3.1: a stream may hold several): the compressor's frame is
    ended before a stored frame is copied, and a new one begun after it."""

    def __init__(self, level: int):
        self.level, self.frame, self.wrote = level, None, False

    def compress(self, data) -> bytes:
        if self.frame is None:
            # write_content_size off: a streamed frame does not know its size up front.
            self.frame = zstandard.ZstdCompressor(level=self.level, write_checksum=True,
                                                  write_content_size=False).compressobj()
        self.wrote = True
        return self.frame.compress(data)

    def splice(self, fragment: bytes, raw) -> bytes:
        before = self.finish() if self.frame is not None else b""
        self.frame, self.wrote = None, True
        return before + fragment

    def finish(self) -> bytes:
        if self.frame is None:
            if self.wrote:
                return b""
            self.compress(b"")  # an empty body is still one valid frame
        end, self.frame = self.frame.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH), None
        return end


WRITERS = {"gzip": _GzipWriter, "zstd": _ZstdWriter}


def compress_stream(chunks, coding: str, level: int = None):
    """Yield ``chunks`` (bytes, memoryviews or ``Segment``s) compressed with ``coding``
    (at ``level``, default ``STREAM_LEVELS``), a piece whenever the compressor has output."""
    if coding not in WRITERS:
        raise ValueError(f"unknown coding {coding!r}")
    writer = WRITERS[coding](STREAM_LEVELS[coding] if level is None else level)
    for chunk in chunks:
        if isinstance(chunk, Segment):
            ready = chunk.compressed.get(coding)
            if ready is not None:
                out = writer.splice(ready, chunk.raw)
                if out:
                    yield out
                continue
            chunk = chunk.raw
        if chunk:
            out = writer.compress(chunk)
            if out:
                yield out
    out = writer.finish()
    if out:
        yield out




def plain(chunks):
    """``chunks`` uncompressed: each ``Segment`` as its ``raw`` bytes (for a client that
    takes no coding, or a body too small to compress). A ``raw`` memoryview (a view of
    a cached entry) is written a megabyte at a time: WSGI servers write bytes."""
    for chunk in chunks:
        if not isinstance(chunk, Segment):
            yield chunk
        elif isinstance(chunk.raw, memoryview):
            for start in range(0, len(chunk.raw), WRITE_SIZE):
                yield bytes(chunk.raw[start:start + WRITE_SIZE])
        else:
            yield chunk.raw


def compress_whole(data: bytes, coding: str, level: int = None) -> bytes:
    """``data`` as one gzip member or zstd frame (at ``level``, default ``STORE_LEVELS``):
    a small answer's whole body."""
    return b"".join(compress_stream([data], coding,
                                    STORE_LEVELS[coding] if level is None else level))
