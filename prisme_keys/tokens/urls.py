"""JWKS URLs: the transport rules every fetch applies (https, loopback, redirects, well-formed URLs).

* ``https://`` is required, except for loopback hosts (``localhost``, 127.0.0.0/8, ``::1``) or
  with ``allow_http``; a redirect never goes from https to http.
* A malformed URL given by the user is a usage error (exit 2, ``invalid_url``); one a server
  redirects to (a ``Location`` that does not parse, a bad or out-of-range port, a host that is not
  one, userinfo, which RFC 9110 section 4.2.4 says to treat as an error) is a fetch failure
  (exit 9, ``bad_url``). Every URL, the user's and each ``Location``, goes through
  :func:`check_url` (redirects through :func:`redirect_target`).
* Every URL in a message is shown through :func:`prisme_keys.text.redact_url` (password masked).
"""

from __future__ import annotations

from typing import Any

from prisme_keys.errors import FetchError, InvalidArgument, Worded
from prisme_keys.text import cap, redact_url, shown


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` (and ``*.localhost``) and loopback IP literals."""
    import ipaddress

    if not host:
        return False
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_http: bool, previous: str | None = None) -> Any:
    """Split ``url`` and apply the transport rules; ``previous`` is the URL that redirected to it.

    Raises:
        InvalidArgument: the URL given is malformed (exit 2, code ``invalid_url``).
        FetchError: a redirect's URL is malformed, insecure (https to http), or plain http off loopback.
    """
    from urllib.parse import urlsplit

    def bad(why: str) -> Exception:
        return bad_url(url, why, previous)

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme not in ("http", "https"):
        raise bad("use an https:// URL")
    if not parts.hostname:
        raise bad("no host name")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise bad("spaces or control characters (percent-encode them)")
    if not url.isascii():
        raise bad("non-ASCII characters (percent-encode them; write a host name in its xn-- form)")
    if len(parts.hostname) > 253 or any(len(label) > 63 for label in parts.hostname.split(".")):
        raise bad("the host name is longer than DNS allows (253 characters, 63 a label)")
    if previous is not None and previous.startswith("https:") and parts.scheme == "http":
        raise FetchError(
            f"refusing a redirect from https to http ({cap(redact_url(previous))} -> {cap(redact_url(url))})",
            code="insecure_redirect",
        )
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise FetchError(
            Worded(
                "refusing plain http for {host}: use https:// or {allow_http} "
                "(http is accepted for loopback addresses only)",
                host=parts.hostname,
            ),
            code="insecure_url",
        )
    return parts


def bad_url(url: str, why: str, previous: str | None = None) -> Exception:
    """The error for a malformed ``url`` (password masked, echo capped).

    Returns:
        :class:`InvalidArgument` (``invalid_url``, exit 2) for the user's URL (``previous`` is
        ``None``), else :class:`FetchError` (``bad_url``, exit 9) naming the URL that redirected.
    """
    value = shown(redact_url(url))
    if previous is None:
        return InvalidArgument("url", "bad URL {value}: {why}", code="invalid_url", value=value, why=why)
    return FetchError(f"{cap(redact_url(previous))} redirects to a bad URL {value}: {why}", code="bad_url")


def redirect_target(current: str, location: str, allow_http: bool) -> tuple[str, Any]:
    """The URL a redirect from ``current`` goes to (``location`` resolved against it, RFC 3986
    section 5) and its :func:`check_url` parts.

    Raises:
        FetchError: ``bad_url`` when ``location`` does not parse, breaks a rule of
            :func:`check_url`, or carries userinfo (RFC 9110 section 4.2.4: an error from an
            untrusted source); ``insecure_redirect``, ``insecure_url`` as there.
    """
    from urllib.parse import urljoin, urlsplit

    try:
        target = urljoin(current, location)
    except ValueError as exc:
        raise bad_url(location, str(exc), current) from None
    parts = check_url(target, allow_http, current)
    if "@" in urlsplit(location).netloc:  # the server's own userinfo (a relative one keeps the user's URL's)
        why = "it has a user name or password (userinfo is refused in a redirect, RFC 9110 section 4.2.4)"
        raise bad_url(target, why, current)
    return target, parts


def host_port(conn: Any, fallback: str) -> str:
    """``host:port`` of a connection (IPv6 hosts in brackets), for messages."""
    if conn is None:
        return fallback
    host = f"[{conn.host}]" if ":" in str(conn.host) else str(conn.host)
    return f"{host}:{conn.port}"
