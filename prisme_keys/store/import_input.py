"""The input of ``import``: read it, recognise its format, and find the keys in it.

Accepted inputs (detected from the content):

* a JWK Set holding private keys ``{"keys": [private JWK, ...]}`` such as the gateway's
  legacy ``jwks.json``;
* gateway records ``{kid, previousKeyId, createdAt, rotatesAt, expiresAt, jwk}`` as a JSON
  array, as JSON lines (what ``mongoexport`` writes and ``mongoimport`` reads), as a single
  record, or as a prisme-keys key file; MongoDB extended JSON (``{"$date": ...}``,
  ``{"$oid": ...}``, ``{"$numberLong": ...}``) is decoded;
* a PEM RSA private key (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``, unencrypted).

Each key found is a :class:`Candidate`; nothing here judges a key (see
:mod:`prisme_keys.store.importer`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError
from prisme_keys.text import decode_utf8, json_error, open_input

#: Largest input read, bytes.
MAX_INPUT_BYTES = 64 * 1024 * 1024


def rejected(message: str) -> KeyFileError:
    """The error of an input that is refused as a whole (exit 4, code ``import_rejected``)."""
    return KeyFileError(message, code="import_rejected")


@dataclass
class Candidate:
    """One key found in the input.

    Attributes:
        position: where it is, for messages (``record 2 (line 2)``, ``key 1``, ``PEM key``).
        record: the record (or ``{"jwk": jwk}`` for a bare JWK); ``None`` when unreadable.
        error: why it could not be read, or ``None``.
    """

    position: str
    record: dict[str, Any] | None = None
    error: str | None = None


def read_source(source: str) -> tuple[bytes, str]:
    """Read the import input from the file ``source`` (standard input is the caller's: see :func:`check_size`).

    Returns:
        ``(bytes, display name)``.

    Raises:
        KeyFileError: the file cannot be read or is larger than :data:`MAX_INPUT_BYTES`.
    """
    try:
        with open_input(source) as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {source}: {exc.strerror or exc}", code="import_unreadable") from None
    return check_size(data, source), source


def check_size(data: bytes, name: str) -> bytes:
    """``data`` when it holds at most :data:`MAX_INPUT_BYTES` (read ``MAX_INPUT_BYTES + 1`` to tell).

    Raises:
        KeyFileError: code ``import_rejected``, the input is larger.
    """
    if len(data) > MAX_INPUT_BYTES:
        raise rejected(f"{name} is larger than {MAX_INPUT_BYTES} bytes")
    return data


# -- parsing -----------------------------------------------------------------------------


def _ext_date(value: Any) -> Any:
    try:
        if isinstance(value, str):
            return clock.iso(clock.parse_iso(value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return clock.iso(clock.from_numeric_date(value / 1000))
    except (ValueError, OverflowError, OSError):
        pass
    return {"$date": value}


def _ext_hook(obj: dict[str, Any]) -> Any:
    """Decode MongoDB extended JSON (canonical and relaxed) single-member wrappers."""
    if len(obj) == 1:
        ((k, v),) = obj.items()
        try:
            if k == "$oid":
                return str(v)
            if k == "$date":
                return _ext_date(v)
            if k in ("$numberInt", "$numberLong"):
                return int(v)
            if k == "$numberDouble":
                return float(v)
        except (TypeError, ValueError):
            return obj
    return obj


def _loads(text: str) -> Any:
    """``json.loads`` with MongoDB extended JSON; JSON nested too deeply is a ``JSONDecodeError`` too."""
    try:
        return json.loads(text, object_hook=_ext_hook)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply", text, 0) from None


def _classify(item: Any, position: str) -> Candidate:
    if isinstance(item, dict) and "jwk" in item:
        return Candidate(position, record=item)
    if isinstance(item, dict) and "kty" in item:
        return Candidate(position.replace("record", "key"), record={"jwk": item})
    if isinstance(item, dict):
        return Candidate(position, error="neither a gateway record (no jwk member) nor a JWK (no kty member)")
    return Candidate(position, error="not a JSON object")


def parse_source(data: bytes, name: str = "input") -> tuple[str, list[Candidate]]:
    """Find the keys in an import input.

    Returns:
        ``(format, candidates)``; format is ``jwks``, ``records``, ``json-lines`` or ``pem``.
        A candidate that cannot be read carries an ``error`` (e.g. a truncated JSON line).

    Raises:
        KeyFileError: the input as a whole is unreadable (empty, not UTF-8, not JSON/PEM,
            an encrypted PEM).
    """
    try:
        text = decode_utf8(data)  # a leading BOM is accepted
    except UnicodeDecodeError:
        raise rejected(
            f"{name} is not UTF-8 text (a JWKS, gateway records or a PEM key); nothing was imported"
        ) from None
    stripped = text.strip()
    if not stripped:
        raise rejected(f"{name} is empty; nothing was imported")
    if stripped.startswith("-----BEGIN"):
        return "pem", [Candidate("PEM key", record={"jwk": _pem_to_jwk(stripped, name)})]
    try:
        doc = _loads(stripped)
    except json.JSONDecodeError as exc:
        lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
        first_ok = False
        if len(lines) > 1:
            try:
                _loads(lines[0][1])
                first_ok = True
            except json.JSONDecodeError:
                pass
        if not first_ok:
            raise rejected(f"{name} is not valid JSON ({json_error(exc)}; truncated?); nothing was imported") from None
        cands = []
        for i, (lineno, ln) in enumerate(lines):
            pos = f"record {i + 1} (line {lineno})"
            try:
                item = _loads(ln)
            except json.JSONDecodeError as e:
                cands.append(Candidate(pos, error=f"not valid JSON ({json_error(e)}; truncated?)"))
                continue
            cands.append(_classify(item, pos))
        return "json-lines", cands
    if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
        items = doc["keys"]
        is_records = "format" in doc or any(isinstance(x, dict) and "jwk" in x for x in items)
        label = "record" if is_records else "key"
        return ("records" if is_records else "jwks"), [_classify(x, f"{label} {i + 1}") for i, x in enumerate(items)]
    if isinstance(doc, list):
        return "records", [_classify(x, f"record {i + 1}") for i, x in enumerate(doc)]
    if isinstance(doc, dict) and ("jwk" in doc or "kty" in doc):
        return ("records" if "jwk" in doc else "jwks"), [_classify(doc, "record 1")]
    raise rejected(
        f'{name} holds no keys: expected a JWKS {{"keys": [...]}}, gateway records '
        "(a JSON array or JSON lines) or a PEM RSA private key; nothing was imported"
    )


def _pem_to_jwk(text: str, name: str) -> dict[str, Any]:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if "ENCRYPTED" in text.split("\n", 1)[0] or "Proc-Type: 4,ENCRYPTED" in text:
        raise rejected(
            f"{name}: the PEM key is encrypted; decrypt it first "
            "(openssl pkey -in KEY -out PLAIN); nothing was imported"
        )
    try:
        key = serialization.load_pem_private_key(text.encode("ascii", "replace"), password=None)
    except TypeError:
        raise rejected(f"{name}: the PEM key is encrypted; decrypt it first; nothing was imported") from None
    except (ValueError, UnsupportedAlgorithm) as exc:  # what cryptography raises on a PEM it cannot read
        kind = type(exc).__name__
        raise rejected(
            f"{name}: not a readable PEM private key ({kind}); "
            "expected an unencrypted RSA PRIVATE KEY or PRIVATE KEY block; nothing was imported"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise rejected(f"{name}: the PEM key is not an RSA key; only RSA keys are supported; nothing was imported")
    jwk: dict[str, Any] = dict(jwk_rules.private_key_to_jwk(key, "RS256", kid=""))
    # alg and kid are filled like any other key's (from the alg/kid arguments, else settings and thumbprint)
    del jwk["alg"]
    del jwk["kid"]
    return jwk
