"""The one permission rule for files holding secrets: the key file and a passphrase file.

Like ssh with private keys: a file readable or writable by others is refused; group bits are
refused too unless the operator opts in for a file shared by a group
(``PRISME_KEYS_ALLOW_GROUP_READ=1``, mode 0640). ``doctor`` reports with the same rule.
"""

from __future__ import annotations

import stat
from pathlib import Path


def unsafe_mode(path: Path | str, mode: int, *, what: str, allow_group_read: bool) -> str | None:
    """The one permission rule for files holding secrets (the key file, a passphrase file), as ssh has it.

    Args:
        path: the file, for the message; mode: its ``st_mode``; what: ``"key file"``, ``"passphrase file"``.
        allow_group_read: a shared group file (``PRISME_KEYS_ALLOW_GROUP_READ``): group bits are
            accepted; bits for others never are.

    Returns:
        ``None`` when only the owner (and, allowed, the group) can read or write it, else the one-line
        problem with the fix (``chmod 600``, or the group escape hatch).
    """
    allowed = 0o060 if allow_group_read else 0
    if not stat.S_IMODE(mode) & 0o077 & ~allowed:
        return None
    hint = (
        ""
        if allow_group_read
        else " (or, for a file shared by a group, chmod 640 and set PRISME_KEYS_ALLOW_GROUP_READ=1)"
    )
    return (
        f"{what} {path} has unsafe permissions {stat.S_IMODE(mode):04o} (readable by group or others); "
        f"fix with: chmod 600 {path}{hint}"
    )
