"""Disk full and I/O errors at every step of every write (issue 11, section 1).

ENOSPC, EIO, EROFS and EACCES are injected (tests/faults.py) at each step of the atomic write:
temp file create, write, fsync, the hard link keeping the previous version, rename, folder fsync;
for every writing command. Each must exit 4 with one line naming the file and the error, leave the
file byte-identical (or still absent), leave no temp file and release the lock. In-process for
the matrix; a few subprocess runs (the sitecustomize) prove the same at the process level.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from faults import Fault
from helpers import empty_config, record, write_keyfile

from prisme_keys import clock
from prisme_keys.cli import main
from prisme_keys.store import encryption

ERRNOS = ("ENOSPC", "EIO", "EROFS", "EACCES")
STEPS = ("create", "write", "fsync", "keep", "rename", "dirfsync")
PW = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    """The cheapest Argon2id parameters, so encrypt/rekey/decrypt cases take milliseconds."""
    for k, v in encryption.ARGON2_MIN.items():
        monkeypatch.setitem(encryption.ARGON2_DEFAULTS, k, v)


def iso(delta_days: float) -> str:
    return clock.iso(clock.now() + timedelta(days=delta_days))


class Case:
    """One writing command: its arguments, environment and the file it writes."""

    def __init__(self, tmp: Path, keypool: list, op: str) -> None:
        self.tmp, self.op = tmp, op
        self.kf = tmp / "k.json"
        self.cfg = empty_config(tmp)
        self.env = {"PRISME_KEYS_PASSPHRASE": PW} if op in ("encrypt", "rekey", "decrypt") else {}
        src = tmp / "src" / "import.json"
        src.parent.mkdir()
        src.write_text(json.dumps({"keys": [keypool[3]]}))
        signing = record(keypool[0], iso(-1), iso(29), iso(59))
        if op != "init" and op != "import-create":
            recs = [signing]
            if op == "prune":
                recs.append(record(keypool[1], iso(-100), iso(-70), iso(-1)))
            write_keyfile(self.kf, recs)
        if op in ("rekey", "decrypt"):
            assert main(["--key-file", str(self.kf), "--config", str(self.cfg), "encrypt"], env=self.env) == 0
        out = tmp / "out" / "out.json"
        out.parent.mkdir()
        self.dest = self.kf
        args = {
            "init": ["init"],
            "rotate": ["rotate", "--force"],
            "prune": ["prune"],
            "import": ["import", str(src)],
            "import-create": ["import", "--create", str(src)],
            "encrypt": ["encrypt"],
            "rekey": ["encrypt", "--rekey", "--new-passphrase-file", str(tmp / "src" / "new-pw")],
            "decrypt": ["decrypt"],
            "export": ["export", "--out", str(out)],
            "export-over": ["export", "--out", str(out)],
            "generate": ["generate", "--out", str(out)],
            "config-init": ["config", "init", "--out", str(out)],
        }[op]
        (tmp / "src" / "new-pw").write_text("new passphrase\n")
        (tmp / "src" / "new-pw").chmod(0o600)  # a passphrase file obeys the key file's permission rule
        if op in ("export", "export-over", "generate", "config-init"):
            self.dest = out
        if op == "export-over":
            out.write_text('{"keys": []}\n')
        self.argv = ["--key-file", str(self.kf), "--config", str(self.cfg), *args]
        self.existed = self.dest.exists()
        self.before = self.dest.read_bytes() if self.existed else None

    def fault(self, step: str, err: str) -> Fault:
        folder = re.escape(os.path.realpath(self.dest.parent))
        temp = folder + "/" + re.escape(f".{self.dest.name}.") + r"[^/]*\.tmp$"
        path = {
            "create": temp,
            "write": temp,
            "fsync": temp,
            "keep": temp,
            "rename": folder + "/" + re.escape(self.dest.name) + "$",
            "dirfsync": folder + "$",
        }[step]
        return Fault(step="rename" if step == "keep" else step, errno_name=err, path=path)

    def expected_error(self, err: str, step: str) -> str:
        code = getattr(errno, err)
        extra = f" (creating a temporary file in {self.dest.parent})" if step == "create" else ""
        state = "it was left unchanged" if self.existed else "nothing was written"
        dest = os.path.realpath(self.dest) if self.dest != self.kf else self.dest
        return f"prisme-keys: error: cannot write {dest}: {os.strerror(code)} ({err}){extra}; {state}\n"

    def assert_untouched(self) -> None:
        if self.existed:
            assert self.dest.read_bytes() == self.before
        else:
            assert not self.dest.exists()
        for folder in {self.dest.parent, self.kf.parent}:
            assert [n for n in os.listdir(folder) if n.endswith(".tmp")] == []
        lock = Path(str(self.kf) + ".lock")
        if lock.exists():
            with open(lock, "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


OPS = (
    "init",
    "rotate",
    "prune",
    "import",
    "import-create",
    "encrypt",
    "rekey",
    "decrypt",
    "export",
    "export-over",
    "generate",
    "config-init",
)
NEW_FILE_OPS = ("init", "import-create", "export", "generate", "config-init")


# a new file has no previous version to keep
OP_STEPS = [(op, step) for op in OPS for step in STEPS if not (step == "keep" and op in NEW_FILE_OPS)]


@pytest.mark.parametrize("err", ERRNOS)
@pytest.mark.parametrize("op, step", OP_STEPS)
def test_every_step_of_every_write_fails_cleanly(tmp_path, keypool, capsys, op, step, err):
    case = Case(tmp_path, keypool, op)
    capsys.readouterr()
    fault = case.fault(step, err)
    with fault.installed():
        rc = main(case.argv, env=case.env)
    out, stderr = capsys.readouterr()
    assert fault.fired >= 1, f"the {step} fault was never reached"
    assert (rc, stderr) == (4, case.expected_error(err, step))
    case.assert_untouched()


@pytest.mark.parametrize("op", OPS)
def test_without_a_fault_every_case_writes(tmp_path, keypool, capsys, op):
    """The control: the same cases succeed and change the file when nothing fails."""
    case = Case(tmp_path, keypool, op)
    assert main(case.argv, env=case.env) == 0, capsys.readouterr().err
    assert case.dest.read_bytes() != case.before
    assert [n for n in os.listdir(case.dest.parent) if n.endswith(".tmp")] == []


def test_the_lock_file_cannot_be_created(tmp_path, keypool, capsys):
    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0], iso(-1), iso(29), iso(59))])
    before = kf.read_bytes()
    fault = Fault(step="create", errno_name="EROFS", path=re.escape(str(kf)) + r"\.lock$")
    with fault.installed():
        rc = main(["--key-file", str(kf), "--config", str(empty_config(tmp_path)), "rotate", "--force"])
    assert fault.fired == 1
    assert (rc, capsys.readouterr().err) == (
        4,
        f"prisme-keys: error: cannot open lock file {kf}.lock: Read-only file system\n",
    )
    assert kf.read_bytes() == before


def test_a_file_system_without_hard_links_still_writes(tmp_path, keypool, capsys):
    case = Case(tmp_path, keypool, "rotate")
    no_links = case.fault("keep", "EPERM")
    with no_links.installed():
        assert main(case.argv) == 0, capsys.readouterr().err
    assert no_links.fired == 1
    assert case.kf.read_bytes() != case.before
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_a_failed_folder_fsync_without_hard_links_says_the_new_version_stays(tmp_path, keypool, capsys):
    case = Case(tmp_path, keypool, "rotate")
    with case.fault("keep", "EPERM").installed(), case.fault("dirfsync", "EIO").installed() as fault:
        rc = main(case.argv)
    assert fault.fired >= 1
    assert (rc, capsys.readouterr().err) == (
        4,
        f"prisme-keys: error: cannot write {case.kf}: Input/output error (EIO) (syncing its folder); "
        "the new version could not be taken back\n",
    )
    assert len(json.loads(case.kf.read_text())["keys"]) == 2  # the rotated set, as the message says
    case.before = case.kf.read_bytes()
    case.assert_untouched()  # no temp file, lock released


# -- a read-only volume ------------------------------------------------------------------------


@pytest.fixture
def readonly(tmp_path, keypool):
    """A key file whose folder behaves as a read-only volume (every writing call fails with EROFS)."""
    kf = write_keyfile(tmp_path / "vol" / "k.json", [record(keypool[0], iso(-1), iso(29), iso(59))])
    return kf, Fault(step="readonly", errno_name="EROFS", path="^" + re.escape(str(kf.parent)))


@pytest.mark.parametrize(
    "args",
    [["list"], ["export"], ["mint", "--sub", "u1"], ["doctor"], ["rotate", "--dry-run"], ["prune", "--dry-run"]],
)
def test_a_read_only_volume_still_serves_reading_commands(tmp_path, readonly, capsys, args):
    kf, fault = readonly
    with fault.installed():
        rc = main(["--key-file", str(kf), "--config", str(empty_config(tmp_path)), *args])
    assert rc == 0, capsys.readouterr().err
    assert fault.fired == 0


def test_a_read_only_volume_still_verifies(tmp_path, readonly, capsys):
    kf, fault = readonly
    g = ["--key-file", str(kf), "--config", str(empty_config(tmp_path))]
    assert main([*g, "-q", "mint", "--sub", "u1"]) == 0
    token = capsys.readouterr().out.strip()
    with fault.installed():
        rc = main([*g, "verify", token])
    assert rc == 0 and capsys.readouterr().out.startswith("valid")


@pytest.mark.parametrize(
    "args", [["rotate", "--force"], ["encrypt"], ["import", "SRC"]], ids=["rotate", "encrypt", "import"]
)
def test_a_read_only_volume_refuses_writes_clearly(tmp_path, keypool, readonly, capsys, args):
    kf, fault = readonly
    src = tmp_path / "import.json"
    src.write_text(json.dumps({"keys": [keypool[2]]}))
    args = [str(src) if a == "SRC" else a for a in args]
    before = kf.read_bytes()
    with fault.installed():
        rc = main(
            ["--key-file", str(kf), "--config", str(empty_config(tmp_path)), *args], env={"PRISME_KEYS_PASSPHRASE": PW}
        )
    assert (rc, capsys.readouterr().err) == (
        4,
        f"prisme-keys: error: cannot open lock file {kf}.lock: Read-only file system\n",
    )
    assert kf.read_bytes() == before


# -- the JWKS cache --------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["create", "write", "rename", "readonly"])
def test_a_failing_cache_write_never_fails_verify(tmp_path, keypool, capsys, monkeypatch, step):
    from jwks_server import JwksServer, jwks

    kf = write_keyfile(tmp_path / "k.json", [record(keypool[0], iso(-1), iso(29), iso(59))])
    g = ["--key-file", str(kf), "--config", str(empty_config(tmp_path))]
    assert main([*g, "-q", "mint", "--sub", "u1"]) == 0
    token = capsys.readouterr().out.strip()
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    fault = Fault(step=step, errno_name="ENOSPC", path="^" + re.escape(str(cache)))
    with JwksServer() as server, fault.installed():
        server.serve_json("/jwks", jwks(keypool[0]))
        rc = main([*g, "verify", token, "--jwks-url", server.url()])
    out, err = capsys.readouterr()
    assert (rc, err) == (0, "")
    assert out.startswith("valid")
    assert fault.fired >= 1
    assert not list(cache.rglob("*.tmp"))


# -- the process level ---------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_process_level_fault_in_a_key_file_write(cli, tmp_path, keypool, step):
    case = Case(tmp_path, keypool, "rotate")
    fault = case.fault(step, "ENOSPC")
    log = tmp_path / "fault.log"
    fault.log = str(log)
    p = cli.proc(*case.argv, env=fault.to_env())
    assert log.read_text().startswith(f"{fault.step} ENOSPC ")
    assert (p.returncode, p.stderr) == (4, case.expected_error("ENOSPC", step))
    case.assert_untouched()


# -- a real small file system (root only) -----------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 256 KiB tmpfs mounted in ``tmp_path`` (skipped where the test cannot mount one)."""
    import subprocess

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mnt)], capture_output=True)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_a_real_full_disk_and_a_real_read_only_volume(cli, small_fs, keypool):
    import subprocess

    kf = write_keyfile(small_fs / "k.json", [record(keypool[0], iso(-1), iso(29), iso(59))])
    g = ["--key-file", str(kf)]
    assert cli(*g, "rotate", "--force").returncode == 0  # the lock file now exists
    before = kf.read_bytes()
    fd = os.open(small_fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)  # fill the volume
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    p = cli(*g, "rotate", "--force")
    assert (p.returncode, p.stderr) == (
        4,
        f"prisme-keys: error: cannot write {kf}: No space left on device (ENOSPC); it was left unchanged\n",
    )
    assert kf.read_bytes() == before
    assert sorted(os.listdir(small_fs)) == ["filler", "k.json", "k.json.lock"]
    os.unlink(small_fs / "filler")
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)]).returncode == 0
    for args in (["list"], ["export"], ["-q", "mint", "--sub", "u1"]):
        p = cli(*g, *args)
        assert (p.returncode, p.stderr) == (0, ""), args
    token = cli(*g, "-q", "mint", "--sub", "u1").stdout.strip()
    assert cli(*g, "verify", token).returncode == 0
    p = cli(*g, "rotate", "--force")
    assert (p.returncode, p.stderr) == (
        4,
        f"prisme-keys: error: cannot open lock file {kf}.lock: Read-only file system\n",
    )
    assert kf.read_bytes() == before
