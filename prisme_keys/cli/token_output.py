"""The streamed outputs of the token commands: ``--json mint --count N``'s list, and ``verify
--batch``'s result lines or (``--json``) its document, written as the tokens are minted or verified:
memory flat in N, a reader that goes away stops the work at the next write, results held only
until a read of stdin that may wait, and a ``--json`` document never cut inside a member.
"""

# No ``from __future__ import annotations`` here: see prisme_keys.cli.app (start-up time).
import json
import sys
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

from prisme_keys.cli.output import JsonStream
from prisme_keys.cli.streams import WholeWrites, whole_writes


def stream_json_tokens(st: Any, tokens: Iterable[Any]) -> None:
    """``--json mint --count N``: the list of ``{token, header, claims}`` written and flushed token by
    token (memory flat in N; a reader that goes away stops the work), each token whole (Ctrl-C waits
    for it: :func:`~prisme_keys.cli.streams.whole_writes`); the runner ends a list that stops early."""
    out = sys.stdout
    with whole_writes() as whole:
        doc = JsonStream(out.write, flush=out.flush)
        st.end_document = lambda _code: doc.close_begun()
        for m in tokens:
            with whole:
                doc.add(m.to_dict())
                out.flush()
        with whole:
            doc.close()


class BatchStreams:
    """stdin and stdout of ``verify --batch``: result lines are held and written out together, before
    each read of stdin (which may wait for input: a pipe, a terminal) and at the end; the bytes
    read are counted (for the progress estimate). ``whole``: the section each writing-out is made in
    (:class:`~prisme_keys.cli.streams.WholeWrites`, so Ctrl-C never cuts it; none: a plain write)."""

    def __init__(self, stdin: Any, stdout: Any, whole: WholeWrites | None = None) -> None:
        self.stdin, self.stdout, self.read = stdin, stdout, 0
        self.held: list[str] = []
        self.hold = self.held.append
        self.whole: Any = whole if whole is not None else nullcontext()

    def read1(self, size: int) -> bytes:
        self.flush()
        data: bytes = self.stdin.read1(size)
        self.read += len(data)
        return data

    def flush(self) -> None:
        if self.held:
            with self.whole:
                text = "".join(self.held)
                self.held.clear()
                self.stdout.write(text)
                self.stdout.flush()


def verify_batch(st: Any, source: Any, opts: Any, warn: Any, workers: int) -> int:
    """``verify --batch``: JSON lines on stdout (one document with ``--json``, streamed: see
    :class:`JsonResults`), progress on stderr. Results are written in sections Ctrl-C does not cut
    (:func:`~prisme_keys.cli.streams.whole_writes`): never half a line, nor half a member."""
    with whole_writes() as whole:
        return _run_batch(st, source, opts, warn, workers, whole)


def _run_batch(st: Any, source: Any, opts: Any, warn: Any, workers: int, whole: WholeWrites) -> int:
    """:func:`verify_batch` in ``whole`` (the sections Ctrl-C does not cut); with ``--json`` its
    document is streamed."""
    import os
    import stat

    from prisme_keys.cli.progress import Progress, wanted
    from prisme_keys.cli.words import say
    from prisme_keys.tokens import batch

    streams = BatchStreams(sys.stdin.buffer, sys.stdout, whole)
    estimate = None
    try:
        info = os.fstat(sys.stdin.fileno())
        size = info.st_size if stat.S_ISREG(info.st_mode) else 0
    except (OSError, ValueError, AttributeError):  # closed, or not a real file (in-process tests)
        size = 0
    if size > 0:  # a regular file: tokens so far, scaled by the bytes read so far

        def estimate(done: int) -> int | None:
            return round(done * size / streams.read) if streams.read else None

    results = JsonResults(streams, whole) if st.json else None
    if results is not None:
        st.end_document = results.end_begun
    with Progress("verifying", "tokens", enabled=wanted(st, streams_to_stdout=True), estimate_total=estimate) as bar:
        try:
            rc = batch.verify_stream(
                streams,
                source,
                opts,
                streams.hold if results is None else results.add,
                warn=warn,
                now=st.now_override,  # --now, else the real clock as each piece arrives
                progress=bar if bar.enabled else None,
                word=say,
                workers=workers,
                processes=True,  # this process is the command's own: forked children where possible
            )
        finally:
            streams.flush()  # what was verified is written, even when interrupted
    if results is not None:
        results.end(rc)
    sys.stdout.flush()
    return rc


class JsonResults:
    """The ``--json`` document of ``verify --batch``, streamed through the :class:`BatchStreams` (so
    written before each read of stdin): ``{"results": [...], "tokens", "valid", "invalid", "exit"}``,
    each result added as it is known, the counts after the list (memory flat in the tokens). Each
    result is held and counted in one of ``whole``'s sections (Ctrl-C never parts the two)."""

    def __init__(self, streams: BatchStreams, whole: WholeWrites) -> None:
        self.doc = JsonStream(streams.hold, key="results", flush=streams.flush)
        self.whole, self.valid = whole, 0

    def add(self, line: str) -> None:
        """Add one result line of :func:`prisme_keys.tokens.batch.verify_stream` (a JSON object)."""
        result = json.loads(line)
        with self.whole:
            self.doc.add(result)
            self.valid += result["valid"] is True

    def counts(self, code: int) -> dict[str, int]:
        n = self.doc.count
        return {"tokens": n, "valid": self.valid, "invalid": n - self.valid, "exit": code}

    def end(self, code: int) -> None:
        """Close the document: the counts, ``exit`` the command's exit code."""
        with self.whole:
            self.doc.close(self.counts(code))

    def end_begun(self, code: int) -> None:
        """Close the document when a result was written (a batch stopped early with exit ``code``)."""
        self.doc.close_begun(self.counts(code))
