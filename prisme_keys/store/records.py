"""The key record: one signing key with its dates, in the gateway's record shape (DESIGN.md section 3).

A key file holds ``{"format": 1, "keys": [KeyRecord, ...]}``, newest first; ``export --format
records`` writes the same records for the gateway's collection, and ``import`` reads them back.
Member names are the gateway's (camelCase), times ISO-8601 UTC with milliseconds and ``Z``
(``2026-01-01T00:00:00.000Z``).
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

from prisme_keys.jwk import RSAJwk

#: The name of a record member that holds a time.
TimeMember = Literal["createdAt", "rotatesAt", "expiresAt", "activatesAt"]
#: The record members that hold a time, always present.
RECORD_TIMES: tuple[TimeMember, ...] = ("createdAt", "rotatesAt", "expiresAt")


class KeyRecord(TypedDict):
    """One key of a key file (the gateway's record shape).

    Attributes:
        kid: the key id, the same as ``jwk["kid"]`` (an RFC 7638 thumbprint for keys made here).
        previousKeyId: the kid of the signing key this one replaced; ``None`` for the first key.
        createdAt: when the key was created (and published).
        rotatesAt: when the next key takes over signing (``createdAt`` or ``activatesAt`` plus
            ``JWKS_ROTATION_DAYS``).
        expiresAt: when the last token it signed has expired; ``prune`` removes it after that.
        jwk: the RSA JWK (:class:`prisme_keys.jwk.RSAJwk`), private members sealed in an
            encrypted key file.
        activatesAt: present on a key published ahead of signing (a publication lead): when it
            starts signing; before that its state is ``next``.
    """

    kid: str
    previousKeyId: str | None
    createdAt: str
    rotatesAt: str
    expiresAt: str
    jwk: RSAJwk
    activatesAt: NotRequired[str]
