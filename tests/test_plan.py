"""plan and list --timeline: golden outputs, the simulation against real rotate/prune runs, the hourly cron."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import empty_config, record, write_keyfile
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from prisme_keys import clock
from prisme_keys.cli import main
from prisme_keys.settings import Settings
from prisme_keys.store import lifecycle, rotation, schedule

GOLDEN = Path(__file__).parent / "golden"
NOW = "2026-01-10T00:00:00.000Z"
#: Set to 1 to rewrite the golden files from the current output (then review the diff).
REGEN = os.environ.get("PRISME_KEYS_REGEN_GOLDEN") == "1"


@pytest.fixture
def run(tmp_path, capsys):
    """``main(argv, env)`` in-process with an empty named config; returns ``(exit code, stdout, stderr)``."""
    cfg = empty_config(tmp_path)

    def go(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(list(argv), env={"PRISME_KEYS_CONFIG": str(cfg), **(env or {})})
        out, err = capsys.readouterr()
        return rc, out, err

    return go


@pytest.fixture
def golden_keys(tmp_path):
    """A copy (0600) of tests/golden/keys.json: two public-only records, fixed kids and dates."""
    kf = tmp_path / "keys.json"
    shutil.copy(GOLDEN / "keys.json", kf)
    os.chmod(kf, 0o600)
    return kf


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text, "utf-8")
    assert text == path.read_text("utf-8"), f"output differs from {path} (PRISME_KEYS_REGEN_GOLDEN=1 rewrites it)"


# -- golden outputs ------------------------------------------------------------------------------------------------


def test_plan_text_golden(run, golden_keys):
    rc, out, err = run("--key-file", str(golden_keys), "--now", NOW, "plan")
    assert (rc, err) == (0, "")
    golden("plan.txt", out)
    assert "Rotation plan for 90 days" in out.splitlines()[0]
    assert "Settings checks: nothing to report." in out


def test_plan_json_golden(run, golden_keys):
    rc, out, err = run("--key-file", str(golden_keys), "--now", NOW, "--json", "plan")
    assert (rc, err) == (0, "")
    doc = json.loads(out)
    golden("plan.json", out)
    assert doc["days"] == 90 and doc["now"] == NOW and doc["end"] == "2026-04-10T00:00:00.000Z"
    assert [(e["at"][:10], e["type"], e["kid"]) for e in doc["events"]] == [
        ("2026-01-30", "rotation", "new-1"),
        ("2026-01-30", "prune", "M7w40bZ22zsS0g5ze0hO9Rv7Lo_Zuqv4uu7bKhWin4Q"),
        ("2026-03-01", "rotation", "new-2"),
        ("2026-03-01", "prune", "MwrgtY8Rd2YD_2-ybqhA6W2bbFsyYXiox0iA_87ukjg"),
        ("2026-03-31", "rotation", "new-3"),
        ("2026-03-31", "prune", "new-1"),
    ]
    assert [k["kid"] for k in doc["keys"]][2:] == ["new-1", "new-2", "new-3"]
    assert [(j["keys"], j["bytes"]) for j in doc["jwks"]] == [(1, 462), (2, 914)]
    assert doc["findings"] == []


def test_plan_with_lead_and_findings_golden(run, golden_keys):
    env = {"PRISME_KEYS_PUBLICATION_LEAD": "2d", "ACCESS_TOKENS_MAX_AGE": "5184000", "PRISME_KEYS_VERIFIER_CACHE": "3d"}
    rc, out, err = run("--key-file", str(golden_keys), "--now", NOW, "plan", "--days", "60", env=env)
    assert (rc, err) == (0, "")
    golden("plan-lead.txt", out)
    assert "░" in out and "activation" in out
    assert "lead_shorter_than_cache" in out and "suggested: PRISME_KEYS_PUBLICATION_LEAD=73h" in out
    assert "max_age_exceeds_rotation" in out and "the JWKS will hold up to 4 keys" in out


def test_list_timeline_golden(run, golden_keys):
    rc, out, err = run("--key-file", str(golden_keys), "--now", NOW, "list", "--timeline")
    assert (rc, err) == (0, "")
    golden("list-timeline.txt", out)
    assert "new-" not in out  # the keys in the file only
    rc, out, err = run("--key-file", str(golden_keys), "--now", NOW, "--json", "list", "--timeline")
    doc = json.loads(out)
    assert set(doc) == {"now", "start", "end", "keys", "jwks"}
    assert [[(s["state"], s["start"][:10], s["end"] and s["end"][:10]) for s in k["spans"]] for k in doc["keys"]] == [
        [
            ("signing", "2025-12-01", "2025-12-31"),
            ("retired", "2025-12-31", "2026-01-30"),
            ("expired", "2026-01-30", None),
        ],
        [("signing", "2025-12-31", None)],
    ]


def test_plan_svg_parses_as_xml(run, golden_keys, tmp_path):
    svg = tmp_path / "plan.svg"
    rc, out, err = run("--key-file", str(golden_keys), "--now", NOW, "plan", "--svg", str(svg))
    assert rc == 0 and err == f"wrote the chart to {svg}\n"
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = "".join(root.itertext()).replace("\xa0", " ")
    assert "Rotation plan for 90 days" in text and "new-1" in text and "JWKS keys" in text and "today" in text
    assert oct(svg.stat().st_mode & 0o777) == "0o644"
    rc, out, err = run("--key-file", str(golden_keys), "--now", NOW, "--json", "plan", "--svg", str(svg))
    assert rc == 0 and json.loads(out)["days"] == 90 and err == ""


# -- errors ---------------------------------------------------------------------------------------------------------


def test_plan_usage_and_key_file_errors(run, golden_keys, tmp_path, keypool):
    g = ("--key-file", str(golden_keys), "--now", NOW)
    rc, out, err = run(*g, "plan", "--days", "0")
    assert rc == 2 and "--days" in err and out == ""
    rc, out, err = run(*g, "plan", "--days", "3661")
    assert rc == 2 and "--days" in err
    rc, out, err = run(*g, "plan", "--svg", str(tmp_path))
    assert (rc, err) == (
        2,
        f"prisme-keys: error: --svg {tmp_path} is not a regular file; give the path of the SVG file to write\n",
    )
    rc, out, err = run(*g, "plan", "--verifier-cache", "soon")
    assert (rc, err) == (
        2,
        "prisme-keys: error: --verifier-cache: 'soon' is not a time; use seconds (0 or more) or a duration like 90s, "
        "15m, 2h, 1d\n",
    )
    rc, out, err = run("--key-file", str(tmp_path / "none.json"), "plan")
    assert rc == 4 and err.startswith("prisme-keys: error: key file") and out == ""
    dup = write_keyfile(
        tmp_path / "dup.json", [record(keypool[0]), record(keypool[0], created="2026-01-02T00:00:00.000Z")]
    )
    for args in (("plan",), ("list", "--timeline")):
        rc, out, err = run("--key-file", str(dup), "--now", NOW, *args)
        assert (rc, out) == (4, "") and err == (
            f"prisme-keys: error: the key file holds kid {keypool[0]['kid']!r} twice; refusing to "
            f"{'plan for' if args == ('plan',) else 'draw'} an ambiguous set (run prisme-keys doctor)\n"
        )
    with pytest.raises(Exception, match="a plan covers 1 to 3660 days, not 0"):
        lifecycle.plan(Settings(key_file=golden_keys), clock.parse_iso(NOW), 0)


# -- the simulation agrees with reality ----------------------------------------------------------------------------

T0 = "2026-01-01T00:00:00.000Z"

SCENARIOS = {
    "defaults": ({}, [{"created": T0}]),
    "lead 1 day": ({"publication_lead": 86400}, [{"created": T0}]),
    "max age 45 days, lead 3 days": (
        {"access_tokens_max_age": 45 * 86400, "publication_lead": 3 * 86400},
        [{"created": T0}],
    ),
    "rotation 7 days, max age 20 days": ({"rotation_days": 7, "access_tokens_max_age": 20 * 86400}, [{"created": T0}]),
    "overdue and expired signing key": (
        {},
        [
            {
                "created": "2025-10-01T00:00:00.000Z",
                "rotates": "2025-10-31T00:00:00.000Z",
                "expires": "2025-11-30T00:00:00.000Z",
            }
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_plan_agrees_with_daily_rotate_and_prune(name, tmp_path, keypool, run):
    """rotate then prune daily with now = day for 90 days on a copy of the key file: the same rotations,
    prunes and key states, day by day, as plan --days 90 --json."""
    overrides, recs = SCENARIOS[name]
    first = record(keypool[0], **recs[0])
    kf = write_keyfile(tmp_path / "keys.json", [first])
    copy = write_keyfile(tmp_path / "copy.json", [first])
    env = {
        "JWKS_ROTATION_DAYS": str(overrides.get("rotation_days", 30)),
        "ACCESS_TOKENS_MAX_AGE": str(overrides.get("access_tokens_max_age", 2592000)),
        "PRISME_KEYS_PUBLICATION_LEAD": str(overrides.get("publication_lead", 0)),
    }
    start = clock.parse_iso("2026-01-05T00:00:00.000Z")
    rc, out, err = run("--key-file", str(kf), "--now", clock.iso(start), "--json", "plan", "--days", "90", env=env)
    assert rc == 0, err
    doc = json.loads(out)

    settings = Settings(key_file=copy, **overrides)
    pool = itertools.chain(keypool[1:], keypool[1:])  # each pool key is used once per key file
    names = {first["kid"]: first["kid"]}  # real kid -> the plan's name for it
    real_events, real_states, plan_states = [], [], []
    keys = [schedule_key(k) for k in doc["keys"]]
    made = itertools.count(1)
    for day in range(91):
        now = start + timedelta(days=day)
        res = lifecycle.rotate(settings, now, keygen=lambda bits, alg: next(pool))
        if res.rotated:
            names[res.created["kid"]] = f"new-{next(made)}"  # a pool key comes back once its first use is pruned
            real_events.append((clock.iso(now), "rotation", names[res.created["kid"]]))
        for r in lifecycle.prune(settings, now).removed:
            real_events.append((clock.iso(now), "prune", names[r["kid"]]))
        real_states.append({names[r["kid"]]: r["state"] for r in lifecycle.list_keys(settings, now)})
        plan_states.append({k.kid: k.state_at(now) for k in keys if k.state_at(now)})
    plan_events = [(e["at"], e["type"], e["kid"]) for e in doc["events"] if e["type"] != "activation"]
    assert plan_events == real_events
    for day, (want, got) in enumerate(zip(plan_states, real_states, strict=True)):
        assert got == want, f"day {day}"
    assert real_events and any(e[1] == "prune" for e in real_events)


def schedule_key(doc: dict) -> schedule.KeyTimeline:
    """A KeyTimeline rebuilt from the plan's JSON (to ask it a key's state at a time)."""
    spans = [
        schedule.Span(s["state"], clock.parse_iso(s["start"]), clock.parse_iso(s["end"]) if s["end"] else None)
        for s in doc["spans"]
    ]
    return schedule.KeyTimeline(doc["kid"], doc["future"], doc["bits"], {}, None, spans)


# -- the hourly cron, exactly ---------------------------------------------------------------------------------------


def brute_force(records, policy, now, hours):
    """The cron job run literally every hour (the oracle): events as (time, type, kid)."""
    events, n = [], 0
    for h in range(hours + 1):
        at = now + timedelta(hours=h)
        step = rotation.rotate_records(records, {"kid": f"new-{n + 1}"}, policy, at)
        if step.result is not None:
            n += 1
            records = step.result.records
            events.append((clock.iso(step.at), "rotation", f"new-{n}"))
        pruned = rotation.plan_prune(records, at)
        events += [(clock.iso(at), "prune", r["kid"]) for r in pruned.remove]
        records = pruned.keep
    return events


@pytest.mark.parametrize(
    "policy",
    [
        rotation.Policy(1, 3600 * 30 + 17, 0),
        rotation.Policy(2, 86400 * 5, 5400.5),
        rotation.Policy(3, 7200, 3 * 86400),  # lead longer than the rotation period
        rotation.Policy(1, 60, 0),
    ],
    ids=str,
)
def test_simulation_jumps_land_on_the_same_hourly_runs(policy, keypool):
    first = record(
        keypool[0],
        created="2026-01-01T08:17:23.456Z",
        rotates="2026-01-02T08:17:23.456Z",
        expires="2026-01-03T09:00:00.000Z",
    )
    now = clock.parse_iso("2026-01-01T11:05:00.000Z")
    hours = 24 * 12
    sched = schedule.simulate([first], policy, now, now + timedelta(hours=hours), alg="RS256", bits=2048)
    got = [(clock.iso(e.at), e.kind, e.kid) for e in sched.events if e.kind != "activation"]
    assert got == brute_force([first], policy, now, hours)
    assert len(got) >= 8


def test_activation_events_and_next_spans(keypool):
    first = record(keypool[0])
    now = clock.parse_iso("2026-01-10T00:00:00.000Z")
    sched = schedule.simulate(
        [first], rotation.Policy(30, 2592000, 86400), now, now + timedelta(days=40), alg="RS256", bits=3072
    )
    assert [(clock.iso(e.at)[:10], e.kind, e.kid, e.replaces) for e in sched.events] == [
        ("2026-01-30", "rotation", "new-1", first["kid"]),
        ("2026-01-31", "activation", "new-1", first["kid"]),
    ]
    new = sched.keys[1]
    assert (new.kid, new.future, new.bits) == ("new-1", True, 3072)
    assert [(s.state, clock.iso(s.start)[:10]) for s in new.spans] == [
        ("next", "2026-01-30"),
        ("signing", "2026-01-31"),
    ]
    assert new.spans[-1].end is None
    assert sched.keys[0].record["expiresAt"] == "2026-03-02T00:00:00.000Z"  # the retired key's extended expiry
    # {"keys":[...]} is 11 bytes, a 2048-bit public JWK with a thumbprint kid 451, a 3072-bit one 170 more
    # (n: 512 base64url characters instead of 342), and a comma between them
    assert [(p.keys, p.bytes) for p in sched.jwks] == [(1, 11 + 451), (2, 11 + 451 + 1 + 451 + 170)]


def test_default_days_and_cap():
    assert schedule.default_days(rotation.Policy(30, 2592000, 0)) == 90
    assert schedule.default_days(rotation.Policy(30, 2592001, 0)) == 91
    assert schedule.default_days(rotation.Policy(30, 2592000, 3600)) == 91
    assert schedule.default_days(rotation.Policy(3000, 2592000, 0)) == schedule.MAX_DAYS


def test_future_kids_skip_kids_already_in_the_file(keypool):
    jwk = dict(keypool[0], kid="new-1")
    first = record(jwk, rotates="2026-01-02T00:00:00.000Z", expires="2026-01-03T00:00:00.000Z")
    now = clock.parse_iso(T0)
    sched = schedule.simulate(
        [first], rotation.Policy(1, 86400, 0), now, now + timedelta(days=3), alg="RS256", bits=2048
    )
    assert [k.kid for k in sched.keys] == ["new-1", "new-2", "new-3", "new-4"]
    assert [k.future for k in sched.keys] == [False, True, True, True]


def test_chart_draws_at_most_40_rows(run, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0])])
    g = ("--key-file", str(kf), "--now", T0, "plan", "--days", "100")
    env = {"JWKS_ROTATION_DAYS": "1", "ACCESS_TOKENS_MAX_AGE": "3600"}
    rc, out, err = run(*g[:4], "--json", *g[4:], env=env)
    n = len(json.loads(out)["keys"])
    assert n == 1 + 71  # a rotation a day from 2026-01-31 to 2026-04-11
    rc, out, err = run(*g, env=env)
    assert rc == 0 and sum(1 for ln in out.splitlines() if ln.startswith("new-")) == 39
    assert f"({n - 40} more keys not drawn: {n} in all)\n" in out


def test_timeline_before_the_first_key_shows_no_empty_set(run, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0])])
    rc, out, err = run("--key-file", str(kf), "--now", "2025-06-01T00:00:00Z", "--json", "list", "--timeline")
    doc = json.loads(out)
    assert doc["start"] == "2025-06-01T00:00:00.000Z" and [(j["at"], j["keys"]) for j in doc["jwks"]] == [(T0, 1)]
    rc, out, err = run("--key-file", str(kf), "--now", "2025-06-01T00:00:00Z", "list", "--timeline")
    assert "JWKS published: 1 key, 462 bytes (compact JSON)\n" in out and "JWKS keys      " + " " * 20 in out


# -- the edges of time (years 1 and 9999) --------------------------------------------------------------------------

EDGE = "9999-12-31T23:59:59.999Z"


def test_plan_and_timeline_near_year_9999_end_at_the_last_millisecond(cli, keyfile):
    kf = ("--key-file", str(keyfile))
    p = cli(*kf, "--now", "9999-12-01", "plan")
    assert (p.returncode, p.stderr) == (0, "")
    p = cli(*kf, "--json", "--now", "9999-12-01", "plan")
    assert p.returncode == 0 and json.loads(p.stdout)["end"] == EDGE  # the window is clamped, not an overflow
    for argv in (["list", "--timeline"], ["--json", "list", "--timeline"], ["plan", "--days", "3660"]):
        p = cli(*kf, "--now", "9999-12-31T23:59:59Z", *argv)
        assert (p.returncode, p.stderr) == (0, ""), argv


def test_plan_near_year_1_writes_four_digit_years(cli, keyfile):
    p = cli("--key-file", str(keyfile), "--json", "--now", "0001-01-02", "plan")
    assert (p.returncode, p.stderr) == (0, "")
    keys = {k["kid"]: k["createdAt"] for k in json.loads(p.stdout)["keys"]}
    assert keys[json.loads(keyfile.read_text())["keys"][0]["kid"]] == "0001-01-01T23:59:59.999Z"  # brought back
    # (it was written '1-01-01T23:59:59.999Z', which parse_iso refused: exit 1)


def test_record_rotating_in_year_9999_plans(cli, tmp_path, keypool):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0], rotates=EDGE)])
    for argv in (["plan"], ["plan", "--days", "3660"], ["--json", "list", "--timeline"]):
        p = cli("--key-file", str(kf), "--now", NOW, *argv)
        assert (p.returncode, p.stderr) == (0, ""), argv


YEARS = st.integers(1, 9999)


@st.composite
def edge_times(draw):
    """An ISO time anywhere in years 1..9999, often at the very edges."""
    dt = draw(
        st.one_of(
            st.sampled_from([clock.EARLIEST, clock.LATEST, clock.EARLIEST + timedelta(days=1)]),
            st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
        )
    )
    return clock.iso(dt.replace(tzinfo=UTC))


@hyp_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(now=edge_times(), created=edge_times(), rotates=edge_times(), expires=edge_times())
def test_no_command_crashes_anywhere_in_years_1_to_9999(cli, tmp_path, keypool, now, created, rotates, expires):
    rotates, expires = max(created, rotates), max(created, rotates, expires)  # ISO strings order as times
    kf = write_keyfile(tmp_path / "edge.json", [record(keypool[0], created, rotates, expires)])
    for argv in (
        ["--json", "plan"],
        ["--json", "list", "--timeline"],
        ["rotate", "--dry-run"],
        ["--json", "doctor"],
        ["mint", "--expired"],
    ):
        p = cli("--key-file", str(kf), "--now", now, *argv)
        assert p.returncode not in (1,), (argv, now, created, rotates, expires, p.stderr)
        assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
