"""An MLflow answer, read within the operator's limits on what a server may send.

The body is read a step at a time and counted as it comes, both as sent and as decoded,
so a limit stops it while it is read, never after it is all in memory: an endless body
stops at the limit, and a gzip bomb is decoded a step at a time (zlib's ``max_length``)
and stops there too. Only gzip is asked for (``Accept-Encoding``, app/mlflow/session.py)
and it is decoded here; an answer in any other content coding is refused.
"""
import zlib
from dataclasses import dataclass

MB = 1024 * 1024
STEP = 64 * 1024  # bytes read, and bytes decoded, at a time
GZIP = 16 + zlib.MAX_WBITS
IDENTITY = ("", "identity")


@dataclass(frozen=True)
class AnswerLimits:
    """What the service takes from an MLflow server (config.py, docs/operating.md)."""

    max_bytes: int = 64 * MB        # MLFLOW_MAX_ANSWER_MB: an answer, as sent and as decoded
    max_pages: int = 200            # MLFLOW_MAX_PAGES: pages one paged read follows
    max_field_chars: int = 65_536   # MLFLOW_MAX_FIELD_CHARS: a text field the service reads

    def budget(self) -> "SizeBudget":
        return SizeBudget(self.max_bytes)


class TooLarge(Exception):
    """The answer is larger than its budget allows."""


class Undecodable(Exception):
    """The body is not in a content coding the service asked for, or is not valid gzip."""


class SizeBudget:
    """The bytes one answer may take as sent and as decoded. A search's pages share one:
    their items are all kept, so together they are one answer."""

    def __init__(self, limit: int):
        self.limit = limit
        self.sent = self.decoded = 0
        self.answers = 0  # read within it

    def check_length(self, headers):
        """Refuse at once an answer whose Content-Length is already too large."""
        if headers.get("Transfer-Encoding"):
            return  # chunked: its Content-Length, if any, means nothing (RFC 9112 6.3)
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            return  # http.client itself reads such a body to its end
        if self.sent + length > self.limit:
            raise TooLarge

    def add(self, sent: int = 0, decoded: int = 0):
        self.sent += sent
        self.decoded += decoded
        if self.sent > self.limit or self.decoded > self.limit:
            raise TooLarge


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of MLflow's, its fields named as ``requests``' (app/mlflow/wording.py)."""

    endpoint: str
    status_code: int
    headers: object   # case-insensitive, as requests gives them
    content: bytes | bytearray  # decoded (not copied: JSON parsers take either)


def read(response, endpoint: str, budget: SizeBudget) -> Answer:
    """``response`` (``requests``, sent with ``stream=True``) read to its end within ``budget``."""
    budget.answers += 1
    decoder = _decoder(response.headers.get("Content-Encoding"))
    budget.check_length(response.headers)
    body = bytearray()
    while chunk := response.raw.read(STEP, decode_content=False):
        budget.add(sent=len(chunk))
        for piece in decoder.feed(chunk):
            budget.add(decoded=len(piece))
            body += piece
    decoder.finish()
    return Answer(endpoint, response.status_code, response.headers, body)


def _decoder(coding):
    coding = (coding or "").strip().lower()
    if coding in IDENTITY:
        return _Identity()
    if coding in ("gzip", "x-gzip"):
        return _Gunzip()
    raise Undecodable("a content coding the service did not ask for")


class _Identity:
    def feed(self, data):
        yield data

    def finish(self):
        pass


class _Gunzip:
    """gzip, one member after another (as urllib3 reads it: bytes after a whole member
    that are not gzip are ignored), never more than STEP bytes of output at a time."""

    def __init__(self):
        self._member = None
        self._started = self._whole = self._ignoring = False

    def feed(self, data):
        self._started = True
        while not self._ignoring:
            if self._member is None:
                if not data:
                    return
                self._member = zlib.decompressobj(GZIP)
            try:
                out = self._member.decompress(data, STEP)
            except zlib.error:
                if not self._whole:
                    raise Undecodable("not valid gzip") from None
                self._ignoring = True  # trailing bytes after a whole member
                return
            if out:
                yield out
            if self._member.eof:
                self._whole, data, self._member = True, self._member.unused_data, None
            else:
                data = self._member.unconsumed_tail
                if not data and len(out) < STEP:
                    return  # all taken in, and no output held back (else: ask again)

    def finish(self):
        if self._started and not self._whole:
            raise Undecodable("gzip cut short")
