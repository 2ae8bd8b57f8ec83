"""Shell completion that knows the key file: kids for the options and arguments that take one.

Typer's completion scripts (bash, zsh, fish) run the program with ``_PRISME_KEYS_COMPLETE``
set; Click parses the words typed so far and calls the ``autocompletion`` function of the
parameter being completed. :func:`complete_kid` reads the key file the command would use
(``--key-file`` on the line, else ``PRISME_KEYS_FILE``, else the config file's ``key_file``,
else the default) and offers its kids; :func:`complete_revoked_kid` offers the kids of its
revocation list. Path options (``--key-file``, ``--config``, ``--out``)
offer nothing, which makes each shell fall back to completing file names.

Completion must stay fast: this module imports no typer at module level and nothing heavy
(no rich, cryptography or python-jose); reading the kids is one JSON parse.
"""

# No ``from __future__ import annotations``: Typer reads these functions' signatures on every run
# (see prisme_keys.cli.app).

import os
from typing import Any

__all__ = ["complete_kid", "complete_revoked_kid"]


def _keyset(ctx: Any) -> Any:
    """The key set the command being completed would read, or ``None`` when it cannot be read."""
    from prisme_keys import settings as settings_mod
    from prisme_keys.errors import PrismeKeysError
    from prisme_keys.store import lifecycle

    root = ctx.find_root()
    environ = getattr(root.obj, "environ", None) or os.environ
    flags = {"key_file": root.params.get("key_file"), "config_path": root.params.get("config")}
    try:
        return lifecycle.open_keyfile(settings_mod.load(flags, environ)).load()
    except (PrismeKeysError, OSError, ValueError):
        return None


def _matching(kids: list[Any], incomplete: str) -> list[str]:
    return [k for k in dict.fromkeys(kids) if isinstance(k, str) and k.startswith(incomplete)]


def complete_kid(ctx: Any, incomplete: str) -> list[str]:
    """The kids of the current key file that start with ``incomplete``, newest first
    (``mint --kid``, ``notify --created``, ``revoke KID``).

    Args:
        ctx: the Click context of the command being completed (its root holds ``--key-file``
            and ``--config`` when they were typed).
        incomplete: the part of the kid typed so far.

    Returns:
        Matching kids; ``[]`` when the key file is missing, unreadable, unsafe or corrupt,
        or a setting is bad (completion never prints an error).
    """
    keyset = _keyset(ctx)
    if keyset is None:
        return []
    return _matching([r.get("kid") for r in keyset.records if isinstance(r, dict)], incomplete)


def complete_revoked_kid(ctx: Any, incomplete: str) -> list[str]:
    """The kids in the key file's revocation list that start with ``incomplete``, in the order
    revoked (``check --absent``, ``notify --deleted``: keys that left the set on purpose).

    Returns ``[]`` when the key file cannot be read or its revocation list is malformed.
    """
    from prisme_keys.errors import PrismeKeysError
    from prisme_keys.store import revocation

    keyset = _keyset(ctx)
    if keyset is None:
        return []
    try:
        return _matching([e["kid"] for e in revocation.entries(keyset)], incomplete)
    except PrismeKeysError:
        return []
