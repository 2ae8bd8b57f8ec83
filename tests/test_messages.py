"""Argument checks and messages (issue 11, section 4): each input with its exact exit code and message,
one line on stderr, no traceback, never exit 1."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys

import pytest
from helpers import record, script, write_keyfile

ISS, AUD = "https://issuer.test", "https://api.test"
ENV = {"OIDC_PROVIDER_URL": ISS, "API_URL": AUD}


@pytest.fixture
def run(cli):
    """The command line, in-process (:class:`helpers.Cli`), with an issuer and audience set."""
    cli.env.update(ENV)
    return cli


@pytest.fixture
def kf(tmp_path, keypool):
    from prisme_keys import clock

    now = clock.now()
    rec = record(
        keypool[0],
        created=clock.iso(now - clock.days(1)),
        rotates=clock.iso(now + clock.days(29)),
        expires=clock.iso(now + clock.days(59)),
    )
    return write_keyfile(tmp_path / "keys.json", [rec])


def one_line(p, code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stderr)
    assert p.stdout == "" and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    return p.stderr


# -- mint inputs ---------------------------------------------------------------------------


def test_sub_with_bytes_that_are_not_utf8(cli, kf):
    # was: internal UnicodeEncodeError (exit 1); a subprocess, as the bytes come from argv
    p = subprocess.run(
        [script(), "--key-file", str(kf), "mint", "--sub", os.fsdecode(b"ab\xff")],
        env={**cli.env, **ENV},
        capture_output=True,
        text=True,
    )
    assert one_line(p, 2) == "prisme-keys: error: --sub: not valid UTF-8 text (byte 0xff at character 3)\n"
    p = subprocess.run(
        [script(), "--key-file", str(kf), "mint", "--claim", os.fsdecode(b"role=\xfe")],
        env={**cli.env, **ENV},
        capture_output=True,
        text=True,
    )
    assert one_line(p, 2) == "prisme-keys: error: --claim: not valid UTF-8 text (byte 0xfe at character 6)\n"


@pytest.mark.parametrize("flag", ["--sub", "--iss", "--aud", "--kid", "--session-id"])
def test_empty_text_options_refused(run, kf, flag):
    # was: --sub '' accepted
    assert one_line(run("--key-file", str(kf), "mint", flag, ""), 2) == (
        f"prisme-keys: error: {flag}: empty value; give a non-empty text\n"
    )
    assert run("--key-file", str(kf), "mint", flag, "  ").returncode == 2


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ttl", "3000000d"], "lifetime 259200000000 s puts exp after the year 9999"),
        (["--expires-after", "999999999999999999"], "lifetime 999999999999999999 s puts exp after the year 9999"),
        (["--claim", "nbf=1e300"], "claim 'nbf' is out of range: 1e+300 is not a date between the years 1 and 9999"),
        (["--claim", 'iat="soon"'], "claim 'iat' must be a NumericDate (seconds since the epoch as a number), got str"),
        (["--claim", "iss=5"], "claim 'iss' must be a non-empty string (RFC 7519 section 4.1), got 5"),
        (["--claim", "aud=[1]"], "claim 'aud' must be a non-empty string or a list of them (RFC 7519 section 4.1)"),
        (["--not-before", "9999999999999d"], "claim 'nbf' is out of range"),
    ],
)
def test_mint_refuses_before_signing_what_verify_rejects(run, kf, args, message):
    err = one_line(run("--key-file", str(kf), "mint", *args), 2)
    assert err.startswith("prisme-keys: error: " + message), err


def test_mint_range_is_checked_before_the_key_is_read(run, tmp_path):
    # exit 2 even with no key file at all: nothing is signed, nothing is read
    err = one_line(run("--key-file", str(tmp_path / "none.json"), "mint", "--ttl", "3000000d"), 2)
    assert "puts exp after the year 9999" in err


# -- capped echoes -------------------------------------------------------------------------

HUGE = "k" * 100_000


@pytest.mark.parametrize(
    "args,code",
    [
        (["mint", "--kid", HUGE], 2),  # over the 256 characters of a kid (jwk.kid_problem)
        (["mint", "--claim", HUGE], 2),
        (["mint", "--ttl", HUGE], 2),
        (["--now", HUGE, "list"], 2),
        (["verify", "a.b.c", "--algorithms", HUGE], 2),
        (["verify", "a.b.c", "--jwks-url", "http://" + HUGE], 2),
        (["verify", "a.b.c", "--jwks-file", "/" + HUGE], 9),
        (["serve", "--port", HUGE], 2),
        (["export", "--format", HUGE], 2),
    ],
    ids=["mint-kid", "claim", "ttl", "now", "algorithms", "jwks-url", "jwks-file", "port", "format"],
)
def test_echoed_input_is_capped(run, kf, args, code):
    # was: a 100,000-character --kid gave a 100 KB error line
    p = run("--key-file", str(kf), *args)
    assert p.returncode == code, p.stderr[:300]
    assert "Traceback" not in p.stderr
    assert len(p.stderr) < 1200, len(p.stderr)
    assert re.search(r"\.\.\. \(1000[0-9]{2} characters\)", p.stderr), p.stderr


def test_last_resort_cap_keeps_the_reason(run, kf):
    err = one_line(run("--key-file", str(kf), "verify", "a.b.c", "--jwks-file", "/" + HUGE), 9)
    assert err.startswith("prisme-keys: error: cannot read JWKS file /kkk")
    assert err.endswith("... (100043 characters) ..." + "k" * 180 + ": File name too long\n")


def test_kid_echo_names_its_length(run, kf):
    err = one_line(run("--key-file", str(kf), "mint", "--kid", "k" * 256), 4)  # the longest kid there may be
    assert err.startswith("prisme-keys: error: no key with kid '" + "k" * 200 + "'... (256 characters) in ")


# -- wrong or misleading messages -----------------------------------------------------------


def test_encrypt_on_a_plain_file_does_not_say_it_is_encrypted(run, kf):
    err = one_line(run("--key-file", str(kf), "encrypt"), 4)
    assert "is encrypted" not in err
    assert err == (
        f"prisme-keys: error: encrypt needs a new passphrase for key file {kf}: set PRISME_KEYS_PASSPHRASE, pass "
        "--passphrase-file FILE (before the command) or set PRISME_KEYS_PASSPHRASE_FILE, or run on a terminal to "
        "be prompted\n"
    )


def test_lock_timeout_names_the_current_holder(cli, kf):
    # was: the pid of the last writer, read from the lock file, instead of the process holding the lock
    lock = f"{kf}.lock"
    with open(lock, "w") as fh:
        fh.write("pid 1 on elsewhere since 2020-01-01T00:00:00.000Z\n")  # stale details of a past holder
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(60)",
            lock,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"  # handshake: the lock is held
        name = open(f"/proc/{holder.pid}/comm").read().strip()
        p = cli("--key-file", str(kf), "rotate", "--force", env={"PRISME_KEYS_LOCK_TIMEOUT": "0.3"})
    finally:
        holder.kill()
        holder.wait()
    err = one_line(p, 4)
    assert "pid 1 on elsewhere" not in err
    assert err == (
        f"prisme-keys: error: timed out after 0.3 s waiting for the lock {lock} (held by pid {holder.pid} ({name}))\n"
    )


def test_lock_details_of_a_prisme_keys_holder_are_shown(kf):
    from prisme_keys.store.keyfile import KeyFile, lock_holder

    kfile = KeyFile(kf)
    with kfile.lock():
        fd = os.open(kfile.lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            raise AssertionError("the lock should be held")
        except BlockingIOError:
            pass
        text = lock_holder(fd)
        os.close(fd)
    assert text.startswith(f" (held by pid {os.getpid()} on ")
    assert open(kfile.lock_path).read() == ""  # emptied when let go: no stale holder for the next waiter


def test_token_on_stdin_too_large_says_how_large(cli):
    # was: "token is 69633 bytes" for 100 MB (the bytes read so far)
    p = subprocess.run(
        ["bash", "-c", f'head -c 100000000 /dev/zero | tr "\\0" a | "{script()}" decode -'],
        env=cli.env,
        capture_output=True,
        text=True,
    )
    assert one_line(p, 5) == ("prisme-keys: error: token is more than 69632 bytes; the limit is 65536 bytes (64 KiB)\n")


def test_publication_lead_shown_as_a_duration(run, kf):
    # was: "the publication lead (3.456e+06 s)"
    p = run("--key-file", str(kf), "--json", "doctor", env={"PRISME_KEYS_PUBLICATION_LEAD": "40d"})
    findings = {f["code"]: f["message"] for f in json.loads(p.stdout)["findings"]}
    assert findings["lead_too_long"] == (
        "the publication lead (40d) is not shorter than the rotation period (30 days): keys will sign longer than "
        "JWKS_ROTATION_DAYS; suggested: PRISME_KEYS_PUBLICATION_LEAD=1h"
    )


def test_refused_connection_names_the_port(run):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    err = one_line(run("verify", "a.b.c", "--jwks-url", f"http://127.0.0.1:{port}/jwks"), 9)
    assert err == f"prisme-keys: error: cannot connect to 127.0.0.1:{port}: connection refused\n"


@pytest.mark.parametrize(
    "url,why",
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("ftp://example.com/jwks", "use an https:// URL"),
        ("https://", "no host name"),
        ("http://127.0.0.1:99999/jwks", "Port out of range 0-65535"),
        ("http://exa mple.com/", "spaces or control characters (percent-encode them)"),
        ("https://例え.jp/jwks", "non-ASCII characters (percent-encode them; write a host name in its xn-- form)"),
    ],
)
def test_malformed_jwks_url_is_a_usage_error(run, url, why):
    # was: exit 9
    want = f"prisme-keys: error: bad URL {url!r}: {why} (see prisme-keys verify --help)\n"
    assert one_line(run("verify", "a.b.c", "--jwks-url", url), 2) == want


def test_config_show_names_the_environment(run, kf, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    p = run("--json", "config", "show", env={"PRISME_KEYS_FILE": str(kf), "PRISME_KEYS_CONFIG": str(cfg)})
    doc = json.loads(p.stdout)
    assert doc["key_file"]["source"] == "env:PRISME_KEYS_FILE"
    assert doc["config_path"]["source"] == "env:PRISME_KEYS_CONFIG"
    p = run("--key-file", str(kf), "--config", str(cfg), "--json", "config", "show")
    doc = json.loads(p.stdout)
    assert (doc["key_file"]["source"], doc["config_path"]["source"]) == ("flag", "flag")


# -- the library speaks of arguments, the command line of flags (issue 10, item 5) -----------------


def test_worded_text_keeps_user_input_out_of_the_template():
    import copy
    import pickle

    from prisme_keys.cli.words import say
    from prisme_keys.errors import Worded

    w = Worded("{alg} {value} is not supported", hint="leeway", value="'{count}{'")
    assert (str(w), w.hint) == ("alg '{count}{' is not supported", "leeway")  # braces in values stay as they are
    assert say(w) == "--alg '{count}{' is not supported; if clocks differ, allow it with --leeway SECONDS"
    for again in (copy.deepcopy(w), pickle.loads(pickle.dumps(w))):
        assert (again, again.hint, say(again)) == (w, w.hint, say(w))
    nested = Worded("key file k is encrypted and {why} needs its passphrase", why=Worded("export {private}"))
    assert (nested, say(nested)) == (
        "key file k is encrypted and export private needs its passphrase",
        "key file k is encrypted and export --private needs its passphrase",
    )
    assert say("a plain --message") == "a plain --message"


def test_invalid_argument_names_the_argument_and_the_command_line_the_flag(run, kf):
    from prisme_keys.api import settings_from
    from prisme_keys.errors import InvalidArgument, UsageError
    from prisme_keys.tokens import mint

    settings = settings_from({"key_file": str(kf)})
    for options, argument, library in (
        (mint.MintOptions(count=0), "count", "count must be 1 or more"),
        (
            mint.MintOptions(count=2, session_id="s"),
            "session_id",
            "session_id cannot be combined with count above 1 (each token gets its own session)",
        ),
    ):
        with pytest.raises(InvalidArgument) as info:
            mint.mint(settings, clock_now(), options)
        assert isinstance(info.value, UsageError)
        assert (info.value.argument, info.value.message, info.value.code) == (argument, library, "usage_error")
    p = run("--key-file", str(kf), "--json", "mint", "--count", "2", "--session-id", "s")
    assert (p.returncode, p.stdout, json.loads(p.stderr)) == (
        2,
        "",
        {
            "code": "usage_error",
            "message": "--session-id cannot be combined with --count above 1 (each token gets its own session)",
            "exit": 2,
        },
    )


def clock_now():
    from prisme_keys import clock

    return clock.now()


def test_verify_batch_lines_are_worded_for_the_command_line(run, kf, keypool):
    from jwks_server import claims, rs_token

    from prisme_keys import clock

    t = clock.now().timestamp()
    ahead = rs_token(keypool[0], claims(now=t, iss=ISS, aud=AUD, nbf=int(t) + 3600))
    p = run("--key-file", str(kf), "verify", "--batch", input=ahead + "\n")
    assert p.returncode == 7, p.stderr
    doc = json.loads(p.stdout)
    assert doc["error"].startswith("token not valid yet: nbf ")
    assert doc["error"].endswith(" ahead; if clocks differ, allow it with --leeway SECONDS")


def test_doctor_findings_are_worded_for_the_command_line(run, kf, keypool):
    from prisme_keys.api import settings_from
    from prisme_keys.store import doctor

    assert run("--key-file", str(kf), "encrypt", env={"PRISME_KEYS_PASSPHRASE": "pw"}).returncode == 0
    doc = json.loads(kf.read_text())
    doc["keys"].append(record(keypool[5], created="2025-11-01T00:00:00.000Z"))  # private members in clear text
    kf.write_text(json.dumps(doc))
    kid = keypool[5]["kid"]
    text = f"key {kid} has private members in clear text in an encrypted file"
    rep = doctor.audit(settings_from({"key_file": str(kf)}), clock_now())
    [finding] = [f for f in rep.findings if f.code == "plaintext_in_encrypted_file"]
    assert (finding.message, finding.message.hint) == (text, "rekey_plain")
    p = run("--key-file", str(kf), "--json", "doctor")
    assert p.returncode == 4
    findings = json.loads(p.stdout)["findings"]
    assert [f["message"] for f in findings if f["code"] == "plaintext_in_encrypted_file"] == [
        text + "; run prisme-keys encrypt --rekey"
    ]
    assert text + "; run prisme-keys encrypt --rekey" in run("--key-file", str(kf), "doctor").stdout
