"""Properties of the pure rotation rules (store/rotation.py), over random policies and cron schedules.

A simulated cron job runs ``rotate`` then ``prune`` at random increasing times. Whatever the
policy and the gaps between runs:
* the set is never empty once it has a key;
* the signing key is never pruned;
* a key is pruned only after every token it could have signed has expired: no earlier than the
  moment it stopped signing (its successor's activation) plus ``max_age``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from prisme_keys.store import rotation

T0 = datetime(2026, 1, 1, tzinfo=UTC)

policies = st.builds(
    rotation.Policy,
    rotation_days=st.integers(1, 60),
    max_age=st.integers(60, 60 * 86400),
    lead=st.sampled_from([0, 0, 600, 3600, 86400, 3 * 86400]),
)
gaps = st.lists(st.integers(60, 20 * 86400), min_size=1, max_size=60)  # seconds between cron runs


def _simulate(policy: rotation.Policy, steps: list[int]) -> None:
    now = T0
    records: list[rotation.Record] = []
    stopped_signing: dict[str, datetime] = {}  # kid -> when its successor activated
    counter = 0
    for gap in steps:
        now += timedelta(seconds=gap)
        if rotation.plan_rotation(records, policy, now).due:
            counter += 1
            res = rotation.apply_rotation(records, {"kid": f"k{counter}"}, policy, now)
            if res.retired is not None:
                stopped_signing[res.retired["kid"]] = rotation.t(res.created, "activatesAt")
            records = res.records
        signing = rotation.signing_record(records, now)
        plan = rotation.plan_prune(records, now)
        assert plan.keep, "the set is never emptied"
        assert signing is not None and signing in plan.keep, "the signing key is never pruned"
        for gone in plan.remove:
            last_token_expiry = stopped_signing[gone["kid"]] + timedelta(seconds=policy.max_age)
            assert now >= last_token_expiry, (gone["kid"], now, last_token_expiry)
            assert rotation.t(gone, "expiresAt") >= last_token_expiry
        records = plan.keep


@settings(max_examples=300, deadline=None)
@given(policies, gaps)
def test_cron_schedules_keep_the_invariants(policy, steps):
    _simulate(policy, steps)


@settings(max_examples=100, deadline=None)
@given(policies, st.integers(1, 400))
def test_a_late_rotation_extends_the_retired_key(policy, late_days):
    """A rotation run long after rotatesAt (cron down for days) still keeps the old key for max_age."""
    _simulate(policy, [60, late_days * 86400, 60, policy.max_age, policy.max_age + 60])
