#!/usr/bin/env python3
"""Generate man/prisme-keys.1 from the app's commands, options and help texts.

    python man/generate.py           # (re)write man/prisme-keys.1
    python man/generate.py --check   # exit 1 if the committed page differs (the drift test uses it)

A small roff renderer over the Click command tree Typer builds: every command and option, with
the environment, files, exit status and examples sections written here.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE / "prisme-keys.1"

ENVIRONMENT = [
    ("JWKS_KTY", "Key type of new keys; only RSA (default RSA)."),
    ("JWKS_ALG", "Algorithm of new keys and the default verify allow-list: RS256, RS384 or RS512 (default RS256)."),
    ("JWKS_SIZE", "Bits of new keys, 2048 to 16384, a multiple of 8 (default 2048)."),
    ("JWKS_ROTATION_DAYS", "Days before the signing key is replaced (default 30)."),
    ("ACCESS_TOKENS_MAX_AGE", "Longest token lifetime, seconds (default 2592000)."),
    ("OIDC_PROVIDER_URL", "Issuer of minted tokens; the expected issuer in verify."),
    ("API_URL", "Audience of minted tokens; the expected audience in verify."),
    ("PRISME_KEYS_FILE", "The key file (as --key-file)."),
    ("PRISME_KEYS_CONFIG", "The TOML config file (as --config)."),
    ("PRISME_KEYS_LOCK_TIMEOUT", "Longest wait for the key-file lock, seconds (default 30)."),
    ("PRISME_KEYS_ALLOW_GROUP_READ", "Accept a group-readable key file shared by a group (default false)."),
    ("PRISME_KEYS_PUBLICATION_LEAD", "Time a new key is published before it signs (default 0)."),
    ("PRISME_KEYS_PASSPHRASE", "Passphrase of an encrypted key file."),
    ("PRISME_KEYS_PASSPHRASE_FILE", "File holding the passphrase of an encrypted key file."),
    ("PRISME_KEYS_DEBUG", "Set to 1 to print a traceback on internal errors."),
    ("BROKER_HOST", "Redis URL of the gateway's event broker (default redis://localhost:6379/10)."),
    ("BROKER_NAMESPACE", "Prefix of the broker's stream names."),
    ("BROKER_TOPIC_MAXLEN", "Approximate MAXLEN of each stream (default 10000)."),
    ("CONTEXTS_CACHE_HOST", "Redis URL of the runtime's cache holding runtime:jwk (default redis://localhost:6379/0)."),
    ("INTERNAL_API_KEY", "The runtime's internal API key for POST /sys/certs; never printed."),
    ("NO_COLOR", "Disable colour."),
]

FILES = [
    ("$XDG_DATA_HOME/prisme-keys/keys.json", "The default key file (~/.local/share/prisme-keys/keys.json), mode 0600."),
    ("KEYFILE.lock", "The lock file beside the key file: created once, never replaced or removed."),
    ("$XDG_CONFIG_HOME/prisme-keys/config.toml", "The default config file (~/.config/prisme-keys/config.toml)."),
    ("$XDG_CACHE_HOME/prisme-keys/", "The JWKS cache of verify --jwks-url (~/.cache/prisme-keys/)."),
]

EXIT = [
    ("0", "Success (also: rotate or prune found nothing to do)."),
    ("1", "Internal error (a bug)."),
    ("2", "Usage error."),
    ("3", "Configuration error (bad setting value, unreadable config)."),
    ("4", "Key file error (missing, corrupt, unsafe permissions, lock timeout, no private key)."),
    ("5", "Malformed token (not a compact JWS, bad base64url or JSON, too large, a JWE)."),
    ("6", "Signature rejected (bad signature, algorithm not allowed, none, key too small)."),
    ("7", "Claims rejected (expired, not yet valid, issuer or audience mismatch, missing or ill-typed claim)."),
    ("8", "No usable key (kid unknown, no RSA signing key, ambiguous match)."),
    ("9", "JWKS fetch failed (network, timeout, HTTP status, not JSON, too large, redirect, TLS)."),
    ("10", "Check failed (the published JWKS has problems)."),
    ("11", "Notification failed (broker or runtime unreachable); the key file change itself is kept."),
    ("130", "Interrupted."),
]

EXAMPLES = [
    (
        "Create a key file, then rotate and prune from cron every hour:",
        ["prisme-keys init", "17 * * * * prisme-keys -q rotate && prisme-keys -q prune"],
    ),
    ("What would prune remove in 45 days?", ["prisme-keys --now +45d prune --dry-run"]),
    ("Publish the public set:", ["prisme-keys export --out /srv/www/oidc/jwks.json"]),
    (
        "Mint a test token and verify it against a JWKS URL:",
        [
            "TOKEN=$(prisme-keys mint --sub user-1 --ttl 15m)",
            'prisme-keys verify "$TOKEN" --jwks-url https://api.example.com/oidc/jwks',
        ],
    ),
    (
        "Check a published JWKS in CI:",
        ["prisme-keys check https://api.example.com/oidc/jwks --strict --junit report.xml"],
    ),
]


def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and a leading dot or quote."""
    out = str(text).replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for ln in out.split("\n"):
        if ln.startswith((".", "'")):
            ln = "\\&" + ln
        lines.append(ln)
    return "\n".join(lines)


def para(text: str) -> list[str]:
    """Paragraphs of a help text, as roff lines."""
    out = []
    for i, chunk in enumerate(p.strip() for p in (text or "").split("\n\n") if p.strip()):
        if i:
            out.append(".PP")
        out.append(esc(" ".join(chunk.split())))
    return out


def metavar(param) -> str:
    """The value placeholder of an option: its metavar, its enum choices, or its type's name."""
    import enum
    import typing

    if getattr(param, "is_flag", False):
        return ""
    if param.metavar:
        return param.metavar
    ann = getattr(getattr(param, "type_descriptor", None), "annotation", str)
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if args:
        ann = args[0]
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return "[" + "|".join(str(m.value) for m in ann) + "]"
    return {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "Path": "PATH"}.get(
        getattr(ann, "__name__", ""), "VALUE"
    )


def option_lines(params) -> list[str]:
    out = []
    for p in params:
        if getattr(p, "hidden", False) or p.param_type_name != "option":
            continue
        names = ", ".join(f"\\fB{esc(o)}\\fR" for o in list(p.opts) + list(p.secondary_opts))
        mv = metavar(p)
        out.append(".TP")
        out.append(names + (f" \\fI{esc(mv)}\\fR" if mv else ""))
        help_text = " ".join((p.help or "").split())
        extras = []
        if p.envvar:
            envs = p.envvar if isinstance(p.envvar, (list, tuple)) else [p.envvar]
            extras.append("env: " + ", ".join(envs))
        if not getattr(p, "is_flag", False) and p.default not in (None, "", (), False) and p.show_default is not False:
            d = getattr(p.default, "value", p.default)
            extras.append(f"default: {d}")
        if extras:
            help_text += f" [{'; '.join(extras)}]"
        out.append(esc(help_text))
    return out


def argument_synopsis(cmd) -> str:
    parts = []
    for p in cmd.params:
        if p.param_type_name == "argument":
            n = (p.metavar or p.name).upper()
            parts.append(n if p.required else f"[{n}]")
    return " ".join(parts)


def walk(group, prefix=""):
    """Yield ``(full name, command)`` for every leaf command, sorted, descending into groups."""
    for name in sorted(group.commands):
        cmd = group.commands[name]
        if getattr(cmd, "hidden", False):
            continue
        if hasattr(cmd, "commands"):
            yield from walk(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def render() -> str:
    import typer

    from prisme_keys import __version__
    from prisme_keys.cli import app

    root = typer.main.get_command(app)
    lines = [
        '.TH PRISME\\-KEYS 1 "" "prisme\\-keys ' + esc(__version__) + '" "User Commands"',
        ".SH NAME",
        "prisme\\-keys \\- manage, rotate, publish and verify the RSA signing keys (JWKs) of an API gateway",
        ".SH SYNOPSIS",
        ".B prisme\\-keys",
        "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
        ".SH DESCRIPTION",
    ]
    lines += para(root.help.split("Exit codes:")[0])
    lines += [".SH GLOBAL OPTIONS", "Global options come before the command."]
    lines += option_lines(p for p in root.params if p.name not in ("install_completion", "show_completion"))
    lines.append(".SH COMMANDS")
    for name, cmd in walk(root):
        args = argument_synopsis(cmd)
        lines.append(".SS " + esc(f"prisme-keys {name}" + (f" [OPTIONS] {args}" if args else " [OPTIONS]")))
        lines += para(cmd.help or "")
        opts = option_lines(cmd.params)
        if opts:
            lines += [".PP", "Options:", ".RS"] + opts + [".RE"]
    lines += [".SH ENVIRONMENT", "Precedence: flag, then environment, then config file, then default."]
    for k, v in ENVIRONMENT:
        lines += [".TP", f"\\fB{esc(k)}\\fR", esc(v)]
    lines.append(".SH FILES")
    for k, v in FILES:
        lines += [".TP", f"\\fI{esc(k)}\\fR", esc(v)]
    lines.append(".SH EXIT STATUS")
    for k, v in EXIT:
        lines += [".TP", f"\\fB{k}\\fR", esc(v)]
    lines.append(".SH EXAMPLES")
    for text, cmds in EXAMPLES:
        lines += [".PP", esc(text), ".PP", ".RS", ".nf"] + [esc(c) for c in cmds] + [".fi", ".RE"]
    lines += [".SH SEE ALSO", "The README of prisme\\-keys; RFC 7517 (JWK), RFC 7519 (JWT), RFC 7638 (thumbprints)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not PAGE.exists() or PAGE.read_text() != text:
            print("man/prisme-keys.1 is stale; run python man/generate.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
