"""Exception tree of prisme-keys.

Every error a user can cause is a :class:`PrismeKeysError` subclass carrying

* ``exit_code`` (int): the process exit status documented in DESIGN.md section 2
  and in the README's exit-code table;
* ``code`` (str): a stable snake_case identifier, used in ``--json`` error documents.

The message of an error is one line meant for a person. It never holds private key
members or a whole token.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_KEYFILE = 4
EXIT_MALFORMED_TOKEN = 5
EXIT_SIGNATURE = 6
EXIT_CLAIMS = 7
EXIT_NO_KEY = 8
EXIT_FETCH = 9
EXIT_CHECK = 10
EXIT_NOTIFY = 11
EXIT_INTERRUPTED = 130


class PrismeKeysError(Exception):
    """Base class: a failure with a documented exit code.

    Args:
        message: one line for the user (no secrets, no whole token).
        code: optional override of the class's snake_case ``code``.
    """

    exit_code: int = EXIT_INTERNAL
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` error document: ``{code, message, exit}``."""
        return {"code": self.code, "message": self.message, "exit": self.exit_code}


class UsageError(PrismeKeysError):
    """Bad command-line usage (exit 2)."""

    exit_code = EXIT_USAGE
    code = "usage_error"


class ConfigError(PrismeKeysError):
    """A bad setting value or an unreadable config file (exit 3)."""

    exit_code = EXIT_CONFIG
    code = "config_error"


class KeyFileError(PrismeKeysError):
    """Key file missing, corrupt, unsafe, locked too long, or lacking a private key (exit 4)."""

    exit_code = EXIT_KEYFILE
    code = "key_file_error"


class MalformedTokenError(PrismeKeysError):
    """Not a compact JWS, bad base64url/JSON, too large, or a JWE (exit 5)."""

    exit_code = EXIT_MALFORMED_TOKEN
    code = "malformed_token"


class SignatureRejected(PrismeKeysError):
    """Bad signature, algorithm not allowed, ``none``, or key too small (exit 6)."""

    exit_code = EXIT_SIGNATURE
    code = "signature_rejected"


class ClaimsRejected(PrismeKeysError):
    """Expired, not yet valid, issuer/audience mismatch, missing or ill-typed claim (exit 7)."""

    exit_code = EXIT_CLAIMS
    code = "claims_rejected"


class NoUsableKey(PrismeKeysError):
    """Unknown kid, no RSA signing key, or an ambiguous match (exit 8)."""

    exit_code = EXIT_NO_KEY
    code = "no_usable_key"


class FetchError(PrismeKeysError):
    """Fetching a JWKS failed: network, timeout, status, body type or size, redirect, TLS (exit 9)."""

    exit_code = EXIT_FETCH
    code = "jwks_fetch_failed"


class CheckFailed(PrismeKeysError):
    """A published JWKS failed ``check`` (exit 10)."""

    exit_code = EXIT_CHECK
    code = "check_failed"


class NotifyError(PrismeKeysError):
    """The broker or the runtime could not be told of a change (exit 11).

    The key-file change that preceded the notification is kept.
    """

    exit_code = EXIT_NOTIFY
    code = "notify_failed"
