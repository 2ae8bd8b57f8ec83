"""Encryption at rest of the key file's private members (opt-in).

Layout. An encrypted key file carries a top-level ``encryption`` member::

    "encryption": {
      "version": 1,
      "kdf": {"name": "argon2id", "salt": "<b64url 16 bytes>", "length": 32,
              "iterations": 3, "lanes": 4, "memory_cost": 65536},        # KiB
      "cipher": "A256GCM",
      "check": {"nonce": "<b64url 12 bytes>", "ciphertext": "<b64url>"}
    }

and in each record the private members of ``jwk`` (``d p q dp dq qi oth k``) are replaced by::

    "enc": {"nonce": "<b64url 12 bytes>", "ciphertext": "<b64url>"}

The public members (``kty kid use alg n e``) and the record's dates stay in clear text, so
``list``, ``export``, ``prune`` and ``check`` need no passphrase.

* KDF: Argon2id (RFC 9106, its second recommended parameter set: 64 MiB, 3 passes, 4 lanes)
  from ``cryptography``; scrypt (N=2^17, r=8, p=1) where the OpenSSL underneath lacks Argon2.
  The parameters and the salt live in the file, so they can be raised later (``encrypt --rekey``).
* AEAD: AES-256-GCM, a fresh random 96-bit nonce per encryption. The associated data binds
  the ciphertext to its record: ``{"kid", "kty", "n", "e"}`` (canonical JSON), so moving a
  ciphertext to another record, or swapping the public key beside it, fails authentication.
* ``check`` is the encryption of a constant under the derived key: it tells a wrong passphrase
  (exit 4, nothing written) from a tampered record, and is verified before anything new is
  encrypted, so a file never holds keys under two passphrases.

The passphrase comes from ``PRISME_KEYS_PASSPHRASE``, a passphrase file (``passphrase_file``,
``PRISME_KEYS_PASSPHRASE_FILE``) or a prompt the caller provides (the command line asks on a
terminal); never from a command-line argument. Without one, an operation needing the private key
raises :class:`KeyFileError` (exit 4, hint ``passphrase``).

``cryptography`` is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from prisme_keys.errors import KeyFileError, Worded
from prisme_keys.jwk import PRIVATE_MEMBERS, RSAJwk, b64url_decode, b64url_encode, canonical_jwk
from prisme_keys.store.permissions import unsafe_mode
from prisme_keys.store.records import KeyRecord
from prisme_keys.text import decode_utf8, open_input, shown

VERSION = 1
CIPHER = "A256GCM"
#: Default KDF parameters (Argon2id, RFC 9106 section 4 second recommended option).
ARGON2_DEFAULTS = {"iterations": 3, "lanes": 4, "memory_cost": 65536}
#: Fallback (scrypt) parameters when Argon2id is not available.
SCRYPT_DEFAULTS = {"n": 2**17, "r": 8, "p": 1}
#: Smallest parameters accepted when reading (anything lower is a downgraded file).
ARGON2_MIN = {"iterations": 1, "lanes": 1, "memory_cost": 8192}
SCRYPT_MIN = {"n": 2**14, "r": 8, "p": 1}
#: Largest parameters accepted when reading (a hostile file must not exhaust memory/time).
ARGON2_MAX = {"iterations": 64, "lanes": 64, "memory_cost": 4 * 1024 * 1024}
SCRYPT_MAX = {"n": 2**22, "r": 32, "p": 16}
_CHECK_PLAINTEXT = b"prisme-keys passphrase check v1"
_CHECK_AAD = b"prisme-keys/encryption-check/v1"

Passphrase = Callable[[str], str]


#: Where a prompt comes from: ``(prompt text, confirm) -> passphrase``, or ``None`` when no one can be
#: asked (stdin is not a terminal, end of input). ``confirm``: a passphrase being set, asked twice.
#: The command line provides one (``prisme_keys.cli.common.passphrase_prompt``); the library never prompts.
Prompt = Callable[[str, bool], str | None]


def passphrase_required(path: Any, why: str, *, new: bool = False, hint: str = "passphrase") -> KeyFileError:
    """The error raised when a passphrase is needed and none was given (exit 4, ``passphrase_required``).

    Args:
        path: the key file.
        why: what needs it (``decrypt``, ``writing a private key``; may be a :class:`Worded` text).
        new: a passphrase being *set* (``encrypt``, ``init`` with encryption, the new one of a rekey): the
            file is not (yet) encrypted under it, so the message does not say it is.
        hint: the key of the advice a front end appends: where to give it (``passphrase``, or
            ``new_passphrase`` for the new one of a rekey).
    """
    if new:
        text = Worded("{why} needs a new passphrase for key file {path}", hint=hint, why=why, path=path)
    else:
        text = Worded("key file {path} is encrypted and {why} needs its passphrase", hint=hint, why=why, path=path)
    return KeyFileError(text, code="passphrase_required")


def already_encrypted(path: Any) -> KeyFileError:
    """The error for encrypting a key file that is encrypted already (exit 4, ``already_encrypted``;
    hint ``rekey``: how to change its passphrase instead)."""
    return KeyFileError(
        Worded("key file {path} is already encrypted", hint="rekey", path=path), code="already_encrypted"
    )


# -- passphrase sources ------------------------------------------------------------------
def read_passphrase_file(path: Path | str, *, allow_group_read: bool = False) -> str:
    """Read a passphrase from a file: its first line, without a leading UTF-8 BOM or the line ending (LF or CRLF).

    A regular file must pass the key file's permission rule (:func:`prisme_keys.store.permissions.unsafe_mode`:
    no group or others bits, group bits only with ``allow_group_read``); a pipe (``<(pass show x)``) is read
    as it is.

    Raises:
        KeyFileError: missing, unsafe permissions, unreadable, not UTF-8 or empty file.
    """
    try:
        with open_input(path) as fh:
            st = os.fstat(fh.fileno())
            problem = unsafe_mode(path, st.st_mode, what="passphrase file", allow_group_read=allow_group_read)
            if stat.S_ISREG(st.st_mode) and problem:
                raise KeyFileError(problem, code="passphrase_file_permissions")
            raw = fh.read(64 * 1024)
    except FileNotFoundError:
        raise KeyFileError(f"passphrase file {path} does not exist", code="passphrase_file") from None
    except OSError as exc:
        raise KeyFileError(
            f"cannot read passphrase file {path}: {exc.strerror or exc}", code="passphrase_file"
        ) from None
    try:
        text = decode_utf8(raw)
    except UnicodeDecodeError:
        raise KeyFileError(f"passphrase file {path} is not UTF-8 text", code="passphrase_file") from None
    first = text.split("\n", 1)[0].rstrip("\r")
    if not first:
        raise KeyFileError(f"passphrase file {path} is empty", code="passphrase_file")
    return first


class PassphraseSource:
    """Where a passphrase comes from; asked lazily, remembered once obtained.

    Precedence: a passphrase file named on the command line > ``PRISME_KEYS_PASSPHRASE`` > passphrase
    file from ``PRISME_KEYS_PASSPHRASE_FILE`` or the config > ``prompt``, when one is given.

    Args:
        passphrase: the value of ``PRISME_KEYS_PASSPHRASE`` (or ``None``).
        passphrase_file: a passphrase file (or ``None``).
        file_first: the file was named on the command line, so it beats the environment.
        prompt: who to ask when neither gives one (see :data:`Prompt`); ``None``: never asks.
        path: the key file, for messages.
        allow_group_read: a group-readable passphrase file is accepted (``PRISME_KEYS_ALLOW_GROUP_READ``).
        hint: the key of the advice a front end appends to the error when none is available.
    """

    def __init__(
        self,
        passphrase: str | None = None,
        passphrase_file: Path | str | None = None,
        *,
        file_first: bool = False,
        prompt: Prompt | None = None,
        path: Any = "<key file>",
        allow_group_read: bool = False,
        hint: str = "passphrase",
    ) -> None:
        self._hint = hint
        self._env = passphrase or None
        self._allow_group_read = allow_group_read
        self._file = passphrase_file
        self._file_first = file_first
        self.prompt = prompt
        self.path = path
        self._value: str | None = None
        #: keys derived from this passphrase in this invocation, ``{(passphrase, kdf json): key}``
        self.derived_keys: dict[tuple[str, str], bytes] = {}

    @classmethod
    def from_settings(cls, settings: Any, *, interactive: bool = True) -> PassphraseSource:
        """Build from :class:`prisme_keys.settings.Settings` (``passphrase``, ``passphrase_file``,
        ``passphrase_prompt``; the prompt only when ``interactive``)."""
        sources = getattr(settings, "sources", {}) or {}
        return cls(
            getattr(settings, "passphrase", None),
            getattr(settings, "passphrase_file", None),
            file_first=sources.get("passphrase_file") == "flag",
            prompt=getattr(settings, "passphrase_prompt", None) if interactive else None,
            path=getattr(settings, "key_file", "<key file>"),
            allow_group_read=bool(getattr(settings, "allow_group_read", False)),
        )

    def available(self) -> bool:
        """True when a passphrase can be had without prompting (or there is a prompt to ask)."""
        return bool(self._value or self._env or self._file or self.prompt is not None)

    def get(self, why: str = "this command", *, new: bool = False) -> str:
        """The passphrase.

        Args:
            why: what needs it, for the error message.
            new: a passphrase being set (a prompt asks twice).

        Raises:
            KeyFileError: none available (exit 4, saying where to provide one), unreadable file,
                an empty passphrase or differing prompts.
        """
        if self._value is not None:
            return self._value
        value: str | None = None
        if self._file is not None and (self._file_first or not self._env):
            value = read_passphrase_file(self._file, allow_group_read=self._allow_group_read)
        elif self._env:
            value = self._env
        elif self.prompt is not None:
            value = self.prompt("New passphrase: " if new else f"Passphrase for {self.path}: ", new)
        if value is None:
            raise passphrase_required(self.path, why, new=new, hint=self._hint)
        if not value:
            raise KeyFileError("the passphrase is empty; nothing was changed", code="passphrase_empty")
        self._value = value
        return value

    __call__ = get


# -- primitives --------------------------------------------------------------------------
def argon2_available() -> bool:
    """True when ``cryptography`` (and its OpenSSL) provide Argon2id."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\0" * 16, length=32, iterations=1, lanes=1, memory_cost=8).derive(b"x")
        return True
    except (ImportError, UnsupportedAlgorithm):  # an older cryptography, an OpenSSL before 3.2
        return False


def new_kdf_params(kdf: str | None = None) -> dict[str, Any]:
    """Fresh KDF parameters with a random 16-byte salt (Argon2id when available, else scrypt)."""
    name = kdf or ("argon2id" if argon2_available() else "scrypt")
    base = ARGON2_DEFAULTS if name == "argon2id" else SCRYPT_DEFAULTS
    return {"name": name, "salt": b64url_encode(os.urandom(16)), "length": 32, **base}


def _int_param(kdf: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = kdf.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise KeyFileError(
            f"encryption header: KDF parameter {name}={shown(v)} is outside {lo}..{hi}", code="key_file_corrupt"
        )
    return v


def derive_key(passphrase: str, kdf: Any, cache: dict[tuple[str, str], bytes] | None = None) -> bytes:
    """Derive the 32-byte AEAD key from ``passphrase`` with the file's KDF parameters.

    Args:
        passphrase: the passphrase (UTF-8 text).
        kdf: the header's ``kdf`` object (Argon2id or scrypt parameters with a salt).
        cache: derived keys already computed in this invocation (a :class:`PassphraseSource`'s
            ``derived_keys``), so a command that reads and then writes runs the KDF once.

    Raises:
        KeyFileError: unknown KDF, parameters out of range, a bad salt, or Argon2id unavailable.
    """
    if not isinstance(kdf, dict):
        raise KeyFileError("encryption header: kdf is not an object", code="key_file_corrupt")
    cache_key = (passphrase, json.dumps(kdf, sort_keys=True))
    if cache is not None and cache_key in cache:
        return cache[cache_key]
    try:
        salt = b64url_decode(str(kdf.get("salt", "")))
    except ValueError:
        salt = b""
    if len(salt) < 16:
        raise KeyFileError(
            "encryption header: the KDF salt is missing or shorter than 16 bytes", code="key_file_corrupt"
        )
    if kdf.get("length", 32) != 32:
        raise KeyFileError("encryption header: KDF length must be 32", code="key_file_corrupt")
    from cryptography.exceptions import UnsupportedAlgorithm

    secret = passphrase.encode("utf-8")
    name = kdf.get("name")
    if name == "argon2id":
        it = _int_param(kdf, "iterations", ARGON2_MIN["iterations"], ARGON2_MAX["iterations"])
        lanes = _int_param(kdf, "lanes", ARGON2_MIN["lanes"], ARGON2_MAX["lanes"])
        mem = _int_param(kdf, "memory_cost", ARGON2_MIN["memory_cost"], ARGON2_MAX["memory_cost"])
        try:
            from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

            key = Argon2id(salt=salt, length=32, iterations=it, lanes=lanes, memory_cost=mem).derive(secret)
        except ImportError:
            raise KeyFileError(
                "the key file is encrypted with Argon2id, which this installation's "
                "cryptography/OpenSSL lacks (needs OpenSSL >= 3.2)"
            ) from None
        except (UnsupportedAlgorithm, MemoryError, ValueError) as exc:  # parameters this host cannot meet
            raise KeyFileError(f"cannot derive the key with Argon2id: {type(exc).__name__}") from None
    elif name == "scrypt":
        n = _int_param(kdf, "n", SCRYPT_MIN["n"], SCRYPT_MAX["n"])
        r = _int_param(kdf, "r", SCRYPT_MIN["r"], SCRYPT_MAX["r"])
        p = _int_param(kdf, "p", SCRYPT_MIN["p"], SCRYPT_MAX["p"])
        if n & (n - 1):
            raise KeyFileError("encryption header: scrypt n must be a power of 2", code="key_file_corrupt")
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        try:
            key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret)
        except (UnsupportedAlgorithm, MemoryError, ValueError) as exc:  # parameters this host cannot meet
            raise KeyFileError(f"cannot derive the key with scrypt: {type(exc).__name__}") from None
    else:
        raise KeyFileError(
            f"encryption header: unknown KDF {shown(name)} (known: argon2id, scrypt)", code="key_file_corrupt"
        )
    if cache is not None:
        cache[cache_key] = key
    return key


def _aead(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> dict[str, str]:
    nonce = os.urandom(12)
    ct = _aead(key).encrypt(nonce, plaintext, aad)
    return {"nonce": b64url_encode(nonce), "ciphertext": b64url_encode(ct)}


def _open(key: bytes, box: Any, aad: bytes) -> bytes:
    """Decrypt; raises ValueError on any malformed box or authentication failure."""
    from cryptography.exceptions import InvalidTag

    if not isinstance(box, dict):
        raise ValueError("not an object")
    nonce = b64url_decode(str(box.get("nonce", "")))
    ct = b64url_decode(str(box.get("ciphertext", "")))
    if len(nonce) != 12 or len(ct) < 16:
        raise ValueError("bad nonce or ciphertext length")
    try:
        plain: bytes = _aead(key).decrypt(nonce, ct, aad)
        return plain
    except InvalidTag:
        raise ValueError("authentication failed") from None


def record_aad(rec: Mapping[str, Any]) -> bytes:
    """The associated data binding a record's ciphertext to its kid and public key."""
    jwk = rec.get("jwk") or {}
    doc = {"v": VERSION, "kid": rec.get("kid"), "kty": jwk.get("kty"), "n": jwk.get("n"), "e": jwk.get("e")}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


# -- the header ---------------------------------------------------------------------------
def header(extra_or_keyset: Any) -> dict[str, Any] | None:
    """The ``encryption`` header of a KeySet (or its ``extra`` dict), or ``None``."""
    extra = getattr(extra_or_keyset, "extra", extra_or_keyset) or {}
    return extra.get("encryption")


def is_encrypted(keyset: Any) -> bool:
    """True when the key set carries an ``encryption`` header."""
    return header(keyset) is not None


def new_header(passphrase: str, kdf: str | None = None) -> tuple[dict[str, Any], bytes]:
    """A fresh header (new salt, default KDF parameters) and its derived key."""
    params = new_kdf_params(kdf)
    key = derive_key(passphrase, params)
    hdr = {"version": VERSION, "kdf": params, "cipher": CIPHER, "check": _seal(key, _CHECK_PLAINTEXT, _CHECK_AAD)}
    return hdr, key


def unlock(
    hdr: Any, passphrase: str, path: Any = "<key file>", cache: dict[tuple[str, str], bytes] | None = None
) -> bytes:
    """Derive the key of header ``hdr`` and verify it with the ``check`` box (``cache``: see :func:`derive_key`).

    Raises:
        KeyFileError: malformed header, unknown cipher/KDF, or a wrong passphrase (``passphrase_wrong``).
    """
    if not isinstance(hdr, dict) or hdr.get("version") != VERSION:
        raise KeyFileError(
            f"key file {path}: unknown encryption header version "
            f"{shown(hdr.get('version') if isinstance(hdr, dict) else hdr)}",
            code="key_file_corrupt",
        )
    if hdr.get("cipher") != CIPHER:
        raise KeyFileError(
            f"key file {path}: unknown cipher {shown(hdr.get('cipher'))} (known: {CIPHER})", code="key_file_corrupt"
        )
    key = derive_key(passphrase, hdr.get("kdf"), cache)
    try:
        ok = _open(key, hdr.get("check"), _CHECK_AAD) == _CHECK_PLAINTEXT
    except ValueError:
        ok = False
    if not ok:
        raise KeyFileError(
            f"wrong passphrase for key file {path} (or its encryption header was altered); nothing was changed",
            code="passphrase_wrong",
        )
    return key


# -- records --------------------------------------------------------------------------------
def has_plain_private(jwk: Mapping[str, Any]) -> bool:
    """True when ``jwk`` holds any private member in clear text."""
    return any(m in jwk for m in PRIVATE_MEMBERS)


def seal_record(rec: KeyRecord, key: bytes) -> KeyRecord:
    """A copy of ``rec`` whose private members are replaced by ``jwk.enc`` (no-op without any)."""
    jwk: Mapping[str, Any] = rec["jwk"]
    if not has_plain_private(jwk):
        return rec
    private = {m: jwk[m] for m in PRIVATE_MEMBERS if m in jwk}
    out = rec.copy()
    out["jwk"] = cast(RSAJwk, {k: v for k, v in jwk.items() if k not in PRIVATE_MEMBERS and k != "enc"})
    out["jwk"]["enc"] = _seal(key, json.dumps(private, separators=(",", ":")).encode("utf-8"), record_aad(out))
    return out


def open_record(rec: KeyRecord, key: bytes, path: Any = "<key file>") -> KeyRecord:
    """A copy of ``rec`` with its private members decrypted (``enc`` removed); plain records pass.

    Raises:
        KeyFileError: the ciphertext fails authentication (tampered, moved or corrupted): ``key_file_tampered``.
    """
    jwk = rec["jwk"]
    if "enc" not in jwk:
        return rec
    try:
        private = json.loads(_open(key, jwk["enc"], record_aad(rec)).decode("utf-8"))
        if not isinstance(private, dict) or not all(k in PRIVATE_MEMBERS for k in private):
            raise ValueError("bad plaintext")
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(
            f"key {shown(rec.get('kid'))} in {path}: its encrypted private members fail authentication "
            "(tampered, corrupted or moved from another record); nothing was changed",
            code="key_file_tampered",
        ) from None
    out_jwk: dict[str, Any] = {k: v for k, v in jwk.items() if k != "enc"}
    out_jwk.update(private)
    out = rec.copy()
    out["jwk"] = cast(RSAJwk, out_jwk)  # the public members as they were, the private ones authenticated
    return out


def seal_keyset_records(keyset: Any, key: bytes) -> None:
    """Encrypt, in place, every record of ``keyset`` holding clear-text private members."""
    keyset.records = [seal_record(r, key) for r in keyset.records]


def encrypt_keyset(keyset: Any, passphrase: str, path: Any = "<key file>", kdf: str | None = None) -> Any:
    """Encrypt a plain key set in place (new header, new salt); returns it.

    Raises:
        KeyFileError: already encrypted, or records hold ``enc`` without a header.
    """
    if is_encrypted(keyset):
        raise already_encrypted(path)
    if any("enc" in r["jwk"] for r in keyset.records):
        raise KeyFileError(f"key file {path} holds encrypted records but no encryption header", code="key_file_corrupt")
    hdr, key = new_header(passphrase, kdf)
    seal_keyset_records(keyset, key)
    keyset.extra["encryption"] = hdr
    return keyset


def decrypt_keyset(
    keyset: Any, passphrase: str, path: Any = "<key file>", cache: dict[tuple[str, str], bytes] | None = None
) -> Any:
    """Decrypt every record in place and drop the header; returns it.

    Raises:
        KeyFileError: not encrypted, wrong passphrase, a tampered record.
    """
    hdr = header(keyset)
    if hdr is None:
        raise KeyFileError(f"key file {path} is not encrypted", code="not_encrypted")
    key = unlock(hdr, passphrase, path, cache)
    keyset.records = [_canonical(open_record(r, key, path), path) for r in keyset.records]
    del keyset.extra["encryption"]
    return keyset


def _canonical(rec: KeyRecord, path: Any) -> KeyRecord:
    """The record with its JWK in canonical form (:func:`prisme_keys.jwk.canonical_jwk`), as it re-enters the file."""
    try:
        out = rec.copy()
        out["jwk"] = canonical_jwk(rec["jwk"])
        return out
    except ValueError as exc:
        raise KeyFileError(f"key {shown(rec.get('kid'))} in {path}: {exc}; nothing was changed") from None


def rekey_keyset(
    keyset: Any,
    old: str,
    new: str,
    path: Any = "<key file>",
    kdf: str | None = None,
    cache: dict[tuple[str, str], bytes] | None = None,
) -> Any:
    """Re-encrypt every record under ``new`` (fresh salt and nonces, current default KDF); returns it."""
    decrypt_keyset(keyset, old, path, cache)
    return encrypt_keyset(keyset, new, path, kdf)


def open_records(
    keyset: Any, passphrase_source: Passphrase | None, path: Any, why: str, records: list[KeyRecord] | None = None
) -> list[KeyRecord]:
    """Decrypted copies of ``records`` (default: all of the key set's records).

    Plain records are returned as they are, and no passphrase is asked when none is encrypted.
    """
    recs = keyset.records if records is None else records
    if not any("enc" in r["jwk"] for r in recs):
        return list(recs)
    hdr = header(keyset)
    if hdr is None:
        raise KeyFileError(f"key file {path} holds encrypted records but no encryption header", code="key_file_corrupt")
    if passphrase_source is None:
        raise passphrase_required(path, why)
    key = unlock(hdr, passphrase_source(why), path, getattr(passphrase_source, "derived_keys", None))
    return [open_record(r, key, path) for r in recs]
