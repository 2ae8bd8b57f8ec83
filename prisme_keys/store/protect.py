"""Whole-file encryption operations of a key file: encrypt, decrypt and rekey (a new passphrase).

Each runs under the key file's lock and rewrites it atomically (see :mod:`prisme_keys.store.keyfile`);
the record-level cryptography lives in :mod:`prisme_keys.store.encryption`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prisme_keys.errors import KeyFileError, Worded
from prisme_keys.store.encryption import (
    CIPHER,
    PassphraseSource,
    already_encrypted,
    decrypt_keyset,
    encrypt_keyset,
    header,
    is_encrypted,
    rekey_keyset,
    unlock,
)
from prisme_keys.store.lifecycle import open_keyfile
from prisme_keys.store.records import KeyRecord


def new_passphrase_source(settings: Any, new_passphrase_file: Path | str | None = None) -> PassphraseSource:
    """The source of a *new* passphrase for a rekey: ``new_passphrase_file``, else ``settings.new_passphrase``
    (``PRISME_KEYS_NEW_PASSPHRASE``), else ``settings.passphrase_prompt`` (asked twice), when there is one.

    Its error when none is available carries the hint ``new_passphrase``.
    """
    return PassphraseSource(
        getattr(settings, "new_passphrase", None),
        new_passphrase_file,
        file_first=True,
        prompt=getattr(settings, "passphrase_prompt", None),
        path=getattr(settings, "key_file", "<key file>"),
        allow_group_read=bool(getattr(settings, "allow_group_read", False)),
        hint="new_passphrase",
    )


#: What needs the passphrases of a rekey, for messages.
_REKEY = Worded("encrypt {rekey}")


def init_sealer(settings: Any) -> Callable[[Any], Any]:
    """For ``init`` with encryption: get the new passphrase now (before the key is generated) and return
    the ``KeySet -> KeySet`` hook that encrypts the first key set."""
    source = PassphraseSource.from_settings(settings)
    passphrase = source.get(Worded("init {encrypt}"), new=True)

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
        raise already_encrypted(kf.path)
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


def _validate_private(records: list[KeyRecord], path: Any) -> None:
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
    old = kf.passphrase.get(_REKEY)
    unlock(header(ks), old, kf.path, kf.passphrase.derived_keys)
    new = new_source.get(_REKEY, new=True)
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
