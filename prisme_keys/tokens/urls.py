"""JWKS URLs: the transport rules every fetch applies (https, loopback, redirects, well-formed URLs).

* ``https://`` is required, except for loopback hosts (``localhost``, 127.0.0.0/8, ``::1``) or
  with ``allow_http``; a redirect never goes from https to http.
* A malformed URL given by the user is a usage error (exit 2); one a server redirects to is a
  fetch failure (exit 9).
"""

from __future__ import annotations

from typing import Any

from prisme_keys.errors import FetchError, InvalidArgument, Worded
from prisme_keys.text import shown


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
        if previous is None:
            return InvalidArgument("url", "bad URL {value}: {why}", code="invalid_url", value=shown(url), why=why)
        return FetchError(f"{previous} redirects to a bad URL {shown(url)}: {why}", code="bad_url")

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
        raise FetchError(f"refusing a redirect from https to http ({previous} -> {url})", code="insecure_redirect")
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


def host_port(conn: Any, fallback: str) -> str:
    """``host:port`` of a connection (IPv6 hosts in brackets), for messages."""
    if conn is None:
        return fallback
    host = f"[{conn.host}]" if ":" in str(conn.host) else str(conn.host)
    return f"{host}:{conn.port}"
