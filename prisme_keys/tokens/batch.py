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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from prisme_keys import clock
from prisme_keys.errors import PrismeKeysError
from prisme_keys.jwk import MIN_BITS
from prisme_keys.text import BOM_BYTES, json_utf8, strip_bom_bytes
from prisme_keys.tokens.jws import MAX_TOKEN_BYTES, b64_segment, b64url_bytes, bare_segments, json_object
from prisme_keys.tokens.keyring import KeyRing, KeySource
from prisme_keys.tokens.verify import VerifyOptions, _check_header, candidate_keys, check_claims, verify
from prisme_keys.tokens.workers import check_workers, close_pool, thread_pool

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from prisme_keys.tokens.forked import Forked

#: Bytes asked of the stream per read: a read may wait for input, so the caller's stream can
#: write out the results so far first (see :func:`iter_lines`).
CHUNK = 64 * 1024
#: Distinct header segments remembered per batch; past that the table starts again (flat memory).
MAX_HEADERS = 256
#: Fewest lines a pool thread is given at a time: a piece of fewer than twice this is verified in the
#: calling thread (a thread's hand-over costs about what one token does).
MIN_SLICE = 16
#: A line of a piece whose fast path has not been worked out (its slice stopped on an error).
_UNDONE = object()


def iter_pieces(stream: Any, max_len: int = MAX_TOKEN_BYTES + 4096) -> Iterator[list[tuple[int, bytes | None]]]:
    """The lines of a binary stream grouped by the read that completed them, with flat memory.

    Yields lists of ``(line_number, line_bytes)`` (numbers from 1), one list per read that ended at
    least one line. Each line keeps its ``\\n`` (the last line may have none). A line longer than
    ``max_len`` bytes (its ``\\n`` not counted) is skipped to its end and given as ``None``. The
    stream is read with ``read1(n)`` (``read(n)`` when it has none) in pieces of :data:`CHUNK`
    bytes, so a list holds only what had arrived: a stream that must show earlier results before
    it waits for input (a pipe, a terminal) can write them out in ``read1``.
    """
    read = getattr(stream, "read1", None) or stream.read
    n = 0
    head = b""  # the start of a line that the last piece did not finish
    skipping = False  # the current line is already longer than max_len
    first = True  # a UTF-8 byte-order mark may start the stream (a file saved by a Windows editor)
    while True:
        piece = read(CHUNK)
        if not piece:
            break
        if first:
            while len(piece) < len(BOM_BYTES) and BOM_BYTES.startswith(piece):  # the mark may come in parts
                more = read(len(BOM_BYTES) - len(piece))
                if not more:
                    break
                piece += more
            piece, first = strip_bom_bytes(piece), False
            if not piece:
                continue
        lines: list[tuple[int, bytes | None]] = []
        start = 0
        end = piece.find(b"\n")
        while end >= 0:
            n += 1
            if skipping or len(head) + end - start > max_len:
                skipping = False
                head = b""
                lines.append((n, None))
            elif head:
                lines.append((n, head + piece[start : end + 1]))
                head = b""
            else:
                lines.append((n, piece[start : end + 1]))
            start = end + 1
            end = piece.find(b"\n", start)
        if not skipping:
            head += piece[start:]
            if len(head) > max_len:
                skipping, head = True, b""
        if lines:
            yield lines
    if skipping or head:
        yield [(n + 1, None if skipping else head)]


def iter_lines(stream: Any, max_len: int = MAX_TOKEN_BYTES + 4096) -> Iterator[tuple[int, bytes | None]]:
    """Yield ``(line_number, line_bytes)`` from a binary stream: the lines of :func:`iter_pieces`, one by one."""
    for lines in iter_pieces(stream, max_len):
        yield from lines


#: Per usable candidate key of a header (in ``verify``'s order): its signature check and its kid as JSON.
_Keys = tuple[tuple[Callable[[bytes, bytes], bool], str], ...]
#: A token ready for its RSA check: signing input, signature, ``sub`` as JSON, the candidate keys.
_Job = tuple[bytes, bytes, str, _Keys]
#: A forked child's verdict on one line of its slice: ``None`` (declined: :func:`verify` must give the
#: verdict), else ``(sub as JSON, kid as JSON of the key that accepted the signature, or None)``.
_Answer = tuple[str, str | None] | None


@dataclass(frozen=True)
class _Header:
    """A header segment whose checks passed in this batch: the ring its keys were chosen from, and
    per usable candidate key (in order) its signature check and its kid as JSON."""

    ring: KeyRing
    keys: _Keys


def _json(value: Any) -> str:
    """``value`` as :func:`prisme_keys.text.json_utf8` writes it (an ASCII string's JSON at once)."""
    if type(value) is str:
        text: str = encode_basestring(value)
        if text.isascii():
            return text
    return json_utf8(value)


def _signed_by(keys: _Keys, signing_input: bytes, sig: bytes) -> str | None:
    """The kid (as JSON) of the first of ``keys`` whose RSA check accepts ``sig``, in ``verify``'s
    order; else ``None``."""
    for check, kid in keys:
        if check(signing_input, sig):
            return kid
    return None


def _valid(n: int, kid: str, sub_json: str) -> str:
    """The result line of a valid token (as :meth:`_Batch.full` writes it)."""
    return f'{{"line": {n}, "valid": true, "exit": 0, "kid": {kid}, "sub": {sub_json}}}\n'


def _too_long(n: int) -> str:
    doc = {"line": n, "valid": False, "exit": 5, "error": f"line is longer than {MAX_TOKEN_BYTES} bytes (64 KiB)"}
    return json_utf8(doc) + "\n"


def _can_fork() -> bool:
    """Whether this process may fork children now (:func:`prisme_keys.tokens.forked.can_fork`)."""
    from prisme_keys.tokens.forked import can_fork

    return can_fork()


def _bounds(k: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` slices ``(lo, hi)`` of ``range(k)``, in order, their sizes differing by one at most."""
    return [(k * j // parts, k * (j + 1) // parts) for j in range(parts)]


class _Ahead:
    """One piece's fast path, its RSA checks made by the pool (or forked children) against ``ring``. Per
    line: in ``jobs`` what :meth:`_Batch._prepare` gave (``None``: declined), in ``kids`` the kid that signed
    it (``None``: no key did, or declined; :data:`_UNDONE`: its slice stopped on an error); ``slices``:
    ``(lo, hi, task)``, ``task`` a pool's future or the error a slice run here stopped on."""

    __slots__ = ("jobs", "kids", "ring", "slices")

    def __init__(self, ring: KeyRing, jobs: list[_Job | None]) -> None:
        self.ring, self.jobs = ring, jobs
        self.kids: list[Any] = [_UNDONE] * len(jobs)
        self.slices: list[tuple[int, int, Future[None] | Exception]] = []

    def line(self, i: int, n: int, job: _Job) -> str | None:
        """The result line of line index ``i`` (number ``n``, ``job`` its prepared token) when a key
        accepted its signature, else ``None``.

        Raises:
            BaseException: what stopped the slice of line ``i``, in the calling thread.
        """
        kid = self.kids[i]
        if kid is _UNDONE:
            for lo, hi, task in self.slices:
                if lo <= i < hi:
                    if isinstance(task, Exception):
                        raise task
                    task.result()
            raise AssertionError("a slice stopped without an error")  # pragma: no cover
        return None if kid is None else _valid(n, kid, job[2])

    def here(self, lo: int, hi: int) -> None:
        """:meth:`check` of ``lo <= i < hi`` in the calling thread; an error it stops on is kept in
        ``slices``, as a pool's future keeps it, and raised at the line it belongs to (:meth:`line`)."""
        try:
            self.check(lo, hi)
        except Exception as exc:
            self.slices.append((lo, hi, exc))

    def check(self, lo: int, hi: int) -> None:
        """``kids[i]`` for ``lo <= i < hi``: the RSA checks, the part that runs in the pool's threads."""
        jobs, kids = self.jobs, self.kids
        for i in range(lo, hi):
            job = jobs[i]
            kids[i] = None if job is None else _signed_by(job[3], job[0], job[1])


class _Batch:
    """The state of one :func:`verify_batch` call: the checked header segments, nothing global.

    With workers, the RSA checks of a piece's fast path run in a pool's threads as well as in the
    calling thread; the pool only reads what this thread prepared. Every change (the table, a
    key-set refetch, warnings) is made in the calling thread, line by line in order.
    """

    def __init__(
        self,
        source: KeySource,
        options: VerifyOptions,
        now: datetime | None,
        word: Callable[[str], str] = str,
        workers: int = 1,
        processes: bool = False,
    ) -> None:
        self.source, self.options, self.now, self.word = source, options, now, word
        self.headers: dict[bytes, _Header] = {}
        # Forked children (see _children): wanted at all; the table's version (one more at each change);
        # the version seen at the last piece; the children and the (version, ring) they were forked with.
        self.processes, self.version, self.seen = processes and workers > 1 and _can_fork(), 0, -1
        self.children: list[Forked] = []
        self.forked_at: tuple[int, KeyRing] | None = None
        # One thread or processes: the verifier that is fastest alone (its RSA step holds the GIL);
        # threads: cryptography's verify, which releases the GIL (same verdicts: jwk.rsa_verifier).
        self.workers, self.many = workers, workers == 1 or self.processes

    def _threads_instead(self) -> None:
        """No forked child for the rest of the batch: the children ended, the table emptied (its
        verifiers held the GIL; threads need the ones that release it), to be learnt again."""
        from prisme_keys.tokens.forked import close_all

        close_all(self.children)
        self.processes = self.many = False
        self.headers.clear()
        self.version += 1

    def run(
        self,
        pieces: Iterable[Iterable[tuple[int, bytes | None]]],
        write: Callable[[str], object],
        warn: Callable[[str], None] | None,
        progress: Callable[[int, int | None], None] | None,
    ) -> int:
        """Verify every line, piece by piece; see :func:`verify_stream`. ``pieces``: lists of lines (with
        one worker, any iterables of lines: :func:`verify_batch` gives its lines as one piece)."""
        first = done = 0
        pools: list[Executor] = []  # made at the first piece large enough to share
        try:
            for line, code in self._results(pieces, warn, pools):
                if code and not first:
                    first = code
                write(line)
                done += 1
                if progress is not None:
                    progress(done, None)
        finally:
            if self.children:
                from prisme_keys.tokens.forked import close_all

                close_all(self.children)
            for pool in pools:
                close_pool(pool)
        return first

    def _ahead(
        self, lines: list[tuple[int, bytes | None]], pool: Executor, parts: int, now: datetime, ring: KeyRing
    ) -> _Ahead:
        """The fast path of ``lines`` against ``ring``: decoding and claims here (they hold the GIL:
        threads would only queue for it), the RSA checks (which release it) in ``parts`` slices, the
        first in this thread, the others in ``pool``."""
        prepare = self._prepare
        ahead = _Ahead(ring, [prepare(raw, ring, now) for _, raw in lines])
        bounds = _bounds(len(lines), parts)
        futures = [(lo, hi, pool.submit(ahead.check, lo, hi)) for lo, hi in bounds[1:]]
        ahead.slices.extend(futures)
        ahead.here(*bounds[0])
        for _, _, fut in futures:
            fut.exception()  # waits (a signal such as Ctrl-C interrupts the wait)
        return ahead

    def _ahead_forked(
        self, lines: list[tuple[int, bytes | None]], children: list[Forked], now: datetime, ring: KeyRing
    ) -> _Ahead:
        """The fast path of ``lines`` against ``ring`` in ``len(children) + 1`` slices, the first here,
        each other one whole (decoding, claims and RSA check) in a forked child. What a child did not
        answer (it died, stopped on an error) is done here, as :meth:`_ahead` does it."""
        bounds = _bounds(len(lines), len(children) + 1)
        pairs = list(zip(bounds[1:], children, strict=True))
        sent = [child.send(([raw for _, raw in lines[lo:hi]], now)) for (lo, hi), child in pairs]
        prepare = self._prepare
        ahead = _Ahead(ring, [None] * len(lines))
        jobs, kids = ahead.jobs, ahead.kids
        lo, hi = bounds[0]
        jobs[lo:hi] = [prepare(raw, ring, now) for _, raw in lines[lo:hi]]
        ahead.here(lo, hi)
        failed = False
        for ((lo, hi), child), ok in zip(pairs, sent, strict=True):
            answers: list[_Answer] = (child.receive() if ok else None) or []
            for i, answer in enumerate(answers[: hi - lo], lo):
                if answer is not None:
                    jobs[i], kids[i] = (b"", b"", answer[0], ()), answer[1]
            rest = lo + min(len(answers), hi - lo)
            if rest < hi:  # not answered: done here, and threads for the rest of the batch
                jobs[rest:hi] = [prepare(raw, ring, now) for _, raw in lines[rest:hi]]
                ahead.here(rest, hi)
                failed = True
        if failed:
            self._threads_instead()
        return ahead

    def _answer(self, ring: KeyRing, request: tuple[list[bytes | None], datetime]) -> list[_Answer]:
        """What a forked child answers for a slice of a piece (see :meth:`_ahead_forked`), line by line;
        it stops at an unexpected error (the command then meets it at its line, doing the rest itself)."""
        lines, now = request
        answers: list[_Answer] = []
        try:
            for raw in lines:
                job = self._prepare(raw, ring, now)
                answers.append(None if job is None else (job[2], _signed_by(job[3], job[0], job[1])))
        except Exception:  # a bug: the command does the rest itself and meets it at its line
            pass
        return answers

    def _children(self, wanted: int, ring: KeyRing) -> list[Forked] | None:
        """``wanted`` forked children holding the table as it is now with ``ring``; ``[]``: this piece is
        checked in this thread alone; ``None``: no child for the rest of the batch (threads instead).

        The first children are forked once the table holds a header; later ones (the table or the ring
        changed) only once the table has stayed the same for a whole piece: input that brings a new
        header in every piece is checked in this thread, not with a fork per piece. Forking is given up
        for the batch when it is not possible (see :func:`~prisme_keys.tokens.forked.can_fork`) or fails.
        """
        from prisme_keys.tokens.forked import Forked, close_all

        at = self.forked_at
        if at is not None and at[0] == self.version and at[1] is ring:
            return self.children[:wanted]
        settled, self.seen = self.seen == self.version, self.version
        if not self.headers or not (settled or at is None):
            return []
        close_all(self.children)
        self.forked_at = None
        try:
            if _can_fork():
                for _ in range(self.workers - 1):
                    self.children.append(Forked(lambda request: self._answer(ring, request)))
                self.forked_at = (self.version, ring)
                return self.children[:wanted]
        except OSError:  # no fork (too many processes, no memory)
            pass
        self._threads_instead()
        return None

    def _prepare(self, raw: bytes | None, ring: KeyRing, now: datetime) -> _Job | None:
        """The fast path of a line up to its RSA check: ``(signing_input, signature, sub as JSON, keys)``,
        or ``None`` when :func:`verify` must give the verdict. Reads the table, changes nothing.

        The token ``h.p.s`` (the start of the line, then only whitespace) qualifies when its header
        segment ``h`` is in the table with ``ring``, payload and signature are canonical base64url (so
        the token is bare: :func:`~prisme_keys.tokens.jws.clean_token` returns it unchanged), and the
        payload is a JSON object whose claims pass :func:`~prisme_keys.tokens.verify.check_claims`.
        """
        if raw is None:
            return None
        h, _, rest = raw.partition(b".")
        known = self.headers.get(h)
        if known is None or known.ring is not ring:
            return None
        p, dot, s = rest.partition(b".")
        s = s.rstrip()  # the line's end
        if not dot or len(h) + len(p) + len(s) + 2 > MAX_TOKEN_BYTES:
            return None
        payload, sig = b64url_bytes(p), b64url_bytes(s)
        if payload is None or sig is None:
            return None
        try:
            claims = json_object(payload, 1)
            check_claims(claims, self.options, now)
            sub = claims.get("sub")
            sub_json = _json(sub)
        except (PrismeKeysError, ValueError, RecursionError):  # an invalid token: verify() words the verdict
            return None
        return raw[: len(h) + 1 + len(p)], sig, sub_json, known.keys

    def fast_line(self, n: int, raw: bytes | None, ring: KeyRing, now: datetime) -> str | None:
        """The result line of a valid token whose header segment is in the table with ``ring`` (its checks
        and key choice made once: see the module), else ``None``. Reads the table, changes nothing."""
        job = self._prepare(raw, ring, now)
        if job is None:
            return None
        kid = _signed_by(job[3], job[0], job[1])
        return None if kid is None else _valid(n, kid, job[2])

    def _results(
        self,
        pieces: Iterable[Iterable[tuple[int, bytes | None]]],
        warn: Callable[[str], None] | None,
        pools: list[Executor],
    ) -> Iterator[tuple[str, int]]:
        """``(result line, exit code)`` of each non-blank line, in order, exactly as one thread gives them.

        With workers, a piece of at least ``2 * MIN_SLICE`` lines is prepared for the pool (``pools``
        holds it once made). A token so prepared keeps the pool's verdict while the ring is the one it
        was prepared with: valid, or (no key accepted it) through :meth:`full`, which gives the same
        verdict as the fast path whenever the fast path gives one. Every other line goes as with one
        thread: the fast path against the table as it is now (a header learnt earlier in the piece, a
        key set refetched since), else :meth:`full`.
        """
        ring, workers = self.source.ring, self.workers
        for lines in pieces:
            # Without a fixed time, the lines of a piece (read from the stream at once) are checked at
            # the time the piece is taken up; lines handed over one by one, each at its own time.
            at = self.now if self.now is not None else clock.now() if isinstance(lines, list) else None
            ahead = None
            if workers > 1 and isinstance(lines, list) and len(lines) >= 2 * MIN_SLICE:
                parts, now, current = min(workers, len(lines) // MIN_SLICE), at or clock.now(), ring()
                children = self._children(parts - 1, current) if self.processes else None
                if children:
                    ahead = self._ahead_forked(lines, children, now, current)
                elif children is None:
                    if not pools:
                        pools.append(thread_pool(workers - 1))  # and this thread
                    ahead = self._ahead(lines, pools[0], parts, now, current)
            for i, (n, raw) in enumerate(lines):
                now = at if at is not None else clock.now()
                line = None
                job = ahead.jobs[i] if ahead is not None else None
                if job is not None and ahead is not None and ring() is ahead.ring:
                    line = ahead.line(i, n, job)
                elif raw is not None:  # the common case first: a valid token whose header was seen (see fast_line)
                    line = self.fast_line(n, raw, ring(), now)
                if line is not None:
                    yield line, 0
                    continue
                if raw is None:  # anything else goes the whole way, as verify() alone
                    line, code = _too_long(n), 5
                elif not raw.strip():
                    continue
                else:
                    line, code = self.full(n, raw, now)
                if warn is not None:
                    for w in self.source.take_warnings():
                        warn(w)
                yield line, code

    def full(self, n: int, raw: bytes, now: datetime) -> tuple[str, int]:
        """``(result line, exit code)`` of one token through :func:`verify`, at ``now``."""
        try:
            res = verify(raw, self.source, self.options, now)
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
        return json_utf8(doc) + "\n", doc["exit"]

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
        self.version += 1
        many = self.many
        keys = tuple((entry.verifier(alg, many=many), _json(entry.kid)) for entry in cands if entry.bits >= MIN_BITS)
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
    """Verify one token per line in the calling thread; write one JSON line per token
    ``{line, valid, exit, error?, kid?, sub?}``.

    ``lines``: ``(line_number, line_bytes)`` as :func:`iter_lines` gives them (``None`` for a line
    over the cap). Blank lines are skipped (their numbers still count). Keys are fetched and built
    once (a refetch after an unknown kid is rate-limited by the source). Memory stays flat.
    ``progress(tokens_done, None)`` is called after each token (the total is unknown).
    ``word`` words each error's message for the front end (see :class:`prisme_keys.errors.Worded`;
    the command line passes :func:`prisme_keys.cli.words.say`).
    ``now``: the time every token is checked at (default: :func:`clock.now` for each token).

    Returns:
        0 when every token is valid, else the exit code of the first failure.
    """
    return _Batch(source, options, now, word).run((lines,), write, warn, progress)


def verify_stream(
    stream: Any,
    source: KeySource,
    options: VerifyOptions,
    write: Callable[[str], object],
    *,
    warn: Callable[[str], None] | None = None,
    now: datetime | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    word: Callable[[str], str] = str,
    workers: int = 1,
    processes: bool = False,
) -> int:
    """:func:`verify_batch` over the lines of a binary ``stream``, with ``workers`` threads or processes.

    The stream is read piece by piece (:func:`iter_pieces`): each piece's results are written
    before the next read, so a producer that waits for each verdict gets it. With ``workers``
    above 1, the RSA checks of a piece's valid-looking tokens run in a pool of that many threads
    (:func:`prisme_keys.tokens.workers.thread_pool`, made at the first piece large enough); the verdicts,
    their order and every byte written are the same as with one thread. The pool is closed (its
    pending work cancelled, its threads joined) before this returns or raises. Memory stays flat:
    one piece at a time. ``now``: the time every token is checked at; by default the real clock,
    read for each piece as it is taken up (a long-running batch never judges by its start time).

    With ``processes`` (the command line's choice: it owns its process), the ``workers - 1`` others
    are children forked from this process (:mod:`prisme_keys.tokens.forked`) where that is possible
    (Linux, no other thread running), each doing decoding, claims and RSA checks of its slice of a
    piece: threads share only the RSA checks. Same verdicts, order and bytes; the children are
    ended before this returns or raises. Elsewhere, threads.

    Args:
        workers: threads or processes, 1 to :data:`prisme_keys.tokens.workers.MAX_WORKERS` (1: the
            calling thread only).
        processes: fork child processes rather than start threads, where possible.

    Raises:
        InvalidArgument: ``workers`` out of range (:func:`prisme_keys.tokens.workers.check_workers`).

    Returns:
        0 when every token is valid, else the exit code of the first failure.
    """
    check_workers(workers)
    return _Batch(source, options, now, word, workers, processes).run(iter_pieces(stream), write, warn, progress)
