"""The command line's words for the library's messages: flag names and hints, in one table each.

The library speaks of its own arguments (``timeout``, ``session_id``) and never of flags or
commands; a message that names arguments or may be completed with advice is a
:class:`prisme_keys.errors.Worded` text. :func:`say` words it for the command line: each argument
by its flag (:data:`FLAGS`) and the hint, when it has one, from :data:`HINTS`. Every message the
command line prints or puts in a JSON document goes through :func:`say` (errors in
:func:`prisme_keys.cli.main`, warnings, findings, batch results).

A test checks that every argument a core message names has a flag here and that every hint key
the library uses has its text.
"""

from __future__ import annotations

from prisme_keys.errors import Worded

#: The flag of each argument of the library's functions that a message may name.
FLAGS: dict[str, str] = {
    "alg": "--alg",
    "algorithms": "--algorithms",
    "allow_http": "--allow-http",
    "aud": "--aud",
    "cacert": "--cacert",
    "config_path": "--config",
    "count": "--count",
    "create": "--create",
    "created": "--created",
    "days": "--days",
    "deleted": "--deleted",
    "encrypt": "--encrypt",
    "format": "--format",
    "host": "--host",
    "iss": "--iss",
    "key_file": "--key-file",
    "kid": "--kid",
    "kid_or_thumbprint": "kid",  # revoke's KID argument
    "leeway": "--leeway",
    "lifetime": "--expires-after",
    "max_bytes": "--max-bytes",
    "new_passphrase_file": "--new-passphrase-file",
    "not_before": "--not-before",
    "notify": "--notify",
    "passphrase_file": "--passphrase-file",
    "private": "--private",
    "reason": "--reason",
    "rekey": "--rekey",
    "require_exp": "--no-exp-required",
    "session_id": "--session-id",
    "timeout": "--timeout",
    "workers": "--workers",
}

#: The advice appended to a message with a hint, by hint key. Filled like the message: its values
#: (``{path}``) and the flags of :data:`FLAGS` (``{key_file}``).
HINTS: dict[str, str] = {
    "init": "; create it with: prisme-keys init (or name another with {key_file} / PRISME_KEYS_FILE)",
    "import_create": "; add {create} to create it from the imported keys (or name another with {key_file})",
    "config_init": "; create it with: prisme-keys {config_path} {path} config init",
    "passphrase": ": set PRISME_KEYS_PASSPHRASE, pass {passphrase_file} FILE (before the command) or set "
    "PRISME_KEYS_PASSPHRASE_FILE, or run on a terminal to be prompted",
    "new_passphrase": ": set PRISME_KEYS_NEW_PASSPHRASE, pass {new_passphrase_file} FILE, "
    "or run on a terminal to be prompted",
    "passphrase_to_check": " (set PRISME_KEYS_PASSPHRASE or {passphrase_file} to check them)",
    "rekey": "; change its passphrase with prisme-keys encrypt {rekey}",
    "rekey_weak": "; raise them with prisme-keys encrypt {rekey}",
    "rekey_plain": "; run prisme-keys encrypt {rekey}",
    "announce": " (prisme-keys notify, or rotate/prune {notify}, sends it)",
    "announce_pending": "; run prisme-keys notify (or let the next rotate {notify} send it)",
    "leeway": "; if clocks differ, allow it with {leeway} SECONDS",
    "require_exp": " (a token must expire; {require_exp} accepts it)",
}


def say(text: str) -> str:
    """``text`` in the command line's words: flags for arguments, the hint's advice appended.

    A plain string is returned as it is.
    """
    return text.worded(FLAGS, HINTS) if isinstance(text, Worded) else text
