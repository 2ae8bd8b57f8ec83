"""Atomic file writes, and the rule on what an output file may replace.

:func:`atomic_write` is the one way this tool writes a file (key file, export, generated key,
config, JUnit report, JWKS cache): temp file in the same folder, write, fsync, rename over the
destination, fsync the folder. When any step fails (disk full, I/O error, read-only volume,
permission denied) the destination is left byte-identical, no temp file is left behind, and one
:class:`~prisme_keys.errors.KeyFileError` (exit 4, code ``write_failed``) names the file and
the error.

:func:`write_output` adds the rule for outputs the user names (DESIGN.md section 2): an output
never replaces the key file, a lock file or a file holding private key material, and a private
output never replaces an existing file, unless ``force``; a public export may replace an earlier
public export.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from prisme_keys import jwk as jwk_rules
from prisme_keys.errors import KeyFileError, UsageError

#: Largest existing file read to tell whether it holds private key material, bytes.
MAX_SCAN_BYTES = 64 * 1024 * 1024


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the error's text and its symbolic name."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def _write_failed(path: Path, exc: OSError, existed: bool, extra: str = "") -> KeyFileError:
    state = "it was left unchanged" if existed else "nothing was written"
    return KeyFileError(f"cannot write {path}: {describe_os_error(exc)}{extra}; {state}", code="write_failed")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str | Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass


def _keep_old(path: Path, folder: Path) -> str | None:
    """A hard link to the current ``path`` (to put it back if the write cannot be made durable).

    Returns ``None`` when there is no current file, or the file system has no hard links.

    Raises:
        OSError: the link failed for a reason the rename would share (full, read-only, I/O error).
    """
    if not os.path.lexists(path):
        return None
    import secrets  # here, not at the top: it loads hmac and hashlib (2.5 ms), and readers never write

    keep = str(folder / f".{path.name}.{secrets.token_hex(6)}.tmp")  # removed with the stale temps
    try:
        os.link(path, keep)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
            return None
        raise
    return keep


def atomic_write(
    path: Path | str, data: bytes, *, mode: int = 0o600, no_clobber: bool = False, durable: bool = True
) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename, folder fsync.

    When the folder fsync (the last step) fails, the rename is undone: the previous file (kept
    through a hard link) is put back, or the new file removed when there was none.

    Args:
        path: destination.
        data: the bytes.
        mode: permission bits of the new file (set before any byte is written).
        no_clobber: fail instead of replacing an existing file (uses ``os.link``).
        durable: fsync the file and the folder; ``False`` for a cache, which a crash may lose
            (its readers treat an unreadable entry as absent), to spare the two disk flushes.

    Raises:
        KeyFileError: code ``write_failed`` when a step fails (the message names ``path`` and
            the error, e.g. ``No space left on device (ENOSPC)``); code ``key_file_exists`` when
            ``no_clobber`` and the file exists. The destination is then left as it was, and no
            temp file remains.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    existed = os.path.lexists(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_failed(path, exc, existed, f" (creating a temporary file in {folder})") from None
    tmp_left: str | None = tmp
    keep: str | None = None
    renamed = False
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if no_clobber:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileError(f"{path} already exists; refusing to overwrite it", code="key_file_exists") from None
        else:
            keep = _keep_old(path, folder)
            os.replace(tmp, path)
            tmp_left = None
        renamed = True
        if durable:
            _fsync_folder(folder)
    except OSError as exc:
        if renamed:
            if not _undo_rename(path, folder, keep, existed):
                raise KeyFileError(
                    f"cannot write {path}: {describe_os_error(exc)} (syncing its folder); the new version could "
                    "not be taken back",
                    code="write_failed",
                ) from None
            keep = None  # moved back into place
        raise _write_failed(path, exc, existed) from None
    finally:
        _unlink_quietly(tmp_left)
        _unlink_quietly(keep)


def _undo_rename(path: Path, folder: Path, keep: str | None, existed: bool) -> bool:
    """Put back what ``path`` was before a rename whose folder fsync failed; ``False`` when it cannot."""
    try:
        if keep is not None:
            os.replace(keep, path)
        elif not existed:
            os.unlink(path)
        else:
            return False  # no hard link of the previous version (a file system without links)
    except OSError:
        return False
    try:
        _fsync_folder(folder)
    except OSError:
        pass
    return True


def holds_private_material(data: bytes) -> bool:
    """True when a file's bytes hold private key material.

    That is a PEM private key, or JSON (a document or JSON lines) holding a JWK with private
    members (RFC 7518 section 6.3.2; ``d p q dp dq qi oth k``), an encrypted private JWK
    (``enc``) or a prisme-keys key file (``format`` and ``keys``).
    """
    if b"PRIVATE KEY-----" in data:
        return True
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    try:
        return _json_holds_private(json.loads(text), 0)
    except (ValueError, RecursionError):
        pass
    for line in text.splitlines():
        try:
            if _json_holds_private(json.loads(line), 0):
                return True
        except (ValueError, RecursionError):
            continue
    return False


def _json_holds_private(doc: Any, depth: int) -> bool:
    if depth > 64:
        return True  # too deep to tell: count it as private
    if isinstance(doc, dict):
        if "kty" in doc and any(m in doc for m in (*jwk_rules.PRIVATE_MEMBERS, "enc")):
            return True
        if "format" in doc and "keys" in doc:
            return True
        return any(_json_holds_private(v, depth + 1) for v in doc.values())
    if isinstance(doc, list):
        return any(_json_holds_private(v, depth + 1) for v in doc)
    return False


def output_refusal(path: Path | str, *, key_file: Path | str | None, private: bool) -> str | None:
    """Why the output ``path`` must not be replaced without ``force``, or ``None`` when it may be.

    Protected: the key file (the same inode, or the same path once links are resolved), its
    lock file or any ``X.lock`` beside an ``X``, and a file holding private key material (see
    :func:`holds_private_material`); when the output is ``private``, any existing file.
    A file that does not exist, or an earlier public export, may be replaced.
    """
    target = os.path.realpath(path)
    if not os.path.lexists(target):
        return None
    if key_file is not None:
        kf = os.path.realpath(key_file)
        try:
            same = os.path.samefile(target, kf)
        except OSError:
            same = False
        if same or target == kf:
            return "it is the key file"
        if target == kf + ".lock":
            return "it is the key file's lock file"
    if target.endswith(".lock") and os.path.lexists(target[: -len(".lock")]):
        return "it is a lock file"
    if private:
        return "it exists (a private key is never written over an existing file)"
    try:
        with open(target, "rb") as fh:
            data = fh.read(MAX_SCAN_BYTES)
    except OSError as exc:
        return f"it cannot be read to tell whether it holds a private key ({describe_os_error(exc)})"
    if holds_private_material(data):
        return "it holds private key material"
    return None


def check_output(path: Path | str, *, private: bool, key_file: Path | str | None = None, force: bool = False) -> bool:
    """Check that the output ``path`` may be written; return whether it exists.

    Refused: a folder (or a path ending in ``/``), a device or FIFO (so private keys cannot
    reach a terminal this way), and, unless ``force``, what :func:`output_refusal` protects.
    A symlink is judged by the file it points to.

    Raises:
        UsageError: code ``output_is_folder``, ``output_not_regular`` or ``output_protected``.
        KeyFileError: code ``write_failed`` when ``path`` cannot be examined.
    """
    name = str(path)
    if name.endswith(("/", os.sep)) or os.path.isdir(path):
        raise UsageError(f"{name} is a folder; name a file", code="output_is_folder")
    try:
        st = os.stat(os.path.realpath(path))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise KeyFileError(f"cannot write {name}: {describe_os_error(exc)}", code="write_failed") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{name} is not a regular file (a device or FIFO)", code="output_not_regular")
    if not force:
        why = output_refusal(path, key_file=key_file, private=private)
        if why:
            raise UsageError(f"refusing to replace {name}: {why}", code="output_protected")
    return True


def write_output(
    path: Path | str, text: str, *, private: bool, key_file: Path | str | None = None, force: bool = False
) -> None:
    """Write an output the user named (export, generated key, report, config) atomically.

    Mode 0600 when ``private``, else 0644. A symlink is followed (the file it points to is
    replaced). :func:`check_output` decides what may be replaced; a file that did not exist
    when checked is created without replacing one that appeared meanwhile.

    Raises:
        UsageError: see :func:`check_output`.
        KeyFileError: code ``write_failed`` (see :func:`atomic_write`), or ``key_file_exists``
            when the file appeared between the check and the write.
    """
    existed = check_output(path, private=private, key_file=key_file, force=force)
    target = Path(os.path.realpath(path))
    atomic_write(target, text.encode("utf-8"), mode=0o600 if private else 0o644, no_clobber=not existed)
