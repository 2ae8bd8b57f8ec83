"""Settings checked against each other: one home for the rules ``plan``, ``doctor``, ``config show`` and ``mint`` share.

Each check returns zero or one :class:`SettingsFinding` with the reason and a suggested value,
and stays silent on the defaults (``JWKS_ROTATION_DAYS=30``, ``ACCESS_TOKENS_MAX_AGE=2592000``,
publication lead 0, the reference gateway's verifier):

* ``max_age_exceeds_rotation``: ``ACCESS_TOKENS_MAX_AGE`` longer than the rotation period; the
  published set then holds more than two keys (how many is said). ``warning`` when that is more
  than the reference verifier's key cache holds (jwks-rsa: 5 entries), else ``info``.
* ``lead_shorter_than_cache``: a publication lead above 0 but shorter than the verifiers' JWKS
  cache (``verifier_cache``): a verifier that fetched the set just before a new key was
  published does not know the key when its first tokens arrive.
* ``lead_zero_with_cache``: a lead of 0 while the operator declared verifiers that cache
  (``verifier_cache`` set, by flag, environment or config file, to more than 0). The default
  ``verifier_cache`` (600 s) describes the reference gateway's jwks-rsa, which refetches the
  JWKS when a token names an unknown kid, so a lead of 0 is safe with it and nothing is said.
* ``lead_too_long``: a lead not shorter than the rotation period.
* ``lifetime_exceeds_max_age``: a token lifetime asked of ``mint`` longer than
  ``ACCESS_TOKENS_MAX_AGE``, the longest time a key is kept after it stops signing.
* ``rotation_too_short`` / ``rotation_too_long``: a rotation period under 1 day or over 365 days.
* ``rsa2048_after_2030`` (a key in the file) / ``size_after_2030`` (new keys): RSA keys under
  3072 bits (112-bit security) that sign past the end of 2030, which NIST SP 800-131A Rev. 2
  disallows for signature generation.

No I/O, no clock: ``now`` and the records are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from prisme_keys import clock
from prisme_keys import jwk as jwk_rules
from prisme_keys.settings import Settings
from prisme_keys.store import rotation
from prisme_keys.store.records import KeyRecord

#: RSA keys under this many bits give at most 112-bit security (NIST SP 800-57 Part 1, table 2).
NIST_2030_BITS = 3072
#: NIST SP 800-131A Rev. 2: 112-bit security is disallowed for signature generation after 2030.
END_OF_2030 = datetime(2031, 1, 1, tzinfo=UTC)
#: The reference verifier (jwks-rsa) keeps at most 5 keys in its cache.
REFERENCE_KEY_CACHE_ENTRIES = 5
MIN_ROTATION_DAYS = 1
MAX_ROTATION_DAYS = 365
#: Clock skew between hosts allowed for in a suggested publication lead, seconds.
CLOCK_SKEW = 300
DAY = 86400


class SettingsFinding(NamedTuple):
    """One settings problem or remark (immutable).

    Attributes:
        severity: ``"warning"`` (tokens may be rejected, or a rule is broken) or ``"info"``.
        code: stable identifier (see the module docstring).
        setting: the environment name of the setting to change (``ACCESS_TOKENS_MAX_AGE``...).
        message: the reason, one line.
        suggestion: the suggested value, e.g. ``PRISME_KEYS_PUBLICATION_LEAD=3600``.
        kid: the key concerned, for findings about one key.
    """

    severity: str
    code: str
    setting: str
    message: str
    suggestion: str
    kid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{severity, code, setting, message, suggestion, kid}``."""
        return self._asdict()

    def line(self) -> str:
        """``message; suggested: suggestion``."""
        return f"{self.message}; suggested: {self.suggestion}"


def keys_published(settings: Settings) -> int:
    """How many keys the published set holds at most with rotations on time (next, signing, retired).

    A key is published from its creation (``rotatesAt - lead`` of the key before it) until its
    ``expiresAt = activatesAt + rotation period + max age``; one is created every rotation period.
    """
    period = settings.rotation_days * DAY
    if period <= 0:
        return 0
    return math.ceil((settings.publication_lead + period + settings.access_tokens_max_age) / period)


def _d(secs: float) -> str:
    return clock.format_duration(secs)


def _n(secs: float) -> str:
    return str(int(secs)) if secs == int(secs) else f"{secs}"


def max_age_finding(settings: Settings) -> SettingsFinding | None:
    """``ACCESS_TOKENS_MAX_AGE`` longer than the rotation period (how many keys the set holds)."""
    period, max_age = settings.rotation_days * DAY, settings.access_tokens_max_age
    if period <= 0 or max_age <= period:
        return None
    n = keys_published(settings)
    severity = "warning" if n > REFERENCE_KEY_CACHE_ENTRIES else "info"
    why = (
        f"; more than the {REFERENCE_KEY_CACHE_ENTRIES} keys the reference verifier (jwks-rsa) caches"
        if severity == "warning"
        else ""
    )
    days_needed = math.ceil(max_age / DAY)
    if days_needed <= MAX_ROTATION_DAYS:
        suggestion = f"JWKS_ROTATION_DAYS={days_needed} (or ACCESS_TOKENS_MAX_AGE={period})"
    else:
        suggestion = f"ACCESS_TOKENS_MAX_AGE={period}"
    return SettingsFinding(
        severity,
        "max_age_exceeds_rotation",
        "ACCESS_TOKENS_MAX_AGE",
        f"ACCESS_TOKENS_MAX_AGE ({_d(max_age)}) is longer than the rotation period "
        f"(JWKS_ROTATION_DAYS={settings.rotation_days}): each key stays published {_d(max_age)} after it "
        f"stops signing, so the JWKS will hold up to {n} keys{why}",
        suggestion,
    )


def suggested_lead(cache: float) -> int:
    """A publication lead covering a verifier cache of ``cache`` seconds plus clock skew, rounded up to the hour."""
    return max(3600, math.ceil((cache + CLOCK_SKEW) / 3600) * 3600)


def lead_findings(settings: Settings) -> list[SettingsFinding]:
    """The publication lead against the verifiers' JWKS cache and the rotation period."""
    lead, cache, period = settings.publication_lead, settings.verifier_cache, settings.rotation_days * DAY
    declared = settings.sources.get("verifier_cache", "default") != "default"
    out = []
    suggestion = f"PRISME_KEYS_PUBLICATION_LEAD={_d(suggested_lead(cache))}"
    if 0 < lead < cache:
        out.append(
            SettingsFinding(
                "warning",
                "lead_shorter_than_cache",
                "PRISME_KEYS_PUBLICATION_LEAD",
                f"the publication lead ({_d(lead)}) is shorter than the verifiers' JWKS cache ({_d(cache)}): "
                f"a verifier that fetched the JWKS just before a new key was published rejects that key's "
                f"tokens for up to {_d(cache - lead)} after it starts signing (unless it refetches on an unknown kid)",
                suggestion,
            )
        )
    elif lead == 0 and cache > 0 and declared:
        out.append(
            SettingsFinding(
                "warning",
                "lead_zero_with_cache",
                "PRISME_KEYS_PUBLICATION_LEAD",
                f"new keys sign as soon as they are published (publication lead 0) but the verifiers cache the "
                f"JWKS for {_d(cache)}: they reject a new key's tokens for up to {_d(cache)} "
                "(unless they refetch on an unknown kid, as the reference gateway's jwks-rsa does)",
                suggestion,
            )
        )
    if period > 0 and lead >= period:
        out.append(
            SettingsFinding(
                "warning",
                "lead_too_long",
                "PRISME_KEYS_PUBLICATION_LEAD",
                f"the publication lead ({_d(lead)}) is not shorter than the rotation period "
                f"({settings.rotation_days} days): keys will sign longer than JWKS_ROTATION_DAYS",
                f"PRISME_KEYS_PUBLICATION_LEAD={_d(min(suggested_lead(cache), period // 2))}",
            )
        )
    return out


def lifetime_finding(settings: Settings, lifetime: float) -> SettingsFinding | None:
    """A token lifetime (seconds) longer than ``ACCESS_TOKENS_MAX_AGE``, the time keys are kept after signing."""
    max_age = settings.access_tokens_max_age
    if lifetime <= max_age:
        return None
    return SettingsFinding(
        "warning",
        "lifetime_exceeds_max_age",
        "ACCESS_TOKENS_MAX_AGE",
        f"lifetime {_n(lifetime)} s is longer than ACCESS_TOKENS_MAX_AGE ({max_age} s), the longest time a key is "
        "kept after it stops signing: the token may outlive its key's publication",
        f"a lifetime of at most {max_age} s ({_d(max_age)})",
    )


def rotation_period_finding(settings: Settings) -> SettingsFinding | None:
    """A rotation period under 1 day or over 365 days."""
    days = settings.rotation_days
    if days < MIN_ROTATION_DAYS:
        return SettingsFinding(
            "warning",
            "rotation_too_short",
            "JWKS_ROTATION_DAYS",
            f"the rotation period ({days} days) is under one day: every cron run adds a key and the JWKS churns",
            f"JWKS_ROTATION_DAYS={MIN_ROTATION_DAYS}",
        )
    if days > MAX_ROTATION_DAYS:
        return SettingsFinding(
            "warning",
            "rotation_too_long",
            "JWKS_ROTATION_DAYS",
            f"the rotation period ({days} days) is over a year: a leaked key stays usable for that long",
            f"JWKS_ROTATION_DAYS={MAX_ROTATION_DAYS}",
        )
    return None


def nist_2030_findings(
    settings: Settings, now: datetime, records: Sequence[KeyRecord] = (), until: datetime | None = None
) -> list[SettingsFinding]:
    """RSA keys under 3072 bits signing past the end of 2030 (NIST SP 800-131A Rev. 2).

    Args:
        records: the key file's records: a signing or next key of fewer bits whose ``rotatesAt``
            is after 2030 is reported.
        until: the last time a new key may be created (a plan's horizon; default ``now``): new
            keys of ``settings.size`` bits created by then that rotate after 2030 are reported.
    """
    out = []
    recs = list(records)
    for r in recs:
        bits = jwk_rules.key_bits(r["jwk"])
        try:
            late = rotation.state(r, recs, now) in ("signing", "next") and rotation.t(r, "rotatesAt") > END_OF_2030
        except (ValueError, TypeError, KeyError):  # unreadable dates: doctor reports them
            continue
        if 0 < bits < NIST_2030_BITS and late:
            out.append(
                SettingsFinding(
                    "warning",
                    "rsa2048_after_2030",
                    "JWKS_SIZE",
                    f"key {r['kid']} ({bits} bits) signs until {r['rotatesAt'][:10]}, past the end of 2030: NIST SP "
                    f"800-131A disallows RSA keys under {NIST_2030_BITS} bits for signing after 2030",
                    f"JWKS_SIZE={NIST_2030_BITS}, then rotate before 2031-01-01",
                    r["kid"],
                )
            )
    if settings.size < NIST_2030_BITS:
        first = END_OF_2030 - timedelta(seconds=settings.publication_lead) - clock.days(settings.rotation_days)
        if first < (until or now):
            out.append(
                SettingsFinding(
                    "warning",
                    "size_after_2030",
                    "JWKS_SIZE",
                    f"new {settings.size}-bit keys created after {first.strftime('%Y-%m-%d %H:%M')} UTC sign past "
                    f"the end of 2030: NIST SP 800-131A disallows RSA keys under {NIST_2030_BITS} bits "
                    "for signing after 2030",
                    f"JWKS_SIZE={NIST_2030_BITS}",
                )
            )
    return out


def check(
    settings: Settings,
    now: datetime,
    *,
    records: Sequence[KeyRecord] = (),
    lifetime: float | None = None,
    until: datetime | None = None,
) -> list[SettingsFinding]:
    """Every settings check, warnings first.

    Args:
        settings: the effective settings.
        now: the time to judge at (UTC).
        records: the key file's records, when at hand (for the per-key NIST check).
        lifetime: a token lifetime in seconds asked of ``mint``, when there is one.
        until: the end of a planned schedule (default ``now``).
    """
    found: list[SettingsFinding | None] = [rotation_period_finding(settings), max_age_finding(settings)]
    found += lead_findings(settings)
    if lifetime is not None:
        found.append(lifetime_finding(settings, lifetime))
    found += nist_2030_findings(settings, now, records, until)
    out = [f for f in found if f is not None]
    return sorted(out, key=lambda f: f.severity != "warning")
