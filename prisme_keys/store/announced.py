"""What the fleet was last told, and what it should be told now (pending announcements).

The gateways and the runtime learn about key changes only from announcements
(``gateway.jwks.updated`` plus the runtime's signing key, see :mod:`prisme_keys.publish.announce`).
The key file remembers the last announcement that fully succeeded as a top-level member::

    "announced": {"signingKid": "<kid>", "kids": ["<kid>", ...], "at": "<ISO-8601 UTC>"}

``signingKid`` is the key the runtime was given, ``kids`` the published set (newest first) the
gateways were told to load, ``at`` the time of the announcement. The member is written in the
same locked, atomic transaction as every other key-file change (:mod:`prisme_keys.store.keyfile`);
the format stays 1 and readers that do not know it keep it verbatim.

The *expected* state at ``now`` is the signing key active at ``now`` (a ``next`` key whose
``activatesAt`` has passed counts) and the kids of every record. An announcement is *pending*
when the expected state differs from the recorded one; a key file without the member has never
been announced, so its whole state is pending. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prisme_keys import clock
from prisme_keys.errors import KeyFileError
from prisme_keys.store import rotation
from prisme_keys.store.keyfile import KeySet
from prisme_keys.store.records import KeyRecord

#: The top-level key-file member holding the last successful announcement.
MEMBER = "announced"


@dataclass(frozen=True)
class FleetState:
    """What the gateways and the runtime should hold.

    Attributes:
        signing_kid: the kid of the signing key (the runtime's key), or ``None`` (never told).
        kids: the published kids, newest first.
    """

    signing_kid: str | None
    kids: tuple[str, ...]


@dataclass(frozen=True)
class Announced:
    """The last successful announcement recorded in the key file.

    Attributes:
        state: the signing kid and published kids announced.
        at: when, ISO-8601 UTC with milliseconds and ``Z``.
    """

    state: FleetState
    at: str

    def to_dict(self) -> dict[str, Any]:
        """The key-file member ``{signingKid, kids, at}`` (also the ``--json`` shape)."""
        return {"signingKid": self.state.signing_kid, "kids": list(self.state.kids), "at": self.at}


@dataclass(frozen=True)
class Pending:
    """An announcement the fleet has not had yet.

    Attributes:
        state: the expected state to announce.
        created: kids published now and not announced (newest first).
        deleted: kids announced but no longer published.
        signing_changed: the runtime must get another signing key.
        since: ISO time since when the fleet is behind, or ``None`` when nothing was ever announced.
            It is the earliest dated change (a created key's ``createdAt``, the new signing key's
            ``activatesAt``), not before the last announcement; removed keys leave no date, so a
            removal alone is dated by the last announcement.
        last: the last announcement, or ``None`` (never announced).
    """

    state: FleetState
    created: tuple[str, ...]
    deleted: tuple[str, ...]
    signing_changed: bool
    since: str | None
    last: Announced | None

    def to_dict(self) -> dict[str, Any]:
        """``{signingKid, kids, created, deleted, signingChanged, since}`` for ``--json``."""
        return {
            "signingKid": self.state.signing_kid,
            "kids": list(self.state.kids),
            "created": list(self.created),
            "deleted": list(self.deleted),
            "signingChanged": self.signing_changed,
            "since": self.since,
        }


def expected(records: list[KeyRecord], now: datetime) -> FleetState:
    """The state the fleet should hold at ``now``: the signing key (see :func:`rotation.signing_record`)
    and every record's kid, newest first (the published JWKS)."""
    signing = rotation.signing_record(records, now)
    return FleetState(signing["kid"] if signing else None, tuple(r["kid"] for r in rotation.newest_first(records)))


def _bad(path: Any, why: str) -> KeyFileError:
    return KeyFileError(
        f'key file {path} is unusable: its "{MEMBER}" member {why}; it was left unchanged', code="key_file_corrupt"
    )


def last_announced(keyset: KeySet, path: Any = "<key file>") -> Announced | None:
    """The recorded last announcement, or ``None`` when the key file has none.

    Raises:
        KeyFileError: the member is present but malformed (not ``{signingKid: str|null,
            kids: [str], at: ISO-8601}``); nothing is "repaired".
    """
    doc = keyset.extra.get(MEMBER)
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise _bad(path, "is not an object")
    kid, kids, at = doc.get("signingKid"), doc.get("kids"), doc.get("at")
    if kid is not None and not isinstance(kid, str):
        raise _bad(path, "has a signingKid that is not a string")
    if not isinstance(kids, list) or not all(isinstance(k, str) for k in kids):
        raise _bad(path, "has kids that are not a list of strings")
    try:
        if not isinstance(at, str):
            raise TypeError(at)
        clock.parse_iso(at)
    except (ValueError, TypeError):
        raise _bad(path, "has an at that is not an ISO-8601 time") from None
    return Announced(FleetState(kid, tuple(kids)), at)


def pending(
    keyset: KeySet, now: datetime, *, known_deleted: Iterable[str] = (), path: Any = "<key file>"
) -> Pending | None:
    """The pending announcement at ``now``, or ``None`` when the fleet is up to date.

    Args:
        keyset: the key file's content.
        now: the time the signing key is chosen at (UTC).
        known_deleted: kids the caller has just removed; announced as deleted too when the
            record does not list them (e.g. a key file never announced before).
        path: the key file, for messages.

    Raises:
        KeyFileError: a malformed ``announced`` member (see :func:`last_announced`).
    """
    last = last_announced(keyset, path)
    want = expected(keyset.records, now)
    told = last.state if last else FleetState(None, ())
    created = tuple(k for k in want.kids if k not in told.kids)
    deleted = [k for k in told.kids if k not in want.kids]
    deleted += [k for k in known_deleted if k not in want.kids and k not in deleted]
    signing_changed = want.signing_kid != told.signing_kid
    if last is not None and not created and not deleted and not signing_changed:
        return None
    return Pending(want, created, tuple(deleted), signing_changed, _since(keyset, want, created, last), last)


def _since(keyset: KeySet, want: FleetState, created: tuple[str, ...], last: Announced | None) -> str | None:
    if last is None:
        return None
    by_kid = {r["kid"]: r for r in keyset.records}
    times = [rotation.t(by_kid[k], "createdAt") for k in created]
    if want.signing_kid != last.state.signing_kid and want.signing_kid in by_kid:
        times.append(rotation.t(by_kid[want.signing_kid], "activatesAt"))
    floor = clock.parse_iso(last.at)
    return clock.iso(max(floor, min(times))) if times else last.at


def record(keyset: KeySet, state: FleetState, now: datetime) -> Announced:
    """Write ``state`` announced at ``now`` into ``keyset`` (the caller commits the transaction).

    Returns:
        The new :class:`Announced`.
    """
    done = Announced(state, clock.iso(now))
    keyset.extra[MEMBER] = done.to_dict()
    return done


def describe(p: Pending) -> str:
    """One line of what ``p`` announces: ``signing key B (announced: A), created B, deleted C``."""
    bits = []
    if p.signing_changed:
        told = p.last.state.signing_kid if p.last else None
        bits.append(f"signing key {p.state.signing_kid}" + (f" (announced: {told})" if told else ""))
    if p.created:
        bits.append("created " + ", ".join(p.created))
    if p.deleted:
        bits.append("deleted " + ", ".join(p.deleted))
    return ", ".join(bits)


@dataclass(frozen=True)
class Status:
    """The last announcement and the pending one, as ``list`` and ``doctor`` show them."""

    last: Announced | None
    pending: Pending | None

    def to_dict(self) -> dict[str, Any]:
        """``{"last": {signingKid, kids, at} | None, "pending": {...} | None}`` for ``--json``."""
        return {
            "last": self.last.to_dict() if self.last else None,
            "pending": self.pending.to_dict() if self.pending else None,
        }


def status(keyset: KeySet, now: datetime, path: Any = "<key file>") -> Status:
    """The recorded announcement and the pending one at ``now``.

    Raises:
        KeyFileError: a malformed ``announced`` member.
    """
    return Status(last_announced(keyset, path), pending(keyset, now, path=path))
