"""Validation of names that reach the HAProxy runtime API, a shell, an ssh_config
or a file path.

The HAProxy runtime API is line-based and ``;`` separates commands, so a name
holding a newline, a semicolon or a space could inject a command. An
ssh_config is line-based too: a user name or key path holding a newline adds
a directive (``ProxyCommand`` runs a program on the controller). Everything
that becomes part of such a line, a command argument or a path goes through
one of these checks first.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from rollout.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")
_VERSION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,63})$")
_IMAGE_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,127})$")
_BACKEND = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
# A POSIX-portable login name (what useradd accepts, plus upper case for images
# whose default user has it).
_SSH_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
# A host key alias: an instance id, a host name.
_HOST_KEY_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,253}$")
# Control characters end an ssh_config line; ssh_config cannot escape '"'; and
# ssh expands '%' tokens in key and known_hosts paths.
_SSH_PATH_BAD = re.compile(r'[\x00-\x1f\x7f"%]')

SSH_USER_RULE = "use a login name: letters, digits, '_', '.' or '-', starting with a letter or '_'"
SSH_PATH_RULE = "a path must not hold control characters (newlines, tabs...), '\"' or '%'"


def _check(pattern: re.Pattern[str], value: object, what: str, where: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value)
        raise ConfigError(f"{where}: {what} {shown} is not valid: {rule}")
    return value


def name(value: object, what: str = "name", where: str = "argument") -> str:
    """A role, env, pool or node name: lower-case letters, digits, '-' and '_'."""
    return _check(
        _NAME, value, what, where,
        "use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
    )


def version(value: object, where: str = "argument") -> str:
    """An image version such as 2.0.0 or 2.0.0-rc1."""
    return _check(
        _VERSION, value, "version", where,
        "use letters, digits, '.', '_', '+' or '-' (at most 64), starting with a letter or digit",
    )


def image_id(value: object, where: str = "argument") -> str:
    return _check(
        _IMAGE_ID, value, "image id", where,
        "use letters, digits, '.', '_' or '-', starting with a letter or digit",
    )


def rollout_id(value: object, where: str = "argument") -> str:
    """A rollout id as the journal prints it (e.g. r0cad693d)."""
    return _check(
        _NAME, value, "rollout id", where,
        "use the id that `rollout history` or `rollout status` prints, e.g. r0cad693d",
    )


def backend(value: object, where: str = "argument") -> str:
    """An HAProxy backend or server name."""
    return _check(
        _BACKEND, value, "HAProxy name", where,
        "use letters, digits, '.', '_' or '-' (no spaces, ';' or newlines)",
    )


def ssh_user(value: object, where: str = "argument") -> str:
    """A login name for SSH (it becomes ``User NAME`` in an ssh_config)."""
    return _check(_SSH_USER, value, "SSH user", where, SSH_USER_RULE)


def ssh_path(value: object, what: str = "path", where: str = "argument") -> str:
    """A key or known_hosts path for ssh: no control characters, '"' or '%'.
    Spaces are allowed; :func:`ssh_quote` quotes them in an ssh_config."""
    if not isinstance(value, str) or not value or _SSH_PATH_BAD.search(value):
        raise ConfigError(f"{where}: {what} {value!r} is not valid: {SSH_PATH_RULE}")
    return value


def host_key_alias(value: object, where: str = "argument") -> str:
    """The name a host key is kept under (``HostKeyAlias``), e.g. an instance id."""
    return _check(
        _HOST_KEY_ALIAS, value, "host key alias", where,
        "use letters, digits, '.', '_' or '-', starting with a letter or digit",
    )


def ssh_quote(value: str) -> str:
    """``value`` as one ssh_config argument (quoted when it holds a space).
    Only for values already checked by :func:`ssh_path` or stricter."""
    if _SSH_PATH_BAD.search(value):
        raise ConfigError(f"ssh_config: refusing the value {value!r}: {SSH_PATH_RULE}")
    return f'"{value}"' if any(c.isspace() for c in value) or not value else value


def remote_tcp_host(url: str) -> str | None:
    """The host of a ``tcp://`` URL when it is not this machine (not a loopback
    address or ``localhost``); None for anything else. A name other than
    localhost counts as remote: it is not resolved here."""
    if not url.startswith("tcp://"):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host or host == "localhost":
        return None
    try:
        return None if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host


def address(value: object, where: str = "argument") -> str:
    """An IPv4 or IPv6 address, as a string."""
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not an IP address") from None


def port(value: object, where: str = "argument") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{where}: port must be a whole number from 1 to 65535 (got {value!r})")
    return value
