"""Verification of many tokens, one per line of a stream (``verify --batch``), with flat memory.

Each token gets exactly the verdict :func:`prisme_keys.tokens.verify.verify` gives it. What the
tokens of one batch share is worked out once: the first token with a given header segment goes
through :func:`~prisme_keys.tokens.verify.verify`; when it is valid, its header's checks (algorithm
allow-list, ``crit``, ``b64``, revoked kid) and its key choice are kept for the rest of the batch,
in a table local to the call. Later tokens with the same header segment and the same key ring
only decode their payload and signature, check the RSA signature (RFC 7518 section 3.3) and the
claims (:func:`~prisme_keys.tokens.verify.check_claims`). Anything else (another header, a
``Bearer`` prefix, any failure) goes the whole way through ``verify`` again, so every error line
is the one ``verify`` words.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from prisme_keys import clock
from prisme_keys.errors import PrismeKeysError
from prisme_keys.jwk import MIN_BITS
from prisme_keys.tokens.jws import MAX_TOKEN_BYTES, b64_segment, b64url_bytes, bare_segments, json_object
from prisme_keys.tokens.keyring import KeyRing, KeySource
from prisme_keys.tokens.verify import VerifyOptions, _check_header, candidate_keys, check_claims, verify

#: Bytes asked of the stream per read: a read may wait for input, so the caller's stream can
#: write out the results so far first (see :func:`iter_lines`).
CHUNK = 64 * 1024
#: Distinct header segments remembered per batch; past that the table starts again (flat memory).
MAX_HEADERS = 256


def iter_lines(stream: Any, max_len: int = MAX_TOKEN_BYTES + 4096) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line_number, line_bytes)`` from a binary stream with flat memory (numbers from 1).

    Each line keeps its ``\\n`` (the last line may have none). A line longer than ``max_len`` bytes
    (its ``\\n`` not counted) is skipped to its end and yielded as ``None``. The stream is read
    with ``read1(n)`` (``read(n)`` when it has none) in pieces of :data:`CHUNK` bytes: a
    stream that must show earlier results before it waits for input (a pipe, a terminal) can
    write them out in ``read1``.
    """
    read = getattr(stream, "read1", None) or stream.read
    n = 0
    head = b""  # the start of a line that the last piece did not finish
    skipping = False  # the current line is already longer than max_len
    while True:
        piece = read(CHUNK)
        if not piece:
            break
        start = 0
        end = piece.find(b"\n")
        while end >= 0:
            n += 1
            if skipping or len(head) + end - start > max_len:
                skipping = False
                head = b""
                yield n, None
            elif head:
                line, head = head + piece[start : end + 1], b""
                yield n, line
            else:
                yield n, piece[start : end + 1]
            start = end + 1
            end = piece.find(b"\n", start)
        if not skipping:
            head += piece[start:]
            if len(head) > max_len:
                skipping, head = True, b""
    if skipping or head:
        yield n + 1, None if skipping else head


@dataclass(frozen=True)
class _Header:
    """A header segment whose checks passed in this batch: the ring its keys were chosen from, and
    per usable candidate key (in order) its signature check and its kid as JSON."""

    ring: KeyRing
    keys: tuple[tuple[Callable[[bytes, bytes], bool], str], ...]


def _json(value: Any) -> str:
    """``value`` as ``json.dumps(value, ensure_ascii=False)`` writes it (a string without the dispatch)."""
    return encode_basestring(value) if type(value) is str else json.dumps(value, ensure_ascii=False)


def _fast(
    n: int, raw: bytes, h: bytes, p: bytes, s: bytes, known: _Header, options: VerifyOptions, now: datetime
) -> str | None:
    """The result line of the token ``h.p.s`` (the start of ``raw``, then only whitespace) whose header
    segment ``h`` passed before with the same ring (``known``), or ``None`` when anything differs:
    then :func:`verify` gives the verdict.

    Same verdict as :func:`verify`: payload and signature must be canonical base64url (so the
    token is bare: :func:`~prisme_keys.tokens.jws.clean_token` returns it unchanged), then the
    signature with the header's candidate keys in ``verify``'s order, then the claims.
    """
    payload, sig = b64url_bytes(p), b64url_bytes(s)
    if payload is None or sig is None:
        return None
    try:
        claims = json_object(payload, 1)
        signing_input = raw[: len(h) + 1 + len(p)]
        for check, kid in known.keys:
            if check(signing_input, sig):
                check_claims(claims, options, now)
                sub = claims.get("sub")
                sub_json = encode_basestring(sub) if type(sub) is str else _json(sub)
                return f'{{"line": {n}, "valid": true, "exit": 0, "kid": {kid}, "sub": {sub_json}}}\n'
    except (PrismeKeysError, ValueError, RecursionError):  # an invalid token: verify() words the verdict
        return None
    return None


def _too_long(n: int) -> str:
    doc = {"line": n, "valid": False, "exit": 5, "error": f"line is longer than {MAX_TOKEN_BYTES} bytes (64 KiB)"}
    return json.dumps(doc, ensure_ascii=False) + "\n"


class _Batch:
    """The state of one :func:`verify_batch` call: the checked header segments, nothing global."""

    def __init__(
        self, source: KeySource, options: VerifyOptions, now: datetime | None, word: Callable[[str], str] = str
    ) -> None:
        self.source, self.options, self.now, self.word = source, options, now, word
        self.headers: dict[bytes, _Header] = {}

    def run(
        self,
        lines: Iterable[tuple[int, bytes | None]],
        write: Callable[[str], object],
        warn: Callable[[str], None] | None,
        progress: Callable[[int, int | None], None] | None,
    ) -> int:
        """Verify every line; see :func:`verify_batch`."""
        headers, ring, options, now = self.headers, self.source.ring, self.options, self.now
        first = done = 0
        for n, raw in lines:
            line = None
            if raw is not None:  # the common case first: a valid token whose header was seen (see _fast)
                h, _, rest = raw.partition(b".")
                known = headers.get(h)
                if known is not None and known.ring is ring():
                    p, dot, s = rest.partition(b".")
                    s = s.rstrip()  # the line's end
                    if dot and len(h) + len(p) + len(s) + 2 <= MAX_TOKEN_BYTES:
                        line = _fast(n, raw, h, p, s, known, options, now if now is not None else clock.now())
            if line is None:  # anything else goes the whole way, as verify() alone
                if raw is None:
                    line, code = _too_long(n), 5
                elif not raw.strip():
                    continue
                else:
                    line, code = self.full(n, raw)
                if warn is not None:
                    for w in self.source.take_warnings():
                        warn(w)
                if code and not first:
                    first = code
            write(line)
            done += 1
            if progress is not None:
                progress(done, None)
        return first

    def full(self, n: int, raw: bytes) -> tuple[str, int]:
        """``(result line, exit code)`` of one token through :func:`verify`."""
        try:
            res = verify(raw, self.source, self.options, self.now)
            line = f'{{"line": {n}, "valid": true, "exit": 0, "kid": {_json(res.kid)}, '
            line += f'"sub": {_json(res.claims.get("sub"))}}}\n'
        except PrismeKeysError as exc:
            doc: dict[str, Any] = {"line": n, "valid": False, "exit": exc.exit_code, "error": self.word(exc.message)}
        except RecursionError:  # a claim too deeply nested to write back
            doc = {"line": n, "valid": False, "exit": 5, "error": "the token's JSON is nested too deeply"}
        except ValueError as exc:
            doc = {"line": n, "valid": False, "exit": 5, "error": f"malformed token: {exc}"}
        else:
            self._remember(raw)
            return line, 0
        return json.dumps(doc, ensure_ascii=False) + "\n", doc["exit"]

    def _remember(self, raw: bytes) -> None:
        """Keep the checks of a valid token's header segment (a bare token's only) for the batch."""
        parts = bare_segments(raw.strip())
        if parts is None:
            return
        ring = self.source.ring()
        try:
            header = json_object(b64_segment(parts[0].decode("ascii"), 0), 0)
            alg = _check_header(header, self.options)
            kid = header.get("kid")
            cands = candidate_keys(self.source, kid, alg, refresh=False)
        except PrismeKeysError:
            return
        if not cands or self.source.ring() is not ring:
            return
        if len(self.headers) >= MAX_HEADERS:
            self.headers.clear()
        keys = tuple((entry.verifier(alg, many=True), _json(entry.kid)) for entry in cands if entry.bits >= MIN_BITS)
        self.headers[parts[0]] = _Header(ring, keys)


def verify_batch(
    lines: Iterable[tuple[int, bytes | None]],
    source: KeySource,
    options: VerifyOptions,
    write: Callable[[str], object],
    warn: Callable[[str], None] | None = None,
    now: datetime | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    word: Callable[[str], str] = str,
) -> int:
    """Verify one token per line; write one JSON line per token ``{line, valid, exit, error?, kid?, sub?}``.

    Blank lines are skipped (their numbers still count). Keys are fetched and built once
    (a refetch after an unknown kid is rate-limited by the source). Memory stays flat.
    ``progress(tokens_done, None)`` is called after each token (the total is unknown).
    ``word`` words each error's message for the front end (see :class:`prisme_keys.errors.Worded`;
    the command line passes :func:`prisme_keys.cli.words.say`).
    ``now``: the time every token is checked at (default: :func:`clock.now` for each token).

    Returns:
        0 when every token is valid, else the exit code of the first failure.
    """
    return _Batch(source, options, now, word).run(lines, write, warn, progress)
