"""The key file: format, permissions, locking and atomic writes (DESIGN.md section 3).

Format (JSON, UTF-8)::

    {"format": 1, "keys": [record, ...]}

with records newest first in the gateway's record shape
``{kid, previousKeyId, createdAt, rotatesAt, expiresAt, jwk}`` (times ISO-8601 UTC with
milliseconds and ``Z``). Other top-level members (``encryption``) are kept as they are.

Writers take an exclusive ``flock`` on ``<file>.lock`` (created once, never replaced
or removed), re-read the file under the lock, write a temp file in the same folder
(mode 0600), fsync it, ``os.replace`` it over the key file and fsync the folder.
Readers take no lock: they see the old or the new file, never a mix.

A corrupt or unknown-format file raises :class:`KeyFileError` (exit 4) and is never
overwritten. Only this module opens the key file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from prisme_keys import clock
from prisme_keys.errors import KeyFileError, Worded
from prisme_keys.store.files import atomic_write
from prisme_keys.store.permissions import unsafe_mode
from prisme_keys.store.records import RECORD_TIMES, KeyRecord
from prisme_keys.text import decode_utf8, json_error, printable, shown

FORMAT_VERSION = 1
#: Largest key file read, bytes (a file of thousands of 16384-bit keys stays well below).
MAX_FILE_BYTES = 64 * 1024 * 1024


class KeySet:
    """The parsed key file.

    Attributes:
        records: the key records (:class:`prisme_keys.store.records.KeyRecord`), newest first, as stored.
        extra: other top-level members (e.g. ``encryption``), kept verbatim; default ``{}``.
    """

    __slots__ = ("extra", "records")

    def __init__(self, records: list[KeyRecord], extra: dict[str, Any] | None = None) -> None:
        self.records = records
        self.extra = {} if extra is None else extra

    def to_document(self) -> dict[str, Any]:
        """The JSON document ``{"format": 1, **extra, "keys": records}``."""
        return {"format": FORMAT_VERSION, **self.extra, "keys": self.records}


def dumps(doc: dict[str, Any]) -> str:
    """Serialize a key-file (or export) document: 2-space JSON, trailing newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def validate_record(rec: Any, where: str) -> KeyRecord:
    """Check one record's shape; returns it, typed (see :class:`prisme_keys.store.records.KeyRecord`).

    Raises:
        ValueError: naming ``where`` and the member at fault.
    """
    if not isinstance(rec, dict):
        raise ValueError(f"{where} is not an object")
    if not isinstance(rec.get("kid"), str) or not rec["kid"]:
        raise ValueError(f"{where} has no kid")
    if rec.get("previousKeyId") is not None and not isinstance(rec["previousKeyId"], str):
        raise ValueError(f"{where} ({rec['kid']}): previousKeyId is not a string")
    for t in RECORD_TIMES:
        try:
            clock.parse_iso(rec.get(t))  # type: ignore[arg-type]  # None and non-strings raise, as wanted
        except (ValueError, TypeError):
            raise ValueError(f"{where} ({rec['kid']}): {t} is not an ISO-8601 time") from None
    if rec.get("activatesAt") is not None:
        try:
            clock.parse_iso(rec["activatesAt"])
        except (ValueError, TypeError):
            raise ValueError(f"{where} ({rec['kid']}): activatesAt is not an ISO-8601 time") from None
    jwk = rec.get("jwk")
    if not isinstance(jwk, dict):
        raise ValueError(f"{where} ({rec['kid']}): jwk is not an object")
    if jwk.get("kty") != "RSA" or not isinstance(jwk.get("n"), str) or not isinstance(jwk.get("e"), str):
        raise ValueError(f"{where} ({rec['kid']}): jwk is not an RSA key with n and e")
    from prisme_keys.jwk import b64_to_int

    try:
        n, e = b64_to_int(jwk["n"]), b64_to_int(jwk["e"])
    except ValueError:
        raise ValueError(f"{where} ({rec['kid']}): jwk n or e is not base64url") from None
    if n.bit_length() < 512 or e < 3 or e % 2 == 0:
        raise ValueError(f"{where} ({rec['kid']}): jwk n/e are not an RSA public key")
    if "kid" in jwk and jwk["kid"] != rec["kid"]:
        raise ValueError(f"{where}: record kid {shown(rec['kid'])} differs from its jwk kid {shown(str(jwk['kid']))}")
    return cast(KeyRecord, rec)


def parse(data: bytes, path: Path | str = "<key file>") -> KeySet:
    """Parse and validate key-file bytes.

    Raises:
        KeyFileError: empty, truncated, not JSON, unknown format or a malformed record;
            the message names the file and says it was left unchanged.
    """

    def bad(why: str) -> KeyFileError:
        return KeyFileError(f"key file {path} is unusable: {why}; it was left unchanged", code="key_file_corrupt")

    if not data.strip():
        raise bad("it is empty")
    try:
        doc = json.loads(decode_utf8(data))  # a leading BOM is accepted
    except UnicodeDecodeError:
        raise bad("it is not UTF-8 text") from None
    except RecursionError:
        raise bad("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({json_error(exc)}; truncated?)") from None
    if not isinstance(doc, dict) or "format" not in doc:
        raise bad('not a prisme-keys key file (no "format" member)')
    if doc["format"] != FORMAT_VERSION or isinstance(doc["format"], bool):
        raise bad(f"unknown format {shown(doc['format'])} (this version reads format {FORMAT_VERSION})")
    recs = doc.get("keys")
    if not isinstance(recs, list):
        raise bad('"keys" is not a list')
    if not recs:
        raise bad("it holds no key (only init creates a key set)")
    records: list[KeyRecord] = []
    for i, rec in enumerate(recs):
        try:
            records.append(validate_record(rec, f"record {i + 1}"))
        except ValueError as exc:
            raise bad(str(exc)) from None
    extra = {k: v for k, v in doc.items() if k not in ("format", "keys")}
    return KeySet(records=records, extra=extra)


def _flock_pids(fd: int) -> list[int] | None:
    """PIDs holding a ``flock`` on the file open as ``fd``, from ``/proc/locks``; ``None`` where unknown."""
    try:
        st = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    pids = []
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 2097 00:17:68823 0 EOF"; waiting requests carry "->"
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or "->" in parts:
            continue
        try:
            major, minor, inode = parts[5].split(":")
            if int(inode) == st.st_ino and (int(major, 16), int(minor, 16)) == (
                os.major(st.st_dev),
                os.minor(st.st_dev),
            ):
                pids.append(int(parts[4]))
        except ValueError:
            continue
    return pids


def lock_holder(fd: int) -> str:
    """`` (held by pid 123 on host since 2026-...)`` for the lock file open as ``fd``, or ``""`` when unknown.

    The details a prisme-keys holder wrote are used only when they name the process that holds
    the lock now (``/proc/locks`` on Linux); a lock taken by another program (``flock(1)``), or
    details left by an earlier holder, give the real holder's pid and command name instead.
    """
    try:
        info = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        info = ""
    words = info.split()
    info_pid = int(words[1]) if len(words) > 1 and words[0] == "pid" and words[1].isdigit() else None
    pids = _flock_pids(fd)
    if pids is None or (info_pid is not None and info_pid in pids):  # no /proc/locks, or the details are current
        return f" (held by {printable(info)})" if info else ""
    if not pids:
        return ""  # let go meanwhile
    try:
        with open(f"/proc/{pids[0]}/comm", encoding="utf-8", errors="replace") as fh:
            name = f" ({printable(fh.read().strip())})"
    except OSError:
        name = ""
    return f" (held by pid {pids[0]}{name})"


class KeyFile:
    """A key file on disk.

    Args:
        path: the key file.
        allow_group_read: accept group read/write bits (a shared group file); others bits
            are always refused.
        lock_timeout: seconds to wait for ``<path>.lock`` before :class:`KeyFileError`.
    """

    def __init__(
        self, path: Path | str, *, allow_group_read: bool = False, lock_timeout: float = 30.0, passphrase: Any = None
    ) -> None:
        # Follow symlinks: the lock file and the atomic rename must sit beside the real file,
        # or hosts reaching it through a link would each write their own copy.
        self.path = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
        self.lock_path = Path(str(self.path) + ".lock")
        self.allow_group_read = allow_group_read
        self.lock_timeout = lock_timeout
        #: ``(why) -> str`` giving the passphrase of an encrypted file (see :mod:`prisme_keys.encryption`),
        #: asked only when a clear-text private member must be encrypted on commit.
        self.passphrase = passphrase

    # -- reading -------------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the key file exists."""
        return self.path.exists()

    def _check_mode(self, st: os.stat_result) -> None:
        problem = unsafe_mode(self.path, st.st_mode, what="key file", allow_group_read=self.allow_group_read)
        if problem:
            raise KeyFileError(problem, code="key_file_permissions")

    def read_bytes(self, *, check_mode: bool = True) -> bytes:
        """The raw bytes, after the permission check (skipped with ``check_mode=False``, for ``doctor``).

        Raises:
            KeyFileError: missing, not a regular file, unsafe permissions, unreadable, too large.
        """
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below, at once)
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise KeyFileError(
                Worded("key file {path} does not exist", hint="init", path=self.path), code="key_file_missing"
            ) from None
        except OSError as exc:
            raise KeyFileError(f"cannot open key file {self.path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"key file {self.path} is not a regular file")
            if check_mode:
                self._check_mode(st)
            if st.st_size > MAX_FILE_BYTES:
                raise KeyFileError(f"key file {self.path} is larger than {MAX_FILE_BYTES} bytes")
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)

    def load(self, *, check_mode: bool = True) -> KeySet:
        """Read and parse the key file (no lock).

        Raises:
            KeyFileError: see :meth:`read_bytes` and :func:`parse`.
        """
        return parse(self.read_bytes(check_mode=check_mode), self.path)

    def stat_info(self) -> dict[str, Any]:
        """``{mode, st_mode, regular, uid, size, folder_mode, folder_uid, lock_mode}`` of the file, its folder
        and lock file (``None`` for what does not exist), for ``doctor``."""

        def st(p: Path) -> os.stat_result | None:
            try:
                return os.stat(p)
            except OSError:
                return None

        f, d, lk = st(self.path), st(self.path.parent), st(self.lock_path)
        return {
            "mode": stat.S_IMODE(f.st_mode) if f else None,
            "st_mode": f.st_mode if f else None,
            "regular": stat.S_ISREG(f.st_mode) if f else None,
            "uid": f.st_uid if f else None,
            "size": f.st_size if f else None,
            "folder_mode": stat.S_IMODE(d.st_mode) if d else None,
            "folder_uid": d.st_uid if d else None,
            "lock_mode": stat.S_IMODE(lk.st_mode) if lk else None,
        }

    # -- locking -------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the exclusive lock on ``<path>.lock`` (fcntl ``flock``), waiting at most ``lock_timeout`` s.

        The lock file is created if missing (mode 0600, 0660 for a shared group file) and
        never removed. The holder writes ``pid host time`` into it while it holds the lock and
        empties it before letting go; the timeout message names the current holder
        (:func:`lock_holder`).

        Raises:
            KeyFileError: the folder is missing or the wait timed out (naming the lock file
                and its holder).
        """
        import fcntl

        self._ensure_folder()
        mode = 0o660 if self.allow_group_read else 0o600
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), mode)
        except OSError as exc:
            raise KeyFileError(f"cannot open lock file {self.lock_path}: {exc.strerror}") from None
        try:
            deadline = time.monotonic() + self.lock_timeout
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise KeyFileError(f"cannot lock {self.lock_path}: {exc.strerror}") from None
                if time.monotonic() >= deadline:
                    raise KeyFileError(
                        f"timed out after {self.lock_timeout:g} s waiting for the lock {self.lock_path}"
                        f"{lock_holder(fd)}",
                        code="lock_timeout",
                    )
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.1)
            try:
                import socket  # here, not at the top: readers take no lock (1.9 ms of start-up)

                info = f"pid {os.getpid()} on {socket.gethostname()} since {clock.iso(clock.now())}\n"
                os.ftruncate(fd, 0)
                os.pwrite(fd, info.encode(), 0)
            except OSError:
                pass
            try:
                yield
            finally:
                try:
                    os.ftruncate(fd, 0)  # still under the lock: no stale holder is left for the next waiter
                except OSError:
                    pass
        finally:
            os.close(fd)  # closing releases the flock

    def _ensure_folder(self) -> None:
        folder = self.path.parent
        if not folder.exists():
            try:
                folder.mkdir(parents=True, mode=0o700)
            except OSError as exc:
                raise KeyFileError(f"cannot create folder {folder}: {exc.strerror}") from None

    # -- writing -------------------------------------------------------------------------
    def _write_atomic(self, text: str, *, no_clobber: bool = False) -> None:
        mode = 0o600
        if not no_clobber:
            try:
                mode = stat.S_IMODE(self.path.stat().st_mode) & (0o660 if self.allow_group_read else 0o600)
                mode |= 0o600
            except OSError:
                pass
        atomic_write(self.path, text.encode("utf-8"), mode=mode, no_clobber=no_clobber)

    def create(self, keyset: KeySet) -> None:
        """Create the key file (``init``), under the lock; refuses when it exists.

        Raises:
            KeyFileError: the file exists (left as it is) or cannot be written.
        """
        with self.lock():
            if self.path.exists():
                raise KeyFileError(
                    f"key file {self.path} already exists; refusing to overwrite it", code="key_file_exists"
                )
            self._write_atomic(dumps(keyset.to_document()), no_clobber=True)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Lock, re-read, and let the caller replace the records atomically.

        Usage::

            with keyfile.transaction() as tx:
                tx.keyset.records = new_records
                tx.commit()

        Nothing is written unless :meth:`Transaction.commit` is called.

        Raises:
            KeyFileError: lock timeout, missing or corrupt file, write failure.
        """
        with self.lock():
            self._remove_stale_temps()
            tx = Transaction(self, self.load())
            yield tx

    def _remove_stale_temps(self) -> None:
        """Remove temp files a killed writer left (``.<name>.*.tmp``): under the lock no write is under way.

        They hold a copy of the keys, so they must not linger."""
        folder = self.path.parent
        try:
            names = os.listdir(folder)
        except OSError:
            return
        prefix = f".{self.path.name}."
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                try:
                    os.unlink(folder / name)
                except OSError:
                    pass


class Transaction:
    """A locked read-modify-write of a key file (see :meth:`KeyFile.transaction`)."""

    def __init__(self, keyfile: KeyFile, keyset: KeySet) -> None:
        self.keyfile = keyfile
        self.keyset = keyset
        self.committed = False

    def commit(self) -> None:
        """Write :attr:`keyset` atomically (temp file, fsync, ``os.replace``, folder fsync).

        When the key set is encrypted (an ``encryption`` header), records holding clear-text
        private members (a new or imported key) are encrypted first, with the passphrase from
        the key file's passphrase source; without one, or with a wrong one, nothing is written.

        Raises:
            KeyFileError: write failure; passphrase missing or wrong on an encrypted file.
        """
        from prisme_keys.store import encryption

        hdr = encryption.header(self.keyset)
        if hdr is not None and any(encryption.has_plain_private(r["jwk"]) for r in self.keyset.records):
            if self.keyfile.passphrase is None:
                raise encryption.passphrase_required(self.keyfile.path, "writing a private key")
            key = encryption.unlock(
                hdr,
                self.keyfile.passphrase("writing a private key"),
                self.keyfile.path,
                getattr(self.keyfile.passphrase, "derived_keys", None),
            )
            encryption.seal_keyset_records(self.keyset, key)
        self.keyfile._write_atomic(dumps(self.keyset.to_document()))
        self.committed = True
