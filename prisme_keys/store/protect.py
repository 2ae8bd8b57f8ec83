"""Whole-file encryption operations: ``encrypt``, ``decrypt`` and ``encrypt --rekey`` of a key file.

Each runs under the key file's lock and rewrites it atomically (see :mod:`prisme_keys.store.keyfile`);
the record-level cryptography lives in :mod:`prisme_keys.store.encryption`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prisme_keys.errors import KeyFileError
from prisme_keys.store.encryption import (
    CIPHER,
    WHERE_NEW,
    PassphraseSource,
    decrypt_keyset,
    encrypt_keyset,
    header,
    is_encrypted,
    rekey_keyset,
    unlock,
)
from prisme_keys.store.lifecycle import open_keyfile


def new_passphrase_source(settings: Any, new_passphrase_file: Path | str | None = None) -> PassphraseSource:
    """The source of a *new* passphrase for ``encrypt --rekey``: ``--new-passphrase-file``, else
    ``PRISME_KEYS_NEW_PASSPHRASE``, else a prompt (asked twice) on a terminal."""
    return PassphraseSource(
        os.environ.get("PRISME_KEYS_NEW_PASSPHRASE") or None,
        new_passphrase_file,
        file_first=True,
        path=getattr(settings, "key_file", "<key file>"),
        allow_group_read=bool(getattr(settings, "allow_group_read", False)),
        where=WHERE_NEW,
    )


def init_sealer(settings: Any) -> Callable[[Any], Any]:
    """For ``init --encrypt``: get the new passphrase now (before the key is generated) and return
    the ``KeySet -> KeySet`` hook that encrypts the first key set."""
    source = PassphraseSource.from_settings(settings)
    passphrase = source.get("init --encrypt", new=True)

    def seal(keyset: Any) -> Any:
        return encrypt_keyset(keyset, passphrase, settings.key_file)

    return seal


def encrypt_file(settings: Any) -> dict[str, Any]:
    """Encrypt the key file's private members in place (atomic rewrite under the lock).

    Returns:
        ``{path, encrypted: True, kdf, cipher, keys}``.

    Raises:
        KeyFileError: already encrypted, no passphrase, missing/corrupt file, lock timeout.
    """
    kf = open_keyfile(settings)
    if is_encrypted(kf.load()):
        raise KeyFileError(
            f"key file {kf.path} is already encrypted; change its passphrase with prisme-keys encrypt --rekey",
            code="already_encrypted",
        )
    passphrase = kf.passphrase.get("encrypt", new=True)
    with kf.transaction() as tx:
        encrypt_keyset(tx.keyset, passphrase, kf.path)
        tx.commit()
        hdr = tx.keyset.extra["encryption"]
        n = len(tx.keyset.records)
    return {"path": str(kf.path), "encrypted": True, "kdf": _kdf_summary(hdr), "cipher": CIPHER, "keys": n}


def decrypt_file(settings: Any) -> dict[str, Any]:
    """Decrypt the key file in place (private members back in clear text, header removed).

    Every decrypted private key is validated fully first (see :func:`_validate_private`).

    Raises:
        KeyFileError: not encrypted, no/wrong passphrase, a tampered record, an inconsistent
            private key (nothing written).
    """
    kf = open_keyfile(settings)
    ks = kf.load()
    if not is_encrypted(ks):
        raise KeyFileError(f"key file {kf.path} is not encrypted", code="not_encrypted")
    passphrase = kf.passphrase.get("decrypt")
    unlock(
        header(ks), passphrase, kf.path, kf.passphrase.derived_keys
    )  # fail fast on a wrong passphrase, before the lock
    with kf.transaction() as tx:
        decrypt_keyset(tx.keyset, passphrase, kf.path, kf.passphrase.derived_keys)
        _validate_private(tx.keyset.records, kf.path)
        tx.commit()
        n = len(tx.keyset.records)
    return {"path": str(kf.path), "encrypted": False, "keys": n}


def _validate_private(records: list[dict[str, Any]], path: Any) -> None:
    """Validate fully every private key about to be stored in clear text (OpenSSL's RSA key check).

    Keys in the key file are trusted afterwards (``mint`` skips the primality tests), so a key
    is validated whenever it enters the file in clear text: generated, imported, decrypted.

    Raises:
        KeyFileError: ``bad_private_key``, naming the kid; nothing is written.
    """
    from prisme_keys import jwk as jwk_rules

    for r in records:
        if jwk_rules.has_private(r["jwk"]):
            try:
                jwk_rules.private_key_from_jwk(r["jwk"])
            except ValueError as exc:
                raise KeyFileError(
                    f"key {r.get('kid')!r} in {path} is unusable ({exc}); nothing was decrypted",
                    code="bad_private_key",
                ) from None


def rekey_file(settings: Any, new_source: PassphraseSource) -> dict[str, Any]:
    """Change the passphrase (new salt, current default KDF parameters, new nonces) in one atomic rewrite.

    Raises:
        KeyFileError: not encrypted, no/wrong current passphrase, no new passphrase, a tampered record.
    """
    kf = open_keyfile(settings)
    ks = kf.load()
    if not is_encrypted(ks):
        raise KeyFileError(
            f"key file {kf.path} is not encrypted; encrypt it with prisme-keys encrypt", code="not_encrypted"
        )
    old = kf.passphrase.get("encrypt --rekey")
    unlock(header(ks), old, kf.path, kf.passphrase.derived_keys)
    new = new_source.get("encrypt --rekey", new=True)
    with kf.transaction() as tx:
        rekey_keyset(tx.keyset, old, new, kf.path, cache=kf.passphrase.derived_keys)
        tx.commit()
        hdr = tx.keyset.extra["encryption"]
        n = len(tx.keyset.records)
    return {
        "path": str(kf.path),
        "encrypted": True,
        "rekeyed": True,
        "kdf": _kdf_summary(hdr),
        "cipher": CIPHER,
        "keys": n,
    }


def _kdf_summary(hdr: dict[str, Any]) -> dict[str, Any]:
    kdf = dict(hdr.get("kdf") or {})
    kdf.pop("salt", None)
    return kdf
