"""Exception tree of prisme-keys.

Every error a user can cause is a :class:`PrismeKeysError` subclass carrying

* ``exit_code`` (int): the process exit status documented in DESIGN.md section 2
  and in the README's exit-code table;
* ``code`` (str): a stable snake_case identifier, used in ``--json`` error documents.

The message of an error is one line meant for a person. It never holds private key
members or a whole token, and it speaks of the library, not of a command line: an argument
is named as the library function spells it (``timeout``, ``session_id``). A message that names
arguments, or that a front end may complete with advice, is a :class:`Worded` text; the command
line words it again with its own flag names and hints (``prisme_keys.cli.words``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, NamedTuple


class ExitCode(IntEnum):
    """The process exit statuses: a public API (README and man page tables are generated from it)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    KEYFILE = 4
    MALFORMED_TOKEN = 5
    SIGNATURE = 6
    CLAIMS = 7
    NO_KEY = 8
    FETCH = 9
    CHECK = 10
    NOTIFY = 11
    INTERRUPTED = 130
    BROKEN_PIPE = 141


#: One line per exit status, as the README and the man page print it.
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success (also: rotate/prune found nothing to do)",
    ExitCode.INTERNAL: "internal error (a bug): one line, no traceback unless `--debug`/`PRISME_KEYS_DEBUG=1`",
    ExitCode.USAGE: "usage error",
    ExitCode.CONFIG: "configuration error (bad setting value, unreadable config)",
    ExitCode.KEYFILE: "key file or write error (missing, corrupt, unsafe permissions of the key or passphrase file, "
    "lock timeout, no private key; "
    "a file or standard output that cannot be written: disk full, I/O error, read-only, permission denied, closed)",
    ExitCode.MALFORMED_TOKEN: "malformed token (not a compact JWS, bad base64/JSON, too large, a JWE)",
    ExitCode.SIGNATURE: "signature rejected (bad signature, algorithm not allowed, `none`, key too small, "
    "`b64: false` or `crit` header)",
    ExitCode.CLAIMS: "claims rejected (expired, not yet valid, issuer/audience mismatch, missing or ill-typed claim)",
    ExitCode.NO_KEY: "no usable key (kid unknown, no RSA signing key, ambiguous match)",
    ExitCode.FETCH: "JWKS fetch failed (network, timeout, HTTP status, not JSON, too large, redirect, TLS)",
    ExitCode.CHECK: "check failed (the published JWKS has problems)",
    ExitCode.NOTIFY: "notification failed (broker or runtime unreachable); the key file change itself is kept",
    ExitCode.INTERRUPTED: "interrupted",
    ExitCode.BROKEN_PIPE: "the reader of standard output went away (a broken pipe): the work stops, nothing is printed",
}

# Kept for callers that use the plain names.
EXIT_OK = ExitCode.OK
EXIT_INTERNAL = ExitCode.INTERNAL
EXIT_USAGE = ExitCode.USAGE
EXIT_CONFIG = ExitCode.CONFIG
EXIT_KEYFILE = ExitCode.KEYFILE
EXIT_MALFORMED_TOKEN = ExitCode.MALFORMED_TOKEN
EXIT_SIGNATURE = ExitCode.SIGNATURE
EXIT_CLAIMS = ExitCode.CLAIMS
EXIT_NO_KEY = ExitCode.NO_KEY
EXIT_FETCH = ExitCode.FETCH
EXIT_CHECK = ExitCode.CHECK
EXIT_NOTIFY = ExitCode.NOTIFY
EXIT_INTERRUPTED = ExitCode.INTERRUPTED
EXIT_BROKEN_PIPE = ExitCode.BROKEN_PIPE


class ErrorCode(NamedTuple):
    """A stable error ``code`` of the ``--json`` error document ``{code, message, exit}`` (immutable)."""

    code: str
    exit: ExitCode
    meaning: str


def _codes(exit_code: ExitCode, **meanings: str) -> dict[str, ErrorCode]:
    return {code: ErrorCode(code, exit_code, meaning) for code, meaning in meanings.items()}


#: Every stable error code, by code. A test checks that each code the package raises is listed
#: here and that each listed code is asserted by at least one test.
ERROR_CODES: dict[str, ErrorCode] = {
    **_codes(ExitCode.INTERNAL, internal_error="a bug; the message names the exception"),
    **_codes(ExitCode.INTERRUPTED, interrupted="Ctrl-C (SIGINT): the command stopped; no file is half-written"),
    **_codes(
        ExitCode.USAGE,
        usage_error="bad arguments or options",
        now_not_real="a command that changes the key file or announces, under a --now away from the real clock",
        output_is_folder="an output file option names a folder",
        output_not_regular="an output file option names a device or FIFO",
        output_protected="an output would replace the key file, a lock file or private key material",
        stdin_closed="the command reads standard input and it is closed",
        stdin_unreadable="standard input cannot be read",
        invalid_url="the JWKS URL given is malformed (not http(s), no host, bad port, spaces)",
    ),
    **_codes(ExitCode.CONFIG, config_error="a bad setting value or an unreadable config file"),
    **_codes(
        ExitCode.KEYFILE,
        key_file_error="the key file cannot be used",
        key_file_missing="the key file does not exist",
        key_file_exists="the file to create exists already",
        key_file_corrupt="the key file is not a valid key file (never rewritten)",
        key_file_permissions="the key file is readable by group or others",
        key_file_tampered="an encrypted record failed authentication",
        bad_private_key="decrypt: a private key's members are inconsistent (nothing is written)",
        lock_timeout="the key-file lock was held too long by another process",
        duplicate_kid="two records share a kid",
        already_encrypted="encrypt on an encrypted key file",
        not_encrypted="decrypt or rekey on a plain key file",
        passphrase_required="an encrypted key file needs a passphrase and none was given",
        passphrase_wrong="the passphrase does not open the key file",
        passphrase_empty="an empty passphrase",
        passphrase_mismatch="the two prompted passphrases differ",
        passphrase_file="the passphrase file is missing, unreadable or empty",
        passphrase_file_permissions="the passphrase file is readable by group or others",
        import_unreadable="the import input cannot be read (missing, a folder, no permission)",
        import_rejected="the import input is not a JWKS, gateway records or a PEM key, or a key in it is refused",
        write_failed="a file cannot be written (disk full, I/O error, read-only, permission); it is left unchanged",
        stdout_failed="standard output is closed or cannot be written",
        kid_not_found="no key with this kid (or RFC 7638 thumbprint) in the key file",
    ),
    **_codes(
        ExitCode.MALFORMED_TOKEN,
        malformed_token="not a compact JWS, bad base64url or JSON",
        token_too_large="the token is over 64 KiB",
        jwe_not_supported="the token is a JWE (encrypted), not a JWS",
        opaque_credential="an opaque access token or API key of the gateway, which only the gateway can check",
    ),
    **_codes(
        ExitCode.SIGNATURE,
        signature_rejected="the token cannot be accepted on signature grounds",
        bad_signature="the signature does not verify with the chosen key",
        alg_none="the token's algorithm is none",
        alg_not_allowed="the token's algorithm is not in the allow-list",
        key_too_small="the verifying key has fewer than 2048 bits",
        key_revoked="the key (by kid or RFC 7638 thumbprint) was revoked in the key file",
        unencoded_payload='the header asks for an unencoded payload ("b64" not true, RFC 7797)',
        critical_header="the header marks extensions as critical (crit): none is understood",
        alg_key_mismatch="the key chosen by kid names another alg than the token's",
    ),
    **_codes(
        ExitCode.CLAIMS,
        claims_rejected="default of ClaimsRejected for library callers; no input produces it (each claim "
        "failure carries its own code)",
        expired="exp is in the past (beyond the leeway)",
        not_yet_valid="nbf is in the future (beyond the leeway)",
        issued_in_future="iat is in the future (beyond the leeway)",
        issuer="iss differs from the expected issuer",
        audience="aud does not hold the expected audience",
        claim_missing="a required claim is missing",
        claim_type="a claim has the wrong JSON type",
    ),
    **_codes(
        ExitCode.NO_KEY,
        no_usable_key="no key of the set can verify the token",
        unknown_kid="the token's kid is not in the set",
    ),
    **_codes(
        ExitCode.FETCH,
        jwks_fetch_failed="the JWKS could not be fetched",
        bad_url="a redirect points to a malformed URL",
        insecure_url="plain http to a host that is not loopback",
        insecure_redirect="a redirect from https to http",
        too_many_redirects="more than 3 redirects",
        network_error="connection refused, DNS failure or reset",
        tls_error="the TLS handshake or certificate check failed",
        timeout="no complete answer within the timeout",
        http_status="an HTTP status other than 200",
        not_json="the body is not JSON",
        not_a_jwk_set="the JSON is not a JWK Set",
        too_large="the body is over the size cap",
        truncated="the connection closed before the whole body (its Content-Length, or the last chunk) arrived",
    ),
    **_codes(ExitCode.CHECK, check_failed="the published JWKS failed a check"),
    **_codes(ExitCode.NOTIFY, notify_failed="the broker or the runtime could not be told"),
}


class Worded(str):
    """One line of text that names arguments of library functions, for a front end to word again.

    The string itself is the library's wording: each argument appears under its parameter name
    (``no complete answer from URL within 5 s (timeout)``). A front end words it again with
    :meth:`worded`: the command line names each argument by its flag (``(--timeout)``) and
    appends its own advice for :attr:`hint` (``create it with: prisme-keys init``), both from one
    table in ``prisme_keys.cli.words``. As a ``str`` it goes wherever a message goes (an error's
    ``message``, a warning list, a finding).

    Args:
        template: ``str.format`` syntax. A field that is a key of ``values`` shows that value (a
            :class:`Worded` value is worded with the same names); any other field is the name of an
            argument. User input goes in ``values``, never into the template.
        hint: the key of advice a front end may append (the library's own text has none).
        values: the values the template shows.

    Attributes:
        template, hint, values: as given.
    """

    template: str
    hint: str | None
    values: dict[str, Any]

    def __new__(cls, template: str, /, *, hint: str | None = None, **values: Any) -> Worded:
        text = super().__new__(cls, _fill(template, values, {}))
        text.template, text.hint, text.values = template, hint, values
        return text

    def __getnewargs_ex__(self) -> tuple[tuple[str], dict[str, Any]]:
        return (self.template,), {"hint": self.hint, **self.values}

    def worded(self, names: Mapping[str, str], hints: Mapping[str, str] | None = None) -> str:
        """The text with each argument named as ``names`` has it (else by its own name).

        Args:
            names: ``{argument: its name for this front end}`` (``{"timeout": "--timeout"}``).
            hints: ``{hint key: template}``; the template of :attr:`hint`, filled like the text
                (the values and ``names``), is appended. ``None``: no hint.
        """
        text = _fill(self.template, self.values, names)
        if hints is not None and self.hint is not None:
            text += _fill(hints.get(self.hint, ""), self.values, names)
        return text


class _Fields(dict[str, Any]):
    """``format_map`` fields: the values (:class:`Worded` ones worded), then argument names."""

    def __init__(self, values: Mapping[str, Any], names: Mapping[str, str]) -> None:
        super().__init__({k: v.worded(names) if isinstance(v, Worded) else v for k, v in values.items()})
        self.names = names

    def __missing__(self, key: str) -> str:
        return self.names.get(key, key)


def _fill(template: str, values: Mapping[str, Any], names: Mapping[str, str]) -> str:
    return template.format_map(_Fields(values, names))


class PrismeKeysError(Exception):
    """Base class: a failure with a documented exit code.

    Args:
        message: one line for the user (no secrets, no whole token, no flag names): a plain
            string, or a :class:`Worded` text when it names arguments or has a hint.
        code: optional override of the class's snake_case ``code``.

    Attributes:
        message: as given; ``hint``: the key of the message's hint (see :class:`Worded`), or ``None``.
    """

    exit_code: ExitCode = ExitCode.INTERNAL
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def hint(self) -> str | None:
        """The key of the advice a front end may append to :attr:`message` (``None``: none)."""
        return self.message.hint if isinstance(self.message, Worded) else None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` error document: ``{code, message, exit}``."""
        return {"code": self.code, "message": str(self.message), "exit": int(self.exit_code)}


class UsageError(PrismeKeysError):
    """Bad usage (exit 2): a bad argument or option, an output the rules refuse."""

    exit_code = ExitCode.USAGE
    code = "usage_error"


class InvalidArgument(UsageError):
    """A bad value for an argument of a library function (exit 2, code ``usage_error`` unless given).

    The message names the argument as the function spells it; the command line words it with the
    argument's flag (``alg 'HS256' is not supported`` / ``--alg 'HS256' is not supported``).

    Args:
        argument: the parameter's name (``alg``, ``count``, ``session_id``).
        reason: the message as a :class:`Worded` template: ``{argument}`` and the names of other
            arguments it mentions are fields (``"{session_id} cannot be combined with {count} above 1"``),
            user input goes in ``values``.
        code: optional override of ``usage_error``.
        hint: the key of advice a front end may append.
        values: the values the template shows.

    Attributes:
        argument: as given.
    """

    def __init__(
        self, argument: str, reason: str, *, code: str | None = None, hint: str | None = None, **values: Any
    ) -> None:
        self.argument = argument
        super().__init__(Worded(reason, hint=hint, **values), code=code)


class ConfigError(PrismeKeysError):
    """A bad setting value or an unreadable config file (exit 3)."""

    exit_code = ExitCode.CONFIG
    code = "config_error"


class KeyFileError(PrismeKeysError):
    """Key file missing, corrupt, unsafe, locked too long, or lacking a private key (exit 4)."""

    exit_code = ExitCode.KEYFILE
    code = "key_file_error"


class MalformedTokenError(PrismeKeysError):
    """Not a compact JWS, bad base64url/JSON, too large, or a JWE (exit 5)."""

    exit_code = ExitCode.MALFORMED_TOKEN
    code = "malformed_token"


class SignatureRejected(PrismeKeysError):
    """Bad signature, algorithm not allowed, ``none``, or key too small (exit 6)."""

    exit_code = ExitCode.SIGNATURE
    code = "signature_rejected"


class ClaimsRejected(PrismeKeysError):
    """Expired, not yet valid, issuer/audience mismatch, missing or ill-typed claim (exit 7)."""

    exit_code = ExitCode.CLAIMS
    code = "claims_rejected"


class NoUsableKey(PrismeKeysError):
    """Unknown kid, no RSA signing key, or an ambiguous match (exit 8)."""

    exit_code = ExitCode.NO_KEY
    code = "no_usable_key"


class FetchError(PrismeKeysError):
    """Fetching a JWKS failed: network, timeout, status, body type or size, redirect, TLS (exit 9)."""

    exit_code = ExitCode.FETCH
    code = "jwks_fetch_failed"


class CheckFailed(PrismeKeysError):
    """A published JWKS failed ``check`` (exit 10)."""

    exit_code = ExitCode.CHECK
    code = "check_failed"


class NotifyError(PrismeKeysError):
    """The broker or the runtime could not be told of a change (exit 11).

    The key-file change that preceded the notification is kept.
    """

    exit_code = ExitCode.NOTIFY
    code = "notify_failed"
