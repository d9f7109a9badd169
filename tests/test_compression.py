"""app/compression.py on its own: Accept-Encoding negotiation, and stream compressors
checked by the standard decoders (gzip members and zstd frames read in turn)."""
import gzip
import io
import os
import zlib

import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from app.compression import (Segment, compress_stream, compress_whole, negotiate,
                             parse_accept_encoding, plain, stored_form)


def decode(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)  # reads every member
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
    return reader.read()


@pytest.mark.parametrize("header, chosen", [
    (None, None), ("", None), ("identity", None), ("br", None), ("deflate", None),
    ("gzip", "gzip"), ("GZIP", "gzip"), ("x-gzip", "gzip"), ("zstd", "zstd"),
    ("gzip, deflate, br, zstd", "zstd"),            # a browser: equal q, ours preferred
    ("gzip;q=1, zstd;q=0.5", "gzip"),                # q decides before our order
    ("zstd;q=0.2, gzip;q=0.3", "gzip"),
    ("gzip;q=0", None), ("gzip; q=0.000", None),     # q=0 refuses
    ("zstd;q=0, gzip", "gzip"),
    ("*", "zstd"), ("*;q=0", None), ("gzip;q=0, *", "zstd"), ("zstd;q=0, *;q=0.5", "gzip"),
    ("gzip;q=0.5, identity", None),                  # identity preferred over gzip
    ("gzip;q=abc", None), ("gzip;q=2", None),         # malformed q: the entry is ignored
    ("gzip;level=1", "gzip"), (" , ,gzip ,", "gzip"),
])
def test_negotiate(header, chosen):
    assert negotiate(header) == chosen


def test_negotiate_keeps_the_highest_q_of_a_repeated_coding():
    assert parse_accept_encoding("gzip;q=0.1, gzip;q=0.9") == {"gzip": 0.9}
    assert negotiate("gzip", available=("gzip",)) == "gzip"
    assert negotiate("zstd", available=("gzip",)) is None


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
@settings(max_examples=30, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000), max_size=12))
def test_stream_round_trips(coding, chunks):
    assert decode(b"".join(compress_stream(chunks, coding)), coding) == b"".join(chunks)


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_memoryviews_and_an_empty_body(coding):
    data = os.urandom(2000) + b"x" * 50_000
    assert decode(b"".join(compress_stream([memoryview(data)[:100], memoryview(data)[100:]],
                                           coding)), coding) == data
    empty = b"".join(compress_stream([], coding))
    assert empty and decode(empty, coding) == b""  # one valid (empty) member or frame


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_stored_segments_are_spliced_as_they_are(coding):
    run_a, run_b = b'{"run":"a",' + b"1," * 20_000 + b'"end":1}', b'{"run":"b"}' * 3000
    stored_a, stored_b = stored_form(run_a, coding), stored_form(run_b, coding)
    chunks = [b'{"runs":[', Segment(run_a, {coding: stored_a}), b",",
              Segment(memoryview(run_b), {coding: stored_b}), b",", Segment(b'"plain"'), b"]}"]
    body = b"".join(compress_stream(chunks, coding))
    assert decode(body, coding) == (b'{"runs":[' + run_a + b"," + run_b + b',"plain"]}')
    assert stored_a in body and stored_b in body  # copied, not compressed again
    for only in ([Segment(run_a, {coding: stored_a})],                  # alone
                 [Segment(run_a, {coding: stored_a})] * 2 + [b"tail"]):  # back to back
        expected = b"".join(c.raw if isinstance(c, Segment) else c for c in only)
        assert decode(b"".join(compress_stream(only, coding)), coding) == expected


@pytest.mark.parametrize("chunks", [
    [b"head" * 500, "A", b"mid" * 500, "A", b"tail"], ["A"], ["A", "A"], [b"x", "A"], []])
def test_a_gzip_answer_is_one_member(chunks):
    """curl --compressed and browsers read only the first gzip member: a spliced answer
    must still be a single one (a streaming inflater ends exactly at its end)."""
    raw = b"0123456789" * 10_000
    segment = Segment(raw, {"gzip": stored_form(raw, "gzip")})
    chunks = [segment if c == "A" else c for c in chunks]
    body = b"".join(compress_stream(chunks, "gzip"))
    inflater = zlib.decompressobj(31)
    out = inflater.decompress(body)
    assert inflater.eof and inflater.unused_data == b""
    assert out == b"".join(raw if c is segment else c for c in chunks)


def test_a_segment_only_in_another_coding_is_compressed_from_raw():
    raw = b"abc" * 1000
    body = b"".join(compress_stream([Segment(raw, {"zstd": stored_form(raw, "zstd")})], "gzip"))
    assert gzip.decompress(body) == raw
    assert compress_whole(raw, "zstd") == stored_form(raw, "zstd")  # zstd: a whole frame


@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_output_is_streamed_not_buffered(coding):
    """The first compressed bytes leave before the input is all read."""
    consumed = []

    def source():
        for i in range(200):
            consumed.append(i)
            yield os.urandom(64 * 1024)  # incompressible: output comes at once

    stream = compress_stream(source(), coding)
    first = next(stream)
    assert first and len(consumed) < 10
    rest = b"".join(stream)
    assert len(consumed) == 200 and len(decode(first + rest, coding)) == 200 * 64 * 1024


def test_unknown_coding_is_refused():
    with pytest.raises(ValueError):
        list(compress_stream([b"x"], "br"))


def test_plain_writes_segments_raw_as_bytes():
    view = memoryview(b"v" * (3 << 20))
    out = list(plain([b"[", Segment(view, {"gzip": b"ignored"}), Segment(b"raw"), b"]"]))
    assert all(isinstance(piece, bytes) for piece in out)
    assert b"".join(out) == b"[" + bytes(view) + b"raw]" and len(out) == 1 + 3 + 2
