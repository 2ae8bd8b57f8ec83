"""Announcing key changes to the gateways and the runtime over the platform's Redis broker.

What the reference platform does (``research-prisme-ai.md``; packages/broker, the gateway's
JWKStore and the runtime's JWK store), and what :func:`announce` reproduces:

1. ``gateway.jwks.updated`` with payload ``{"created": [kid], "deleted": [kid]}`` wrapped in the
   broker's envelope ``{type, payload, source: {host: {replica, service}, correlationId,
   serviceTopic}, createdAt, size}`` is added with ``XADD <stream> MAXLEN ~ BROKER_TOPIC_MAXLEN *
   value <JSON>`` to ``streams:<BROKER_NAMESPACE>gateway.jwks.updated`` and to
   ``streams:<BROKER_NAMESPACE>catchall_stream`` on ``BROKER_HOST``. Every gateway whose replica
   name differs from the event's reloads its keys from its store; this tool's replica name is
   ``prisme-keys@<hostname>``, so every gateway reloads.
2. The runtime keeps only the signing key. Either this tool writes ``runtime:jwk`` =
   ``{"key": <private JWK>}`` on ``CONTEXTS_CACHE_HOST`` and publishes ``runtime.jwks.updated``
   (payload ``{}``) on the broker, so every runtime replica reloads; or, with a runtime URL, it
   ``POST``s ``{"jwk": <private JWK>}`` to ``<runtime>/sys/certs`` with the header
   ``x-prismeai-api-key: INTERNAL_API_KEY`` and the runtime does both itself.

Both steps are idempotent: sending them again makes the gateways reload again and writes the
same runtime key. Secrets (the internal API key, the private JWK, passwords in Redis URLs)
never appear in results or error messages. ``redis`` and ``urllib`` are imported inside the
functions that use them.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import ConfigError, KeyFileError, NotifyError
from prisme_keys.jwk import RSAJwk
from prisme_keys.settings import Settings
from prisme_keys.store.announced import Announced, Pending
from prisme_keys.store.records import KeyRecord
from prisme_keys.text import cap, redact_url

GATEWAY_EVENT = "gateway.jwks.updated"
RUNTIME_EVENT = "runtime.jwks.updated"
RUNTIME_KEY = "runtime:jwk"
CATCHALL_STREAM = "catchall_stream"
STREAM_PREFIX = "streams:"
SERVICE = "prisme-keys"
API_KEY_HEADER = "x-prismeai-api-key"
#: Seconds to wait for a Redis connection / reply, and for the runtime's HTTP answer.
TIMEOUT = 5.0


def replica_name() -> str:
    """This tool's broker replica name, ``prisme-keys@<hostname>`` (never a gateway's own name)."""
    return f"{SERVICE}@{socket.gethostname()}"


def stream_name(namespace: str, topic: str) -> str:
    """``streams:<namespace><topic>``, the Redis stream of a topic (packages/broker redis driver)."""
    return f"{STREAM_PREFIX}{namespace or ''}{topic}"


def envelope(
    event_type: str, payload: dict[str, Any], now: datetime, correlation_id: str | None = None
) -> dict[str, Any]:
    """The broker's event envelope.

    Args:
        event_type: e.g. ``gateway.jwks.updated``.
        payload: the event payload (JSON-serializable).
        now: the event time (UTC), written as ``createdAt`` in the gateway's ISO format.
        correlation_id: default a new UUIDv4.

    Returns:
        ``{type, payload, source: {host: {replica, service}, correlationId, serviceTopic},
        createdAt, size}``; ``size`` is the UTF-8 byte length of the JSON payload.
    """
    body = json.dumps(payload, separators=(",", ":"))
    return {
        "type": event_type,
        "payload": payload,
        "source": {
            "host": {"replica": replica_name(), "service": SERVICE},
            "correlationId": correlation_id or str(uuid.uuid4()),
            "serviceTopic": event_type,
        },
        "createdAt": clock.iso(now),
        "size": len(body.encode("utf-8")),
    }


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise NotifyError("the Redis client is not installed; install it with: pip install redis") from None
    return redis


def _check_redis_url(url: str | None, setting: str) -> str:
    if not url:
        raise ConfigError(f"{setting} is not set; it must be a Redis URL such as redis://localhost:6379/10")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    db = parts.path.strip("/") if parts else ""
    if (
        parts is None
        or parts.scheme not in ("redis", "rediss", "unix")
        or (parts.scheme != "unix" and db and not db.isdigit())
    ):
        raise ConfigError(
            f"bad value for {setting}: {cap(redact_url(url))}; allowed: a Redis URL "
            "redis[s]://[user:password@]host:port/DB with a numeric database"
        )
    return url


def _runtime_target(runtime_url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(runtime_url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number from 0 to 65535)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unparsable URL or a bad port
        usable = False
    if not usable:
        raise ConfigError(
            f"the runtime URL must be an http(s) URL with a host and a valid port, not {cap(redact_url(runtime_url))}"
        )
    # URL/sys/certs: keep the URL's path (a runtime behind a prefix), one slash between them
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/sys/certs", parts.query, ""))


def check_settings(settings: Settings, *, runtime: bool = True, runtime_url: str | None = None) -> None:
    """Check the broker and runtime settings an announcement needs, without connecting.

    Args:
        runtime: the runtime will be updated too.
        runtime_url: the runtime's base URL (``POST /sys/certs``) instead of its Redis.

    Raises:
        ConfigError: ``BROKER_HOST`` (or, for the runtime, ``CONTEXTS_CACHE_HOST``) unset or not a
            Redis URL; ``INTERNAL_API_KEY`` unset or the runtime URL not http(s) with ``runtime_url``.
    """
    _check_redis_url(settings.broker_host, "BROKER_HOST")
    if not runtime:
        return
    if runtime_url is None:
        _check_redis_url(settings.contexts_cache_host, "CONTEXTS_CACHE_HOST")
        return
    if not settings.internal_api_key:
        raise ConfigError("INTERNAL_API_KEY is not set; the runtime's /sys/certs needs it")
    _runtime_target(runtime_url)


def _client(url: str | None, setting: str) -> Any:
    redis = _redis_module()
    url = _check_redis_url(url, setting)
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT)
    except ValueError as exc:
        raise ConfigError(f"bad value for {setting}: {redact_url(url)}: {exc}") from None


def _redis_failure(what: str, url: str, exc: Exception) -> NotifyError:
    detail = str(exc).strip().rstrip(".") or type(exc).__name__
    return NotifyError(f"cannot {what} at {redact_url(url)}: {detail}")


@dataclass
class NotifyResult:
    """What :func:`announce` delivered.

    Attributes:
        created, deleted: the kids announced in ``gateway.jwks.updated``.
        gateway_event: ``{stream: entry id}`` of the gateway event, or ``{}`` when not sent.
        runtime: ``"redis"``, ``"http"`` or ``None`` (not updated).
        runtime_kid: the signing key given to the runtime.
        runtime_event: ``{stream: entry id}`` of ``runtime.jwks.updated`` (Redis mode).
        correlation_id: the events' correlation id.
    """

    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    gateway_event: dict[str, str] = field(default_factory=dict)
    runtime: str | None = None
    runtime_kid: str | None = None
    runtime_event: dict[str, str] = field(default_factory=dict)
    correlation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no key material)."""
        return {
            "created": self.created,
            "deleted": self.deleted,
            "gateway_event": self.gateway_event,
            "runtime": self.runtime,
            "runtime_kid": self.runtime_kid,
            "runtime_event": self.runtime_event,
            "correlationId": self.correlation_id,
        }


def publish(
    settings: Settings, event_type: str, payload: dict[str, Any], now: datetime, correlation_id: str | None = None
) -> dict[str, str]:
    """``XADD`` one event to its stream and to the catch-all stream on ``BROKER_HOST``.

    Uses ``MAXLEN ~ BROKER_TOPIC_MAXLEN`` (approximate trimming) and one field ``value`` holding
    the JSON envelope, as the platform's Redis broker driver does.

    Returns:
        ``{stream name: entry id}``.

    Raises:
        ConfigError: ``BROKER_HOST`` unset or not a Redis URL.
        NotifyError: Redis unreachable or refusing (naming the address, never a password).
    """
    redis = _redis_module()
    url = settings.broker_host
    client = _client(url, "BROKER_HOST")
    doc = envelope(event_type, payload, now, correlation_id)
    value = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    streams = [
        stream_name(settings.broker_namespace, event_type),
        stream_name(settings.broker_namespace, CATCHALL_STREAM),
    ]
    try:
        ids = {}
        for s in streams:
            eid = client.xadd(s, {"value": value}, maxlen=settings.broker_topic_maxlen, approximate=True)
            ids[s] = eid.decode() if isinstance(eid, bytes) else str(eid)
        return ids
    except redis.exceptions.RedisError as exc:
        raise _redis_failure(f"publish {event_type} on the broker", url or "", exc) from None
    finally:
        client.close()


def set_runtime_key(settings: Settings, jwk: RSAJwk) -> None:
    """``SET runtime:jwk`` = ``{"key": jwk}`` (JSON) on ``CONTEXTS_CACHE_HOST``, as the runtime stores it.

    Raises:
        ConfigError: ``CONTEXTS_CACHE_HOST`` unset or not a Redis URL.
        NotifyError: Redis unreachable or refusing (address only, never the key).
    """
    redis = _redis_module()
    url = settings.contexts_cache_host
    client = _client(url, "CONTEXTS_CACHE_HOST")
    try:
        client.set(RUNTIME_KEY, json.dumps({"key": jwk}, separators=(",", ":")))
    except redis.exceptions.RedisError as exc:
        raise _redis_failure("write the runtime key on the runtime's Redis", url or "", exc) from None
    finally:
        client.close()


def post_runtime_key(settings: Settings, runtime_url: str, jwk: RSAJwk) -> int:
    """``POST <runtime_url>/sys/certs`` ``{"jwk": jwk}`` with the internal API key header.

    Redirects are not followed (the API key must not travel elsewhere).

    Returns:
        The HTTP status (2xx).

    Raises:
        ConfigError: ``INTERNAL_API_KEY`` unset, or the URL is not http(s).
        NotifyError: the runtime is unreachable, times out, or answers a non-2xx status.
    """
    import urllib.error
    import urllib.request

    if not settings.internal_api_key:
        raise ConfigError("INTERNAL_API_KEY is not set; the runtime's /sys/certs needs it")
    target = _runtime_target(runtime_url)

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(
        target,
        data=json.dumps({"jwk": jwk}).encode("utf-8"),
        method="POST",
        headers={"Content-Type": "application/json", API_KEY_HEADER: settings.internal_api_key, "User-Agent": SERVICE},
    )
    try:
        with opener.open(req, timeout=TIMEOUT) as resp:
            resp.read(65536)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"the runtime at {redact_url(target)} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifyError(f"cannot reach the runtime at {redact_url(target)}: {reason}") from None


def announce(
    settings: Settings,
    now: datetime,
    *,
    created: list[str] | None = None,
    deleted: list[str] | None = None,
    runtime: bool = True,
    runtime_url: str | None = None,
    signing: tuple[KeyRecord, RSAJwk] | None = None,
) -> NotifyResult:
    """Tell the gateways and the runtime about a key change (idempotent; safe to re-send).

    Publishes ``gateway.jwks.updated`` ``{created, deleted}`` (see :func:`publish`), then, when
    ``runtime``, gives the runtime the signing key at ``now`` from the key file: with
    ``runtime_url`` by :func:`post_runtime_key`, else by :func:`set_runtime_key` plus a
    ``runtime.jwks.updated`` event.

    Args:
        settings: effective settings (broker and runtime settings, key file).
        now: event time and the time the signing key is chosen at (UTC).
        created, deleted: kids to announce (may both be empty: a plain "reload").
        runtime: also update the runtime.
        runtime_url: the runtime's base URL (``POST /sys/certs``) instead of its Redis.
        signing: ``(record, private JWK)`` to give the runtime; default: read from the key file at ``now``.

    Raises:
        ConfigError: a broker/runtime setting is missing or bad.
        KeyFileError: (``runtime``) the key file is missing, corrupt or holds no private key.
        NotifyError: Redis or the runtime unreachable or refusing.
        InvalidArgument: a created or deleted kid :func:`prisme_keys.jwk.kid_problem` refuses.
    """
    from prisme_keys.store.lifecycle import signing_jwk

    res = NotifyResult(
        [jwk_rules.check_kid(k, "created") for k in created or []],
        [jwk_rules.check_kid(k, "deleted") for k in deleted or []],
        correlation_id=str(uuid.uuid4()),
    )
    jwk = None
    check_settings(settings, runtime=runtime, runtime_url=runtime_url)
    if runtime:
        rec, jwk = signing if signing is not None else signing_jwk(settings, now)
        res.runtime_kid = rec["kid"]
    res.gateway_event = publish(
        settings, GATEWAY_EVENT, {"created": res.created, "deleted": res.deleted}, now, res.correlation_id
    )
    if jwk is not None:
        if runtime_url is not None:
            post_runtime_key(settings, runtime_url, jwk)
            res.runtime = "http"
        else:
            set_runtime_key(settings, jwk)
            res.runtime_event = publish(settings, RUNTIME_EVENT, {}, now, res.correlation_id)
            res.runtime = "redis"
    return res


@dataclass
class AnnounceOutcome:
    """What :func:`announce_pending` found and sent.

    Attributes:
        pending: the announcement that was pending (``None``: the fleet was up to date).
        result: what was delivered (``None``: nothing was sent).
        recorded: the last announcement recorded in the key file: the one just sent, or, when
            nothing was sent, the one that was already there (``None``: never announced).
    """

    pending: Pending | None = None
    result: NotifyResult | None = None
    recorded: Announced | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"sent": false, "last"}``, or ``{"sent": true, **NotifyResult.to_dict(), "pending_since",
        "signing_changed"}`` (``pending_since`` ``None`` for a key file never announced, or a forced send)."""
        if self.result is None:
            return {"sent": False, "last": self.recorded.to_dict() if self.recorded else None}
        return {
            "sent": True,
            **self.result.to_dict(),
            "pending_since": self.pending.since if self.pending else None,
            "signing_changed": self.pending.signing_changed if self.pending else False,
        }


def announce_pending(
    settings: Settings,
    now: datetime,
    *,
    runtime_url: str | None = None,
    force: bool = False,
    known_deleted: Iterable[str] = (),
) -> AnnounceOutcome:
    """Send the pending announcement, if any, and record its success in the key file.

    Under the key file's lock: re-read the file, compare the state the fleet should hold at
    ``now`` (signing key, published kids) with the last recorded announcement
    (:mod:`prisme_keys.store.announced`), and when they differ send ``gateway.jwks.updated``
    with ``created``/``deleted`` computed against the recorded state plus the runtime update
    (see :func:`announce`), then record the new state (atomic replace, same transaction rules
    as every key-file change). The lock covers the decision, the send and the record, so two
    hosts running this at once send one announcement: the second sees nothing pending. A
    failed send records nothing: the announcement stays pending for the next call.

    Every command that changes the key file and announces (``rotate``, ``prune``, ``import``,
    ``revoke`` with ``--notify``) calls this after its own transaction has committed.

    Args:
        settings: effective settings (key file, broker, runtime).
        now: the time the signing key is chosen at and the event time (UTC).
        runtime_url: the runtime's base URL (``POST /sys/certs``) instead of its Redis.
        force: send the current state even when nothing is pending (a plain reload).
        known_deleted: kids the caller has just removed, announced as deleted when the record
            does not list them (a key file never announced before).

    Returns:
        An :class:`AnnounceOutcome` (``result`` is ``None`` when nothing was pending).

    Raises:
        KeyFileError: key file missing, corrupt (including a malformed ``announced`` member),
            lock timeout, no private key or passphrase for the signing key.
        ConfigError: a broker/runtime setting is missing or bad.
        NotifyError: Redis or the runtime unreachable or refusing; nothing was recorded.
    """
    from prisme_keys.store import announced, lifecycle, rotation

    check_settings(settings, runtime_url=runtime_url)
    known_deleted = tuple(known_deleted)
    kf = lifecycle.open_keyfile(settings)
    # An unlocked read first, so that a run with nothing pending (most hourly cron runs) takes no
    # lock; a change written after this read is announced by the run that wrote it, or the next one.
    pre = kf.load()
    if not force and announced.pending(pre, now, known_deleted=known_deleted, path=kf.path) is None:
        return AnnounceOutcome(recorded=announced.last_announced(pre, kf.path))
    with kf.transaction() as tx:
        pend = announced.pending(tx.keyset, now, known_deleted=known_deleted, path=kf.path)
        if pend is None and not force:
            return AnnounceOutcome(recorded=announced.last_announced(tx.keyset, kf.path))
        state = pend.state if pend else announced.expected(tx.keyset.records, now)
        rec = rotation.signing_record(tx.keyset.records, now)
        if rec is None:  # parse() refuses an empty key set; defensive
            raise KeyFileError(f"key file {kf.path} holds no key")
        jwk = lifecycle.private_jwk(kf, tx.keyset, rec)
        res = announce(
            settings,
            now,
            created=list(pend.created) if pend else [],
            deleted=list(pend.deleted) if pend else [],
            runtime_url=runtime_url,
            signing=(rec, jwk),
        )
        done = announced.record(tx.keyset, state, now)
        tx.commit()
    return AnnounceOutcome(pend, res, done)
